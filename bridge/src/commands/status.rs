//! `multibridge status`: where each lane stands, read from the chains and the local store.

use crate::chain::{ChainError, ChainPair, RetryPolicy};
use crate::config::Config;
use crate::leadership::campaign::read_leader;
use crate::leadership::etcd_pool::{EtcdPool, EtcdUnavailable};
use crate::leadership::lane_election_dir;
use crate::leadership::progress::{read_cursor, read_progress};
pub use crate::observe::status::{LaneLeadership, LaneStatus, ReasonEntry, lane_status};
use crate::store::{Store, StoreError};

/// Why status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Read every configured lane's status.
pub async fn lane_statuses(config: &Config) -> Result<Vec<LaneStatus>, StatusError> {
    let store = if config.store.path.exists() {
        Some(Store::open(
            &config.store.path,
            &crate::store::identity(&config.chains, config.operator.address),
        )?)
    } else {
        None
    };
    let chains = ChainPair::for_command(&config.chains, RetryPolicy::interactive())?;
    let metrics = multibridge_monitoring::Metrics::new(&[], 1)
        .expect("the metric definitions are unique and valid (unit-tested in monitoring)");
    let pool = crate::leadership::command_etcd_pool(config, &metrics);
    let mut out = Vec::new();
    for lane in config.lanes.iter().copied() {
        let nonces = chains.lane_nonces(lane).await?;
        let mut status = lane_status(lane, nonces, store.as_ref())?;
        crate::observe::status::read_queued_releases(
            &mut status,
            chains.get(lane.destination()).views(),
        )
        .await?;
        if let (Some(pool), Some(dir), Some(key)) = (
            &pool,
            lane_election_dir(config, lane),
            crate::leadership::lane_leader_key(config, lane),
        ) {
            status.leadership = Some(lane_leadership(pool, &dir, &key).await);
        }
        if let (Some(pool), Some(keys)) = (
            &pool,
            crate::backup::versions::StateKeys::of(config, lane, config.operator.address),
        ) {
            status.versions = crate::backup::versions::read(pool, &keys)
                .await
                .ok()
                .filter(|v| v.sv.is_some());
        }
        out.push(status);
    }
    Ok(out)
}

/// Read a lane's election: leader, cursor, replica progress. etcd being unreachable is
/// reported in the result, not as a failure (the chains' view is still worth showing).
async fn lane_leadership(pool: &EtcdPool, dir: &str, leader_key: &str) -> LaneLeadership {
    let read = async {
        let leader = read_leader(pool, leader_key).await?;
        let cursor = read_cursor(pool, dir).await?;
        let mut replicas = read_progress(pool, dir).await?;
        replicas.sort_by(|a, b| a.replica.cmp(&b.replica));
        Ok::<_, EtcdUnavailable>((leader, cursor, replicas))
    };
    match read.await {
        Ok((leader, cursor, replicas)) => LaneLeadership {
            leader,
            cursor,
            replicas,
            error: None,
        },
        Err(e) => LaneLeadership {
            leader: None,
            cursor: None,
            replicas: Vec::new(),
            error: Some(e.to_string()),
        },
    }
}

/// The human-readable table.
pub fn render_table(statuses: &[LaneStatus]) -> String {
    let mut out = format!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>12} {:>10}\n",
        "lane", "requests", "lower", "upper", "pending", "oldest age", "last vote"
    );
    for s in statuses {
        out.push_str(&format!(
            "{:<16} {:>8} {:>8} {:>8} {:>8} {:>12} {:>10}\n",
            s.lane.as_str(),
            s.request_nonce,
            s.lower_handle_nonce,
            s.upper_handle_nonce,
            s.pending,
            s.oldest_pending_age_secs
                .map(|a| format!("{a}s"))
                .unwrap_or_else(|| "-".into()),
            s.last_vote_nonce
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
        ));
    }
    for s in statuses {
        for q in &s.queued_releases {
            // A refund queued on this lane's destination (the source of the other lane) is
            // keyed by its nonce with bit 63 set (issue 53).
            const REFUND_BIT: u64 = 1 << 63;
            let what = if q.nonce & REFUND_BIT != 0 {
                format!(
                    "refund of {} nonce {}",
                    multibridge_contracts::Lane::from_source(s.lane.destination()).as_str(),
                    q.nonce & !REFUND_BIT
                )
            } else {
                format!("nonce {} handled", q.nonce)
            };
            out.push_str(&format!(
                "{}: {what}, release held back: {} of {} to {}, due at unix {}{}\n",
                s.lane.as_str(),
                q.amount,
                if q.token.is_zero() {
                    "native".to_owned()
                } else {
                    q.token.to_string()
                },
                q.to,
                q.release_at,
                if q.frozen {
                    " (FROZEN by a pauser: the owner cancels it or lifts the freeze)"
                } else {
                    " (a pauser may freeze it)"
                },
            ));
        }
        let listed = s.queued_releases.len() as u64;
        if s.queued_release_count > listed {
            out.push_str(&format!(
                "{}: and {} more queued releases\n",
                s.lane.as_str(),
                s.queued_release_count.saturating_sub(listed)
            ));
        }
    }
    for s in statuses {
        for m in s.missing_votes.iter().filter(|m| m.requests > 0) {
            out.push_str(&format!(
                "{}: operator {} has not voted {} open request(s), the oldest {}s old: nonces {}{}\n",
                s.lane.as_str(),
                m.operator,
                m.requests,
                m.oldest_secs,
                crate::voter::nonce_ranges(&m.nonces),
                if m.requests > m.nonces.len() as u64 { ", …" } else { "" },
            ));
        }
    }
    for s in statuses {
        let Some(v) = &s.versions else { continue };
        let ssv = v
            .ssv
            .iter()
            .map(|(replica, version)| format!("{replica}={version}"))
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!(
            "{}: state version SV {}{}, SSV {}, replicas {} alive of {}{}\n",
            s.lane.as_str(),
            v.sv.unwrap_or(1),
            if v.ssi == Some(-1) {
                " (SSI -1: backup running)"
            } else {
                ""
            },
            if ssv.is_empty() { "-".to_owned() } else { ssv },
            v.alive.iter().filter(|a| v.members.contains(a)).count(),
            v.members.len(),
            v.last_backup
                .as_ref()
                .map(|b| format!(
                    "; last backup v{} by {} at unix {}, compacted below nonce {}",
                    b.version, b.subject, b.at, b.compacted_below
                ))
                .unwrap_or_default(),
        ));
    }
    for s in statuses {
        let Some(l) = &s.leadership else { continue };
        if let Some(e) = &l.error {
            out.push_str(&format!("{}: etcd not readable: {e}\n", s.lane.as_str()));
            continue;
        }
        out.push_str(&format!(
            "{}: leader {}\n",
            s.lane.as_str(),
            l.leader
                .as_ref()
                .map(|l| format!("{} ({}, operator {})", l.replica, l.url, l.operator))
                .unwrap_or_else(|| "none".into())
        ));
        let top = l.replicas.iter().filter_map(|r| r.latest_nonce).max();
        for r in &l.replicas {
            let behind = match (top, r.latest_nonce) {
                (Some(top), Some(n)) => top.saturating_sub(n),
                (Some(top), None) => top.saturating_add(1),
                (None, _) => 0,
            };
            out.push_str(&format!(
                "  {} {:<8} latest nonce {:>6}  handled {:>6}  cursor {:>8}  behind {}\n",
                r.replica,
                if r.leader { "leader" } else { "follower" },
                r.latest_nonce
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.handled,
                r.cursor
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                behind
            ));
        }
    }
    for s in statuses {
        for w in &s.waiting {
            out.push_str(&format!(
                "{}: {} request(s) waiting ({}), first nonce {}: {}\n",
                s.lane.as_str(),
                w.requests,
                w.reason,
                w.first_nonce,
                w.detail.as_deref().unwrap_or("-")
            ));
        }
        for r in &s.rejected {
            out.push_str(&format!(
                "{}: {} request(s) SET ASIDE ({}), first nonce {}: {}\n",
                s.lane.as_str(),
                r.requests,
                r.reason,
                r.first_nonce,
                r.detail.as_deref().unwrap_or("-")
            ));
        }
    }
    out
}

/// `multibridge status`.
#[derive(clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: std::path::PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Run `multibridge status`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let c = Config::load(&args.config)?;
    let statuses = lane_statuses(&c).await?;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&statuses)?)
    } else {
        render_table(&statuses)
    };
    print!("{}", multibridge_monitoring::redact_urls(&text));
    Ok(())
}
