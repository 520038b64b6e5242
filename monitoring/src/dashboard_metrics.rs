//! Metrics of the Service Registry Dashboard (issue 16): what its pages and API were asked and
//! answered, the writes made through it, and the claims history it keeps.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// The dashboard's API endpoints (label `endpoint`).
pub const ENDPOINTS: [&str; 8] = [
    "overview",
    "services",
    "claims",
    "track",
    "login",
    "register",
    "update_location",
    "session",
];
/// How an API request ended (label `outcome`).
pub const OUTCOMES: [&str; 5] = ["ok", "bad_input", "not_found", "unavailable", "refused"];
/// Why the dashboard's guard turned a request away (label `reason`): a host name it does not
/// serve (DNS rebinding), too many requests in flight, a request past its deadline, a client
/// (or everyone) past the failed-login bound.
pub const REFUSALS: [&str; 4] = ["bad_host", "busy", "timeout", "throttled"];
/// Registry writes from the page (label `action`).
pub const WRITE_ACTIONS: [&str; 2] = ["register", "update_location"];
/// How a write ended (label `result`).
pub const WRITE_RESULTS: [&str; 4] = ["mined", "reverted", "refused", "failed"];

/// The dashboard metrics.
#[derive(Clone)]
pub struct DashboardMetrics {
    requests: IntCounterVec,
    refused: IntCounterVec,
    writes: IntCounterVec,
    claims: IntGaugeVec,
    claims_scan_block: IntGaugeVec,
}

use crate::families::name;

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl DashboardMetrics {
    /// Register every series in `registry`, each label set at 0.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                name("dashboard_requests_total"),
                "Dashboard API requests by endpoint and outcome",
            ),
            &["endpoint", "outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let refused = IntCounterVec::new(
            Opts::new(
                name("dashboard_refused_total"),
                "Dashboard requests its guard turned away, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        for r in REFUSALS {
            refused.with_label_values(&[r]).reset();
        }
        let writes = IntCounterVec::new(
            Opts::new(
                name("dashboard_writes_total"),
                "Registry writes made from the dashboard, by action and result",
            ),
            &["action", "result"],
        )?;
        registry.register(Box::new(writes.clone()))?;
        let claims = IntGaugeVec::new(
            Opts::new(
                name("claims_recorded"),
                "Claims against this pair's lane services in the claims history, by state",
            ),
            &["state"],
        )?;
        registry.register(Box::new(claims.clone()))?;
        let claims_scan_block = IntGaugeVec::new(
            Opts::new(
                name("claims_scan_block"),
                "Next main-chain block the claims history reads",
            ),
            &["chain"],
        )?;
        registry.register(Box::new(claims_scan_block.clone()))?;
        for e in ENDPOINTS {
            for o in OUTCOMES {
                requests.with_label_values(&[e, o]).reset();
            }
        }
        for a in WRITE_ACTIONS {
            for r in WRITE_RESULTS {
                writes.with_label_values(&[a, r]).reset();
            }
        }
        for s in ["open", "resolved"] {
            claims.with_label_values(&[s]).set(0);
        }
        claims_scan_block.with_label_values(&["main"]).set(0);
        Ok(Self {
            requests,
            refused,
            writes,
            claims,
            claims_scan_block,
        })
    }

    /// An API request to `endpoint` ended with `outcome` (one of [`OUTCOMES`]).
    pub fn request(&self, endpoint: &str, outcome: &str) {
        self.requests.with_label_values(&[endpoint, outcome]).inc();
    }

    /// The guard turned a request away for `reason` (one of [`REFUSALS`]).
    pub fn refused(&self, reason: &str) {
        self.refused.with_label_values(&[reason]).inc();
    }

    /// A registry write `action` ended with `result` (one of [`WRITE_RESULTS`]).
    pub fn write(&self, action: &str, result: &str) {
        self.writes.with_label_values(&[action, result]).inc();
    }

    /// The claims history holds `all` claims, `open` of them unresolved, and reads `next_block`
    /// next.
    pub fn set_claims(&self, all: u64, open: u64, next_block: u64) {
        self.claims.with_label_values(&["open"]).set(int(open));
        self.claims
            .with_label_values(&["resolved"])
            .set(int(all.saturating_sub(open)));
        self.claims_scan_block
            .with_label_values(&["main"])
            .set(int(next_block));
    }
}
