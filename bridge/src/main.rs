//! `multibridge`: the relay daemon and operator CLI. Each subcommand lives in one file under
//! `commands/` (its arguments, its run, its printing); this file parses, sets up logging and
//! the runtime, and dispatches.
#![forbid(unsafe_code)]
// The run future nests deeply (startup, preflight, signer backends, the relay's tasks).
#![recursion_limit = "256"]

use std::process::ExitCode;

/// jemalloc, which returns freed memory to the system after a second (its settings:
/// `.cargo/config.toml`, `JEMALLOC_SYS_WITH_MALLOC_CONF`): with glibc's malloc, per-thread arenas
/// kept freed memory and the relay's peak RSS varied by 10 MiB between runs of the same load.
/// Built without the `jemalloc` feature, the relay uses the system's malloc (for heaptrack).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use multibridge::commands;
use multibridge_monitoring::redact_urls;

#[derive(Parser)]
#[command(
    name = "multibridge",
    version,
    about = "multibridge relay and operator CLI"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "MULTIBRIDGE_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run this operator's relay for the configured lanes until SIGINT/SIGTERM.
    Run(commands::run::Args),
    /// Work with relay configuration files.
    Config(commands::config::Args),
    /// Per lane: request nonce, lower/upper handle nonce, pending, oldest pending age, this
    /// operator's last vote; with `[etcd]`, who leads the lane and each replica's progress.
    Status(commands::status::Args),
    /// The lane services in the service registry: per lane and operator, the service id and
    /// where the registry says it is served (with `[etcd]`, also who leads its election).
    Registry(commands::registry::Args),
    /// Deploy a bridge pair and the service registry to two chains (resumable: run it again
    /// after a crash), check the code against the committed artifacts, write deployment.json and
    /// a starter relay config per operator.
    Deploy(commands::deploy::Args),
    /// The bridges' live configuration; the emergency stop.
    Admin(commands::admin::Args),
    /// State backups: ask for one now, show the newest log, make a backup key pair.
    Backup(commands::backup::Args),
    /// Request a transfer as a user and follow it to its handle on the other chain.
    Transfer(commands::transfer::Args),
    /// Complete an attested transfer with your own key: fetch the operators' signatures of its
    /// batch from the locations they publish in the service registry and send the batch.
    Execute(commands::execute::Args),
    /// File a claim for a stuck transfer in the service registry (with every operator that has
    /// not voted for it yet) and follow it to its handle.
    Claim(commands::claim::Args),
    /// Take a transfer back: file a refund claim with every operator; once the request is older
    /// than the operators' refund_after_secs they cancel it on the destination and refund it on
    /// the source (the command sends the refund with your key if they have not yet).
    Refund(commands::refund::Args),
    /// Where a transfer stands: its state, why it waits, what happens next and when, and the
    /// command to run (by source transaction, `lane:nonce`, or an address's recent transfers).
    Track(commands::track::Args),
    /// Operator keys in a PKCS#11 token (HSM): create one inside the token, show its address.
    Hsm(commands::hsm::Args),
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MULTIBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // No credential of an RPC URL reaches the log (audit M-1).
        .with_writer(|| multibridge_monitoring::redact::RedactingWriter(std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run::run(args).await,
            Command::Config(args) => commands::config::run(args).await,
            Command::Status(args) => commands::status::run(args).await,
            Command::Registry(args) => commands::registry::run(args).await,
            Command::Deploy(args) => commands::deploy::run(args).await,
            Command::Admin(args) => commands::admin::run(args).await,
            Command::Backup(args) => commands::backup::run(args).await,
            Command::Transfer(args) => commands::transfer::run(args).await,
            Command::Execute(args) => commands::execute::run(args).await,
            Command::Claim(args) => commands::claim::run(args).await,
            Command::Refund(args) => commands::refund::run(args).await,
            Command::Track(args) => commands::track::run(args).await,
            Command::Hsm(args) => commands::hsm::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("error: {}", redact_urls(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
