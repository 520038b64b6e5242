//! The etcd cluster's key history, kept to `etcd.keep_history_secs` (issue 54).
//!
//! Every leader-key heartbeat, progress record and lane cursor is a new version of its key, and
//! etcd keeps every version until the history is compacted. etcd compacts nothing unless it was
//! started with `--auto-compaction-*`: a 64-pair hub at rest (three relay processes) grew the
//! database by about 1.6 GB an hour, and past its quota (2 GiB by default) etcd refuses every
//! write — no lane keeps a leader. The relay reads history only seconds back (a standby after a
//! deletion, from its last read), so each process compacts, once per cluster, everything older
//! than what it is told to keep, as the Kubernetes API server does for its etcd.
//!
//! Every [`tick`] the process reads every member's status (its revision, and its database size
//! for `multibridge_etcd_db_size_bytes`) and compacts up to the newest revision it saw at least
//! `keep` ago. Several processes on one cluster each compact; a compaction another process
//! already made is counted `already` (and so is one of ours retried on a second endpoint after
//! the first timed out). In a hub the figures go to the first pair's metrics (by advertised
//! URL), the latest a pair started with.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multibridge_chain::shared_reads::ProcessBook;
use multibridge_monitoring::EtcdMetrics;
use multibridge_monitoring::metrics::{ETCD_COMPACT, ETCD_STATUS};
use tracing::Instrument;

use super::etcd_pool::EtcdPool;

/// The process's compaction of one cluster (one per endpoint list), and the metrics of every
/// pair that serves with it.
#[derive(Debug, Default)]
pub struct HistoryCompaction {
    /// By pair (its advertised URL): the metrics of the pair's run that handed them in last,
    /// with that run's number. The figures go to the first pair's; a pair's entry goes when
    /// its run ends ([`HistoryMetrics`]), so they never go to a registry nobody serves.
    metrics: Mutex<BTreeMap<String, (u64, EtcdMetrics)>>,
    /// The number of the next run to hand in its metrics.
    runs: std::sync::atomic::AtomicU64,
}

/// A pair's metrics handed to its cluster's compaction, taken back when dropped (the pair's
/// run ended).
#[must_use = "the pair's metrics are taken back when this is dropped"]
pub struct HistoryMetrics {
    me: Arc<HistoryCompaction>,
    pair: String,
    run: u64,
}

impl Drop for HistoryMetrics {
    fn drop(&mut self) {
        let mut metrics = self.me.lock();
        // The same pair started again meanwhile: its new run's metrics stay.
        if metrics
            .get(&self.pair)
            .is_some_and(|(run, _)| *run == self.run)
            && let Some((_, gone)) = metrics.remove(&self.pair)
        {
            // Its registry may still be scraped (a pair that waits alone): no frozen size.
            gone.clear_db_size();
        }
    }
}

impl HistoryCompaction {
    /// Keep `keep` of the history of the cluster `pool` reaches, from now until the process
    /// (its runtime) ends; a later call for the same cluster (another pair, or the same one
    /// started again) only hands in its metrics while the first one's task runs. The figures
    /// go to a pair's `metrics` while the returned guard lives.
    pub fn start(
        pool: &Arc<EtcdPool>,
        keep: Duration,
        pair: &str,
        metrics: EtcdMetrics,
    ) -> HistoryMetrics {
        static BOOK: ProcessBook<Vec<String>, HistoryCompaction> = ProcessBook::new();
        let mut made = false;
        let me = BOOK.get_or_make(pool.endpoints().to_vec(), || {
            made = true;
            Self::default()
        });
        let guard = me.hand_in(pair, metrics);
        if made {
            let pool = Arc::clone(pool);
            tokio::spawn(async move { run(&pool, keep, &me).await }.instrument(
                tracing::info_span!("etcd_history", keep_secs = keep.as_secs()),
            ));
        }
        guard
    }

    /// `pair`'s run hands in its `metrics` until the guard is dropped.
    fn hand_in(self: &Arc<Self>, pair: &str, metrics: EtcdMetrics) -> HistoryMetrics {
        let run = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(pair.to_owned(), (run, metrics));
        HistoryMetrics {
            me: Arc::clone(self),
            pair: pair.to_owned(),
            run,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u64, EtcdMetrics)>> {
        self.metrics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The metrics the figures go to now.
    fn metrics(&self) -> Option<EtcdMetrics> {
        self.lock().values().next().map(|(_, m)| m.clone())
    }
}

/// How often the revision is read: a tenth of what is kept, between 1 and 60 s.
pub fn tick(keep: Duration) -> Duration {
    keep.checked_div(10)
        .unwrap_or_default()
        .clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Revisions seen, oldest first, and how far the history was compacted.
#[derive(Debug, Default)]
pub struct Seen {
    revisions: VecDeque<(Instant, i64)>,
    compacted: i64,
}

impl Seen {
    /// Revision `revision` was current at `at`.
    pub fn saw(&mut self, at: Instant, revision: i64) {
        self.revisions.push_back((at, revision));
    }

    /// The revision to compact to at `now`: the newest seen at least `keep` before it, when it
    /// is past what was compacted. Older samples are dropped.
    pub fn due(&mut self, now: Instant, keep: Duration) -> Option<i64> {
        let mut due = None;
        while let Some(&(at, revision)) = self.revisions.front() {
            if now.saturating_duration_since(at) < keep {
                break;
            }
            due = Some(revision);
            self.revisions.pop_front();
        }
        due.filter(|revision| *revision > self.compacted)
    }

    /// The history below `revision` is gone.
    pub fn compacted(&mut self, revision: i64) {
        self.compacted = self.compacted.max(revision);
    }
}

/// Until the runtime ends; `me` held so the book's entry lives exactly as long as the task.
async fn run(pool: &EtcdPool, keep: Duration, me: &HistoryCompaction) {
    let every = tick(keep);
    let mut seen = Seen::default();
    loop {
        tokio::time::sleep(every).await;
        let Some(metrics) = me.metrics() else {
            continue;
        };
        let answers = pool
            .each(ETCD_STATUS, |mut c| async move {
                let status = c.status().await?;
                Ok((
                    status.header().map_or(0, |h| h.revision()),
                    status.db_size(),
                ))
            })
            .await;
        let mut revision = None;
        for (endpoint, answer) in answers.iter().enumerate() {
            if let Ok((rev, db_size)) = answer {
                metrics.db_size(endpoint, *db_size);
                revision = revision.max(Some(*rev));
            }
        }
        let Some(revision) = revision.filter(|r| *r > 0) else {
            tracing::debug!("no etcd member answered its status: nothing compacted this round");
            continue;
        };
        let now = Instant::now();
        seen.saw(now, revision);
        let Some(due) = seen.due(now, keep) else {
            continue;
        };
        let outcome = pool
            .call(ETCD_COMPACT, |mut c| async move {
                match c.compact(due, None).await {
                    Ok(_) => Ok(true),
                    // Another process compacted at least this far.
                    Err(etcd_client::Error::GRpcStatus(status))
                        if status.message().contains("compacted") =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await;
        match outcome {
            Ok(ours) => {
                seen.compacted(due);
                metrics.history_compaction(if ours { "compacted" } else { "already" });
                tracing::debug!(revision = due, ours, "etcd history compacted");
            }
            Err(e) => {
                metrics.history_compaction("failed");
                tracing::warn!(revision = due, error = %e, "etcd history not compacted; tried again next round");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_go_to_a_pair_that_still_runs() {
        let me = Arc::new(HistoryCompaction::default());
        let (a, b) = (
            multibridge_monitoring::Metrics::new(&[], 2).unwrap(),
            multibridge_monitoring::Metrics::new(&[], 2).unwrap(),
        );
        let shown = |m: &multibridge_monitoring::Metrics| {
            m.render()
                .contains("multibridge_etcd_history_compactions_total")
        };
        let first = me.hand_in("http://a", a.etcd());
        let _second = me.hand_in("http://b", b.etcd());
        me.metrics().unwrap().history_compaction("compacted");
        assert!(shown(&a) && !shown(&b), "the first pair's");
        // Pair a started again before its first run's guard went: the new run's stay.
        let again = me.hand_in("http://a", a.etcd());
        drop(first);
        me.metrics().unwrap().history_compaction("compacted");
        assert!(!shown(&b), "still pair a's");
        // Pair a's run ended: the figures go to pair b's metrics, and a's size is gone.
        me.metrics().unwrap().db_size(0, 4096);
        assert!(a.render().contains("multibridge_etcd_db_size_bytes"));
        drop(again);
        assert!(!a.render().contains("multibridge_etcd_db_size_bytes"));
        me.metrics().unwrap().history_compaction("compacted");
        assert!(shown(&b), "pair b's once pair a no longer runs");
    }

    #[test]
    fn compacts_to_the_newest_revision_old_enough_and_never_backwards() {
        let keep = Duration::from_secs(300);
        let t0 = Instant::now();
        let mut seen = Seen::default();
        for (secs, revision) in [(0, 100), (30, 160), (60, 220)] {
            seen.saw(t0 + Duration::from_secs(secs), revision);
        }
        assert_eq!(seen.due(t0 + Duration::from_secs(299), keep), None);
        assert_eq!(seen.due(t0 + Duration::from_secs(335), keep), Some(160));
        seen.compacted(160);
        // The next sample old enough is the next compaction; none past it is due yet.
        assert_eq!(seen.due(t0 + Duration::from_secs(340), keep), None);
        assert_eq!(seen.due(t0 + Duration::from_secs(360), keep), Some(220));
        seen.compacted(220);
        // A revision that went backwards (a restored cluster) is never compacted to.
        seen.saw(t0 + Duration::from_secs(400), 50);
        assert_eq!(seen.due(t0 + Duration::from_secs(800), keep), None);
    }

    #[test]
    fn reads_a_tenth_of_what_is_kept_between_one_second_and_a_minute() {
        assert_eq!(tick(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(tick(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(tick(Duration::from_secs(3_600)), Duration::from_secs(60));
    }
}
