//! The Service Registry Dashboard of seed 001, served by the relay on its HTTP API (DESIGN §8):
//! an overview of the lanes, leaders and replicas; the registry's services of this bridge pair
//! (register one, update a location, behind authentication); the claims history; and a
//! transfer tracker for users. Every asset is embedded in the binary (no CDN, no build step);
//! the page reads JSON from `/ui/api/*` and redraws in place.
//!
//! | module | job |
//! |---|---|
//! | [`settings`] | the `[dashboard]` config section |
//! | [`auth`] | admin token, sessions, CSRF and origin checks |
//! | [`guard`] | host allow-list, requests in flight, deadlines, the failed-login throttle |
//! | [`api`] | the HTTP routes and their error mapping |
//! | [`overview`], [`services`], [`tracker`] | what each page shows |
//! | [`claims_history`] | the task keeping the claims history in the store |
//! | [`timeline`] | the pending/handled samples behind the overview's chart |
//! | [`writer`] | registry writes through a submitter |

pub mod api;
pub mod assets;
pub mod auth;
pub mod claims_history;
pub mod guard;
pub mod outlook;
pub mod overview;
pub mod services;
pub mod timeline;
pub mod tracker;
pub mod writer;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alloy::primitives::Address;
use multibridge_contracts::{Lane, LaneServiceMeta};
use multibridge_monitoring::{Metrics, Readiness, StatusBoard};

pub use crate::config::DashboardSettings;

use crate::chain::{ChainError, ChainPair};
use crate::config::{Config, Secret};
use crate::leadership::etcd_pool::EtcdPool;
use crate::store::{SharedStore, StoreError};

/// How often the timeline samples the lanes.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept per lane (one hour at [`SAMPLE_EVERY`]).
pub const SAMPLES: usize = 720;

/// Why a dashboard read failed.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::task::Retryable for DashboardError {
    /// The dashboard's tasks only inform: none of their failures may stop the relay.
    fn is_retryable(&self) -> bool {
        true
    }
}

/// Why the dashboard cannot start as configured.
#[derive(Debug, thiserror::Error)]
pub enum DashboardConfigError {
    /// The admin token variable is named but not set.
    #[error(
        "dashboard.admin_token_env: the variable {0} is not set (unset the option for a read-only dashboard)"
    )]
    TokenEnvMissing(String),
    /// The admin token file cannot be read.
    #[error("dashboard.admin_token_file {path}: {source}")]
    TokenFileUnreadable {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The admin token is too short to resist guessing.
    #[error("the dashboard admin token has {0} characters: give at least {min}", min = auth::MIN_TOKEN_LEN)]
    TokenTooShort(usize),
    /// The manager key cannot be loaded.
    #[error("dashboard.manager: {0}")]
    Manager(#[from] crate::chain::signer::open::KeyError),
}

/// The admin token as configured (`None`: read-only).
pub fn admin_token(settings: &DashboardSettings) -> Result<Option<Secret>, DashboardConfigError> {
    let token = match (&settings.admin_token_env, &settings.admin_token_file) {
        (Some(var), _) => Some(
            std::env::var(var).map_err(|_| DashboardConfigError::TokenEnvMissing(var.clone()))?,
        ),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|source| DashboardConfigError::TokenFileUnreadable {
                    path: path.clone(),
                    source,
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
        (None, None) => None,
    };
    match token {
        Some(t) if t.trim().chars().count() < auth::MIN_TOKEN_LEN => Err(
            DashboardConfigError::TokenTooShort(t.trim().chars().count()),
        ),
        Some(t) => Ok(Some(Secret::new(t.trim()))),
        None => Ok(None),
    }
}

/// What `config check` says of the dashboard: whether it serves, whether it can write, and as
/// whom (the manager key loads, so a wrong password is found before the relay starts).
pub fn check(config: &Config) -> Result<String, DashboardConfigError> {
    let settings = &config.dashboard;
    if !settings.enabled {
        return Ok("off".to_owned());
    }
    let token = admin_token(settings)?;
    let manager = match &settings.manager {
        Some(signer) => crate::chain::signer::open::load_key(signer, config)?.address(),
        None => config.operator.address,
    };
    Ok(match (token, &config.registry) {
        (None, _) => "read-only (no admin token)".to_owned(),
        (Some(_), None) => "read-only (no [registry] to write to)".to_owned(),
        (Some(_), Some(_)) => format!("registry writes as {manager} after login"),
    })
}

/// Which lane of this bridge pair a lane service's meta names.
#[derive(Debug, Clone, Copy)]
pub struct PairLanes {
    main: (u64, Address),
    service: (u64, Address),
}

impl PairLanes {
    /// The pair of `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            main: (config.chains.main.chain_id, config.chains.main.bridge),
            service: (config.chains.service.chain_id, config.chains.service.bridge),
        }
    }

    /// The lane `meta` serves, if it is one of this pair's.
    pub fn lane_of(&self, meta: &LaneServiceMeta) -> Option<Lane> {
        let src = (meta.src_chain_id, meta.src_bridge);
        let dst = (meta.dst_chain_id, meta.dst_bridge);
        if src == self.main && dst == self.service {
            Some(Lane::MainToService)
        } else if src == self.service && dst == self.main {
            Some(Lane::ServiceToMain)
        } else {
            None
        }
    }
}

/// What the dashboard's pages read once the relay runs.
pub struct Dashboard {
    /// The relay's config.
    pub config: Config,
    /// Both chains.
    pub chains: ChainPair,
    /// The relay's store.
    pub store: SharedStore,
    /// etcd, when the relay uses it.
    pub etcd: Option<Arc<EtcdPool>>,
    /// This replica's name.
    pub replica: String,
    /// Pending/handled samples.
    pub timeline: timeline::Timeline,
    /// Registry writes (absent without a registry).
    pub writer: Option<writer::Writer>,
    /// Registry managers, folded from the registry's events.
    pub managers: tokio::sync::Mutex<services::ManagersIndex>,
    /// The claims history, read through a connection of the dashboard's own.
    pub claims: crate::store::claims::ClaimsReader,
}

/// What the routes need from the first moment the HTTP API serves: the parts that exist before
/// the relay's preflight passed, and the [`Dashboard`] once it did.
pub struct DashboardHandle {
    /// The gatekeeper.
    pub auth: auth::Auth,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness (what the relay still waits for, shown while it starts).
    pub readiness: Arc<Readiness>,
    /// `/status` sections.
    pub board: Arc<StatusBoard>,
    /// The running relay's side.
    pub running: OnceLock<Arc<Dashboard>>,
    /// Requests that read the chains or etcd (overview, tracker, services) run at most this
    /// many at once, so visitors cannot spend the operator's RPC quota or its etcd (where the
    /// elections are) faster than the relay needs them.
    pub chain_reads: tokio::sync::Semaphore,
    /// What stands in front of every route.
    pub guard: Arc<guard::Guard>,
    /// The last overview computed, and when.
    pub overview_cache: tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>,
    /// The last services view read, and when.
    pub services_cache: tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>,
    /// Whether the session cookie is `Secure` (`None`: when a proxy says https).
    pub secure_cookie: Option<bool>,
}

/// Chain-reading API requests served at once.
pub const CHAIN_READS_AT_ONCE: usize = 4;
/// How long a computed overview is served to every visitor.
pub const OVERVIEW_FRESH_FOR: Duration = Duration::from_secs(2);
/// How long a read of the registry's services is served to every visitor.
pub const SERVICES_FRESH_FOR: Duration = Duration::from_secs(10);
/// How long a chain-reading request waits for its turn before the page is told to retry.
pub const CHAIN_READ_QUEUE: Duration = Duration::from_secs(10);

impl DashboardHandle {
    /// A handle for a relay that is starting, advertised at `advertised_url`.
    pub fn new(
        settings: &DashboardSettings,
        advertised_url: &str,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        board: Arc<StatusBoard>,
    ) -> Result<Self, DashboardConfigError> {
        let hosts = guard::HostAllowList::new(advertised_url, &settings.allowed_hosts);
        Ok(Self {
            auth: auth::Auth::new(
                admin_token(settings)?,
                Duration::from_secs(settings.session_secs),
            ),
            guard: Arc::new(guard::Guard::new(hosts, metrics.clone())),
            metrics,
            readiness,
            board,
            running: OnceLock::new(),
            chain_reads: tokio::sync::Semaphore::new(CHAIN_READS_AT_ONCE),
            overview_cache: tokio::sync::Mutex::new(None),
            services_cache: tokio::sync::Mutex::new(None),
            secure_cookie: settings
                .secure_cookie
                .or_else(|| advertised_url.starts_with("https://").then_some(true)),
        })
    }

    /// The relay runs: serve the pages from `dashboard`.
    pub fn attach(&self, dashboard: Arc<Dashboard>) {
        let _ = self.running.set(dashboard);
    }
}

/// Sample the board's lanes into the timeline every [`SAMPLE_EVERY`], forever.
pub async fn sample_timeline(dashboard: Arc<Dashboard>, board: Arc<StatusBoard>) {
    loop {
        let snapshot = board.snapshot();
        if let Some(lanes) = snapshot.get("lanes") {
            dashboard
                .timeline
                .sample_board(lanes, crate::store::unix_now());
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DashboardSettings {
        DashboardSettings::default()
    }

    #[test]
    fn the_admin_token_is_read_checked_and_named_when_wrong() {
        assert!(
            admin_token(&settings()).unwrap().is_none(),
            "no token: read-only"
        );
        let unset = DashboardSettings {
            admin_token_env: Some("MULTIBRIDGE_TEST_SURELY_UNSET_TOKEN_VARIABLE".into()),
            ..settings()
        };
        let e = admin_token(&unset).unwrap_err().to_string();
        assert!(
            e.contains("MULTIBRIDGE_TEST_SURELY_UNSET_TOKEN_VARIABLE is not set"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "short\n").unwrap();
        let from_file = DashboardSettings {
            admin_token_file: Some(file.clone()),
            ..settings()
        };
        let e = admin_token(&from_file).unwrap_err().to_string();
        assert!(
            e.contains("5 characters") && e.contains("at least 16"),
            "{e}"
        );
        std::fs::write(&file, "a-long-enough-admin-token\nsecond line ignored\n").unwrap();
        assert_eq!(
            admin_token(&from_file).unwrap().unwrap().expose(),
            "a-long-enough-admin-token"
        );
        let missing = DashboardSettings {
            admin_token_file: Some(dir.path().join("nope")),
            ..settings()
        };
        let e = admin_token(&missing).unwrap_err().to_string();
        assert!(e.contains("dashboard.admin_token_file"), "{e}");
    }

    #[test]
    fn only_this_pairs_lane_services_have_a_lane() {
        let pair = PairLanes {
            main: (1, Address::repeat_byte(1)),
            service: (2, Address::repeat_byte(2)),
        };
        let meta = |src: (u64, u8), dst: (u64, u8)| LaneServiceMeta {
            src_chain_id: src.0,
            src_bridge: Address::repeat_byte(src.1),
            dst_chain_id: dst.0,
            dst_bridge: Address::repeat_byte(dst.1),
            operator: Address::repeat_byte(9),
        };
        assert_eq!(
            pair.lane_of(&meta((1, 1), (2, 2))),
            Some(Lane::MainToService)
        );
        assert_eq!(
            pair.lane_of(&meta((2, 2), (1, 1))),
            Some(Lane::ServiceToMain)
        );
        assert_eq!(pair.lane_of(&meta((1, 1), (2, 3))), None, "another bridge");
        assert_eq!(pair.lane_of(&meta((1, 1), (3, 2))), None, "another chain");
    }
}
