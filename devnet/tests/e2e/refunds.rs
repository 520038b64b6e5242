//! Issue 53 on the devnet: a request the destination can never execute ends cancelled there and
//! refunded on its source, exactly once. The first test signs by hand (the digests the relays
//! sign are the contracts' own, and the extension works on real chains, with the relays running
//! past the cancelled nonce — and refunding the hand-made cancel themselves if they get there
//! first); the others let the relays drive every step, through crashes, a
//! paused destination and a race with the execution.

use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256, utils::parse_ether};
use alloy::providers::Provider as _;
use alloy::signers::SignerSync as _;
use alloy::signers::local::PrivateKeySigner;
use multibridge_contracts::attestation::{canonical_bytes, pack_signatures};
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::harness::invariants::wait_handled_below;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

/// Signatures of `signers` over `digest` as the bridge takes them.
fn sign(digest: alloy::primitives::B256, signers: &[&PrivateKeySigner]) -> Bytes {
    let sigs: Vec<(Address, [u8; 65])> = signers
        .iter()
        .map(|s| {
            (
                s.address(),
                canonical_bytes(&s.sign_hash_sync(&digest).unwrap()),
            )
        })
        .collect();
    pack_signatures(&sigs)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_destination_cannot_execute_is_cancelled_there_and_refunded_once() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let (main, service) = (
        driver.chain(ChainRole::Main),
        driver.chain(ChainRole::Service),
    );
    let owner = driver.owner().unwrap();
    // The destination will never release this token: its pair is deregistered there.
    Bridge::new(
        service.contracts.bridge,
        driver.wallet_provider(ChainRole::Service, &owner).unwrap(),
    )
    .deregisterTokenPair(service.contracts.token)
    .send()
    .await
    .unwrap()
    .get_receipt()
    .await
    .unwrap();

    let user = driver.user(0).unwrap().address();
    let before = driver.token_balance(ChainRole::Main, user).await.unwrap();
    let amount = parse_ether("7").unwrap();
    let stuck = driver
        .request_erc20(lane, 0, Address::repeat_byte(0x53), amount)
        .await
        .unwrap();
    let locked = driver.token_balance(ChainRole::Main, user).await.unwrap();
    assert_eq!(before - locked, amount, "locked on the source");
    // The relays are alive: a later request is handled, the ERC-20 one is not.
    let later = driver
        .request_native(
            lane,
            1,
            Address::repeat_byte(0x54),
            parse_ether("1").unwrap(),
        )
        .await
        .unwrap();
    let reader = |role: ChainRole| {
        Bridge::new(
            driver.chain(role).contracts.bridge,
            driver.provider(role).unwrap(),
        )
    };
    let (source, destination) = (reader(ChainRole::Main), reader(ChainRole::Service));
    crate::relay::wait_handled(&driver, dir.path(), lane, &later).await;
    assert!(!destination.isHandled(stuck.nonce).call().await.unwrap());

    // The digests the relays will sign are the contracts' own.
    let domain = driver.vote_domain(lane);
    let key = domain.vote_key(&stuck);
    assert_eq!(
        key,
        destination.voteKey(stuck.clone()).call().await.unwrap()
    );
    let cancel_digest = domain.cancel_digest(&[key]);
    assert_eq!(
        cancel_digest,
        destination
            .cancelDigest(vec![stuck.clone()])
            .call()
            .await
            .unwrap(),
        "cancel digest: Rust and the destination agree"
    );
    let refund_digest = domain.refund_digest(key);
    assert_eq!(
        refund_digest,
        source.refundDigest(stuck.clone()).call().await.unwrap(),
        "refund digest: Rust and the source agree"
    );

    // Cancel on the destination (anyone submits two operators' signatures).
    let (op1, op2, op3) = (
        driver.operator(0).unwrap(),
        driver.operator(1).unwrap(),
        driver.operator(2).unwrap(),
    );
    let submitter = driver.user(3).unwrap();
    let cancelled = Bridge::new(
        service.contracts.bridge,
        driver
            .wallet_provider(ChainRole::Service, &submitter)
            .unwrap(),
    )
    .cancelAttested(vec![stuck.clone()], sign(cancel_digest, &[&op1, &op2]))
    // As for executeAttested, an item runs only with ITEM_GAS left and is skipped otherwise (the
    // call still succeeds): an estimate finds the skip. A relay plans the worst case; so does this.
    .gas(1_000_000)
    .send()
    .await
    .unwrap()
    .get_receipt()
    .await
    .unwrap();
    assert!(cancelled.status());
    assert_eq!(
        destination.cancelledKey(stuck.nonce).call().await.unwrap(),
        key
    );
    assert!(destination.isHandled(stuck.nonce).call().await.unwrap());
    // The source's confirmation depth past the cancel (the relays' rule before they sign).
    let cancel_block = cancelled.block_number.unwrap();
    let service_provider = driver.provider(ChainRole::Service).unwrap();
    crate::Poll::new("the cancel 3 blocks deep", Duration::from_secs(30))
        .until(async || {
            let head = service_provider.get_block_number().await.unwrap();
            if head >= cancel_block + 3 {
                Ok(())
            } else {
                Err(format!("head {head}"))
            }
        })
        .await;

    // Refund on the source, once; another operator pair signs it.
    let payer = Bridge::new(
        main.contracts.bridge,
        driver.wallet_provider(ChainRole::Main, &submitter).unwrap(),
    );
    let sigs = sign(refund_digest, &[&op1, &op3]);
    let refunded = payer
        .refund(stuck.clone(), sigs.clone())
        // No estimate: if the relays refunded first, this is mined and reverts.
        .gas(600_000)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    // The running relays read the cancel too, sign its refund and may send it first: then this
    // transaction reverts (AlreadyRefunded) and theirs paid. Either way: once.
    if !refunded.status() {
        eprintln!("the relays refunded the hand-made cancel first");
    }
    assert_eq!(refunds_of(&driver, ChainRole::Main, stuck.nonce).await, 1);
    assert_eq!(
        driver.token_balance(ChainRole::Main, user).await.unwrap(),
        before,
        "the requester has its tokens back"
    );
    assert!(source.isRefunded(stuck.nonce).call().await.unwrap());
    let again = payer.refund(stuck.clone(), sigs).call().await;
    assert_eq!(refunds_of(&driver, ChainRole::Main, stuck.nonce).await, 1);
    assert!(again.is_err(), "a second refund is refused");

    // The lane goes on past the cancelled nonce, and nothing paused.
    let after = driver
        .request_native(
            lane,
            1,
            Address::repeat_byte(0x55),
            parse_ether("1").unwrap(),
        )
        .await
        .unwrap();
    wait_handled_below(&driver, lane, after.nonce + 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(destination.lowerHandleNonce().call().await.unwrap() > after.nonce);
    assert!(!source.paused().call().await.unwrap());
    assert!(!destination.paused().call().await.unwrap());
    assert_eq!(
        driver
            .token_balance(ChainRole::Service, Address::repeat_byte(0x53))
            .await
            .unwrap(),
        U256::ZERO
    );
}

/// The `Refunded` events of `nonce` on `role`'s bridge.
async fn refunds_of(driver: &Driver, role: ChainRole, nonce: u64) -> usize {
    use alloy::sol_types::SolEvent as _;
    let filter = alloy::rpc::types::Filter::new()
        .address(driver.chain(role).contracts.bridge)
        .event_signature(Bridge::Refunded::SIGNATURE_HASH)
        .topic1(U256::from(nonce))
        .from_block(0);
    driver
        .provider(role)
        .unwrap()
        .get_logs(&filter)
        .await
        .unwrap()
        .len()
}

/// The relays drive the whole path: an ERC-20 request whose pair is deregistered on the
/// destination waits there for a permanent reason; once it has for `refund_after_secs` the
/// operators vote to cancel it, sign its refund once the cancel is deep enough and one of them
/// sends the refund. Two of three relays are SIGKILLed the moment the cancel is on chain: the one
/// left cannot gather a threshold alone (nothing is refunded while they are down), and the
/// restarted relays finish the refund from their stores and the chains. Exactly once, and the
/// tokens are where they should be on both chains.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_refused_for_good_is_refunded_by_the_relays_once_even_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    crate::edit_configs(&devnet, |c| {
        c.recovery.refund_after_secs = 5;
        c.recovery.interval_ms = 500;
    });
    for op in devnet.operators() {
        devnet.start_relay(op).unwrap();
    }
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let service = driver.chain(ChainRole::Service);
    let owner = driver.owner().unwrap();
    Bridge::new(
        service.contracts.bridge,
        driver.wallet_provider(ChainRole::Service, &owner).unwrap(),
    )
    .deregisterTokenPair(service.contracts.token)
    .send()
    .await
    .unwrap()
    .get_receipt()
    .await
    .unwrap();
    let user = driver.user(0).unwrap().address();
    let recipient = Address::repeat_byte(0x63);
    let before = driver.token_balance(ChainRole::Main, user).await.unwrap();
    let bridge_before = driver
        .token_balance(
            ChainRole::Main,
            driver.chain(ChainRole::Main).contracts.bridge,
        )
        .await
        .unwrap();
    let amount = parse_ether("9").unwrap();
    let stuck = driver
        .request_erc20(lane, 0, recipient, amount)
        .await
        .unwrap();
    let reader = |role: ChainRole| {
        Bridge::new(
            driver.chain(role).contracts.bridge,
            driver.provider(role).unwrap(),
        )
    };
    let (source, destination) = (reader(ChainRole::Main), reader(ChainRole::Service));
    // Cancelled by the operators' votes once it was refused for refund_after_secs.
    crate::Poll::new("the relays cancel the request", Duration::from_secs(90))
        .every(Duration::from_millis(100))
        .logs(dir.path(), 3, 40)
        .until(async || {
            let key = destination.cancelledKey(stuck.nonce).call().await.unwrap();
            if key.is_zero() {
                Err("not cancelled".into())
            } else {
                Ok(())
            }
        })
        .await;
    devnet.relay(0).unwrap().kill().unwrap();
    devnet.relay(1).unwrap().kill().unwrap();
    assert!(
        destination.isHandled(stuck.nonce).call().await.unwrap(),
        "a cancel closes the nonce"
    );
    assert_eq!(
        driver
            .token_balance(ChainRole::Service, recipient)
            .await
            .unwrap(),
        U256::ZERO,
        "a cancel releases nothing"
    );
    let target = format!("main-to-service:{}", stuck.nonce);
    let tracked = track_cli(&devnet, &target, false).await;
    assert_eq!(tracked["state"], "cancelled", "{tracked}");
    assert!(
        tracked["command"]
            .as_str()
            .unwrap()
            .starts_with("multibridge refund"),
        "{tracked}"
    );
    assert!(tracked["eta"].is_u64(), "{tracked}");
    // One relay alone holds one signature of the two the source needs.
    let alone = std::time::Instant::now();
    let port = devnet.operator_http_ports[2];
    crate::Poll::new("relay 3 signs the refund", Duration::from_secs(60))
        .until(async || {
            let signed = multibridge_devnet::harness::scrape::metric(
                port,
                "multibridge_refund_steps_total{lane=\"main-to-service\",step=\"signed\"}",
            )
            .await
            .unwrap_or(0.0);
            if signed >= 1.0 {
                Ok(())
            } else {
                Err(format!("signed {signed}"))
            }
        })
        .await;
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(alone.elapsed())).await;
    assert!(
        !source.isRefunded(stuck.nonce).call().await.unwrap(),
        "no threshold of signatures while two of three relays are down"
    );
    devnet.start_relay(0).unwrap();
    devnet.start_relay(1).unwrap();
    crate::Poll::new(
        "the restarted relays finish the refund",
        Duration::from_secs(90),
    )
    .logs(dir.path(), 3, 40)
    .until(async || {
        if source.isRefunded(stuck.nonce).call().await.unwrap() {
            Ok(())
        } else {
            Err("not refunded".into())
        }
    })
    .await;
    assert_eq!(
        driver.token_balance(ChainRole::Main, user).await.unwrap(),
        before,
        "the requester has its tokens back"
    );
    assert_eq!(
        driver
            .token_balance(
                ChainRole::Main,
                driver.chain(ChainRole::Main).contracts.bridge
            )
            .await
            .unwrap(),
        bridge_before,
        "the source bridge holds what it held before the request"
    );
    assert_eq!(refunds_of(&driver, ChainRole::Main, stuck.nonce).await, 1);
    // Every relay sees it refunded, and nothing more is sent for it.
    for port in devnet.operator_http_ports.clone() {
        crate::Poll::new(
            format!("relay on {port} sees the refund"),
            Duration::from_secs(30),
        )
        .until(async || {
            let waiting = multibridge_devnet::harness::scrape::metric(
                port,
                "multibridge_refunds_waiting{lane=\"main-to-service\"}",
            )
            .await
            .unwrap_or(-1.0);
            if waiting == 0.0 {
                Ok(())
            } else {
                Err(format!("waiting {waiting}"))
            }
        })
        .await;
    }
    assert_eq!(
        refunds_of(&driver, ChainRole::Main, stuck.nonce).await,
        1,
        "exactly once"
    );
    // Conservation counts the refund beside the releases: released + refunded = requested.
    let token = format!("{:#x}", driver.chain(ChainRole::Main).contracts.token);
    let refunded_series =
        format!("multibridge_asset_refunded{{asset=\"{token}\",lane=\"main-to-service\"}}");
    let ok_series =
        format!("multibridge_conservation_ok{{asset=\"{token}\",lane=\"main-to-service\"}}");
    let port = devnet.operator_http_ports[2];
    crate::Poll::new("conservation counts the refund", Duration::from_secs(60))
        .until(async || {
            let scrape = multibridge_devnet::harness::scrape::metric;
            let refunded = scrape(port, &refunded_series).await.unwrap_or(0.0);
            let ok = scrape(port, &ok_series).await.unwrap_or(-1.0);
            if refunded == 9e18 && ok == 1.0 {
                Ok(())
            } else {
                Err(format!("refunded {refunded}, ok {ok}"))
            }
        })
        .await;
    let tracked = track_cli(&devnet, &target, false).await;
    assert_eq!(tracked["state"], "refunded", "{tracked}");
    assert!(
        tracked["command"].is_null(),
        "nothing left to run: {tracked}"
    );
    assert!(!source.paused().call().await.unwrap());
    assert!(!destination.paused().call().await.unwrap());
    // The lane goes on.
    let after = driver
        .request_native(
            lane,
            1,
            Address::repeat_byte(0x64),
            parse_ether("1").unwrap(),
        )
        .await
        .unwrap();
    wait_handled_below(&driver, lane, after.nonce + 1, Duration::from_secs(60))
        .await
        .unwrap();
    let tracked = track_cli(&devnet, &after.srcTxHash.to_string(), false).await;
    assert_eq!(tracked["state"], "handled", "{tracked}");
    assert_eq!(tracked["nonce"], after.nonce, "{tracked}");
}

/// `multibridge <args>` with `key` in `USER_KEY` (the suite's [`crate::cli::multibridge`], off
/// the test's async workers): its stdout on success, its stderr otherwise.
async fn cli(args: Vec<String>, key: String) -> Result<String, String> {
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::cli::multibridge(&args, &key)
    })
    .await
    .unwrap();
    if ok { Ok(out) } else { Err(err) }
}

/// `multibridge track <target>` against `devnet`'s chains: its JSON answer (and, with
/// `human`, its text).
async fn track_cli(devnet: &Devnet, target: &str, human: bool) -> serde_json::Value {
    let mut args = vec![
        "track".to_owned(),
        "--config".to_owned(),
        devnet.operator_config_path(0).to_str().unwrap().to_owned(),
        target.to_owned(),
    ];
    if !human {
        args.push("--json".to_owned());
    }
    let out = cli(args, String::new())
        .await
        .unwrap_or_else(|e| panic!("track failed: {e}"));
    if human {
        serde_json::Value::String(out)
    } else {
        serde_json::from_str(&out).unwrap()
    }
}

/// A devnet in `mode` whose relays refund after `refund_after` seconds, started.
async fn refunding_devnet(
    refund_after: u64,
    mode: multibridge_config::VotingMode,
) -> (tempfile::TempDir, Devnet) {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        voting_mode: mode,
        ..DevnetOptions::chains_only(dir.path())
    })
    .await
    .unwrap();
    crate::edit_configs(&devnet, |c| {
        c.recovery.refund_after_secs = refund_after;
        c.recovery.interval_ms = 500;
        c.recovery.claims_poll_ms = 250;
    });
    for op in devnet.operators() {
        devnet.start_relay(op).unwrap();
    }
    (dir, devnet)
}

/// `multibridge refund` as user `user` of `driver` for `tx` on `lane`, its JSON outcome or its
/// error output.
async fn refund_cli(
    devnet: &Devnet,
    driver: &Driver,
    user: usize,
    lane: Lane,
    tx: alloy::primitives::B256,
    timeout_secs: u64,
) -> Result<serde_json::Value, String> {
    let args = [
        "refund",
        "--config",
        devnet.operator_config_path(0).to_str().unwrap(),
        "--lane",
        lane.as_str(),
        "--tx",
        &tx.to_string(),
        "--key-env",
        "USER_KEY",
        "--timeout",
        &timeout_secs.to_string(),
        "--json",
    ]
    .map(str::to_owned)
    .to_vec();
    let key = driver.manifest().users[user].private_key.clone();
    cli(args, key)
        .await
        .map(|out| serde_json::from_str(out.trim()).unwrap())
}

/// A destination paused (by its owner, for good as far as the user knows) holds a native
/// transfer. Its requester asks for its money back with `multibridge refund`: someone else's
/// key is refused, the requester's claim reaches every operator, the relays cancel the request
/// on the paused destination (a cancel releases nothing, so a pause does not stop it) and it is
/// refunded on the source, once; the destination stays paused and released nothing. In
/// attested mode: the relays cancel by votes in both modes, and the refund's signatures travel
/// the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_requester_takes_back_a_transfer_held_by_a_paused_destination() {
    let (dir, devnet) = refunding_devnet(5, multibridge_config::VotingMode::Attestations).await;
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    crate::guardian::owner_pauses(&driver, ChainRole::Service).await;
    let main_bridge = driver.chain(ChainRole::Main).contracts.bridge;
    let bridge_before = driver
        .native_balance(ChainRole::Main, main_bridge)
        .await
        .unwrap();
    let recipient = Address::repeat_byte(0x65);
    let held = driver
        .request_native(lane, 0, recipient, parse_ether("2").unwrap())
        .await
        .unwrap();
    let target = format!("main-to-service:{}", held.nonce);
    let waiting = crate::Poll::new(
        "the held transfer shows as waiting",
        Duration::from_secs(30),
    )
    .until(async || {
        let t = track_cli(&devnet, &target, false).await;
        if t["state"] == "waiting" {
            Ok(t)
        } else {
            Err(t.to_string())
        }
    })
    .await;
    assert_eq!(waiting["reason"]["name"], "paused", "{waiting}");
    assert!(
        waiting["next"].as_str().unwrap().contains("paused"),
        "{waiting}"
    );
    assert!(
        waiting["command"]
            .as_str()
            .unwrap()
            .starts_with("multibridge refund"),
        "{waiting}"
    );
    let text = track_cli(&devnet, &target, true).await;
    let text = text.as_str().unwrap();
    assert!(text.contains("— waiting"), "{text}");
    assert!(text.contains("\n  why: paused"), "{text}");
    assert!(text.contains("\n  run: multibridge refund"), "{text}");
    let refused = refund_cli(&devnet, &driver, 1, lane, held.srcTxHash, 30)
        .await
        .unwrap_err();
    assert!(
        refused.contains("only the requester may give up its transfer"),
        "{refused}"
    );
    let outcome = refund_cli(&devnet, &driver, 0, lane, held.srcTxHash, 120)
        .await
        .unwrap_or_else(|e| {
            multibridge_devnet::harness::invariants::dump_relay_logs(dir.path(), 3, 40);
            panic!("refund failed: {e}")
        });
    assert_eq!(outcome["nonce"], held.nonce);
    assert_eq!(outcome["refunded"], true);
    assert_eq!(outcome["cancelled"], true);
    // One refund claim per operator whose lane service is registered (under load a relay may
    // not have registered yet: the threshold of two is what must have it).
    let claims = outcome["claims"].as_array().unwrap().len();
    assert!(claims >= 2, "{outcome}");
    assert_eq!(refunds_of(&driver, ChainRole::Main, held.nonce).await, 1);
    let reader = |role: ChainRole| {
        Bridge::new(
            driver.chain(role).contracts.bridge,
            driver.provider(role).unwrap(),
        )
    };
    let destination = reader(ChainRole::Service);
    assert!(
        destination.paused().call().await.unwrap(),
        "the owner's pause stands"
    );
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, recipient)
            .await
            .unwrap(),
        U256::ZERO,
        "the paused destination released nothing"
    );
    // The source holds what it held before, plus the fee (it paid for the attempt).
    assert_eq!(
        driver
            .native_balance(ChainRole::Main, main_bridge)
            .await
            .unwrap(),
        bridge_before + held.fee
    );
    // Each relay took the requester's claim; none took the stranger's (it never reached them:
    // the command refused it before sending anything).
    let mut asked = 0.0;
    for port in devnet.operator_http_ports.clone() {
        asked += multibridge_devnet::harness::scrape::metric(
            port,
            "multibridge_refund_steps_total{lane=\"main-to-service\",step=\"asked\"}",
        )
        .await
        .unwrap_or(0.0);
    }
    assert_eq!(
        asked, claims as f64,
        "every relay that got the claim took it"
    );
    assert!(!reader(ChainRole::Main).paused().call().await.unwrap());
}

/// The destination refuses an ERC-20 request (its pair deregistered) and the requester asks for
/// a refund; the owner registers the pair again just as the refund window ends, so the
/// operators' execution votes and cancel votes race on the destination. It ends in exactly one
/// of the two: released to the recipient and never refunded, or cancelled, released nothing and
/// refunded to the requester once.
#[tokio::test(flavor = "multi_thread")]
async fn a_refund_raced_against_the_execution_ends_in_exactly_one_of_them() {
    let (dir, devnet) = refunding_devnet(8, multibridge_config::VotingMode::Votes).await;
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let owner = driver.owner().unwrap();
    let (main, service) = (
        driver.chain(ChainRole::Main),
        driver.chain(ChainRole::Service),
    );
    let admin = Bridge::new(
        service.contracts.bridge,
        driver.wallet_provider(ChainRole::Service, &owner).unwrap(),
    );
    admin
        .deregisterTokenPair(service.contracts.token)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let user = driver.user(0).unwrap().address();
    let recipient = Address::repeat_byte(0x66);
    let before = driver.token_balance(ChainRole::Main, user).await.unwrap();
    let amount = parse_ether("3").unwrap();
    let request = driver
        .request_erc20(lane, 0, recipient, amount)
        .await
        .unwrap();
    let asked_at = std::time::Instant::now();
    // The claim is filed; the command gives up following after a few seconds (the claim stays).
    let _ = refund_cli(&devnet, &driver, 0, lane, request.srcTxHash, 4).await;
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(asked_at.elapsed())).await;
    admin
        .registerTokenPair(
            service.contracts.token,
            main.contracts.token,
            multibridge_contracts::TokenMode::BurnMint as u8,
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let reader = |role: ChainRole| {
        Bridge::new(
            driver.chain(role).contracts.bridge,
            driver.provider(role).unwrap(),
        )
    };
    let (source, destination) = (reader(ChainRole::Main), reader(ChainRole::Service));
    let cancelled = crate::Poll::new(
        "the request ends one way or the other",
        Duration::from_secs(90),
    )
    .logs(dir.path(), 3, 40)
    .until(async || {
        if source.isRefunded(request.nonce).call().await.unwrap() {
            return Ok(true);
        }
        let released = driver
            .token_balance(ChainRole::Service, recipient)
            .await
            .unwrap();
        if released == amount {
            return Ok(false);
        }
        Err(format!("released {released}, not refunded"))
    })
    .await;
    eprintln!(
        "the race ended {}",
        if cancelled {
            "cancelled and refunded"
        } else {
            "executed"
        }
    );
    // Let whatever the losing side still had in flight land.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let released = driver
        .token_balance(ChainRole::Service, recipient)
        .await
        .unwrap();
    let refunded = source.isRefunded(request.nonce).call().await.unwrap();
    let key = destination
        .cancelledKey(request.nonce)
        .call()
        .await
        .unwrap();
    assert!(destination.isHandled(request.nonce).call().await.unwrap());
    if cancelled {
        assert_eq!(released, U256::ZERO, "cancelled: nothing released");
        assert!(!key.is_zero());
        assert_eq!(
            driver.token_balance(ChainRole::Main, user).await.unwrap(),
            before
        );
        assert_eq!(refunds_of(&driver, ChainRole::Main, request.nonce).await, 1);
    } else {
        assert_eq!(released, amount, "executed: released once");
        assert!(key.is_zero(), "an executed nonce is never cancelled");
        assert!(!refunded, "an executed request is never refunded");
        assert_eq!(
            driver.token_balance(ChainRole::Main, user).await.unwrap(),
            before - amount
        );
        assert_eq!(refunds_of(&driver, ChainRole::Main, request.nonce).await, 0);
    }
}
