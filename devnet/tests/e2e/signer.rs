//! Operator keys that never touch the disk: relays whose keys were generated inside a SoftHSM2
//! token (`multibridge hsm create-key`) vote through PKCS#11; with the token unplugged under
//! traffic they keep indexing and serving, pause sending with the reason `signer_unavailable`
//! (status, metrics) and resume when it is back, losing nothing and doubling nothing. A config
//! whose `operator.address` is not its key's is named by `config check`.

use std::time::Duration;

use alloy::primitives::{Address, utils::parse_ether};
use multibridge_contracts::Lane;
use multibridge_devnet::harness::invariants::{
    assert_exactly_once, votes_per_operator, wait_all_handled,
};
use multibridge_devnet::harness::scrape::metric;
use multibridge_devnet::harness::tools::relay_binary;
use multibridge_devnet::{Devnet, DevnetOptions, DevnetSigner, Driver};

use crate::Poll;

/// Poll every relay's `series` until it equals `want`.
async fn every_relay(devnet: &Devnet, series: &str, want: f64, within: Duration) {
    for port in devnet.operator_http_ports.clone() {
        Poll::new(format!("relay :{port}: {series} != {want}"), within)
            .logs(&devnet.options.dir, 3, 20)
            .until(async || match metric(port, series).await {
                Some(v) if v == want => Ok(()),
                other => Err(format!("{series} is {other:?}")),
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_sign_in_an_hsm_and_pause_while_it_is_unplugged_losing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions {
        signer: DevnetSigner::Hsm,
        ..DevnetOptions::standalone_relays(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let hsm = devnet.hsm.clone().unwrap();
    let dev_keys: Vec<Address> = devnet
        .accounts
        .operators
        .iter()
        .map(|k| k.address())
        .collect();
    for address in &devnet.operator_addresses {
        assert!(!dev_keys.contains(address), "an HSM key, not a dev key");
    }
    let to = Address::repeat_byte(0x5a);
    let amount = parse_ether("1").unwrap();

    // Votes signed in the token execute transfers.
    for _ in 0..3 {
        driver
            .request_native(Lane::MainToService, 0, to, amount)
            .await
            .unwrap();
    }
    wait_all_handled(&driver, Lane::MainToService, 0..3, Duration::from_secs(60))
        .await
        .unwrap();
    let voters: std::collections::BTreeSet<Address> =
        votes_per_operator(&driver, Lane::MainToService)
            .await
            .unwrap()
            .keys()
            .map(|(_, op)| *op)
            .collect();
    assert!(
        voters.iter().all(|v| devnet.operator_addresses.contains(v)) && voters.len() >= 2,
        "votes come from the HSM keys: {voters:?}"
    );

    // Unplugged under traffic: sending pauses with a named reason, indexing goes on, nothing
    // is handled, every relay still serves.
    hsm.unplug().unwrap();
    for _ in 0..3 {
        driver
            .request_native(Lane::MainToService, 0, to, amount)
            .await
            .unwrap();
    }
    let paused =
        "multibridge_sending_paused{lane=\"main-to-service\",reason=\"signer_unavailable\"}";
    every_relay(&devnet, paused, 1.0, Duration::from_secs(60)).await;
    for nonce in 3..6 {
        assert_eq!(
            driver
                .handle_count(Lane::MainToService, nonce)
                .await
                .unwrap(),
            0,
            "nonce {nonce} handled while no operator could sign"
        );
    }
    for index in 0..devnet.operator_http_ports.len() {
        let out = std::process::Command::new(relay_binary().unwrap())
            .args(["status", "--json", "--config"])
            .arg(devnet.operator_config_path(index))
            .env("MULTIBRIDGE_LOG", "off")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = devnet.operator_http_ports[index];
        let failed = metric(
            port,
            "multibridge_signer_signatures_total{backend=\"pkcs11\",outcome=\"failed\"}",
        )
        .await
        .unwrap_or(0.0);
        assert!(failed >= 1.0, "relay :{port} counted its failed signatures");
        let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .unwrap();
        assert!(health.status().is_success(), "relay :{port} still alive");
        // /status shows the lane as the watcher last looked (every watch interval, 1 s here).
        Poll::new(
            format!("relay :{port} /status names why it does not send"),
            Duration::from_secs(10),
        )
        .until(async || {
            let status = reqwest::get(format!("http://127.0.0.1:{port}/status"))
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if status.contains("signer_unavailable") {
                Ok(())
            } else {
                Err(status)
            }
        })
        .await;
    }
    every_relay(
        &devnet,
        "multibridge_requests_indexed_total{lane=\"main-to-service\"}",
        6.0,
        Duration::from_secs(30),
    )
    .await;

    // Back: sending resumes by itself and every transfer is handled exactly once.
    hsm.plug_in().unwrap();
    wait_all_handled(&driver, Lane::MainToService, 0..6, Duration::from_secs(90))
        .await
        .unwrap();
    every_relay(&devnet, paused, 0.0, Duration::from_secs(30)).await;
    assert_exactly_once(&driver, Lane::MainToService, 0..6)
        .await
        .unwrap();
    for ((nonce, op), n) in votes_per_operator(&driver, Lane::MainToService)
        .await
        .unwrap()
    {
        assert_eq!(n, 1, "nonce {nonce}: operator {op} voted {n} times");
    }

    // A user's key in the same token, made with the CLI, signs a transfer through
    // `--signer-file` (the CLI takes every signer kind the relay does).
    let (conf_key, conf_value) = hsm.env();
    let hsm_cli = |args: &[&str]| {
        std::process::Command::new(relay_binary().unwrap())
            .args(["hsm"])
            .args(args)
            .args([
                "--token-label",
                multibridge_devnet::stand_in::hsm::TOKEN_LABEL,
                "--key-label",
                "user-1",
            ])
            .arg("--pin-file")
            .arg(hsm.pin_file())
            .env(&conf_key, &conf_value)
            .env("MULTIBRIDGE_LOG", "off")
            .output()
            .unwrap()
    };
    let created = hsm_cli(&["create-key", "--json"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let user: Address = created["address"].as_str().unwrap().parse().unwrap();
    let again = hsm_cli(&["create-key"]);
    assert!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("already holds an object labelled"),
        "a second key under one label is refused"
    );
    let shown = hsm_cli(&["address"]);
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout).trim(),
        user.to_string()
    );
    driver
        .set_balance(
            multibridge_contracts::ChainRole::Main,
            user,
            parse_ether("10").unwrap(),
        )
        .await
        .unwrap();
    let signer_file = dir.path().join("user-signer.toml");
    std::fs::write(
        &signer_file,
        format!(
            "kind = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{}\"\nkey_label = \"user-1\"\npin_file = \"{}\"\n",
            multibridge_devnet::stand_in::hsm::SOFTHSM_MODULE,
            multibridge_devnet::stand_in::hsm::TOKEN_LABEL,
            hsm.pin_file().display()
        ),
    )
    .unwrap();
    let paid_to = Address::repeat_byte(0x5b);
    let out = std::process::Command::new(relay_binary().unwrap())
        .args(["transfer", "--lane", "main-to-service", "--to"])
        .arg(paid_to.to_string())
        .args(["--amount", "0.25", "--json", "--signer-file"])
        .arg(&signer_file)
        .arg("--config")
        .arg(devnet.operator_config_path(0))
        .env(&conf_key, &conf_value)
        .env("MULTIBRIDGE_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        driver
            .native_balance(multibridge_contracts::ChainRole::Service, paid_to)
            .await
            .unwrap(),
        parse_ether("0.25").unwrap(),
        "the HSM-signed transfer arrived"
    );

    // A config naming another operator's address for this key is refused by name.
    let config = std::fs::read_to_string(devnet.operator_config_path(0)).unwrap();
    let (mine, other) = (devnet.operator_addresses[0], devnet.operator_addresses[1]);
    let wrong = config
        .replace(&mine.to_string(), &other.to_string())
        .replace(&format!("{mine:#x}"), &format!("{other:#x}"));
    assert_ne!(wrong, config, "the config names its operator's address");
    let wrong_path = dir.path().join("wrong-address.toml");
    std::fs::write(&wrong_path, wrong).unwrap();
    let out = std::process::Command::new(relay_binary().unwrap())
        .args(["config", "check", "--config"])
        .arg(&wrong_path)
        .env(conf_key, conf_value)
        .env("MULTIBRIDGE_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains(&devnet.operator_addresses[0].to_string())
            && stderr.contains(&devnet.operator_addresses[1].to_string()),
        "config check names both addresses: {stderr}"
    );
    drop(devnet);
}

/// The owner's `admin apply` of `desired` (TOML) with the devnet's config of operator 0.
async fn apply(devnet: &Devnet, desired: &str) {
    let file = devnet.options.dir.join("desired.toml");
    std::fs::write(&file, desired).unwrap();
    let out = tokio::process::Command::new(relay_binary().unwrap())
        .args(["admin", "apply", "--key-env", "OWNER_KEY", "--config"])
        .arg(devnet.operator_config_path(0))
        .arg("--desired")
        .arg(&file)
        .env("OWNER_KEY", &devnet.manifest().owner.private_key)
        .env("MULTIBRIDGE_LOG", "off")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both chains: these operators, this threshold.
fn quorum(operators: &[Address], threshold: u64) -> String {
    let list = operators
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    ["main", "service"]
        .map(|chain| format!("[{chain}]\noperators = [{list}]\nthreshold = {threshold}\n"))
        .concat()
}

/// Key rotation without downtime, into AWS KMS: operator 1 registers its new (KMS) address with
/// the threshold raised by one for the overlap (so its two keys never make one operator a
/// quorum), starts its relay on the new key and stops the old one, then the old address is
/// deregistered and the threshold lowered — while a user sends a transfer every 300 ms. Then KMS
/// throttles, then hangs: only that relay pauses (reason signer_unavailable), the others still
/// reach the threshold, and it resumes when KMS answers. Every transfer is handled exactly once and none
/// with fewer votes than the threshold in force; the old key votes nothing after it was
/// deregistered and the new one votes.
///
/// KMS here is `multibridge_devnet::stand_in::kms::KmsStandIn` (a local stand-in for its API: no cloud is
/// reachable from these machines); the relay's side is the real one — alloy's KMS signer over the
/// AWS SDK, SigV4-signed requests, `GetPublicKey` and `Sign` of digests.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_key_rotates_into_kms_without_downtime_and_a_throttled_kms_pauses_only_it() {
    use multibridge_config::SignerConfig;
    use multibridge_devnet::stand_in::kms::{KmsMode, KmsStandIn, address_for};

    let kms = KmsStandIn::start().await.unwrap();
    let key_id = "operator-1-rotated";
    let new_key = address_for(key_id);
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let ops = devnet.operator_addresses.clone();
    let old_key = ops[0];
    for role in [
        multibridge_contracts::ChainRole::Main,
        multibridge_contracts::ChainRole::Service,
    ] {
        driver
            .set_balance(role, new_key, parse_ether("100").unwrap())
            .await
            .unwrap();
    }

    // A user sends the whole time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (driver, stop) = (driver.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                driver
                    .request_native(
                        Lane::MainToService,
                        0,
                        Address::repeat_byte(0x61),
                        alloy::primitives::U256::from(1_000 + sent),
                    )
                    .await
                    .unwrap();
                sent += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            sent
        })
    };
    let service_url = devnet.rpc_url(multibridge_contracts::ChainRole::Service);
    let service_bridge = devnet.deployment.service.bridge;
    let handled_more = async |n: usize| {
        let start = crate::deploy::handles(&service_url, service_bridge)
            .await
            .len();
        crate::eventually(
            format!("{n} more transfers not handled"),
            Duration::from_secs(90),
            async || {
                let now = crate::deploy::handles(&service_url, service_bridge)
                    .await
                    .len();
                if now >= start + n {
                    Ok(())
                } else {
                    Err(format!("{now} handled"))
                }
            },
        )
        .await;
    };
    handled_more(3).await;

    // 1. Register the new address; the threshold rises by one for the overlap.
    apply(&devnet, &quorum(&[ops[0], ops[1], ops[2], new_key], 3)).await;
    // 2. Start the relay on the KMS key (its own store: the store belongs to an address), then
    //    stop the one on the old key.
    let mut config = devnet.operator_config(0).unwrap();
    config.operator.address = new_key;
    config.operator.signer = SignerConfig::AwsKms {
        key_id: key_id.into(),
        region: Some("us-east-1".into()),
        endpoint_url: Some(kms.url()),
    };
    config.store.path = dir.path().join("operator-1-kms").join("store.sqlite");
    let port = multibridge_devnet::harness::ports::free_port().unwrap();
    config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let config_path = dir.path().join("operator-1-kms.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let _rotated = multibridge_devnet::harness::process::ManagedProcess::spawn(
        multibridge_devnet::harness::process::ProcessSpec {
            name: "relay-1-kms".into(),
            program: relay_binary().unwrap(),
            args: vec![
                "run".into(),
                "--config".into(),
                config_path.display().to_string(),
            ],
            envs: vec![
                ("AWS_ACCESS_KEY_ID".into(), "AKIDEXAMPLEDEVNET".into()),
                (
                    "AWS_SECRET_ACCESS_KEY".into(),
                    "devnet-only-not-a-secret".into(),
                ),
                ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ],
            log_path: dir.path().join("logs").join("relay-1-kms.log"),
        },
    )
    .unwrap();
    crate::eventually(
        "the KMS-keyed relay never became ready",
        Duration::from_secs(60),
        async || match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            Ok(r) if r.status().is_success() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert!(
        devnet
            .relay(0)
            .unwrap()
            .stop(Duration::from_secs(10))
            .unwrap()
    );
    handled_more(3).await;
    // 3. Deregister the old address; the threshold comes back down.
    apply(&devnet, &quorum(&[ops[1], ops[2], new_key], 2)).await;
    handled_more(3).await;

    // KMS throttles: only the KMS-keyed relay pauses; the two others still make the threshold.
    kms.set_mode(KmsMode::Throttling);
    let paused =
        "multibridge_sending_paused{lane=\"main-to-service\",reason=\"signer_unavailable\"}";
    Poll::new("the KMS-keyed relay never paused", Duration::from_secs(60))
        .until(async || match metric(port, paused).await {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .await;
    handled_more(3).await;
    // Then it hangs (a call held open): the SDK's call timeout ends it, sending stays paused.
    kms.set_mode(KmsMode::Hanging);
    let timeouts = "multibridge_signer_signatures_total{backend=\"aws-kms\",outcome=\"failed\"}";
    let failed_before = metric(port, timeouts).await.unwrap_or(0.0);
    Poll::new(
        "a hanging KMS never failed a signature",
        Duration::from_secs(60),
    )
    .until(async || match metric(port, timeouts).await {
        Some(v) if v > failed_before => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    assert_eq!(
        metric(port, paused).await,
        Some(1.0),
        "still paused while KMS hangs"
    );
    kms.set_mode(KmsMode::Serving);
    Poll::new("the KMS-keyed relay never resumed", Duration::from_secs(60))
        .until(async || match metric(port, paused).await {
            Some(0.0) => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = traffic.await.unwrap();

    wait_all_handled(
        &driver,
        Lane::MainToService,
        0..sent,
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    assert_exactly_once(&driver, Lane::MainToService, 0..sent)
        .await
        .unwrap();
    let handled = crate::deploy::handles(&service_url, service_bridge).await;
    let thresholds =
        crate::deploy::assert_threshold_held(&service_url, service_bridge, &handled).await;
    assert_eq!(thresholds, [2, 3, 2], "the thresholds in force, in order");
    // The old key votes nothing after its deregistration; the new one votes.
    use alloy::providers::Provider;
    use alloy::sol_types::SolEvent;
    let provider = driver
        .provider(multibridge_contracts::ChainRole::Service)
        .unwrap();
    let logs = |signature| {
        alloy::rpc::types::Filter::new()
            .address(service_bridge)
            .event_signature(signature)
            .from_block(0u64)
    };
    let deregistered = provider
        .get_logs(&logs(
            multibridge_contracts::Bridge::OperatorDeregistered::SIGNATURE_HASH,
        ))
        .await
        .unwrap();
    let gone_at = deregistered
        .iter()
        .find(|l| {
            l.log_decode::<multibridge_contracts::Bridge::OperatorDeregistered>()
                .is_ok_and(|e| e.inner.data.operator == old_key)
        })
        .and_then(|l| l.block_number)
        .expect("the old key was deregistered");
    let votes = provider
        .get_logs(&logs(
            multibridge_contracts::Bridge::VoteCast::SIGNATURE_HASH,
        ))
        .await
        .unwrap();
    let voter = |l: &alloy::rpc::types::Log| {
        l.log_decode::<multibridge_contracts::Bridge::VoteCast>()
            .map(|e| e.inner.data.operator)
            .unwrap()
    };
    assert!(
        votes
            .iter()
            .all(|l| voter(l) != old_key || l.block_number.unwrap() < gone_at),
        "the old key voted after it was deregistered"
    );
    let new_votes = votes.iter().filter(|l| voter(l) == new_key).count();
    assert!(new_votes >= 3, "the KMS key voted {new_votes} times");
    eprintln!("{sent} transfers through the rotation; the KMS key cast {new_votes} votes");
    drop(devnet);
}

/// `multibridge-devnet bench-signers` measures all three backends (a short run: the command's
/// figures are for its own long runs, this checks it works and reports sane numbers).
#[tokio::test(flavor = "multi_thread")]
async fn the_signer_bench_measures_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_multibridge-devnet"))
        .arg("--dir")
        .arg(dir.path())
        .args(["bench-signers", "--signatures", "20", "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backends: Vec<&str> = report["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["backend"].as_str().unwrap())
        .collect();
    assert_eq!(backends, ["keystore", "pkcs11", "aws-kms"]);
    for b in report["backends"].as_array().unwrap() {
        let (p50, p99) = (b["p50_ms"].as_f64().unwrap(), b["p99_ms"].as_f64().unwrap());
        let per_sec = b["signatures_per_sec"].as_f64().unwrap();
        assert!(p50 > 0.0 && p99 >= p50 && per_sec > 0.0, "{b}");
        assert_eq!(b["signatures"], 20);
        let batch = report["batch"].as_f64().unwrap();
        let allowed = b["transfers_per_sec_at_full_batches"].as_f64().unwrap();
        assert!((allowed - per_sec * batch).abs() < 1e-6, "{b}");
    }
}
