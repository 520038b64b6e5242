//! The command line: one subcommand per file of this directory.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bench::{
    BenchArgs, BenchFailoverArgs, BenchHubArgs, BenchJoinArgs, BenchModesArgs, BenchSignersArgs,
};
use crate::experiment::ExperimentCommand;
use crate::up::UpArgs;

#[derive(Parser)]
#[command(
    name = "multibridge-devnet",
    version,
    about = "Run multibridge locally: anvil chains, etcd, contracts"
)]
pub struct Cli {
    /// Devnet directory (state, logs, manifest). Default: `.devnet/` in the workspace.
    #[arg(long, global = true, env = "MULTIBRIDGE_DEVNET_DIR")]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start chains and etcd, deploy, write devnet.json and relay configs, leave it running.
    Up(UpArgs),
    /// Stop everything `up` started.
    Down,
    /// Say what runs.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure latency, throughput, gas and relay memory on a fresh devnet; table + JSON.
    Bench(BenchArgs),
    /// Votes beside attested batches (issue 36): per committee size a devnet in each mode,
    /// latency, gas per transfer (native and ERC-20) beside a direct transfer, throughput
    /// against the destination's capacity; table + JSON.
    BenchModes(BenchModesArgs),
    /// One relay process per operator serving many service chains (issue 37): per hub size
    /// transfers on every lane at once (exactly once), the relays' peak RSS; then on the
    /// largest hub one service chain blackholed for every relay while the other lanes' p99
    /// latency is measured beside an undisturbed window; table + JSON.
    BenchHub(BenchHubArgs),
    /// Measure failover on a fresh devnet with 2 replicas per operator: SIGKILL the leading
    /// replica again and again under traffic, then etcd's raft leader; failover time, time
    /// without a leader, vote gaps and transfer latency, table + JSON.
    BenchFailover(BenchFailoverArgs),
    /// Measure a new replica's start to warm with long histories of real requests (100k and
    /// 1M by default), by replaying the chain and from the latest backup; table + JSON.
    BenchJoin(BenchJoinArgs),
    /// Measure what one signature costs with each signer backend (keystore, a SoftHSM2 token
    /// through PKCS#11, KMS through the AWS SDK against the local stand-in) and the transfers per
    /// second that allows with full vote batches; table + JSON.
    BenchSigners(BenchSignersArgs),
    /// Start a devnet with traffic, a stuck transfer and a claim, and save a PNG of each
    /// dashboard page (headless Chromium), then stop it.
    Screenshots {
        /// Where the PNGs go.
        #[arg(long, default_value = "docs/screenshots")]
        out: PathBuf,
    },
    /// Reproduce an experiment of the seed papers on fresh devnets (build with --release: the
    /// figures are the relay's): a table beside the paper's, `<out>/<name>.json` (report and
    /// timeline) and `<out>/<name>.svg` (latency over time, faults marked).
    Experiment {
        /// The seed of the fault schedule and the traffic mix (printed; default: from the clock).
        #[arg(long, global = true)]
        seed: Option<u64>,
        /// Where the JSON and the picture go.
        #[arg(long, global = true, default_value = "target/experiments")]
        out: PathBuf,
        #[command(subcommand)]
        which: ExperimentCommand,
    },
    /// Start a devnet, move transfers both ways and check conservation, then stop it.
    Demo {
        #[command(flatten)]
        up: UpArgs,
        /// Transfers per lane and asset.
        #[arg(long, default_value_t = 2)]
        transfers: u32,
    },
}
