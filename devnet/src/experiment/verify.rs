//! The end state of an experiment, verified from the chains alone (DESIGN.md §9): every request
//! the source chain holds is handled exactly once, no operator voted twice for one, every
//! recipient holds exactly what the source chain says was sent to it, and the bridges conserve
//! value; then whether every replica's store agrees with the chains ("synchronisation").

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolError;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane, Request, request_from_log};
use serde::Serialize;

use super::load::{Asset, Submitted};
use crate::error::DevnetError;
use crate::harness::invariants::{
    bridge_events, handle_counts, settled_handle_counts, votes_per_operator, wait_handled_below,
};
use crate::harness::scrape::metric;
use crate::{Devnet, Driver};

/// Every request of `lane` on its source chain now, by nonce.
pub async fn chain_requests(
    driver: &Driver,
    lane: Lane,
) -> Result<BTreeMap<u64, Request>, DevnetError> {
    let source = lane.source();
    let chain_id = driver.chain(source).contracts.chain_id;
    let mut requests = BTreeMap::new();
    for log in &bridge_events::<Bridge::RequestValueTransfer>(driver, source).await? {
        let request =
            request_from_log(log, chain_id).map_err(|e| DevnetError::Invalid(e.to_string()))?;
        requests.insert(request.nonce, request);
    }
    Ok(requests)
}

/// What the chains hold once the experiment drained, read once and shared by the end-state
/// check, the outcomes and the store check.
#[derive(Debug, Clone, Default)]
pub struct ChainView {
    /// Every request on each lane's source, by nonce.
    pub requests: BTreeMap<Lane, BTreeMap<u64, Request>>,
    /// Handle events per nonce on each lane's destination.
    pub handled: BTreeMap<Lane, HashMap<u64, usize>>,
}

impl ChainView {
    /// Wait (up to `timeout`) until every request on both lanes is handled, then read them.
    pub async fn drained(driver: &Driver, timeout: Duration) -> Result<Self, DevnetError> {
        let mut view = Self::default();
        // One deadline for every lane: a lane that never drains must not double the wait.
        let deadline = Instant::now() + timeout;
        for lane in Lane::ALL {
            let requests = chain_requests(driver, lane).await?;
            let upto = requests.keys().max().map_or(0, |n| n.saturating_add(1));
            let left = deadline.saturating_duration_since(Instant::now());
            // Not drained in time is a finding (lost requests), not an error of the check.
            let drained = match wait_handled_below(driver, lane, upto, left).await {
                Ok(_) => true,
                Err(e) => {
                    eprintln!("  {e}");
                    false
                }
            };
            // Once the state says every request is handled, its logs may still lag a moment.
            let handled = if drained {
                settled_handle_counts(driver, lane, requests.keys().copied()).await?
            } else {
                handle_counts(driver, lane).await?
            };
            view.handled.insert(lane, handled);
            view.requests.insert(lane, requests);
        }
        Ok(view)
    }
}

/// The two bridges' native balances before the experiment (fees are 0 on the devnet, so their
/// sum may not change).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NativeBaseline {
    /// Main bridge balance, wei.
    pub main: U256,
    /// Service bridge balance, wei.
    pub service: U256,
}

impl NativeBaseline {
    /// Read both bridges' balances now.
    pub async fn read(driver: &Driver) -> Result<Self, DevnetError> {
        Ok(Self {
            main: bridge_balance(driver, ChainRole::Main).await?,
            service: bridge_balance(driver, ChainRole::Service).await?,
        })
    }
}

async fn bridge_balance(driver: &Driver, role: ChainRole) -> Result<U256, DevnetError> {
    driver
        .native_balance(role, driver.chain(role).contracts.bridge)
        .await
}

/// One lane's end state.
#[derive(Debug, Clone, Serialize)]
pub struct LaneEnd {
    /// Lane.
    pub lane: Lane,
    /// Requests on the source chain.
    pub requests: u64,
    /// Of them handled exactly once.
    pub handled_once: u64,
    /// Nonces handled more than once (must be 0).
    pub handled_twice: u64,
    /// Nonces not handled (must be 0).
    pub lost: u64,
    /// (nonce, operator) pairs with more than one recorded vote (must be 0).
    pub double_votes: u64,
    /// Votes the destination refused as duplicates (`HandleSkipped` AlreadyHandled /
    /// AlreadyVoted): what a second vote costs — nothing.
    pub refused_duplicates: u64,
}

/// The whole end state.
#[derive(Debug, Clone, Serialize)]
pub struct EndState {
    /// Per lane.
    pub lanes: Vec<LaneEnd>,
    /// Recipients whose balance was checked against the source chain's requests.
    pub recipients_checked: usize,
    /// Recipients whose balance differs (must be empty).
    pub recipients_wrong: Vec<String>,
    /// Test-token conservation: locked in the main bridge == wrapped supply on service.
    pub erc20_conserved: bool,
    /// Native conservation: the two bridges' balances sum to what they held before.
    pub native_conserved: bool,
    /// Submissions the users saw fail (revert, no receipt; after a reorg, a dropped request).
    pub user_failures: usize,
    /// Submitted transactions that are not requests on the final chains (reorged out and not
    /// re-sent, or refused): the users saw each of them fail.
    pub not_on_chain: usize,
    /// The users' failures by what the node or the receipt said (first words), with a count.
    pub user_failure_kinds: BTreeMap<String, usize>,
}

impl EndState {
    /// Requests in all.
    pub fn requests(&self) -> u64 {
        self.lanes.iter().map(|l| l.requests).sum()
    }

    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.lanes
            .iter()
            .all(|l| l.handled_twice == 0 && l.lost == 0 && l.double_votes == 0)
            && self.recipients_wrong.is_empty()
            && self.erc20_conserved
            && self.native_conserved
    }

    /// The invariants that failed, for an error message.
    pub fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for l in &self.lanes {
            if l.handled_twice > 0 {
                failed.push(format!("{}: {} handled twice", l.lane, l.handled_twice));
            }
            if l.lost > 0 {
                failed.push(format!("{}: {} never handled", l.lane, l.lost));
            }
            if l.double_votes > 0 {
                failed.push(format!("{}: {} double votes", l.lane, l.double_votes));
            }
        }
        failed.extend(self.recipients_wrong.iter().cloned());
        if !self.erc20_conserved {
            failed.push("ERC-20 not conserved".into());
        }
        if !self.native_conserved {
            failed.push("native not conserved".into());
        }
        failed
    }
}

/// Verify the end state on the drained chains `view`. `submitted` are the load's submissions
/// (their recipients are checked).
pub async fn end_state(
    driver: &Driver,
    view: &ChainView,
    submitted: &[Submitted],
    baseline: NativeBaseline,
) -> Result<EndState, DevnetError> {
    let mut lanes = Vec::new();
    let mut all_requests = Vec::new();
    for lane in Lane::ALL {
        let requests = view.requests.get(&lane).cloned().unwrap_or_default();
        let counts = view.handled.get(&lane).cloned().unwrap_or_default();
        let handled_once = requests
            .keys()
            .filter(|n| counts.get(n) == Some(&1))
            .count() as u64;
        let handled_twice = counts.values().filter(|c| **c > 1).count() as u64;
        let lost = requests.keys().filter(|n| !counts.contains_key(n)).count() as u64;
        let double_votes = votes_per_operator(driver, lane)
            .await?
            .values()
            .filter(|n| **n > 1)
            .count() as u64;
        lanes.push(LaneEnd {
            lane,
            requests: requests.len() as u64,
            handled_once,
            handled_twice,
            lost,
            double_votes,
            refused_duplicates: refused_duplicates(driver, lane).await?,
        });
        all_requests.extend(requests.into_values().map(|r| (lane, r)));
    }

    // Recipients: what the source chains say was sent to each, against what each holds.
    let mut expected: HashMap<(Lane, Asset, Address), U256> = HashMap::new();
    for s in submitted {
        expected.entry((s.lane, s.asset, s.to)).or_default();
    }
    let on_chain: std::collections::HashSet<B256> =
        all_requests.iter().map(|(_, r)| r.srcTxHash).collect();
    for (lane, r) in &all_requests {
        let asset = if r.token == Address::ZERO {
            Asset::Native
        } else {
            Asset::Erc20
        };
        if let Some(sum) = expected.get_mut(&(*lane, asset, r.to)) {
            *sum = sum.saturating_add(r.amount);
        }
    }
    let mut recipients_wrong = Vec::new();
    for ((lane, asset, to), want) in &expected {
        let destination = lane.destination();
        let held = match asset {
            Asset::Native => driver.native_balance(destination, *to).await?,
            Asset::Erc20 => driver.token_balance(destination, *to).await?,
        };
        if held != *want {
            recipients_wrong.push(format!(
                "{lane} {asset:?} recipient {to}: holds {held}, the source chain sent {want}"
            ));
        }
    }

    let locked = driver
        .token_balance(
            ChainRole::Main,
            driver.chain(ChainRole::Main).contracts.bridge,
        )
        .await?;
    let wrapped = driver.token_supply(ChainRole::Service).await?;
    let now = NativeBaseline::read(driver).await?;
    Ok(EndState {
        lanes,
        recipients_checked: expected.len(),
        recipients_wrong,
        erc20_conserved: locked == wrapped,
        native_conserved: now.main.saturating_add(now.service)
            == baseline.main.saturating_add(baseline.service),
        user_failures: submitted.iter().filter(|s| s.error.is_some()).count(),
        user_failure_kinds: submitted.iter().filter_map(|s| s.error.as_deref()).fold(
            BTreeMap::new(),
            |mut kinds, e| {
                let kind: String = e.chars().take(60).collect();
                *kinds.entry(kind).or_insert(0) += 1;
                kinds
            },
        ),
        not_on_chain: submitted
            .iter()
            .filter(|s| !on_chain.contains(&s.tx))
            .count(),
    })
}

/// `HandleSkipped` events of `lane`'s destination whose reason is a duplicate.
async fn refused_duplicates(driver: &Driver, lane: Lane) -> Result<u64, DevnetError> {
    let logs = bridge_events::<Bridge::HandleSkipped>(driver, lane.destination()).await?;
    let duplicate = [
        Bridge::AlreadyHandled::SELECTOR,
        Bridge::AlreadyVoted::SELECTOR,
    ];
    Ok(logs
        .iter()
        .filter_map(|l| l.log_decode::<Bridge::HandleSkipped>().ok())
        .filter(|e| duplicate.contains(&e.inner.data.reason.0))
        .count() as u64)
}

/// Whether every replica's store agrees with the chains.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSync {
    /// Replicas checked.
    pub replicas: usize,
    /// Replicas whose store holds every request of both lanes (above its compaction point)
    /// with the payload the source chain logged, and marks handled only what is handled.
    pub in_sync: usize,
    /// What disagreed, per replica.
    pub disagreements: Vec<String>,
}

impl StoreSync {
    /// All replicas in sync.
    pub fn ok(&self) -> bool {
        self.in_sync == self.replicas && self.disagreements.is_empty()
    }
}

/// Wait until every running replica indexed past the last request of each lane (60 s), stop
/// them all, and compare each replica's store with the chains.
pub async fn store_sync(devnet: &mut Devnet, view: &ChainView) -> Result<StoreSync, DevnetError> {
    let last_block: BTreeMap<Lane, u64> = view
        .requests
        .iter()
        .map(|(lane, r)| {
            let last = r.values().map(|r| r.srcBlockNumber).max();
            (*lane, last.unwrap_or_default())
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for ports in devnet.replica_http_ports.clone() {
        for port in ports {
            for lane in Lane::ALL {
                let series = format!("multibridge_indexed_block{{lane=\"{lane}\"}}");
                let want = last_block.get(&lane).copied().unwrap_or_default() as f64;
                while metric(port, &series).await.unwrap_or(0.0) <= want {
                    if Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    let shape: Vec<usize> = devnet.replica_http_ports.iter().map(Vec::len).collect();
    for (op, replicas) in shape.iter().enumerate() {
        for replica in 0..*replicas {
            if let Some(process) = devnet.replica(op, replica) {
                process
                    .stop(Duration::from_secs(10))
                    .map_err(|e| DevnetError::Invalid(e.to_string()))?;
            }
        }
    }
    let mut sync = StoreSync {
        replicas: 0,
        in_sync: 0,
        disagreements: Vec::new(),
    };
    for (op, replicas) in shape.iter().enumerate() {
        for replica in 0..*replicas {
            sync.replicas += 1;
            let name = Devnet::replica_name(op, replica);
            let config = devnet.replica_config(op, replica)?;
            let store = multibridge::harness::Store::open(
                &config.store.path,
                &multibridge::harness::identity(&config.chains, config.operator.address),
            )
            .map_err(|e| DevnetError::Invalid(format!("{name}: open store: {e}")))?;
            let mut problems = Vec::new();
            for lane in Lane::ALL {
                let below = store
                    .compaction(lane)
                    .map_err(|e| DevnetError::Invalid(e.to_string()))?
                    .below;
                let counts = view.handled.get(&lane).cloned().unwrap_or_default();
                for (nonce, request) in view.requests.get(&lane).into_iter().flatten() {
                    if *nonce < below {
                        continue;
                    }
                    match store
                        .get(lane, *nonce)
                        .map_err(|e| DevnetError::Invalid(e.to_string()))?
                    {
                        None => problems.push(format!("{lane} nonce {nonce} missing")),
                        Some(row) => {
                            if row.payload_hash != multibridge::harness::payload_hash(request) {
                                problems.push(format!("{lane} nonce {nonce}: other payload"));
                            }
                            if row.status == multibridge_contracts::RequestStatus::Handled
                                && !counts.contains_key(nonce)
                            {
                                problems.push(format!(
                                    "{lane} nonce {nonce}: handled in the store, not on chain"
                                ));
                            }
                        }
                    }
                }
            }
            if problems.is_empty() {
                sync.in_sync += 1;
            } else {
                let shown: Vec<_> = problems.iter().take(3).cloned().collect();
                sync.disagreements.push(format!(
                    "{name}: {} disagreements (first: {})",
                    problems.len(),
                    shown.join("; ")
                ));
            }
        }
    }
    Ok(sync)
}
