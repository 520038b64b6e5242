//! A hub devnet (issue 37): beside the main chain and its first service chain, further service
//! chains under the main chain (`service_chains`) and one under the first service chain
//! (`nested`), a bridge pair deployed per edge, and relays that serve every pair from one
//! process per operator replica (a `[[pairs]]` config).
//!
//! The first pair is the devnet's own (`main`, `service`, `deployment`): everything written
//! for a single pair keeps working. Each further pair is a [`HubEdge`]. Chains are named in
//! the relay config `main`, `service`, `service-2`, … and `nested`; pairs `<main>-<service>`.

use std::path::{Path, PathBuf};

use multibridge_config::{ChainConfig, Config, NamedPair, RegistryConfig};
use multibridge_contracts::ChainRole;

use super::Devnet;
use crate::error::DevnetError;
use crate::harness::anvil::{AnvilNode, AnvilOptions};
use crate::harness::deploy::{ChainContracts, Deployment};
use crate::harness::manifest::{ChainEntry, PairEntry};
use crate::harness::ports::free_port;
use crate::harness::proxy::{ProxyMode, TcpProxy};
use crate::harness::tools::Tools;

/// The config name of the main chain.
pub const MAIN_CHAIN: &str = "main";
/// The config name of the first service chain.
pub const FIRST_SERVICE_CHAIN: &str = "service";
/// The config name of the chain under the first service chain (`nested`).
pub const NESTED_CHAIN: &str = "nested";

/// A further bridge pair of a hub devnet: its service chain's node and its contracts.
#[derive(Debug)]
pub struct HubEdge {
    /// The pair's name (`<main chain>-<service chain>`).
    pub name: String,
    /// Whose service chain this is: the main chain's ([`ChainRole::Main`]) or the first service
    /// chain's ([`ChainRole::Service`], nested).
    pub parent: ChainRole,
    /// The config name of its service chain.
    pub chain: String,
    /// Its service chain.
    pub node: AnvilNode,
    /// Its contracts (`main` on the parent chain).
    pub deployment: Deployment,
    /// HTTP API port of every replica for this pair: `[operator][replica]`.
    pub http_ports: Vec<Vec<u16>>,
    /// With `edge_proxies`: the proxy every relay reaches this service chain through (to cut
    /// or delay it for all of them at once).
    pub proxy: Option<TcpProxy>,
}

impl HubEdge {
    /// The service chain's RPC as the relays reach it (through the proxy, if any).
    pub fn relay_rpc_url(&self) -> String {
        self.proxy
            .as_ref()
            .map_or_else(|| self.node.url(), TcpProxy::url)
    }

    /// The config name of its parent (main) chain.
    pub fn parent_chain(&self) -> &'static str {
        match self.parent {
            ChainRole::Main => MAIN_CHAIN,
            ChainRole::Service => FIRST_SERVICE_CHAIN,
        }
    }
}

/// A service chain to start beside the first: its config name, chain id and parent.
pub(super) struct EdgePlan {
    pub chain: String,
    pub chain_id: u64,
    pub parent: ChainRole,
}

/// The further service chains of `options`: `service-2..=service-N` under the main chain, then
/// `nested` under the first service chain; chain ids follow the first service chain's.
pub(super) fn plan_edges(service_chains: usize, nested: bool, first_id: u64) -> Vec<EdgePlan> {
    let mut plans: Vec<EdgePlan> = (2..=service_chains)
        .map(|k| EdgePlan {
            chain: format!("service-{k}"),
            chain_id: first_id.saturating_add(k as u64).saturating_sub(1),
            parent: ChainRole::Main,
        })
        .collect();
    if nested {
        plans.push(EdgePlan {
            chain: NESTED_CHAIN.to_owned(),
            chain_id: first_id.saturating_add(service_chains.max(1) as u64),
            parent: ChainRole::Service,
        });
    }
    plans
}

/// Start the node of one further service chain, keeping its chain in `<dir>/chains/` so it
/// can be stopped and started again ([`Devnet::restart_hub_chain`]).
pub(super) async fn start_edge_node(
    tools: &Tools,
    dir: &Path,
    log_dir: &Path,
    plan: &EdgePlan,
    block_time: Option<f64>,
    accounts: u32,
) -> Result<AnvilNode, DevnetError> {
    let chains = dir.join("chains");
    std::fs::create_dir_all(&chains).map_err(|e| DevnetError::io(&chains, e))?;
    AnvilNode::start(
        tools,
        log_dir,
        &AnvilOptions {
            name: format!("anvil-{}", plan.chain),
            chain_id: plan.chain_id,
            block_time,
            accounts,
            frozen_fork_of: None,
            state_file: Some(chains.join(format!("{}.json", plan.chain))),
            large_code: false,
            max_persisted_states: Some(super::HUB_PERSISTED_STATES),
        },
    )
    .await
}

/// A forwarding proxy in front of the node at `url`.
pub(super) async fn proxy_for(url: &str) -> Result<TcpProxy, DevnetError> {
    let target = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|_| DevnetError::BadUrl(url.to_owned()))?;
    TcpProxy::start(target, ProxyMode::Forward)
        .await
        .map_err(DevnetError::Ports)
}

/// `[operator][replica]` fresh HTTP ports.
pub(super) fn http_ports(operators: usize, replicas: usize) -> Result<Vec<Vec<u16>>, DevnetError> {
    (0..operators)
        .map(|_| {
            (0..replicas.max(1))
                .map(|_| free_port())
                .collect::<std::io::Result<Vec<u16>>>()
        })
        .collect::<std::io::Result<Vec<Vec<u16>>>>()
        .map_err(DevnetError::Ports)
}

/// The HTTP port of replica `replica` of operator `index` in `ports` (`[operator][replica]`).
pub(super) fn replica_port(
    ports: &[Vec<u16>],
    index: usize,
    replica: usize,
) -> Result<u16, DevnetError> {
    ports
        .get(index)
        .and_then(|p| p.get(replica))
        .copied()
        .ok_or_else(|| DevnetError::Invalid(format!("no replica {replica} of operator {index}")))
}

/// The URLs of every replica of operator `index` in `ports` (`registry.replica_urls`).
pub(super) fn replica_urls(ports: &[Vec<u16>], index: usize) -> Vec<String> {
    ports
        .get(index)
        .into_iter()
        .flatten()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect()
}

/// One pair of a replica's hub config, before rendering.
struct HubPairConfig {
    name: String,
    main: &'static str,
    service: String,
    config: Config,
}

impl Devnet {
    /// Whether this devnet has more than one pair (its relays run `[[pairs]]` configs).
    pub fn is_hub(&self) -> bool {
        !self.hub.is_empty()
    }

    /// The further pairs of a hub devnet.
    pub fn hub_edges(&self) -> &[HubEdge] {
        &self.hub
    }

    /// The name of the devnet's first pair in a hub config.
    pub fn first_pair_name() -> String {
        format!("{MAIN_CHAIN}-{FIRST_SERVICE_CHAIN}")
    }

    /// One chain's section in a relay config, for replica `replica` of operator `index`.
    pub(super) fn chain_config(&self, contracts: &ChainContracts, rpc_url: String) -> ChainConfig {
        ChainConfig {
            chain_id: contracts.chain_id,
            // The devnet's anvils serve WebSocket on their HTTP port.
            ws_url: self.options.head_feeds.then(|| super::ws_url_of(&rpc_url)),
            rpc_urls: vec![rpc_url],
            bridge: contracts.bridge,
            confirmations: multibridge_config::Confirmations::Depth(self.options.confirmations),
            start_block: contracts.bridge_block,
            poll_interval_ms: 250,
            max_block_range: self.options.max_block_range,
            max_fee_gwei: 1_000,
            log_quorum: 1,
            // Devnet blocks come every second.
            max_lag_blocks: 3,
            stall_secs: 4,
            max_answer_mib: 32,
        }
    }

    /// The directory of replica `replica` of operator `index` (its stores).
    pub(super) fn replica_dir(&self, index: usize, replica: usize) -> PathBuf {
        let operator = self
            .options
            .dir
            .join(format!("operator-{}", index.saturating_add(1)));
        if replica == 0 {
            operator
        } else {
            operator.join(format!("replica-{}", replica.saturating_add(1)))
        }
    }

    /// Every pair of replica `replica` of operator `index`: the first from its single-pair
    /// config, each further one the same with that pair's chains, bridges, registry, HTTP port
    /// and store.
    fn hub_pair_configs(
        &self,
        index: usize,
        replica: usize,
    ) -> Result<Vec<HubPairConfig>, DevnetError> {
        let mut first = self.replica_config(index, replica)?;
        let dir = self.replica_dir(index, replica);
        let first_name = Self::first_pair_name();
        first.store.path = dir.join(format!("store-{first_name}.sqlite"));
        let mut pairs = Vec::with_capacity(self.hub.len().saturating_add(1));
        for edge in &self.hub {
            let mut config = first.clone();
            let parent = match edge.parent {
                ChainRole::Main => first.chains.main.clone(),
                ChainRole::Service => first.chains.service.clone(),
            };
            config.chains.main = ChainConfig {
                bridge: edge.deployment.main.bridge,
                start_block: edge.deployment.main.bridge_block,
                ..parent
            };
            config.chains.service =
                self.chain_config(&edge.deployment.service, edge.relay_rpc_url());
            let port = replica_port(&edge.http_ports, index, replica)?;
            config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            config.registry = Some(RegistryConfig {
                address: edge.deployment.registry,
                replica_urls: replica_urls(&edge.http_ports, index),
            });
            config.store.path = dir.join(format!("store-{}.sqlite", edge.name));
            pairs.push(HubPairConfig {
                name: edge.name.clone(),
                main: edge.parent_chain(),
                service: edge.chain.clone(),
                config,
            });
        }
        pairs.insert(
            0,
            HubPairConfig {
                name: first_name,
                main: MAIN_CHAIN,
                service: FIRST_SERVICE_CHAIN.to_owned(),
                config: first,
            },
        );
        Ok(pairs)
    }

    /// The TOML of replica `replica` of operator `index`: its single-pair config, or on a hub
    /// devnet one `[[pairs]]` file serving every pair.
    pub(super) fn replica_config_text(
        &self,
        index: usize,
        replica: usize,
    ) -> Result<String, DevnetError> {
        if !self.is_hub() {
            return self
                .replica_config(index, replica)?
                .to_toml()
                .map_err(|e| DevnetError::Invalid(format!("render relay config: {e}")));
        }
        let pairs = self.hub_pair_configs(index, replica)?;
        let named: Vec<NamedPair<'_>> = pairs
            .iter()
            .map(|p| NamedPair {
                name: &p.name,
                main: p.main,
                service: &p.service,
                config: &p.config,
            })
            .collect();
        multibridge_config::render_hub(&named)
            .map_err(|e| DevnetError::Invalid(format!("render hub relay config: {e}")))
    }

    /// The store files of replica `replica` of operator `index` (one per pair on a hub).
    pub(super) fn replica_stores(
        &self,
        index: usize,
        replica: usize,
    ) -> Result<Vec<PathBuf>, DevnetError> {
        if !self.is_hub() {
            return Ok(vec![self.replica_config(index, replica)?.store.path]);
        }
        Ok(self
            .hub_pair_configs(index, replica)?
            .into_iter()
            .map(|p| p.config.store.path)
            .collect())
    }

    /// Every pair as the manifest lists it (a hub devnet only; empty otherwise).
    pub(super) fn pair_entries(&self) -> Vec<PairEntry> {
        if !self.is_hub() {
            return Vec::new();
        }
        let urls = |ports: &[Vec<u16>]| -> Vec<Vec<String>> {
            ports
                .iter()
                .map(|replicas| {
                    replicas
                        .iter()
                        .filter(|_| self.options.relays)
                        .map(|port| format!("http://127.0.0.1:{port}/"))
                        .collect()
                })
                .collect()
        };
        let entry = |contracts: &ChainContracts, rpc_url: String| ChainEntry {
            rpc_url,
            block_time: self.options.block_time,
            contracts: contracts.clone(),
        };
        let first = PairEntry {
            name: Self::first_pair_name(),
            main: entry(&self.deployment.main, self.main.url()),
            service: entry(&self.deployment.service, self.service.url()),
            registry: self.deployment.registry,
            http_urls: urls(&self.replica_http_ports),
        };
        std::iter::once(first)
            .chain(self.hub.iter().map(|edge| PairEntry {
                name: edge.name.clone(),
                main: entry(&edge.deployment.main, self.rpc_url(edge.parent)),
                service: entry(&edge.deployment.service, edge.node.url()),
                registry: edge.deployment.registry,
                http_urls: urls(&edge.http_ports),
            }))
            .collect()
    }

    /// The further pair named `name`.
    pub fn hub_edge(&mut self, name: &str) -> Option<&mut HubEdge> {
        self.hub.iter_mut().find(|e| e.name == name)
    }

    /// Stop the service chain of pair `name` gracefully (SIGTERM: it writes its chain out).
    pub fn stop_hub_chain(&mut self, name: &str) -> Result<(), DevnetError> {
        let edge = self
            .hub_edge(name)
            .ok_or_else(|| DevnetError::Invalid(format!("no pair {name}")))?;
        if !edge
            .node
            .process()
            .stop(std::time::Duration::from_secs(30))?
        {
            return Err(DevnetError::Invalid(format!(
                "the service chain of pair {name} did not stop within 30 s"
            )));
        }
        Ok(())
    }

    /// Start the service chain of pair `name` again, with the chain it wrote out, on the same
    /// port; wait until it answers and mine as before.
    pub async fn start_hub_chain(&mut self, name: &str) -> Result<(), DevnetError> {
        let block_time = self.options.block_time;
        let edge = self
            .hub_edge(name)
            .ok_or_else(|| DevnetError::Invalid(format!("no pair {name}")))?;
        edge.node.process().start_again()?;
        edge.node
            .wait_ready(std::time::Duration::from_secs(30))
            .await?;
        if let Some(seconds) = block_time.filter(|bt| bt.fract() == 0.0) {
            super::set_interval_mining(&edge.node.url(), seconds as u64).await?;
        }
        Ok(())
    }
}
