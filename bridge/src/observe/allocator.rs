//! The allocator's own figures in the metrics (issue 54): the relay runs on jemalloc (the
//! binary's global allocator), which returns freed memory to the system on a clock; these
//! gauges say what it holds and keeps, beside the process RSS, so an operator tells data the
//! relay holds from memory the allocator has not returned yet.

use multibridge_monitoring::Metrics;
#[cfg(feature = "jemalloc")]
use tikv_jemalloc_ctl::{epoch, stats};

/// A reader of one statistic.
#[cfg(feature = "jemalloc")]
type Read = fn() -> tikv_jemalloc_ctl::Result<usize>;

/// The statistics published, by their `kind` label.
#[cfg(feature = "jemalloc")]
const KINDS: [(&str, Read); 5] = [
    ("allocated", stats::allocated::read),
    ("active", stats::active::read),
    ("resident", stats::resident::read),
    ("mapped", stats::mapped::read),
    ("retained", stats::retained::read),
];

/// Read the allocator's statistics into `metrics` at every scrape (jemalloc caches them until
/// its epoch advances: each scrape advances it first).
#[cfg(feature = "jemalloc")]
pub fn publish(metrics: &Metrics) {
    let gauges = metrics.allocator_bytes();
    metrics.on_render(move || {
        if epoch::advance().is_err() {
            return;
        }
        for (kind, read) in KINDS {
            if let Ok(bytes) = read() {
                gauges
                    .with_label_values(&[kind])
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
    });
}

/// Built on the system's malloc: nothing to read (the gauges stay absent).
#[cfg(not(feature = "jemalloc"))]
pub fn publish(_metrics: &Metrics) {}

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    use multibridge_contracts::Lane;

    use super::*;

    /// The gauges appear at a scrape with jemalloc's figures: in a test binary jemalloc is not
    /// the global allocator, so its own bookkeeping is what it reports — still mapped memory
    /// above zero, which proves the statistics are compiled in and read.
    #[test]
    fn every_kind_is_published_at_a_scrape() {
        let metrics = Metrics::new(&[Lane::MainToService], 1).unwrap();
        publish(&metrics);
        let text = metrics.render();
        for (kind, _) in KINDS {
            assert!(
                text.contains(&format!("multibridge_allocator_bytes{{kind=\"{kind}\"}}")),
                "{kind} missing"
            );
        }
        let mapped = text
            .lines()
            .find(|l| l.starts_with("multibridge_allocator_bytes{kind=\"mapped\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!(mapped > 0.0, "mapped {mapped}");
    }
}
