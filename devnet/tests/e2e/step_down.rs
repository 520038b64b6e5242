//! A leader that cannot serve steps down (issue 35): its destination chain's RPC blackholed
//! while etcd and the source chain stay reachable, the leader of that lane hands it to its
//! operator's standby — which then votes within TTL + 2 s — keeps the lane whose destination it
//! still reaches, and does not take the lane back while it cannot serve. Nothing is lost or
//! doubled.

use std::time::{Duration, Instant};

use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::harness::ha::{
    Traffic, check_drained, leader_series, start_ha, votes_series,
};
use multibridge_devnet::harness::invariants::dump_relay_logs;
use multibridge_devnet::harness::proxy::ProxyMode;
use multibridge_devnet::harness::scrape::{metric, metric_sum};
use multibridge_devnet::{DevnetOptions, Driver};

use crate::Poll;

const TTL: Duration = Duration::from_secs(3);
/// Its destination is the service chain, whose RPC is cut.
const LANE: Lane = Lane::MainToService;
/// Its destination is the main chain, still reachable.
const OTHER_LANE: Lane = Lane::ServiceToMain;

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_its_destination_hands_the_lane_to_its_standby() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = start_ha(DevnetOptions {
        replica_links: true,
        ..DevnetOptions::hot_standby(dir.path()).alone()
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let traffic = Traffic::start(
        Driver::new(devnet.manifest()),
        LANE,
        0,
        Duration::from_millis(200),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;

    let [leader, standby] = [
        devnet.replica_http_ports[0][0],
        devnet.replica_http_ports[0][1],
    ];
    let before = metric(standby, &votes_series(LANE)).await.unwrap_or(0.0);
    let link = devnet.replica_links(0, 0).unwrap().rpc(ChainRole::Service);
    link.set_mode(ProxyMode::Blackhole);
    let cut = Instant::now();
    Poll::new("the standby never voted", Duration::from_secs(30))
        .every(Duration::from_millis(50))
        .logs(dir.path(), 3, 30)
        .until(async || {
            let votes = metric(standby, &votes_series(LANE)).await.unwrap_or(0.0);
            if votes > before {
                Ok(())
            } else {
                Err(format!("{votes} votes, {before} before the cut"))
            }
        })
        .await;
    let took = cut.elapsed();
    println!(
        "destination RPC blackholed at the leader -> first vote by the standby {:.2} s (TTL {TTL:?})",
        took.as_secs_f64()
    );
    assert!(
        took <= TTL + Duration::from_secs(2),
        "the standby voted only {took:?} after the cut"
    );
    let handed = metric_sum(
        leader,
        "multibridge_leadership_handovers_total",
        "reason=\"destination_rpc\"",
    )
    .await
    .unwrap_or_default();
    assert_eq!(handed, 1.0, "one handover, for the destination RPC");
    assert_eq!(
        metric(leader, &leader_series(OTHER_LANE)).await,
        Some(1.0),
        "the lane whose destination still answers stays with the leader"
    );

    // While its RPC stays cut the sick replica does not take the lane back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(metric(leader, &leader_series(LANE)).await, Some(0.0));
    assert_eq!(metric(standby, &leader_series(LANE)).await, Some(1.0));

    link.set_mode(ProxyMode::Forward);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let nonces: Vec<u64> = traffic
        .stop()
        .await
        .unwrap()
        .iter()
        .map(|s| s.nonce)
        .collect();
    if let Err(e) = check_drained(&driver, LANE, &nonces, 3).await {
        dump_relay_logs(dir.path(), 3, 30);
        panic!("{e}");
    }
}
