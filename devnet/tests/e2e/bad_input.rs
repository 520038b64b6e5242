//! Bad input to a relay on a real devnet: each mistake gets a named error that says what to fix,
//! a non-zero exit, and nothing is sent. An unreachable RPC is no such mistake for `run` (it
//! waits the outage out, issue 22: its `/readyz` names the chain) but still is for
//! `config check`, whose job is to fail fast.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use multibridge_config::{Config, Secret, SignerConfig};
use multibridge_contracts::ChainRole;
use multibridge_devnet::harness::tools::relay_binary;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

/// Write `config` as `<name>.toml` and run `multibridge <command...> --config <it>`.
fn multibridge(dir: &Path, name: &str, config: &Config, command: &[&str]) -> (bool, String) {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config.to_toml().unwrap()).unwrap();
    let out = Command::new(relay_binary().unwrap())
        .args(command)
        .args(["--config", path.to_str().unwrap()])
        .env("MULTIBRIDGE_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Transactions `operator` has sent on (main, service).
async fn sent_counts(driver: &Driver, operator: Address) -> (u64, u64) {
    let count = |role| async move {
        driver
            .provider(role)
            .unwrap()
            .get_transaction_count(operator)
            .await
            .unwrap()
    };
    (
        count(ChainRole::Main).await,
        count(ChainRole::Service).await,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_input_is_named_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let good = devnet.operator_config(0).unwrap();
    let operator = good.operator.address;
    let dead_url = multibridge_devnet::harness::ports::closed_port_url().unwrap();

    let mut cases: Vec<(&str, Config, &str)> = Vec::new();

    let mut c = good.clone();
    c.chains.main.chain_id = 31_339;
    cases.push(("wrong-chain-id", c, "configured chain_id is 31339"));

    let mut c = good.clone();
    c.chains.service.bridge = Address::repeat_byte(0x42);
    cases.push(("no-bridge-code", c, "no contract code at bridge address"));

    let mut c = good.clone();
    let stranger = driver.user(3).unwrap();
    c.operator.address = stranger.address();
    c.operator.signer = SignerConfig::DevKey {
        private_key: Secret::new(format!("0x{}", alloy::hex::encode(stranger.to_bytes()))),
    };
    cases.push(("unregistered-operator", c, "is not a registered operator"));

    let mut unreachable = good.clone();
    unreachable.chains.main.rpc_urls = vec![dead_url.clone()];

    let key = driver.operator(0).unwrap();
    let mut rng = rand08::thread_rng();
    PrivateKeySigner::encrypt_keystore(
        dir.path(),
        &mut rng,
        key.to_bytes(),
        "right",
        Some("op.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("wrong-password"), "wrong\n").unwrap();
    let mut c = good.clone();
    c.operator.signer = SignerConfig::Keystore {
        path: dir.path().join("op.json"),
        password_file: Some(dir.path().join("wrong-password")),
        password_env: None,
    };
    cases.push(("wrong-keystore-password", c, "wrong password for keystore"));

    let sent_before = sent_counts(&driver, operator).await;
    for (name, config, expected) in &cases {
        let (ok, text) = multibridge(dir.path(), name, config, &["run"]);
        assert!(!ok, "{name}: the relay should refuse to run:\n{text}");
        assert!(
            text.contains(expected),
            "{name}: expected {expected:?} in:\n{text}"
        );
    }
    // `config check` fails fast on the unreachable RPC ...
    let (ok, text) = multibridge(
        dir.path(),
        "unreachable-rpc",
        &unreachable,
        &["config", "check"],
    );
    assert!(!ok, "config check must fail on an unreachable RPC:\n{text}");
    assert!(text.contains("none of rpc_urls answers"), "{text}");
    // ... `run` waits: alive, not ready, naming the chain; SIGTERM ends it cleanly.
    let path = dir.path().join("unreachable-rpc.toml");
    let mut child = tokio::process::Command::new(relay_binary().unwrap())
        .args(["run", "--config", path.to_str().unwrap()])
        .env("MULTIBRIDGE_LOG", "off")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let port = unreachable.http.listen.port();
    let readyz = crate::eventually(
        "run waits with /readyz 503 naming the unreachable RPC",
        Duration::from_secs(20),
        async || {
            let resp = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                .await
                .map_err(|e| e.to_string())?;
            let code = resp.status().as_u16();
            let body = resp.text().await.map_err(|e| e.to_string())?;
            // 503 at once; the cause once the first start-up attempt failed (it may not have
            // when /readyz first answers).
            if code == 503 && body.contains("none of rpc_urls answers") {
                Ok(body)
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
    assert!(readyz.contains("chain:main"), "{readyz}");
    // Not ready until the preflight passed, whatever else is registered yet (before, /readyz
    // answered 200 for a moment after the API came up: nothing registered).
    assert!(readyz.contains("\"preflight\""), "{readyz}");
    assert!(
        readyz.contains("none of rpc_urls answers"),
        "the cause is named: {readyz}"
    );
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert!(child.try_wait().unwrap().is_none(), "run must not exit");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("SIGTERM ends a waiting relay")
        .unwrap();
    assert!(
        status.success(),
        "a waiting relay stopped by SIGTERM exits 0: {status}"
    );

    let sent_after = sent_counts(&driver, operator).await;
    assert_eq!(sent_before, sent_after, "nothing was sent");

    // The good config passes the same checks.
    let (ok, text) = multibridge(dir.path(), "good", &good, &["config", "check"]);
    assert!(ok, "{text}");
    assert!(text.contains("threshold 2/3"), "{text}");
}
