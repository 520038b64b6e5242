//! One relay process per operator serving several bridge pairs (issue 37), on a real hub
//! devnet: a main chain with two service chains side by side and one service chain of the
//! first (nested) — three pairs, six lanes, four anvil chains, a real etcd.
//!
//! Traffic on every lane; a hostile recipient (burns all gas on chain) on one pair's lane into
//! the main chain, where every pair's votes share each operator's one key; one service chain
//! stopped for 15 s and started again with the same chain while the other pairs keep moving.
//! Afterwards: every transfer handled exactly once with one vote per operator, the token locked
//! equals the token minted on every pair, and on the main chain and on the first service chain
//! (each written to by two pairs) no operator has a transaction queued behind a nonce gap and no
//! relay ever found a nonce of its key taken by another sender.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, GasPriceGriefer, Lane};
use multibridge_devnet::harness::invariants::{
    assert_exactly_once, dump_relay_logs, wait_all_handled, wait_no_nonce_gap,
};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

const OPERATORS: usize = 3;
/// Requests per lane per round.
const PER_LANE: usize = 6;
/// The pair whose service chain is stopped and started again, and whose lane into the main
/// chain gets the hostile recipient.
const TROUBLED: &str = "main-service-2";

/// `text` without its terminal colour codes (`ESC [ … m`).
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Requests on every lane of every pair: `PER_LANE` native ones each, and on main-to-service
/// also `PER_LANE / 2` ERC-20 ones. Returns, per (pair, lane), the nonces requested.
async fn traffic(
    pairs: &BTreeMap<String, Driver>,
    skip: Option<&str>,
    next: &mut BTreeMap<(String, Lane), u64>,
    round: u8,
) {
    for (name, driver) in pairs {
        if skip == Some(name.as_str()) {
            continue;
        }
        for lane in Lane::ALL {
            let to = Address::repeat_byte(0x40 + round);
            let mut requests = driver
                .request_native_burst(lane, 0, to, U256::from(1_000u64), PER_LANE)
                .await
                .unwrap();
            if lane == Lane::MainToService {
                for _ in 0..PER_LANE / 2 {
                    requests.push(
                        driver
                            .request_erc20(lane, 1, to, U256::from(10u64).pow(U256::from(18)))
                            .await
                            .unwrap(),
                    );
                }
            }
            let end = requests.iter().map(|r| r.nonce).max().unwrap() + 1;
            let seen = next.entry((name.clone(), lane)).or_insert(0);
            *seen = (*seen).max(end);
        }
    }
}

async fn wait_pairs(
    devnet: &Devnet,
    pairs: &BTreeMap<String, Driver>,
    next: &BTreeMap<(String, Lane), u64>,
    only: impl Fn(&str) -> bool,
    timeout: Duration,
) {
    for ((name, lane), end) in next {
        if !only(name) {
            continue;
        }
        let took = wait_all_handled(&pairs[name], *lane, 0..*end, timeout).await;
        if let Err(e) = took {
            dump_relay_logs(devnet.dir(), OPERATORS, 80);
            panic!("pair {name}: {e}");
        }
    }
}

/// A hub devnet with relays (`options` on top of a 1-member etcd), a driver per pair, and every
/// replica's API of every pair ready.
async fn start_hub(options: DevnetOptions) -> (Devnet, BTreeMap<String, Driver>) {
    let devnet = Devnet::start(DevnetOptions {
        relays: true,
        etcd_members: 1,
        ..options
    })
    .await
    .unwrap();
    let manifest = devnet.manifest();
    let pairs = manifest.drivers(&Devnet::first_pair_name());
    for pair in &manifest.pairs {
        for url in pair.http_urls.iter().flatten() {
            crate::relay_ready(port_of(url), Duration::from_secs(90)).await;
        }
    }
    (devnet, pairs)
}

/// Exactly once with one vote per operator over every nonce requested on every lane, and no
/// operator transaction queued behind a nonce gap on the first pair's chains.
async fn assert_once_and_no_gap(
    pairs: &BTreeMap<String, Driver>,
    next: &BTreeMap<(String, Lane), u64>,
) {
    for ((name, lane), end) in next {
        if let Err(e) = assert_exactly_once(&pairs[name], *lane, 0..*end).await {
            panic!("pair {name}: {e}");
        }
    }
    let first = &pairs["main-service"];
    for role in [ChainRole::Main, ChainRole::Service] {
        for op in 0..OPERATORS {
            wait_no_nonce_gap(first, role, op, Duration::from_secs(30))
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_process_serves_three_service_chains_one_nested_exactly_once_and_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let (mut devnet, pairs) = start_hub(DevnetOptions {
        service_chains: 2,
        nested: true,
        ..DevnetOptions::new(dir.path())
    })
    .await;
    assert_eq!(
        pairs.keys().collect::<Vec<_>>(),
        ["main-service", "main-service-2", "service-nested"],
        "the pairs of the hub devnet"
    );

    // Round 1: every lane of every pair, at once.
    let mut next = BTreeMap::new();
    traffic(&pairs, None, &mut next, 1).await;

    // The hostile recipient: burns every unit of gas it is given on the main chain, reached
    // through the troubled pair's lane into the main chain.
    let troubled = &pairs[TROUBLED];
    let griefer = {
        let deployer = troubled
            .wallet_provider(ChainRole::Main, &troubled.user(3).unwrap())
            .unwrap();
        *GasPriceGriefer::deploy(deployer).await.unwrap().address()
    };
    let hostile = troubled
        .request_native(Lane::ServiceToMain, 2, griefer, U256::from(777u64))
        .await
        .unwrap();
    let end = next
        .get_mut(&(TROUBLED.to_owned(), Lane::ServiceToMain))
        .unwrap();
    *end = (*end).max(hostile.nonce + 1);
    wait_pairs(&devnet, &pairs, &next, |_| true, Duration::from_secs(120)).await;
    let main_bridge = Bridge::new(
        troubled.chain(ChainRole::Main).contracts.bridge,
        troubled.provider(ChainRole::Main).unwrap(),
    );
    assert_eq!(
        main_bridge.pendingWithdrawal(griefer).call().await.unwrap(),
        U256::from(777u64),
        "the hostile recipient is credited (its code never ran in a vote)"
    );

    // Round 2: the troubled pair's service chain stops; the others keep moving meanwhile.
    let down = Duration::from_secs(15);
    devnet.stop_hub_chain(TROUBLED).unwrap();
    let stopped_at = std::time::Instant::now();
    // Requests into the stopped chain wait on the main chain.
    let into_stopped = troubled
        .request_native_burst(
            Lane::MainToService,
            0,
            Address::repeat_byte(0x52),
            U256::from(5u64),
            PER_LANE,
        )
        .await
        .unwrap();
    traffic(&pairs, Some(TROUBLED), &mut next, 2).await;
    wait_pairs(
        &devnet,
        &pairs,
        &next,
        |name| name != TROUBLED,
        Duration::from_secs(60),
    )
    .await;
    println!(
        "the other pairs drained round 2 {:?} after {TROUBLED}'s service chain stopped",
        stopped_at.elapsed()
    );
    tokio::time::sleep(down.saturating_sub(stopped_at.elapsed())).await;
    devnet.start_hub_chain(TROUBLED).await.unwrap();
    let end = next
        .get_mut(&(TROUBLED.to_owned(), Lane::MainToService))
        .unwrap();
    *end = (*end).max(into_stopped.last().unwrap().nonce + 1);
    traffic(&pairs, None, &mut next, 3).await;
    wait_pairs(&devnet, &pairs, &next, |_| true, Duration::from_secs(180)).await;

    assert_once_and_no_gap(&pairs, &next).await;
    // The pairs on one chain read its head, its confirmed blocks' logs, (their guardians) the
    // new releases at its head and (one batch for every pair's bridge) the bridges' counters
    // once for the process (issue 54): operator 1's process answered some of each from another
    // task's read.
    let manifest = devnet.manifest();
    let ports: Vec<u16> = std::iter::once(manifest.operators[0].http_urls[0].as_str())
        .chain(
            manifest
                .pairs
                .iter()
                .skip(1)
                .map(|p| p.http_urls[0][0].as_str()),
        )
        .map(port_of)
        .collect();
    for read in [
        "head",
        "logs",
        "head logs",
        "bridge counters read alongside",
    ] {
        let mut shared = 0.0;
        for port in &ports {
            shared += multibridge_devnet::harness::scrape::metric_sum(
                *port,
                "multibridge_rpc_shared_reads_total",
                &format!("read=\"{read}\""),
            )
            .await
            .unwrap_or_default();
        }
        assert!(
            shared > 0.0,
            "operator 1's process read every {read} itself: nothing was shared"
        );
    }
    // The sum over the process's APIs of `metric`'s series matching `filter`.
    let total = |metric: &'static str, filter: &'static str| {
        let ports = &ports;
        async move {
            let mut sum = 0.0;
            for port in ports {
                sum += multibridge_devnet::harness::scrape::metric_sum(*port, metric, filter)
                    .await
                    .unwrap_or_default();
            }
            sum
        }
    };
    // Its caught-up indexers step when a chain's node pushes a block, not on a timer after it
    // (issue 54): some of the main chain's were woken by a push.
    let woken = total(
        "multibridge_indexer_woken_by_push_total",
        "lane=\"main-to-service\"",
    )
    .await;
    assert!(
        woken > 0.0,
        "no main -> service indexer of operator 1's process was woken by a pushed block"
    );
    // Its voters plan a block's votes before the block is final and send them with that plan
    // when it is (issue 54): some votes went without an estimate at their block.
    let prepared = total("multibridge_vote_plans_prepared_total", "").await;
    let used = total("multibridge_vote_plans_prepared_used_total", "").await;
    assert!(
        used > 0.0 && used <= prepared,
        "operator 1's process sent {used} votes with a plan made ahead of {prepared} made"
    );
    // Its lane leaders heartbeat together (issue 54): fewer heartbeat transactions (every
    // attempt, whatever its outcome) than heartbeats.
    let beats = total("multibridge_etcd_heartbeats_total", "outcome=\"rewritten\"").await;
    let txns = total("multibridge_etcd_requests_total", "call=\"heartbeat\"").await;
    assert!(
        beats > 0.0 && txns > 0.0 && beats > 1.5 * txns,
        "operator 1's process sent {txns} heartbeat transactions for {beats} heartbeats: its leaders did not heartbeat together"
    );
    // Its backup workers keep one liveness lease for the process (issue 54): every lane's
    // `alive` key of each of operator 1's replicas is under one lease.
    let signer = pairs["main-service"].operator(0).unwrap().address();
    let mut etcd = etcd_client::Client::connect(manifest.etcd_endpoints.clone(), None)
        .await
        .unwrap();
    let alive_dir = format!("/{signer:#x}/state/alive/");
    // Each replica's alive keys and the leases they are under; read again once, 2 s later, if a
    // replica's keys are under several (the lease was granted anew and the keys are being put
    // under the new one).
    let mut read_leases = async || {
        let every = etcd
            .get("", Some(etcd_client::GetOptions::new().with_all_keys()))
            .await
            .unwrap();
        let mut leases: BTreeMap<String, std::collections::BTreeSet<i64>> = BTreeMap::new();
        let mut alive_keys = 0;
        for kv in every.kvs() {
            let key = kv.key_str().unwrap();
            if let Some(at) = key.find(&alive_dir) {
                let replica = key[at + alive_dir.len()..].to_owned();
                leases.entry(replica).or_default().insert(kv.lease());
                alive_keys += 1;
            }
        }
        (leases, alive_keys)
    };
    let (mut leases, mut alive_keys) = read_leases().await;
    if leases.values().any(|under| under.len() > 1) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        (leases, alive_keys) = read_leases().await;
    }
    assert!(
        alive_keys >= 2 * pairs.len(),
        "operator 1's replicas keep {alive_keys} alive keys for {} pairs' lanes",
        pairs.len()
    );
    for (replica, under) in &leases {
        assert_eq!(
            under.len(),
            1,
            "operator 1's replica {replica} keeps its lanes' alive keys under leases {under:?}, not one"
        );
    }
    // What one task's read or request answers for the others (issue 54): more answered from
    // another's than sent.
    // - its elections share one lease: most renewals were answered from another election's
    //   renewal of the same lease;
    // - each bridge's counters are read once per block for every task that watches them: the
    //   watchers', upkeep's and recovery's asks answered from another task's batch.
    for (what, shared_metric, shared_filter, sent_metric, sent_filter) in [
        (
            "lease renewals",
            "multibridge_etcd_shared_reads_total",
            "call=\"lease keep-alive\"",
            "multibridge_etcd_requests_total",
            "call=\"lease keep-alive\"",
        ),
        // - its backup workers read every lane's state in one transaction a round.
        (
            "backup state reads",
            "multibridge_etcd_shared_reads_total",
            "call=\"read state versions\"",
            "multibridge_etcd_requests_total",
            "call=\"read state versions\"",
        ),
        (
            "bridge counters",
            "multibridge_rpc_shared_reads_total",
            "read=\"bridge counters\"",
            "multibridge_rpc_requests_total",
            "method=\"bridge counters\"",
        ),
    ] {
        let shared = total(shared_metric, shared_filter).await;
        let sent = total(sent_metric, sent_filter).await;
        assert!(
            sent > 0.0 && shared > sent,
            "operator 1's process sent {sent} and shared {shared} {what}: they were not shared"
        );
    }
    for (name, driver) in &pairs {
        let locked = driver
            .token_balance(
                ChainRole::Main,
                driver.chain(ChainRole::Main).contracts.bridge,
            )
            .await
            .unwrap();
        let minted = driver.token_supply(ChainRole::Service).await.unwrap();
        assert_eq!(locked, minted, "pair {name}: token locked = token minted");
        assert!(!minted.is_zero(), "pair {name} moved tokens");
    }

    // One nonce sequence per operator key on each chain two pairs write to: no sender of the
    // process ever found its nonce taken by another (what two submitters of one key in one
    // process would do to each other).
    let first = &pairs["main-service"];
    for op in 1..=OPERATORS {
        let log =
            std::fs::read_to_string(devnet.dir().join(format!("logs/relay-{op}.log"))).unwrap();
        for clash in ["nonce too low", "taken twice"] {
            assert!(
                !log.contains(clash),
                "relay {op} logged {clash:?}: two senders of one key"
            );
        }
        // One submitter per chain for the operator's key, whatever the pairs writing there.
        let signer = first.operator(op - 1).unwrap().address();
        let plain = without_ansi(&log);
        for chain_id in [
            first.chain(ChainRole::Main).contracts.chain_id,
            first.chain(ChainRole::Service).contracts.chain_id,
        ] {
            // A submitter logs when it (re)builds its nonce sequence, under the span of the
            // pair that started it: one pair's span only (a term may end and rebuild it).
            let owners: std::collections::BTreeSet<&str> = plain
                .lines()
                .filter(|l| {
                    l.contains("nonce sequence rebuilt from the chain")
                        && l.contains(&format!("chain_id={chain_id} "))
                        && l.contains(&format!("signer={signer}"))
                })
                .filter_map(|l| {
                    let rest = &l[l.find("pair{pair=")? + "pair{pair=".len()..];
                    Some(&rest[..rest.find('}')?])
                })
                .collect();
            assert_eq!(
                owners.len(),
                1,
                "relay {op}: one submitter for its key on chain {chain_id}, started by one pair (saw {owners:?})"
            );
        }
    }
}

/// The HTTP port in a manifest URL (`http://127.0.0.1:PORT/`).
fn port_of(url: &str) -> u16 {
    url.trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Two replicas per operator, threshold 3 (operator 1's vote is needed everywhere), two service
/// chains side by side: the replica of operator 1 that leads the main chain's election is
/// SIGKILLed right after a round of requests. The standby takes over the main chain for both
/// pairs at once — the lane that campaigns and the other pair's lane that follows it — and every
/// transfer of every lane is handled exactly once, nothing queued behind a nonce gap.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_hub_replica_hands_every_pair_to_its_standby_exactly_once() {
    use multibridge_devnet::harness::scrape::metric;

    let dir = tempfile::tempdir().unwrap();
    let (mut devnet, pairs) = start_hub(DevnetOptions {
        replicas: 2,
        threshold: 3,
        service_chains: 2,
        ..DevnetOptions::new(dir.path())
    })
    .await;
    // ports[pair][replica] of operator 1.
    let ports: BTreeMap<String, Vec<u16>> = devnet
        .manifest()
        .pairs
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.http_urls[0].iter().map(|u| port_of(u)).collect(),
            )
        })
        .collect();
    let mut next = BTreeMap::new();
    traffic(&pairs, None, &mut next, 1).await;
    wait_pairs(&devnet, &pairs, &next, |_| true, Duration::from_secs(120)).await;

    // Who of operator 1 leads the main chain: the same replica for both pairs' lanes into it.
    let into_main =
        |pair: &str| format!("multibridge_leader{{lane=\"service-to-main\",pair=\"{pair}\"}}");
    let leader = crate::Poll::new(
        "one replica of operator 1 leads the main chain for both pairs",
        Duration::from_secs(30),
    )
    .until(async || {
        let mut leads = Vec::new();
        for replica in 0..2 {
            let mut both = true;
            for (name, ports) in &ports {
                both &= metric(ports[replica], &into_main(name)).await == Some(1.0);
            }
            if both {
                leads.push(replica);
            }
        }
        match leads.as_slice() {
            [one] => Ok(*one),
            other => Err(format!("replicas leading both: {other:?}")),
        }
    })
    .await;
    let standby = 1 - leader;

    traffic(&pairs, None, &mut next, 2).await;
    devnet.replica(0, leader).unwrap().kill().unwrap();
    wait_pairs(&devnet, &pairs, &next, |_| true, Duration::from_secs(120)).await;
    crate::Poll::new(
        "the standby leads the main chain for both pairs",
        Duration::from_secs(30),
    )
    .until(async || {
        for (name, ports) in &ports {
            let leads = metric(ports[standby], &into_main(name)).await;
            if leads != Some(1.0) {
                return Err(format!("{name}: {leads:?}"));
            }
        }
        Ok(())
    })
    .await;
    traffic(&pairs, None, &mut next, 3).await;
    wait_pairs(&devnet, &pairs, &next, |_| true, Duration::from_secs(120)).await;

    assert_once_and_no_gap(&pairs, &next).await;
}

/// Audit A3-L5: in a hub each pair's bridges have an owner of their own. The owner of the second
/// service chain's bridge revokes operator 1's guardian as a pauser, and operator 1's relay
/// restarts: that pair fails its preflight for good. Before, it stopped every pair of the
/// process and the relay crash-looped; now it waits alone — its API up, not ready, naming the
/// reason and `multibridge_pair_cannot_serve` 1 — while the first pair's transfers go on through
/// the same process, and once the owner restores the role it serves again.
#[tokio::test(flavor = "multi_thread")]
async fn a_pair_that_cannot_serve_waits_alone_and_the_others_go_on() {
    use multibridge_devnet::harness::accounts::guardian_signer;
    use multibridge_devnet::harness::scrape::metric;

    let dir = tempfile::tempdir().unwrap();
    let (mut devnet, pairs) = start_hub(DevnetOptions {
        service_chains: 2,
        ..DevnetOptions::new(dir.path())
    })
    .await;
    let manifest = devnet.manifest();
    let troubled = manifest.pairs.iter().find(|p| p.name == TROUBLED).unwrap();
    let troubled_port = port_of(&troubled.http_urls[0][0]);
    let driver = &pairs[TROUBLED];
    let bridge = Bridge::new(
        driver.chain(ChainRole::Service).contracts.bridge,
        driver
            .wallet_provider(ChainRole::Service, &driver.owner().unwrap())
            .unwrap(),
    );
    let guardian = guardian_signer(0, 0).unwrap().address();
    bridge
        .setPauser(guardian, false)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    devnet.relay(0).unwrap().restart().unwrap();

    // The troubled pair waits alone, saying why.
    let cannot_serve = format!("multibridge_pair_cannot_serve{{pair=\"{TROUBLED}\"}}");
    crate::Poll::new(
        "the troubled pair reports it cannot serve",
        Duration::from_secs(90),
    )
    .logs(devnet.dir(), OPERATORS, 40)
    .until(async || match metric(troubled_port, &cannot_serve).await {
        Some(1.0) => Ok(()),
        other => Err(format!(
            "{cannot_serve} = {other:?} on port {troubled_port}"
        )),
    })
    .await;
    let ready = reqwest::get(format!("http://127.0.0.1:{troubled_port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let why = ready.text().await.unwrap();
    assert!(why.contains("pauser"), "/readyz names the reason: {why}");

    // The first pair goes on through operator 1's same process (threshold 2 of 3 would not
    // need it: its votes are checked below).
    let first = &pairs["main-service"];
    let first_port = port_of(&manifest.pairs[0].http_urls[0][0]);
    crate::relay_ready(first_port, Duration::from_secs(60)).await;
    let mut next = BTreeMap::new();
    traffic(&pairs, Some(TROUBLED), &mut next, 1).await;
    wait_pairs(
        &devnet,
        &pairs,
        &next,
        |n| n != TROUBLED,
        Duration::from_secs(90),
    )
    .await;
    let operator1 = first.operator(0).unwrap().address();
    for lane in Lane::ALL {
        let end = next[&("main-service".to_owned(), lane)];
        let votes = multibridge_devnet::harness::invariants::votes_per_operator(first, lane)
            .await
            .unwrap();
        let round = end.saturating_sub(PER_LANE as u64);
        assert!(
            votes
                .keys()
                .any(|(nonce, op)| *op == operator1 && *nonce >= round),
            "operator 1 still votes on the first pair's {lane}"
        );
    }

    // The owner restores the role: the pair serves again within its retry.
    bridge
        .setPauser(guardian, true)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    crate::relay_ready(troubled_port, Duration::from_secs(150)).await;
    assert_eq!(metric(troubled_port, &cannot_serve).await, Some(0.0));
}
