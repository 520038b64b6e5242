//! Reading a relay's `/metrics`.

/// The value of one series (full name with labels, e.g.
/// `multibridge_votes_sent_total{lane="main-to-service"}`) on the relay listening on `port`.
pub async fn metric(port: u16, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}
