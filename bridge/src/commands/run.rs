//! `multibridge run`: this operator's relay for the configured lanes until SIGINT/SIGTERM. The
//! HTTP API comes first (alive while the chains are awaited, ready once they answer), then the
//! preflight, then the relay ([`crate::relay::run`]).
//!
//! A file of `[[pairs]]` runs every pair in this one process, each as a single-pair relay would
//! run (its own HTTP API, preflight, store, lanes and tasks) but sharing the operator's
//! submitter and election per chain ([`crate::relay::HubShare`]). A pair that waits (its chain
//! down at start) waits alone; so does one that fails for a reason no retry fixes (audit A3-L5:
//! in a hub each pair's bridges have their own owner, who may revoke the guardian's pauser role
//! or deregister the operator): its HTTP API stays up, not ready, naming the reason
//! (`multibridge_pair_cannot_serve`), and it is tried again — after [`PAIR_RETRY`], doubling up
//! to [`PAIR_RETRY_MAX`] — while the other pairs go on. A single-pair relay stops on such a failure, as before.

use std::future::Future;
use std::path::PathBuf;

use tracing::Instrument;

use crate::config::{Config, PairConfig};
use crate::relay::HubShare;

/// `multibridge run`.
#[derive(clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
}

/// How long a pair of several that failed waits before it is first tried again (doubling at
/// each failure in a row, up to [`PAIR_RETRY_MAX`]).
pub const PAIR_RETRY: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest a failed pair waits between tries.
pub const PAIR_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Run the relay until a shutdown signal or a failure no retry fixes.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let pairs = Config::load_pairs(&args.config)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let hub = HubShare::for_pairs(pairs.len());
    let siblings = siblings(&pairs);
    let signal = async {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let several = pairs.len() > 1;
    // Each pair is a task of its own: the pairs' starts (preflight, store, lanes) go on every
    // worker thread at once instead of in one task that polls them all.
    let tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>> = pairs.into_iter().map(|pair| {
        let name = pair.name.clone().unwrap_or_default();
        let (hub, stop_rx, stop_tx) = (hub.clone(), stop_rx.clone(), stop_tx.clone());
        let siblings = siblings.clone();
        let relay = async move {
            let mut retry = PAIR_RETRY;
            let mut failed = false;
            loop {
                let result = run_pair(
                    pair.clone(),
                    &hub,
                    &siblings,
                    failed,
                    stopped(stop_rx.clone()),
                )
                .await;
                let Err(e) = result else {
                    return Ok(());
                };
                if !several {
                    let _ = stop_tx.send(true);
                    return Err(e);
                }
                tracing::error!(error = %e, retry_secs = retry.as_secs(), "this pair cannot serve: it waits alone and is tried again; the other pairs go on");
                if !wait_alone(&pair, &e, retry, stopped(stop_rx.clone())).await {
                    return Ok(());
                }
                retry = retry.saturating_mul(2).min(PAIR_RETRY_MAX);
                failed = true;
            }
        }
        .instrument(tracing::info_span!("pair", pair = %name));
        tokio::spawn(relay)
    }).collect();
    // A pair that panicked stops every pair (they shut down in order) and the process exits
    // with its error.
    let relays = futures::future::join_all(tasks.into_iter().map(|task| {
        let stop_tx = stop_tx.clone();
        async move {
            task.await.unwrap_or_else(|e| {
                let _ = stop_tx.send(true);
                Err(anyhow::anyhow!("a pair's task failed: {e}"))
            })
        }
    }));
    tokio::pin!(relays);
    let results = tokio::select! {
        results = &mut relays => results,
        () = signal => relays.await,
    };
    hub.tasks().stop_all().await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// Serve the HTTP API of `pair`, which failed with `error`, not ready and naming it, for
/// `retry` (`false`: `shutdown` came first).
async fn wait_alone(
    pair: &PairConfig,
    error: &anyhow::Error,
    retry: std::time::Duration,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let serving = crate::startup::Serving::start(&pair.config, pair.name.as_deref()).await;
    if let Err(e) = &serving {
        tracing::error!(error = %e, "the waiting pair's HTTP API cannot serve meanwhile");
    }
    if let Ok(serving) = &serving {
        serving.readiness.register("pair");
        serving.readiness.failed("pair", &format!("{error:#}"));
        serving.metrics.pair_cannot_serve.set(1);
        serving.board.set(
            "pair_failure",
            serde_json::json!({ "error": format!("{error:#}"), "retry_secs": retry.as_secs() }),
        );
    }
    let again = tokio::select! {
        () = tokio::time::sleep(retry) => true,
        () = shutdown => false,
    };
    if let Ok(serving) = serving {
        serving.stop().await;
    }
    again
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Every pair of a process of several, with its HTTP API's URL, for `/status` and the
/// dashboard's pair selector (`None` for a single pair).
fn siblings(pairs: &[PairConfig]) -> Option<serde_json::Value> {
    if pairs.len() < 2 {
        return None;
    }
    Some(serde_json::Value::Array(
        pairs
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "url": crate::registry::advertised_url(&p.config),
                    "main_chain_id": p.config.chains.main.chain_id,
                    "service_chain_id": p.config.chains.service.chain_id,
                })
            })
            .collect(),
    ))
}

/// One pair: its HTTP API, its preflight until the chains answer, then its relay. A pair tried
/// again after a failure (`failed`) says it cannot serve until its preflight passes.
async fn run_pair(
    pair: PairConfig,
    hub: &HubShare,
    siblings: &Option<serde_json::Value>,
    failed: bool,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let c = pair.config;
    let serving = crate::startup::Serving::start(&c, pair.name.as_deref()).await?;
    serving.metrics.pair_cannot_serve.set(i64::from(failed));
    if let Some(siblings) = siblings {
        serving
            .board
            .set("pair", serde_json::Value::from(pair.name.clone()));
        serving.board.set("pairs", siblings.clone());
    }
    let serving_ms = started.elapsed().as_millis() as u64;
    let mut shutdown = std::pin::pin!(shutdown);
    let checked = match crate::startup::preflight_until_ready(&c, &serving, shutdown.as_mut()).await
    {
        Ok(Some(checked)) => {
            // `/readyz` stays not ready until the relay registered its lanes' components
            // (`relay::run` marks the preflight passed then).
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
    crate::relay::run(checked, serving, shutdown, hub).await?;
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
