//! One anvil chain on a free loopback port.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder};

use crate::error::DevnetError;
use crate::harness::ports::free_port;
use crate::harness::process::{ManagedProcess, ProcessSpec};
use crate::harness::tools::Tools;
use crate::harness::wait::poll_until;

/// How to start one chain.
#[derive(Debug, Clone)]
pub struct AnvilOptions {
    /// Component name (`anvil-main`, `anvil-service`).
    pub name: String,
    /// Chain id.
    pub chain_id: u64,
    /// Interval mining in seconds; `None` mines a block per transaction.
    pub block_time: Option<f64>,
    /// Funded dev accounts derived from anvil's well-known test mnemonic.
    pub accounts: u32,
    /// Start as a fork of the node at this URL, frozen at its current block (no mining): a node
    /// of the same chain that answers every call but whose head never moves.
    pub frozen_fork_of: Option<String>,
    /// Keep the chain in this file (`--state`): loaded at start, written when the node stops
    /// gracefully, so [`AnvilNode::restart`] brings the same chain back (blocks, receipts, logs).
    pub state_file: Option<std::path::PathBuf>,
    /// Accept contracts above EIP-170's 24,576 bytes (`--code-size-limit`): only for the
    /// devnet-only `HistoryBridge` of `bench-join` (the Bridge plus two owner functions). The
    /// Bridge itself stays under the limit (a test of `multibridge-contracts` checks it).
    pub large_code: bool,
    /// At most this many older states on disk (`--max-persisted-states`; `None`: anvil's
    /// default, all of them). A hub's main chain holds every pair's contracts, and anvil wrote
    /// each block's whole state out beyond the ones it keeps in memory: 5.7 MB a block on a
    /// 64-pair hub, 20 GB during its deployment alone.
    pub max_persisted_states: Option<u32>,
}

/// A running anvil chain.
#[derive(Debug)]
pub struct AnvilNode {
    process: ManagedProcess,
    port: u16,
    chain_id: u64,
}

const START_ATTEMPTS: usize = 3;
/// The code size a devnet chain with `large_code` accepts: twice EIP-170's.
const LARGE_CODE_LIMIT: usize = 49_152;
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The home directory anvil runs with: inside the devnet's own directory. anvil writes the states
/// of older blocks to `$HOME/.foundry/anvil/tmp/` and deletes them only when it exits cleanly, so
/// every node a test or a fault SIGKILLed left its states in the user's home (49 GB on one
/// developer's disk, which filled it); now they go where the devnet's other files go.
fn anvil_home(log_dir: &Path) -> Result<String, DevnetError> {
    let home = log_dir.join("anvil-home");
    std::fs::create_dir_all(&home).map_err(|e| DevnetError::io(&home, e))?;
    let home = std::path::absolute(&home).map_err(|e| DevnetError::io(&home, e))?;
    Ok(home.display().to_string())
}

impl AnvilNode {
    /// Start anvil and wait until it answers `eth_chainId` with the expected id. Retries on a new
    /// port if the chosen one was taken meanwhile.
    pub async fn start(
        tools: &Tools,
        log_dir: &Path,
        opts: &AnvilOptions,
    ) -> Result<Self, DevnetError> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port().map_err(DevnetError::Ports)?;
            let mut args = vec![
                "--host".to_owned(),
                "127.0.0.1".to_owned(),
                "--port".to_owned(),
                port.to_string(),
                "--chain-id".to_owned(),
                opts.chain_id.to_string(),
                "--accounts".to_owned(),
                opts.accounts.to_string(),
                "--balance".to_owned(),
                "1000000".to_owned(),
            ];
            if let Some(block_time) = opts.block_time {
                args.push("--block-time".to_owned());
                args.push(block_time.to_string());
            }
            if opts.large_code {
                args.extend(["--code-size-limit".to_owned(), LARGE_CODE_LIMIT.to_string()]);
            }
            if let Some(file) = &opts.state_file {
                args.extend(["--state".to_owned(), file.display().to_string()]);
            }
            if let Some(states) = opts.max_persisted_states {
                args.extend(["--max-persisted-states".to_owned(), states.to_string()]);
            }
            if let Some(url) = &opts.frozen_fork_of {
                args.extend([
                    "--fork-url".to_owned(),
                    url.clone(),
                    "--no-mining".to_owned(),
                ]);
            }
            let process = ManagedProcess::spawn(ProcessSpec {
                name: opts.name.clone(),
                program: tools.anvil.clone(),
                args,
                envs: vec![("HOME".to_owned(), anvil_home(log_dir)?)],
                log_path: log_dir.join(format!("{}.log", opts.name)),
            })?;
            let mut node = Self {
                process,
                port,
                chain_id: opts.chain_id,
            };
            match node.wait_ready(READY_TIMEOUT).await {
                Ok(()) => return Ok(node),
                Err(e) => {
                    let _ = node.process.kill();
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| DevnetError::NotReady {
            component: opts.name.clone(),
            waited: READY_TIMEOUT,
        }))
    }

    /// Wait until the node answers with the right chain id.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), DevnetError> {
        let name = self.process.name().to_owned();
        let url = self.url();
        let expected = self.chain_id;
        let provider = ProviderBuilder::new()
            .connect_http(url.parse().map_err(|_| DevnetError::BadUrl(url.clone()))?);
        poll_until(&name.clone(), timeout, || {
            let alive = self.process.is_running();
            let provider = provider.clone();
            let name = name.clone();
            async move {
                if !alive {
                    return Err(DevnetError::Exited(name));
                }
                match tokio::time::timeout(Duration::from_secs(1), provider.get_chain_id()).await {
                    Ok(Ok(id)) if id == expected => Ok(true),
                    Ok(Ok(id)) => Err(DevnetError::WrongChainId {
                        component: name,
                        expected,
                        actual: id,
                    }),
                    _ => Ok(false),
                }
            }
        })
        .await
    }

    /// JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.process.pid()
    }

    /// The process, for fault injection (kill, pause, resume).
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// Keep running after the handle is dropped (`devnet up`).
    pub fn detach(self) -> Option<crate::harness::process::RecordedProcess> {
        self.process.detach()
    }
}
/// `anvil_setBalance` of `who` on the node at `url`.
pub async fn set_balance(
    url: &str,
    who: alloy::primitives::Address,
    wei: U256,
) -> Result<(), DevnetError> {
    let provider = ProviderBuilder::new().connect_http(
        url.parse()
            .map_err(|_| DevnetError::BadUrl(url.to_owned()))?,
    );
    provider
        .raw_request::<_, serde_json::Value>("anvil_setBalance".into(), (who, wei))
        .await
        .map_err(|e| DevnetError::chain("anvil_setBalance", e))?;
    Ok(())
}
