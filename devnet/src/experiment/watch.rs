//! What the experiment watches while it runs: which replica leads each (operator, lane), by
//! polling every replica's `/metrics`, and so every change of leader.

use std::sync::atomic::Ordering;
use std::time::Duration;

use multibridge_contracts::Lane;
use serde::Serialize;

use super::Timeline;
use crate::error::DevnetError;
use crate::harness::ha::{Background, leader_series};

/// A new replica took over a lane of an operator.
#[derive(Debug, Clone, Serialize)]
pub struct LeaderChange {
    /// Seconds since the start.
    pub at: f64,
    /// Operator (1-based).
    pub operator: usize,
    /// Lane.
    pub lane: Lane,
    /// The replica that leads now (1-based).
    pub replica: usize,
}

/// Polls `multibridge_leader` of every replica every 200 ms until stopped.
pub struct LeaderWatch(Background<Vec<LeaderChange>>);

impl LeaderWatch {
    /// Watch the replicas listening on `ports[operator][replica]`.
    pub fn start(ports: Vec<Vec<u16>>, timeline: &Timeline) -> Self {
        let timeline = timeline.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap_or_default();
        Self(Background::spawn(|flag| async move {
            let mut changes = Vec::new();
            // The replica last seen leading, per (operator, lane).
            let mut current: Vec<[Option<usize>; 2]> = vec![[None; 2]; ports.len()];
            while !flag.load(Ordering::Relaxed) {
                for (op, replicas) in ports.iter().enumerate() {
                    let mut leading: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
                    for (replica, port) in replicas.iter().enumerate() {
                        let url = format!("http://127.0.0.1:{port}/metrics");
                        let Ok(resp) = http.get(url).send().await else {
                            continue;
                        };
                        let Ok(text) = resp.text().await else {
                            continue;
                        };
                        for (i, lane) in Lane::ALL.iter().enumerate() {
                            let series = leader_series(*lane);
                            let leads = text.lines().any(|l| {
                                l.strip_prefix(&series)
                                    .and_then(|v| v.trim().parse::<f64>().ok())
                                    == Some(1.0)
                            });
                            if leads {
                                leading[i].push(replica);
                            }
                        }
                    }
                    for (i, lane) in Lane::ALL.iter().enumerate() {
                        // One leader that is not the one seen last: a change (none, or a
                        // paused replica still reporting itself, is not).
                        if let [replica] = leading[i][..]
                            && current[op][i] != Some(replica)
                        {
                            if current[op][i].is_some() {
                                changes.push(LeaderChange {
                                    at: timeline.now(),
                                    operator: op.saturating_add(1),
                                    lane: *lane,
                                    replica: replica.saturating_add(1),
                                });
                            }
                            current[op][i] = Some(replica);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            changes
        }))
    }

    /// Stop and return every leader change seen.
    pub async fn stop(self) -> Result<Vec<LeaderChange>, DevnetError> {
        self.0.stop("leader watch").await
    }
}
