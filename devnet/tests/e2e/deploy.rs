//! `multibridge deploy` on two anvil nodes started as plain chains (not through the devnet's
//! deployment code): a deploy SIGKILLed halfway resumes from its journal without deploying
//! anything twice, checks its code against the committed artifacts, wires the counterparts and
//! writes starter configs that load; bad input is named before anything is sent.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use multibridge::admin::journal::{DeploymentJournal, StepState};
use multibridge_contracts::Bridge;
use multibridge_devnet::accounts::dev_signer;
use multibridge_devnet::anvil::{AnvilNode, AnvilOptions};
use multibridge_devnet::tools::{Tools, relay_binary};

use crate::eventually;

async fn plain_chain(dir: &Path, name: &str, chain_id: u64) -> AnvilNode {
    AnvilNode::start(
        &Tools::locate().unwrap(),
        dir,
        &AnvilOptions {
            name: name.to_owned(),
            chain_id,
            block_time: Some(1.0),
            accounts: 5,
        },
    )
    .await
    .unwrap()
}

async fn nonce(url: &str, who: Address) -> u64 {
    ProviderBuilder::new()
        .connect_http(url.parse().unwrap())
        .get_transaction_count(who)
        .await
        .unwrap()
}

fn deploy_command(
    main: &str,
    service: &str,
    out: &Path,
    threshold: &str,
    extra: &[&str],
) -> tokio::process::Command {
    let owner = dev_signer(0).unwrap();
    let mut command = tokio::process::Command::new(relay_binary().unwrap());
    command
        .args([
            "deploy",
            "--main-rpc",
            main,
            "--service-rpc",
            service,
            "--threshold",
            threshold,
        ])
        .args(["--owner-key-env", "DEPLOY_OWNER_KEY", "--out"])
        .arg(out)
        .args(extra)
        .env(
            "DEPLOY_OWNER_KEY",
            format!("0x{}", alloy::hex::encode(owner.to_bytes())),
        );
    for i in 1..=3 {
        command
            .arg("--operator")
            .arg(dev_signer(i).unwrap().address().to_string());
    }
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_killed_halfway_resumes_without_deploying_twice() {
    let dir = tempfile::tempdir().unwrap();
    let main = plain_chain(dir.path(), "anvil-main", 31_337).await;
    let service = plain_chain(dir.path(), "anvil-service", 31_338).await;
    let (main_url, service_url) = (main.url(), service.url());
    let owner = dev_signer(0).unwrap().address();
    let out = dir.path().join("deployment");

    // Bad input is named and sends nothing.
    for (threshold, extra, expected) in [
        (
            "2",
            vec!["--main-chain-id", "1"],
            "the main RPC serves chain 31337, but 1 was given",
        ),
        ("4", vec![], "--threshold 4 with 3 operator(s)"),
    ] {
        let bad = dir.path().join("bad");
        let output = deploy_command(&main_url, &service_url, &bad, threshold, &extra)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "{stderr}"
        );
    }
    assert_eq!(nonce(&main_url, owner).await, 0, "bad input sent nothing");
    assert_eq!(nonce(&service_url, owner).await, 0);

    // SIGKILL the deploy once its first transaction is mined and a later one is in flight.
    let mut child = deploy_command(&main_url, &service_url, &out, "2", &[])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually(
        "the deploy never had a step in flight after its first",
        Duration::from_secs(60),
        async || match DeploymentJournal::load(&out) {
            // A later step signed and sent but not mined: the resume must find it, not send
            // another.
            Ok(Some(j))
                if matches!(j.steps[0].state, StepState::Done { .. })
                    && j.steps
                        .iter()
                        .any(|s| matches!(s.state, StepState::Sent { .. })) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let halfway = DeploymentJournal::load(&out).unwrap().unwrap();
    assert!(!halfway.complete, "killed before the end");
    let states: Vec<&str> = halfway
        .steps
        .iter()
        .map(|s| match s.state {
            StepState::Planned => "planned",
            StepState::Sent { .. } => "sent",
            StepState::Done { .. } => "done",
        })
        .collect();
    eprintln!("killed with steps {states:?}");

    // The same command finishes it.
    let output = deploy_command(&main_url, &service_url, &out, "2", &["--json"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let done: DeploymentJournal = serde_json::from_slice(&output.stdout).unwrap();
    assert!(done.complete);
    assert!(
        done.steps
            .iter()
            .all(|s| matches!(s.state, StepState::Done { .. }))
    );
    // Exactly the planned transactions: Bridge, ServiceRegistry and setCounterpart on main,
    // Bridge and setCounterpart on service — nothing deployed twice.
    assert_eq!(nonce(&main_url, owner).await, 3);
    assert_eq!(nonce(&service_url, owner).await, 2);
    let main_bridge = done.main.bridge.unwrap();
    let service_bridge = done.service.bridge.unwrap();
    let provider = ProviderBuilder::new().connect_http(main_url.parse().unwrap());
    let bridge = Bridge::new(main_bridge, provider);
    assert_eq!(
        bridge.counterpartBridge().call().await.unwrap(),
        service_bridge
    );
    assert_eq!(bridge.owner().call().await.unwrap(), owner);
    assert_eq!(
        bridge.operatorCount().call().await.unwrap(),
        alloy::primitives::U256::from(3)
    );

    // Again: nothing to do, nothing sent, the same addresses.
    let output = deploy_command(&main_url, &service_url, &out, "2", &["--json"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let again: DeploymentJournal = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(again, done);
    assert_eq!(nonce(&main_url, owner).await, 3);

    // The same directory with other inputs is another deployment: refused.
    let output = deploy_command(&main_url, &service_url, &out, "3", &[])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("holds another deployment (the threshold differs)"),
        "{stderr}"
    );

    // Every operator's starter config is a valid relay config for this deployment.
    for i in 1..=3 {
        let operator = dev_signer(i).unwrap().address();
        let path = out.join(format!("operator-{operator}.toml"));
        let output = tokio::process::Command::new(relay_binary().unwrap())
            .args(["config", "validate", "--config"])
            .arg(&path)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let config = multibridge::config::Config::load(&path).unwrap();
        assert_eq!(config.chains.main.bridge, main_bridge);
        assert_eq!(config.chains.service.bridge, service_bridge);
        assert_eq!(
            config.chains.main.start_block,
            done.main.bridge_block.unwrap()
        );
        assert_eq!(
            config.registry.unwrap().address,
            done.main.registry.unwrap()
        );
    }

    // `admin show` reads the live configuration back from both chains.
    let config = out.join(format!(
        "operator-{}.toml",
        dev_signer(1).unwrap().address()
    ));
    let show = |extra: &[&str]| {
        let mut c = tokio::process::Command::new(relay_binary().unwrap());
        c.args(["admin"]).args(extra).arg("--config").arg(&config);
        c
    };
    let output = show(&["show", "--json"]).output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let states: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for (i, bridge) in [main_bridge, service_bridge].iter().enumerate() {
        let s = &states[i];
        assert_eq!(s["bridge"], bridge.to_string().to_lowercase(), "{s}");
        assert_eq!(s["owner"], owner.to_string().to_lowercase());
        assert_eq!(s["threshold"], 2);
        assert_eq!(s["operators"].as_array().unwrap().len(), 3);
        assert_eq!(s["paused"], false);
    }
    // The emergency stop: a key that is no pauser is named and sends nothing; the owner pauses
    // both bridges and unpauses them.
    let user = dev_signer(4).unwrap();
    let before = nonce(&main_url, user.address()).await;
    let output = show(&["pause", "--key-env", "PAUSE_KEY"])
        .env(
            "PAUSE_KEY",
            format!("0x{}", alloy::hex::encode(user.to_bytes())),
        )
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("NotPauser"),
        "{stderr}"
    );
    assert_eq!(nonce(&main_url, user.address()).await, before);
    let owner_key = format!(
        "0x{}",
        alloy::hex::encode(dev_signer(0).unwrap().to_bytes())
    );
    for (action, paused) in [("pause", true), ("unpause", false)] {
        let output = show(&[action, "--key-env", "PAUSE_KEY"])
            .env("PAUSE_KEY", &owner_key)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let output = show(&["show", "--json"]).output().await.unwrap();
        let states: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(states[0]["paused"], paused);
        assert_eq!(states[1]["paused"], paused);
    }
}
