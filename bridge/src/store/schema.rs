//! Opening the store: the SQLite settings, the schema, the identity check (a store belongs to one
//! bridge pair and operator) and the migrations between schema versions.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::*;

/// The page cache of a one-pass backup connection, KiB.
pub const ONE_PASS_CACHE_KIB: i64 = 256;

impl Store {
    /// Open (or create) the store at `path` for the relay identified by `identity` (bridge pair
    /// and operator); refuses a store written by another identity or a newer version.
    pub fn open(path: &Path, identity: &str) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        Self::init(conn, identity)
    }

    /// A store file opened for one pass of backup work (a copy read, compacted, vacuumed):
    /// a page cache of [`ONE_PASS_CACHE_KIB`] instead of the relay's 2 MB, which each such
    /// connection otherwise filled (heaptrack: SQLite held 6.5 MiB at a backup of a 100,000-row
    /// store, against 2.2 MiB in the relay's own connections).
    pub fn open_one_pass(path: &Path, identity: &str) -> Result<Self, StoreError> {
        let store = Self::open(path, identity)?;
        store
            .conn
            .pragma_update(None, "cache_size", -ONE_PASS_CACHE_KIB)?;
        Ok(store)
    }

    /// The page cache of this connection, in KiB.
    #[cfg(test)]
    pub(crate) fn cache_kib(&self) -> Result<i64, StoreError> {
        let size: i64 = self
            .conn
            .pragma_query_value(None, "cache_size", |r| r.get(0))?;
        Ok(if size < 0 {
            size.saturating_neg()
        } else {
            // Pages: the page size is 4 KiB.
            size.saturating_mul(4)
        })
    }

    /// An in-memory store (unit tests).
    pub fn open_in_memory(identity: &str) -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, identity)
    }

    pub(super) fn init(conn: Connection, identity: &str) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers (status, HTTP) never block the indexer; NORMAL sync is durable across a
        // process crash, which is the failure the relay must survive. A small page cache: the
        // relay reads a bounded window of rows, never the whole table.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -2_000)?;
        // Every statement a relay runs per request, per batch or per round is prepared once and
        // kept (`prepare_cached`): more of them than rusqlite's default of 16, which evicted and
        // parsed them again in turn. The store has 56 `prepare_cached` sites, several of which
        // build their SQL from parts (one site, several statements), and the watcher's round and
        // the voter's step between them run most: 64 could evict in turn. A kept statement costs
        // a few KiB, and only statements that ran are kept.
        conn.set_prepared_statement_cache_capacity(128);
        // The query planner's stability guarantee: a kept statement keeps its plan. Without it
        // SQLite re-plans a kept statement on every run whose parameters it may plan by (a
        // `LIMIT ?`, a parameter beside a partial index's condition), so every step of every
        // lane parsed its SQL again — the largest share of an idle hub relay's SQLite time
        // (issue 54). Every plan the store depends on names its statuses as literals, not
        // parameters, so no plan is lost (the query-plan tests read them).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
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
        conn.execute_batch(compaction::SCHEMA)?;
        conn.execute_batch(claims::SCHEMA)?;
        conn.execute_batch(leases::SCHEMA)?;
        conn.execute_batch(attestations::SCHEMA)?;
        conn.execute_batch(refunds::SCHEMA)?;
        let store = Self { conn };
        store.check_identity(identity)?;
        store.migrate()?;
        store.upgrade_conservation()?;
        store.conn.execute_batch(attestations::FRESH_NONCES_INDEX)?;
        store.conn.execute_batch(counts::SCHEMA)?;
        store.conn.execute_batch(counts::RECOUNT)?;
        Ok(store)
    }

    pub(super) fn check_identity(&self, identity: &str) -> Result<(), StoreError> {
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
                // A new store starts at version 1 and is migrated like an old one.
                self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('identity', ?1), ('schema_version', '1')",
                    params![identity],
                )?;
                Ok(())
            }
        }
    }

    pub(super) fn schema_version(&self) -> Result<u32, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let text = text.unwrap_or_else(|| "1".to_owned());
        text.parse()
            .map_err(|_| StoreError::Corrupt(format!("schema_version {text:?}")))
    }

    /// Bring an older store to [`SCHEMA_VERSION`], each step in its own transaction.
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found < 2 {
            // Version 1 kept free-text reasons; version 2 keeps the stable name and the text
            // beside it, and the contiguous-nonce watermark per lane.
            let mut mapping = String::from("CASE");
            for (needle, reason) in [
                ("InsufficientLiquidity", WaitReason::InsufficientLiquidity),
                ("TokenIsLocked", WaitReason::TokenLocked),
                ("TokenNotRegistered", WaitReason::TokenNotRegistered),
                ("BridgePaused", WaitReason::Paused),
                ("RateLimited", WaitReason::RateLimited),
            ] {
                mapping.push_str(&format!(
                    " WHEN reason LIKE '%{needle}%' THEN '{}'",
                    reason.as_str()
                ));
            }
            mapping.push_str(&format!(" ELSE '{}' END", WaitReason::Other.as_str()));
            self.conn.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 ALTER TABLE requests ADD COLUMN reason_detail TEXT;
                 ALTER TABLE requests ADD COLUMN not_before INTEGER;
                 ALTER TABLE cursors ADD COLUMN next_nonce INTEGER;
                 UPDATE requests SET reason_detail = reason, reason = {mapping}
                     WHERE reason IS NOT NULL AND status IN {OPEN};
                 UPDATE requests SET reason_detail = reason, reason = NULL
                     WHERE reason IS NOT NULL AND status NOT IN {OPEN};
                 UPDATE meta SET value = '2' WHERE key = 'schema_version';
                 COMMIT;"
            ))?;
        }
        Ok(())
    }
}
