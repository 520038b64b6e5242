//! What backups do to the store: a consistent copy of the whole store (one read transaction),
//! compaction of the requests a backup covers, and the restore of one lane from a backup's copy.
//!
//! Compaction drops the rows of a lane below a nonce every replica may forget: the backup's
//! point, at most the destination's `lowerHandleNonce` at its confirmation depth (every nonce
//! below is handled on chain for good) and at most the lane's contiguous watermark. The store
//! remembers the point and how many handled requests it dropped, so counts stay whole, the
//! indexer does not store those nonces again and the gap check starts above them.

use std::path::Path;

use multibridge_contracts::Lane;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SCHEMA_VERSION, Store, StoreError, to_i64, to_u64};

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS compaction (
        lane TEXT PRIMARY KEY,
        below INTEGER NOT NULL,
        dropped INTEGER NOT NULL,
        version INTEGER NOT NULL);";

/// The lowest nonce whose row compaction keeps for a compaction point of `below` in `table`
/// (`requests` or `snap.requests`): `below`, or the first request of the aligned pair of source
/// blocks `below`'s block belongs to — or `below - 1`'s while `below` is not stored (a store's
/// watermark: the block still to come may pair with the one before) — a batch is a run of its
/// block's or its pair's requests counted from their first (`batch_blocks`, `batch_run`) and
/// is signed over all its rows, so the pair's rows are kept whole while one of them may still
/// be open.
fn keep_from(
    conn: &rusqlite::Connection,
    table: &str,
    lane: Lane,
    below: u64,
) -> Result<u64, StoreError> {
    let first: Option<i64> = conn
        .query_row(
            &format!(
                "SELECT MIN(r.nonce) FROM {table} r, {table} b
                 WHERE b.lane = ?1 AND b.nonce = COALESCE(
                     (SELECT nonce FROM {table} WHERE lane = ?1 AND nonce = ?2), ?2 - 1)
                 AND r.lane = ?1
                 AND r.src_block >= b.src_block - b.src_block % 2
                 AND r.src_block <= b.src_block - b.src_block % 2 + 1"
            ),
            params![lane.as_str(), to_i64(below)],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(first.map_or(below, to_u64).min(below))
}

/// A lane's compaction record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Every nonce below was dropped (handled on chain for good).
    pub below: u64,
    /// How many rows were dropped (all handled).
    pub dropped: u64,
    /// The state version of the backup that covered them.
    pub version: u64,
}

/// What a restore brought in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Rows copied.
    pub rows: u64,
    /// Where the lane's indexer goes on: the backup's cursor, or the source block of the first
    /// request the backup had not seen handled (re-read from the chain).
    pub cursor: Option<u64>,
    /// The compaction point recorded: the backup's, or the first row of the attested batches
    /// it falls in (`keep_from`), so the indexer stores again what the copy does not give of
    /// them (a batch is signed over all its rows).
    pub below: u64,
}

impl Store {
    /// The compaction record of `lane` (zero when never compacted).
    pub fn compaction(&self, lane: Lane) -> Result<Compaction, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT below, dropped, version FROM compaction WHERE lane = ?1")?
            .query_row([lane.as_str()], |r| {
                Ok(Compaction {
                    below: to_u64(r.get(0)?),
                    dropped: to_u64(r.get(1)?),
                    version: to_u64(r.get(2)?),
                })
            })
            .optional()?
            .unwrap_or_default())
    }

    /// Whether the store holds nothing of `lane` (no cursor, no request): a new or wiped replica.
    pub fn lane_is_empty(&self, lane: Lane) -> Result<bool, StoreError> {
        let cursor = self.cursor(lane)?;
        let any: Option<i64> = self
            .conn
            .query_row(
                "SELECT nonce FROM requests WHERE lane = ?1 LIMIT 1",
                [lane.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(cursor.is_none() && any.is_none())
    }

    /// Rows of `lane` in the store.
    pub fn row_count(&self, lane: Lane) -> Result<u64, StoreError> {
        Ok(to_u64(self.conn.query_row(
            "SELECT COUNT(*) FROM requests WHERE lane = ?1",
            [lane.as_str()],
            |r| r.get(0),
        )?))
    }

    /// Write a consistent copy of the whole store to `to` (SQLite `VACUUM INTO`: one read
    /// transaction, so every request and the cursor that covers it agree).
    pub fn copy_to(&self, to: &Path) -> Result<(), StoreError> {
        self.conn
            .execute("VACUUM INTO ?1", [to.to_string_lossy().as_ref()])?;
        Ok(())
    }

    /// Give the space of dropped rows back to the file system.
    pub fn vacuum(&self) -> Result<(), StoreError> {
        self.conn.execute_batch("VACUUM")?;
        Ok(())
    }

    /// Start compacting `lane` below `below` for backup `version`: from now on the indexer
    /// does not store those nonces and the gap check starts at `below`. Never moves back.
    pub fn begin_compaction(
        &mut self,
        lane: Lane,
        below: u64,
        version: u64,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO compaction (lane, below, dropped, version) VALUES (?1, ?2, 0, ?3)
             ON CONFLICT (lane) DO UPDATE SET below = MAX(compaction.below, excluded.below),
                 version = MAX(compaction.version, excluded.version)",
            params![lane.as_str(), to_i64(below), to_i64(version)],
        )?;
        // A watermark moves up to the point; one not set yet stays unset (the first stored
        // request sets it, never below the point).
        tx.execute(
            "UPDATE cursors SET next_nonce = ?2 WHERE lane = ?1 AND next_nonce < ?2",
            params![lane.as_str(), to_i64(below)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Drop at most `limit` rows of `lane` below its compaction point, in one short transaction
    /// (the caller releases the store between steps, so voting never waits long). Returns how
    /// many were dropped; 0 when done.
    pub fn compact_step(&mut self, lane: Lane, limit: usize) -> Result<u64, StoreError> {
        // Rows of the attested batch window `below` falls in stay: an open request there is
        // signed over its whole batch, which every operator must compose alike.
        let below = keep_from(&self.conn, "requests", lane, self.compaction(lane)?.below)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let nonces: Vec<i64> = {
            let mut stmt = tx.prepare_cached(
                "SELECT nonce FROM requests WHERE lane = ?1 AND nonce < ?2 ORDER BY nonce LIMIT ?3",
            )?;
            stmt.query_map(
                params![
                    lane.as_str(),
                    to_i64(below),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?
        };
        let (Some(first), Some(last)) = (nonces.first(), nonces.last()) else {
            return Ok(0);
        };
        let dropped = tx.execute(
            "DELETE FROM requests WHERE lane = ?1 AND nonce BETWEEN ?2 AND ?3",
            params![lane.as_str(), first, last],
        )?;
        tx.execute(
            "DELETE FROM request_txs WHERE lane = ?1 AND nonce BETWEEN ?2 AND ?3",
            params![lane.as_str(), first, last],
        )?;
        // This operator's signatures of batches wholly below: executed for good.
        tx.execute(
            "DELETE FROM attestations WHERE lane = ?1 AND first_nonce + count <= ?2",
            params![lane.as_str(), to_i64(below)],
        )?;
        let dropped = u64::try_from(dropped).unwrap_or(u64::MAX);
        tx.execute(
            "UPDATE compaction SET dropped = dropped + ?2 WHERE lane = ?1",
            params![lane.as_str(), to_i64(dropped)],
        )?;
        tx.commit()?;
        Ok(dropped)
    }

    /// Bring `lane` in from the store copy at `from` (a backup's snapshot), dropping what lies
    /// below `below`. The copy must be of this store's identity and schema; the lane must be
    /// empty here. Only handled requests come from the copy, and only those before the first
    /// request it had not seen handled (open or set aside): from that request's source block the
    /// indexer reads the chain again, so every request this replica may vote comes from the
    /// source with its checks (log quorum), never from a snapshot, and nothing a snapshot says
    /// can set a request aside (audit NEW-L3). A handled row that is open on the chain is
    /// reopened by recovery.
    pub fn restore_lane(
        &mut self,
        from: &Path,
        lane: Lane,
        below: u64,
        version: u64,
    ) -> Result<Restored, StoreError> {
        let identity: String =
            self.conn
                .query_row("SELECT value FROM meta WHERE key = 'identity'", [], |r| {
                    r.get(0)
                })?;
        self.conn.execute(
            "ATTACH DATABASE ?1 AS snap",
            [from.to_string_lossy().as_ref()],
        )?;
        let result = (|| {
            let meta = |key: &str| -> Result<Option<String>, StoreError> {
                Ok(self
                    .conn
                    .query_row("SELECT value FROM snap.meta WHERE key = ?1", [key], |r| {
                        r.get(0)
                    })
                    .optional()?)
            };
            let found = meta("identity")?.unwrap_or_default();
            if found != identity {
                return Err(StoreError::WrongIdentity {
                    found,
                    expected: identity.clone(),
                });
            }
            let schema = meta("schema_version")?.unwrap_or_default();
            if schema != SCHEMA_VERSION.to_string() {
                return Err(StoreError::Corrupt(format!(
                    "backup store has schema version {schema}, this multibridge writes {SCHEMA_VERSION}"
                )));
            }
            if !self.lane_is_empty(lane)? {
                return Err(StoreError::Corrupt(format!(
                    "{lane} already has requests here; restore only into an empty store"
                )));
            }
            let l = lane.as_str();
            let kept = keep_from(&self.conn, "snap.requests", lane, below)?;
            // The source block of the first request the backup had not seen handled.
            let reread_from: Option<i64> = self.conn.query_row(
                "SELECT MIN(src_block) FROM snap.requests
                 WHERE lane = ?1 AND nonce >= ?2 AND status != 'handled'",
                params![l, to_i64(kept)],
                |r| r.get(0),
            )?;
            let reread_from = reread_from.map(to_u64);
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let rows = tx.execute(
                "INSERT INTO requests (lane, nonce, payload_hash, payload, src_block, status, reason,
                     attempts, observed_at, updated_at, reason_detail, not_before)
                 SELECT lane, nonce, payload_hash, payload, src_block, status,
                     NULL, 0, observed_at, updated_at, NULL, NULL
                 FROM snap.requests WHERE lane = ?1 AND nonce >= ?2 AND status = 'handled'
                     AND src_block < COALESCE(?3, src_block + 1)",
                params![l, to_i64(kept), reread_from.map(to_i64)],
            )?;
            tx.execute(
                "INSERT INTO cursors (lane, next_block, updated_at, next_nonce)
                 SELECT lane, MIN(next_block, COALESCE(?3, next_block)), updated_at,
                     CASE WHEN next_nonce IS NULL THEN NULL ELSE MAX(next_nonce, ?2) END
                 FROM snap.cursors WHERE lane = ?1",
                params![l, to_i64(kept), reread_from.map(to_i64)],
            )?;
            let dropped_before: i64 = tx
                .query_row(
                    "SELECT COALESCE((SELECT dropped FROM snap.compaction WHERE lane = ?1), 0)
                        + (SELECT COUNT(*) FROM snap.requests WHERE lane = ?1 AND nonce < ?2)",
                    params![l, to_i64(kept)],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            tx.execute(
                "INSERT INTO compaction (lane, below, dropped, version) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (lane) DO UPDATE SET below = MAX(compaction.below, excluded.below),
                     dropped = MAX(compaction.dropped, excluded.dropped),
                     version = MAX(compaction.version, excluded.version)",
                params![l, to_i64(kept), dropped_before, to_i64(version)],
            )?;
            // The conservation check's totals, open requests and held releases go together,
            // and only from a snapshot that kept them by nonce (an older one's are read again
            // from the chains).
            let by_nonce: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM snap.meta WHERE key = ?1)",
                    [super::asset_totals::BY_NONCE],
                    |r| r.get(0),
                )
                .unwrap_or(false);
            if by_nonce {
                for table in super::asset_totals::TABLES {
                    let has: bool = tx.query_row(
                        "SELECT EXISTS (SELECT 1 FROM snap.sqlite_master WHERE name = ?1)",
                        [table],
                        |r| r.get(0),
                    )?;
                    if has {
                        tx.execute(
                            &format!("INSERT OR REPLACE INTO {table} SELECT * FROM snap.{table} WHERE lane = ?1"),
                            [l],
                        )?;
                    }
                }
            }
            tx.commit()?;
            Ok(Restored {
                rows: u64::try_from(rows).unwrap_or(u64::MAX),
                cursor: self.cursor(lane)?,
                below: kept,
            })
        })();
        let detached = self.conn.execute("DETACH DATABASE snap", []);
        let restored = result?;
        detached?;
        Ok(restored)
    }
}

/// Copy the store file at `store` to `to` from a read-only connection of its own: one read
/// transaction (WAL lets the relay's connection go on writing meanwhile), so the copy is a
/// consistent cut that never holds the relay's store lock.
pub fn copy_store_file(store: &Path, to: &Path) -> Result<(), StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        store,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // One pass over the whole file: a small page cache (see `Store::open_one_pass`).
    conn.pragma_update(None, "cache_size", -super::schema::ONE_PASS_CACHE_KIB)?;
    conn.execute("VACUUM INTO ?1", [to.to_string_lossy().as_ref()])?;
    Ok(())
}
