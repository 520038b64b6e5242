//! `up`, `down` and `status`: a devnet left running, and what runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use multibridge_devnet::harness::manifest::{
    Manifest, load_processes, remove_processes, save_processes,
};
use multibridge_devnet::{Devnet, DevnetError, DevnetOptions};

#[derive(Args, Clone)]
pub struct UpArgs {
    /// Number of operators.
    #[arg(long, default_value_t = 3)]
    pub operators: u32,
    /// Votes needed to execute a transfer.
    #[arg(long, default_value_t = 2)]
    pub threshold: u64,
    /// Seconds per block on both chains (0: a block per transaction).
    #[arg(long, default_value_t = 1.0)]
    pub block_time: f64,
    /// Main chain id.
    #[arg(long, default_value_t = 31_337)]
    pub main_chain_id: u64,
    /// Service chain id.
    #[arg(long, default_value_t = 31_338)]
    pub service_chain_id: u64,
    /// etcd cluster size (0: none).
    #[arg(long, default_value_t = 3)]
    pub etcd_members: usize,
    /// Do not start the relays (deploy only).
    #[arg(long)]
    pub no_relays: bool,
    /// Do not start Prometheus (it scrapes every relay and evaluates the alert rules).
    #[arg(long)]
    pub no_prometheus: bool,
    /// Relay replicas per operator; they elect one active replica per lane through etcd
    /// (1 without etcd).
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// Where the operator keys live: `dev` (the well-known devnet keys) or `hsm` (generated
    /// inside a SoftHSM2 token; the relays sign through PKCS#11).
    #[arg(long, default_value = "dev", value_parser = ["dev", "hsm"])]
    pub signer: String,
    /// How transfers reach the threshold: `votes` (every operator votes on chain) or
    /// `attestations` (operators sign batches, one transaction executes each).
    #[arg(long, default_value = "votes", value_parser = ["votes", "attestations"])]
    pub mode: String,
    /// Service chains under the main chain, a bridge pair each; with more than one (or
    /// `--nested`) every relay serves all pairs from one process (a `[[pairs]]` config).
    #[arg(long, default_value_t = 1)]
    pub service_chains: usize,
    /// Also a chain under the first service chain, with its own pair (a service chain's
    /// service chain).
    #[arg(long)]
    pub nested: bool,
    /// The relays read each chain's head over HTTP between blocks instead of following its
    /// `newHeads` subscription (no `ws_url` in their configs): to compare the two.
    #[arg(long)]
    pub no_head_feeds: bool,
}

impl UpArgs {
    pub fn options(&self, dir: PathBuf) -> DevnetOptions {
        DevnetOptions {
            operators: self.operators,
            threshold: self.threshold,
            block_time: (self.block_time > 0.0).then_some(self.block_time),
            main_chain_id: self.main_chain_id,
            service_chain_id: self.service_chain_id,
            etcd_members: self.etcd_members,
            relays: !self.no_relays,
            prometheus: !self.no_prometheus,
            replicas: if self.etcd_members == 0 {
                1
            } else {
                self.replicas
            },
            signer: if self.signer == "hsm" {
                multibridge_devnet::DevnetSigner::Hsm
            } else {
                multibridge_devnet::DevnetSigner::DevKeys
            },
            voting_mode: if self.mode == "attestations" {
                multibridge_config::VotingMode::Attestations
            } else {
                multibridge_config::VotingMode::Votes
            },
            service_chains: self.service_chains,
            nested: self.nested,
            head_feeds: !self.no_head_feeds,
            ..DevnetOptions::new(dir)
        }
    }
}

pub fn refuse_if_running(dir: &Path) -> Result<()> {
    if let Some(processes) = load_processes(dir)?
        && processes.iter().any(|p| p.is_alive())
    {
        return Err(DevnetError::AlreadyRunning(dir.to_owned()).into());
    }
    Ok(())
}

pub async fn up(dir: &Path, args: &UpArgs) -> Result<()> {
    refuse_if_running(dir)?;
    let started = Instant::now();
    let devnet = Devnet::start(args.options(dir.to_owned())).await?;
    let manifest = devnet.manifest();
    let processes = devnet.detach();
    save_processes(&manifest.dir, &processes)?;
    print_summary(&manifest);
    println!(
        "up in {:.1}s; stop with: multibridge-devnet down",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn print_summary(m: &Manifest) {
    println!("devnet in {}", m.dir.display());
    for (name, chain) in [("main", &m.main), ("service", &m.service)] {
        println!(
            "  {name:<8} chain {:<6} {}  bridge {}  token {}  nft {}",
            chain.contracts.chain_id,
            chain.rpc_url,
            chain.contracts.bridge,
            chain.contracts.token,
            chain.contracts.nft
        );
    }
    let ids = |u: usize| {
        multibridge_devnet::harness::deploy::user_nft_ids(u)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  user 0 holds NFT ids {} on main (user n: (n+1)*1000 + 1..={})",
        ids(0),
        multibridge_devnet::harness::deploy::USER_NFTS
    );
    println!("  registry {} (main chain)", m.registry);
    for pair in m.pairs.iter().skip(1) {
        println!(
            "  pair {:<20} chain {} {} -> chain {} {}  bridges {} / {}  registry {}",
            pair.name,
            pair.main.contracts.chain_id,
            pair.main.rpc_url,
            pair.service.contracts.chain_id,
            pair.service.rpc_url,
            pair.main.contracts.bridge,
            pair.service.contracts.bridge,
            pair.registry
        );
        for (op, urls) in pair.http_urls.iter().enumerate() {
            if !urls.is_empty() {
                println!(
                    "      operator {} dashboard {}",
                    op.saturating_add(1),
                    urls.join("  ")
                );
            }
        }
    }
    if !m.etcd_endpoints.is_empty() {
        println!("  etcd     {}", m.etcd_endpoints.join(","));
    }
    if let Some(url) = &m.prometheus_url {
        println!("  prometheus {url} (alerts: {url}/alerts)");
    }
    println!(
        "  operators {} (threshold {}):",
        m.operators.len(),
        m.threshold
    );
    for op in &m.operators {
        println!("    {}  config {}", op.account.address, op.config.display());
        if !op.http_urls.is_empty() {
            println!("      dashboard {}", op.http_urls.join("  "));
        }
    }
    if m.operators.iter().any(|op| !op.http_urls.is_empty()) {
        println!(
            "  dashboard admin token (devnet only): {}",
            m.dir.join("dashboard-token").display()
        );
    }
    println!("  manifest {}", m.dir.join("devnet.json").display());
}

pub fn down(dir: &Path) -> Result<()> {
    let Some(processes) = load_processes(dir)? else {
        println!("nothing to stop in {}", dir.display());
        return Ok(());
    };
    let mut failed = Vec::new();
    for p in &processes {
        // etcd flushes its WAL on SIGTERM; give it time before SIGKILL.
        if p.stop(Duration::from_secs(10)) {
            println!("stopped {} (pid {})", p.name, p.pid);
        } else {
            failed.push(format!("{} (pid {})", p.name, p.pid));
        }
    }
    if !failed.is_empty() {
        bail!("could not stop: {}", failed.join(", "));
    }
    remove_processes(dir)?;
    Ok(())
}

pub fn status(dir: &Path, json: bool) -> Result<()> {
    let processes = load_processes(dir)?.unwrap_or_default();
    let rows: Vec<_> = processes
        .iter()
        .map(|p| (p.name.clone(), p.pid, p.is_alive()))
        .collect();
    if json {
        let value = serde_json::json!({
            "dir": dir,
            "running": rows.iter().any(|r| r.2),
            "processes": rows.iter().map(|(name, pid, alive)| serde_json::json!({
                "name": name, "pid": pid, "alive": alive
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no devnet in {}", dir.display());
        return Ok(());
    }
    println!("devnet in {}", dir.display());
    for (name, pid, alive) in rows {
        println!(
            "  {name:<14} pid {pid:<8} {}",
            if alive { "running" } else { "not running" }
        );
    }
    Ok(())
}
