//! Configuration drift (issue 38): the bridges' configuration watched continuously.
//!
//! - With `[admin] desired = "bridge-config.toml"` (the file `multibridge admin plan` reads), the
//!   relay plans against both bridges every `check_every_secs`, read-only, and exports how many
//!   owner calls each item still needs (`multibridge_config_drift{chain,item}`; 0: as desired).
//! - Without a file, every owner call the bridges' events show (operators, threshold, limits,
//!   pausers, owner, pairs, fees, counterpart) is exported with its transaction
//!   (`multibridge_admin_change_time{chain,event,tx}`, the last ten) and logged, so the alert
//!   names the transaction.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{B256, Bytes};
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolCall, SolEvent};
use multibridge_admin::plan::Desired;
use multibridge_contracts::{Bridge, ChainRole};
use multibridge_monitoring::{DriftMetrics, StatusBoard};
use serde::Serialize;

use crate::chain::{ChainClient, ChainError, ChainPair};
use crate::config::Config;

/// What an owner call of a plan changes (label `item`).
pub fn item_of(data: &Bytes) -> &'static str {
    let Some(selector) = data.get(..4) else {
        return "other";
    };
    let is = |s: [u8; 4]| selector == s;
    if is(Bridge::registerOperatorCall::SELECTOR) || is(Bridge::deregisterOperatorCall::SELECTOR) {
        "operators"
    } else if is(Bridge::setThresholdCall::SELECTOR) {
        "threshold"
    } else if is(Bridge::setPauserCall::SELECTOR) {
        "pausers"
    } else if is(Bridge::transferOwnershipCall::SELECTOR) {
        "owner"
    } else if is(Bridge::setOutflowLimitCall::SELECTOR)
        || is(Bridge::setRateLimitCall::SELECTOR)
        || is(Bridge::setTransferCapCall::SELECTOR)
        || is(Bridge::setReleaseDelayCall::SELECTOR)
    {
        "limits"
    } else if is(Bridge::registerTokenPairCall::SELECTOR)
        || is(Bridge::deregisterTokenPairCall::SELECTOR)
        || is(Bridge::setTokenLockedCall::SELECTOR)
    {
        "token_pairs"
    } else if is(Bridge::setFeeCall::SELECTOR) || is(Bridge::setFeeReceiverCall::SELECTOR) {
        "fees"
    } else if is(Bridge::setCounterpartCall::SELECTOR) {
        "counterpart"
    } else {
        "other"
    }
}

/// The owner calls a bridge's events show, by event signature.
fn admin_event(topic0: &B256) -> Option<&'static str> {
    admin_events()
        .into_iter()
        .find(|(hash, _)| hash == topic0)
        .map(|(_, name)| name)
}

/// Every owner-call event of the bridge with its name.
fn admin_events() -> [(B256, &'static str); 15] {
    [
        (
            Bridge::OperatorRegistered::SIGNATURE_HASH,
            "OperatorRegistered",
        ),
        (
            Bridge::OperatorDeregistered::SIGNATURE_HASH,
            "OperatorDeregistered",
        ),
        (Bridge::ThresholdChanged::SIGNATURE_HASH, "ThresholdChanged"),
        (Bridge::CounterpartSet::SIGNATURE_HASH, "CounterpartSet"),
        (
            Bridge::TokenPairRegistered::SIGNATURE_HASH,
            "TokenPairRegistered",
        ),
        (
            Bridge::TokenPairDeregistered::SIGNATURE_HASH,
            "TokenPairDeregistered",
        ),
        (Bridge::TokenLockChanged::SIGNATURE_HASH, "TokenLockChanged"),
        (
            Bridge::TransferCapChanged::SIGNATURE_HASH,
            "TransferCapChanged",
        ),
        (Bridge::RateLimitChanged::SIGNATURE_HASH, "RateLimitChanged"),
        (
            Bridge::OutflowLimitChanged::SIGNATURE_HASH,
            "OutflowLimitChanged",
        ),
        (
            Bridge::ReleaseDelayChanged::SIGNATURE_HASH,
            "ReleaseDelayChanged",
        ),
        (Bridge::FeeChanged::SIGNATURE_HASH, "FeeChanged"),
        (
            Bridge::FeeReceiverChanged::SIGNATURE_HASH,
            "FeeReceiverChanged",
        ),
        (Bridge::PauserChanged::SIGNATURE_HASH, "PauserChanged"),
        (
            Bridge::OwnershipTransferred::SIGNATURE_HASH,
            "OwnershipTransferred",
        ),
    ]
}

/// Owner calls shown in `/status` and exported with their transaction.
const CHANGES_KEPT: usize = 10;

/// One owner call seen in a bridge's events.
#[derive(Debug, Clone, Serialize)]
struct AdminChange {
    chain: ChainRole,
    event: &'static str,
    tx: B256,
    block: u64,
    time: u64,
}

/// The deepest confirmation setting at which owner calls are read only once confirmed: at most
/// this many blocks late (96 s at 12 s blocks) against the alert's 15 minutes.
const OWNER_CALLS_DEPTH_MAX: u64 = 8;

/// The configuration watch of one relay.
pub struct DriftWatch {
    /// Both chains.
    pub chains: ChainPair,
    /// The relay's config (chains' start blocks and ranges, the desired file).
    pub config: Config,
    /// Its metrics.
    pub metrics: DriftMetrics,
    /// `/status`.
    pub board: Arc<StatusBoard>,
    /// Pause between event reads.
    pub interval: Duration,
}

impl DriftWatch {
    /// Run until the relay stops.
    pub async fn run(self) {
        match self.config.admin.desired.clone() {
            Some(path) => self.compare_forever(path).await,
            None => self.watch_events_forever().await,
        }
    }

    async fn compare_forever(&self, path: PathBuf) {
        let every = Duration::from_secs(self.config.admin.check_every_secs.max(1));
        loop {
            match self.compare(&path).await {
                Ok(drift) => {
                    self.metrics.checked(true);
                    self.board.set(
                        "config_drift",
                        serde_json::to_value(&drift).unwrap_or_default(),
                    );
                }
                Err(e) => {
                    self.metrics.checked(false);
                    tracing::warn!(file = %path.display(), error = %e, "cannot compare the bridges with the desired file; retrying");
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// One comparison: per chain, the owner calls the file still needs, by item.
    async fn compare(
        &self,
        path: &std::path::Path,
    ) -> Result<BTreeMap<ChainRole, Vec<String>>, DriftError> {
        let text = std::fs::read_to_string(path).map_err(|e| DriftError::File(e.to_string()))?;
        let desired = Desired::parse(&text).map_err(|e| DriftError::File(e.to_string()))?;
        let plans =
            multibridge_admin::apply::prepare_on(&self.chains, &self.config, &desired).await?;
        let mut out = BTreeMap::new();
        for plan in plans {
            let chain = plan.live.chain;
            let mut items: BTreeMap<&'static str, u64> = BTreeMap::new();
            for change in &plan.changes {
                let item = item_of(&change.data);
                let n = items.entry(item).or_default();
                *n = n.saturating_add(1);
                tracing::warn!(%chain, item, change = %change.what, "config drift: the bridge differs from the desired file");
            }
            self.metrics.set_drift(chain, &items);
            out.insert(chain, plan.changes.iter().map(|c| c.what.clone()).collect());
        }
        Ok(out)
    }

    async fn watch_events_forever(&self) {
        let mut next: BTreeMap<ChainRole, u64> = BTreeMap::new();
        let mut recent: VecDeque<AdminChange> = VecDeque::new();
        loop {
            for (role, chain) in self.chains.each() {
                if let Err(e) = self.read_events(role, chain, &mut next, &mut recent).await {
                    tracing::debug!(chain = %role, error = %e, "cannot read the bridge's owner calls; retrying");
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// The owner calls in `chain`'s new blocks once confirmed (see [`OWNER_CALLS_DEPTH_MAX`];
    /// from the head at start: history is what `admin show` is for).
    async fn read_events(
        &self,
        role: ChainRole,
        chain: &ChainClient,
        next: &mut BTreeMap<ChainRole, u64>,
        recent: &mut VecDeque<AdminChange>,
    ) -> Result<(), ChainError> {
        let head = chain.head().await?;
        // From the head at start, as before: the deployment's own owner calls are history.
        let from = *next.entry(role).or_insert(head.saturating_add(1));
        // Read only blocks buried under the chain's confirmation depth, up to
        // [`OWNER_CALLS_DEPTH_MAX`]: an owner call a reorg takes back within it is never
        // reported, and in a hub every pair's watch of one chain asks for the same confirmed
        // blocks, which the process's log store reads once for all of them (at the head, each
        // pair read its own: half of a hub's log reads that grew with its pairs; issue 54). A
        // deeper setting or `finalized` reads at the head as before: `MultibridgeAdminChange`
        // fires for 15 minutes from the block's time, and a call exported a finalization
        // later (13+ minutes on Ethereum) would barely fire.
        let depth = match self.config.chains.get(role).confirmations {
            crate::config::Confirmations::Depth(d) if d <= OWNER_CALLS_DEPTH_MAX => d,
            _ => 0,
        };
        let head = head.saturating_sub(depth);
        if from > head {
            return Ok(());
        }
        let to = head.min(
            from.saturating_add(self.config.chains.get(role).max_block_range.max(1))
                .saturating_sub(1),
        );
        // Only the owner-call events: the node filters, so a burst of votes costs nothing here.
        let filter = Filter::new()
            .address(chain.bridge())
            .event_signature(admin_events().map(|(hash, _)| hash).to_vec())
            .from_block(from)
            .to_block(to);
        for log in chain.logs(&filter).await? {
            if log.removed || log.address() != chain.bridge() {
                continue;
            }
            let Some(event) = log.topic0().and_then(admin_event) else {
                continue;
            };
            let tx = log.transaction_hash.unwrap_or_default();
            let block = log.block_number.unwrap_or_default();
            let time = match log.block_timestamp {
                Some(t) => t,
                None => chain.block_time(block).await?,
            };
            tracing::warn!(chain = %role, event, %tx, block, "owner call on the bridge");
            self.metrics
                .admin_change(role, event, &tx.to_string(), time);
            recent.push_front(AdminChange {
                chain: role,
                event,
                tx,
                block,
                time,
            });
            if recent.len() > CHANGES_KEPT
                && let Some(old) = recent.pop_back()
            {
                self.metrics
                    .forget_admin_change(old.chain, old.event, &old.tx.to_string());
            }
            self.board.set(
                "admin_changes",
                serde_json::to_value(&*recent).unwrap_or_default(),
            );
        }
        next.insert(role, to.saturating_add(1));
        Ok(())
    }
}

/// Why a comparison failed (retried at the next one).
#[derive(Debug, thiserror::Error)]
enum DriftError {
    /// The desired file cannot be read or parsed.
    #[error("desired-state file: {0}")]
    File(String),
    /// A chain could not be read, or the plan is impossible.
    #[error(transparent)]
    Plan(#[from] multibridge_admin::apply::ApplyError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, U256};

    #[test]
    fn each_owner_call_is_named_by_what_it_changes() {
        let data = |call: Vec<u8>| Bytes::from(call);
        assert_eq!(
            item_of(&data(
                Bridge::setThresholdCall {
                    newThreshold: U256::from(3)
                }
                .abi_encode()
            )),
            "threshold"
        );
        assert_eq!(
            item_of(&data(
                Bridge::registerOperatorCall {
                    operator: Address::ZERO
                }
                .abi_encode()
            )),
            "operators"
        );
        assert_eq!(
            item_of(&data(
                Bridge::setPauserCall {
                    pauser: Address::ZERO,
                    enabled: true
                }
                .abi_encode()
            )),
            "pausers"
        );
        assert_eq!(item_of(&Bytes::new()), "other");
    }

    #[test]
    fn owner_events_are_recognised_and_others_are_not() {
        assert_eq!(
            admin_event(&Bridge::ThresholdChanged::SIGNATURE_HASH),
            Some("ThresholdChanged")
        );
        assert_eq!(admin_event(&Bridge::VoteCast::SIGNATURE_HASH), None);
    }
}
