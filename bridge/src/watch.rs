//! The watcher: one task per relay that reads what the relay does not learn by itself — each
//! chain's head, the signer's balance and the gas price, each lane's `requestNonce` and handle
//! nonces, conservation per asset — and publishes it as metrics, readiness (`chain:<role>`)
//! and the `/status` sections. It never sends anything.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use multibridge_contracts::{ChainRole, Lane};
use multibridge_monitoring::{Metrics, Readiness, StatusBoard};
use serde::Serialize;

use crate::chain::{ChainClient, ChainError};
use crate::commands::status::{lane_nonces, lane_status};
use crate::conservation::{ConservationScanner, asset_label};
use crate::store::Store;

/// The readiness component of a chain.
pub fn chain_component(role: ChainRole) -> String {
    format!("chain:{role}")
}

/// The readiness component of a lane's indexer.
pub fn indexer_component(lane: Lane) -> String {
    format!("indexer:{lane}")
}

/// One chain as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
struct ChainSnapshot {
    chain_id: u64,
    head: u64,
    signer_balance_wei: String,
    gas_price_wei: u128,
    endpoint: String,
}

/// 1 coin = 1e18 base units; for a gauge (display only, comparisons stay in integers).
fn coins(wei: U256) -> f64 {
    f64::from(wei) / 1e18
}

/// The watcher of one relay.
pub struct Watcher {
    /// The relay's signer.
    pub operator: Address,
    /// Main chain.
    pub main: Arc<ChainClient>,
    /// Service chain.
    pub service: Arc<ChainClient>,
    /// Lanes served.
    pub lanes: Vec<Lane>,
    /// The relay's store.
    pub store: Arc<Mutex<Store>>,
    /// Metrics to publish.
    pub metrics: Arc<Metrics>,
    /// Readiness to report.
    pub readiness: Arc<Readiness>,
    /// `/status` sections.
    pub board: Arc<StatusBoard>,
    /// One conservation scanner per lane.
    pub scanners: Vec<ConservationScanner>,
    /// Pause between rounds.
    pub interval: Duration,
}

impl Watcher {
    fn chain(&self, role: ChainRole) -> &Arc<ChainClient> {
        match role {
            ChainRole::Main => &self.main,
            ChainRole::Service => &self.service,
        }
    }

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
        let mut scanners = std::mem::take(&mut self.scanners);
        let this = &self;
        tokio::join!(
            this.chain_loop(ChainRole::Main),
            this.chain_loop(ChainRole::Service),
            this.lanes_loop(&mut scanners),
        );
    }

    async fn chain_loop(&self, role: ChainRole) {
        let component = chain_component(role);
        let label = role.as_str();
        loop {
            match self.probe(role).await {
                Ok(snapshot) => {
                    self.readiness.ok(&component);
                    self.metrics.chain_up.with_label_values(&[label]).set(1);
                    self.board.set_entry(
                        "chains",
                        label,
                        serde_json::to_value(snapshot).unwrap_or_default(),
                    );
                }
                Err(e) => {
                    self.readiness.failed(&component, &e);
                    self.metrics.chain_up.with_label_values(&[label]).set(0);
                    tracing::warn!(chain = %role, error = %e, "chain probe failed");
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn lanes_loop(&self, scanners: &mut [ConservationScanner]) {
        loop {
            self.lanes_round(scanners).await;
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn lanes_round(&self, scanners: &mut [ConservationScanner]) {
        for lane in self.lanes.clone() {
            let (source, destination) = (
                self.chain(lane.source()).clone(),
                self.chain(lane.destination()).clone(),
            );
            let nonces = match lane_nonces(&source, &destination).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(%lane, error = %e, "cannot read the lane's nonces");
                    continue;
                }
            };
            let label = lane.as_str();
            let (request, lower, upper) = nonces;
            for (gauge, value) in [
                (&self.metrics.request_nonce, request),
                (&self.metrics.lower_handle_nonce, lower),
                (&self.metrics.upper_handle_nonce, upper),
            ] {
                gauge
                    .with_label_values(&[label])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
            let status = {
                let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
                lane_status(lane, nonces, Some(&store))
            };
            match status {
                Ok(status) => {
                    let mut value = serde_json::to_value(status).unwrap_or_default();
                    if let serde_json::Value::Object(map) = &mut value {
                        map.insert(
                            "leader".to_owned(),
                            serde_json::Value::from(
                                self.metrics.leader.with_label_values(&[label]).get() == 1,
                            ),
                        );
                    }
                    self.board.set_entry("lanes", label, value);
                }
                Err(e) => tracing::warn!(%lane, error = %e, "cannot read the lane's store"),
            }
        }
        for scanner in scanners.iter_mut() {
            match scanner.step().await {
                Ok(Some(assets)) => {
                    let lane = scanner.lane();
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
                    tracing::warn!(lane = %scanner.lane(), error = %e, "conservation scan failed; retrying next round")
                }
            }
        }
    }

    async fn probe(&self, role: ChainRole) -> Result<ChainSnapshot, ChainError> {
        let chain = self.chain(role);
        let label = role.as_str();
        let head = chain.head().await?;
        let operator = self.operator;
        let balance = chain
            .call("eth_getBalance", |p| async move {
                p.get_balance(operator).await
            })
            .await?;
        let gas_price = chain
            .call("eth_gasPrice", |p| async move { p.get_gas_price().await })
            .await?;
        self.metrics
            .chain_head
            .with_label_values(&[label])
            .set(i64::try_from(head).unwrap_or(i64::MAX));
        self.metrics
            .signer_balance
            .with_label_values(&[label])
            .set(coins(balance));
        #[allow(clippy::cast_precision_loss)]
        self.metrics
            .gas_price_gwei
            .with_label_values(&[label])
            .set(gas_price as f64 / 1e9);
        Ok(ChainSnapshot {
            chain_id: chain.chain_id(),
            head,
            signer_balance_wei: balance.to_string(),
            gas_price_wei: gas_price,
            endpoint: chain.active_endpoint().to_owned(),
        })
    }
}
