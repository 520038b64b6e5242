//! `multibridge-devnet bench-join`: how long a new replica takes from its start to "warm" (its
//! store indexed up to the lane's history, ready to take over), by replaying the chain and by
//! joining from the latest backup, with histories of real request events on real anvil chains.
//!
//! The history comes from the devnet-only HistoryBridge (`emitHistory`: thousands of real
//! `RequestValueTransfer` events per transaction; `markHandledBelow`: the destination marks them
//! handled), so a 1M-request history takes minutes, not days. One operator, two replicas, a
//! one-member etcd: replica 1 indexes the history and backs up; replica 2 joins twice, first by
//! replay, then wiped and from the backup.

use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::Provider;
use multibridge_contracts::{ChainRole, HistoryBridge, Lane};
use serde::Serialize;

use crate::error::DevnetError;
use crate::harness::devnet::{Devnet, DevnetOptions};
use crate::harness::scrape::metric;

const LANE: Lane = Lane::MainToService;
/// Events per history transaction (~18M gas, under anvil's 30M block gas limit).
const PER_TX: u64 = 5_000;

/// One history size.
#[derive(Debug, Clone, Serialize)]
pub struct JoinRow {
    /// Requests in the history.
    pub history: u64,
    /// Seconds to put the history on chain.
    pub generate_secs: f64,
    /// Seconds the first replica took to index the history.
    pub leader_index_secs: f64,
    /// Seconds the on-demand backup took (CLI round trip).
    pub backup_secs: f64,
    /// The backup's longest single hold of the leader's store (voting waits at most this long).
    pub backup_store_hold_secs: f64,
    /// Bytes of the backup's state object (what a joiner fetches).
    pub state_object_bytes: u64,
    /// Bytes of the backup's archive object (the whole store copy).
    pub archive_object_bytes: u64,
    /// Request rows in the first replica's store before and after compaction.
    pub leader_rows_before: u64,
    /// After.
    pub leader_rows_after: u64,
    /// Seconds from a new replica's start to warm, replaying the chain.
    pub replay_warm_secs: f64,
    /// Seconds from a wiped replica's start to warm, from the latest backup.
    pub backup_warm_secs: f64,
    /// Of which the restore itself (fetch, verify, restore the store).
    pub restore_secs: f64,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct JoinReport {
    /// One row per history size.
    pub rows: Vec<JoinRow>,
    /// The goal: warm from a backup within this many seconds at every size.
    pub goal_backup_warm_secs: f64,
}

/// Run the benchmark for each of `sizes`.
pub async fn run(dir: &Path, sizes: &[u64]) -> Result<JoinReport, DevnetError> {
    let mut rows = Vec::new();
    for size in sizes {
        let sub = dir.join(format!("history-{size}"));
        let _ = std::fs::remove_dir_all(&sub);
        rows.push(one(&sub, *size).await?);
    }
    Ok(JoinReport {
        rows,
        goal_backup_warm_secs: 1.0,
    })
}

fn lane_series(name: &str) -> String {
    format!("{name}{{lane=\"{}\"}}", LANE.as_str())
}

async fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Result<(), DevnetError> {
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DevnetError::NotReady {
                component: what.to_owned(),
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn one(dir: &Path, size: u64) -> Result<JoinRow, DevnetError> {
    let mut devnet = Devnet::start(DevnetOptions {
        operators: 1,
        threshold: 1,
        replicas: 2,
        etcd_members: 1,
        relays: false,
        history_bridge: true,
        max_block_range: 2,
        // Backups on demand only (TOML integers are i64).
        backup_every: Some(1 << 60),
        ..DevnetOptions::new(dir)
    })
    .await?;
    let manifest = devnet.manifest();
    let owner: alloy::signers::local::PrivateKeySigner = manifest
        .owner
        .private_key
        .parse()
        .map_err(|e| DevnetError::Invalid(format!("owner key: {e}")))?;
    let driver = crate::Driver::new(manifest.clone());

    // The history: real request events on the main chain, handled on the service chain.
    let generating = Instant::now();
    let main = driver.wallet_provider(ChainRole::Main, &owner)?;
    let bridge = HistoryBridge::new(manifest.main.contracts.bridge, main.clone());
    let mut left = size;
    let mut last_block = 0;
    while left > 0 {
        let n = left.min(PER_TX);
        let pending = bridge
            .emitHistory(alloy::primitives::U256::from(n), Address::repeat_byte(0x42))
            .gas(29_000_000)
            .send()
            .await
            .map_err(|e| DevnetError::chain("emitHistory", e))?;
        let _: serde_json::Value = main
            .raw_request("evm_mine".into(), ())
            .await
            .map_err(|e| DevnetError::chain("evm_mine", e))?;
        let receipt = pending
            .get_receipt()
            .await
            .map_err(|e| DevnetError::chain("emitHistory receipt", e))?;
        if !receipt.status() {
            return Err(DevnetError::Invalid("emitHistory reverted".into()));
        }
        last_block = receipt.block_number.unwrap_or_default();
        left = left.saturating_sub(n);
    }
    let service = driver.wallet_provider(ChainRole::Service, &owner)?;
    HistoryBridge::new(manifest.service.contracts.bridge, service)
        .markHandledBelow(size)
        .send()
        .await
        .map_err(|e| DevnetError::chain("markHandledBelow", e))?
        .get_receipt()
        .await
        .map_err(|e| DevnetError::chain("markHandledBelow receipt", e))?;
    let generate_secs = generating.elapsed().as_secs_f64();
    let target = last_block.saturating_add(1) as f64;

    // Replica 1 indexes everything and sees it handled.
    let indexing = Instant::now();
    devnet.start_replica(0, 0)?;
    let leader_port = devnet.replica_http_ports[0][0];
    // Indexed through the history is enough: the backup compacts below the destination's
    // lowerHandleNonce whatever this store's statuses say (its voter is still catching up with
    // the handles at 1M; that is not what is measured).
    wait_for(
        "replica 1 indexes the history",
        Duration::from_secs(3_600),
        async || {
            metric(leader_port, &lane_series("multibridge_store_rows"))
                .await
                .unwrap_or(0.0)
                >= size as f64
                && metric(leader_port, &lane_series("multibridge_indexed_block"))
                    .await
                    .unwrap_or(0.0)
                    >= target
        },
    )
    .await?;
    let leader_index_secs = indexing.elapsed().as_secs_f64();
    let leader_rows_before = metric(leader_port, &lane_series("multibridge_store_rows"))
        .await
        .unwrap_or(0.0) as u64;

    // A backup on demand.
    let backing = Instant::now();
    let out = std::process::Command::new(crate::harness::tools::relay_binary()?)
        .args([
            "backup",
            "now",
            "--timeout",
            "3600",
            "--lane",
            LANE.as_str(),
        ])
        .arg("--config")
        .arg(devnet.replica_config_path(0, 0))
        .output()
        .map_err(|e| DevnetError::Invalid(format!("multibridge backup now: {e}")))?;
    if !out.status.success() {
        return Err(DevnetError::Invalid(format!(
            "multibridge backup now: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let backup_secs = backing.elapsed().as_secs_f64();
    wait_for(
        "replica 1's store is compacted",
        Duration::from_secs(60),
        async || {
            metric(leader_port, &lane_series("multibridge_store_rows"))
                .await
                .is_some_and(|r| (r as u64) < leader_rows_before.max(1))
        },
    )
    .await?;
    let leader_rows_after = metric(leader_port, &lane_series("multibridge_store_rows"))
        .await
        .unwrap_or(0.0) as u64;
    let backup_store_hold_secs = metric(
        leader_port,
        &lane_series("multibridge_state_backup_store_hold_seconds"),
    )
    .await
    .unwrap_or(0.0);
    let log = newest_log(&devnet).await?;

    // Replica 2: by replay, then wiped and from the backup.
    let mut config = devnet.replica_config(0, 1)?;
    let joiner_port = devnet.replica_http_ports[0][1];
    let warm = async |devnet: &mut Devnet| -> Result<f64, DevnetError> {
        let started = Instant::now();
        devnet.start_replica(0, 1)?;
        wait_for(
            "replica 2 is warm",
            Duration::from_secs(3_600),
            async || {
                metric(joiner_port, &lane_series("multibridge_indexed_block"))
                    .await
                    .unwrap_or(0.0)
                    >= target
            },
        )
        .await?;
        Ok(started.elapsed().as_secs_f64())
    };
    if let Some(b) = config.backup.as_mut() {
        b.join_from_backup = false;
    }
    devnet.write_replica_config(0, 1, &config)?;
    let replay_warm_secs = warm(&mut devnet).await?;
    devnet
        .replica(0, 1)
        .ok_or_else(|| DevnetError::Invalid("no replica 2".into()))?
        .kill()?;
    devnet.wipe_replica_store(0, 1)?;
    if let Some(b) = config.backup.as_mut() {
        b.join_from_backup = true;
    }
    devnet.write_replica_config(0, 1, &config)?;
    let backup_warm_secs = warm(&mut devnet).await?;
    let joined = format!(
        "multibridge_state_joins_total{{lane=\"{}\",reason=\"\",source=\"backup\"}}",
        LANE.as_str()
    );
    if metric(joiner_port, &joined).await.unwrap_or(0.0) < 1.0 {
        return Err(DevnetError::Invalid(
            "replica 2 did not join from the backup (see its log)".into(),
        ));
    }
    let restore_secs = metric(joiner_port, &lane_series("multibridge_state_join_seconds"))
        .await
        .unwrap_or(0.0);
    Ok(JoinRow {
        history: size,
        generate_secs,
        leader_index_secs,
        backup_secs,
        backup_store_hold_secs,
        state_object_bytes: log.state_data_meta.object.size,
        archive_object_bytes: log.state_data_meta.archive.as_ref().map_or(0, |a| a.size),
        leader_rows_before,
        leader_rows_after,
        replay_warm_secs,
        backup_warm_secs,
        restore_secs,
    })
}

async fn newest_log(devnet: &Devnet) -> Result<multibridge::harness::BackupLog, DevnetError> {
    let config = devnet.operator_config(0)?;
    let key = multibridge::harness::parse_private_key(crate::harness::devnet::DEVNET_BACKUP_SECRET)
        .map_err(|e| DevnetError::Invalid(e.to_string()))?;
    let chains = multibridge_chain::ChainPair::for_command(
        &config.chains,
        multibridge_chain::RetryPolicy::interactive(),
    )
    .map_err(|e| DevnetError::Invalid(e.to_string()))?;
    let registry = config
        .registry
        .as_ref()
        .ok_or_else(|| DevnetError::Invalid("no registry".into()))?
        .address;
    multibridge::harness::newest_log(&config, &chains.main, registry, LANE, &key)
        .await
        .map_err(|e| DevnetError::Invalid(e.to_string()))
}

/// The readable table.
pub fn render(report: &JoinReport) -> String {
    let mut out = format!(
        "{:>9} {:>10} {:>11} {:>9} {:>9} {:>12} {:>12} {:>11} {:>11} {:>10}\n",
        "history",
        "replay s",
        "backup s",
        "restore s",
        "hold ms",
        "state obj",
        "archive obj",
        "rows before",
        "rows after",
        "index s"
    );
    for r in &report.rows {
        out.push_str(&format!(
            "{:>9} {:>10.2} {:>11.2} {:>9.3} {:>9.1} {:>12} {:>12} {:>11} {:>11} {:>10.1}\n",
            r.history,
            r.replay_warm_secs,
            r.backup_warm_secs,
            r.restore_secs,
            r.backup_store_hold_secs * 1e3,
            r.state_object_bytes,
            r.archive_object_bytes,
            r.leader_rows_before,
            r.leader_rows_after,
            r.leader_index_secs,
        ));
    }
    out.push_str(&format!(
        "replay s / backup s: a new replica's start to warm (indexed through the history); goal from a backup <= {:.1} s; hold ms: the backup's longest hold of the leader's store (voting waits at most this long)\n",
        report.goal_backup_warm_secs
    ));
    out
}
