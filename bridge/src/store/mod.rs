//! The relay's request store (SQLite): one row per request, keyed by (lane, nonce), with its
//! payload and payload hash, an explicit [`RequestStatus`], the reason it waits or was set
//! aside, attempts and every transaction hash sent for it; and per lane the indexing cursor,
//! advanced in the same transaction as the requests it covers, beside the first nonce not yet
//! known to be stored without a gap.
//!
//! Every change of a request's state goes through [`Store::apply`] with a [`Transition`]: the
//! table of what each transition does is in one place. Status and reason names are the shared
//! stable names of `multibridge_contracts::lifecycle` (the same strings label the metrics):
//! never rename them.
//!
//! One connection, used by the relay's tasks under a mutex ([`SharedStore`]); every call is a
//! short indexed query, so they run on the async workers directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{B256, keccak256};
use alloy::sol_types::SolValue;
use multibridge_contracts::{Lane, RejectReason, Request, RequestStatus, WaitReason};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use alloy::primitives::Address;

use crate::config::Chains;

mod asset_totals;
pub mod attestations;
pub mod claims;
mod compaction;
mod counts;
mod cursor;
mod leases;
pub mod lock;
pub mod refunds;
mod schema;
pub use asset_totals::{AssetSide, ForgedRelease, ScannedRelease, ScannedRequest};
pub use compaction::copy_store_file;
pub use leases::LeaseRecord;

/// Schema version written to `meta`; bump with a migration in [`Store::migrate`], never edit
/// in place. 2: stable reason names with a separate detail, the contiguous-nonce watermark,
/// the time before which a request is not voted (an operator standing by).
pub const SCHEMA_VERSION: u32 = 2;

/// The open statuses as an SQL list (checked against [`RequestStatus::OPEN`] by a test).
const OPEN: &str = "('observed', 'voting', 'voted')";

/// A change of one request's state. What each does to the row is in [`Store::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// A vote transaction for it was broadcast: `voting`, one more attempt, its hash kept (a
    /// noted waiting reason stays until the request is voted or handled).
    Sent {
        /// The transaction.
        tx: B256,
    },
    /// Its vote transaction was re-sent under a new hash: the hash is kept.
    Replaced {
        /// The new transaction.
        tx: B256,
    },
    /// This operator's vote is on chain: `voted`.
    Voted,
    /// Executed on the destination: `handled`.
    Handled,
    /// Still voted, not yet handled: looked at now (to the back of the re-check queue).
    Touched,
    /// Its vote is not on its way or gone (a transaction superseded or abandoned, a vote
    /// removed by a reorg): `observed` again, to be pre-checked and voted.
    Reopened,
    /// The destination cannot execute it yet: `observed` with the reason; retried later.
    Waiting {
        /// Why.
        reason: WaitReason,
        /// What the destination said, for people.
        detail: String,
    },
    /// This operator stands by for it: not voted before `until` (unix seconds), unless
    /// something else happens to it first.
    Deferred {
        /// Unix seconds.
        until: u64,
    },
    /// It can never be voted: `rejected` with the reason.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// What the destination or the node said, for people.
        detail: String,
    },
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
    pub status: RequestStatus,
    /// Why an open request waits.
    pub waiting: Option<WaitReason>,
    /// Why a rejected request was set aside.
    pub rejected: Option<RejectReason>,
    /// What the destination or the node said about the reason.
    pub detail: Option<String>,
    /// Vote transactions sent so far.
    pub attempts: u32,
    /// Unix seconds when it was first stored.
    pub observed_at: u64,
    /// Unix seconds before which this operator does not vote it (standing by), once decided.
    pub not_before: Option<u64>,
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
    /// The store was written by a newer multibridge.
    #[error(
        "request store has schema version {found}, this multibridge knows up to {known}; upgrade multibridge or point store.path elsewhere"
    )]
    NewerSchema {
        /// Version in the file.
        found: u32,
        /// Newest this build knows.
        known: u32,
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
    /// By status, in [`RequestStatus::ALL`] order.
    pub by_status: [u64; 5],
    /// `observed_at` of the oldest open request.
    pub oldest_open_observed_at: Option<u64>,
    /// Highest stored nonce.
    pub max_nonce: Option<u64>,
}

impl LaneCounts {
    /// Requests with `status`.
    pub fn of(&self, status: RequestStatus) -> u64 {
        RequestStatus::ALL
            .iter()
            .position(|s| *s == status)
            .and_then(|i| self.by_status.get(i))
            .copied()
            .unwrap_or(0)
    }
}

/// How many requests of a lane have one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonCount<R> {
    /// The reason.
    pub reason: R,
    /// How many requests have it.
    pub requests: u64,
    /// One of their details (what the destination or node said).
    pub detail: Option<String>,
    /// The lowest nonce with it.
    pub first_nonce: u64,
}

/// The request store.
pub struct Store {
    conn: Connection,
}

/// The store shared by a relay's tasks. The lock is held for one short query at a time; a
/// panic while holding it leaves the database consistent (SQLite transactions), so a poisoned
/// lock is taken over rather than spreading the panic.
#[derive(Clone)]
pub struct SharedStore {
    store: Arc<Mutex<Store>>,
    /// Counts the signatures this relay stored ([`record_attestation`](Self::record_attestation)),
    /// read without the lock: what serves the signatures knows when an answer it keeps is stale.
    attestations: Arc<AtomicU64>,
}

impl SharedStore {
    /// Share `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store: Arc::new(Mutex::new(store)),
            attestations: Arc::default(),
        }
    }

    /// The store, for one short use.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Store this operator's signature of a batch ([`Store::put_attestation`]) and count it in
    /// [`attestations_version`](Self::attestations_version).
    pub fn record_attestation(
        &self,
        lane: multibridge_contracts::Lane,
        own: &attestations::OwnAttestation,
    ) -> Result<(), StoreError> {
        self.lock().put_attestation(lane, own)?;
        self.attestations.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// How many signatures [`record_attestation`](Self::record_attestation) stored so far: an
    /// answer read from the store at one version holds every signature stored before it.
    pub fn attestations_version(&self) -> u64 {
        self.attestations.load(Ordering::Acquire)
    }
}

/// The identity a store is bound to: the bridge pair and the operator of `config`.
pub fn identity(chains: &Chains, operator: Address) -> String {
    format!(
        "{}/{} <-> {}/{} operator {}",
        chains.main.chain_id,
        chains.main.bridge,
        chains.service.chain_id,
        chains.service.bridge,
        operator
    )
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

/// The columns [`RawRow::read`] expects, in order.
const ROW: &str = "nonce, payload, payload_hash, status, reason, reason_detail, attempts, observed_at, not_before";

/// The fresh requests needing a vote, after `SELECT <columns>`: `?1` lane, `?2` limit, `?3` now.
/// The `requests_fresh` index is made for this clause (with `nonce` alone, it is all it reads).
pub(super) const FRESH_NEEDING_VOTE: &str = "FROM requests WHERE lane = ?1
    AND status = 'observed' AND reason IS NULL AND (not_before IS NULL OR not_before <= ?3)
    ORDER BY nonce LIMIT ?2";

/// The lane's last vote transaction (`?1` lane): read every watcher round, from the end of the
/// `request_txs_sent` index (sorting every transaction the lane ever sent was a scan a round).
pub(super) const LAST_VOTE: &str = "SELECT nonce, tx_hash, sent_at FROM request_txs WHERE lane = ?1
     ORDER BY sent_at DESC, rowid DESC LIMIT 1";

impl Store {
    /// Source block of a stored request.
    pub fn src_block_of(&self, lane: Lane, nonce: u64) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT src_block FROM requests WHERE lane = ?1 AND nonce = ?2")?
            .query_row(params![lane.as_str(), to_i64(nonce)], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(to_u64))
    }

    /// Whether the guardian already acted on `breach`.
    pub fn guardian_breach_known(&self, breach: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM meta WHERE key = ?1")?
            .query_row(params![format!("guardian/{breach}")], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Record that the guardian acted on `breach` (`true`: newly recorded; `false`: it had
    /// been, by this or an earlier process — a breach is acted on once, so an owner's resume is
    /// never overruled by the same finding after a restart).
    pub fn record_guardian_breach(&self, breach: &str) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
            rusqlite::params![format!("guardian/{breach}"), unix_now().to_string()],
        )?;
        Ok(changed == 1)
    }

    /// One stored request.
    pub fn get(&self, lane: Lane, nonce: u64) -> Result<Option<StoredRequest>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {ROW} FROM requests WHERE lane = ?1 AND nonce = ?2"
            ))?
            .query_row(params![lane.as_str(), to_i64(nonce)], RawRow::read)
            .optional()?
            .map(|raw| raw.into_stored(lane))
            .transpose()
    }

    /// When request `nonce` of `lane` was first indexed (unix seconds), without reading its
    /// payload.
    pub fn observed_at(&self, lane: Lane, nonce: u64) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT observed_at FROM requests WHERE lane = ?1 AND nonce = ?2")?
            .query_row(params![lane.as_str(), to_i64(nonce)], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(|at| u64::try_from(at).unwrap_or_default()))
    }

    /// Execute one statement, prepared once per connection (a step applies thousands of
    /// transitions: parsing each again was a visible share of a relay's CPU).
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
        Ok(self.conn.prepare_cached(sql)?.execute(params)?)
    }

    /// Run `f` in one write transaction: many transitions, one commit (a commit per
    /// transition wrote every touched page to the WAL again — a step settling a thousand
    /// requests did it a thousand times). Rolled back if `f` fails.
    pub fn in_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.exec("BEGIN IMMEDIATE", [])?;
        let result = f(self).and_then(|value| {
            self.exec("COMMIT", [])?;
            Ok(value)
        });
        if result.is_err() && !self.conn.is_autocommit() {
            // Best effort: the error that made it roll back is the one to report.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    /// Open requests (observed, voting, voted) of `lane` in nonce order, at most `limit`.
    pub fn open_requests(
        &self,
        lane: Lane,
        limit: usize,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        self.query_requests(
            &format!(
                "SELECT {ROW} FROM requests WHERE lane = ?1 AND status IN {OPEN}
                 ORDER BY nonce LIMIT ?2"
            ),
            params![lane.as_str(), to_i64(limit as u64)],
            lane,
        )
    }

    /// Requests that need this relay's vote now, in nonce order: at most `limit` fresh
    /// `observed` ones and at most `waiting_limit` of those waiting for a destination condition
    /// whose `retry_after_secs` passed (two bounded reads, so however many wait they never
    /// push the fresh ones out of view); none deferred to later. Voted requests are not here:
    /// they wait for others and must not hold the queue; `voting` ones are in flight.
    pub fn needing_vote(
        &self,
        lane: Lane,
        retry_after_secs: u64,
        limit: usize,
        waiting_limit: usize,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let mut rows = self
            .select_needing_vote(
                ROW,
                lane,
                retry_after_secs,
                limit,
                waiting_limit,
                RawRow::read,
            )?
            .into_iter()
            .map(|raw| raw.into_stored(lane))
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort_unstable_by_key(|r| r.request.nonce);
        Ok(rows)
    }

    /// The nonces of the requests [`needing_vote`](Self::needing_vote) returns, without their
    /// rows: what an attested step looks ahead at (its batches read the payloads they need when
    /// composed). The fresh ones come from the `requests_fresh` index alone.
    pub fn needing_vote_nonces(
        &self,
        lane: Lane,
        retry_after_secs: u64,
        limit: usize,
        waiting_limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let mut nonces: Vec<u64> = self
            .select_needing_vote("nonce", lane, retry_after_secs, limit, waiting_limit, |r| {
                r.get::<_, i64>(0)
            })?
            .into_iter()
            .map(|n| u64::try_from(n).unwrap_or_default())
            .collect();
        nonces.sort_unstable();
        Ok(nonces)
    }

    /// `columns` of the requests [`needing_vote`](Self::needing_vote) names, each read by
    /// `read`: the fresh ones, then the waiting ones due again (not sorted together).
    fn select_needing_vote<T>(
        &self,
        columns: &str,
        lane: Lane,
        retry_after_secs: u64,
        limit: usize,
        waiting_limit: usize,
        read: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let now = unix_now();
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {columns} {FRESH_NEEDING_VOTE}"))?;
        let mut out = stmt
            .query_map(
                params![lane.as_str(), to_i64(limit as u64), to_i64(now)],
                &read,
            )?
            .collect::<Result<Vec<T>, _>>()?;
        if waiting_limit > 0 {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {columns} FROM requests WHERE lane = ?1 AND status = 'observed'
                 AND reason IS NOT NULL AND updated_at <= ?2
                 AND (not_before IS NULL OR not_before <= ?4)
                 ORDER BY nonce LIMIT ?3"
            ))?;
            let waiting = stmt.query_map(
                params![
                    lane.as_str(),
                    to_i64(now.saturating_sub(retry_after_secs)),
                    to_i64(waiting_limit as u64),
                    to_i64(now)
                ],
                &read,
            )?;
            for row in waiting {
                out.push(row?);
            }
        }
        Ok(out)
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
            &format!(
                "SELECT {ROW} FROM requests WHERE lane = ?1 AND status = 'voted' AND updated_at <= ?2
                 ORDER BY updated_at, nonce LIMIT ?3"
            ),
            params![
                lane.as_str(),
                to_i64(unix_now().saturating_sub(older_than_secs)),
                to_i64(limit as u64)
            ],
            lane,
        )
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

    /// Apply one transition to request `nonce` of `lane`. `handled` and `rejected` are final
    /// for every transition here (only [`requeue`](Self::requeue) reopens, on the chain's word).
    /// Returns whether the row changed.
    pub fn apply(
        &mut self,
        lane: Lane,
        nonce: u64,
        transition: &Transition,
    ) -> Result<bool, StoreError> {
        let at = to_i64(unix_now());
        let key = params![lane.as_str(), to_i64(nonce), at];
        let not_final = "status NOT IN ('handled', 'rejected')";
        let changed = match transition {
            Transition::Sent { tx: hash } => {
                // A savepoint: the same inside a caller's transaction (`in_transaction`) as out.
                let tx = self.conn.savepoint()?;
                let changed = tx
                    .prepare_cached(&format!(
                        "UPDATE requests SET status = 'voting', attempts = attempts + 1, updated_at = ?3
                         WHERE lane = ?1 AND nonce = ?2 AND status IN {OPEN}"
                    ))?
                    .execute(key)?;
                record_tx(&tx, lane, nonce, *hash, at)?;
                tx.commit()?;
                changed
            }
            Transition::Replaced { tx: hash } => {
                record_tx(&self.conn, lane, nonce, *hash, at)?;
                1
            }
            Transition::Voted => self.exec(
                &format!(
                    "UPDATE requests SET status = 'voted', reason = NULL, reason_detail = NULL,
                     updated_at = ?3 WHERE lane = ?1 AND nonce = ?2 AND {not_final}"
                ),
                key,
            )?,
            Transition::Handled => self.exec(
                "UPDATE requests SET status = 'handled', reason = NULL, reason_detail = NULL,
                 updated_at = ?3 WHERE lane = ?1 AND nonce = ?2 AND status != 'handled'",
                key,
            )?,
            Transition::Touched => self.exec(
                "UPDATE requests SET updated_at = ?3 WHERE lane = ?1 AND nonce = ?2",
                key,
            )?,
            Transition::Reopened => self.exec(
                &format!(
                    "UPDATE requests SET status = 'observed', reason = NULL, reason_detail = NULL,
                     updated_at = ?3 WHERE lane = ?1 AND nonce = ?2 AND {not_final}"
                ),
                key,
            )?,
            Transition::Waiting { reason, detail } => self.exec(
                &format!(
                    "UPDATE requests SET status = 'observed', reason = ?4, reason_detail = ?5,
                     updated_at = ?3 WHERE lane = ?1 AND nonce = ?2 AND {not_final}"
                ),
                params![lane.as_str(), to_i64(nonce), at, reason.as_str(), detail],
            )?,
            Transition::Deferred { until } => self.exec(
                "UPDATE requests SET not_before = ?4 WHERE lane = ?1 AND nonce = ?2 AND status = 'observed'",
                params![lane.as_str(), to_i64(nonce), at, to_i64(*until)],
            )?,
            Transition::Rejected { reason, detail } => self.exec(
                &format!(
                    "UPDATE requests SET status = 'rejected', reason = ?4, reason_detail = ?5,
                     updated_at = ?3 WHERE lane = ?1 AND nonce = ?2 AND {not_final}"
                ),
                params![lane.as_str(), to_i64(nonce), at, reason.as_str(), detail],
            )?,
        };
        Ok(changed > 0)
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
            out.push(hash_of(&row?)?);
        }
        Ok(out)
    }

    /// This relay's most recent vote on `lane`: (request nonce, transaction, unix seconds sent).
    pub fn last_vote(&self, lane: Lane) -> Result<Option<(u64, B256, u64)>, StoreError> {
        let row = self
            .conn
            .query_row(LAST_VOTE, [lane.as_str()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()?;
        row.map(|(nonce, hash, at)| Ok((to_u64(nonce), hash_of(&hash)?, to_u64(at))))
            .transpose()
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
            let lane = lane
                .parse::<Lane>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push((lane, to_u64(nonce), hash_of(&hash)?));
        }
        Ok(out)
    }

    /// The destination's vote window moved up to `end`: requests below it that waited for the
    /// window are open for a vote at once (not after `retry_after`: a backlog larger than the
    /// window would otherwise idle in steps of it). Returns how many rows changed.
    pub fn release_window_waits(&mut self, lane: Lane, end: u64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE requests SET reason = NULL, reason_detail = NULL, updated_at = ?3
             WHERE lane = ?1 AND status = 'observed' AND reason = ?4 AND nonce < ?2",
            params![
                lane.as_str(),
                to_i64(end),
                to_i64(unix_now()),
                WaitReason::VoteWindow.as_str()
            ],
        )?)
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
    /// touched), stored `voting`/`voted` ones go back to `observed`, and so do `handled` ones —
    /// the destination says open, so a reorg removed the handle (or a node lied when it was
    /// read). `rejected` stays; a different payload for a stored nonce is a [`StoreError::PayloadConflict`] and
    /// nothing is written. Returns how many rows changed.
    pub fn requeue(&mut self, lane: Lane, requests: &[Request]) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let at = to_i64(unix_now());
        let mut changed = 0usize;
        for request in requests {
            match insert_observed(&tx, lane, request, at)? {
                None => changed = changed.saturating_add(1),
                Some(RequestStatus::Rejected) => {
                    // Set aside as oversized: looked at again (its size may not have been the
                    // cause: a full block, a passing condition); other reasons stay.
                    let reopened = tx.execute(
                        "UPDATE requests SET status = 'observed', reason = NULL,
                         reason_detail = NULL, updated_at = ?3
                         WHERE lane = ?1 AND nonce = ?2 AND status = 'rejected' AND reason = ?4",
                        params![
                            lane.as_str(),
                            to_i64(request.nonce),
                            at,
                            RejectReason::Oversized.as_str()
                        ],
                    )?;
                    changed = changed.saturating_add(reopened);
                }
                Some(RequestStatus::Voting | RequestStatus::Voted | RequestStatus::Handled) => {
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
}

#[cfg(test)]
impl Store {
    /// Make every row of `lane` look `secs` older (unit tests of pauses).
    pub(crate) fn age_rows(&mut self, lane: Lane, secs: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE requests SET updated_at = updated_at - ?2, observed_at = observed_at - ?2,
                 not_before = not_before - ?2
             WHERE lane = ?1",
            params![lane.as_str(), to_i64(secs)],
        )?;
        Ok(())
    }
}

fn parse_status(name: &str) -> Result<RequestStatus, StoreError> {
    name.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown status {name:?}")))
}

fn hash_of(bytes: &[u8]) -> Result<B256, StoreError> {
    B256::try_from(bytes).map_err(|_| StoreError::Corrupt("tx hash length".into()))
}

fn record_tx(
    conn: &Connection,
    lane: Lane,
    nonce: u64,
    hash: B256,
    at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO request_txs (lane, nonce, tx_hash, sent_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![lane.as_str(), to_i64(nonce), hash.as_slice(), at])?;
    Ok(())
}

/// Store `request` as `observed` unless its nonce is stored already. Returns `None` when it was
/// inserted, else the stored status; a different payload for the nonce is a
/// [`StoreError::PayloadConflict`].
fn insert_observed(
    tx: &rusqlite::Transaction<'_>,
    lane: Lane,
    request: &Request,
    at: i64,
) -> Result<Option<RequestStatus>, StoreError> {
    // Statements prepared once per connection: the indexer stores a backlog of thousands of
    // requests a second, and parsing both statements again for each was most of its CPU.
    let payload = request.abi_encode();
    let hash = keccak256(&payload);
    let stored: Option<(Vec<u8>, String)> = tx
        .prepare_cached("SELECT payload_hash, status FROM requests WHERE lane = ?1 AND nonce = ?2")?
        .query_row(params![lane.as_str(), to_i64(request.nonce)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match stored {
        Some((stored, status)) if stored.as_slice() == hash.as_slice() => {
            Ok(Some(parse_status(&status)?))
        }
        Some((stored, _)) => Err(StoreError::PayloadConflict {
            lane,
            nonce: request.nonce,
            stored: B256::try_from(stored.as_slice()).unwrap_or_default(),
            indexed: hash,
        }),
        None => {
            tx.prepare_cached(
                "INSERT INTO requests (lane, nonce, payload_hash, payload, src_block, status, observed_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'observed', ?6, ?6)",
            )?
            .execute(params![
                lane.as_str(),
                to_i64(request.nonce),
                hash.as_slice(),
                payload,
                to_i64(request.srcBlockNumber),
                at
            ])?;
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
    detail: Option<String>,
    attempts: i64,
    observed_at: i64,
    not_before: Option<i64>,
}

impl RawRow {
    fn read(r: &rusqlite::Row<'_>) -> Result<Self, rusqlite::Error> {
        Ok(Self {
            nonce: r.get(0)?,
            payload: r.get(1)?,
            payload_hash: r.get(2)?,
            status: r.get(3)?,
            reason: r.get(4)?,
            detail: r.get(5)?,
            attempts: r.get(6)?,
            observed_at: r.get(7)?,
            not_before: r.get(8)?,
        })
    }

    fn into_stored(self, lane: Lane) -> Result<StoredRequest, StoreError> {
        let request = Request::abi_decode(&self.payload)
            .map_err(|e| StoreError::Corrupt(format!("{lane} nonce {}: {e}", self.nonce)))?;
        let payload_hash = B256::try_from(self.payload_hash.as_slice())
            .map_err(|_| StoreError::Corrupt("payload hash length".into()))?;
        // The payload must still be the one its hash names (a bit flip or a hand edit).
        if keccak256(&self.payload) != payload_hash {
            return Err(StoreError::Corrupt(format!(
                "{lane} nonce {}: payload does not match its stored hash",
                self.nonce
            )));
        }
        let status = parse_status(&self.status)?;
        let (waiting, rejected) = match (status, self.reason.as_deref()) {
            (_, None) => (None, None),
            (RequestStatus::Rejected, Some(name)) => (None, name.parse().ok()),
            (s, Some(name)) if s.is_open() => (name.parse().ok(), None),
            _ => (None, None),
        };
        Ok(StoredRequest {
            lane,
            request,
            payload_hash,
            status,
            waiting,
            rejected,
            detail: self.detail,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            observed_at: to_u64(self.observed_at),
            not_before: self.not_before.map(to_u64),
        })
    }
}

#[cfg(test)]
mod tests;
