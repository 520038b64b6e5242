//! The whole local system: two anvil chains, an etcd cluster and a deployed bridge pair.
//!
//! Every process is owned by the [`Devnet`] value and killed when it is dropped — also when a
//! test panics — unless [`Devnet::detach`] hands them over to `devnet up`/`down`.

use std::path::{Path, PathBuf};

use alloy::primitives::{U256, utils::parse_ether};
use alloy::providers::{Provider, ProviderBuilder};
use multibridge_config::SignerConfig;
use multibridge_contracts::ChainRole;

use crate::error::DevnetError;
use crate::harness::accounts::{DevAccounts, guardian_signer};
use crate::harness::anvil::{AnvilNode, AnvilOptions};
use crate::harness::deploy::{DeployPlan, Deployment, ReleaseLimits, deploy_pair};
use crate::harness::etcd::EtcdCluster;
use crate::harness::machine::MachineShare;
use crate::harness::manifest::{
    AccountEntry, ChainEntry, KEYS_WARNING, MANIFEST_VERSION, Manifest, OperatorEntry,
};
use crate::harness::process::{ManagedProcess, ProcessSpec, RecordedProcess};
use crate::harness::prometheus::{PrometheusServer, ScrapeTarget};
use crate::harness::proxy::{ProxyMode, TcpProxy};
use crate::harness::tools::Tools;

mod hub;
mod relay_config;

pub use hub::HubEdge;

pub use relay_config::{DEVNET_BACKUP_SECRET, DEVNET_DASHBOARD_TOKEN};

/// The relays' etcd lease TTL on a devnet, seconds: a dead leader is replaced within about
/// this long (the devnet's etcd runs with a 500 ms election timeout, so etcd grants 1 s).
pub const LEASE_TTL_SECS: u64 = 1;

/// The older states each chain of a hub keeps on disk (see
/// [`AnvilOptions::max_persisted_states`]): a hub's relays read state near the head only, and its
/// harness reads logs. A single pair keeps anvil's default.
pub(crate) const HUB_PERSISTED_STATES: u32 = 256;

/// How to build a devnet.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// Directory for logs, data and the manifest.
    pub dir: PathBuf,
    /// The relays' etcd lease TTL, seconds ([`LEASE_TTL_SECS`] unless a test of the resume
    /// of a term needs its relays to restart within the lease).
    pub lease_ttl_secs: u64,
    /// Number of operators.
    pub operators: u32,
    /// Votes needed to execute a transfer.
    pub threshold: u64,
    /// Number of funded user accounts.
    pub users: u32,
    /// Seconds per block on both chains (`None`: a block per transaction).
    pub block_time: Option<f64>,
    /// Main chain id.
    pub main_chain_id: u64,
    /// Service chain id.
    pub service_chain_id: u64,
    /// etcd cluster size (0: no etcd).
    pub etcd_members: usize,
    /// Native liquidity funded into each bridge.
    pub liquidity: U256,
    /// Test tokens minted to each user on the main chain.
    pub user_tokens: U256,
    /// Confirmations written into the relay configs.
    pub confirmations: u64,
    /// Start one relay process per operator after deploying.
    pub relays: bool,
    /// Start a Prometheus server scraping every relay, with the alert rules loaded.
    pub prometheus: bool,
    /// Relay replicas per operator (they elect one active replica per lane through etcd).
    pub replicas: usize,
    /// Release-side limits of both bridges.
    pub release_limits: ReleaseLimits,
    /// State backups in the relay configs (only with etcd): every this many handled requests,
    /// to `<dir>/backups` unless `backup_storage` names another storage.
    pub backup_every: Option<u64>,
    /// Where backups go (default: `<dir>/backups`).
    pub backup_storage: Option<multibridge_config::StorageSettings>,
    /// Save a full etcd snapshot (maintenance API) with every backup.
    pub backup_etcd_snapshot: bool,
    /// Extra environment of every relay process (e.g. the S3 credentials its config names).
    pub relay_env: Vec<(String, String)>,
    /// Deploy the devnet-only HistoryBridge on both chains (the join benchmark).
    pub history_bridge: bool,
    /// Give every relay replica a guardian: a pauser key of its own (`[guardian]`), a pauser of
    /// both bridges, funded on both chains.
    pub guardians: bool,
    /// `max_block_range` in the relay configs (blocks per log query).
    pub max_block_range: u64,
    /// The key operator 1's dashboard signs registry writes with (default: its operator key).
    pub dashboard_manager: Option<SignerConfig>,
    /// Where the operators' keys live: raw devnet keys (default) or a SoftHSM2 token.
    pub signer: DevnetSigner,
    /// Give every replica its own network links: each of its connections (both chains' RPCs and
    /// every etcd member) goes through a [`TcpProxy`] of its own, so one replica's network can be
    /// cut, delayed or refused while the others' is not (the experiments).
    pub replica_links: bool,
    /// Run with no other devnet of this process beside it (tests that measure seconds; see
    /// [`MachineShare`]).
    pub alone: bool,
    /// How the relays bring transfers to the threshold: votes (default) or attested batches.
    pub voting_mode: multibridge_config::VotingMode,
    /// Operators (by index) that publish their attested signatures in an object store
    /// (`voting.attestation_store`): the registry names it as their lane services' location
    /// instead of their HTTP API.
    pub attestation_stores: Vec<(usize, multibridge_config::StorageSettings)>,
    /// Service chains under the main chain (1: the devnet's one pair). More make a hub: a
    /// pair per service chain, every relay serving all of them from one process.
    pub service_chains: usize,
    /// Also a chain under the first service chain, with its own pair (a hub).
    pub nested: bool,
    /// Put a proxy in front of each further service chain of a hub, through which every relay
    /// reaches it (so `bench-hub` can blackhole one chain for all relays).
    pub edge_proxies: bool,
    /// Start the service chains' block clocks spread evenly over one block interval after the
    /// main chain's (service chain `i` of `n` at `(i + 1/2) / n` of it), instead of all within
    /// milliseconds of it. How far a pair's two clocks are apart decides which direction's
    /// votes make the destination's next block (docs/benchmarks.md): spread, a hub's pairs
    /// cover every offset a real deployment can have. Whole-second block times only.
    pub spread_block_phases: bool,
    /// Mint every user the test token and NFTs on every further pair of a hub, as on the first
    /// (default). Minting is per user and pair, so a hub of `n` pairs with a user per pair
    /// mints `n²` times on the main chain: `bench-hub`, which sends native value only, leaves
    /// it off (its 64-pair devnet started in minutes instead of a quarter of an hour).
    pub edge_user_tokens: bool,
    /// Give every relay chain section a `ws_url` (the anvil's HTTP port serves WebSocket too):
    /// the relays follow each chain's head by its `newHeads` subscription (default). Off, they
    /// read the head over HTTP between blocks as before (`--no-head-feeds`, to compare).
    pub head_feeds: bool,
}

/// The WebSocket URL of the node behind `http_url` (an anvil or its proxy serves both on one
/// port): `http://` becomes `ws://`, `https://` `wss://`.
pub fn ws_url_of(http_url: &str) -> String {
    if let Some(rest) = http_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = http_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        http_url.to_owned()
    }
}

/// Point each chain section's `ws_url`, where it has one, at the node behind its first
/// `rpc_urls` entry: a test that moves a relay's endpoints (behind a proxy, to a frozen node)
/// moves its head subscription with them.
pub fn follow_rpc_urls(config: &mut multibridge_config::Config) {
    for chain in [&mut config.chains.main, &mut config.chains.service] {
        if chain.ws_url.is_some()
            && let Some(first) = chain.rpc_urls.first()
        {
            chain.ws_url = Some(ws_url_of(first));
        }
    }
}

/// Where a devnet's operator keys live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevnetSigner {
    /// The well-known devnet keys, as `dev-key` signers.
    #[default]
    DevKeys,
    /// One key per operator generated inside a SoftHSM2 token (`pkcs11` signers).
    Hsm,
}

impl DevnetOptions {
    /// [`new`](Self::new) without etcd: the chains, contracts and relay configs only (what every
    /// test that does not exercise leadership needs).
    pub fn chains_only(dir: impl Into<PathBuf>) -> Self {
        Self {
            etcd_members: 0,
            ..Self::new(dir)
        }
    }

    /// [`chains_only`](Self::chains_only) with one relay process per operator started after
    /// deploying; without etcd each relay leads its lanes alone (what the relay tests need).
    pub fn standalone_relays(dir: impl Into<PathBuf>) -> Self {
        Self {
            relays: true,
            ..Self::chains_only(dir)
        }
    }

    /// This devnet with no other of the process beside it: for tests whose assertions are
    /// durations (see [`MachineShare`]).
    pub fn alone(self) -> Self {
        Self {
            alone: true,
            ..self
        }
    }

    /// [`new`](Self::new) with 2 replicas per operator and threshold 3, so every operator's
    /// vote is needed and a missing leader shows at once (the leadership tests and the
    /// failover benchmark).
    pub fn hot_standby(dir: impl Into<PathBuf>) -> Self {
        Self {
            threshold: 3,
            replicas: 2,
            ..Self::new(dir)
        }
    }

    /// Defaults: 3 operators, threshold 2, 1 s blocks, a 3-member etcd cluster.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            lease_ttl_secs: LEASE_TTL_SECS,
            operators: 3,
            threshold: 2,
            users: 4,
            block_time: Some(1.0),
            main_chain_id: 31_337,
            service_chain_id: 31_338,
            etcd_members: 3,
            liquidity: parse_ether("1000").unwrap_or(U256::ZERO),
            user_tokens: parse_ether("1000000").unwrap_or(U256::ZERO),
            confirmations: 1,
            relays: false,
            prometheus: false,
            replicas: 1,
            release_limits: ReleaseLimits::devnet(),
            backup_every: Some(1_000),
            backup_storage: None,
            backup_etcd_snapshot: false,
            relay_env: Vec::new(),
            history_bridge: false,
            guardians: true,
            max_block_range: 1_000,
            alone: false,
            dashboard_manager: None,
            signer: DevnetSigner::DevKeys,
            replica_links: false,
            voting_mode: multibridge_config::VotingMode::Votes,
            attestation_stores: Vec::new(),
            service_chains: 1,
            nested: false,
            edge_proxies: false,
            spread_block_phases: false,
            edge_user_tokens: true,
            head_feeds: true,
        }
    }

    fn validate(&self) -> Result<(), DevnetError> {
        if self.replicas == 0 || (self.replicas > 1 && self.etcd_members == 0) {
            return Err(DevnetError::Invalid(
                "--replicas must be at least 1, and more than 1 needs etcd (--etcd-members)".into(),
            ));
        }
        if self.operators == 0 {
            return Err(DevnetError::Invalid(
                "--operators must be at least 1".into(),
            ));
        }
        if self.threshold == 0 || self.threshold > u64::from(self.operators) {
            return Err(DevnetError::Invalid(format!(
                "--threshold must be between 1 and the number of operators ({}), got {}",
                self.operators, self.threshold
            )));
        }
        for id in [self.main_chain_id, self.service_chain_id] {
            if !multibridge_config::is_devnet_chain(id) {
                return Err(DevnetError::Invalid(format!(
                    "chain id {id} is not a devnet id (31337-31413): relays refuse the devnet's raw keys elsewhere"
                )));
            }
        }
        if self.main_chain_id == self.service_chain_id {
            return Err(DevnetError::Invalid(
                "main and service chain ids must differ".into(),
            ));
        }
        if self.service_chains == 0 {
            return Err(DevnetError::Invalid(
                "--service-chains must be at least 1".into(),
            ));
        }
        let hub = hub::plan_edges(self.service_chains, self.nested, self.service_chain_id);
        if !hub.is_empty() && (self.replica_links || self.history_bridge) {
            return Err(DevnetError::Invalid(
                "several service chains do not go with per-replica links or the history bridge"
                    .into(),
            ));
        }
        for edge in &hub {
            if !multibridge_config::is_devnet_chain(edge.chain_id)
                || edge.chain_id == self.main_chain_id
            {
                return Err(DevnetError::Invalid(format!(
                    "service chain {} would get chain id {}, which is not a free devnet id (31337-31413, not the main chain's): choose a lower --service-chain-id or fewer chains",
                    edge.chain, edge.chain_id
                )));
            }
        }
        if let Some(bt) = self.block_time
            && !(bt > 0.0 && bt.is_finite())
        {
            return Err(DevnetError::Invalid(format!(
                "--block-time must be positive, got {bt}"
            )));
        }
        Ok(())
    }
}

/// A running devnet.
#[derive(Debug)]
pub struct Devnet {
    /// How it was built.
    pub options: DevnetOptions,
    /// Main chain node.
    pub main: AnvilNode,
    /// Service chain node.
    pub service: AnvilNode,
    /// etcd cluster (absent when `etcd_members` is 0).
    pub etcd: Option<EtcdCluster>,
    /// Deployed contracts.
    pub deployment: Deployment,
    /// Accounts and keys.
    pub accounts: DevAccounts,
    /// HTTP API port of each operator's relay (allocated once, written into its config).
    pub operator_http_ports: Vec<u16>,
    /// HTTP API port of every replica: `[operator][replica]` (replica 0 is `operator_http_ports`).
    pub replica_http_ports: Vec<Vec<u16>>,
    /// Prometheus scraping the relays (when `options.prometheus`).
    pub prometheus: Option<PrometheusServer>,
    /// The operators' addresses (the dev keys', or the HSM keys').
    pub operator_addresses: Vec<alloy::primitives::Address>,
    /// The SoftHSM2 token holding the operator keys (with `DevnetSigner::Hsm`).
    pub hsm: Option<crate::stand_in::hsm::SoftHsm>,
    /// Every replica's own network links, `(operator, replica)` (with `replica_links`).
    links: std::collections::BTreeMap<(usize, usize), ReplicaLinks>,
    /// The further pairs of a hub devnet (`service_chains > 1`, `nested`).
    hub: Vec<HubEdge>,
    /// Relay processes by operator index.
    relays: std::collections::BTreeMap<(usize, usize), ManagedProcess>,
    /// Its times and deadline (see [`crate::harness::watch`]).
    clock: crate::harness::watch::DevnetClock,
    /// Its share of the machine, released last (after every process above is gone).
    _machine: MachineShare,
}

/// Remove what a previous devnet in `dir` left: logs and the operators' stores, which belong to
/// chains that no longer exist (the new chains reuse the same contract addresses, so a stale
/// store would take their fresh nonces for requests it already handled). Only names this crate
/// writes are touched.
fn clear_previous_run(dir: &Path) -> Result<(), DevnetError> {
    if let Some(processes) = crate::harness::manifest::load_processes(dir)?
        && processes.iter().any(|p| p.is_alive())
    {
        return Err(DevnetError::AlreadyRunning(dir.to_owned()));
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let ours = name == "logs"
            || name == "devnet.json"
            || (name.starts_with("operator-") && (path.is_dir() || name.ends_with(".toml")))
            || name == "prometheus"
            || name == "softhsm"
            || name == "chains"
            || (name.starts_with("etcd-") && name.ends_with(".data"));
        if !ours {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| DevnetError::io(&path, e))?;
    }
    Ok(())
}

impl Devnet {
    /// Start chains and etcd, deploy and wire the contracts, write `devnet.json` and one relay
    /// config per operator.
    pub async fn start(options: DevnetOptions) -> Result<Self, DevnetError> {
        options.validate()?;
        let mut clock = crate::harness::watch::DevnetClock::asking(options.alone);
        let machine = MachineShare::take(
            options.alone,
            crate::harness::machine::weight_of(
                options.operators,
                options.replicas,
                options
                    .service_chains
                    .saturating_add(usize::from(options.nested)),
                options.etcd_members,
            ),
        )
        .await;
        clock.got_machine();
        let tools = Tools::locate()?;
        let dir = absolute(&options.dir)?;
        clear_previous_run(&dir)?;
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir).map_err(|e| DevnetError::io(&log_dir, e))?;
        let accounts = DevAccounts::derive(options.operators, options.users)?;

        // Chains start mining a block per transaction so deployment is instant; interval mining
        // (whole seconds) is switched on afterwards. Fractional block times are set at start.
        let integral_block_time = options
            .block_time
            .filter(|bt| bt.fract() == 0.0 && *bt <= 3600.0);
        let start_block_time = if integral_block_time.is_some() {
            None
        } else {
            options.block_time
        };
        let chain = |name: &str, chain_id| AnvilOptions {
            name: name.to_owned(),
            chain_id,
            block_time: start_block_time,
            accounts: accounts.count().saturating_add(4),
            frozen_fork_of: None,
            state_file: None,
            large_code: options.history_bridge,
            max_persisted_states: (options.service_chains > 1 || options.nested)
                .then_some(HUB_PERSISTED_STATES),
        };
        let main = AnvilNode::start(
            &tools,
            &log_dir,
            &chain("anvil-main", options.main_chain_id),
        )
        .await?;
        let service = AnvilNode::start(
            &tools,
            &log_dir,
            &chain("anvil-service", options.service_chain_id),
        )
        .await?;
        clock.phase("chains");
        let etcd = if options.etcd_members > 0 {
            Some(EtcdCluster::start(&tools, &dir, options.etcd_members).await?)
        } else {
            None
        };
        clock.phase("etcd");
        let edge_plans = hub::plan_edges(
            options.service_chains,
            options.nested,
            options.service_chain_id,
        );
        let mut edge_nodes = Vec::with_capacity(edge_plans.len());
        for plan in &edge_plans {
            edge_nodes.push(
                hub::start_edge_node(
                    &tools,
                    &dir,
                    &log_dir,
                    plan,
                    start_block_time,
                    accounts.count().saturating_add(4),
                )
                .await?,
            );
        }

        // Operator keys in an HSM: generated inside the token, funded for gas on both chains.
        let (hsm, operator_addresses) = match options.signer {
            DevnetSigner::DevKeys => (None, accounts.operator_addresses()),
            DevnetSigner::Hsm => {
                let hsm = crate::stand_in::hsm::SoftHsm::create(&dir)?;
                let mut addresses = Vec::new();
                for index in 0..accounts.operators.len() {
                    let address = hsm.create_key(index)?;
                    for node in [&main, &service].into_iter().chain(&edge_nodes) {
                        crate::harness::anvil::set_balance(
                            &node.url(),
                            address,
                            parse_ether("10000").unwrap_or(U256::ZERO),
                        )
                        .await?;
                    }
                    addresses.push(address);
                }
                (Some(hsm), addresses)
            }
        };
        let plan = |main_url: String,
                    service_url: String,
                    user_tokens: bool|
         -> Result<DeployPlan, DevnetError> {
            Ok(DeployPlan {
                main_url,
                service_url,
                owner: accounts.owner.clone(),
                operators: operator_addresses.clone(),
                threshold: options.threshold,
                liquidity: options.liquidity,
                users: if user_tokens {
                    accounts.users.iter().map(|u| u.address()).collect()
                } else {
                    Vec::new()
                },
                user_tokens: options.user_tokens,
                release_limits: options.release_limits,
                history_bridge: options.history_bridge,
                pausers: if options.guardians {
                    (0..accounts.operators.len())
                        .flat_map(|index| {
                            (0..options.replicas.max(1)).map(move |replica| (index, replica))
                        })
                        .map(|(index, replica)| {
                            guardian_signer(index, replica).map(|s| s.address())
                        })
                        .collect::<Result<Vec<_>, _>>()?
                } else {
                    Vec::new()
                },
            })
        };
        let deployment = deploy_pair(&plan(main.url(), service.url(), true)?).await?;
        clock.phase("deploy");
        let mut hub = Vec::with_capacity(edge_plans.len());
        for (edge, node) in edge_plans.into_iter().zip(edge_nodes) {
            let parent = match edge.parent {
                ChainRole::Main => main.url(),
                ChainRole::Service => service.url(),
            };
            let deployment =
                deploy_pair(&plan(parent, node.url(), options.edge_user_tokens)?).await?;
            let parent_name = match edge.parent {
                ChainRole::Main => hub::MAIN_CHAIN,
                ChainRole::Service => hub::FIRST_SERVICE_CHAIN,
            };
            let proxy = if options.edge_proxies {
                Some(hub::proxy_for(&node.url()).await?)
            } else {
                None
            };
            hub.push(HubEdge {
                proxy,
                name: format!("{parent_name}-{}", edge.chain),
                parent: edge.parent,
                chain: edge.chain,
                node,
                deployment,
                http_ports: hub::http_ports(accounts.operators.len(), options.replicas)?,
            });
        }

        if let Some(seconds) = integral_block_time {
            set_interval_mining(&main.url(), seconds as u64).await?;
            // A chain's clock starts when interval mining is switched on (anvil mines its first
            // block then, and one every interval from there).
            let main_started = tokio::time::Instant::now();
            let services: Vec<String> = std::iter::once(service.url())
                .chain(hub.iter().map(|e| e.node.url()))
                .collect();
            for (i, url) in services.iter().enumerate() {
                if options.spread_block_phases {
                    let offset = block_phase_offset(i, services.len(), seconds);
                    tokio::time::sleep_until(
                        main_started + std::time::Duration::from_secs_f64(offset),
                    )
                    .await;
                }
                set_interval_mining(url, seconds as u64).await?;
            }
        }

        let replica_http_ports = hub::http_ports(accounts.operators.len(), options.replicas)?;
        let operator_http_ports: Vec<u16> = replica_http_ports
            .iter()
            .map(|ports| ports.first().copied().unwrap_or_default())
            .collect();
        let prometheus = if options.prometheus {
            let targets: Vec<ScrapeTarget> = std::iter::once(&replica_http_ports)
                .chain(hub.iter().map(|e| &e.http_ports))
                .flat_map(|ports| ports.iter().enumerate())
                .flat_map(|(i, ports)| {
                    ports.iter().map(move |port| ScrapeTarget {
                        operator: i.saturating_add(1).to_string(),
                        address: format!("127.0.0.1:{port}"),
                    })
                })
                .collect();
            Some(PrometheusServer::start(&dir, &log_dir, &targets).await?)
        } else {
            None
        };
        let mut links = std::collections::BTreeMap::new();
        if options.replica_links {
            let etcd_endpoints = etcd
                .as_ref()
                .map(EtcdCluster::endpoints)
                .unwrap_or_default();
            for index in 0..accounts.operators.len() {
                for replica in 0..options.replicas.max(1) {
                    links.insert(
                        (index, replica),
                        ReplicaLinks::start(&main.url(), &service.url(), &etcd_endpoints).await?,
                    );
                }
            }
        }
        let start_relays = options.relays;
        let mut devnet = Self {
            options: DevnetOptions { dir, ..options },
            main,
            service,
            etcd,
            deployment,
            accounts,
            operator_http_ports,
            replica_http_ports,
            prometheus,
            operator_addresses,
            hsm,
            links,
            hub,
            relays: Default::default(),
            clock,
            _machine: machine,
        };
        devnet.write_files()?;
        if start_relays {
            for index in 0..devnet.accounts.operators.len() {
                for replica in 0..devnet.options.replicas {
                    devnet.start_replica(index, replica)?;
                }
            }
        }
        devnet.clock.phase("rest");
        Ok(devnet)
    }

    /// RPC URL of one chain.
    pub fn rpc_url(&self, role: ChainRole) -> String {
        match role {
            ChainRole::Main => self.main.url(),
            ChainRole::Service => self.service.url(),
        }
    }

    /// The RPC URL replica `replica` of operator `index` uses for `role`: its own link when the
    /// devnet has `replica_links`, else the node's.
    fn replica_rpc_url(&self, index: usize, replica: usize, role: ChainRole) -> String {
        match self.links.get(&(index, replica)) {
            Some(links) => links.rpc(role).url(),
            None => self.rpc_url(role),
        }
    }

    /// Every replica's HTTP port, operator by operator.
    pub fn replica_ports(&self) -> Vec<u16> {
        self.replica_http_ports.iter().flatten().copied().collect()
    }

    /// The network links of one replica (with `replica_links`), to cut or delay them.
    pub fn replica_links(&self, index: usize, replica: usize) -> Option<&ReplicaLinks> {
        self.links.get(&(index, replica))
    }

    /// The anvil node of one chain, for fault injection.
    pub fn chain(&mut self, role: ChainRole) -> &mut AnvilNode {
        match role {
            ChainRole::Main => &mut self.main,
            ChainRole::Service => &mut self.service,
        }
    }

    /// The operator indices (0-based) every per-operator method takes: `for op in
    /// devnet.operators()`.
    pub fn operators(&self) -> std::ops::Range<usize> {
        0..self.accounts.operators.len()
    }

    /// The devnet directory.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    /// Everything `devnet.json` holds.
    pub fn manifest(&self) -> Manifest {
        let account = |s: &alloy::signers::local::PrivateKeySigner| AccountEntry {
            address: s.address(),
            private_key: format!("0x{}", alloy::hex::encode(s.to_bytes())),
        };
        let operators = self
            .accounts
            .operators
            .iter()
            .enumerate()
            .map(|(index, signer)| OperatorEntry {
                account: match (&self.hsm, self.operator_addresses.get(index)) {
                    (Some(_), Some(address)) => AccountEntry {
                        address: *address,
                        private_key: "(inside the SoftHSM token: see softhsm/)".into(),
                    },
                    _ => account(signer),
                },
                config: self.operator_config_path(index),
                http_urls: self
                    .replica_http_ports
                    .get(index)
                    .into_iter()
                    .flatten()
                    .filter(|_| self.options.relays)
                    .map(|port| format!("http://127.0.0.1:{port}/"))
                    .collect(),
            })
            .collect();
        Manifest {
            version: MANIFEST_VERSION,
            warning: KEYS_WARNING.to_owned(),
            dir: self.options.dir.clone(),
            main: ChainEntry {
                rpc_url: self.main.url(),
                block_time: self.options.block_time,
                contracts: self.deployment.main.clone(),
            },
            service: ChainEntry {
                rpc_url: self.service.url(),
                block_time: self.options.block_time,
                contracts: self.deployment.service.clone(),
            },
            registry: self.deployment.registry,
            etcd_endpoints: self
                .etcd
                .as_ref()
                .map(EtcdCluster::endpoints)
                .unwrap_or_default(),
            prometheus_url: self.prometheus.as_ref().map(PrometheusServer::url),
            threshold: self.options.threshold,
            owner: account(&self.accounts.owner),
            operators,
            users: self.accounts.users.iter().map(account).collect(),
            pairs: self.pair_entries(),
        }
    }

    /// Start (or restart) the relay of operator `index` with its config file (replica 0).
    pub fn start_relay(&mut self, index: usize) -> Result<(), DevnetError> {
        self.start_replica(index, 0)
    }

    /// Process name of a replica: `relay-N` for the first, `relay-N-rK` for the K-th.
    pub fn replica_name(index: usize, replica: usize) -> String {
        let n = index.saturating_add(1);
        if replica == 0 {
            format!("relay-{n}")
        } else {
            format!("relay-{n}-r{}", replica.saturating_add(1))
        }
    }

    /// Start (or restart) one replica of operator `index`.
    pub fn start_replica(&mut self, index: usize, replica: usize) -> Result<(), DevnetError> {
        let key = (index, replica);
        if let Some(relay) = self.relays.get_mut(&key) {
            relay.start_again()?;
            return Ok(());
        }
        let config_path = self.replica_config_path(index, replica);
        if replica > 0 && !config_path.exists() {
            self.write_config_text(&config_path, &self.replica_config_text(index, replica)?)?;
        }
        let name = Self::replica_name(index, replica);
        let spec = ProcessSpec {
            name: name.clone(),
            program: crate::harness::tools::relay_binary()?,
            args: vec![
                "run".into(),
                "--config".into(),
                config_path.display().to_string(),
            ],
            envs: std::iter::once((
                "MULTIBRIDGE_LOG".into(),
                std::env::var("MULTIBRIDGE_LOG").unwrap_or_else(|_| "info".into()),
            ))
            .chain(self.options.relay_env.iter().cloned())
            .chain(hub_allocator_env(
                self.options.service_chains > 1 || self.options.nested,
                &self.options.relay_env,
            ))
            .chain(self.hsm.iter().map(crate::stand_in::hsm::SoftHsm::env))
            .chain(heaptrack_env(&name))
            .collect(),
            log_path: self.options.dir.join("logs").join(format!("{name}.log")),
        };
        self.relays.insert(key, ManagedProcess::spawn(spec)?);
        Ok(())
    }

    /// Delete the store of one replica (it must be stopped): a wiped or brand-new replica.
    pub fn wipe_replica_store(&self, index: usize, replica: usize) -> Result<(), DevnetError> {
        for path in self.replica_stores(index, replica)? {
            for suffix in ["", "-wal", "-shm"] {
                let file = PathBuf::from(format!("{}{suffix}", path.display()));
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(DevnetError::io(&file, e)),
                }
            }
        }
        Ok(())
    }

    /// The relay process of operator `index` (replica 0), for fault injection.
    pub fn relay(&mut self, index: usize) -> Option<&mut ManagedProcess> {
        self.replica(index, 0)
    }

    /// The process id of every operator's first relay replica (replica 0), in operator order.
    pub fn relay_pids(&self) -> Vec<i32> {
        self.relays
            .iter()
            .filter(|((_, replica), _)| *replica == 0)
            .filter_map(|(_, p)| p.pid())
            .collect()
    }

    /// One replica's process, for fault injection.
    pub fn replica(&mut self, index: usize, replica: usize) -> Option<&mut ManagedProcess> {
        self.relays.get_mut(&(index, replica))
    }

    /// Leave every process running after this value is dropped; returns them for `down`.
    pub fn detach(self) -> Vec<RecordedProcess> {
        let mut processes: Vec<RecordedProcess> = Vec::new();
        processes.extend(self.relays.into_values().filter_map(ManagedProcess::detach));
        processes.extend(self.main.detach());
        processes.extend(self.service.detach());
        processes.extend(self.hub.into_iter().filter_map(|e| e.node.detach()));
        if let Some(etcd) = self.etcd {
            processes.extend(etcd.detach());
        }
        processes.extend(self.prometheus.and_then(PrometheusServer::detach));
        processes
    }
}

/// One replica's own connections: a proxy in front of each chain's RPC and each etcd member.
#[derive(Debug)]
pub struct ReplicaLinks {
    main: TcpProxy,
    service: TcpProxy,
    etcd: Vec<TcpProxy>,
}

impl ReplicaLinks {
    async fn start(main: &str, service: &str, etcd: &[String]) -> Result<Self, DevnetError> {
        use hub::proxy_for as proxy;
        let mut members = Vec::with_capacity(etcd.len());
        for endpoint in etcd {
            members.push(proxy(endpoint).await?);
        }
        Ok(Self {
            main: proxy(main).await?,
            service: proxy(service).await?,
            etcd: members,
        })
    }

    /// The proxy in front of `role`'s RPC.
    pub fn rpc(&self, role: ChainRole) -> &TcpProxy {
        match role {
            ChainRole::Main => &self.main,
            ChainRole::Service => &self.service,
        }
    }

    fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd.iter().map(TcpProxy::url).collect()
    }

    /// Every connection of the replica: both RPCs and every etcd member.
    pub fn all(&self) -> impl Iterator<Item = &TcpProxy> {
        [&self.main, &self.service].into_iter().chain(&self.etcd)
    }

    /// Put every connection of the replica in `mode` (blackhole: its network is cut).
    pub fn set_all(&self, mode: ProxyMode) {
        for proxy in self.all() {
            proxy.set_mode(mode);
        }
    }
}

/// Set `url`'s interval mining to `seconds` (0: paused).
/// Seconds after the main chain's clock that service chain `index` of `count` starts its
/// own ([`DevnetOptions::spread_block_phases`]): the middles of `count` equal parts of one block.
fn block_phase_offset(index: usize, count: usize, block_time: f64) -> f64 {
    block_time * (index as f64 + 0.5) / count.max(1) as f64
}

pub(crate) async fn set_interval_mining(url: &str, seconds: u64) -> Result<(), DevnetError> {
    let provider = ProviderBuilder::new().connect_http(
        url.parse()
            .map_err(|_| DevnetError::BadUrl(url.to_owned()))?,
    );
    provider
        .raw_request::<_, serde_json::Value>("evm_setIntervalMining".into(), (seconds,))
        .await
        .map_err(|e| DevnetError::chain("evm_setIntervalMining", e))?;
    Ok(())
}

fn absolute(dir: &Path) -> Result<PathBuf, DevnetError> {
    std::fs::create_dir_all(dir).map_err(|e| DevnetError::io(dir, e))?;
    std::fs::canonicalize(dir).map_err(|e| DevnetError::io(dir, e))
}

/// Where heaptrack's preload library lives on Debian/Ubuntu (`apt install heaptrack`).
const HEAPTRACK_PRELOAD: &str = "/usr/lib/heaptrack/libheaptrack_preload.so";

/// The allocator setting of a relay process that serves a hub (docs/running-a-relay.md, "The
/// allocator of a hub"): jemalloc returns freed pages to the system on its 1 s decay clock instead of at once
/// (the relay's compiled-in `dirty_decay_ms:0`, for the least memory on one pair). Measured on
/// a 16-pair hub, purging every freed page at once (a `madvise` and its page faults again,
/// about 700 a second per process) was about a fifth of the relays' CPU at rest and at steady
/// load; the clock costs 2.5-4.6 MiB of peak RSS per process (docs/benchmarks.md).
pub const HUB_ALLOCATOR_CONF: &str = "dirty_decay_ms:1000";

/// The environment variable jemalloc reads its settings from at start (the relay's allocator
/// is built with the `_rjem_` prefix).
pub const ALLOCATOR_CONF_VAR: &str = "_RJEM_MALLOC_CONF";

/// [`HUB_ALLOCATOR_CONF`] for a hub's relays, unless the devnet's own environment or its
/// `relay_env` already says how the allocator runs.
pub(crate) fn hub_allocator_env(
    hub: bool,
    relay_env: &[(String, String)],
) -> Option<(String, String)> {
    let set = std::env::var_os(ALLOCATOR_CONF_VAR).is_some()
        || relay_env.iter().any(|(k, _)| k == ALLOCATOR_CONF_VAR);
    (hub && !set).then(|| (ALLOCATOR_CONF_VAR.into(), HUB_ALLOCATOR_CONF.into()))
}

/// A relay's environment for a heap profile, when `MULTIBRIDGE_DEVNET_HEAPTRACK` names a
/// directory: heaptrack's preload library records every allocation of the relay (not of the
/// devnet or the chains) into `<dir>/<relay name>.raw`, rewritten at each start. Read it with
/// `heaptrack_interpret < F.raw | zstd > F.zst; heaptrack_print -f F.zst` (docs/benchmarks.md).
/// The RSS a bench prints then includes heaptrack's own bookkeeping.
fn heaptrack_env(name: &str) -> Vec<(String, String)> {
    let Some(dir) = std::env::var_os("MULTIBRIDGE_DEVNET_HEAPTRACK") else {
        return Vec::new();
    };
    let raw = PathBuf::from(dir).join(format!("{name}.raw"));
    vec![
        ("LD_PRELOAD".into(), HEAPTRACK_PRELOAD.into()),
        ("DUMP_HEAPTRACK_OUTPUT".into(), raw.display().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_service_chain_clocks_cover_one_block_evenly() {
        let offsets: Vec<f64> = (0..4).map(|i| block_phase_offset(i, 4, 1.0)).collect();
        assert_eq!(offsets, vec![0.125, 0.375, 0.625, 0.875]);
        assert_eq!(
            block_phase_offset(0, 1, 2.0),
            1.0,
            "one chain: half a block"
        );
    }

    #[test]
    fn a_hubs_relays_get_the_hub_allocator_setting_unless_one_is_given() {
        let given = vec![(ALLOCATOR_CONF_VAR.to_owned(), "dirty_decay_ms:0".to_owned())];
        assert_eq!(hub_allocator_env(false, &[]), None, "one pair: compiled-in");
        assert_eq!(hub_allocator_env(true, &given), None, "relay_env wins");
        if std::env::var_os(ALLOCATOR_CONF_VAR).is_none() {
            assert_eq!(
                hub_allocator_env(true, &[]),
                Some((ALLOCATOR_CONF_VAR.to_owned(), HUB_ALLOCATOR_CONF.to_owned()))
            );
        }
    }
}
