//! Reading a relay's `/metrics`.

/// The whole `/metrics` text of the relay listening on `port`.
pub async fn metrics_text(port: u16) -> Option<String> {
    crate::harness::http::client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        // A stopped (SIGSTOP) relay accepts the connection and never answers.
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The value of one series (full name with labels, e.g.
/// `multibridge_votes_sent_total{lane="main-to-service"}`) on the relay listening on `port`.
pub async fn metric(port: u16, series: &str) -> Option<f64> {
    let text = metrics_text(port).await?;
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

/// The sum over every series of metric `name` whose labels contain `label` (e.g.
/// `outcome="timeout"`), on the relay listening on `port`.
pub async fn metric_sum(port: u16, name: &str, label: &str) -> Option<f64> {
    let text = metrics_text(port).await?;
    Some(
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix('{')?;
                let (labels, value) = rest.split_once('}')?;
                labels
                    .contains(label)
                    .then(|| value.trim().parse::<f64>().ok())?
            })
            .sum(),
    )
}
