//! The alert rules and the Grafana dashboard are checked against the real `promtool` (Debian's
//! `prometheus` package, installed by `.tools/setup.sh`) and against the one metric definition.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use multibridge_contracts::Lane;
use multibridge_monitoring::Metrics;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's prometheus package (bash .tools/setup.sh)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// Every `multibridge_*` name in `text`, histogram suffixes folded to the family name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("multibridge_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded_by_word =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded_by_word {
            let name = &text[start..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(family.to_owned());
        }
        i = end;
    }
    names
}

fn defined_metrics() -> BTreeSet<String> {
    let metrics = Metrics::new(&Lane::ALL, 1).unwrap();
    metrics.init_etcd(1);
    // Read once at start: absent until a member answered.
    metrics.etcd().member_revokes_live_leases(0, false);
    // Labelled by endpoint: none before a member answered its status.
    metrics.etcd().db_size(0, 0);
    metrics.init_signer("pkcs11");
    // Labelled by operator: no series until one is seen.
    let lane = metrics.lane(Lane::MainToService);
    lane.set_missing_votes("0x0", 0, 0);
    lane.operator_voted("0x0");
    metrics.attest.fetched(Lane::MainToService, "0x0", "ok");
    metrics
        .attest
        .peer_signatures(Lane::MainToService, "0x0", 1);
    // Labelled by transaction, and set by probes and comparisons: none before the first.
    metrics.drift.admin_change(
        multibridge_contracts::ChainRole::Main,
        "ThresholdChanged",
        "0x0",
        0,
    );
    metrics
        .drift
        .set_drift(multibridge_contracts::ChainRole::Main, &Default::default());
    metrics
        .chain(multibridge_contracts::ChainRole::Main)
        .endpoint_health(0, Some(1), true);
    // Labelled by endpoint: none before an endpoint contradicts a finding.
    metrics.guardian.disputed(
        Lane::MainToService,
        multibridge_contracts::ChainRole::Main,
        0,
    );
    let text = metrics.render();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = crate_dir().join("prometheus");
    let checked = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(checked.contains("SUCCESS: 36 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn rules_and_dashboard_only_use_defined_metrics() {
    let defined = defined_metrics();
    for file in ["prometheus/alerts.yml", "grafana/multibridge.json"] {
        let text = std::fs::read_to_string(crate_dir().join(file)).unwrap();
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} uses no metric");
        let unknown: Vec<_> = used.difference(&defined).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses undefined metrics {unknown:?}"
        );
    }
}

#[test]
fn dashboard_is_importable_and_every_query_parses() {
    let text = std::fs::read_to_string(crate_dir().join("grafana/multibridge.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dashboard["uid"], "multibridge");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    let panels = dashboard["panels"].as_array().unwrap();
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    let rows: BTreeSet<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for row in [
        "Lanes",
        "Latency",
        "Votes",
        "Recovery and claims",
        "Leadership",
        "RPC health",
        "Balances and gas",
        "Conservation",
    ] {
        assert!(rows.contains(row), "dashboard lacks row {row}");
    }
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    // Let promtool parse every query: as recording rules, template variables filled in.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr.replace("$lane", ".*").replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let dir = std::env::temp_dir().join(format!("multibridge-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("queries.yml"), rules).unwrap();
    let checked = promtool(&["check", "rules", "queries.yml"], &dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{checked}"
    );
}

#[test]
fn metric_name_extraction_folds_histograms_and_ignores_longer_words() {
    let names = metric_names(
        "rate(multibridge_handle_latency_seconds_bucket[5m]) x_multibridge_nope multibridge_leader{",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec!["multibridge_handle_latency_seconds", "multibridge_leader"]
    );
}
