//! Starting `multibridge run` through an outage: the HTTP API serves from the first moment
//! (`/healthz` 200, `/readyz` 503 naming what is awaited), and the preflight is retried with
//! bounded back-off while a chain does not answer (or the signer is unfunded), each attempt
//! counted (`multibridge_startup_waits_total{component}`) and its cause logged — at once when
//! it changes, otherwise at most every [`LOG_EVERY`]. Only what no waiting can fix ends the
//! process ([`RelayError::waitable_chain`]). etcd needs no waiting here: the campaigns retry it
//! and lead only once it answers.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multibridge_monitoring::{HttpState, Metrics, Readiness, StatusBoard};

use crate::config::Config;
use crate::error::RelayError;
use crate::observe::watcher::chain_component;
use crate::preflight::{Preflight, preflight_with};

/// First pause between two start attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest pause between two start attempts (work starts at most this long after the
/// dependency answers).
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// An unchanged cause is logged again at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// The relay's HTTP API and what it reports, up before anything else.
pub struct Serving {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness of the dependencies.
    pub readiness: Arc<Readiness>,
    /// `/status`.
    pub board: Arc<StatusBoard>,
    /// What `/attestations/{lane}` serves from (attached once the store is open).
    pub attestations: crate::attest::serve::AttestationSource,
    /// The dashboard's routes' state (absent when `dashboard.enabled = false`).
    pub dashboard: Option<Arc<crate::dashboard::DashboardHandle>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Bind `http.listen` and serve (a bind error is returned at once: no waiting fixes it).
    /// For pair `pair` of a relay serving several, every metric carries `pair="<name>"`.
    pub async fn start(config: &Config, pair: Option<&str>) -> Result<Self, RelayError> {
        let endpoints = config
            .chains
            .main
            .rpc_urls
            .len()
            .max(config.chains.service.rpc_urls.len());
        let metrics = Arc::new(Metrics::for_pair(&config.lanes, endpoints, pair)?);
        crate::observe::allocator::publish(&metrics);
        let readiness = Arc::new(Readiness::new(Duration::from_secs(
            config.http.ready_stale_secs,
        )));
        readiness.register(PREFLIGHT_COMPONENT);
        let board = Arc::new(StatusBoard::new());
        let dashboard = if config.dashboard.enabled {
            Some(Arc::new(crate::dashboard::DashboardHandle::new(
                &config.dashboard,
                &crate::registry::advertised_url(config),
                metrics.clone(),
                readiness.clone(),
                board.clone(),
            )?))
        } else {
            None
        };
        let attestations = crate::attest::serve::AttestationSource::default();
        let extra = dashboard
            .clone()
            .map(crate::dashboard::api::router)
            .unwrap_or_default()
            .merge(crate::attest::serve::router(attestations.clone()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = multibridge_monitoring::serve(
            config.http.listen,
            HttpState {
                metrics: metrics.clone(),
                readiness: readiness.clone(),
                status: board.clone(),
            },
            extra,
            async move {
                let _ = stopped.await;
            },
        )
        .await
        .map_err(|source| RelayError::Listen {
            listen: config.http.listen,
            source,
        })?;
        Ok(Self {
            metrics,
            readiness,
            board,
            attestations,
            dashboard,
            stop,
            task,
        })
    }

    /// The pair's preflight passed: it no longer says it cannot serve, and readiness is up to
    /// its components from here.
    pub fn preflight_passed(&self) {
        self.metrics.pair_cannot_serve.set(0);
        self.readiness.remove(PREFLIGHT_COMPONENT);
    }

    /// Stop serving and wait until the server is gone.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The readiness component (and `startup_waits` label) of the operator's signer.
const SIGNER_COMPONENT: &str = "signer";

/// Not ready from the moment the HTTP API serves until the pair's preflight passed and its
/// relay registered its lanes' components ([`Serving::preflight_passed`], called by
/// [`relay::run`](crate::relay::run)). Without it, `/readyz` answered 200
/// for a moment after the API came up (no component registered yet) and between the preflight
/// marking its chains answered and the pair clearing `pair_cannot_serve`.
pub const PREFLIGHT_COMPONENT: &str = "preflight";

/// Run the preflight until it passes (`Some`), fails for good (`Err`), or `shutdown` resolves
/// first (`None`).
pub async fn preflight_until_ready(
    config: &Config,
    serving: &Serving,
    shutdown: impl Future<Output = ()>,
) -> Result<Option<Preflight>, RelayError> {
    let components: Vec<String> = [
        multibridge_contracts::ChainRole::Main,
        multibridge_contracts::ChainRole::Service,
    ]
    .map(chain_component)
    .into();
    for c in &components {
        serving.readiness.register(c);
    }
    // A wrong keystore password is no outage: fail at once, and decrypt only once. An HSM or
    // KMS that does not answer yet is one: wait for it like for a chain.
    let mut shutdown = std::pin::pin!(shutdown);
    let mut waiting = Waiting::new();
    serving.readiness.register(SIGNER_COMPONENT);
    let signer = loop {
        match crate::chain::signer::open::load_signer(config).await {
            Ok(signer) => {
                // From here a failing signer pauses sending (sending_paused, status, an
                // alert) instead of counting against readiness.
                serving.readiness.remove(SIGNER_COMPONENT);
                break signer;
            }
            Err(e) if e.is_retryable() => {
                if !waiting
                    .wait(serving, SIGNER_COMPONENT, &e, shutdown.as_mut())
                    .await
                {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    waiting.backoff = FIRST_BACKOFF;
    loop {
        let attempt = preflight_with(config.clone(), signer.clone(), serving.metrics.clone()).await;
        let error = match attempt {
            Ok(checked) => {
                for c in &components {
                    serving.readiness.ok(c);
                }
                if waiting.logged.is_some() {
                    tracing::info!(
                        waited_secs = waiting.started.elapsed().as_secs(),
                        "every dependency answers: starting"
                    );
                }
                return Ok(Some(checked));
            }
            Err(e) => e,
        };
        let Some(chain) = error.waitable_chain() else {
            return Err(error);
        };
        let component = chain_component(chain);
        if !waiting
            .wait(serving, &component, &error, shutdown.as_mut())
            .await
        {
            return Ok(None);
        }
    }
}

/// Waiting for a dependency at start: backoff, and a log line per new cause (or per
/// `LOG_EVERY`).
struct Waiting {
    backoff: Duration,
    logged: Option<(String, Instant)>,
    started: Instant,
}

impl Waiting {
    fn new() -> Self {
        Self {
            backoff: FIRST_BACKOFF,
            logged: None,
            started: Instant::now(),
        }
    }

    /// `component` failed with `cause`: report it (readiness, `startup_waits_total`, the log),
    /// then sleep the backoff; `false` if `shutdown` came first.
    async fn wait(
        &mut self,
        serving: &Serving,
        component: &str,
        cause: &(dyn std::fmt::Display + Sync),
        shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        serving.readiness.failed(component, cause);
        serving.metrics.startup_wait(component);
        let cause = cause.to_string();
        let log_now = match &self.logged {
            Some((last, at)) => *last != cause || at.elapsed() >= LOG_EVERY,
            None => true,
        };
        if log_now {
            tracing::warn!(%component, error = %cause, retry_in_ms = self.backoff.as_millis() as u64, waited_secs = self.started.elapsed().as_secs(), "waiting for a dependency before starting");
            self.logged = Some((cause, Instant::now()));
        }
        let slept = tokio::select! {
            () = tokio::time::sleep(self.backoff) => true,
            () = shutdown => false,
        };
        self.backoff = self.backoff.saturating_mul(2).min(MAX_BACKOFF);
        slept
    }
}
