//! The Service Registry Dashboard in a real browser (headless Chromium through chromedriver)
//! against a real devnet: the overview's numbers are the chains', a stuck transfer shows its
//! reason and the claim command in the tracker, a claim filed with the CLI appears and turns
//! resolved, register and update location from the page emit `NewLocation` on chain, and writes
//! without a login, or from another site's page, are refused and change nothing.

use std::time::Duration;

use alloy::primitives::utils::parse_ether;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_config::{Secret, SignerConfig};
use multibridge_contracts::bindings::ServiceRegistry;
use multibridge_contracts::{Bridge, ChainRole, Lane, LaneServiceMeta};
use multibridge_devnet::harness::browser::Browser;
use multibridge_devnet::harness::driver::Driver;
use multibridge_devnet::harness::invariants::{assert_exactly_once, wait_all_handled};
use multibridge_devnet::{Devnet, DevnetOptions};

use crate::{Poll, eventually, metric_at_least};

const OPERATORS: usize = 3;

/// Where the test run's screenshots go (docs/dashboard.md shows them).
fn screenshot_dir() -> std::path::PathBuf {
    multibridge_devnet::harness::tools::workspace_root().join("target/dashboard-screenshots")
}

/// The `NewLocation` locations of service `id`, oldest first.
async fn new_locations(driver: &Driver, registry: Address, id: B256) -> Vec<String> {
    let provider = driver.provider(ChainRole::Main).unwrap();
    let filter = Filter::new()
        .address(registry)
        .event_signature(ServiceRegistry::NewLocation::SIGNATURE_HASH)
        .topic1(id)
        .from_block(0u64);
    provider
        .get_logs(&filter)
        .await
        .unwrap()
        .iter()
        .map(|l| {
            l.log_decode::<ServiceRegistry::NewLocation>()
                .unwrap()
                .inner
                .data
                .location
        })
        .collect()
}

/// The chains' bookkeeping of a lane: (requestNonce, lowerHandleNonce, upperHandleNonce).
async fn chain_nonces(driver: &Driver, lane: Lane) -> (u64, u64, u64) {
    let src = Bridge::new(
        driver.chain(lane.source()).contracts.bridge,
        driver.provider(lane.source()).unwrap(),
    );
    let dst = Bridge::new(
        driver.chain(lane.destination()).contracts.bridge,
        driver.provider(lane.destination()).unwrap(),
    );
    (
        src.requestNonce().call().await.unwrap(),
        dst.lowerHandleNonce().call().await.unwrap(),
        dst.upperHandleNonce().call().await.unwrap(),
    )
}

/// A page on another origin that posts a write to the dashboard as soon as it loads (what a
/// malicious site would do to a logged-in operator).
async fn serve_attacker_page(target: String) -> (u16, tokio::task::JoinHandle<()>) {
    let html = format!(
        "<!doctype html><html><body><form id=f method=POST enctype=\"text/plain\" action=\"{target}/ui/api/services/location\">\
         <input name='{{\"id\":\"0x{}\",\"location\":\"http://evil.example/\",\"x\":\"' value='\"}}'></form>\
         <script>document.getElementById('f').submit();</script></body></html>",
        "11".repeat(32)
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, task)
}

/// Wait until the first element matching `css` has a text containing `expected`.
async fn page_shows(
    browser: &Browser,
    css: &str,
    expected: &str,
    what: impl Into<String>,
    secs: u64,
) {
    eventually(what, Duration::from_secs(secs), async || {
        match browser.text(css).await.unwrap() {
            Some(t) if t.contains(expected) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_a_real_browser_matches_the_chains_tracks_claims_and_writes_the_registry()
{
    let dir = tempfile::tempdir().unwrap();
    // Operator 1's dashboard writes as a manager key of its own (a devnet user account).
    let manager = multibridge_devnet::harness::accounts::dev_signer(7).unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        relays: true,
        dashboard_manager: Some(SignerConfig::DevKey {
            private_key: Secret::new(format!("0x{}", alloy::hex::encode(manager.to_bytes()))),
        }),
        ..DevnetOptions::new(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let registry = devnet.manifest().registry;
    let port = devnet.operator_http_ports[0];
    let base = format!("http://127.0.0.1:{port}");
    crate::relay_ready(port, Duration::from_secs(60)).await;

    // Traffic both ways, all handled; then one transfer the service bridge cannot pay.
    for i in 0..3u64 {
        driver
            .request_native(
                Lane::MainToService,
                0,
                Address::repeat_byte(0x61),
                U256::from(1_000 + i),
            )
            .await
            .unwrap();
    }
    for i in 0..2u64 {
        driver
            .request_native(
                Lane::ServiceToMain,
                1,
                Address::repeat_byte(0x62),
                U256::from(2_000 + i),
            )
            .await
            .unwrap();
    }
    wait_all_handled(&driver, Lane::MainToService, 0..3, Duration::from_secs(60))
        .await
        .unwrap();
    wait_all_handled(&driver, Lane::ServiceToMain, 0..2, Duration::from_secs(60))
        .await
        .unwrap();
    let service_bridge = driver.chain(ChainRole::Service).contracts.bridge;
    let liquidity = driver
        .native_balance(ChainRole::Service, service_bridge)
        .await
        .unwrap();
    let stuck = driver
        .request_native(
            Lane::MainToService,
            0,
            Address::repeat_byte(0x63),
            liquidity + parse_ether("1").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stuck.nonce, 3);

    // The first vote for it is recorded (below the threshold nothing executes); the operators
    // whose vote would execute it learn the shortage and name it. Follow the dashboard of one
    // of those (any relay's page would do for the numbers).
    let series =
        "multibridge_stuck_requests{lane=\"main-to-service\",reason=\"insufficient_liquidity\"}";
    let knowing = Poll::new(
        "no relay named the liquidity shortage",
        Duration::from_secs(40),
    )
    .logs(devnet.dir(), OPERATORS, 20)
    .until(async || {
        for port in &devnet.operator_http_ports {
            if multibridge_devnet::harness::scrape::metric(*port, series)
                .await
                .unwrap_or(0.0)
                >= 1.0
            {
                return Ok(*port);
            }
        }
        Err("none yet".to_owned())
    })
    .await;
    let user_base = format!("http://127.0.0.1:{knowing}");

    let browser = Browser::start(dir.path(), 1400, 1800).await.unwrap();
    let shots = screenshot_dir();

    // Overview: the page's numbers are the chains' (the lanes are idle but for the stuck one).
    browser
        .goto(&format!("{user_base}/#/overview"))
        .await
        .unwrap();
    for lane in Lane::ALL {
        let (requests, lower, upper) = chain_nonces(&driver, lane).await;
        Poll::new(
            format!("the overview's {lane} numbers never matched the chains"),
            Duration::from_secs(40),
        )
        .logs(devnet.dir(), OPERATORS, 20)
        .until(async || {
            let cell = |k: &str| format!("[data-lane=\"{lane}\"] [data-k=\"{k}\"]");
            let seen = (
                browser.text(&cell("request_nonce")).await.unwrap(),
                browser.text(&cell("lower_handle_nonce")).await.unwrap(),
                browser.text(&cell("upper_handle_nonce")).await.unwrap(),
                browser.text(&cell("pending")).await.unwrap(),
            );
            let want = (
                Some(requests.to_string()),
                Some(lower.to_string()),
                Some(upper.to_string()),
                Some((requests - lower).to_string()),
            );
            if seen == want {
                Ok(())
            } else {
                Err(format!("page {seen:?}, chains {want:?}"))
            }
        })
        .await;
    }
    // The stuck transfer's reason, conservation, every operator's leader, the latency figures.
    eventually(
        "the overview never showed the liquidity shortage, conservation, leaders and latency",
        Duration::from_secs(40),
        async || {
            let waiting = browser
                .texts("[data-lane=\"main-to-service\"] tr[data-reason=\"insufficient_liquidity\"] [data-k=\"waiting_requests\"]")
                .await
                .unwrap();
            let holds = browser
                .texts("[data-lane=\"main-to-service\"] [data-k=\"conservation_ok\"]")
                .await
                .unwrap();
            let leaders = browser
                .texts("table.elections[data-lane=\"main-to-service\"] [data-k=\"leader\"]")
                .await
                .unwrap();
            let latency = browser
                .text("[data-lane=\"main-to-service\"] [data-k=\"latency\"]")
                .await
                .unwrap()
                .unwrap_or_default();
            let ok = waiting == ["1"]
                && !holds.is_empty()
                && holds.iter().all(|h| h.contains("holds"))
                && leaders.len() == OPERATORS
                && leaders.iter().all(|l| l.starts_with("operator-"))
                && !latency.starts_with('–');
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "waiting {waiting:?}, conservation {holds:?}, leaders {leaders:?}, latency {latency:?}"
                ))
            }
        },
    )
    .await;
    browser
        .screenshot(&shots.join("overview.png"))
        .await
        .unwrap();

    // Tracker: the stuck transfer by its transaction shows why, and how to claim it.
    browser.goto(&format!("{user_base}/#/track")).await.unwrap();
    browser
        .fill("#track-q", &stuck.srcTxHash.to_string())
        .await
        .unwrap();
    browser.click("#track-submit").await.unwrap();
    let (state, reason, command) = eventually(
        "the tracker never showed the stuck transfer",
        Duration::from_secs(20),
        async || {
            let state = browser.text(".tracked [data-k=\"state\"]").await.unwrap();
            let reason = browser.text(".tracked [data-k=\"reason\"]").await.unwrap();
            let command = browser
                .text(".tracked [data-k=\"claim_command\"]")
                .await
                .unwrap();
            match (state, reason, command) {
                (Some(s), Some(r), Some(c)) => Ok((s, r, c)),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(state, "waiting");
    assert!(reason.contains("insufficient_liquidity"), "{reason}");
    assert!(
        command.starts_with("multibridge claim ")
            && command.contains("--lane main-to-service --nonce 3"),
        "{command}"
    );
    // Every operator's tracker names the reason, also the one whose vote went in first (its
    // store says voted): it asks the destination what the next vote would meet.
    for port in &devnet.operator_http_ports {
        let answer: serde_json::Value = reqwest::get(format!(
            "http://127.0.0.1:{port}/ui/api/track?q={}",
            stuck.srcTxHash
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(answer["state"], "waiting", "port {port}: {answer}");
        assert_eq!(
            answer["reason"]["name"], "insufficient_liquidity",
            "port {port}: {answer}"
        );
    }
    let votes = browser.texts(".tracked [data-k=\"voted\"]").await.unwrap();
    assert_eq!(votes.len(), OPERATORS, "one row per registered operator");
    browser
        .screenshot(&shots.join("tracker.png"))
        .await
        .unwrap();
    // Bad input is named on the page, never a stack trace.
    for (input, expected) in [
        ("0x1234".to_owned(), "4 hex digits"),
        (format!("0x{}", "ab".repeat(32)), "no transaction"),
        ("hello".to_owned(), "start with 0x"),
    ] {
        browser.fill("#track-q", &input).await.unwrap();
        browser.click("#track-submit").await.unwrap();
        page_shows(
            &browser,
            "#track-error",
            expected,
            format!("no message for {input}"),
            15,
        )
        .await;
    }
    browser
        .goto(&format!("{user_base}/#/track?lane=sideways&nonce=1"))
        .await
        .unwrap();
    page_shows(
        &browser,
        "#track-error",
        "unknown lane `sideways`",
        "no message for a wrong lane",
        15,
    )
    .await;

    // A claim filed with the CLI shows on the claims page, open.
    let user_key = format!(
        "0x{}",
        alloy::hex::encode(driver.user(0).unwrap().to_bytes())
    );
    let output =
        tokio::process::Command::new(multibridge_devnet::harness::tools::relay_binary().unwrap())
            .args(["claim", "--config"])
            .arg(devnet.operator_config_path(0))
            .args([
                "--lane",
                "main-to-service",
                "--nonce",
                "3",
                "--key-env",
                "CLAIM_USER_KEY",
                "--timeout",
                "3",
            ])
            .env("CLAIM_USER_KEY", user_key)
            .output()
            .await
            .unwrap();
    // The transfer stays stuck, so following it times out; the claims are filed regardless.
    eprintln!("claim: {}", String::from_utf8_lossy(&output.stderr));
    browser
        .goto(&format!("{user_base}/#/claims"))
        .await
        .unwrap();
    let row =
        "#claims-table tr[data-lane=\"main-to-service\"][data-nonce=\"3\"] [data-k=\"resolved\"]";
    eventually(
        "the claim never appeared on the page",
        Duration::from_secs(30),
        async || {
            let cells = browser.texts(row).await.unwrap();
            if !cells.is_empty() && cells.iter().all(|c| c == "open") {
                Ok(())
            } else {
                Err(format!("{cells:?}"))
            }
        },
    )
    .await;
    // Someone funds the bridge: the transfer executes, and the claim turns resolved.
    driver
        .fund_bridge(ChainRole::Service, 3, parse_ether("2").unwrap())
        .await
        .unwrap();
    wait_all_handled(&driver, Lane::MainToService, 3..4, Duration::from_secs(60))
        .await
        .unwrap();
    eventually(
        "the claim never turned resolved",
        Duration::from_secs(40),
        async || {
            let cells = browser.texts(row).await.unwrap();
            if !cells.is_empty() && cells.iter().all(|c| c.contains("handled")) {
                Ok(())
            } else {
                Err(format!("{cells:?}"))
            }
        },
    )
    .await;
    browser.screenshot(&shots.join("claims.png")).await.unwrap();
    // The history is the relay's: SIGKILLed and started again, it still lists the claim,
    // resolved, as soon as it serves.
    let index = devnet
        .operator_http_ports
        .iter()
        .position(|p| *p == knowing)
        .unwrap();
    devnet.relay(index).unwrap().restart().unwrap();
    let claims: serde_json::Value = eventually(
        "the restarted relay never served its claims history",
        Duration::from_secs(60),
        async || match reqwest::get(format!("{user_base}/ui/api/claims")).await {
            Ok(r) if r.status().is_success() => r.json().await.map_err(|e| e.to_string()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    let kept: Vec<&serde_json::Value> = claims["claims"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["nonce"] == 3 && c["lane"] == "main-to-service")
        .collect();
    assert!(
        !kept.is_empty() && kept.iter().all(|c| c["resolved_at"].is_u64()),
        "{claims}"
    );

    // Services: a write without a login is refused, and nothing reaches the chain.
    browser.goto(&format!("{base}/#/services")).await.unwrap();
    let refused = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             fetch('/ui/api/services/location', {method: 'POST', headers: {'content-type': 'application/json'},
                   body: JSON.stringify({id: '0x' + '11'.repeat(32), location: 'http://127.0.0.1:9/'})})
               .then(r => r.json().then(b => done([r.status, b.error])));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(refused[0], 401, "{refused}");
    assert!(
        refused[1].as_str().unwrap().contains("not logged in"),
        "{refused}"
    );
    // Log in through the page.
    eventually(
        "the login form never showed",
        Duration::from_secs(15),
        async || match browser
            .client()
            .find(fantoccini::Locator::Css(
                "#login-form:not(.hidden) #login-token",
            ))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    )
    .await;
    browser
        .fill(
            "#login-token",
            multibridge_devnet::harness::devnet::DEVNET_DASHBOARD_TOKEN,
        )
        .await
        .unwrap();
    browser.click("#login-submit").await.unwrap();
    page_shows(
        &browser,
        "#who [data-k=\"session\"]",
        "admin",
        "never logged in",
        15,
    )
    .await;
    // Logged in, a page of another site posts a write with the operator's browser: refused.
    let (evil_port, evil) = serve_attacker_page(base.clone()).await;
    let refused_before = multibridge_devnet::harness::scrape::metric(
        port,
        "multibridge_dashboard_requests_total{endpoint=\"update_location\",outcome=\"refused\"}",
    )
    .await
    .unwrap_or(0.0);
    browser
        .goto(&format!("http://localhost:{evil_port}/"))
        .await
        .unwrap();
    metric_at_least(
        "the cross-site write never reached the relay to be refused",
        port,
        "multibridge_dashboard_requests_total{endpoint=\"update_location\",outcome=\"refused\"}",
        refused_before + 1.0,
        Duration::from_secs(15),
    )
    .await;
    evil.abort();
    assert!(
        new_locations(&driver, registry, B256::repeat_byte(0x11))
            .await
            .is_empty(),
        "a refused write reached the chain"
    );

    // Register the manager key's lane service from the page: NewLocation on chain.
    browser.goto(&format!("{base}/#/services")).await.unwrap();
    eventually(
        "the register form never enabled",
        Duration::from_secs(15),
        async || {
            let enabled = browser
                .client()
                .find(fantoccini::Locator::Css("#register-submit"))
                .await
                .map_err(|e| e.to_string())?
                .is_enabled()
                .await
                .map_err(|e| e.to_string())?;
            if enabled {
                Ok(())
            } else {
                Err("disabled".into())
            }
        },
    )
    .await;
    let first = "http://127.0.0.1:1/first";
    browser
        .select("#register-lane", "main-to-service")
        .await
        .unwrap();
    browser
        .fill("#register-name", "dashboard test service")
        .await
        .unwrap();
    browser.fill("#register-location", first).await.unwrap();
    browser.click("#register-submit").await.unwrap();
    page_shows(
        &browser,
        "#register-result",
        "done in block",
        "registering never finished",
        60,
    )
    .await;
    let main = driver.chain(ChainRole::Main);
    let service = driver.chain(ChainRole::Service);
    let id = LaneServiceMeta {
        src_chain_id: main.contracts.chain_id,
        src_bridge: main.contracts.bridge,
        dst_chain_id: service.contracts.chain_id,
        dst_bridge: service.contracts.bridge,
        operator: manager.address(),
    }
    .service_id();
    assert_eq!(
        new_locations(&driver, registry, id).await,
        vec![first.to_owned()]
    );
    // Update its location from the page: a second NewLocation.
    let option = format!("#location-id option[value=\"{id}\"]");
    eventually(
        "the new service never became selectable",
        Duration::from_secs(30),
        async || match browser
            .client()
            .find(fantoccini::Locator::Css(&option))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    )
    .await;
    let second = "https://dashboard-test.example/second";
    browser
        .select("#location-id", &id.to_string())
        .await
        .unwrap();
    browser.fill("#location-value", second).await.unwrap();
    browser.click("#location-submit").await.unwrap();
    page_shows(
        &browser,
        "#location-result",
        "done in block",
        "updating the location never finished",
        60,
    )
    .await;
    assert_eq!(
        new_locations(&driver, registry, id).await,
        vec![first.to_owned(), second.to_owned()]
    );
    let shown = format!("tr[data-service=\"{id}\"] [data-k=\"location\"]");
    page_shows(
        &browser,
        &shown,
        second,
        "the services table never showed the new location",
        20,
    )
    .await;
    // Its owner is no operator of the bridge: the page says so (a claim there reaches no relay);
    // every operator's own service is in sync with its leader.
    let operator_cell = browser
        .text(&format!("tr[data-service=\"{id}\"] [data-k=\"operator\"]"))
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        operator_cell.contains("not an operator of this bridge"),
        "{operator_cell}"
    );
    let sync = browser
        .texts("#services-table [data-k=\"lagging\"]")
        .await
        .unwrap();
    assert_eq!(
        sync.iter().filter(|s| *s == "in sync").count(),
        OPERATORS * 2,
        "every operator's lane service points at its leader: {sync:?}"
    );
    browser
        .screenshot(&shots.join("services.png"))
        .await
        .unwrap();
    browser.close().await.unwrap();

    assert_exactly_once(&driver, Lane::MainToService, 0..4)
        .await
        .unwrap();
    assert_exactly_once(&driver, Lane::ServiceToMain, 0..2)
        .await
        .unwrap();
}

/// Audit NEW-L1 (2026-11-23) and A3-L3 (2026-11-26): visitors flooding the dashboard's read
/// endpoints of every replica (overview, claims deep pages, services, the tracker) and the
/// public signatures route (`/attestations/{lane}`), and guessing the admin token, while
/// transfers flow on the HA devnet (etcd elections, threshold = every operator): no replica loses
/// or changes its leadership, every transfer is handled exactly once within a bounded latency,
/// the guesses are throttled, and a page under a foreign host name (DNS rebinding) is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_dashboard_reads_costs_no_leadership_and_bounded_vote_latency() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use multibridge_devnet::harness::scrape::metric_sum;

    // Alone on the machine: the flood loads it by itself, and at a 1 s lease a machine that
    // other devnets saturate as well delays heartbeats past their TTL (18 leadership changes
    // seen) whatever the dashboard does.
    let (_dir, devnet) = crate::ha_devnet_alone().await;
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let ports: Vec<u16> = devnet
        .replica_http_ports
        .iter()
        .flatten()
        .copied()
        .collect();
    let mut changes_before = 0.0;
    for port in &ports {
        changes_before += metric_sum(*port, "multibridge_leadership_changes_total", "")
            .await
            .unwrap_or(0.0);
    }

    // A rebinding page's request arrives under its own name: refused.
    let client = reqwest::Client::new();
    let rebound = client
        .get(format!("http://127.0.0.1:{}/ui/api/overview", ports[0]))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        rebound.status().as_u16(),
        421,
        "a foreign host name is refused"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    let probe = Address::repeat_byte(0x42);
    for worker in 0..48usize {
        let (stop, answered, client) = (stop.clone(), answered.clone(), client.clone());
        let port = ports[worker % ports.len()];
        flood.push(tokio::spawn(async move {
            let paths = [
                "/ui/api/overview".to_owned(),
                format!("/ui/api/claims?limit=500&offset={}", worker * 997),
                "/ui/api/services".to_owned(),
                format!("/ui/api/track?q={probe}"),
                format!("/attestations/main-to-service?from={}", worker % 4),
            ];
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("http://127.0.0.1:{port}{}", paths[i % paths.len()]);
                if client.get(url).send().await.is_ok() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    // Token guesses from one address: throttled after a few.
    let mut throttled = false;
    for _ in 0..12 {
        let r = client
            .post(format!("http://127.0.0.1:{}/ui/api/login", ports[1]))
            .json(&serde_json::json!({ "token": "guessing-the-admin-token" }))
            .send()
            .await
            .unwrap();
        throttled |= r.status().as_u16() == 429;
    }
    assert!(throttled, "repeated wrong tokens are throttled (429)");

    // Transfers during the flood: each is handled within the bound.
    let mut worst = Duration::ZERO;
    let mut last = 0;
    for i in 0..8u64 {
        let started = std::time::Instant::now();
        let r = driver
            .request_native(
                lane,
                (i % 3) as usize,
                Address::repeat_byte(0x70),
                U256::from(1_000),
            )
            .await
            .unwrap();
        wait_all_handled(&driver, lane, r.nonce..r.nonce + 1, Duration::from_secs(30))
            .await
            .unwrap();
        worst = worst.max(started.elapsed());
        last = r.nonce;
    }
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    let answered = answered.load(Ordering::Relaxed);
    println!("flood: {answered} dashboard answers; worst transfer (request to handle) {worst:?}");
    assert!(answered > 500, "the flood was real: {answered} answers");
    assert!(
        // Shared with other devnets: 15 s (alone it was 10 s).
        worst < Duration::from_secs(15),
        "a transfer took {worst:?} under the flood"
    );
    assert_exactly_once(&driver, lane, 0..last + 1)
        .await
        .unwrap();
    let mut changes_after = 0.0;
    let mut refused_throttled = 0.0;
    for port in &ports {
        changes_after += metric_sum(*port, "multibridge_leadership_changes_total", "")
            .await
            .unwrap_or(0.0);
        refused_throttled += metric_sum(
            *port,
            "multibridge_dashboard_refused_total",
            "reason=\"throttled\"",
        )
        .await
        .unwrap_or(0.0);
    }
    assert_eq!(
        changes_after, changes_before,
        "no leadership changed under the flood"
    );
    assert!(refused_throttled >= 1.0, "the throttle is counted");
    // The signatures route answered from its cache: far fewer store reads than requests.
    let (mut served, mut cached) = (0.0, 0.0);
    for port in &ports {
        served += metric_sum(
            *port,
            "multibridge_attestation_page_requests_total",
            "outcome=\"served\"",
        )
        .await
        .unwrap_or(0.0);
        cached += metric_sum(
            *port,
            "multibridge_attestation_page_requests_total",
            "outcome=\"cached\"",
        )
        .await
        .unwrap_or(0.0);
    }
    println!("signatures route: {served} store reads, {cached} answers from the cache");
    assert!(
        cached > served,
        "the signatures route is cached: {served} reads, {cached} cached"
    );
}
