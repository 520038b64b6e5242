//! Declarative configuration: a desired-state file per bridge pair ([`Desired`]), the difference
//! from what the chains say now ([`plan`]), in an order that is safe at every step — operators
//! are added before a threshold is raised and a threshold is lowered before operators are
//! removed, so the threshold never exceeds the operator count and never drops below
//! `min(current, desired)` in between; ownership moves last — and, for a multisig owner, the
//! batch as Safe Transaction Builder JSON ([`safe_batch`]).

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolCall;
use multibridge_contracts::{Bridge, ChainRole, TokenMode};
use serde::{Deserialize, Serialize};

use super::state::{BridgeState, PairState};

/// Most operators a bridge takes (`MAX_OPERATORS`).
pub const MAX_OPERATORS: usize = 32;

/// A token pair as wanted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredPair {
    /// The token on the other chain.
    pub remote: Address,
    /// `lock-unlock` or `burn-mint` (ERC-20), `erc721-lock-unlock` or `erc721-burn-mint`.
    pub mode: TokenMode,
    /// Requests refused while locked.
    #[serde(default)]
    pub locked: bool,
}

/// A request bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredRateLimit {
    /// Capacity (0: no limit).
    pub capacity: U256,
    /// Refill per second.
    pub refill_per_second: U256,
}

/// A release bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredOutflow {
    /// Capacity (`unlimited` is `340282366920938463463374607431768211455`, u128::MAX).
    pub capacity: U256,
    /// Refill per second.
    pub refill_per_second: U256,
    /// Releases of at least this much always wait the delay (0: none).
    pub delay_above: U256,
}

/// One asset as wanted; what is left out stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredAsset {
    /// The token pair (tokens only; required to register one).
    pub pair: Option<DesiredPair>,
    /// Fee in native coin per request.
    pub fee: Option<U256>,
    /// Largest request (0: none).
    pub transfer_cap: Option<U256>,
    /// Request bucket.
    pub rate_limit: Option<DesiredRateLimit>,
    /// Release bucket.
    pub outflow_limit: Option<DesiredOutflow>,
}

/// One bridge as wanted; what is left out stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredBridge {
    /// The exact operator set.
    pub operators: Option<Vec<Address>>,
    /// Votes needed.
    pub threshold: Option<u64>,
    /// The exact pauser set.
    pub pausers: Option<Vec<Address>>,
    /// Seconds a queued release waits.
    pub release_delay: Option<u64>,
    /// Who receives fees.
    pub fee_receiver: Option<Address>,
    /// Per asset: `native`, or a local token address.
    #[serde(default)]
    pub assets: BTreeMap<String, DesiredAsset>,
    /// The owner (moved last, with `transferOwnership`).
    pub owner: Option<Address>,
}

/// The desired-state file: `[main]` and `[service]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    /// The main chain's bridge.
    pub main: Option<DesiredBridge>,
    /// The service chain's bridge.
    pub service: Option<DesiredBridge>,
}

/// Why a plan cannot be made. Found before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The file does not parse.
    #[error("{0}")]
    Parse(String),
    /// A value no bridge accepts.
    #[error("{chain}: {problem}")]
    Invalid {
        /// Which bridge.
        chain: ChainRole,
        /// What is wrong.
        problem: String,
    },
}

impl Desired {
    /// Parse a desired-state file.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        toml::from_str(text).map_err(|e| PlanError::Parse(e.to_string()))
    }

    /// The wanted state of `chain`'s bridge.
    pub fn get(&self, chain: ChainRole) -> Option<&DesiredBridge> {
        match chain {
            ChainRole::Main => self.main.as_ref(),
            ChainRole::Service => self.service.as_ref(),
        }
    }
}

/// One call of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Which bridge.
    pub chain: ChainRole,
    /// What it does, for people.
    pub what: String,
    /// The bridge.
    pub to: Address,
    /// Calldata.
    pub data: Bytes,
}

/// The asset key of the file: `native` or a token address.
pub fn asset_key(key: &str, chain: ChainRole) -> Result<Address, PlanError> {
    if key == "native" {
        return Ok(Address::ZERO);
    }
    key.parse().map_err(|_| PlanError::Invalid {
        chain,
        problem: format!("asset `{key}` is neither `native` nor a token address"),
    })
}

struct Calls {
    chain: ChainRole,
    to: Address,
    out: Vec<Change>,
}

impl Calls {
    fn push(&mut self, what: String, call: impl SolCall) {
        self.out.push(Change {
            chain: self.chain,
            what,
            to: self.to,
            data: call.abi_encode().into(),
        });
    }
}

/// The calls that take `live` to `want`, in a safe order.
pub fn plan(live: &BridgeState, want: &DesiredBridge) -> Result<Vec<Change>, PlanError> {
    let chain = live.chain;
    let invalid = |problem: String| PlanError::Invalid { chain, problem };
    let mut calls = Calls {
        chain,
        to: live.bridge,
        out: Vec::new(),
    };
    let current: BTreeSet<Address> = live.operators.iter().copied().collect();
    let wanted: BTreeSet<Address> = match &want.operators {
        Some(ops) => {
            let set: BTreeSet<Address> = ops.iter().copied().collect();
            if set.len() != ops.len() {
                return Err(invalid("an operator is listed twice".into()));
            }
            if set.contains(&Address::ZERO) {
                return Err(invalid("operator 0x0 is not an operator".into()));
            }
            set
        }
        None => current.clone(),
    };
    if wanted.len() > MAX_OPERATORS {
        return Err(invalid(format!(
            "{} operators: a bridge takes at most {MAX_OPERATORS}",
            wanted.len()
        )));
    }
    let threshold = want.threshold.unwrap_or(live.threshold);
    if threshold == 0 || threshold > wanted.len() as u64 {
        return Err(invalid(format!(
            "threshold {threshold} with {} operator(s): give 1 to {}",
            wanted.len(),
            wanted.len()
        )));
    }
    // Operators and threshold. A threshold that rises rises first, as far as the current
    // operators allow, so no call of the batch leaves the new set executing at the old,
    // lower threshold (audit NEW-L5); then operators are added, the threshold raised the rest
    // of the way or lowered, and operators removed (a lower threshold before a removal, so the
    // bridge always has as many operators as the threshold).
    let mut raised = live.threshold;
    let first_step = threshold.min(current.len() as u64);
    if first_step > live.threshold {
        calls.push(
            format!("setThreshold({first_step}) (was {})", live.threshold),
            Bridge::setThresholdCall {
                newThreshold: U256::from(first_step),
            },
        );
        raised = first_step;
    }
    for op in wanted.difference(&current) {
        calls.push(
            format!("registerOperator({op})"),
            Bridge::registerOperatorCall { operator: *op },
        );
    }
    if threshold > raised {
        calls.push(
            format!("setThreshold({threshold}) (was {raised})"),
            Bridge::setThresholdCall {
                newThreshold: U256::from(threshold),
            },
        );
    }
    if threshold < live.threshold {
        calls.push(
            format!("setThreshold({threshold}) (was {})", live.threshold),
            Bridge::setThresholdCall {
                newThreshold: U256::from(threshold),
            },
        );
    }
    for op in current.difference(&wanted) {
        calls.push(
            format!("deregisterOperator({op})"),
            Bridge::deregisterOperatorCall { operator: *op },
        );
    }
    // Pausers.
    if let Some(pausers) = &want.pausers {
        let wanted: BTreeSet<Address> = pausers.iter().copied().collect();
        for p in wanted.difference(&live.pausers) {
            calls.push(
                format!("setPauser({p}, true)"),
                Bridge::setPauserCall {
                    pauser: *p,
                    enabled: true,
                },
            );
        }
        for p in live.pausers.difference(&wanted) {
            calls.push(
                format!("setPauser({p}, false)"),
                Bridge::setPauserCall {
                    pauser: *p,
                    enabled: false,
                },
            );
        }
    }
    if let Some(delay) = want.release_delay
        && delay != live.release_delay
    {
        calls.push(
            format!("setReleaseDelay({delay}) (was {})", live.release_delay),
            Bridge::setReleaseDelayCall { delay },
        );
    }
    if let Some(receiver) = want.fee_receiver
        && receiver != live.fee_receiver
    {
        calls.push(
            format!("setFeeReceiver({receiver})"),
            Bridge::setFeeReceiverCall { receiver },
        );
    }
    // A fee needs somebody to receive it (the bridge refuses a fee with no receiver).
    let receiver = want.fee_receiver.unwrap_or(live.fee_receiver);
    if receiver.is_zero()
        && want
            .assets
            .values()
            .any(|a| a.fee.is_some_and(|f| !f.is_zero()))
    {
        return Err(invalid(
            "a fee above 0 needs a fee_receiver (the bridge refuses fees without one)".into(),
        ));
    }
    // Assets: pairs first (a limit needs a registered token), then their settings.
    for (key, asset) in &want.assets {
        let token = asset_key(key, chain)?;
        let live_asset = live.assets.get(&token);
        if token.is_zero() && asset.pair.is_some() {
            return Err(invalid("native coin has no token pair".into()));
        }
        if let Some(pair) = &asset.pair {
            let live_pair = live_asset.and_then(|a| a.pair.as_ref());
            let same_pair = |p: &PairState| p.remote == pair.remote && p.mode == pair.mode as u8;
            if !live_pair.is_some_and(&same_pair) {
                // A pair whose mode or counterpart changes while releases of it are queued or
                // credited would pay them in the new mode (audit NEW-L5): settle those first.
                if let Some(a) = live_asset.filter(|a| a.pair.is_some())
                    && (a.queued > 0 || !a.reserved.is_zero())
                {
                    return Err(invalid(format!(
                        "token {token}: its pair changes while {} release(s) of it are queued and {} is held for releases and credits; wait until they are executed or withdrawn",
                        a.queued, a.reserved
                    )));
                }
                if let Some(p) = live_pair {
                    calls.push(
                        format!(
                            "deregisterTokenPair({token}) (was paired with {})",
                            p.remote
                        ),
                        Bridge::deregisterTokenPairCall { localToken: token },
                    );
                }
                calls.push(
                    format!(
                        "registerTokenPair({token}, {}, {:?})",
                        pair.remote, pair.mode
                    ),
                    Bridge::registerTokenPairCall {
                        localToken: token,
                        remoteToken: pair.remote,
                        mode: pair.mode as u8,
                    },
                );
            }
            let locked_now = live_pair.filter(|p| same_pair(p)).is_some_and(|p| p.locked);
            if pair.locked != locked_now {
                calls.push(
                    format!("setTokenLocked({token}, {})", pair.locked),
                    Bridge::setTokenLockedCall {
                        localToken: token,
                        locked: pair.locked,
                    },
                );
            }
        } else if !token.is_zero() && live_asset.is_none() {
            return Err(invalid(format!(
                "token {token} is not registered on this bridge: give its pair (remote, mode) to register it"
            )));
        }
        if let Some(fee) = asset.fee
            && live_asset.is_none_or(|a| a.fee != fee)
        {
            calls.push(
                format!("setFee({token}, {fee})"),
                Bridge::setFeeCall { token, newFee: fee },
            );
        }
        if let Some(cap) = asset.transfer_cap
            && live_asset.is_none_or(|a| a.transfer_cap != cap)
        {
            calls.push(
                format!("setTransferCap({token}, {cap})"),
                Bridge::setTransferCapCall { token, cap },
            );
        }
        if let Some(r) = asset.rate_limit
            && live_asset.is_none_or(|a| a.rate_limit != (r.capacity, r.refill_per_second))
        {
            calls.push(
                format!(
                    "setRateLimit({token}, {}, {})",
                    r.capacity, r.refill_per_second
                ),
                Bridge::setRateLimitCall {
                    token,
                    capacity: r.capacity,
                    refillPerSecond: r.refill_per_second,
                },
            );
        }
        if let Some(o) = asset.outflow_limit {
            let (capacity, refill) = match (
                u128::try_from(o.capacity),
                u128::try_from(o.refill_per_second),
            ) {
                (Ok(c), Ok(r)) => (c, r),
                _ => {
                    return Err(invalid(format!(
                        "outflow_limit of {key}: capacity and refill_per_second must fit 128 bits"
                    )));
                }
            };
            if live_asset
                .is_none_or(|a| a.outflow_limit != (o.capacity, o.refill_per_second, o.delay_above))
            {
                calls.push(
                    format!(
                        "setOutflowLimit({token}, {capacity}, {refill}, {})",
                        o.delay_above
                    ),
                    Bridge::setOutflowLimitCall {
                        token,
                        capacity,
                        refillPerSecond: refill,
                        delayAbove: o.delay_above,
                    },
                );
            }
        }
    }
    if let Some(owner) = want.owner
        && owner != live.owner
    {
        if owner.is_zero() {
            return Err(invalid("owner 0x0: a bridge must keep an owner".into()));
        }
        calls.push(
            format!("transferOwnership({owner}) (last: the signer loses every right above)"),
            Bridge::transferOwnershipCall { newOwner: owner },
        );
    }
    Ok(calls.out)
}

/// The Safe Transaction Builder batch of `changes` to `live`'s bridge, to be proposed by its owner
/// Safe (import it in the Safe app's Transaction Builder). Its first call is
/// `requireConfigVersion` of the state it was planned against (audit NEW-L5): executed after
/// any other owner call changed the bridge, the whole batch reverts instead of applying a plan
/// made for another state.
pub fn safe_batch(live: &BridgeState, name: &str, changes: &[Change]) -> serde_json::Value {
    let (chain_id, safe) = (live.chain_id, live.owner);
    let guard = Change {
        chain: live.chain,
        what: format!(
            "requireConfigVersion({}) (the state this batch was planned against)",
            live.config_version
        ),
        to: live.bridge,
        data: Bridge::requireConfigVersionCall {
            expected: live.config_version,
        }
        .abi_encode()
        .into(),
    };
    let changes: Vec<&Change> = std::iter::once(&guard).chain(changes).collect();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    serde_json::json!({
        "version": "1.0",
        "chainId": chain_id.to_string(),
        "createdAt": created,
        "meta": {
            "name": name,
            "description": changes.iter().map(|c| c.what.clone()).collect::<Vec<_>>().join("; "),
            "txBuilderVersion": "1.16.5",
            "createdFromSafeAddress": safe.to_string(),
            "createdFromOwnerAddress": "",
        },
        "transactions": changes.iter().map(|c| serde_json::json!({
            "to": c.to.to_string(),
            "value": "0",
            "data": c.data.to_string(),
            "contractMethod": null,
            "contractInputsValues": null,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AssetState;

    fn live(threshold: u64, operators: &[u8]) -> BridgeState {
        BridgeState {
            chain: ChainRole::Main,
            chain_id: 1,
            bridge: Address::repeat_byte(0xbb),
            owner: Address::repeat_byte(0xee),
            paused: false,
            threshold,
            operators: operators.iter().map(|b| Address::repeat_byte(*b)).collect(),
            counterpart: (U256::from(2), Address::repeat_byte(0xcc)),
            release_delay: 86_400,
            fee_receiver: Address::ZERO,
            pausers: BTreeSet::new(),
            assets: BTreeMap::from([(
                Address::ZERO,
                AssetState {
                    pair: None,
                    fee: U256::ZERO,
                    transfer_cap: U256::ZERO,
                    rate_limit: (U256::ZERO, U256::ZERO),
                    outflow_limit: (U256::ZERO, U256::ZERO, U256::ZERO),
                    reserved: U256::ZERO,
                    queued: 0,
                },
            )]),
            config_version: U256::from(7),
        }
    }

    fn want(threshold: u64, operators: &[u8]) -> DesiredBridge {
        DesiredBridge {
            operators: Some(operators.iter().map(|b| Address::repeat_byte(*b)).collect()),
            threshold: Some(threshold),
            ..Default::default()
        }
    }

    /// Replay `changes` on (threshold, operators) and check the invariants at every step: the
    /// threshold never above the operators nor below `floor`, and an operator added only once
    /// the threshold reached `before_adding`.
    fn replay(
        mut threshold: u64,
        mut ops: BTreeSet<Address>,
        floor: u64,
        before_adding: u64,
        changes: &[Change],
    ) {
        for c in changes {
            if let Ok(call) = Bridge::registerOperatorCall::abi_decode(&c.data) {
                assert!(
                    threshold >= before_adding,
                    "operator added at threshold {threshold}, below {before_adding}: {}",
                    c.what
                );
                ops.insert(call.operator);
            } else if let Ok(call) = Bridge::deregisterOperatorCall::abi_decode(&c.data) {
                ops.remove(&call.operator);
            } else if let Ok(call) = Bridge::setThresholdCall::abi_decode(&c.data) {
                threshold = u64::try_from(call.newThreshold).unwrap();
            }
            assert!(
                threshold <= ops.len() as u64,
                "threshold {threshold} above {} operators after {}",
                ops.len(),
                c.what
            );
            assert!(
                threshold >= floor,
                "threshold {threshold} below {floor} after {}",
                c.what
            );
        }
    }

    #[test]
    fn operator_and_threshold_changes_are_ordered_safely() {
        for (from, to) in [
            ((2u64, vec![1u8, 2, 3]), (3u64, vec![1u8, 2, 3, 4])),
            ((3, vec![1, 2, 3, 4]), (2, vec![1, 2, 3])),
            ((2, vec![1, 2, 3]), (2, vec![4, 5, 6])),
            ((3, vec![1, 2, 3]), (2, vec![1, 2])),
            ((1, vec![1]), (4, vec![2, 3, 4, 5])),
        ] {
            let l = live(from.0, &from.1);
            let changes = plan(&l, &want(to.0, &to.1)).unwrap();
            // A rising threshold rises before any operator is added (as far as the current
            // operators allow): the new set never executes at the old threshold.
            let before_adding = if to.0 >= from.0 {
                to.0.min(from.1.len() as u64)
            } else {
                0
            };
            replay(
                from.0,
                l.operators.iter().copied().collect(),
                from.0.min(to.0),
                before_adding,
                &changes,
            );
            let names: Vec<&str> = changes.iter().map(|c| c.what.as_str()).collect();
            assert!(!names.is_empty(), "{from:?} -> {to:?}");
        }
        // Nothing to do: no call.
        assert!(
            plan(&live(2, &[1, 2, 3]), &want(2, &[3, 2, 1]))
                .unwrap()
                .is_empty()
        );
    }

    /// Audit NEW-L5: a pair is not re-registered (mode or counterpart changed) while releases
    /// of its token are queued or held as credits.
    #[test]
    fn a_pair_change_waits_for_its_queued_releases_and_credits() {
        let token = Address::repeat_byte(7);
        let mut l = live(2, &[1, 2, 3]);
        let asset = |queued: u64, reserved: u64| AssetState {
            pair: Some(PairState {
                remote: Address::repeat_byte(8),
                mode: 0,
                locked: false,
            }),
            fee: U256::ZERO,
            transfer_cap: U256::ZERO,
            rate_limit: (U256::ZERO, U256::ZERO),
            outflow_limit: (U256::ZERO, U256::ZERO, U256::ZERO),
            reserved: U256::from(reserved),
            queued,
        };
        let mut w = want(2, &[1, 2, 3]);
        w.assets.insert(
            format!("{token}"),
            DesiredAsset {
                pair: Some(DesiredPair {
                    remote: Address::repeat_byte(8),
                    mode: TokenMode::BurnMint,
                    locked: false,
                }),
                ..Default::default()
            },
        );
        for (queued, reserved) in [(1, 0), (0, 5)] {
            l.assets.insert(token, asset(queued, reserved));
            let e = plan(&l, &w).unwrap_err().to_string();
            assert!(
                e.contains("wait until they are executed or withdrawn"),
                "{e}"
            );
        }
        l.assets.insert(token, asset(0, 0));
        let changes = plan(&l, &w).unwrap();
        assert!(
            changes
                .iter()
                .any(|c| c.what.starts_with("registerTokenPair"))
        );
    }

    #[test]
    fn impossible_states_are_refused_before_anything_is_sent() {
        let e = plan(&live(2, &[1, 2, 3]), &want(4, &[1, 2, 3]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("threshold 4 with 3 operator(s)"), "{e}");
        let e = plan(&live(2, &[1, 2, 3]), &want(1, &[1, 1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listed twice"), "{e}");
        let mut w = want(2, &[1, 2, 3]);
        w.assets.insert(
            format!("{}", Address::repeat_byte(7)),
            DesiredAsset {
                fee: Some(U256::from(1)),
                ..Default::default()
            },
        );
        let e = plan(&live(2, &[1, 2, 3]), &w).unwrap_err().to_string();
        assert!(e.contains("needs a fee_receiver"), "{e}");
        w.fee_receiver = Some(Address::repeat_byte(9));
        let e = plan(&live(2, &[1, 2, 3]), &w).unwrap_err().to_string();
        assert!(e.contains("is not registered on this bridge"), "{e}");
        let mut w = want(2, &[1, 2, 3]);
        w.assets.insert("nonsense".into(), DesiredAsset::default());
        assert!(
            plan(&live(2, &[1, 2, 3]), &w)
                .unwrap_err()
                .to_string()
                .contains("neither `native`")
        );
    }

    #[test]
    fn pairs_come_before_their_limits_and_ownership_moves_last() {
        let text = r#"
            [main]
            owner = "0x1111111111111111111111111111111111111111"
            fee_receiver = "0x2222222222222222222222222222222222222222"
            release_delay = 60
            [main.assets.native]
            outflow_limit = { capacity = "1000", refill_per_second = "1", delay_above = "500" }
            [main.assets."0x7777777777777777777777777777777777777777"]
            pair = { remote = "0x8888888888888888888888888888888888888888", mode = "burn-mint" }
            fee = "5"
        "#;
        let desired = Desired::parse(text).unwrap();
        let changes = plan(&live(2, &[1, 2, 3]), desired.get(ChainRole::Main).unwrap()).unwrap();
        let names: Vec<&str> = changes.iter().map(|c| c.what.as_str()).collect();
        let pos = |needle: &str| names.iter().position(|n| n.contains(needle)).unwrap();
        assert!(pos("registerTokenPair") < pos("setFee(0x7777"));
        assert!(pos("setFeeReceiver") < pos("setFee(0x7777"));
        assert_eq!(pos("transferOwnership"), names.len() - 1);
        assert!(names.iter().any(|n| n.starts_with(
            "setOutflowLimit(0x0000000000000000000000000000000000000000, 1000, 1, 500)"
        )));
        let batch = safe_batch(&live(2, &[1, 2, 3]), "test", &changes);
        let txs = batch["transactions"].as_array().unwrap();
        assert_eq!(txs.len(), changes.len() + 1, "the guard, then the changes");
        let guard: alloy::primitives::Bytes = txs[0]["data"].as_str().unwrap().parse().unwrap();
        let guard = Bridge::requireConfigVersionCall::abi_decode(&guard).unwrap();
        assert_eq!(
            guard.expected,
            U256::from(7),
            "the planned-against version first"
        );
        assert_eq!(batch["chainId"], "1");
        assert!(Desired::parse("[main]\nthreshold = \"two\"").is_err());
        assert!(Desired::parse("[elsewhere]\n").is_err());
    }
}
