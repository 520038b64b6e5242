//! Readiness: long-lived tasks report each success of the thing they depend on (a chain answered,
//! the indexer finished a poll, etcd renewed a lease); `/readyz` is ready while every registered
//! component succeeded within `stale_after`. One failed call does not flip readiness — staleness
//! does — so a single RPC blip does not take a relay out of rotation.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Default)]
struct Component {
    last_ok: Option<Instant>,
    last_error: Option<String>,
    /// When the first attempt that failed since the last success began.
    failing_since: Option<Instant>,
}

/// The readiness of every registered component.
#[derive(Debug)]
pub struct Readiness {
    stale_after: Duration,
    components: Mutex<BTreeMap<String, Component>>,
}

/// One component as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentReport {
    /// Succeeded within the staleness bound.
    pub ready: bool,
    /// Seconds since its last success (absent if it never succeeded).
    pub last_ok_secs_ago: Option<f64>,
    /// The last failure since that success, if any.
    pub error: Option<String>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadyReport {
    /// Every component is ready.
    pub ready: bool,
    /// The staleness bound, in seconds.
    pub stale_after_secs: f64,
    /// By component name (`chain:main`, `indexer:main-to-service`, `etcd`, …).
    pub components: BTreeMap<String, ComponentReport>,
}

impl Readiness {
    /// No components yet; a component is stale `stale_after` after its last success.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            stale_after,
            components: Mutex::new(BTreeMap::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, Component>) -> R) -> R {
        f(&mut self.components.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Make `name` part of readiness (not ready until its first success).
    pub fn register(&self, name: &str) {
        self.with(|c| {
            c.entry(name.to_owned()).or_default();
        });
    }

    /// `name` is no longer part of readiness (a start-time dependency that answered, and that
    /// is watched otherwise from then on).
    pub fn remove(&self, name: &str) {
        self.with(|c| {
            c.remove(name);
        });
    }

    /// `name` just succeeded.
    pub fn ok(&self, name: &str) {
        self.with(|c| {
            let component = c.entry(name.to_owned()).or_default();
            component.last_ok = Some(Instant::now());
            component.last_error = None;
            component.failing_since = None;
        });
    }

    /// `name` just failed with `error` (shown in the report; readiness follows staleness).
    pub fn failed(&self, name: &str, error: &dyn std::fmt::Display) {
        self.failed_from(name, error, Instant::now());
    }

    /// `name`'s attempt that began at `started` failed with `error`: it counts as failing from
    /// `started` (or from its first failed attempt since its last success), not from that
    /// success — the wait between two attempts is no failure.
    pub fn failed_from(&self, name: &str, error: &dyn std::fmt::Display, started: Instant) {
        self.with(|c| {
            let component = c.entry(name.to_owned()).or_default();
            component.last_error =
                Some(crate::redact::redact_urls(&error.to_string()).into_owned());
            let since = component
                .last_ok
                .map_or(started, |ok| started.max(ok))
                .min(Instant::now());
            component.failing_since.get_or_insert(since);
        });
    }

    /// How long `name` has been failing: from the start of its first failed attempt since its
    /// last success (`None`: it has not failed since its last success, never succeeded, or is
    /// not registered).
    pub fn failing_for(&self, name: &str) -> Option<Duration> {
        self.with(|c| {
            c.get(name)
                .filter(|component| component.last_ok.is_some())
                .and_then(|component| component.failing_since)
        })
        .map(|at| at.elapsed())
    }

    /// The report at `now`.
    pub fn report_at(&self, now: Instant) -> ReadyReport {
        let components: BTreeMap<String, ComponentReport> = self.with(|c| {
            c.iter()
                .map(|(name, component)| {
                    let age = component.last_ok.map(|t| now.saturating_duration_since(t));
                    let report = ComponentReport {
                        ready: age.is_some_and(|age| age <= self.stale_after),
                        last_ok_secs_ago: age.map(|a| a.as_secs_f64()),
                        error: component.last_error.clone(),
                    };
                    (name.clone(), report)
                })
                .collect()
        });
        ReadyReport {
            ready: components.values().all(|c| c.ready),
            stale_after_secs: self.stale_after.as_secs_f64(),
            components,
        }
    }

    /// The report now.
    pub fn report(&self) -> ReadyReport {
        self.report_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_components_are_not_ready_until_they_succeed() {
        let r = Readiness::new(Duration::from_secs(10));
        r.register("chain:main");
        r.register("indexer:main-to-service");
        assert!(!r.report().ready);
        r.ok("chain:main");
        let report = r.report();
        assert!(!report.ready);
        assert!(report.components["chain:main"].ready);
        assert!(!report.components["indexer:main-to-service"].ready);
        r.ok("indexer:main-to-service");
        assert!(r.report().ready);
        // A start-time component that is removed no longer counts.
        r.register("signer");
        assert!(!r.report().ready);
        r.remove("signer");
        assert!(r.report().ready);
        assert!(!r.report().components.contains_key("signer"));
    }

    #[test]
    fn staleness_not_a_single_failure_makes_a_component_unready() {
        let r = Readiness::new(Duration::from_secs(10));
        r.ok("chain:main");
        r.failed("chain:main", &"connection refused");
        let now = Instant::now();
        let report = r.report_at(now);
        assert!(
            report.ready,
            "one failure right after a success is not staleness"
        );
        assert_eq!(
            report.components["chain:main"].error.as_deref(),
            Some("connection refused")
        );
        let later = r.report_at(now + Duration::from_secs(11));
        assert!(!later.ready);
        r.ok("chain:main");
        let back = r.report();
        assert!(back.ready);
        assert_eq!(back.components["chain:main"].error, None);
    }

    #[test]
    fn a_component_is_failing_from_its_last_success_only_after_a_failure() {
        let r = Readiness::new(Duration::from_secs(10));
        r.failed("indexer:main-to-service", &"no answer");
        assert_eq!(
            r.failing_for("indexer:main-to-service"),
            None,
            "never succeeded: not judged"
        );
        r.ok("indexer:main-to-service");
        assert_eq!(r.failing_for("indexer:main-to-service"), None);
        r.failed("indexer:main-to-service", &"no answer");
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            r.failing_for("indexer:main-to-service")
                .is_some_and(|age| age >= Duration::from_millis(20))
        );
        r.ok("indexer:main-to-service");
        assert_eq!(r.failing_for("indexer:main-to-service"), None);
        assert_eq!(r.failing_for("not registered"), None);
    }

    #[test]
    fn failing_counts_from_the_first_failed_attempt_not_the_wait_before_it() {
        let r = Readiness::new(Duration::from_secs(10));
        let name = "indexer:service-to-main";
        r.ok(name);
        // Idle for 60 ms, then an attempt that fails at once.
        std::thread::sleep(Duration::from_millis(60));
        r.failed_from(name, &"header not found", Instant::now());
        let failing = r.failing_for(name).expect("failing");
        assert!(
            failing < Duration::from_millis(50),
            "the wait before the attempt counted as failing: {failing:?}"
        );
        // A second failed attempt keeps the first one's start.
        std::thread::sleep(Duration::from_millis(30));
        r.failed_from(name, &"header not found", Instant::now());
        assert!(r.failing_for(name).expect("failing") >= Duration::from_millis(30));
        r.ok(name);
        assert_eq!(r.failing_for(name), None);
        // An attempt that began before the last success counts from that success.
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        r.ok(name);
        r.failed_from(name, &"header not found", started);
        assert!(r.failing_for(name).expect("failing") < Duration::from_millis(20));
    }
}
