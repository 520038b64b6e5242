//! The invariants of DESIGN.md §9 as checks the end-to-end tests share: exactly once (handle
//! events per nonce), one vote per operator per nonce, and waiting for a lane to drain.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane};

use crate::{DevnetError, Driver};

/// Every `E` event the destination bridge of `lane` emitted since its deployment.
async fn destination_events<E: SolEvent>(
    driver: &Driver,
    lane: Lane,
) -> Result<Vec<alloy::rpc::types::Log>, DevnetError> {
    let from = driver.chain(lane.destination()).contracts.bridge_block;
    destination_events_in::<E>(driver, lane, from, None).await
}

/// The `E` events of the destination bridge of `lane` in blocks `from..=to` (`None`: latest).
async fn destination_events_in<E: SolEvent>(
    driver: &Driver,
    lane: Lane,
    from: u64,
    to: Option<u64>,
) -> Result<Vec<alloy::rpc::types::Log>, DevnetError> {
    bridge_events_in::<E>(driver, lane.destination(), from, to).await
}

/// Every `E` event the bridge on `role` emitted since its deployment.
pub async fn bridge_events<E: SolEvent>(
    driver: &Driver,
    role: ChainRole,
) -> Result<Vec<alloy::rpc::types::Log>, DevnetError> {
    let from = driver.chain(role).contracts.bridge_block;
    bridge_events_in::<E>(driver, role, from, None).await
}

/// The `E` events of the bridge on `role` in blocks `from..=to` (`None`: latest).
async fn bridge_events_in<E: SolEvent>(
    driver: &Driver,
    role: ChainRole,
    from: u64,
    to: Option<u64>,
) -> Result<Vec<alloy::rpc::types::Log>, DevnetError> {
    let mut filter = Filter::new()
        .address(driver.chain(role).contracts.bridge)
        .event_signature(E::SIGNATURE_HASH)
        .from_block(from);
    if let Some(to) = to {
        filter = filter.to_block(to);
    }
    driver
        .provider(role)?
        .get_logs(&filter)
        .await
        .map_err(|e| DevnetError::chain(format!("eth_getLogs of the {role:?} bridge"), e))
}

/// The nonces of the `HandleValueTransfer` events on the destination of `lane` in blocks
/// `from..=to`, in log order (a nonce twice means it was handled twice).
pub async fn handled_nonces_in(
    driver: &Driver,
    lane: Lane,
    from: u64,
    to: Option<u64>,
) -> Result<Vec<u64>, DevnetError> {
    destination_events_in::<Bridge::HandleValueTransfer>(driver, lane, from, to)
        .await?
        .iter()
        .map(|log| {
            log.log_decode::<Bridge::HandleValueTransfer>()
                .map(|l| l.inner.data.nonce)
                .map_err(|e| DevnetError::Invalid(format!("undecodable HandleValueTransfer: {e}")))
        })
        .collect()
}

/// Transactions of operator `operator` on `role` sent but not mined (pending − latest count).
pub async fn queued_transactions(
    driver: &Driver,
    role: ChainRole,
    operator: usize,
) -> Result<u64, DevnetError> {
    let (latest, pending) = transaction_counts(driver, role, operator).await?;
    Ok(pending.saturating_sub(latest))
}

/// Operator `operator`'s transaction counts on `role`: (mined, mined and pending).
async fn transaction_counts(
    driver: &Driver,
    role: ChainRole,
    operator: usize,
) -> Result<(u64, u64), DevnetError> {
    let address = driver.operator(operator)?.address();
    let provider = driver.provider(role)?;
    let latest = provider
        .get_transaction_count(address)
        .latest()
        .await
        .map_err(|e| DevnetError::chain("eth_getTransactionCount", e))?;
    let pending = provider
        .get_transaction_count(address)
        .pending()
        .await
        .map_err(|e| DevnetError::chain("eth_getTransactionCount", e))?;
    Ok((latest, pending))
}

/// No nonce gap: wait until every transaction operator `operator` had queued on `role` at the
/// first look is mined (a gap, or a transaction the node will not mine, keeps one queued
/// forever). Transactions sent meanwhile do not count: on a lane whose traffic still runs a
/// vote is pending nearly all the time, each sent the moment the block that mines the last
/// one comes.
pub async fn wait_no_nonce_gap(
    driver: &Driver,
    role: ChainRole,
    operator: usize,
    timeout: Duration,
) -> Result<(), DevnetError> {
    let started = Instant::now();
    let (_, queued_until) = transaction_counts(driver, role, operator).await?;
    loop {
        let (latest, pending) = transaction_counts(driver, role, operator).await?;
        if latest >= queued_until || pending <= latest {
            return Ok(());
        }
        if started.elapsed() > timeout {
            let queued = pending.saturating_sub(latest);
            return Err(DevnetError::Invalid(format!(
                "operator {operator} still has {queued} transaction(s) queued on {role} after {timeout:?} (mined nonce {latest}, queued up to {queued_until} at the first look)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `HandleValueTransfer` events per nonce on the destination of `lane` (invariant 1: each must
/// be exactly 1 once handled).
pub async fn handle_counts(
    driver: &Driver,
    lane: Lane,
) -> Result<HashMap<u64, usize>, DevnetError> {
    let from = driver.chain(lane.destination()).contracts.bridge_block;
    let mut counts = HashMap::new();
    for nonce in handled_nonces_in(driver, lane, from, None).await? {
        *counts.entry(nonce).or_insert(0) += 1;
    }
    Ok(counts)
}

/// `VoteCast` events per (nonce, operator) on the destination of `lane` (invariant 3: at most 1).
pub async fn votes_per_operator(
    driver: &Driver,
    lane: Lane,
) -> Result<HashMap<(u64, Address), usize>, DevnetError> {
    let logs = destination_events::<Bridge::VoteCast>(driver, lane).await?;
    let mut votes = HashMap::new();
    for log in logs {
        let e = log
            .log_decode::<Bridge::VoteCast>()
            .map_err(|e| DevnetError::Invalid(format!("undecodable VoteCast: {e}")))?
            .inner
            .data;
        *votes.entry((e.nonce, e.operator)).or_insert(0) += 1;
    }
    Ok(votes)
}

/// Wait until every nonce in `nonces` of `lane` is handled; fails at once if any is handled
/// twice, or after `timeout`. Returns the time it took.
pub async fn wait_all_handled(
    driver: &Driver,
    lane: Lane,
    nonces: Range<u64>,
    timeout: Duration,
) -> Result<Duration, DevnetError> {
    let started = Instant::now();
    loop {
        let counts = handle_counts(driver, lane).await?;
        if let Some((nonce, n)) = counts.iter().find(|(_, n)| **n > 1) {
            return Err(DevnetError::Invalid(format!(
                "{lane} nonce {nonce} handled {n} times"
            )));
        }
        let missing: Vec<u64> = nonces.clone().filter(|n| !counts.contains_key(n)).collect();
        if missing.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            return Err(DevnetError::Invalid(format!(
                "{lane}: {} of {} nonces not handled within {timeout:?} (first {:?})",
                missing.len(),
                nonces.end.saturating_sub(nonces.start),
                missing.iter().take(5).collect::<Vec<_>>()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Most nonces asked of `votingStatus` in one call.
const STATUS_CHUNK: u64 = 1_024;

/// Wait until every nonce below `upto` of `lane` is handled: the destination's
/// `lowerHandleNonce` reached it, or `votingStatus` says each nonce from it up is handled (the
/// lower nonce may lag behind handles out of order). Returns when it was seen.
pub async fn wait_handled_below(
    driver: &Driver,
    lane: Lane,
    upto: u64,
    timeout: Duration,
) -> Result<Instant, DevnetError> {
    let destination = lane.destination();
    let bridge = Bridge::new(
        driver.chain(destination).contracts.bridge,
        driver.provider(destination)?,
    );
    let deadline = Instant::now() + timeout;
    loop {
        let lower = bridge
            .lowerHandleNonce()
            .call()
            .await
            .map_err(|e| DevnetError::chain("lowerHandleNonce", e))?;
        // In chunks, as the relay reads it: one call over a backlog of tens of thousands runs
        // out of the node's call gas.
        let mut done = true;
        let mut from = lower;
        while from < upto {
            let to = from.saturating_add(STATUS_CHUNK).min(upto);
            let status = bridge
                .votingStatus((from..to).collect(), Address::ZERO)
                .call()
                .await
                .map_err(|e| DevnetError::chain("votingStatus", e))?;
            if !status.handled.iter().all(|h| *h) {
                done = false;
                break;
            }
            from = to;
        }
        if done {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(DevnetError::Invalid(format!(
                "{lane}: requests below {upto} not all handled within {timeout:?} (lowerHandleNonce {lower})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long a nonce the bridge's state already calls handled may be missing from
/// `eth_getLogs`: a call at `latest` that reaches anvil while it mines a block waits for the
/// mining lock and then reads the state *after* that block, before the block and its logs are
/// stored (anvil's do_mine_block writes state first, storage second). With full blocks of
/// votes the window is wide: CI saw `votingStatus` say handled and the logs to `latest` lack
/// the `HandleValueTransfer`.
const LOG_SETTLE: Duration = Duration::from_secs(10);

/// [`handle_counts`] of `lane` once every nonce of `handled` (nonces the bridge's state already
/// calls handled) is in the node's logs, or as they are after [`LOG_SETTLE`].
pub async fn settled_handle_counts(
    driver: &Driver,
    lane: Lane,
    handled: impl IntoIterator<Item = u64> + Clone,
) -> Result<HashMap<u64, usize>, DevnetError> {
    let settle = Instant::now() + LOG_SETTLE;
    loop {
        let counts = handle_counts(driver, lane).await?;
        let missing = handled
            .clone()
            .into_iter()
            .any(|nonce| !counts.contains_key(&nonce));
        if !missing || Instant::now() >= settle {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Exactly once and one vote per operator over `nonces` of `lane`, on a drained lane. A nonce
/// handled twice fails; one not in the logs after [`LOG_SETTLE`] too.
pub async fn assert_exactly_once(
    driver: &Driver,
    lane: Lane,
    nonces: Range<u64>,
) -> Result<(), DevnetError> {
    let counts = settled_handle_counts(driver, lane, nonces.clone()).await?;
    if let Some((nonce, n)) = nonces
        .map(|nonce| (nonce, counts.get(&nonce).copied().unwrap_or(0)))
        .find(|(_, n)| *n != 1)
    {
        return Err(DevnetError::Invalid(format!(
            "{lane} nonce {nonce} handled {n} times"
        )));
    }
    if let Some(((nonce, operator), n)) = votes_per_operator(driver, lane)
        .await?
        .into_iter()
        .find(|(_, n)| *n > 1)
    {
        return Err(DevnetError::Invalid(format!(
            "{lane} nonce {nonce}: operator {operator} voted {n} times"
        )));
    }
    Ok(())
}

/// Print the last `lines` lines of every relay log under `devnet_dir` (for a failing test):
/// `relay-1` to `relay-<relays>` and every other `relay-*` log there (replicas, relays a test
/// started itself), leaving out the indexer's per-block lines, which would fill the tail.
pub fn dump_relay_logs(devnet_dir: &Path, relays: usize, lines: usize) {
    keep_logs(devnet_dir);
    for (name, log) in relay_logs(devnet_dir, relays) {
        let tail: Vec<_> = log
            .lines()
            .rev()
            .filter(|l| !l.contains("lane::indexing"))
            .take(lines)
            .collect();
        eprintln!("--- {name} (last lines, newest first)\n{}", tail.join("\n"));
    }
}

/// With `MULTIBRIDGE_KEEP_LOGS=<dir>` set, copy every log of the devnet in `devnet_dir` (relays,
/// chains, etcd) to a fresh directory under `<dir>` and say where: a failing test's devnet is
/// deleted with its temporary directory, and the dump above shows only each log's last lines.
fn keep_logs(devnet_dir: &Path) {
    let Some(root) = std::env::var_os("MULTIBRIDGE_KEEP_LOGS") else {
        return;
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let to = Path::new(&root).join(format!("logs-{stamp}-{}", std::process::id()));
    let copied = std::fs::create_dir_all(&to).and_then(|()| {
        // The relays' and chains' logs, and etcd's beside the devnet's other files.
        for dir in [devnet_dir.join("logs"), devnet_dir.to_path_buf()] {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.is_file() && path.extension().is_some_and(|e| e == "log") {
                    let name = path.file_name().unwrap_or_default();
                    std::fs::copy(&path, to.join(name))?;
                }
            }
        }
        Ok(())
    });
    match copied {
        Ok(()) => eprintln!("--- every log of the devnet kept in {}", to.display()),
        Err(e) => eprintln!(
            "--- the devnet's logs could not be kept in {}: {e}",
            to.display()
        ),
    }
}

/// Every relay log of the devnet in `devnet_dir` by relay name (`relay-1` …), the first
/// `relays` in order, then the others (replicas) by name.
pub fn relay_logs(devnet_dir: &Path, relays: usize) -> Vec<(String, String)> {
    let logs = devnet_dir.join("logs");
    let mut names: Vec<String> = (1..=relays).map(|i| format!("relay-{i}.log")).collect();
    if let Ok(entries) = std::fs::read_dir(&logs) {
        let mut others: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("relay-") && n.ends_with(".log") && !names.contains(n))
            .collect();
        others.sort();
        names.extend(others);
    }
    names
        .into_iter()
        .map(|name| {
            let log = std::fs::read_to_string(logs.join(&name)).unwrap_or_default();
            (name.trim_end_matches(".log").to_owned(), log)
        })
        .collect()
}
