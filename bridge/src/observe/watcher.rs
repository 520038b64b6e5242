//! The watcher: one task per relay that reads what the relay does not learn by itself — each
//! chain's head, the signer's balance and the gas price, each lane's `requestNonce` and handle
//! nonces, the store's counts, conservation per asset — and publishes it as metrics, readiness
//! (`chain:<role>`) and the `/status` sections. It never sends anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use multibridge_contracts::ChainRole;
use multibridge_monitoring::{LaneMetrics, Readiness, StatusBoard};
use serde::Serialize;
use tokio::sync::watch;

use super::conservation::{ConservationScanner, asset_label};
use super::missing_votes::missing_votes;
use super::status::{lane_status, publish_store_stats};
use crate::chain::{ChainError, ChainPair};
use crate::store::{SharedStore, unix_now};

/// The readiness component of a chain.
pub fn chain_component(role: ChainRole) -> String {
    format!("chain:{role}")
}

/// One chain as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
struct ChainSnapshot {
    chain_id: u64,
    head: u64,
    signer_balance_wei: String,
    gas_price_wei: u128,
    endpoint: String,
    /// Every endpoint's last head and health (`healthy`, `unreachable`, `lagging`, `stalled`).
    endpoints: Vec<EndpointSnapshot>,
}

/// One RPC endpoint as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
struct EndpointSnapshot {
    endpoint: String,
    health: &'static str,
    head: Option<u64>,
}

/// 1 coin = 1e18 base units; for a gauge (display only, comparisons stay in integers).
fn coins(wei: U256) -> f64 {
    f64::from(wei) / 1e18
}

/// One lane as the watcher follows it.
pub struct WatchedLane {
    /// Its metrics.
    pub metrics: LaneMetrics,
    /// Whether this replica leads it.
    pub leading: watch::Receiver<bool>,
    /// Its conservation scanner.
    pub scanner: ConservationScanner,
    /// The operators whose missing votes were last published (their figures are set back to 0
    /// without reading the operator set while no request is old enough to miss a vote).
    pub missing_published: Vec<Address>,
    /// The lane runs attested batches: nobody votes, so no vote is missing (the attestation
    /// metrics say whose signatures are missing).
    pub attested: bool,
}

/// How often the watcher reads the signer's balance and the gas price (each probe reads every
/// endpoint's head): figures for dashboards and the low-balance alert, which a few seconds do
/// not change, where a read a second was two requests per pair and second to its service chain
/// (issue 54).
pub const WALLET_EVERY: Duration = Duration::from_secs(5);

/// The watcher of one relay.
pub struct Watcher {
    /// The relay's signer.
    pub operator: Address,
    /// Both chains.
    pub chains: ChainPair,
    /// Lanes served.
    pub lanes: Vec<WatchedLane>,
    /// The relay's store.
    pub store: SharedStore,
    /// Readiness to report.
    pub readiness: Arc<Readiness>,
    /// `/status` sections.
    pub board: Arc<StatusBoard>,
    /// Pause between rounds.
    pub interval: Duration,
}

impl Watcher {
    /// Run forever (failures are reported and retried next round). Each chain is probed by its
    /// own loop, so a chain whose RPC hangs never makes the other one look stale.
    pub async fn run(mut self) {
        for role in [ChainRole::Main, ChainRole::Service] {
            self.readiness.register(&chain_component(role));
        }
        self.board.set(
            "operator",
            serde_json::Value::from(self.operator.to_string()),
        );
        let mut lanes = std::mem::take(&mut self.lanes);
        let this = &self;
        tokio::join!(
            this.chain_loop(ChainRole::Main),
            this.chain_loop(ChainRole::Service),
            this.lanes_loop(&mut lanes),
        );
    }

    async fn chain_loop(&self, role: ChainRole) {
        let component = chain_component(role);
        let label = role.as_str();
        let mut wallet = None;
        loop {
            match self.probe(role, &mut wallet).await {
                Ok(snapshot) => {
                    self.readiness.ok(&component);
                    self.chains.get(role).metrics().up.set(1);
                    self.board.set_entry(
                        "chains",
                        label,
                        serde_json::to_value(snapshot).unwrap_or_default(),
                    );
                }
                Err(e) => {
                    self.readiness.failed(&component, &e);
                    self.chains.get(role).metrics().up.set(0);
                    tracing::warn!(chain = %role, error = %e, "chain probe failed");
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn lanes_loop(&self, lanes: &mut [WatchedLane]) {
        loop {
            for lane in lanes.iter_mut() {
                self.lane_round(lane).await;
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn lane_round(&self, watched: &mut WatchedLane) {
        let metrics = &watched.metrics;
        let lane = metrics.lane;
        if let Err(e) = publish_store_stats(&self.store.lock(), metrics) {
            tracing::warn!(%lane, error = %e, "cannot read the store's counts");
        }
        match self.chains.lane_nonces(lane).await {
            Ok(nonces) => {
                LaneMetrics::set(&metrics.request_nonce, nonces.request);
                LaneMetrics::set(&metrics.lower_handle_nonce, nonces.lower);
                LaneMetrics::set(&metrics.upper_handle_nonce, nonces.upper);
                let status = lane_status(lane, nonces, Some(&self.store.lock()));
                match status {
                    Ok(mut status) => {
                        status.leader = Some(*watched.leading.borrow());
                        status.sending_paused = metrics
                            .sending_paused()
                            .into_iter()
                            .map(|r| r.as_str().to_owned())
                            .collect();
                        let views = self.chains.get(lane.destination()).views();
                        if let Err(e) =
                            crate::observe::status::read_queued_releases(&mut status, views).await
                        {
                            tracing::debug!(%lane, error = %e, "cannot read the queued releases");
                        }
                        let views = self.chains.get(lane.destination()).views();
                        let known = &watched.missing_published;
                        let missing = if watched.attested {
                            Ok(Vec::new())
                        } else {
                            missing_votes(views, &self.store, lane, unix_now(), known).await
                        };
                        match missing {
                            Ok(missing) => {
                                watched.missing_published =
                                    missing.iter().map(|m| m.operator).collect();
                                for m in &missing {
                                    metrics.set_missing_votes(
                                        &m.operator.to_string(),
                                        m.requests,
                                        m.oldest_secs,
                                    );
                                }
                                status.missing_votes = missing;
                            }
                            Err(e) => {
                                tracing::debug!(%lane, error = %e, "cannot read the missing votes")
                            }
                        }
                        self.board.set_entry(
                            "lanes",
                            lane.as_str(),
                            serde_json::to_value(status).unwrap_or_default(),
                        );
                    }
                    Err(e) => tracing::warn!(%lane, error = %e, "cannot read the lane's store"),
                }
            }
            Err(e) => tracing::warn!(%lane, error = %e, "cannot read the lane's nonces"),
        }
        match watched.scanner.step().await {
            Ok(Some(assets)) => {
                let value: serde_json::Map<String, serde_json::Value> = assets
                    .iter()
                    .map(|a| {
                        (
                            asset_label(a.asset),
                            serde_json::json!({
                                "requested": a.requested.to_string(),
                                "released": a.released.to_string(),
                                "ok": a.ok,
                            }),
                        )
                    })
                    .collect();
                self.board.set_entry(
                    "conservation",
                    lane.as_str(),
                    serde_json::Value::Object(value),
                );
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%lane, error = %e, "conservation scan failed; retrying next round")
            }
        }
    }

    /// The chain's head, every endpoint's health and — at most every [`WALLET_EVERY`], kept in
    /// `wallet` between — the signer's balance and the gas price.
    async fn probe(
        &self,
        role: ChainRole,
        wallet: &mut Option<(Instant, (U256, u128))>,
    ) -> Result<ChainSnapshot, ChainError> {
        let chain = self.chains.get(role);
        // First which endpoints keep up, so the reads below go to a healthy one.
        let probed = chain.probe_health().await;
        // The probe just read every endpoint's head: the best healthy one is the chain's (with
        // none healthy, one more read through the failover says whether any answers at all).
        let best_healthy = probed
            .iter()
            .filter(|(_, health, _)| health.is_healthy())
            .filter_map(|(_, _, head)| *head)
            .max();
        let head = match best_healthy {
            Some(head) => head,
            None => chain.head().await?,
        };
        let endpoints = probed
            .into_iter()
            .map(|(endpoint, health, head)| EndpointSnapshot {
                endpoint,
                health: health.label(),
                head,
            })
            .collect();
        let (balance, gas_price) = match *wallet {
            Some((at, read)) if at.elapsed() < WALLET_EVERY => read,
            _ => {
                let read = chain.wallet(self.operator).await?;
                *wallet = Some((Instant::now(), read));
                read
            }
        };
        let metrics = chain.metrics();
        metrics.head.set(i64::try_from(head).unwrap_or(i64::MAX));
        metrics.signer_balance.set(coins(balance));
        #[allow(clippy::cast_precision_loss)]
        metrics.gas_price_gwei.set(gas_price as f64 / 1e9);
        Ok(ChainSnapshot {
            chain_id: chain.chain_id(),
            head,
            signer_balance_wei: balance.to_string(),
            gas_price_wei: gas_price,
            endpoint: chain.active_endpoint().to_owned(),
            endpoints,
        })
    }
}
