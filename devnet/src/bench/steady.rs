//! `bench-modes`' steady rows (issue 54): what operators pay per transfer at the load they
//! actually see, not in full batches. Users send native and ERC-20 transfers both ways at a fixed
//! rate per lane, the way wallets do ([`crate::experiment::load`]), on a fresh devnet (1 s
//! blocks, confirmations 1, standalone relays) for a set time; then every request is waited for
//! and the end state checked from the chains (exactly once, conservation). Per row: the gas of
//! every operator transaction to either bridge in the window over the transfers handled in it,
//! the transfers per operator transaction (how full the batches were), and the latency from the
//! user's receipt to the handle (the relays' part; wall-clock).

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::Provider;
use multibridge_config::VotingMode;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane};
use serde::Serialize;

use super::modes::{operator_addresses, operator_transactions};
use super::transfers::percentile;
use crate::error::DevnetError;
use crate::experiment::Run;
use crate::experiment::load::LoadSpec;
use crate::{Devnet, DevnetOptions, Driver};

/// Users that send (each a fixed share of the rate).
const USERS: [usize; 6] = [0, 1, 2, 3, 4, 5];
/// Wrapped tokens each user gets on the service chain to send back.
const SERVICE_TOKENS: u64 = 10_000_000;
/// How long the requests may take to drain after the users stop.
const DRAIN: Duration = Duration::from_secs(180);

/// One committee in one mode at one rate.
#[derive(Debug, Clone, Serialize)]
pub struct SteadyRow {
    /// Operators.
    pub operators: u32,
    /// Threshold.
    pub threshold: u64,
    /// `votes` or `attestations`.
    pub mode: String,
    /// Transfers per second asked per lane (both lanes run it).
    pub per_lane_rate: f64,
    /// Seconds the users sent.
    pub seconds: f64,
    /// Transfers handled in the window (both lanes).
    pub transfers: u64,
    /// Operator transactions to either bridge in the window.
    pub transactions: u64,
    /// Their gas over the transfers.
    pub gas_per_transfer: f64,
    /// Transfers over transactions.
    pub transfers_per_transaction: f64,
    /// The user's receipt → the handle seen, seconds: median.
    pub latency_p50: f64,
    /// The same, 99th percentile.
    pub latency_p99: f64,
    /// Operator transactions that reverted.
    pub reverted: u64,
    /// Per bridge entry point: (transactions, gas per transfer handled) — which call the gas
    /// went to.
    pub by_call: BTreeMap<String, (u64, f64)>,
    /// Whether the end state held (every request once, recipients right, conserved).
    pub end_state_ok: bool,
}

/// Run `committee` in `mode` with users at `per_lane_rate` transfers per second per lane for
/// `seconds`, on a fresh devnet under `dir`.
pub async fn run_one(
    dir: &std::path::Path,
    (operators, threshold): (u32, u64),
    mode: VotingMode,
    per_lane_rate: f64,
    seconds: u64,
    seed: u64,
) -> Result<SteadyRow, DevnetError> {
    let _ = std::fs::remove_dir_all(dir);
    let devnet = Devnet::start(DevnetOptions {
        operators,
        threshold,
        etcd_members: 0,
        relays: true,
        users: 8,
        block_time: Some(1.0),
        confirmations: 1,
        voting_mode: mode,
        backup_every: None,
        ..DevnetOptions::new(dir)
    })
    .await?;
    let driver = Driver::new(devnet.manifest());
    let operator_keys = operator_addresses(&devnet, &driver);
    let spec = LoadSpec {
        users: USERS.to_vec(),
        // Both lanes at `per_lane_rate` each.
        per_user_rate: per_lane_rate * 2.0 / USERS.len() as f64,
        lanes: Lane::ALL.to_vec(),
        erc20_share: 0.5,
        in_flight: 8,
        limit: None,
    };
    let run = Run::start(devnet, &spec, seed, U256::from(SERVICE_TOKENS)).await?;
    let from = heads(&driver).await?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (finished, devnet) = run.finish_keeping(DRAIN, false).await?;
    let to = heads(&driver).await?;
    let (mut transfers, mut gas) = (0u64, 0u128);
    let mut sent = Vec::new();
    for role in [ChainRole::Main, ChainRole::Service] {
        let window = from.get(role)..=to.get(role);
        sent.extend(operator_transactions(&driver, role, &operator_keys, window.clone()).await?);
        transfers = transfers.saturating_add(handles(&driver, role, window).await?);
    }
    let mut calls: BTreeMap<String, (u64, u128)> = BTreeMap::new();
    for t in &sent {
        gas = gas.saturating_add(u128::from(t.gas_used));
        let call = calls.entry(call_name(&t.selector)).or_default();
        call.0 = call.0.saturating_add(1);
        call.1 = call.1.saturating_add(u128::from(t.gas_used));
    }
    let transactions = sent.len() as u64;
    let reverted = sent.iter().filter(|t| !t.ok).count() as u64;
    drop(devnet);
    let mut latencies: Vec<f64> = finished
        .outcomes
        .iter()
        .filter_map(|o| Some((o.handled? - o.mined?).max(0.0)))
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(SteadyRow {
        operators,
        threshold,
        mode: mode.as_str().to_owned(),
        per_lane_rate,
        seconds: finished.load_secs,
        transfers,
        transactions,
        gas_per_transfer: gas as f64 / transfers.max(1) as f64,
        transfers_per_transaction: transfers as f64 / transactions.max(1) as f64,
        latency_p50: percentile(&latencies, 50.0),
        latency_p99: percentile(&latencies, 99.0),
        reverted,
        by_call: calls
            .into_iter()
            .map(|(call, (n, g))| (call, (n, g as f64 / transfers.max(1) as f64)))
            .collect(),
        end_state_ok: finished.end.ok(),
    })
}

/// Both chains' heads.
#[derive(Debug, Clone, Copy)]
struct Heads {
    main: u64,
    service: u64,
}

impl Heads {
    fn get(&self, role: ChainRole) -> u64 {
        match role {
            ChainRole::Main => self.main,
            ChainRole::Service => self.service,
        }
    }
}

async fn heads(driver: &Driver) -> Result<Heads, DevnetError> {
    let head = async |role| {
        driver
            .provider(role)?
            .get_block_number()
            .await
            .map_err(|e| DevnetError::chain("eth_blockNumber", e))
    };
    Ok(Heads {
        main: head(ChainRole::Main).await?,
        service: head(ChainRole::Service).await?,
    })
}

/// The bridge entry point a transaction with `selector` calls.
fn call_name(selector: &[u8]) -> String {
    use alloy::sol_types::SolCall as _;
    if selector.is_empty() {
        return "(none)".to_owned();
    }
    let known: [(&[u8; 4], &str); 7] = [
        (
            &Bridge::handleValueTransfersCall::SELECTOR,
            "handleValueTransfers",
        ),
        (
            &Bridge::handleValueTransferCall::SELECTOR,
            "handleValueTransfer",
        ),
        (&Bridge::executeAttestedCall::SELECTOR, "executeAttested"),
        (&Bridge::executeHandlesCall::SELECTOR, "executeHandles"),
        (
            &Bridge::advanceLowerHandleNonceCall::SELECTOR,
            "advanceLowerHandleNonce",
        ),
        (
            &Bridge::executeQueuedReleaseCall::SELECTOR,
            "executeQueuedRelease",
        ),
        (
            &Bridge::cancelValueTransfersCall::SELECTOR,
            "cancelValueTransfers",
        ),
    ];
    known
        .iter()
        .find(|(s, _)| s.as_slice() == selector)
        .map_or_else(
            || format!("0x{}", alloy::hex::encode(selector)),
            |(_, n)| (*n).to_owned(),
        )
}

/// `HandleValueTransfer` events of `role`'s bridge in `blocks`.
async fn handles(
    driver: &Driver,
    role: ChainRole,
    blocks: std::ops::RangeInclusive<u64>,
) -> Result<u64, DevnetError> {
    use alloy::sol_types::SolEvent as _;
    let filter = alloy::rpc::types::Filter::new()
        .address(driver.chain(role).contracts.bridge)
        .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
        .from_block(*blocks.start())
        .to_block(*blocks.end());
    let logs = driver
        .provider(role)?
        .get_logs(&filter)
        .await
        .map_err(|e| DevnetError::chain("eth_getLogs", e))?;
    Ok(logs.iter().filter(|l| !l.removed).count() as u64)
}

/// One row as a line of the table.
pub fn render_row(r: &SteadyRow) -> String {
    format!(
        "  {} of {}, {:<12} {:>5.1}/s per lane: {:>5} transfers in {:>4.0} s  {:>7.0} gas/transfer  {:>5.1} transfers/tx  receipt -> handled p50 {:.2}s p99 {:.2}s  {} reverted  end state {}",
        r.threshold,
        r.operators,
        r.mode,
        r.per_lane_rate,
        r.transfers,
        r.seconds,
        r.gas_per_transfer,
        r.transfers_per_transaction,
        r.latency_p50,
        r.latency_p99,
        r.reverted,
        if r.end_state_ok { "ok" } else { "BROKEN" }
    ) + &r
        .by_call
        .iter()
        .map(|(call, (n, gas))| format!("\n      {call:<24} {n:>5} tx  {gas:>7.0} gas/transfer"))
        .collect::<String>()
}
