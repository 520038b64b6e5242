//! A bridge's live configuration as its chain says it: owner, pause, threshold, operators,
//! counterpart, release delay, fee receiver, pausers (folded from `PauserChanged`) and per
//! asset — native coin and every token pair (folded from `TokenPairRegistered`) — its pair, fee,
//! transfer cap, request rate limit and release-side outflow limit. What `admin show` prints.

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::{Address, U256};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::{Bridge, ChainRole, TokenMode};
use serde::Serialize;

use crate::chain::{ChainClient, ChainError};

/// One asset's settings on a bridge (`Address::ZERO`: native coin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetState {
    /// The counterpart token and mode (`lock-unlock`/`burn-mint`), and whether it is locked;
    /// `None` for native coin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pair: Option<PairState>,
    /// Fee in native coin per request.
    pub fee: U256,
    /// Largest request (0: none).
    pub transfer_cap: U256,
    /// Request bucket: capacity and refill per second (capacity 0: no limit).
    pub rate_limit: (U256, U256),
    /// Release bucket: capacity, refill per second, and the amount from which a release always
    /// waits the delay.
    pub outflow_limit: (U256, U256, U256),
    /// Held back for queued releases and credits of it (`reservedLiquidity`).
    pub reserved: U256,
    /// Queued releases of it.
    pub queued: u64,
}

/// A registered token pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairState {
    /// The token on the other chain.
    pub remote: Address,
    /// 0 lock/unlock, 1 burn/mint.
    pub mode: u8,
    /// Requests of it are refused while locked.
    pub locked: bool,
}

/// A bridge's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeState {
    /// Which chain.
    pub chain: ChainRole,
    /// Chain id.
    pub chain_id: u64,
    /// The bridge.
    pub bridge: Address,
    /// Owner.
    pub owner: Address,
    /// Paused.
    pub paused: bool,
    /// Votes needed.
    pub threshold: u64,
    /// Registered operators.
    pub operators: Vec<Address>,
    /// Counterpart chain id and bridge.
    pub counterpart: (U256, Address),
    /// Seconds a queued release waits.
    pub release_delay: u64,
    /// Who receives fees.
    pub fee_receiver: Address,
    /// Enabled pausers (the owner may pause too, without being one).
    pub pausers: BTreeSet<Address>,
    /// Native coin (`0x0`) and every registered token.
    pub assets: BTreeMap<Address, AssetState>,
    /// Owner calls so far (`configVersion`): what a Safe batch checks first.
    pub config_version: U256,
}

/// Read `chain`'s bridge configuration, scanning its events from `from_block`.
pub async fn read(
    chain: &ChainClient,
    from_block: u64,
    max_range: u64,
) -> Result<BridgeState, ChainError> {
    let views = chain.views();
    let owner = chain
        .bridge_call("owner", |b| async move { b.owner().call().await })
        .await?;
    let paused = chain
        .bridge_call("paused", |b| async move { b.paused().call().await })
        .await?;
    let threshold = views.threshold().await?;
    let operators = views.operators().await?;
    let counterpart = (
        chain
            .bridge_call("counterpartChainId", |b| async move {
                b.counterpartChainId().call().await
            })
            .await?,
        views.counterpart_bridge().await?,
    );
    let release_delay = chain
        .bridge_call(
            "releaseDelay",
            |b| async move { b.releaseDelay().call().await },
        )
        .await?;
    let fee_receiver = chain
        .bridge_call(
            "feeReceiver",
            |b| async move { b.feeReceiver().call().await },
        )
        .await?;
    let head = chain.head().await?;
    let mut tokens: BTreeSet<Address> = BTreeSet::new();
    let mut pauser_events: BTreeSet<Address> = BTreeSet::new();
    let mut from = from_block;
    while from <= head {
        let to = from
            .saturating_add(max_range.max(1).saturating_sub(1))
            .min(head);
        let filter = Filter::new()
            .address(chain.bridge())
            .event_signature(vec![
                Bridge::TokenPairRegistered::SIGNATURE_HASH,
                Bridge::PauserChanged::SIGNATURE_HASH,
            ])
            .from_block(from)
            .to_block(to);
        for log in chain.logs(&filter).await?.iter().filter(|l| !l.removed) {
            if let Ok(e) = log.log_decode::<Bridge::TokenPairRegistered>() {
                tokens.insert(e.inner.data.localToken);
            } else if let Ok(e) = log.log_decode::<Bridge::PauserChanged>() {
                pauser_events.insert(e.inner.data.pauser);
            }
        }
        from = to.saturating_add(1);
    }
    let mut pausers = BTreeSet::new();
    for p in pauser_events {
        if chain
            .bridge_call("isPauser", |b| async move { b.isPauser(p).call().await })
            .await?
        {
            pausers.insert(p);
        }
    }
    // Queued releases per token, page by page (the queue may be long; an admin reads it all).
    let mut queued: BTreeMap<Address, u64> = BTreeMap::new();
    let count = views.queued_release_count().await?;
    let mut start = 0u64;
    while start < count {
        let page = views
            .queued_releases_page(start, crate::chain::bridge_views::QUEUE_PAGE)
            .await?;
        if page.is_empty() {
            break;
        }
        start = start.saturating_add(page.len() as u64);
        for q in page {
            let n = queued.entry(q.token).or_default();
            *n = n.saturating_add(1);
        }
    }
    let config_version = chain
        .bridge_call("configVersion", |b| async move {
            b.configVersion().call().await
        })
        .await?;
    let mut assets = BTreeMap::new();
    for token in std::iter::once(Address::ZERO).chain(tokens) {
        let pair = if token.is_zero() {
            None
        } else {
            let p = chain
                .bridge_call(
                    "tokenPair",
                    |b| async move { b.tokenPair(token).call().await },
                )
                .await?;
            if !p.registered {
                continue;
            }
            Some(PairState {
                remote: p.remoteToken,
                mode: p.mode,
                locked: p.locked,
            })
        };
        let fee = chain
            .bridge_call("fee", |b| async move { b.fee(token).call().await })
            .await?;
        let transfer_cap = chain
            .bridge_call("transferCap", |b| async move {
                b.transferCap(token).call().await
            })
            .await?;
        let rate = chain
            .bridge_call(
                "rateLimit",
                |b| async move { b.rateLimit(token).call().await },
            )
            .await?;
        let outflow = chain
            .bridge_call("outflowLimit", |b| async move {
                b.outflowLimit(token).call().await
            })
            .await?;
        let reserved = chain
            .bridge_call("reservedLiquidity", |b| async move {
                b.reservedLiquidity(token).call().await
            })
            .await?;
        assets.insert(
            token,
            AssetState {
                pair,
                fee,
                transfer_cap,
                rate_limit: (rate.capacity, rate.refillPerSecond),
                outflow_limit: (
                    outflow.capacity,
                    outflow.refillPerSecond,
                    outflow.delayAbove,
                ),
                reserved,
                queued: queued.get(&token).copied().unwrap_or(0),
            },
        );
    }
    Ok(BridgeState {
        chain: chain.role(),
        chain_id: chain.chain_id(),
        bridge: chain.bridge(),
        owner,
        paused,
        threshold: u64::try_from(threshold).unwrap_or(u64::MAX),
        operators,
        counterpart,
        release_delay,
        fee_receiver,
        pausers,
        assets,
        config_version,
    })
}

fn amount(v: U256) -> String {
    if v == U256::MAX || v >= U256::from(u128::MAX) {
        "unlimited".to_owned()
    } else {
        v.to_string()
    }
}

/// The table `admin show` prints for one bridge.
pub fn render(s: &BridgeState) -> String {
    let mut out = format!(
        "{} chain {} bridge {}\n  owner        {}\n  paused       {}\n  threshold    {} of {}\n",
        s.chain,
        s.chain_id,
        s.bridge,
        s.owner,
        s.paused,
        s.threshold,
        s.operators.len()
    );
    for op in &s.operators {
        out.push_str(&format!("    operator   {op}\n"));
    }
    out.push_str(&format!(
        "  counterpart  chain {} bridge {}\n  release delay {} s\n  fee receiver {}\n  pausers      {} (and the owner)\n",
        s.counterpart.0,
        s.counterpart.1,
        s.release_delay,
        s.fee_receiver,
        if s.pausers.is_empty() {
            "-".to_owned()
        } else {
            s.pausers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        }
    ));
    for (asset, a) in &s.assets {
        let head = match &a.pair {
            None => "  native coin".to_owned(),
            Some(p) => format!(
                "  token {asset} <-> {} ({}{})",
                p.remote,
                TokenMode::from_u8(p.mode).map_or("unknown mode", TokenMode::describe),
                if p.locked { ", LOCKED" } else { "" }
            ),
        };
        out.push_str(&format!(
            "{head}\n    fee {}  transfer cap {}  rate limit {} (refill {}/s)\n    outflow {} (refill {}/s), releases of {} or more wait the delay\n",
            a.fee,
            if a.transfer_cap.is_zero() { "none".to_owned() } else { a.transfer_cap.to_string() },
            if a.rate_limit.0.is_zero() { "none".to_owned() } else { amount(a.rate_limit.0) },
            a.rate_limit.1,
            amount(a.outflow_limit.0),
            a.outflow_limit.1,
            if a.outflow_limit.2.is_zero() { "any amount".to_owned() } else { a.outflow_limit.2.to_string() },
        ));
    }
    out
}
