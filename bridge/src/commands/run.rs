//! `multibridge run`: this operator's relay for the configured lanes until SIGINT/SIGTERM. The
//! HTTP API comes first (alive while the chains are awaited, ready once they answer), then the
//! preflight, then the relay ([`crate::relay::run`]).

use std::path::PathBuf;

use crate::config::Config;

/// `multibridge run`.
#[derive(clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
}

/// Run the relay until a shutdown signal or a failure no retry fixes.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let c = Config::load(&args.config)?;
    let serving = crate::startup::Serving::start(&c).await?;
    let serving_ms = started.elapsed().as_millis() as u64;
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let checked = match crate::startup::preflight_until_ready(&c, &serving, shutdown.as_mut()).await
    {
        Ok(Some(checked)) => {
            tracing::info!(
                serving_ms,
                preflight_passed_ms = started.elapsed().as_millis() as u64,
                "preflight passed"
            );
            checked
        }
        Ok(None) => {
            serving.stop().await;
            return Ok(());
        }
        Err(e) => {
            serving.stop().await;
            return Err(e.into());
        }
    };
    crate::relay::run(checked, serving, shutdown).await?;
    Ok(())
}

/// SIGINT or SIGTERM (the devnet CLI stops on it too).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
