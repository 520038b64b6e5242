//! What the store counts: requests by status, the oldest open one, the open ones waiting by
//! reason and the ones set aside by reason (status, metrics).
//!
//! Requests by status are kept in `request_counts` by triggers on `requests`, in the same
//! transaction as every insert, status change and delete, and counted afresh from the rows
//! whenever the store is opened (an older store, a restored snapshot): the metrics and `/status`
//! read them every second or two, and counting the rows each time scanned the whole lane — 35 ms
//! a count at 60,000 rows, with the store's lock held, twice a round.

use super::*;

/// The counts table and the triggers that keep it, and the indexes of the other reads the watcher
/// makes every round (the reasons of rejected requests, the lane's last vote).
pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS request_counts (
        lane TEXT NOT NULL,
        status TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (lane, status));
    CREATE TRIGGER IF NOT EXISTS request_counts_insert AFTER INSERT ON requests BEGIN
        INSERT INTO request_counts (lane, status, n) VALUES (NEW.lane, NEW.status, 1)
            ON CONFLICT (lane, status) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER IF NOT EXISTS request_counts_update AFTER UPDATE OF lane, status ON requests
        WHEN OLD.lane IS NOT NEW.lane OR OLD.status IS NOT NEW.status BEGIN
        UPDATE request_counts SET n = n - 1 WHERE lane = OLD.lane AND status = OLD.status;
        INSERT INTO request_counts (lane, status, n) VALUES (NEW.lane, NEW.status, 1)
            ON CONFLICT (lane, status) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER IF NOT EXISTS request_counts_delete AFTER DELETE ON requests BEGIN
        UPDATE request_counts SET n = n - 1 WHERE lane = OLD.lane AND status = OLD.status;
    END;
    CREATE INDEX IF NOT EXISTS requests_rejected ON requests (lane, reason)
        WHERE status = 'rejected';
    CREATE INDEX IF NOT EXISTS request_txs_sent ON request_txs (lane, sent_at);";

/// Count the rows again (at open: whatever the table held is replaced).
pub(super) const RECOUNT: &str = "
    BEGIN IMMEDIATE;
    DELETE FROM request_counts;
    INSERT INTO request_counts (lane, status, n)
        SELECT lane, status, COUNT(*) FROM requests GROUP BY lane, status;
    COMMIT;";

/// The rows `rejected_reasons` counts (`requests_rejected` indexes them).
pub(super) const REJECTED: &str = "status = 'rejected'";

/// Requests of a lane (`?1`) matching `filter`, counted by reason, with one detail and the
/// first nonce of each.
pub(super) fn reason_counts_query(filter: &str) -> String {
    format!(
        "SELECT reason, COUNT(*), MAX(reason_detail), MIN(nonce) FROM requests
         WHERE lane = ?1 AND {filter} AND reason IS NOT NULL
         GROUP BY reason ORDER BY reason"
    )
}

impl Store {
    /// Open requests of `lane` waiting on a destination condition, counted by reason, each with
    /// one of its details.
    pub fn waiting_reasons(&self, lane: Lane) -> Result<Vec<ReasonCount<WaitReason>>, StoreError> {
        self.reason_counts(lane, &format!("status IN {OPEN}"))
    }

    /// Rejected requests of `lane`, counted by reason, each with one of its details.
    pub fn rejected_reasons(
        &self,
        lane: Lane,
    ) -> Result<Vec<ReasonCount<RejectReason>>, StoreError> {
        self.reason_counts(lane, REJECTED)
    }

    pub(super) fn reason_counts<R: std::str::FromStr>(
        &self,
        lane: Lane,
        filter: &str,
    ) -> Result<Vec<ReasonCount<R>>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&reason_counts_query(filter))?;
        let rows = stmt.query_map([lane.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                to_u64(r.get::<_, i64>(1)?),
                r.get::<_, Option<String>>(2)?,
                to_u64(r.get::<_, i64>(3)?),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, requests, detail, first_nonce) = row?;
            let reason = name
                .parse::<R>()
                .map_err(|_| StoreError::Corrupt(format!("unknown reason {name:?}")))?;
            out.push(ReasonCount {
                reason,
                requests,
                detail,
                first_nonce,
            });
        }
        Ok(out)
    }

    /// Counts per status, the oldest open request and the highest nonce of `lane`.
    pub fn counts(&self, lane: Lane) -> Result<LaneCounts, StoreError> {
        let mut counts = LaneCounts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, n FROM request_counts WHERE lane = ?1")?;
        let rows = stmt.query_map([lane.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (status, n) = row?;
            let status = parse_status(&status)?;
            if let Some(i) = RequestStatus::ALL.iter().position(|s| *s == status)
                && let Some(slot) = counts.by_status.get_mut(i)
            {
                *slot = to_u64(n);
            }
        }
        counts.oldest_open_observed_at = self
            .conn
            .prepare_cached(&format!(
                "SELECT MIN(observed_at) FROM requests WHERE lane = ?1 AND status IN {OPEN}"
            ))?
            .query_row([lane.as_str()], |r| r.get::<_, Option<i64>>(0))?
            .map(to_u64);
        counts.max_nonce = self
            .conn
            .prepare_cached("SELECT MAX(nonce) FROM requests WHERE lane = ?1")?
            .query_row([lane.as_str()], |r| r.get::<_, Option<i64>>(0))?
            .map(to_u64);
        // Rows a backup compacted away were handled: they still count.
        let compacted = self.compaction(lane)?;
        if compacted.below > 0 {
            counts.max_nonce = Some(
                counts
                    .max_nonce
                    .unwrap_or(0)
                    .max(compacted.below.saturating_sub(1)),
            );
            if let Some(i) = RequestStatus::ALL
                .iter()
                .position(|s| *s == RequestStatus::Handled)
                && let Some(slot) = counts.by_status.get_mut(i)
            {
                *slot = slot.saturating_add(compacted.dropped);
            }
        }
        Ok(counts)
    }
}
