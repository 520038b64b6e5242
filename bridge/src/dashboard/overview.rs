//! The overview page's data: per lane the chains' bookkeeping and heads, pending and its oldest
//! age, waiting requests by reason, the latency histogram and its percentiles, conservation per
//! asset and the timeline; per operator of the lane its leader, the leader's lease and every
//! replica's progress and lag — all from what the relay already publishes (`/status` board,
//! metrics) plus etcd.

use std::collections::BTreeSet;

use alloy::primitives::Address;
use multibridge_contracts::Lane;
use prometheus::core::Metric;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Dashboard, DashboardHandle};
use crate::leadership::campaign::LeaderInfo;
use crate::leadership::etcd_pool::{EtcdPool, EtcdUnavailable};
use crate::leadership::progress::{ReplicaProgress, read_progress};

/// One histogram bucket: requests handled within `le` seconds (not cumulative).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    /// Upper bound in seconds (`None`: +Inf).
    pub le: Option<f64>,
    /// Handles in this bucket alone.
    pub count: u64,
}

/// The latency of handled requests: source block to handle block, by the chains' timestamps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// Handles observed.
    pub count: u64,
    /// Median, 90th and 99th percentile in seconds (interpolated inside buckets, as
    /// Prometheus' `histogram_quantile` does).
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// The buckets.
    pub buckets: Vec<Bucket>,
}

/// Percentile `q` of cumulative `(upper bound, count)` buckets (the last bound may be +Inf).
pub fn quantile(q: f64, cumulative: &[(f64, u64)]) -> Option<f64> {
    let total = cumulative.last()?.1;
    if total == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in cumulative {
        #[allow(clippy::cast_precision_loss)]
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count.saturating_sub(lower.1);
            if in_bucket == 0 {
                return Some(bound);
            }
            #[allow(clippy::cast_precision_loss)]
            let fraction = (rank - lower.1 as f64) / in_bucket as f64;
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// The latency histogram of `lane` from the relay's metrics (`transfer_latency_seconds`).
pub fn latency(handle: &DashboardHandle, lane: Lane) -> Latency {
    let metric = handle.metrics.transfer_latency(lane).metric();
    let histogram = metric.get_histogram();
    let mut cumulative: Vec<(f64, u64)> = histogram
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    let count = histogram.get_sample_count();
    cumulative.push((f64::INFINITY, count));
    let mut previous = 0u64;
    let buckets = cumulative
        .iter()
        .map(|&(le, c)| {
            let bucket = Bucket {
                le: le.is_finite().then_some(le),
                count: c.saturating_sub(previous),
            };
            previous = c;
            bucket
        })
        .collect();
    Latency {
        count,
        p50: quantile(0.5, &cumulative),
        p90: quantile(0.9, &cumulative),
        p99: quantile(0.99, &cumulative),
        buckets,
    }
}

/// A leader as the overview shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LeaderView {
    /// Who leads.
    #[serde(flatten)]
    pub info: LeaderInfo,
    /// The etcd lease behind the leader key (hex) and its remaining seconds.
    pub lease: Option<String>,
    /// Seconds the lease has left.
    pub lease_ttl_secs: Option<i64>,
}

/// A replica's progress with its lag.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    /// Its record.
    #[serde(flatten)]
    pub progress: ReplicaProgress,
    /// Requests it is behind the most advanced replica.
    pub lag: u64,
    /// Seconds since it last wrote its record.
    pub age_secs: u64,
}

/// One election (an operator's, or the lane's under the lane scope).
#[derive(Debug, Clone, Serialize)]
pub struct ElectionView {
    /// The operators voting through it.
    pub operators: Vec<Address>,
    /// Whether it is this relay's operator's.
    pub own: bool,
    /// Its leader.
    pub leader: Option<LeaderView>,
    /// Its replicas.
    pub replicas: Vec<ReplicaView>,
    /// Set when etcd could not be read.
    pub error: Option<String>,
}

async fn leader_with_lease(
    pool: &EtcdPool,
    key: &str,
) -> Result<Option<LeaderView>, EtcdUnavailable> {
    let key = key.to_owned();
    let found = pool
        .call("read leader", |mut c| {
            let key = key.clone();
            async move {
                let resp = c.get(key, None).await?;
                let Some(kv) = resp.kvs().first() else {
                    return Ok(None);
                };
                let lease = kv.lease();
                let ttl = if lease == 0 {
                    None
                } else {
                    Some(c.lease_time_to_live(lease, None).await?.ttl())
                };
                Ok(Some((kv.value().to_vec(), lease, ttl)))
            }
        })
        .await?;
    Ok(found.and_then(|(value, lease, ttl)| {
        let info: LeaderInfo = serde_json::from_slice(&value).ok()?;
        Some(LeaderView {
            info,
            lease: (lease != 0).then(|| format!("{lease:x}")),
            lease_ttl_secs: ttl,
        })
    }))
}

async fn election(
    pool: &EtcdPool,
    dir: &str,
    leader_key: &str,
) -> Result<(Option<LeaderView>, Vec<ReplicaView>), EtcdUnavailable> {
    let leader = leader_with_lease(pool, leader_key).await?;
    let mut replicas = read_progress(pool, dir).await?;
    replicas.sort_by(|a, b| a.replica.cmp(&b.replica));
    let top = replicas.iter().filter_map(|r| r.latest_nonce).max();
    let now = crate::store::unix_now();
    let views = replicas
        .into_iter()
        .map(|p| ReplicaView {
            lag: match (top, p.latest_nonce) {
                (Some(top), Some(n)) => top.saturating_sub(n),
                (Some(top), None) => top.saturating_add(1),
                (None, _) => 0,
            },
            age_secs: now.saturating_sub(p.at),
            progress: p,
        })
        .collect();
    Ok((leader, views))
}

/// Every election of `lane`: one per operator of the destination bridge (this relay's operator
/// first), or the lane's one under the lane scope.
pub async fn elections(d: &Dashboard, lane: Lane) -> Vec<ElectionView> {
    let Some(pool) = &d.etcd else {
        return Vec::new();
    };
    let own = d.config.operator.address;
    let mut operators = d
        .chains
        .get(lane.destination())
        .views()
        .operators()
        .await
        .unwrap_or_default();
    operators.retain(|o| *o != own);
    operators.insert(0, own);
    let mut dirs: Vec<(String, String, Vec<Address>)> = Vec::new();
    for operator in operators {
        let (Some(dir), Some(key)) = (
            crate::leadership::election_dir_of(&d.config, lane, operator),
            crate::leadership::leader_key_of(&d.config, lane, operator),
        ) else {
            continue;
        };
        match dirs.iter_mut().find(|(d, _, _)| *d == dir) {
            Some((_, _, ops)) => ops.push(operator),
            None => dirs.push((dir, key, vec![operator])),
        }
    }
    let mut out = Vec::new();
    for (dir, key, operators) in dirs {
        let (leader, replicas, error) = match election(pool, &dir, &key).await {
            Ok((leader, replicas)) => (leader, replicas, None),
            Err(e) => (None, Vec::new(), Some(e.to_string())),
        };
        out.push(ElectionView {
            own: operators.contains(&own),
            operators,
            leader,
            replicas,
            error,
        });
    }
    out
}

/// The overview: one JSON object for the page.
pub async fn overview(handle: &DashboardHandle, d: &Dashboard) -> Value {
    let board = handle.board.snapshot();
    let chains = board.get("chains").cloned().unwrap_or(Value::Null);
    let head = |role: multibridge_contracts::ChainRole| {
        chains
            .get(role.as_str())
            .and_then(|c| c.get("head"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut lanes = Vec::new();
    let configured: BTreeSet<Lane> = d.config.lanes.iter().copied().collect();
    for lane in configured {
        let status = board
            .get("lanes")
            .and_then(|l| l.get(lane.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        let conservation = board
            .get("conservation")
            .and_then(|c| c.get(lane.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        lanes.push(json!({
            "lane": lane.as_str(),
            "source": lane.source().as_str(),
            "destination": lane.destination().as_str(),
            "source_head": head(lane.source()),
            "destination_head": head(lane.destination()),
            "status": status,
            "conservation": conservation,
            "latency": latency(handle, lane),
            "timeline": d.timeline.samples(lane),
            "elections": elections(d, lane).await,
        }));
    }
    json!({
        "generated_at": crate::store::unix_now(),
        "operator": d.config.operator.address,
        "replica": d.replica,
        "pair": crate::leadership::pair_name(&d.config),
        // A relay serving several pairs: this pair's name and every pair's page.
        "pair_name": board.get("pair").cloned().unwrap_or(Value::Null),
        "pairs": board.get("pairs").cloned().unwrap_or(Value::Null),
        "chains": chains,
        "readiness": handle.readiness.report(),
        "lanes": lanes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_buckets_like_prometheus() {
        let c = [(1.0, 10), (2.0, 20), (5.0, 20), (f64::INFINITY, 20)];
        assert_eq!(quantile(0.5, &c), Some(1.0));
        assert_eq!(quantile(0.75, &c), Some(1.5));
        assert_eq!(quantile(0.25, &c), Some(0.5));
        assert_eq!(quantile(0.5, &[(1.0, 0), (f64::INFINITY, 0)]), None);
        // Everything above the last finite bound: the bound is the answer.
        assert_eq!(quantile(0.99, &[(1.0, 0), (f64::INFINITY, 4)]), Some(1.0));
    }
}
