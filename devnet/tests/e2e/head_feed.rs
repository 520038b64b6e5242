//! The head pushed by the node (issue 54): a chain with a `ws_url` reads its head once a block,
//! when its `newHeads` subscription pushes the block, and never serves a pushed number itself;
//! a subscription that goes silent is found behind the node's answers, the head is read over
//! HTTP meanwhile (never staler than before), and the subscription is made again once the
//! endpoint answers; one on another chain is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::providers::{Provider, ProviderBuilder};
use multibridge_chain::{ChainClient, RetryPolicy};
use multibridge_contracts::ChainRole;
use multibridge_devnet::harness::devnet::ws_url_of;
use multibridge_devnet::harness::proxy::{ProxyMode, TcpProxy};
use multibridge_devnet::{Devnet, DevnetOptions};

use crate::Poll;

/// A series' value in `metrics` (0 when absent).
fn series(metrics: &multibridge_monitoring::Metrics, prefix: &str, labels: &[&str]) -> f64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn feed_events(metrics: &multibridge_monitoring::Metrics, event: &str) -> f64 {
    series(
        metrics,
        "multibridge_rpc_head_feed_total{",
        &[&format!("event=\"{event}\"")],
    )
}

fn head_reads(metrics: &multibridge_monitoring::Metrics) -> f64 {
    series(
        metrics,
        "multibridge_rpc_requests_total{",
        &["method=\"eth_blockNumber\""],
    )
}

/// Ask `chain` its head every 20 ms for `window` (as a hub's many tasks do), each answer
/// checked against the node's own head read just before and just after it: never more than the
/// block in flight behind, never ahead. Returns the heads seen first and last and the `eth_blockNumber` sent
/// meanwhile (printed under `phase`).
async fn ask_for(
    chain: &ChainClient,
    node: &impl Provider,
    metrics: &multibridge_monitoring::Metrics,
    window: Duration,
    phase: &str,
) -> (u64, u64, f64) {
    let reads_before = head_reads(metrics);
    let started = Instant::now();
    let (mut first, mut last) = (None, 0);
    while started.elapsed() < window {
        let truth = node.get_block_number().await.unwrap();
        let head = chain.head().await.unwrap();
        let after = node.get_block_number().await.unwrap();
        assert!(
            head.saturating_add(1) >= truth,
            "the shared head {head} is more than a block behind the node's {truth}"
        );
        assert!(
            head <= after,
            "the shared head {head} is ahead of what the node answered after it ({after})"
        );
        first.get_or_insert(head);
        last = head;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reads = head_reads(metrics) - reads_before;
    let first = first.unwrap();
    eprintln!("{phase}: heads {first}..={last} over {window:?}, {reads} eth_blockNumber");
    (first, last, reads)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscribed_head_is_not_read_between_blocks_and_a_silent_subscription_falls_back_to_reads()
 {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    let mut config = devnet.operator_config(0).unwrap().chains.service;
    let http = config.rpc_urls[0].clone();
    let node_addr: std::net::SocketAddr = http.trim_start_matches("http://").parse().unwrap();
    // The subscription goes through a proxy the test can silence; the reads go to the node.
    let ws_proxy = TcpProxy::start(node_addr, ProxyMode::Forward)
        .await
        .unwrap();
    config.ws_url = Some(ws_url_of(&ws_proxy.url()));
    let node = ProviderBuilder::new().connect_http(http.parse().unwrap());
    let metrics = multibridge_monitoring::Metrics::new(&[], 1).unwrap();
    let chain = Arc::new(
        ChainClient::new(
            ChainRole::Service,
            &config,
            RetryPolicy::default(),
            metrics.chain(ChainRole::Service),
        )
        .unwrap(),
    );

    // Up, and a few blocks pushed (the chain's clock learned from them).
    Poll::new("the subscription pushes 5 blocks", Duration::from_secs(30))
        .until(async || {
            let (connected, headers) = (
                feed_events(&metrics, "connected"),
                feed_events(&metrics, "header"),
            );
            if connected == 1.0 && headers >= 5.0 {
                Ok(())
            } else {
                Err(format!("connected {connected}, headers {headers}"))
            }
        })
        .await;

    // Blocks come every second; the head follows them without being asked for.
    let (first, last, reads) = ask_for(
        &chain,
        &node,
        &metrics,
        Duration::from_secs(4),
        "subscribed",
    )
    .await;
    assert!(
        last >= first + 3,
        "the head moved {first} -> {last} in 4 s of 1 s blocks"
    );
    // Each block read once, when it was pushed (a read racing the push reads it again): about
    // four; without the subscription, every 100 ms near each block (~12).
    let blocks = (last - first) as f64;
    assert!(
        reads >= blocks && reads <= 2.0 * blocks,
        "{reads} eth_blockNumber for {blocks} blocks pushed: one read a block"
    );

    // The subscription goes silent (its connection held, nothing passes): the head is read
    // over HTTP again and keeps up with the node; the subscription is found behind.
    ws_proxy.set_mode(ProxyMode::Blackhole);
    let (first, last, reads) =
        ask_for(&chain, &node, &metrics, Duration::from_secs(5), "silenced").await;
    assert!(
        last >= first + 3,
        "the head moved {first} -> {last} in 5 s with the subscription silent"
    );
    // Nothing pushed: read as without a subscription, several times a block.
    assert!(
        reads > (last - first) as f64 + 2.0,
        "{reads} eth_blockNumber for {} blocks while the subscription pushed nothing",
        last - first
    );
    Poll::new(
        "the silent subscription found behind and dropped",
        Duration::from_secs(15),
    )
    .until(async || {
        chain.head().await.map_err(|e| e.to_string())?;
        let (behind, lost) = (
            feed_events(&metrics, "behind"),
            feed_events(&metrics, "lost"),
        );
        if behind >= 1.0 && lost >= 1.0 {
            Ok(())
        } else {
            Err(format!("behind {behind}, lost {lost}"))
        }
    })
    .await;

    // The endpoint answers again: the subscription is made again and the reads stop.
    ws_proxy.set_mode(ProxyMode::Forward);
    Poll::new("the subscription made again", Duration::from_secs(40))
        .until(async || {
            chain.head().await.map_err(|e| e.to_string())?;
            match feed_events(&metrics, "connected") {
                c if c >= 2.0 => Ok(()),
                c => Err(format!("connected {c}")),
            }
        })
        .await;
    // Its first pushes re-learn the clock.
    let headers = feed_events(&metrics, "header");
    Poll::new("5 blocks pushed again", Duration::from_secs(20))
        .until(async || match feed_events(&metrics, "header") - headers {
            n if n >= 5.0 => Ok(()),
            n => Err(format!("{n} pushed")),
        })
        .await;
    let (first, last, reads) = ask_for(
        &chain,
        &node,
        &metrics,
        Duration::from_secs(3),
        "resubscribed",
    )
    .await;
    assert!(
        last >= first + 2,
        "the head moved {first} -> {last} in 3 s of 1 s blocks"
    );
    assert!(
        reads <= 2.0 * (last - first) as f64,
        "{reads} eth_blockNumber for {} blocks once subscribed again",
        last - first
    );

    // A ws_url of another chain (the main chain's node): refused at every connect, never
    // connected, and the head is the service node's.
    let mut wrong = config.clone();
    wrong.ws_url = Some(ws_url_of(&devnet.rpc_url(ChainRole::Main)));
    let wrong_metrics = multibridge_monitoring::Metrics::new(&[], 1).unwrap();
    let misconfigured = ChainClient::new(
        ChainRole::Service,
        &wrong,
        RetryPolicy::default(),
        wrong_metrics.chain(ChainRole::Service),
    )
    .unwrap();
    Poll::new(
        "a subscription to another chain refused",
        Duration::from_secs(20),
    )
    .until(async || match feed_events(&wrong_metrics, "lost") {
        n if n >= 1.0 => Ok(()),
        n => Err(format!("lost {n}")),
    })
    .await;
    let (first, last, _) = ask_for(
        &misconfigured,
        &node,
        &wrong_metrics,
        Duration::from_secs(3),
        "another chain's ws_url",
    )
    .await;
    assert!(last >= first + 2, "the head moved {first} -> {last} in 3 s");
    assert_eq!(feed_events(&wrong_metrics, "connected"), 0.0);
    assert_eq!(feed_events(&wrong_metrics, "header"), 0.0);
}
