//! The relay's request store (SQLite): one row per request, keyed by (lane, nonce), with its
//! vote key, explicit status, attempts and every transaction hash sent for it; and one indexing
//! cursor per lane, advanced in the same transaction as the requests it covers.
//!
//! Status names are stored as text and are part of the operator interface: never rename them.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{B256, keccak256};
use alloy::sol_types::SolValue;
use multibridge_contracts::{Lane, Request};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

mod asset_totals;
pub use asset_totals::AssetSide;

/// Schema version written to `meta`; bump with a migration, never edit in place.
pub const SCHEMA_VERSION: u32 = 1;

/// Where a request stands, from this operator's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Indexed from a final source block, not yet sent.
    Observed,
    /// A vote transaction was sent and awaits its receipt.
    Voting,
    /// This operator's vote is on chain; the threshold is not reached yet.
    Voted,
    /// Executed on the destination (by anyone's votes).
    Handled,
    /// Will not be voted; the reason says why.
    Rejected(String),
}

impl Status {
    /// Stable stored name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Observed => "observed",
            Self::Voting => "voting",
            Self::Voted => "voted",
            Self::Handled => "handled",
            Self::Rejected(_) => "rejected",
        }
    }

    fn from_row(name: &str, reason: Option<String>) -> Result<Self, StoreError> {
        Ok(match name {
            "observed" => Self::Observed,
            "voting" => Self::Voting,
            "voted" => Self::Voted,
            "handled" => Self::Handled,
            "rejected" => Self::Rejected(reason.unwrap_or_default()),
            other => return Err(StoreError::Corrupt(format!("unknown status {other:?}"))),
        })
    }

    /// Whether the request still needs work from this relay.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Observed | Self::Voting | Self::Voted)
    }
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// Lane.
    pub lane: Lane,
    /// The request as observed.
    pub request: Request,
    /// Hash of its ABI encoding (identity of the observed payload).
    pub payload_hash: B256,
    /// Status.
    pub status: Status,
    /// Vote transactions sent so far.
    pub attempts: u32,
    /// Unix seconds when it was first indexed.
    pub observed_at: u64,
}

/// Request store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (disk, lock, corruption).
    #[error("request store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store belongs to another bridge pair or operator.
    #[error(
        "request store belongs to {found}, this relay is {expected}; point store.path elsewhere"
    )]
    WrongIdentity {
        /// What the store says.
        found: String,
        /// What this relay is.
        expected: String,
    },
    /// A row does not decode.
    #[error("request store is corrupt: {0}")]
    Corrupt(String),
    /// A final source block produced a different payload for a nonce already stored: the source
    /// RPC lied or a reorg went deeper than the confirmation depth. Voting must stop until an
    /// operator looks.
    #[error(
        "{lane} nonce {nonce}: stored payload {stored} differs from newly indexed {indexed}; a reorg deeper than the confirmation depth or a lying RPC"
    )]
    PayloadConflict {
        /// Lane.
        lane: Lane,
        /// Nonce.
        nonce: u64,
        /// Hash already stored.
        stored: B256,
        /// Hash just indexed.
        indexed: B256,
    },
}

impl StoreError {
    /// Whether retrying the same call may succeed (a busy database); the rest needs a person.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// Counts per status of one lane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneCounts {
    /// observed
    pub observed: u64,
    /// voting
    pub voting: u64,
    /// voted
    pub voted: u64,
    /// handled
    pub handled: u64,
    /// rejected
    pub rejected: u64,
    /// `observed_at` of the oldest open request.
    pub oldest_open_observed_at: Option<u64>,
    /// Highest stored nonce.
    pub max_nonce: Option<u64>,
}

/// The request store.
pub struct Store {
    conn: Connection,
}

/// Unix seconds now (the store's timestamps; 0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

/// Hash of a request's ABI encoding.
pub fn payload_hash(request: &Request) -> B256 {
    keccak256(request.abi_encode())
}

impl Store {
    /// Open (or create) the store at `path` for the relay identified by `identity` (bridge pair
    /// and operator); refuses a store written by another identity.
    pub fn open(path: &Path, identity: &str) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        Self::init(conn, identity)
    }

    /// An in-memory store (unit tests).
    pub fn open_in_memory(identity: &str) -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, identity)
    }

    fn init(conn: Connection, identity: &str) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers (status, HTTP) never block the indexer; NORMAL sync is durable across a
        // process crash, which is the failure the relay must survive.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS cursors (
                 lane TEXT PRIMARY KEY,
                 next_block INTEGER NOT NULL,
                 updated_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS requests (
                 lane TEXT NOT NULL,
                 nonce INTEGER NOT NULL,
                 payload_hash BLOB NOT NULL,
                 payload BLOB NOT NULL,
                 src_block INTEGER NOT NULL,
                 status TEXT NOT NULL,
                 reason TEXT,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 observed_at INTEGER NOT NULL,
                 updated_at INTEGER NOT NULL,
                 PRIMARY KEY (lane, nonce));
             CREATE INDEX IF NOT EXISTS requests_open ON requests (lane, status, nonce)
                 WHERE status IN ('observed', 'voting', 'voted');
             CREATE TABLE IF NOT EXISTS request_txs (
                 lane TEXT NOT NULL,
                 nonce INTEGER NOT NULL,
                 tx_hash BLOB NOT NULL,
                 sent_at INTEGER NOT NULL,
                 PRIMARY KEY (lane, nonce, tx_hash));",
        )?;
        conn.execute_batch(asset_totals::SCHEMA)?;
        let store = Self { conn };
        store.check_identity(identity)?;
        Ok(store)
    }

    fn check_identity(&self, identity: &str) -> Result<(), StoreError> {
        let found: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'identity'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match found {
            Some(found) if found != identity => Err(StoreError::WrongIdentity {
                found,
                expected: identity.to_owned(),
            }),
            Some(_) => Ok(()),
            None => {
                self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('identity', ?1), ('schema_version', ?2)",
                    params![identity, SCHEMA_VERSION.to_string()],
                )?;
                Ok(())
            }
        }
    }

    /// The next source block to index on `lane`, if indexing started.
    pub fn cursor(&self, lane: Lane) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT next_block FROM cursors WHERE lane = ?1",
                [lane.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(to_u64))
    }

    /// Store the requests found in a block range and move the cursor to `next_block`, in one
    /// transaction: after a crash either both happened or neither did. Requests already stored
    /// with the same payload are left as they are; a different payload for a stored nonce is a
    /// [`StoreError::PayloadConflict`] and nothing is written. Returns how many were new.
    pub fn record_range(
        &mut self,
        lane: Lane,
        requests: &[Request],
        next_block: u64,
    ) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let at = to_i64(unix_now());
        let mut inserted = 0usize;
        for request in requests {
            if insert_observed(&tx, lane, request, at)?.is_none() {
                inserted = inserted.saturating_add(1);
            }
        }
        tx.execute(
            "INSERT INTO cursors (lane, next_block, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (lane) DO UPDATE SET next_block = excluded.next_block, updated_at = excluded.updated_at",
            params![lane.as_str(), to_i64(next_block), at],
        )?;
        tx.commit()?;
        Ok(inserted)
    }

    /// Move the cursor back (e.g. to re-scan after a nonce gap). Never moves it forward.
    pub fn rewind_cursor(&mut self, lane: Lane, to_block: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE cursors SET next_block = MIN(next_block, ?2), updated_at = ?3 WHERE lane = ?1",
            params![lane.as_str(), to_i64(to_block), to_i64(unix_now())],
        )?;
        Ok(())
    }

    /// Source block of a stored request.
    pub fn src_block_of(&self, lane: Lane, nonce: u64) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT src_block FROM requests WHERE lane = ?1 AND nonce = ?2",
                params![lane.as_str(), to_i64(nonce)],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(to_u64))
    }

    /// One stored request.
    pub fn get(&self, lane: Lane, nonce: u64) -> Result<Option<StoredRequest>, StoreError> {
        self.conn
            .query_row(
                "SELECT nonce, payload, payload_hash, status, reason, attempts, observed_at
                 FROM requests WHERE lane = ?1 AND nonce = ?2",
                params![lane.as_str(), to_i64(nonce)],
                RawRow::read,
            )
            .optional()?
            .map(|raw| raw.into_stored(lane))
            .transpose()
    }

    /// Open requests (observed, voting, voted) of `lane` in nonce order, at most `limit`.
    pub fn open_requests(
        &self,
        lane: Lane,
        limit: usize,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        self.query_requests(
            "SELECT nonce, payload, payload_hash, status, reason, attempts, observed_at
             FROM requests WHERE lane = ?1 AND status IN ('observed', 'voting', 'voted')
             ORDER BY nonce LIMIT ?2",
            params![lane.as_str(), to_i64(limit as u64)],
            lane,
        )
    }

    /// Requests that still need this relay's vote (`observed`, `voting`) in nonce order, at most
    /// `limit`. Voted requests are not here: they wait for others and must not hold the queue.
    pub fn needing_vote(&self, lane: Lane, limit: usize) -> Result<Vec<StoredRequest>, StoreError> {
        self.query_requests(
            "SELECT nonce, payload, payload_hash, status, reason, attempts, observed_at
             FROM requests WHERE lane = ?1 AND status IN ('observed', 'voting')
             ORDER BY nonce LIMIT ?2",
            params![lane.as_str(), to_i64(limit as u64)],
            lane,
        )
    }

    /// Voted requests not looked at for `older_than_secs`, least recently checked first: the ones
    /// to re-check for their handle, round-robin.
    pub fn stale_voted(
        &self,
        lane: Lane,
        older_than_secs: u64,
        limit: usize,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        self.query_requests(
            "SELECT nonce, payload, payload_hash, status, reason, attempts, observed_at
             FROM requests WHERE lane = ?1 AND status = 'voted' AND updated_at <= ?2
             ORDER BY updated_at, nonce LIMIT ?3",
            params![
                lane.as_str(),
                to_i64(unix_now().saturating_sub(older_than_secs)),
                to_i64(limit as u64)
            ],
            lane,
        )
    }

    /// Mark a request as looked at now (moves it to the back of [`stale_voted`](Self::stale_voted)).
    pub fn touch(&mut self, lane: Lane, nonce: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE requests SET updated_at = ?3 WHERE lane = ?1 AND nonce = ?2",
            params![lane.as_str(), to_i64(nonce), to_i64(unix_now())],
        )?;
        Ok(())
    }

    fn query_requests(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        lane: Lane,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, RawRow::read)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?.into_stored(lane)?);
        }
        Ok(out)
    }

    /// Record a vote transaction sent for a request: status `voting`, attempts + 1, hash kept.
    /// A noted waiting reason stays until the request is voted or handled.
    pub fn mark_voting(&mut self, lane: Lane, nonce: u64, tx_hash: B256) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let at = to_i64(unix_now());
        tx.execute(
            "UPDATE requests SET status = 'voting', attempts = attempts + 1, updated_at = ?3
             WHERE lane = ?1 AND nonce = ?2 AND status IN ('observed', 'voting', 'voted')",
            params![lane.as_str(), to_i64(nonce), at],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO request_txs (lane, nonce, tx_hash, sent_at) VALUES (?1, ?2, ?3, ?4)",
            params![lane.as_str(), to_i64(nonce), tx_hash.as_slice(), at],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Set a request's status. `handled` is final: it is never moved back.
    pub fn set_status(
        &mut self,
        lane: Lane,
        nonce: u64,
        status: &Status,
    ) -> Result<(), StoreError> {
        let reason = match status {
            Status::Rejected(reason) => Some(reason.as_str()),
            _ => None,
        };
        self.conn.execute(
            "UPDATE requests SET status = ?3, reason = ?4, updated_at = ?5
             WHERE lane = ?1 AND nonce = ?2 AND status != 'handled'",
            params![
                lane.as_str(),
                to_i64(nonce),
                status.name(),
                reason,
                to_i64(unix_now())
            ],
        )?;
        Ok(())
    }

    /// Keep an open request open but note why it waits (e.g. the destination lacks liquidity).
    pub fn note_waiting(&mut self, lane: Lane, nonce: u64, reason: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE requests SET status = 'observed', reason = ?3, updated_at = ?4
             WHERE lane = ?1 AND nonce = ?2 AND status IN ('observed', 'voting', 'voted')",
            params![lane.as_str(), to_i64(nonce), reason, to_i64(unix_now())],
        )?;
        Ok(())
    }

    /// Every transaction hash sent for a request, oldest first.
    pub fn tx_hashes(&self, lane: Lane, nonce: u64) -> Result<Vec<B256>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT tx_hash FROM request_txs WHERE lane = ?1 AND nonce = ?2 ORDER BY sent_at, rowid",
        )?;
        let rows = stmt.query_map(params![lane.as_str(), to_i64(nonce)], |r| {
            r.get::<_, Vec<u8>>(0)
        })?;
        let mut out = Vec::new();
        for row in rows {
            let bytes = row?;
            out.push(
                B256::try_from(bytes.as_slice())
                    .map_err(|_| StoreError::Corrupt("tx hash length".into()))?,
            );
        }
        Ok(out)
    }

    /// This relay's most recent vote on `lane`: (request nonce, transaction, unix seconds sent).
    pub fn last_vote(&self, lane: Lane) -> Result<Option<(u64, B256, u64)>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT nonce, tx_hash, sent_at FROM request_txs WHERE lane = ?1
                 ORDER BY sent_at DESC, rowid DESC LIMIT 1",
                [lane.as_str()],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(nonce, hash, at)| {
            B256::try_from(hash.as_slice())
                .map(|h| (to_u64(nonce), h, to_u64(at)))
                .map_err(|_| StoreError::Corrupt("tx hash length".into()))
        })
        .transpose()
    }

    /// Nonces missing below the highest stored nonce of `lane`, starting at `from` (gap
    /// detection: each is a request the indexer must have skipped).
    pub fn missing_nonces(
        &self,
        lane: Lane,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT nonce FROM requests WHERE lane = ?1 AND nonce >= ?2 ORDER BY nonce",
        )?;
        let rows = stmt.query_map(params![lane.as_str(), to_i64(from)], |r| r.get::<_, i64>(0))?;
        let mut expected = from;
        let mut missing = Vec::new();
        for row in rows {
            let nonce = to_u64(row?);
            while expected < nonce && missing.len() < limit {
                missing.push(expected);
                expected = expected.saturating_add(1);
            }
            if missing.len() >= limit {
                break;
            }
            expected = nonce.saturating_add(1);
        }
        Ok(missing)
    }

    /// Every transaction this store recorded as sent at or after `unix_secs`, oldest first.
    pub fn txs_sent_since(&self, unix_secs: u64) -> Result<Vec<(Lane, u64, B256)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT lane, nonce, tx_hash FROM request_txs WHERE sent_at >= ?1 ORDER BY sent_at",
        )?;
        let rows = stmt.query_map(params![to_i64(unix_secs)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (lane, nonce, hash) = row?;
            let lane = Lane::ALL
                .into_iter()
                .find(|l| l.as_str() == lane)
                .ok_or_else(|| StoreError::Corrupt(format!("lane {lane:?}")))?;
            let hash = B256::try_from(hash.as_slice())
                .map_err(|_| StoreError::Corrupt("tx hash length".into()))?;
            out.push((lane, to_u64(nonce), hash));
        }
        Ok(out)
    }

    /// A new voting term starts (this replica became the lane's leader): requests whose vote
    /// was in flight in an earlier term go back to `observed`, so the voter's pre-check asks the
    /// chain whether they still need this operator's vote. Returns how many rows changed.
    pub fn reopen_in_flight(&mut self, lane: Lane) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE requests SET status = 'observed', updated_at = ?2
             WHERE lane = ?1 AND status = 'voting'",
            params![lane.as_str(), to_i64(unix_now())],
        )?)
    }

    /// Make `requests` open for a vote again, as recovery found them on the chains (unhandled,
    /// not voted by this operator): unknown ones are stored as `observed` (the cursor is not
    /// touched), stored `voting`/`voted` ones go back to `observed`. `handled` stays final; a
    /// different payload for a stored nonce is a [`StoreError::PayloadConflict`] and nothing is
    /// written. Returns how many rows changed.
    pub fn requeue(&mut self, lane: Lane, requests: &[Request]) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let at = to_i64(unix_now());
        let mut changed = 0usize;
        for request in requests {
            match insert_observed(&tx, lane, request, at)?.as_deref() {
                None => changed = changed.saturating_add(1),
                Some("voting" | "voted") => {
                    tx.execute(
                        "UPDATE requests SET status = 'observed', updated_at = ?3
                         WHERE lane = ?1 AND nonce = ?2",
                        params![lane.as_str(), to_i64(request.nonce), at],
                    )?;
                    changed = changed.saturating_add(1);
                }
                Some(_) => {}
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    /// Open requests of `lane` waiting on a destination condition, counted by noted reason.
    pub fn waiting_reasons(&self, lane: Lane) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT reason, COUNT(*) FROM requests
             WHERE lane = ?1 AND status IN ('observed', 'voting', 'voted') AND reason IS NOT NULL
             GROUP BY reason ORDER BY reason",
        )?;
        let rows = stmt.query_map([lane.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, to_u64(r.get::<_, i64>(1)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counts per status, the oldest open request and the highest nonce of `lane`.
    pub fn counts(&self, lane: Lane) -> Result<LaneCounts, StoreError> {
        let mut counts = LaneCounts::default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT status, COUNT(*) FROM requests WHERE lane = ?1 GROUP BY status",
        )?;
        let rows = stmt.query_map([lane.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (status, n) = row?;
            let n = to_u64(n);
            match status.as_str() {
                "observed" => counts.observed = n,
                "voting" => counts.voting = n,
                "voted" => counts.voted = n,
                "handled" => counts.handled = n,
                "rejected" => counts.rejected = n,
                other => return Err(StoreError::Corrupt(format!("unknown status {other:?}"))),
            }
        }
        counts.oldest_open_observed_at = self
            .conn
            .query_row(
                "SELECT MIN(observed_at) FROM requests WHERE lane = ?1 AND status IN ('observed', 'voting', 'voted')",
                [lane.as_str()],
                |r| r.get::<_, Option<i64>>(0),
            )?
            .map(to_u64);
        counts.max_nonce = self
            .conn
            .query_row(
                "SELECT MAX(nonce) FROM requests WHERE lane = ?1",
                [lane.as_str()],
                |r| r.get::<_, Option<i64>>(0),
            )?
            .map(to_u64);
        Ok(counts)
    }
}

/// Store `request` as `observed` unless its nonce is stored already. Returns `None` when it was
/// inserted, else the stored status; a different payload for the nonce is a
/// [`StoreError::PayloadConflict`].
fn insert_observed(
    tx: &rusqlite::Transaction<'_>,
    lane: Lane,
    request: &Request,
    at: i64,
) -> Result<Option<String>, StoreError> {
    let hash = payload_hash(request);
    let stored: Option<(Vec<u8>, String)> = tx
        .query_row(
            "SELECT payload_hash, status FROM requests WHERE lane = ?1 AND nonce = ?2",
            params![lane.as_str(), to_i64(request.nonce)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match stored {
        Some((stored, status)) if stored.as_slice() == hash.as_slice() => Ok(Some(status)),
        Some((stored, _)) => Err(StoreError::PayloadConflict {
            lane,
            nonce: request.nonce,
            stored: B256::try_from(stored.as_slice()).unwrap_or_default(),
            indexed: hash,
        }),
        None => {
            tx.execute(
                "INSERT INTO requests (lane, nonce, payload_hash, payload, src_block, status, observed_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'observed', ?6, ?6)",
                params![
                    lane.as_str(),
                    to_i64(request.nonce),
                    hash.as_slice(),
                    request.abi_encode(),
                    to_i64(request.srcBlockNumber),
                    at
                ],
            )?;
            Ok(None)
        }
    }
}

/// A row as read, before decoding.
struct RawRow {
    nonce: i64,
    payload: Vec<u8>,
    payload_hash: Vec<u8>,
    status: String,
    reason: Option<String>,
    attempts: i64,
    observed_at: i64,
}

impl RawRow {
    fn read(r: &rusqlite::Row<'_>) -> Result<Self, rusqlite::Error> {
        Ok(Self {
            nonce: r.get(0)?,
            payload: r.get(1)?,
            payload_hash: r.get(2)?,
            status: r.get(3)?,
            reason: r.get(4)?,
            attempts: r.get(5)?,
            observed_at: r.get(6)?,
        })
    }

    fn into_stored(self, lane: Lane) -> Result<StoredRequest, StoreError> {
        let request = Request::abi_decode(&self.payload)
            .map_err(|e| StoreError::Corrupt(format!("{lane} nonce {}: {e}", self.nonce)))?;
        Ok(StoredRequest {
            lane,
            request,
            payload_hash: B256::try_from(self.payload_hash.as_slice())
                .map_err(|_| StoreError::Corrupt("payload hash length".into()))?,
            status: Status::from_row(&self.status, self.reason)?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            observed_at: to_u64(self.observed_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, Bytes, U256};

    use super::*;

    const ID: &str = "pair 1/0x01 -> 2/0x02, operator 0x03";

    fn request(nonce: u64, amount: u64) -> Request {
        Request {
            nonce,
            kind: 0,
            from: Address::repeat_byte(1),
            to: Address::repeat_byte(2),
            token: Address::ZERO,
            amount: U256::from(amount),
            fee: U256::ZERO,
            extraData: Bytes::new(),
            srcChainId: U256::from(1),
            srcBridge: Address::repeat_byte(9),
            srcTxHash: B256::repeat_byte(u8::try_from(nonce % 250).unwrap()),
            srcBlockNumber: 100 + nonce,
            srcLogIndex: 0,
        }
    }

    #[test]
    fn requests_and_cursor_are_stored_together_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        let lane = Lane::MainToService;
        {
            let mut store = Store::open(&path, ID).unwrap();
            assert_eq!(store.cursor(lane).unwrap(), None);
            let new = store
                .record_range(lane, &[request(0, 5), request(1, 6)], 111)
                .unwrap();
            assert_eq!(new, 2);
            // Re-indexing the same range is harmless.
            assert_eq!(store.record_range(lane, &[request(1, 6)], 111).unwrap(), 0);
        }
        let store = Store::open(&path, ID).unwrap();
        assert_eq!(store.cursor(lane).unwrap(), Some(111));
        assert_eq!(store.cursor(Lane::ServiceToMain).unwrap(), None);
        let open = store.open_requests(lane, 10).unwrap();
        assert_eq!(open.len(), 2);
        assert_eq!(open[1].request, request(1, 6));
        assert_eq!(open[1].status, Status::Observed);
        assert_eq!(open[1].payload_hash, payload_hash(&request(1, 6)));
    }

    #[test]
    fn requeue_reopens_voted_stores_unknown_and_leaves_handled_and_the_cursor_alone() {
        let mut store = Store::open_in_memory(ID).unwrap();
        let lane = Lane::MainToService;
        store
            .record_range(lane, &[request(0, 1), request(1, 1), request(2, 1)], 50)
            .unwrap();
        store.set_status(lane, 0, &Status::Handled).unwrap();
        store.set_status(lane, 1, &Status::Voted).unwrap();
        let changed = store
            .requeue(
                lane,
                &[request(0, 1), request(1, 1), request(2, 1), request(7, 1)],
            )
            .unwrap();
        assert_eq!(changed, 2, "nonce 1 reopened, nonce 7 stored");
        assert_eq!(store.get(lane, 0).unwrap().unwrap().status, Status::Handled);
        assert_eq!(
            store.get(lane, 1).unwrap().unwrap().status,
            Status::Observed
        );
        assert_eq!(
            store.get(lane, 7).unwrap().unwrap().status,
            Status::Observed
        );
        assert_eq!(store.cursor(lane).unwrap(), Some(50));
        let err = store
            .requeue(lane, &[request(8, 1), request(2, 99)])
            .unwrap_err();
        assert!(matches!(err, StoreError::PayloadConflict { nonce: 2, .. }));
        assert!(store.get(lane, 8).unwrap().is_none(), "nothing written");
    }

    #[test]
    fn waiting_reasons_are_counted_per_reason_for_open_requests_only() {
        let mut store = Store::open_in_memory(ID).unwrap();
        let lane = Lane::MainToService;
        store
            .record_range(lane, &[request(0, 1), request(1, 1), request(2, 1)], 50)
            .unwrap();
        store
            .note_waiting(lane, 0, "InsufficientLiquidity")
            .unwrap();
        store
            .note_waiting(lane, 1, "InsufficientLiquidity")
            .unwrap();
        store.note_waiting(lane, 2, "TokenIsLocked").unwrap();
        store.set_status(lane, 2, &Status::Handled).unwrap();
        assert_eq!(
            store.waiting_reasons(lane).unwrap(),
            vec![("InsufficientLiquidity".to_owned(), 2)]
        );
    }

    #[test]
    fn a_different_payload_for_a_stored_nonce_is_refused_and_writes_nothing() {
        let mut store = Store::open_in_memory(ID).unwrap();
        let lane = Lane::MainToService;
        store.record_range(lane, &[request(0, 5)], 101).unwrap();
        let err = store
            .record_range(lane, &[request(1, 1), request(0, 999)], 200)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::PayloadConflict { nonce: 0, .. }),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert_eq!(store.cursor(lane).unwrap(), Some(101), "cursor not moved");
        assert!(
            store.get(lane, 1).unwrap().is_none(),
            "nothing of the range written"
        );
    }

    #[test]
    fn a_store_of_another_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        Store::open(&path, ID).unwrap();
        let err = Store::open(&path, "someone else").err().unwrap();
        assert!(matches!(err, StoreError::WrongIdentity { .. }), "{err}");
    }

    #[test]
    fn status_lifecycle_keeps_every_tx_hash_and_handled_is_final() {
        let mut store = Store::open_in_memory(ID).unwrap();
        let lane = Lane::ServiceToMain;
        store.record_range(lane, &[request(7, 1)], 108).unwrap();
        let (a, b) = (B256::repeat_byte(0xaa), B256::repeat_byte(0xbb));
        store.mark_voting(lane, 7, a).unwrap();
        store.mark_voting(lane, 7, b).unwrap();
        let row = store.get(lane, 7).unwrap().unwrap();
        assert_eq!(row.status, Status::Voting);
        assert_eq!(row.attempts, 2);
        assert_eq!(store.tx_hashes(lane, 7).unwrap(), vec![a, b]);
        store.set_status(lane, 7, &Status::Voted).unwrap();
        store.set_status(lane, 7, &Status::Handled).unwrap();
        store.set_status(lane, 7, &Status::Observed).unwrap();
        store.mark_voting(lane, 7, B256::repeat_byte(0xcc)).unwrap();
        let row = store.get(lane, 7).unwrap().unwrap();
        assert_eq!(row.status, Status::Handled, "handled never moves back");
        assert!(store.open_requests(lane, 10).unwrap().is_empty());
        store.record_range(lane, &[request(8, 1)], 109).unwrap();
        store
            .set_status(lane, 8, &Status::Rejected("token not registered".into()))
            .unwrap();
        assert_eq!(
            store.get(lane, 8).unwrap().unwrap().status,
            Status::Rejected("token not registered".into())
        );
        let counts = store.counts(lane).unwrap();
        assert_eq!(
            (counts.handled, counts.rejected, counts.observed),
            (1, 1, 0)
        );
        assert_eq!(counts.max_nonce, Some(8));
        assert_eq!(counts.oldest_open_observed_at, None);
    }

    #[test]
    fn voted_requests_are_rechecked_round_robin_and_never_block_new_ones() {
        let mut store = Store::open_in_memory(ID).unwrap();
        let lane = Lane::MainToService;
        let requests: Vec<Request> = (0..6).map(|n| request(n, 1)).collect();
        store.record_range(lane, &requests, 200).unwrap();
        for n in 0..4 {
            store.set_status(lane, n, &Status::Voted).unwrap();
        }
        let need: Vec<u64> = store
            .needing_vote(lane, 2)
            .unwrap()
            .iter()
            .map(|r| r.request.nonce)
            .collect();
        assert_eq!(
            need,
            vec![4, 5],
            "voted rows at the head do not take the window"
        );
        let stale = store.stale_voted(lane, 0, 10).unwrap();
        assert_eq!(stale.len(), 4);
        assert!(
            store.stale_voted(lane, 3600, 10).unwrap().is_empty(),
            "just checked: not stale yet"
        );
    }

    #[test]
    fn gaps_below_the_highest_nonce_are_found() {
        let mut store = Store::open_in_memory(ID).unwrap();
        let lane = Lane::MainToService;
        store
            .record_range(
                lane,
                &[request(0, 1), request(1, 1), request(4, 1), request(6, 1)],
                120,
            )
            .unwrap();
        assert_eq!(store.missing_nonces(lane, 0, 10).unwrap(), vec![2, 3, 5]);
        assert_eq!(store.missing_nonces(lane, 0, 2).unwrap(), vec![2, 3]);
        assert_eq!(store.missing_nonces(lane, 5, 10).unwrap(), vec![5]);
        store.rewind_cursor(lane, 103).unwrap();
        assert_eq!(store.cursor(lane).unwrap(), Some(103));
        store.rewind_cursor(lane, 500).unwrap();
        assert_eq!(
            store.cursor(lane).unwrap(),
            Some(103),
            "rewind never moves forward"
        );
    }
}
