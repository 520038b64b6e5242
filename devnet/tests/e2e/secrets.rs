//! Audit M-1: an RPC URL's credentials — userinfo, path and query — appear in no output of a
//! relay or the CLI: log lines, `/readyz`, `/status`, `/metrics`, `multibridge status` (table
//! and JSON), `config check`, errors.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use multibridge_contracts::Lane;
use multibridge_devnet::harness::invariants::{assert_exactly_once, wait_all_handled};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

const OPERATORS: usize = 3;
const SECRETS: [&str; 3] = ["PWSECRET", "PATHSECRET", "QUERYSECRET"];

#[tokio::test(flavor = "multi_thread")]
async fn rpc_url_credentials_leave_the_process_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    // A closed port: every call to this endpoint fails and its error quotes the URL.
    let closed = multibridge_devnet::harness::ports::free_port().unwrap();
    let secret_url =
        format!("http://user:PWSECRET@127.0.0.1:{closed}/v2/PATHSECRET?apikey=QUERYSECRET");
    for op in devnet.operators() {
        let mut config = devnet.operator_config(op).unwrap();
        for chain in [&mut config.chains.main, &mut config.chains.service] {
            chain.rpc_urls.insert(0, secret_url.clone());
        }
        devnet.write_operator_config(op, &config).unwrap();
        devnet.start_relay(op).unwrap();
    }
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let requests = driver
        .request_native_burst(lane, 0, Address::repeat_byte(0x55), U256::from(7), 3)
        .await
        .unwrap();
    let range = requests[0].nonce..requests[2].nonce + 1;
    wait_all_handled(&driver, lane, range.clone(), Duration::from_secs(90))
        .await
        .unwrap();
    assert_exactly_once(&driver, lane, range).await.unwrap();

    let mut outputs: Vec<(String, String)> = Vec::new();
    for (op, port) in devnet.operator_http_ports.iter().enumerate() {
        for path in ["readyz", "status", "metrics"] {
            let body = reqwest::get(format!("http://127.0.0.1:{port}/{path}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            outputs.push((format!("relay {op} /{path}"), body));
        }
    }
    let binary = multibridge_devnet::harness::tools::relay_binary().unwrap();
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["config", "check"],
        vec!["config", "validate"],
    ] {
        let output = tokio::process::Command::new(&binary)
            .args(&args)
            .arg("--config")
            .arg(devnet.operator_config_path(0))
            .output()
            .await
            .unwrap();
        outputs.push((
            format!("multibridge {}", args.join(" ")),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ));
    }
    // A config whose only endpoint is the secret one: the error path of the CLI.
    let mut broken = devnet.operator_config(1).unwrap();
    broken.chains.main.rpc_urls = vec![secret_url.clone()];
    let broken_path = dir.path().join("broken.toml");
    std::fs::write(&broken_path, toml::to_string(&broken).unwrap()).unwrap();
    let output = tokio::process::Command::new(&binary)
        .args(["config", "check", "--config"])
        .arg(&broken_path)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "check passed on a dead endpoint");
    outputs.push((
        "multibridge config check (dead endpoint)".into(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ));
    for i in 1..=OPERATORS {
        let log =
            std::fs::read_to_string(devnet.dir().join(format!("logs/relay-{i}.log"))).unwrap();
        outputs.push((format!("relay-{i}.log"), log));
    }

    // The endpoint did fail (so its errors were written somewhere) ...
    let label = format!("127.0.0.1:{closed}");
    assert!(
        outputs
            .iter()
            .any(|(what, text)| what.ends_with(".log") && text.contains(&label)),
        "no log line names the dead endpoint: the test would prove nothing"
    );
    // ... and no secret went out with them.
    for (what, text) in &outputs {
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{secret} leaked in {what}: {}",
                text.lines()
                    .find(|l| l.contains(secret))
                    .unwrap_or_default()
            );
        }
    }
}
