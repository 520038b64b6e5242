//! From what happened to figures: each transfer's latency as its user felt it (sent → handle
//! first seen on the destination), failures against a bound, downtime, percentiles.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use alloy::primitives::B256;
use multibridge_contracts::Lane;
use serde::Serialize;

use super::Timeline;
use super::load::{Asset, Submitted};
use crate::bench::percentile;

/// One transfer from its user's side.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Sent, seconds since the start.
    pub sent: f64,
    /// Lane.
    pub lane: Lane,
    /// Asset.
    pub asset: Asset,
    /// Its request nonce on the final source chain (None: not a request there).
    pub nonce: Option<u64>,
    /// The user had its receipt, seconds since the start.
    pub mined: Option<f64>,
    /// Its handle first seen, seconds since the start.
    pub handled: Option<f64>,
    /// Why the user's transaction failed, if it did.
    pub error: Option<String>,
}

impl Outcome {
    /// Sent → handled, seconds.
    pub fn latency(&self) -> Option<f64> {
        self.handled.map(|h| (h - self.sent).max(0.0))
    }

    /// Sent → the user's own receipt, seconds: the part of the latency that is the source
    /// chain's (its node, its block space), not the relays'.
    pub fn inclusion(&self) -> Option<f64> {
        self.mined.map(|m| (m - self.sent).max(0.0))
    }

    /// Whether the user saw it done within `bound` seconds.
    pub fn within(&self, bound: f64) -> bool {
        self.latency().is_some_and(|l| l <= bound)
    }
}

/// Join the submissions with the final chains' requests `view` (by transaction hash) and the
/// handles first seen (`handles[lane][nonce]`).
pub fn outcomes(
    view: &super::verify::ChainView,
    timeline: &Timeline,
    submitted: &[Submitted],
    handles: &BTreeMap<Lane, BTreeMap<u64, Instant>>,
) -> Vec<Outcome> {
    let by_tx: HashMap<B256, u64> = view
        .requests
        .values()
        .flat_map(|requests| requests.iter().map(|(nonce, r)| (r.srcTxHash, *nonce)))
        .collect();
    submitted
        .iter()
        .map(|s| {
            let nonce = by_tx.get(&s.tx).copied();
            let handled = nonce.and_then(|n| {
                handles
                    .get(&s.lane)
                    .and_then(|h| h.get(&n))
                    .map(|at| timeline.at(*at))
            });
            Outcome {
                sent: s.sent,
                lane: s.lane,
                asset: s.asset,
                nonce,
                mined: s.mined,
                handled,
                error: s.error.clone(),
            }
        })
        .collect()
}

/// Latency percentiles, seconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Spread {
    /// Transfers measured.
    pub samples: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Spread {
    /// Of the handled transfers among `outcomes`.
    pub fn of(outcomes: &[Outcome]) -> Self {
        Self::of_values(outcomes.iter().filter_map(Outcome::latency).collect())
    }

    /// Of any seconds (e.g. recovery times).
    pub fn of_values(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self {
            samples: values.len(),
            p50: percentile(&values, 50.0),
            p90: percentile(&values, 90.0),
            p99: percentile(&values, 99.0),
            max: values.last().copied().unwrap_or_default(),
        }
    }
}

/// Seconds of `[0, end]` in which some request had waited longer than `bound` without being
/// handled: the union of `[sent + bound, handled)` over the requests slower than `bound`
/// (never-handled ones until `end`). A transaction that never became a request (refused, or
/// reorged out) is the user's failure, not the bridge's downtime.
pub fn downtime(outcomes: &[Outcome], bound: f64, end: f64) -> f64 {
    let mut spans: Vec<(f64, f64)> = outcomes
        .iter()
        .filter(|o| o.nonce.is_some() && !o.within(bound))
        .map(|o| (o.sent + bound, o.handled.unwrap_or(end).min(end)))
        .filter(|(a, b)| b > a)
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (a, b) in spans {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = current {
        total += b - a;
    }
    total
}

/// Downtime at several bounds (bound, seconds, percent of `end`): how the figure depends on
/// where "too slow" starts.
pub fn downtime_curve(outcomes: &[Outcome], bounds: &[f64], end: f64) -> Vec<(f64, f64, f64)> {
    bounds
        .iter()
        .map(|b| {
            let d = downtime(outcomes, *b, end);
            (*b, d, 100.0 * d / end.max(1.0))
        })
        .collect()
}

/// "8 s: 60.1 s (7.2 %), 10 s: …" for a table.
pub fn render_curve(curve: &[(f64, f64, f64)]) -> String {
    curve
        .iter()
        .map(|(b, d, p)| format!("> {b} s: {d:.1} s ({p:.2} %)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `x` formatted with one decimal, or `-`.
pub fn secs(x: f64) -> String {
    format!("{x:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(sent: f64, handled: Option<f64>) -> Outcome {
        Outcome {
            sent,
            lane: Lane::MainToService,
            asset: Asset::Native,
            nonce: Some(0),
            mined: None,
            handled,
            error: None,
        }
    }

    #[test]
    fn downtime_is_the_union_of_the_late_waits() {
        // Bound 10: the first waits 5 (not late); the second (late 20..30) and the third
        // (late 25..40) overlap: 20 s; one never handled is late from 100 to the end, 105.
        let outcomes = vec![
            o(0.0, Some(5.0)),
            o(10.0, Some(30.0)),
            o(15.0, Some(40.0)),
            o(90.0, None),
        ];
        let d = downtime(&outcomes, 10.0, 105.0);
        assert!((d - (20.0 + 5.0)).abs() < 1e-9, "{d}");
        assert_eq!(downtime(&outcomes[..1], 10.0, 105.0), 0.0);
    }

    #[test]
    fn within_needs_a_handle() {
        assert!(o(1.0, Some(3.0)).within(2.0));
        assert!(!o(1.0, Some(3.5)).within(2.0));
        assert!(!o(1.0, None).within(100.0));
    }
}
