//! `multibridge deploy` and `admin` on two anvil nodes started as plain chains (not through the
//! devnet's deployment code): a deploy SIGKILLed with a transaction in flight resumes from its
//! journal without deploying anything twice, checks its code against the committed artifacts,
//! wires the counterparts and writes starter configs that load; `admin show` reads the live
//! configuration, `pause`/`unpause` work for the owner and name a key that may not; `plan`/`apply`
//! add an operator and raise the threshold (in that order), lower it and remove one (in that
//! order), register token pairs and limits; a multisig owner gets Safe batches whose calls,
//! replayed as the owner, reach the same state. Bad input is named before anything is sent.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use multibridge_admin::journal::{DeploymentJournal, StepState};
use multibridge_contracts::Bridge;
use multibridge_devnet::harness::accounts::dev_signer;
use multibridge_devnet::harness::anvil::{AnvilNode, AnvilOptions};
use multibridge_devnet::harness::tools::{Tools, relay_binary};

use crate::eventually;

async fn plain_chain(dir: &Path, name: &str, chain_id: u64) -> AnvilNode {
    AnvilNode::start(
        &Tools::locate().unwrap(),
        dir,
        &AnvilOptions {
            name: name.to_owned(),
            chain_id,
            block_time: Some(1.0),
            accounts: 10,
            frozen_fork_of: None,
            state_file: None,
            large_code: false,
            max_persisted_states: None,
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

/// Dev account `index`'s private key as 0x-hex (what `--key-env` variables hold).
fn key_hex(index: u32) -> String {
    format!(
        "0x{}",
        alloy::hex::encode(dev_signer(index).unwrap().to_bytes())
    )
}

fn deploy_command(
    main: &str,
    service: &str,
    out: &Path,
    threshold: &str,
    extra: &[&str],
) -> tokio::process::Command {
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
        .env("DEPLOY_OWNER_KEY", key_hex(0));
    for i in 1..=3 {
        command
            .arg("--operator")
            .arg(dev_signer(i).unwrap().address().to_string());
    }
    command
}

/// Run `command` and assert it succeeded; its output.
async fn succeeds(
    mut command: impl std::borrow::BorrowMut<tokio::process::Command>,
) -> std::process::Output {
    let output = command.borrow_mut().output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Run `command` and assert it failed with an error naming `expected`.
async fn fails_with(
    mut command: impl std::borrow::BorrowMut<tokio::process::Command>,
    expected: &str,
) {
    let output = command.borrow_mut().output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains(expected),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pair_deployed_from_the_cli_resumes_after_sigkill_and_is_configured_declaratively() {
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
        fails_with(
            deploy_command(&main_url, &service_url, &bad, threshold, &extra),
            expected,
        )
        .await;
    }
    assert_eq!(nonce(&main_url, owner).await, 0, "bad input sent nothing");
    assert_eq!(nonce(&service_url, owner).await, 0);

    // SIGKILL the deploy once its first transaction is mined and a later one is in flight.
    let mut child = deploy_command(&main_url, &service_url, &out, "2", &[])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
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
    let output = succeeds(deploy_command(
        &main_url,
        &service_url,
        &out,
        "2",
        &["--json"],
    ))
    .await;
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
        let _ = succeeds(
            tokio::process::Command::new(relay_binary().unwrap())
                .args(["config", "validate", "--config"])
                .arg(&path),
        )
        .await;
        let config = multibridge_config::Config::load(&path).unwrap();
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
    let output = succeeds(show(&["show", "--json"])).await;
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
    fails_with(
        show(&["pause", "--key-env", "PAUSE_KEY"]).env("PAUSE_KEY", key_hex(4)),
        "NotPauser",
    )
    .await;
    assert_eq!(nonce(&main_url, user.address()).await, before);
    let owner_key = key_hex(0);
    for (action, paused) in [("pause", true), ("unpause", false)] {
        let _ =
            succeeds(show(&[action, "--key-env", "PAUSE_KEY"]).env("PAUSE_KEY", &owner_key)).await;
        let output = show(&["show", "--json"]).output().await.unwrap();
        let states: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(states[0]["paused"], paused);
        assert_eq!(states[1]["paused"], paused);
    }

    // Declarative configuration: tokens (deployed by the test as any token issuer would), a
    // desired state with a fourth operator, threshold 3, a pauser, limits and a token pair.
    let token_of = async |url: &str, symbol: &str| {
        let provider = ProviderBuilder::new()
            .wallet(alloy::network::EthereumWallet::from(dev_signer(0).unwrap()))
            .connect_http(url.parse().unwrap());
        *multibridge_contracts::TestToken::deploy(
            provider,
            symbol.to_owned(),
            symbol.to_owned(),
            18,
        )
        .await
        .unwrap()
        .address()
    };
    let main_token = token_of(&main_url, "MTK").await;
    let service_token = token_of(&service_url, "wMTK").await;
    let ops: Vec<String> = (1..=4)
        .map(|i| format!("\"{}\"", dev_signer(i).unwrap().address()))
        .collect();
    let pauser = dev_signer(4).unwrap().address();
    let desired = |operators: &[String], threshold: u64, extra: &str| {
        format!(
            "[main]\noperators = [{ops}]\nthreshold = {threshold}\npausers = [\"{pauser}\"]\nfee_receiver = \"{pauser}\"\nrelease_delay = 60\n{extra}\n\
             [main.assets.native]\noutflow_limit = {{ capacity = \"1000000000000000000000\", refill_per_second = \"1000000000000000000\", delay_above = \"500000000000000000000\" }}\n\
             [main.assets.\"{main_token}\"]\npair = {{ remote = \"{service_token}\", mode = \"lock-unlock\" }}\nfee = \"7\"\n\
             [service]\noperators = [{ops}]\nthreshold = {threshold}\n\
             [service.assets.\"{service_token}\"]\npair = {{ remote = \"{main_token}\", mode = \"burn-mint\" }}\n",
            ops = operators.join(", ")
        )
    };
    let desired_file = dir.path().join("desired.toml");
    std::fs::write(&desired_file, desired(&ops, 3, "")).unwrap();
    let admin = |args: &[&str]| {
        let mut c = tokio::process::Command::new(relay_binary().unwrap());
        c.arg("admin")
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--desired")
            .arg(&desired_file);
        c
    };
    let output = admin(&["plan"]).output().await.unwrap();
    let plan_text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let add = plan_text.find("registerOperator").unwrap();
    let raise = plan_text.find("setThreshold(3)").unwrap();
    // 3 operators, threshold 2 -> 4 operators, threshold 3: the threshold rises first (3 of the
    // current 3), so the new set never executes at the old threshold (audit NEW-L5).
    assert!(
        raise < add,
        "the threshold rises before operators are added:\n{plan_text}"
    );
    // A signer that is not the owner is named and sends nothing.
    let stranger = dev_signer(4).unwrap();
    fails_with(
        admin(&["apply", "--key-env", "ADMIN_KEY"]).env("ADMIN_KEY", key_hex(4)),
        "is not the owner",
    )
    .await;
    assert_eq!(
        nonce(&main_url, stranger.address()).await,
        before,
        "a refused apply sends nothing"
    );
    // A token that does not exist is named and sends nothing.
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(
        &bad_file,
        format!("[main.assets.\"{}\"]\npair = {{ remote = \"{service_token}\", mode = \"lock-unlock\" }}\n", Address::repeat_byte(0x42)),
    )
    .unwrap();
    let owner_before = nonce(&main_url, owner).await;
    fails_with(
        tokio::process::Command::new(relay_binary().unwrap())
            .args(["admin", "apply", "--key-env", "ADMIN_KEY", "--config"])
            .arg(&config)
            .arg("--desired")
            .arg(&bad_file)
            .env("ADMIN_KEY", &owner_key),
        "unknown token",
    )
    .await;
    assert_eq!(nonce(&main_url, owner).await, owner_before);
    // The owner applies it; the chains then say what the file says, and a new plan is empty.
    let _ =
        succeeds(admin(&["apply", "--key-env", "ADMIN_KEY"]).env("ADMIN_KEY", &owner_key)).await;
    let live = async || -> serde_json::Value {
        let output = show(&["show", "--json"]).output().await.unwrap();
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let states = live().await;
    for s in states.as_array().unwrap() {
        assert_eq!(s["threshold"], 3, "{s}");
        assert_eq!(s["operators"].as_array().unwrap().len(), 4);
    }
    assert_eq!(states[0]["pausers"][0], pauser.to_string().to_lowercase());
    assert_eq!(states[0]["release_delay"], 60);
    let pair = &states[0]["assets"][main_token.to_string().to_lowercase()];
    assert_eq!(
        pair["pair"]["remote"],
        service_token.to_string().to_lowercase(),
        "{states}"
    );
    let output = admin(&["plan", "--json"]).output().await.unwrap();
    let again: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        again.as_array().unwrap().len(),
        0,
        "applied: nothing left to do, {again}"
    );

    // Lower the threshold and remove the fourth operator: the threshold drops first.
    std::fs::write(&desired_file, desired(&ops[..3], 2, "")).unwrap();
    let output = admin(&["plan"]).output().await.unwrap();
    let plan_text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        plan_text.find("setThreshold(2)").unwrap() < plan_text.find("deregisterOperator").unwrap(),
        "{plan_text}"
    );
    let _ =
        succeeds(admin(&["apply", "--key-env", "ADMIN_KEY"]).env("ADMIN_KEY", &owner_key)).await;
    let states = live().await;
    assert_eq!(states[0]["threshold"], 2);
    assert_eq!(states[1]["operators"].as_array().unwrap().len(), 3);

    // A multisig owner: ownership moves to a contract; the next plan goes out as Safe batches,
    // and their calls, replayed as the owner contract, reach the desired state.
    let multisig = main_token; // any contract stands in for the Safe here
    let service_multisig = service_token;
    std::fs::write(
        &desired_file,
        format!("[main]\nowner = \"{multisig}\"\n[service]\nowner = \"{service_multisig}\"\n"),
    )
    .unwrap();
    let _ =
        succeeds(admin(&["apply", "--key-env", "ADMIN_KEY"]).env("ADMIN_KEY", &owner_key)).await;
    std::fs::write(&desired_file, desired(&ops, 3, "")).unwrap();
    let output = admin(&["apply", "--key-env", "ADMIN_KEY"])
        .env("ADMIN_KEY", &owner_key)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a contract"), "{stderr}");
    let safe_dir = dir.path().join("safe");
    let _ = succeeds(admin(&["plan", "--safe-out", safe_dir.to_str().unwrap()])).await;
    for (url, chain_id, safe) in [
        (&main_url, 31_337u64, multisig),
        (&service_url, 31_338, service_multisig),
    ] {
        let batch: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(safe_dir.join(format!("safe-{chain_id}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(batch["chainId"], chain_id.to_string());
        let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
        let _: () = provider
            .raw_request("anvil_impersonateAccount".into(), (safe,))
            .await
            .unwrap();
        let _: () = provider
            .raw_request("anvil_setBalance".into(), (safe, "0x56BC75E2D63100000"))
            .await
            .unwrap();
        for tx in batch["transactions"].as_array().unwrap() {
            let request = alloy::rpc::types::TransactionRequest::default()
                .from(safe)
                .to(tx["to"].as_str().unwrap().parse().unwrap())
                .input(
                    alloy::primitives::Bytes::from(
                        alloy::hex::decode(tx["data"].as_str().unwrap()).unwrap(),
                    )
                    .into(),
                );
            let hash: alloy::primitives::B256 = provider
                .raw_request("eth_sendTransaction".into(), (request,))
                .await
                .unwrap();
            eventually(
                "a replayed Safe call was never mined",
                Duration::from_secs(20),
                async || match provider.get_transaction_receipt(hash).await {
                    Ok(Some(r)) if r.status() => Ok(()),
                    other => Err(format!("{other:?}")),
                },
            )
            .await;
        }
    }
    let states = live().await;
    for s in states.as_array().unwrap() {
        assert_eq!(s["threshold"], 3, "{s}");
        assert_eq!(s["operators"].as_array().unwrap().len(), 4);
    }
}

/// Start operator `op`'s relay from its starter config, made to fit one machine: its keystore
/// and store under `dir`, its own HTTP port (what an operator edits on its own host).
fn start_relay(
    dir: &Path,
    out: &Path,
    op: u32,
    template_op: u32,
) -> multibridge_devnet::harness::process::ManagedProcess {
    let signer = dev_signer(op).unwrap();
    let address = signer.address().to_string();
    let template = std::fs::read_to_string(out.join(format!(
        "operator-{}.toml",
        dev_signer(template_op).unwrap().address()
    )))
    .unwrap()
    .replace(
        &dev_signer(template_op).unwrap().address().to_string(),
        &address,
    );
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let mut rng = rand08::thread_rng();
    alloy::signers::local::PrivateKeySigner::encrypt_keystore(
        &keys,
        &mut rng,
        signer.to_bytes(),
        "relay-test-password",
        Some(format!("{address}.json").as_str()),
    )
    .unwrap();
    let port = multibridge_devnet::harness::ports::free_port().unwrap();
    let config = template
        .replace("path = \"keys/", &format!("path = \"{}/", keys.display()))
        .replace(
            "path = \"store-",
            &format!("path = \"{}/store-", dir.display()),
        )
        .replace("127.0.0.1:9464", &format!("127.0.0.1:{port}"));
    let path = dir.join(format!("relay-{address}.toml"));
    std::fs::write(&path, config).unwrap();
    multibridge_devnet::harness::process::ManagedProcess::spawn(
        multibridge_devnet::harness::process::ProcessSpec {
            name: format!("relay-{op}"),
            program: relay_binary().unwrap(),
            args: vec!["run".into(), "--config".into(), path.display().to_string()],
            envs: vec![(
                "MULTIBRIDGE_KEYSTORE_PASSWORD".into(),
                "relay-test-password".into(),
            )],
            // Where a failing poll's log dump looks (`<dir>/logs/relay-N.log`).
            log_path: dir.join("logs").join(format!("relay-{op}.log")),
        },
    )
    .unwrap()
}

/// Where a log sits in its chain: (block, log index).
pub(crate) type LogPosition = (u64, u64);

fn position(log: &alloy::rpc::types::Log) -> LogPosition {
    (log.block_number.unwrap(), log.log_index.unwrap())
}

/// Every handle of `bridge`: nonce → (count, position of the last one).
pub(crate) async fn handles(
    url: &str,
    bridge: Address,
) -> std::collections::BTreeMap<u64, (usize, LogPosition)> {
    use alloy::sol_types::SolEvent;
    let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
    let filter = alloy::rpc::types::Filter::new()
        .address(bridge)
        .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
        .from_block(0u64);
    let mut out = std::collections::BTreeMap::new();
    for log in provider.get_logs(&filter).await.unwrap() {
        let e = log.log_decode::<Bridge::HandleValueTransfer>().unwrap();
        let entry = out.entry(e.inner.data.nonce).or_insert((0, (0, 0)));
        entry.0 += 1;
        entry.1 = position(&log);
    }
    out
}

/// What one traffic task sent on its lane.
#[derive(Debug, Default)]
struct Sent {
    requests: u64,
    native: alloy::primitives::U256,
    tokens: alloy::primitives::U256,
    ids: Vec<alloy::primitives::U256>,
}

/// A user (dev account `user`) requesting transfers to `to` on `url`'s bridge until `stop`:
/// native coin, `token` (ERC-20) and `nft` ids from `ids` in turn (native once the ids run out).
fn traffic(
    url: String,
    bridge: Address,
    user: u32,
    (token, nft): (Address, Address),
    mut ids: Vec<alloy::primitives::U256>,
    to: Address,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Sent> {
    use alloy::primitives::U256;
    tokio::spawn(async move {
        let provider = ProviderBuilder::new()
            .wallet(alloy::network::EthereumWallet::from(
                dev_signer(user).unwrap(),
            ))
            .connect_http(url.parse().unwrap());
        let bridge = Bridge::new(bridge, provider);
        ids.reverse();
        let mut sent = Sent::default();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let i = sent.requests;
            let pending = match (i % 3, ids.last().copied()) {
                (1, _) => {
                    let amount = U256::from(10u64).pow(U256::from(18u64)) + U256::from(i);
                    sent.tokens += amount;
                    bridge
                        .requestERC20Transfer(token, to, amount, Default::default())
                        .send()
                        .await
                }
                (2, Some(id)) => {
                    ids.pop();
                    sent.ids.push(id);
                    bridge
                        .requestERC721Transfer(nft, to, id, Default::default())
                        .send()
                        .await
                }
                _ => {
                    let value = U256::from(1_000 + i);
                    sent.native += value;
                    bridge
                        .requestNativeTransfer(to, Default::default())
                        .value(value)
                        .send()
                        .await
                }
            };
            let receipt = pending.unwrap().get_receipt().await.unwrap();
            assert!(receipt.status(), "request {i} reverted");
            sent.requests += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        sent
    })
}

/// Wait for every pending transaction and insist each succeeded.
async fn all_mined(
    pending: Vec<alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>>,
) {
    for p in pending {
        assert!(p.get_receipt().await.unwrap().status());
    }
}

/// No nonce executed with fewer operators' votes than the threshold in force where its handle
/// sits: the last ThresholdChanged before it (the constructor emits the first), which may be in
/// the same block (a raise mined right after a handle does not count against it). Returns every
/// threshold the bridge had, in order.
pub(crate) async fn assert_threshold_held(
    url: &str,
    bridge_address: Address,
    handled: &std::collections::BTreeMap<u64, (usize, LogPosition)>,
) -> Vec<u64> {
    use alloy::sol_types::SolEvent;
    let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
    let logs_of = async |signature| {
        let filter = alloy::rpc::types::Filter::new()
            .address(bridge_address)
            .event_signature(signature)
            .from_block(0u64);
        provider.get_logs(&filter).await.unwrap()
    };
    let votes = logs_of(Bridge::VoteCast::SIGNATURE_HASH).await;
    let thresholds: Vec<(LogPosition, u64)> = logs_of(Bridge::ThresholdChanged::SIGNATURE_HASH)
        .await
        .iter()
        .map(|l| {
            let e = l.log_decode::<Bridge::ThresholdChanged>().unwrap();
            (position(l), e.inner.data.threshold.to::<u64>())
        })
        .collect();
    for (nonce, (_, at)) in handled {
        let threshold = thresholds
            .iter()
            .rfind(|(p, _)| p < at)
            .map(|(_, t)| *t)
            .unwrap();
        let cast = votes
            .iter()
            .filter(|l| position(l) <= *at)
            .filter_map(|l| l.log_decode::<Bridge::VoteCast>().ok())
            .filter(|v| v.inner.data.nonce == *nonce)
            .map(|v| v.inner.data.operator)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        assert!(
            cast >= threshold,
            "{url}: nonce {nonce} executed at {at:?} with {cast} operator(s) voting, threshold {threshold}"
        );
    }
    thresholds.into_iter().map(|(_, t)| t).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_from_generated_configs_move_transfers_while_plan_apply_changes_the_quorum() {
    use alloy::primitives::U256;
    use multibridge_contracts::{TestNFT, TestToken};
    let dir = tempfile::tempdir().unwrap();
    let main = plain_chain(dir.path(), "anvil-main", 31_337).await;
    let service = plain_chain(dir.path(), "anvil-service", 31_338).await;
    let (main_url, service_url) = (main.url(), service.url());
    let out = dir.path().join("deployment");
    let owner_key = key_hex(0);
    let _ = succeeds(deploy_command(
        &main_url,
        &service_url,
        &out,
        "2",
        &["--confirmations", "1"],
    ))
    .await;
    let journal = DeploymentJournal::load(&out).unwrap().unwrap();
    let (main_bridge, service_bridge) = (
        journal.main.bridge.unwrap(),
        journal.service.bridge.unwrap(),
    );
    let config = out.join(format!(
        "operator-{}.toml",
        dev_signer(1).unwrap().address()
    ));

    // Tokens on both chains, as their issuers would deploy them: an ERC-20 and an ERC-721 at
    // home on main (lock/unlock), their wrapped versions on service (burn/mint by the bridge).
    let wallet = |url: &str, key: u32| {
        ProviderBuilder::new()
            .wallet(alloy::network::EthereumWallet::from(
                dev_signer(key).unwrap(),
            ))
            .connect_http(url.parse().unwrap())
    };
    let (owner_main, owner_service) = (wallet(&main_url, 0), wallet(&service_url, 0));
    let token = TestToken::deploy(owner_main.clone(), "Home".into(), "HOME".into(), 18)
        .await
        .unwrap();
    let nft = TestNFT::deploy(owner_main.clone(), "Home NFT".into(), "HNFT".into())
        .await
        .unwrap();
    let wtoken = TestToken::deploy(owner_service.clone(), "Wrapped".into(), "wHOME".into(), 18)
        .await
        .unwrap();
    let wnft = TestNFT::deploy(owner_service.clone(), "Wrapped NFT".into(), "wHNFT".into())
        .await
        .unwrap();
    let (token_a, nft_a, wtoken_a, wnft_a) = (
        *token.address(),
        *nft.address(),
        *wtoken.address(),
        *wnft.address(),
    );

    let desired_file = dir.path().join("desired.toml");
    let ops = |n: u32| -> String {
        (1..=n)
            .map(|i| format!("\"{}\"", dev_signer(i).unwrap().address()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let desired = |n: u32, threshold: u64, nft_mode: &str| {
        let unlimited = "{ capacity = \"340282366920938463463374607431768211455\", refill_per_second = \"0\", delay_above = \"0\" }";
        let chain = |name: &str,
                     (t, rt, tmode): (Address, Address, &str),
                     (f, rf, fmode): (Address, Address, &str)| {
            format!(
                "[{name}]\noperators = [{o}]\nthreshold = {threshold}\nrelease_delay = 0\n\
                 [{name}.assets.native]\noutflow_limit = {unlimited}\n\
                 [{name}.assets.\"{t}\"]\npair = {{ remote = \"{rt}\", mode = \"{tmode}\" }}\noutflow_limit = {unlimited}\n\
                 [{name}.assets.\"{f}\"]\npair = {{ remote = \"{rf}\", mode = \"{fmode}\" }}\noutflow_limit = {unlimited}\n",
                o = ops(n)
            )
        };
        chain(
            "main",
            (token_a, wtoken_a, "lock-unlock"),
            (nft_a, wnft_a, nft_mode),
        ) + &chain(
            "service",
            (wtoken_a, token_a, "burn-mint"),
            (wnft_a, nft_a, "erc721-burn-mint"),
        )
    };
    let apply_command = |n: u32, threshold: u64, nft_mode: &str| {
        std::fs::write(&desired_file, desired(n, threshold, nft_mode)).unwrap();
        let mut c = tokio::process::Command::new(relay_binary().unwrap());
        c.args(["admin", "apply", "--key-env", "ADMIN_KEY", "--config"])
            .arg(&config)
            .arg("--desired")
            .arg(&desired_file)
            .env("ADMIN_KEY", &owner_key);
        c
    };
    let apply = async |n: u32, threshold: u64| {
        let output = succeeds(apply_command(n, threshold, "erc721-lock-unlock")).await;
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    };
    // An NFT collection given an ERC-20 mode is named before anything is sent.
    let owner = dev_signer(0).unwrap().address();
    let before = nonce(&main_url, owner).await;
    fails_with(apply_command(3, 2, "lock-unlock"), "is an ERC-721").await;
    assert_eq!(nonce(&main_url, owner).await, before, "nothing was sent");
    // Pairs and release limits (the contract's default holds every release for a day).
    apply(3, 2).await;
    let state = succeeds({
        let mut c = tokio::process::Command::new(relay_binary().unwrap());
        c.args(["admin", "show", "--config"]).arg(&config);
        c
    })
    .await;
    let shown = String::from_utf8_lossy(&state.stdout);
    assert!(
        shown.contains("ERC-721 lock/unlock") && shown.contains("ERC-721 burn/mint"),
        "{shown}"
    );

    // Users and liquidity: user 5 sends from main, user 6 from service. The main bridge holds
    // what earlier transfers would have locked (tokens, NFT ids 1001..) for the returns.
    const IDS: u64 = 30;
    let (u5, u6) = (
        dev_signer(5).unwrap().address(),
        dev_signer(6).unwrap().address(),
    );
    let big = U256::from(10u64).pow(U256::from(24u64));
    let forward_ids: Vec<U256> = (1..=IDS).map(U256::from).collect();
    let back_ids: Vec<U256> = (1001..=1000 + IDS).map(U256::from).collect();
    // Sent back to back (one block a second), each with its own nonce, then waited for.
    let (mut main_nonce, mut service_nonce) = (
        nonce(&main_url, owner).await,
        nonce(&service_url, owner).await,
    );
    let mut pending = Vec::new();
    // Send `call` with the next nonce of `counter` and keep it for all_mined.
    macro_rules! queue {
        ($call:expr, $counter:ident) => {{
            pending.push($call.nonce($counter).send().await.unwrap());
            $counter += 1;
        }};
    }
    queue!(token.mint(u5, big), main_nonce);
    queue!(token.mint(main_bridge, big), main_nonce);
    for id in &forward_ids {
        queue!(nft.mint(u5, *id), main_nonce);
    }
    for id in &back_ids {
        queue!(nft.mint(owner, *id), main_nonce);
        queue!(nft.transferFrom(owner, main_bridge, *id), main_nonce);
        queue!(wnft.mint(u6, *id), service_nonce);
    }
    queue!(wtoken.mint(u6, big), service_nonce);
    queue!(wtoken.setMinter(service_bridge, true), service_nonce);
    queue!(wnft.setMinter(service_bridge, true), service_nonce);
    all_mined(pending).await;
    assert_eq!(
        nonce(&main_url, owner).await,
        main_nonce,
        "every queued call mined"
    );
    assert_eq!(nonce(&service_url, owner).await, service_nonce);
    // Native liquidity for both bridges' releases, with the CLI. The main bridge's must not rest
    // on the forward traffic alone: when the traffic stopped with the main-bound native releases
    // ahead of the native locked there, the last one waited for liquidity for good (correctly:
    // `insufficient_liquidity`) and the test timed out.
    for chain in ["service", "main"] {
        let funded = succeeds({
            let mut c = tokio::process::Command::new(relay_binary().unwrap());
            c.args(["admin", "fund", "--chain", chain, "--amount", "1000"])
                .args(["--key-env", "ADMIN_KEY", "--config"])
                .arg(&config)
                .env("ADMIN_KEY", &owner_key);
            c
        })
        .await;
        assert!(String::from_utf8_lossy(&funded.stdout).contains("funded the bridge"));
    }
    assert_eq!(
        ProviderBuilder::new()
            .connect_http(service_url.parse().unwrap())
            .get_balance(service_bridge)
            .await
            .unwrap(),
        U256::from(10u64).pow(U256::from(21u64))
    );
    let (u5_main, u6_service) = (wallet(&main_url, 5), wallet(&service_url, 6));
    all_mined(vec![
        TestToken::new(token_a, u5_main.clone())
            .approve(main_bridge, U256::MAX)
            .send()
            .await
            .unwrap(),
        TestNFT::new(nft_a, u5_main)
            .setApprovalForAll(main_bridge, true)
            .send()
            .await
            .unwrap(),
        TestToken::new(wtoken_a, u6_service.clone())
            .approve(service_bridge, U256::MAX)
            .send()
            .await
            .unwrap(),
        TestNFT::new(wnft_a, u6_service)
            .setApprovalForAll(service_bridge, true)
            .send()
            .await
            .unwrap(),
    ])
    .await;

    // The three operators' relays from their generated configs, and the fourth's, who is not
    // registered yet (its config: the first's with its own address).
    let mut relays: Vec<_> = (1..=3)
        .map(|op| start_relay(dir.path(), &out, op, 1))
        .collect();
    relays.push(start_relay(dir.path(), &out, 4, 1));

    // Users send native, ERC-20 and ERC-721 transfers both ways the whole time.
    let (forward_to, back_to) = (Address::repeat_byte(0x77), Address::repeat_byte(0x88));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let forward = traffic(
        main_url.clone(),
        main_bridge,
        5,
        (token_a, nft_a),
        forward_ids,
        forward_to,
        stop.clone(),
    );
    let back = traffic(
        service_url.clone(),
        service_bridge,
        6,
        (wtoken_a, wnft_a),
        back_ids,
        back_to,
        stop.clone(),
    );
    let both = async || {
        (
            handles(&service_url, service_bridge).await,
            handles(&main_url, main_bridge).await,
        )
    };
    let handled_at_least = async |n: usize| {
        eventually(
            format!("fewer than {n} transfers handled on each lane"),
            Duration::from_secs(90),
            async || {
                let (f, b) = both().await;
                if f.len() >= n && b.len() >= n {
                    Ok(())
                } else {
                    Err(format!("{} and {} handled", f.len(), b.len()))
                }
            },
        )
        .await;
    };
    handled_at_least(3).await;
    // Add the fourth operator and raise the threshold to 3, under traffic.
    apply(4, 3).await;
    let (f, b) = both().await;
    handled_at_least(f.len().max(b.len()) + 3).await;
    // Lower it to 2 again and remove the fourth operator.
    apply(3, 2).await;
    let (f, b) = both().await;
    handled_at_least(f.len().max(b.len()) + 3).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (forward, back) = (forward.await.unwrap(), back.await.unwrap());
    assert!(
        forward.ids.len() >= 3
            && back.ids.len() >= 3
            && !forward.tokens.is_zero()
            && !back.tokens.is_zero(),
        "every kind moved both ways: {forward:?} {back:?}"
    );

    // Every transfer handled exactly once, on both lanes...
    let (all_forward, all_back) =
        crate::Poll::new("not every transfer was handled", Duration::from_secs(90))
            .logs(dir.path(), 4, 40)
            .until(async || {
                let (f, b) = both().await;
                if f.len() as u64 >= forward.requests && b.len() as u64 >= back.requests {
                    Ok((f, b))
                } else {
                    Err(format!(
                        "{} of {} and {} of {} handled",
                        f.len(),
                        forward.requests,
                        b.len(),
                        back.requests
                    ))
                }
            })
            .await;
    for (lane, all, sent) in [
        ("main-to-service", &all_forward, &forward),
        ("service-to-main", &all_back, &back),
    ] {
        for (nonce, (count, _)) in all {
            assert_eq!(*count, 1, "{lane} nonce {nonce} handled {count} times");
        }
        assert_eq!(all.len() as u64, sent.requests, "{lane}");
    }
    // ...none with fewer votes than the threshold in force at its block...
    for (url, bridge, all) in [
        (&service_url, service_bridge, &all_forward),
        (&main_url, main_bridge, &all_back),
    ] {
        let thresholds = assert_threshold_held(url, bridge, all).await;
        assert_eq!(
            thresholds,
            [2, 3, 2],
            "{url}: the thresholds in force, in order"
        );
    }
    // ...and every recipient holds exactly what was sent to it: the same NFT ids.
    let reader = |url: &str| ProviderBuilder::new().connect_http(url.parse().unwrap());
    let (main_r, service_r) = (reader(&main_url), reader(&service_url));
    assert_eq!(
        service_r.get_balance(forward_to).await.unwrap(),
        forward.native
    );
    assert_eq!(main_r.get_balance(back_to).await.unwrap(), back.native);
    assert_eq!(
        TestToken::new(wtoken_a, &service_r)
            .balanceOf(forward_to)
            .call()
            .await
            .unwrap(),
        forward.tokens
    );
    assert_eq!(
        TestToken::new(token_a, &main_r)
            .balanceOf(back_to)
            .call()
            .await
            .unwrap(),
        back.tokens
    );
    for id in &forward.ids {
        assert_eq!(
            TestNFT::new(wnft_a, &service_r)
                .ownerOf(*id)
                .call()
                .await
                .unwrap(),
            forward_to
        );
        assert_eq!(
            TestNFT::new(nft_a, &main_r)
                .ownerOf(*id)
                .call()
                .await
                .unwrap(),
            main_bridge
        );
    }
    for id in &back.ids {
        assert_eq!(
            TestNFT::new(nft_a, &main_r)
                .ownerOf(*id)
                .call()
                .await
                .unwrap(),
            back_to
        );
        assert!(
            !TestNFT::new(wnft_a, &service_r)
                .exists(*id)
                .call()
                .await
                .unwrap(),
            "id {id} burned"
        );
    }
    // A user's transfer with the CLI and the generated config: an NFT, followed to its handle.
    let id = U256::from(500u64);
    let fresh = nonce(&main_url, owner).await; // the CLI used the owner's key since
    all_mined(vec![nft.mint(u5, id).nonce(fresh).send().await.unwrap()]).await;
    let cli = succeeds({
        let mut c = tokio::process::Command::new(relay_binary().unwrap());
        c.args(["transfer", "--lane", "main-to-service", "--to"])
            .arg(Address::repeat_byte(0x99).to_string())
            .args(["--token", &nft_a.to_string(), "--token-id", "500"])
            .args(["--key-env", "USER_KEY", "--json", "--config"])
            .arg(&config)
            .env("USER_KEY", key_hex(5));
        c
    })
    .await;
    let outcome: serde_json::Value =
        serde_json::from_slice(&cli.stdout).expect("transfer --json prints one object");
    assert!(outcome["handle_tx"].is_string(), "{outcome}");
    assert_eq!(
        TestNFT::new(wnft_a, &service_r)
            .ownerOf(id)
            .call()
            .await
            .unwrap(),
        Address::repeat_byte(0x99),
        "the CLI's NFT arrived with its id"
    );
    eprintln!(
        "{} + {} transfers ({} + {} NFTs), each handled once, none below the threshold in force",
        forward.requests,
        back.requests,
        forward.ids.len(),
        back.ids.len()
    );
    drop(relays);
}
