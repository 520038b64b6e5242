//! State backups (issue 15) on a real devnet (anvil, a 3-member etcd, 3 operators × 2 replicas,
//! threshold 3): backups under traffic lose and double nothing and compact the stores; the log in
//! the registry opens with eciesjs; a wiped replica joins from the backup and then leads; losing
//! the majority of an operator's replicas triggers a backup; a backup that cannot be used (digest
//! mismatch, missing object, wrong key) is named and the replica replays the chain instead.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use multibridge::harness::BackupLog;
use multibridge_contracts::{Lane, ServiceRegistry};
use multibridge_devnet::harness::ha::{Traffic, check_drained, leading_replica};
use multibridge_devnet::harness::invariants::dump_relay_logs;
use multibridge_devnet::harness::tools::{relay_binary, workspace_root};
use multibridge_devnet::{DEVNET_BACKUP_SECRET, Devnet, DevnetOptions, Driver};

use crate::{Poll, eventually, leader_of, relay_ready};

const LANE: Lane = Lane::MainToService;
const OP: usize = 0;

/// The value of `name{labels…}` on the relay at `port` (labels in any order).
pub(crate) async fn series(port: u16, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = multibridge_devnet::harness::scrape::metrics_text(port).await?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (inside, value) = rest.strip_prefix('{')?.split_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| inside.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

/// Wait until `name{labels}` on `port` is at least `at_least`.
pub(crate) async fn series_at_least(
    what: &str,
    port: u16,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
    timeout: Duration,
) -> f64 {
    eventually(what, timeout, async || {
        match series(port, name, labels).await {
            Some(v) if v >= at_least => Ok(v),
            other => Err(format!("{name}{labels:?} = {other:?}, want >= {at_least}")),
        }
    })
    .await
}

/// `multibridge backup now` for `lane` with `config`: the version saved. A lease that moved
/// while the request was out, a lease or heartbeat the fence could not prove in time (since the
/// renewal and the heartbeat go at once, either half can close first), or etcd not
/// answering in time (every endpoint timed out: the suite's load) is the command's named error:
/// asked again, as an operator would, a few times.
fn backup_now(config: &Path, lane: Lane) -> u64 {
    let mut attempts = 0;
    let out = loop {
        let out = Command::new(relay_binary().unwrap())
            .args(["backup", "now", "--json", "--timeout", "120", "--lane"])
            .arg(lane.as_str())
            .arg("--config")
            .arg(config)
            .output()
            .unwrap();
        attempts += 1;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let moved = stdout.contains("does not lead the lane")
            || stdout.contains("leader heartbeat not proven")
            || stdout.contains("leader lease not proven valid")
            || stdout.contains("failed on every endpoint");
        if out.status.success() || !moved || attempts >= 4 {
            break out;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success()
        && let Some(dir) = config.parent()
    {
        dump_relay_logs(dir, 6, 40);
    }
    assert!(
        out.status.success(),
        "multibridge backup now failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    answers[0]["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no version in {stdout}"))
}

/// The encrypted log the registry holds for operator `op`'s `lane` service.
async fn stored_log(devnet: &Devnet, op: usize, lane: Lane) -> (u64, Vec<u8>) {
    let config = devnet.operator_config(op).unwrap();
    let id: B256 = multibridge::harness::lane_services(&config)
        .into_iter()
        .find(|s| s.lane == lane)
        .unwrap()
        .id;
    let driver = Driver::new(devnet.manifest());
    let main = driver
        .provider(multibridge_contracts::ChainRole::Main)
        .unwrap();
    let registry = ServiceRegistry::new(config.registry.unwrap().address, main);
    let got = registry.latestBackupLog(id).call().await.unwrap();
    (got.version, got.encryptedLog.to_vec())
}

/// Run `script` with node beside eciesjs (an independent ECIES implementation); its stdout.
fn eciesjs(script: &str) -> Vec<u8> {
    let out = Command::new("node")
        .arg("-e")
        .arg(format!("const e = require('eciesjs'); {script}"))
        .current_dir(workspace_root().join(".tools"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Open `sealed` with eciesjs and parse it.
fn open_with_eciesjs(sealed: &[u8]) -> serde_json::Value {
    let secret = DEVNET_BACKUP_SECRET.trim_start_matches("0x");
    serde_json::from_slice(&eciesjs(&format!(
        "process.stdout.write(Buffer.from(e.decrypt('{secret}', Buffer.from('{}', 'hex'))).toString('utf8'))",
        alloy::hex::encode(sealed)
    )))
    .unwrap()
}

/// `n` native transfers of 1,000 wei on the lane by user 0, one after another.
async fn transfers(driver: &Driver, n: usize) -> Vec<multibridge_contracts::Request> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            driver
                .request_native(
                    LANE,
                    0,
                    alloy::primitives::Address::repeat_byte(0x42),
                    alloy::primitives::U256::from(1_000u64),
                )
                .await
                .unwrap(),
        );
    }
    out
}

/// Seal `plaintext` to `public` (SEC1 hex) with eciesjs.
fn seal_with_eciesjs(public: &str, plaintext: &[u8]) -> Vec<u8> {
    let hex = eciesjs(&format!(
        "process.stdout.write(Buffer.from(e.encrypt('{}', Buffer.from('{}', 'hex'))).toString('hex'))",
        public.trim_start_matches("0x"),
        alloy::hex::encode(plaintext)
    ));
    alloy::hex::decode(String::from_utf8(hex).unwrap().trim()).unwrap()
}

async fn start(options: DevnetOptions) -> Devnet {
    multibridge_devnet::harness::ha::start_ha(options)
        .await
        .unwrap()
}

/// Restart replica `replica` of operator `op` with an empty store; wait until it serves.
async fn wipe_and_restart(devnet: &mut Devnet, op: usize, replica: usize) -> u16 {
    devnet.replica(op, replica).unwrap().kill().unwrap();
    devnet.wipe_replica_store(op, replica).unwrap();
    devnet.start_replica(op, replica).unwrap();
    let port = devnet.replica_http_ports[op][replica];
    relay_ready(port, Duration::from_secs(60)).await;
    port
}

/// Wipe and restart replica `replica` of operator [`OP`]; wait until it joined from a backup.
async fn wiped_joins_from_backup(devnet: &mut Devnet, replica: usize, what: &str) -> u16 {
    let port = wipe_and_restart(devnet, OP, replica).await;
    series_at_least(
        what,
        port,
        "multibridge_state_joins_total",
        &[("lane", LANE.as_str()), ("source", "backup")],
        1.0,
        Duration::from_secs(30),
    )
    .await;
    port
}

/// Backups under traffic (the handled bound and on demand) lose and double nothing, compact
/// every replica's store and hold the store for less than a block; the log opens with eciesjs
/// and names what Table 2 names; a wiped replica joins from it, indexes only the tail, and leads
/// when the leader is killed — and the operator, down to one of two replicas, backs up again
/// (majority lost).
#[tokio::test(flavor = "multi_thread")]
async fn backups_under_traffic_lose_nothing_and_a_wiped_replica_joins_from_one_and_leads() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = start(DevnetOptions {
        backup_every: Some(30),
        ..DevnetOptions::hot_standby(dir.path())
    })
    .await;
    let driver = Driver::new(devnet.manifest());
    let traffic = Traffic::start(
        Driver::new(devnet.manifest()),
        LANE,
        0,
        Duration::from_millis(150),
    );
    let ports = devnet.replica_http_ports[OP].clone();
    let leader = leader_of(&devnet, OP, LANE).await;
    let follower = 1 - leader;
    // The bound (30 handled) fires under traffic.
    let backups = [
        ("lane", LANE.as_str()),
        ("trigger", "bound"),
        ("result", "ok"),
    ];
    // By whichever replica leads when the bound is reached (a lease may move under the
    // suite's load; the backup is the operator's, not one process's).
    Poll::new("a backup by the handled bound", Duration::from_secs(120)).logs(dir.path(), 6, 40).until(async || {
        let mut total = 0.0;
        for port in &ports {
            total += series(*port, "multibridge_state_backups_total", &backups)
                .await
                .unwrap_or(0.0);
        }
        if total >= 1.0 {
            Ok(total)
        } else {
            Err(format!("multibridge_state_backups_total{backups:?} = {total} on both replicas, want >= 1"))
        }
    })
    .await;
    // And one on demand, through the CLI, still under traffic.
    let version = backup_now(&devnet.replica_config_path(OP, follower), LANE);
    assert!(version >= 2, "the on-demand backup follows the bound one");
    let sent = traffic.stop().await.unwrap();
    let nonces: Vec<u64> = sent.iter().map(|s| s.nonce).collect();
    if let Err(e) = check_drained(&driver, LANE, &nonces, 3).await {
        dump_relay_logs(dir.path(), 3, 40);
        panic!("{e}");
    }

    // The registry holds the log; eciesjs opens it, and so does the relay's code.
    let (stored, sealed) = stored_log(&devnet, OP, LANE).await;
    assert_eq!(stored, version);
    let js = open_with_eciesjs(&sealed);
    let log = BackupLog::open(
        &sealed,
        &multibridge::harness::parse_private_key(DEVNET_BACKUP_SECRET).unwrap(),
    )
    .unwrap();
    assert_eq!(js, serde_json::to_value(&log).unwrap());
    // And the other way: the same log sealed by eciesjs opens with the relay's code.
    let public = multibridge::harness::parse_private_key(DEVNET_BACKUP_SECRET)
        .unwrap()
        .public_key();
    let resealed = seal_with_eciesjs(
        &multibridge::harness::public_key_hex(&public),
        &serde_json::to_vec(&log).unwrap(),
    );
    assert_eq!(
        BackupLog::open(
            &resealed,
            &multibridge::harness::parse_private_key(DEVNET_BACKUP_SECRET).unwrap()
        )
        .unwrap(),
        log
    );
    assert_eq!(log.version, version);
    assert_eq!(log.members.len(), 2, "{:?}", log.members);
    assert_eq!(log.alive_members.len(), 2, "{:?}", log.alive_members);
    assert_eq!(
        log.subject.operator,
        devnet
            .operator_config(OP)
            .unwrap()
            .operator
            .address
            .to_string()
    );
    assert!(log.start_ms <= log.end_ms);
    assert!(log.state_data_meta.compacted_below > 0, "{log:?}");
    assert_eq!(log.storage.kind, "local");
    assert!(!log.storage.authentication.contains(DEVNET_BACKUP_SECRET));
    // The object in storage is what the log says.
    let object = dir
        .path()
        .join("backups")
        .join(&log.state_data_meta.object.path);
    let bytes = std::fs::read(&object).unwrap();
    assert_eq!(
        multibridge::harness::sha256_hex(&bytes),
        log.state_data_meta.object.sha256
    );
    assert_eq!(log.snapshot_meta.len(), 1);
    assert_eq!(log.snapshot_meta[0].kind, "etcd-prefix-json");

    // Compaction: both replicas dropped rows; the leader's store held for less than a block.
    for port in &ports {
        series_at_least(
            "the replica compacted its store",
            *port,
            "multibridge_store_compacted_requests_total",
            &[("lane", LANE.as_str())],
            1.0,
            Duration::from_secs(30),
        )
        .await;
    }
    let hold = series(
        ports[leader],
        "multibridge_state_backup_store_hold_seconds",
        &[("lane", LANE.as_str())],
    )
    .await
    .unwrap();
    println!("longest store hold by a backup: {:.1} ms", hold * 1e3);
    assert!(hold < 1.0, "a backup held the store for {hold} s");

    // A wiped follower joins from the backup.
    let port = wiped_joins_from_backup(
        &mut devnet,
        follower,
        "the wiped replica joined from the backup",
    )
    .await;
    let indexed = series(
        port,
        "multibridge_requests_indexed_total",
        &[("lane", LANE.as_str())],
    )
    .await
    .unwrap_or(0.0);
    assert!(
        indexed < nonces.len() as f64,
        "the joined replica indexed {indexed} requests again, the history has {}",
        nonces.len()
    );

    // The leader dies; the joined replica leads and moves new transfers exactly once.
    devnet.replica(OP, leader).unwrap().kill().unwrap();
    eventually(
        "the joined replica leads",
        Duration::from_secs(30),
        async || match leading_replica(&devnet, OP, LANE).await {
            Some(r) if r == follower => Ok(()),
            other => Err(format!("leader {other:?}")),
        },
    )
    .await;
    let more: Vec<u64> = transfers(&driver, 5)
        .await
        .iter()
        .map(|r| r.nonce)
        .collect();
    if let Err(e) = check_drained(&driver, LANE, &more, 3).await {
        dump_relay_logs(dir.path(), 3, 40);
        panic!("{e}");
    }
    // One replica of two left: the majority is lost, the survivor backs up.
    series_at_least(
        "a backup when the majority of replicas is gone",
        port,
        "multibridge_state_backups_total",
        &[
            ("lane", LANE.as_str()),
            ("trigger", "majority-lost"),
            ("result", "ok"),
        ],
        1.0,
        Duration::from_secs(60),
    )
    .await;
    let started = Instant::now();
    let (after, _) = stored_log(&devnet, OP, LANE).await;
    assert!(
        after > version,
        "the majority-lost backup stored a newer log"
    );
    println!("checked in {:?}", started.elapsed());
}

/// A backup that cannot be used — its store copy changed (digest mismatch), gone, or the log
/// sealed to another key — is named in the metrics and the replica replays the chain: it indexes
/// up to the head again.
#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_backup_is_named_and_the_replica_replays_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = start(DevnetOptions::hot_standby(dir.path())).await;
    let driver = Driver::new(devnet.manifest());
    let requests = transfers(&driver, 6).await;
    let nonces: Vec<u64> = requests.iter().map(|r| r.nonce).collect();
    let last_block = requests.last().unwrap().srcBlockNumber;
    check_drained(&driver, LANE, &nonces, 3).await.unwrap();
    let follower = 1 - leader_of(&devnet, OP, LANE).await;
    backup_now(&devnet.replica_config_path(OP, follower), LANE);
    let (_, sealed) = stored_log(&devnet, OP, LANE).await;
    let log = BackupLog::open(
        &sealed,
        &multibridge::harness::parse_private_key(DEVNET_BACKUP_SECRET).unwrap(),
    )
    .unwrap();
    let object = dir
        .path()
        .join("backups")
        .join(&log.state_data_meta.object.path);
    let original = std::fs::read(&object).unwrap();

    let replayed = async |devnet: &mut Devnet, reason: &str| {
        let port = wipe_and_restart(devnet, OP, follower).await;
        series_at_least(
            &format!("the replica replays the chain ({reason})"),
            port,
            "multibridge_state_joins_total",
            &[
                ("lane", LANE.as_str()),
                ("source", "replay"),
                ("reason", reason),
            ],
            1.0,
            Duration::from_secs(30),
        )
        .await;
        // Warm again: indexed past the last request (what the last backup covered it keeps
        // compacted, like every replica of the operator).
        series_at_least(
            "the replaying replica indexes past the last request",
            port,
            "multibridge_indexed_block",
            &[("lane", LANE.as_str())],
            (last_block + 1) as f64,
            Duration::from_secs(30),
        )
        .await;
    };

    // Changed in storage.
    let mut changed = original.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0xff;
    std::fs::write(&object, &changed).unwrap();
    replayed(&mut devnet, "digest-mismatch").await;
    // Gone.
    std::fs::remove_file(&object).unwrap();
    replayed(&mut devnet, "missing").await;
    std::fs::write(&object, &original).unwrap();
    // Sealed to a key this replica does not hold.
    let other_hex = "0x1111111111111111111111111111111111111111111111111111111111111111";
    let other = multibridge::harness::parse_private_key(other_hex).unwrap();
    let key_file = dir.path().join("other-backup-key.hex");
    std::fs::write(&key_file, other_hex).unwrap();
    let mut config = devnet.replica_config(OP, follower).unwrap();
    let backup = config.backup.as_mut().unwrap();
    backup.public_key = multibridge::harness::public_key_hex(&other.public_key());
    backup.private_key_file = Some(key_file);
    devnet.write_replica_config(OP, follower, &config).unwrap();
    replayed(&mut devnet, "undecryptable").await;
}

/// Backups to an S3-compatible object store (moto's server, started by the test): the relay
/// signs with credentials it reads from the environment variables its config names, the log
/// records only those names, and a wiped replica joins from the objects in the bucket.
#[tokio::test(flavor = "multi_thread")]
async fn backups_go_to_an_s3_compatible_store_and_a_wiped_replica_joins_from_it() {
    use multibridge_devnet::stand_in::s3::{S3Server, TEST_CREDENTIALS};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let s3 = S3Server::start(dir.path(), "multibridge-backups")
        .await
        .unwrap();
    let (key_var, secret_var) = ("MB_TEST_S3_KEY_ID", "MB_TEST_S3_SECRET");
    let mut devnet = start(DevnetOptions {
        backup_storage: Some(multibridge_config::StorageSettings::S3 {
            bucket: "multibridge-backups".into(),
            endpoint: Some(s3.endpoint.clone()),
            region: "us-east-1".into(),
            prefix: "devnet".into(),
            access_key_id_env: key_var.into(),
            secret_access_key_env: secret_var.into(),
            allow_http: true,
        }),
        relay_env: vec![
            (key_var.into(), TEST_CREDENTIALS.0.into()),
            (secret_var.into(), TEST_CREDENTIALS.1.into()),
        ],
        backup_etcd_snapshot: true,
        ..DevnetOptions::hot_standby(dir.path())
    })
    .await;
    let driver = Driver::new(devnet.manifest());
    let nonces: Vec<u64> = transfers(&driver, 4)
        .await
        .iter()
        .map(|r| r.nonce)
        .collect();
    check_drained(&driver, LANE, &nonces, 3).await.unwrap();
    let follower = 1 - leader_of(&devnet, OP, LANE).await;
    let version = backup_now(&devnet.replica_config_path(OP, follower), LANE);
    let (_, sealed) = stored_log(&devnet, OP, LANE).await;
    let log = BackupLog::open(
        &sealed,
        &multibridge::harness::parse_private_key(DEVNET_BACKUP_SECRET).unwrap(),
    )
    .unwrap();
    assert_eq!(log.version, version);
    assert_eq!(log.storage.kind, "s3");
    assert_eq!(log.storage.location, "s3://multibridge-backups/devnet");
    assert_eq!(
        log.storage.authentication,
        format!("env:{key_var},env:{secret_var}")
    );
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains(TEST_CREDENTIALS.1), "the log names a secret");
    // The etcd state: the operator's prefix and a full snapshot through the maintenance API (a
    // database file of at least a few pages).
    let kinds: Vec<&str> = log.snapshot_meta.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["etcd-prefix-json", "etcd-snapshot"]);
    assert!(
        log.snapshot_meta[1].size > 16 * 1024,
        "{:?}",
        log.snapshot_meta[1]
    );
    // The object is in the bucket and not readable without credentials; the join below reads
    // it signed and checks the log's digest.
    let url = format!(
        "{}/multibridge-backups/devnet/{}",
        s3.endpoint, log.state_data_meta.object.path
    );
    assert_eq!(reqwest::get(&url).await.unwrap().status().as_u16(), 403);

    wiped_joins_from_backup(
        &mut devnet,
        follower,
        "the wiped replica joined from the S3 backup",
    )
    .await;
}
