//! `multibridge-devnet bench-modes`: votes beside attested batches (issue 36) in one run, for
//! each committee size asked (default 2 of 3, 3 of 5, 5 of 7): per mode a fresh devnet (1 s
//! blocks, confirmations 1, standalone relays), single-transfer latency, then a backlog of native
//! requests and one of ERC-20 requests on main-to-service, each drained with the relays started
//! on it. Per asset: the gas of every operator transaction to the destination bridge per handled
//! transfer, beside what a direct transfer of the same asset to the same kind of recipient (one
//! that already holds it) costs, the rate against the destination's capacity for that gas, and
//! the transactions that reverted.

use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use multibridge_config::VotingMode;
use multibridge_contracts::{ChainRole, Lane, TestToken};
use serde::Serialize;

use super::transfers::{block_time_of, mean_fullness, percentile, single_latencies};
use crate::error::DevnetError;
use crate::{Devnet, DevnetOptions, Driver};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ModesOptions {
    /// (operators, threshold) per committee.
    pub committees: Vec<(u32, u64)>,
    /// The modes to run for each committee, in order.
    pub modes: Vec<VotingMode>,
    /// Single transfers timed per mode.
    pub latency_samples: usize,
    /// Native requests in the backlog.
    pub native_burst: usize,
    /// ERC-20 requests in the backlog.
    pub erc20_burst: usize,
    /// Steady rows ([`super::steady`]): transfers per second per lane, for the first committee
    /// in each mode (empty: none).
    pub rates: Vec<f64>,
    /// Seconds the users send in each steady row (0: no steady rows).
    pub steady_secs: u64,
}

/// One asset's drain.
#[derive(Debug, Clone, Serialize)]
pub struct Drain {
    /// Requests handled.
    pub transfers: usize,
    /// Operator transactions to the destination bridge in the window.
    pub transactions: usize,
    /// Their gas per handled transfer.
    pub gas_per_transfer: f64,
    /// A direct transfer of the asset to a recipient that already holds it (one transaction).
    pub direct_transfer_gas: u64,
    /// `gas_per_transfer - direct_transfer_gas`: what the bridge adds.
    pub overhead: f64,
    /// Handled per second over the window of the handles.
    pub per_second: f64,
    /// The destination's capacity for that gas (block gas limit / gas per transfer / block time).
    pub capacity_per_second: f64,
    /// `per_second / capacity_per_second`.
    pub ratio: f64,
    /// Transfers' worth of bridge gas per second over the blocks while a backlog remained:
    /// every block of the window but the last, the one that empties the backlog (its remainder
    /// is less than a block's worth, so it cannot be full whatever the relay does); counted as
    /// those blocks' bridge gas over the drain's gas per transfer (votes land blocks before the
    /// handle they complete), over the seconds between those blocks' timestamps.
    pub steady_per_second: f64,
    /// The share of the destination's block space the bridge used while a backlog remained —
    /// the bridge gas of every block of the window but the last over those blocks' gas limits,
    /// the blocks counted by number. The destination's capacity is what its blocks can hold; a
    /// block that came late (anvil's interval miner slips on a loaded machine: one extra second
    /// in a 30-block drain at 5 of 7) held no more for it.
    pub steady_ratio: f64,
    /// `steady_per_second / capacity_per_second`: the same work against the seconds the
    /// blocks' timestamps span, so a block that came late counts as capacity unused.
    pub steady_ratio_by_time: f64,
    /// The throughput goal's figure: as `steady_ratio` without the drain's first block either —
    /// the blocks strictly inside the drain, while relays that are running have a backlog. The
    /// first block is the relays' restart (they were started on the backlog and index, sign and
    /// collect it), sealed at whatever phase of the block clock that reached: votes show it
    /// too, and `first_block` reports it. `None` under three blocks.
    pub interior_ratio: Option<f64>,
    /// The share of the drain's first block the bridge used (the restart above).
    pub first_block: f64,
    /// Mean share of the block gas limit used over the window.
    pub block_fullness: f64,
    /// The share of each block of the window, first to last.
    pub fullness_by_block: Vec<f64>,
    /// Operator transactions to the bridge that reverted.
    pub reverted: usize,
}

/// One committee in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct ModeRow {
    /// Operators.
    pub operators: u32,
    /// Threshold.
    pub threshold: u64,
    /// `votes` or `attestations`.
    pub mode: String,
    /// Latency p50, seconds (request receipt → handle seen).
    pub latency_p50: f64,
    /// Latency p99.
    pub latency_p99: f64,
    /// The goal: (confirmations + 1) × block time + 0.5 s.
    pub latency_goal: f64,
    /// Native coin.
    pub native: Drain,
    /// ERC-20 (the devnet's burn/mint test token on the service chain).
    pub erc20: Drain,
}

/// Every row, and per committee attested ÷ votes.
#[derive(Debug, Clone, Serialize)]
pub struct ModesReport {
    /// The rows, votes then attestations per committee.
    pub rows: Vec<ModeRow>,
    /// Per committee: (operators, threshold, native ratio, ERC-20 ratio) of gas per transfer.
    pub gas_ratios: Vec<(u32, u64, f64, f64)>,
    /// The steady rows: the first committee per mode at each rate.
    pub steady: Vec<super::steady::SteadyRow>,
}

const BLOCK_TIME: f64 = 1.0;
const CONFIRMATIONS: u64 = 1;

/// Run every committee in both modes under `dir`.
pub async fn run(
    dir: &std::path::Path,
    options: &ModesOptions,
) -> Result<ModesReport, DevnetError> {
    let mut rows = Vec::new();
    let mut gas_ratios = Vec::new();
    for &(operators, threshold) in &options.committees {
        let mut pair = Vec::new();
        for &mode in &options.modes {
            let sub = dir.join(format!("{operators}-of-{}-{}", threshold, mode.as_str()));
            let _ = std::fs::remove_dir_all(&sub);
            let row = run_one(&sub, operators, threshold, mode, options).await?;
            eprintln!("{}", render_row(&row));
            pair.push(row);
        }
        let of = |mode: VotingMode| pair.iter().find(|r| r.mode == mode.as_str());
        if let (Some(votes), Some(attested)) = (of(VotingMode::Votes), of(VotingMode::Attestations))
        {
            let ratio = |a: f64, v: f64| if v > 0.0 { a / v } else { 0.0 };
            gas_ratios.push((
                operators,
                threshold,
                ratio(
                    attested.native.gas_per_transfer,
                    votes.native.gas_per_transfer,
                ),
                ratio(
                    attested.erc20.gas_per_transfer,
                    votes.erc20.gas_per_transfer,
                ),
            ));
        }
        rows.extend(pair);
    }
    let mut steady = Vec::new();
    if let Some(&committee) = options
        .committees
        .first()
        .filter(|_| options.steady_secs > 0)
    {
        for &mode in &options.modes {
            for (i, &rate) in options.rates.iter().enumerate() {
                let sub = dir.join(format!("steady-{}-{rate}", mode.as_str()));
                let seed = 20_261_127u64.saturating_add(i as u64);
                let row =
                    super::steady::run_one(&sub, committee, mode, rate, options.steady_secs, seed)
                        .await?;
                eprintln!("{}", super::steady::render_row(&row));
                steady.push(row);
            }
        }
    }
    Ok(ModesReport {
        rows,
        gas_ratios,
        steady,
    })
}

async fn run_one(
    dir: &std::path::Path,
    operators: u32,
    threshold: u64,
    mode: VotingMode,
    options: &ModesOptions,
) -> Result<ModeRow, DevnetError> {
    let mut devnet = Devnet::start(DevnetOptions {
        operators,
        threshold,
        etcd_members: 0,
        relays: true,
        users: 8,
        block_time: Some(BLOCK_TIME),
        confirmations: CONFIRMATIONS,
        voting_mode: mode,
        backup_every: None,
        ..DevnetOptions::new(dir)
    })
    .await?;
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let to = Address::repeat_byte(0xbe);

    // Warm up: every relay running, the recipient holds both assets on the service chain.
    let warm = driver.request_native(lane, 0, to, U256::from(1)).await?;
    let token = driver.request_erc20(lane, 0, to, U256::from(1)).await?;
    crate::harness::invariants::wait_handled_below(
        &driver,
        lane,
        warm.nonce.max(token.nonce).saturating_add(1),
        Duration::from_secs(120),
    )
    .await?;

    let latencies = single_latencies(&driver, lane, to, options.latency_samples).await?;

    let native_direct = direct_native(&driver, to).await?;
    let native = drain(
        &mut devnet,
        &driver,
        Asset::Native,
        options.native_burst,
        native_direct,
    )
    .await?;
    let erc20_direct = direct_erc20(&driver).await?;
    let erc20 = drain(
        &mut devnet,
        &driver,
        Asset::Erc20,
        options.erc20_burst,
        erc20_direct,
    )
    .await?;
    Ok(ModeRow {
        operators,
        threshold,
        mode: mode.as_str().to_owned(),
        latency_p50: percentile(&latencies, 50.0),
        latency_p99: percentile(&latencies, 99.0),
        latency_goal: (CONFIRMATIONS as f64 + 1.0) * BLOCK_TIME + 0.5,
        native,
        erc20,
    })
}

/// The base fee a drain starts from on the destination (wei).
///
/// Only the bridge transacts on the devnet, so a drain's full blocks raise the base fee by about
/// 11 % a block (EIP-1559 at 96 % of the gas limit). From anvil's 1 gwei that passes the relays'
/// fee cap (the devnet's `max_fee_gwei` = 1,000) after some 64 blocks, and a 5-of-7 votes drain
/// is 150: its tail then alternated empty blocks (anvil: "max fee per gas less than block base
/// fee") with blocks of whatever fit under the cap, which is the fee policy of the devnet, not
/// the relays' throughput. From 1 wei, 150 full blocks end near 0.01 gwei.
const DRAIN_BASE_FEE_WEI: u64 = 1;

/// Set the destination's next base fee to [`DRAIN_BASE_FEE_WEI`] (`anvil_setNextBlockBaseFeePerGas`).
pub(crate) async fn floor_base_fee(dest: &impl Provider) -> Result<(), DevnetError> {
    dest.raw_request::<_, serde_json::Value>(
        "anvil_setNextBlockBaseFeePerGas".into(),
        (U256::from(DRAIN_BASE_FEE_WEI),),
    )
    .await
    .map_err(|e| DevnetError::chain("anvil_setNextBlockBaseFeePerGas", e))?;
    Ok(())
}

#[derive(Clone, Copy)]
enum Asset {
    Native,
    Erc20,
}

/// Gas of a plain native transfer on the service chain to `to` (which holds coin already).
async fn direct_native(driver: &Driver, to: Address) -> Result<u64, DevnetError> {
    let user = driver.user(7)?;
    let provider = driver.wallet_provider(ChainRole::Service, &user)?;
    let tx = TransactionRequest::default()
        .with_to(to)
        .with_value(U256::from(1));
    let receipt = provider
        .send_transaction(tx)
        .await
        .map_err(|e| DevnetError::chain("send a direct native transfer", e))?
        .get_receipt()
        .await
        .map_err(|e| DevnetError::chain("receipt of a direct native transfer", e))?;
    Ok(receipt.gas_used)
}

/// Gas of an ERC-20 `transfer` of the devnet's test token to a holder (on the main chain,
/// where users hold it: the same contract as the service chain's token).
async fn direct_erc20(driver: &Driver) -> Result<u64, DevnetError> {
    let provider = driver.wallet_provider(ChainRole::Main, &driver.user(7)?)?;
    let token = TestToken::new(driver.chain(ChainRole::Main).contracts.token, provider);
    let holder = driver.user(6)?.address();
    let receipt = token
        .transfer(holder, U256::from(1))
        .send()
        .await
        .map_err(|e| DevnetError::chain("send a direct token transfer", e))?
        .get_receipt()
        .await
        .map_err(|e| DevnetError::chain("receipt of a direct token transfer", e))?;
    Ok(receipt.gas_used)
}

/// Stop the relays, put `count` requests of `asset` on the source, start the relays and
/// measure the drain.
async fn drain(
    devnet: &mut Devnet,
    driver: &Driver,
    asset: Asset,
    count: usize,
    direct_transfer_gas: u64,
) -> Result<Drain, DevnetError> {
    let lane = Lane::MainToService;
    let to = Address::repeat_byte(0xbe);
    for op in devnet.operators() {
        if let Some(relay) = devnet.relay(op) {
            relay.kill()?;
        }
    }
    let dest = driver.provider(ChainRole::Service)?;
    let dest_from = dest
        .get_block_number()
        .await
        .map_err(|e| DevnetError::chain("eth_blockNumber", e))?
        .saturating_add(1);
    let users = 4usize;
    let per_user = count.div_ceil(users);
    let bursts = futures::future::join_all((0..users).map(|u| async move {
        match asset {
            Asset::Native => {
                driver
                    .request_native_burst(lane, u.saturating_add(1), to, U256::from(1), per_user)
                    .await
            }
            Asset::Erc20 => {
                driver
                    .request_erc20_burst(lane, u.saturating_add(1), to, U256::from(1), per_user)
                    .await
            }
        }
    }))
    .await;
    let mut requests = Vec::new();
    for burst in bursts {
        requests.extend(burst?);
    }
    let max_nonce = requests.iter().map(|r| r.nonce).max().unwrap_or_default();
    floor_base_fee(&dest).await?;
    for op in devnet.operators() {
        devnet.start_relay(op)?;
    }
    crate::harness::invariants::wait_handled_below(
        driver,
        lane,
        max_nonce.saturating_add(1),
        Duration::from_secs(300),
    )
    .await?;
    let dest_to = dest
        .get_block_number()
        .await
        .map_err(|e| DevnetError::chain("eth_blockNumber", e))?;
    let operators = operator_addresses(devnet, driver);
    let sent =
        operator_transactions(driver, ChainRole::Service, &operators, dest_from..=dest_to).await?;
    let transactions = sent.len();
    let reverted = sent.iter().filter(|t| !t.ok).count();
    let gas: u128 = sent.iter().map(|t| u128::from(t.gas_used)).sum();
    let (first_block, last_block) = (sent.first().map(|t| t.block), sent.last().map(|t| t.block));
    // The bridge gas of each block of the window, in block order.
    let mut gas_by_block: Vec<(u64, u128)> = Vec::new();
    for t in &sent {
        match gas_by_block.last_mut() {
            Some((block, gas)) if *block == t.block => {
                *gas = gas.saturating_add(u128::from(t.gas_used));
            }
            _ => gas_by_block.push((t.block, u128::from(t.gas_used))),
        }
    }
    let transfers = requests.len();
    let gas_per_transfer = gas as f64 / transfers.max(1) as f64;
    let (first_block, last_block) = (
        first_block.unwrap_or(dest_to),
        last_block.unwrap_or(dest_to),
    );
    let first_time = block_time_of(driver, ChainRole::Service, first_block).await?;
    // Seconds from the first block of the drain to the end of `block`.
    let seconds_to = async |block: u64| -> Result<f64, DevnetError> {
        Ok(block_time_of(driver, ChainRole::Service, block)
            .await?
            .saturating_sub(first_time) as f64
            + BLOCK_TIME)
    };
    let seconds = seconds_to(last_block).await?;
    let block_gas_limit = dest
        .get_block_by_number(BlockNumberOrTag::Latest)
        .await
        .map_err(|e| DevnetError::chain("eth_getBlockByNumber", e))?
        .map(|b| b.header.gas_limit)
        .unwrap_or_default();
    let capacity = if gas_per_transfer > 0.0 {
        block_gas_limit as f64 / gas_per_transfer / BLOCK_TIME
    } else {
        0.0
    };
    let per_second = transfers as f64 / seconds;
    // Transfers' worth of bridge gas (at the drain's mean gas per transfer) in every block but
    // the last: the work done while a backlog remained, whichever block a handle fell in.
    let steady_per_second = match gas_by_block.as_slice() {
        [_, .., (before_last, _), _] => {
            let steady_gas: u128 = gas_by_block.iter().rev().skip(1).map(|(_, g)| g).sum();
            let steady = steady_gas as f64 / gas_per_transfer.max(1.0);
            steady / seconds_to(*before_last).await?
        }
        _ => per_second,
    };
    let steady_ratio = match gas_by_block.as_slice() {
        [until @ .., _] if !until.is_empty() => block_share(until, last_block, block_gas_limit),
        _ => block_share(&gas_by_block, last_block.saturating_add(1), block_gas_limit),
    };
    let interior_ratio = match gas_by_block.as_slice() {
        [_, inner @ .., _] if !inner.is_empty() => {
            Some(block_share(inner, last_block, block_gas_limit))
        }
        _ => None,
    };
    let (block_fullness, _, fullness_by_block) =
        mean_fullness(driver, first_block, last_block).await?;
    Ok(Drain {
        transfers,
        transactions,
        gas_per_transfer,
        direct_transfer_gas,
        overhead: gas_per_transfer - direct_transfer_gas as f64,
        per_second,
        capacity_per_second: capacity,
        ratio: if capacity > 0.0 {
            per_second / capacity
        } else {
            0.0
        },
        steady_per_second,
        steady_ratio,
        first_block: gas_by_block.first().map_or(0.0, |&(n, _)| {
            block_share(&gas_by_block, n.saturating_add(1), block_gas_limit)
        }),
        steady_ratio_by_time: if capacity > 0.0 {
            steady_per_second / capacity
        } else {
            0.0
        },
        interior_ratio,
        block_fullness,
        fullness_by_block,
        reverted,
    })
}

/// The operators' addresses of `devnet`.
pub(crate) fn operator_addresses(devnet: &Devnet, driver: &Driver) -> Vec<Address> {
    devnet
        .operators()
        .filter_map(|i| driver.operator(i).ok().map(|k| k.address()))
        .collect()
}

/// One transaction an operator sent to a bridge, as mined.
#[derive(Debug, Clone)]
pub(crate) struct OperatorTx {
    /// Its block.
    pub block: u64,
    /// Its calldata's selector (empty without calldata).
    pub selector: Vec<u8>,
    /// Gas used.
    pub gas_used: u64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// Every transaction of `operators` to `role`'s bridge in `blocks`, with its receipt, in block
/// order (the drains and the steady rows count operator gas with it).
pub(crate) async fn operator_transactions(
    driver: &Driver,
    role: ChainRole,
    operators: &[Address],
    blocks: std::ops::RangeInclusive<u64>,
) -> Result<Vec<OperatorTx>, DevnetError> {
    use alloy::consensus::Transaction as _;
    let provider = driver.provider(role)?;
    let bridge = driver.chain(role).contracts.bridge;
    let mut sent = Vec::new();
    for number in blocks {
        let Some(block) = provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .full()
            .await
            .map_err(|e| DevnetError::chain("eth_getBlockByNumber", e))?
        else {
            continue;
        };
        for t in block.transactions.txns() {
            if t.to() != Some(bridge) || !operators.contains(&t.inner.signer()) {
                continue;
            }
            let Some(receipt) = provider
                .get_transaction_receipt(*t.inner.hash())
                .await
                .map_err(|e| DevnetError::chain("eth_getTransactionReceipt", e))?
            else {
                continue;
            };
            sent.push(OperatorTx {
                block: number,
                selector: t.input().get(..4).unwrap_or_default().to_vec(),
                gas_used: receipt.gas_used,
                ok: receipt.status(),
            });
        }
    }
    Ok(sent)
}

/// The share of block space the bridge used in the blocks from the first of `blocks` (number,
/// bridge gas) up to, not including, `end`: blocks without a bridge transaction in between count
/// as empty.
fn block_share(blocks: &[(u64, u128)], end: u64, gas_limit: u64) -> f64 {
    let Some(&(first, _)) = blocks.first() else {
        return 0.0;
    };
    let gas: u128 = blocks
        .iter()
        .filter(|(n, _)| *n < end)
        .map(|(_, g)| g)
        .sum();
    let capacity = u128::from(end.saturating_sub(first)).saturating_mul(u128::from(gas_limit));
    if capacity == 0 {
        0.0
    } else {
        gas as f64 / capacity as f64
    }
}

fn render_row(r: &ModeRow) -> String {
    let drain = |name: &str, d: &Drain| {
        format!(
            "    {name:<6} {:>6} transfers  {:>8.0} gas/transfer (direct {:>6}, overhead {:>+7.0})  ratio {} of the blocks' capacity inside the drain (with its first block {:.2}, that block {:.2}; by time {:.2}: {:.1}/s of {:.1}/s; whole drain {:.2}, blocks {:.0}% full)  {} reverted",
            d.transfers,
            d.gas_per_transfer,
            d.direct_transfer_gas,
            d.overhead,
            d.interior_ratio
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
            d.steady_ratio,
            d.first_block,
            d.steady_ratio_by_time,
            d.steady_per_second,
            d.capacity_per_second,
            d.ratio,
            d.block_fullness * 100.0,
            d.reverted
        )
    };
    format!(
        "  {} of {}, {}: latency p50 {:.2}s p99 {:.2}s (goal p50 <= {:.2}s)\n{}\n{}",
        r.threshold,
        r.operators,
        r.mode,
        r.latency_p50,
        r.latency_p99,
        r.latency_goal,
        drain("native", &r.native),
        drain("erc20", &r.erc20)
    )
}

/// The report as a table.
pub fn render(report: &ModesReport) -> String {
    let mut out = String::from(
        "multibridge bench-modes: votes beside attested batches, 1 s blocks, confirmations 1, main-to-service\n\n",
    );
    for row in &report.rows {
        out.push_str(&render_row(row));
        out.push('\n');
    }
    out.push_str("\ngas per transfer, attested / votes (goal <= 0.5):\n");
    for (operators, threshold, native, erc20) in &report.gas_ratios {
        out.push_str(&format!(
            "  {threshold} of {operators}: native {native:.2}, erc20 {erc20:.2}\n"
        ));
    }
    if !report.steady.is_empty() {
        out.push_str(
            "\nsteady load: users at a fixed rate on both lanes (native and ERC-20 half each), gas of every operator transaction per transfer handled:\n",
        );
        for row in &report.steady {
            out.push_str(&super::steady::render_row(row));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::block_share;

    #[test]
    fn block_share_counts_blocks_by_number_and_a_block_without_bridge_gas_as_empty() {
        let limit = 100;
        // Blocks 10 and 12 hold bridge gas, 11 none; 13 (the last) is left out by `end`.
        let blocks = [(10, 90u128), (12, 96), (13, 40)];
        let share = block_share(&blocks, 13, limit);
        assert!((share - (90.0 + 96.0) / 300.0).abs() < 1e-9, "{share}");
        assert!((block_share(&blocks[..1], 11, limit) - 0.9).abs() < 1e-9);
        assert_eq!(block_share(&[], 5, limit), 0.0);
        assert_eq!(
            block_share(&blocks, 10, limit),
            0.0,
            "no block before the end"
        );
    }
}
