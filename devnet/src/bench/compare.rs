//! `bench --compare FILE` and `bench-hub --compare FILE`: each figure of a run beside the same
//! figure of an earlier run (the committed baselines, `devnet/bench/baseline.json` and
//! `devnet/bench/hub-baseline.json`), with their ratio and whether it moved the wrong way by
//! more than the noise allowed for it, so a regression is seen the day it lands.

use serde_json::Value;

/// Which way a figure should move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Smaller is better (latency, gas, memory).
    Lower,
    /// Larger is better (throughput, fullness).
    Higher,
}

/// One figure of a report: its name, where it is in the JSON, which way is better, and by how
/// much (a share) it may move the wrong way before it is called a regression.
struct Figure {
    name: String,
    value: Option<f64>,
    better: Better,
    noise: f64,
}

/// The figures a `bench.json` holds (memory rows by their backlog), or a `bench-hub.json` (rows
/// by hub size): those the report has.
fn figures(report: &Value) -> Vec<Figure> {
    let mut out: Vec<Figure> = [
        ("latency p50 (s)", "latency.p50", Better::Lower, 0.10),
        ("latency p99 (s)", "latency.p99", Better::Lower, 0.25),
        (
            "throughput (/s)",
            "throughput.per_second",
            Better::Higher,
            0.08,
        ),
        (
            "throughput / capacity",
            "throughput.ratio",
            Better::Higher,
            0.05,
        ),
        (
            "blocks full",
            "throughput.block_fullness",
            Better::Higher,
            0.05,
        ),
        (
            "blocks reserved",
            "throughput.block_reserved",
            Better::Lower,
            0.10,
        ),
        (
            "gas per handled transfer",
            "gas.per_handled_transfer",
            Better::Lower,
            0.03,
        ),
        ("failed votes", "gas.failed.reverted", Better::Lower, 0.0),
        (
            "out-of-gas votes",
            "gas.failed.out_of_gas",
            Better::Lower,
            0.0,
        ),
    ]
    .into_iter()
    .map(|(name, path, better, noise)| Figure {
        name: name.to_owned(),
        value: at(report, path),
        better,
        noise,
    })
    .collect();
    for row in report
        .get("memory")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let pending = row.get("pending").and_then(Value::as_u64).unwrap_or(0);
        for (who, key) in [
            ("leader", "peak_rss_mib"),
            ("follower", "follower_peak_rss_mib"),
            ("leader anon", "peak_anon_mib"),
            ("follower anon", "follower_peak_anon_mib"),
        ] {
            out.push(lower(
                format!("RSS {who}, {pending} pending (MiB)"),
                at(row, key),
                0.10,
            ));
        }
    }
    out.extend(hub_figures(report));
    out.retain(|f| f.value.is_some());
    out
}

/// The figures of a `bench-hub.json`: per hub size its relays' largest peak RSS, the drain of
/// its burst and its cold start; the RSS per added lane; the steady and blackhole windows of
/// the largest hub. A blackhole's increase is a few hundredths of a second where nothing moved,
/// so its noise is wide: the figure to read there is the target (0.2 s), not the ratio.
fn hub_figures(report: &Value) -> Vec<Figure> {
    let mut out = Vec::new();
    for row in report
        .get("rows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let pairs = row.get("pairs").and_then(Value::as_u64).unwrap_or(0);
        let peak = row
            .get("peak_rss_mib")
            .and_then(Value::as_array)
            .and_then(|all| all.iter().filter_map(Value::as_f64).reduce(f64::max));
        out.push(lower(
            format!("hub {pairs} pairs: peak RSS (MiB)"),
            peak,
            0.05,
        ));
        for (name, key, noise) in [
            ("burst drained (s)", "drain_seconds", 0.25),
            ("cold start, led (s)", "cold_start_led_seconds", 0.30),
        ] {
            out.push(lower(
                format!("hub {pairs} pairs: {name}"),
                at(row, key),
                noise,
            ));
        }
    }
    for (name, path, noise) in [
        (
            "hub RSS per added lane (MiB)",
            "rss_per_added_lane_mib",
            0.05,
        ),
        (
            "hub steady worst lane p50 (s)",
            "blackhole.steady_worst_p50",
            0.10,
        ),
        (
            "hub steady worst lane p99 (s)",
            "blackhole.steady_worst_p99",
            0.30,
        ),
        (
            "hub blackhole worst increase (s)",
            "blackhole.worst_increase",
            2.0,
        ),
    ] {
        out.push(lower(name.to_owned(), at(report, path), noise));
    }
    out
}

/// The number at `path` (keys joined by dots) in `report`, or in one of its rows.
fn at(report: &Value, path: &str) -> Option<f64> {
    path.split('.')
        .try_fold(report, |v, key| v.get(key))
        .and_then(Value::as_f64)
}

/// A figure for which smaller is better.
fn lower(name: String, value: Option<f64>, noise: f64) -> Figure {
    Figure {
        name,
        value,
        better: Better::Lower,
        noise,
    }
}

/// One compared row.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    /// The figure.
    pub name: String,
    /// In the baseline.
    pub baseline: Option<f64>,
    /// In this run.
    pub now: Option<f64>,
    /// `now / baseline` when both are there and the baseline is not 0.
    pub ratio: Option<f64>,
    /// Moved the wrong way by more than its noise.
    pub regressed: bool,
}

/// Every figure of `now` beside the same figure of `baseline` (figures only one of them has
/// are listed with the other side empty).
pub fn compare(baseline: &Value, now: &Value) -> Vec<Compared> {
    let before = figures(baseline);
    let mut rows: Vec<Compared> = figures(now)
        .into_iter()
        .map(|f| {
            let base = before
                .iter()
                .find(|b| b.name == f.name)
                .and_then(|b| b.value);
            let ratio = match (base, f.value) {
                (Some(b), Some(n)) if b != 0.0 => Some(n / b),
                _ => None,
            };
            let regressed = match (base, f.value) {
                (Some(b), Some(n)) => match f.better {
                    Better::Lower => n > b * (1.0 + f.noise),
                    Better::Higher => n < b * (1.0 - f.noise),
                },
                _ => false,
            };
            Compared {
                name: f.name,
                baseline: base,
                now: f.value,
                ratio,
                regressed,
            }
        })
        .collect();
    for b in before {
        if !rows.iter().any(|r| r.name == b.name) {
            rows.push(Compared {
                name: b.name,
                baseline: b.value,
                now: None,
                ratio: None,
                regressed: false,
            });
        }
    }
    rows
}

/// The readable table of [`compare`].
pub fn render(rows: &[Compared], baseline_name: &str) -> String {
    let cell = |v: Option<f64>| match v {
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "-".to_owned(),
    };
    let mut out = format!(
        "compared with {baseline_name}\n  {:<34} {:>12} {:>12} {:>8}\n",
        "figure", "baseline", "now", "ratio"
    );
    for r in rows {
        out.push_str(&format!(
            "  {:<34} {:>12} {:>12} {:>8}{}\n",
            r.name,
            cell(r.baseline),
            cell(r.now),
            r.ratio
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            if r.regressed { "   REGRESSED" } else { "" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(rss: [f64; 2], per_lane: f64) -> Value {
        serde_json::json!({
            "rows": [
                {"pairs": 1, "drain_seconds": 2.4, "peak_rss_mib": [25.5, rss[0]], "cold_start_led_seconds": 0.1},
                {"pairs": 64, "drain_seconds": 23.5, "peak_rss_mib": [140.0, rss[1]], "cold_start_led_seconds": 2.4},
            ],
            "rss_per_added_lane_mib": per_lane,
            "blackhole": {"steady_worst_p50": 2.3, "steady_worst_p99": 4.1, "worst_increase": 0.08},
        })
    }

    #[test]
    fn a_hub_report_is_compared_by_hub_size_with_only_the_figures_it_has() {
        let rows = compare(&hub([26.0, 150.0], 0.98), &hub([26.0, 170.0], 1.14));
        let row = |name: &str| rows.iter().find(|r| r.name == name).cloned();
        let largest = row("hub 64 pairs: peak RSS (MiB)").expect("a row per hub size");
        assert_eq!(
            largest.baseline,
            Some(150.0),
            "the largest of the relays' peaks"
        );
        assert!(largest.regressed, "150 -> 170 MiB is over 5 %");
        assert!(
            row("hub RSS per added lane (MiB)")
                .expect("listed")
                .regressed
        );
        assert!(
            !row("hub 1 pairs: peak RSS (MiB)")
                .expect("listed")
                .regressed
        );
        assert!(
            !row("hub blackhole worst increase (s)")
                .expect("listed")
                .regressed
        );
        // A hub report has no one-pair figures, and lists none.
        assert!(row("latency p50 (s)").is_none());
        assert!(rows.iter().all(|r| r.baseline.is_some() && r.now.is_some()));
    }

    fn report(p50: f64, ratio: f64, rss: f64) -> Value {
        serde_json::json!({
            "latency": {"p50": p50, "p99": 2.5},
            "throughput": {"per_second": 350.0, "ratio": ratio, "block_fullness": 0.9, "block_reserved": 1.2},
            "gas": {"per_handled_transfer": 75000.0, "failed": {"reverted": 0, "out_of_gas": 0}},
            "memory": [{"pending": 10000, "peak_rss_mib": rss, "follower_peak_rss_mib": 30.0}],
        })
    }

    #[test]
    fn a_figure_that_moved_the_wrong_way_beyond_its_noise_is_called_a_regression() {
        let rows = compare(&report(2.0, 0.9, 40.0), &report(2.05, 0.8, 60.0));
        let row = |name: &str| rows.iter().find(|r| r.name == name).unwrap().clone();
        assert!(!row("latency p50 (s)").regressed, "2.5 % slower is noise");
        assert!(row("throughput / capacity").regressed);
        let rss = row("RSS leader, 10000 pending (MiB)");
        assert!(rss.regressed);
        assert_eq!(rss.ratio, Some(1.5));
        assert!(!row("RSS follower, 10000 pending (MiB)").regressed);
        assert!(render(&rows, "baseline.json").contains("REGRESSED"));
    }

    #[test]
    fn figures_only_one_side_has_are_listed_with_the_other_empty() {
        let mut old = report(2.0, 0.9, 40.0);
        old["memory"] = serde_json::json!([]);
        let rows = compare(&old, &report(2.0, 0.9, 40.0));
        let rss = rows
            .iter()
            .find(|r| r.name == "RSS leader, 10000 pending (MiB)")
            .unwrap();
        assert_eq!((rss.baseline, rss.now), (None, Some(40.0)));
        assert!(!rss.regressed);
    }
}
