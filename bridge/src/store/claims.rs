//! The claims history the dashboard shows: every `Claim` filed in the registry against a lane
//! service of this bridge pair, with whether and when the request it names was handled. Kept in
//! the relay's store so it survives restarts; the scan position moves in the same transaction
//! as the claims it read, so a crash never loses or doubles one.

use alloy::primitives::{Address, B256};
use multibridge_contracts::Lane;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::{Store, StoreError, to_i64, to_u64};

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS claims (
        tx_hash BLOB NOT NULL,
        log_index INTEGER NOT NULL,
        block INTEGER NOT NULL,
        filed_at INTEGER NOT NULL,
        service BLOB NOT NULL,
        operator BLOB NOT NULL,
        lane TEXT NOT NULL,
        nonce INTEGER NOT NULL,
        claimant BLOB NOT NULL,
        location TEXT NOT NULL,
        resolved_at INTEGER,
        handle_tx BLOB,
        handle_block INTEGER,
        PRIMARY KEY (tx_hash, log_index));
    CREATE INDEX IF NOT EXISTS claims_open ON claims (lane, nonce) WHERE resolved_at IS NULL;
    CREATE INDEX IF NOT EXISTS claims_by_block ON claims (block, log_index);
    CREATE TABLE IF NOT EXISTS claims_scan (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        next_block INTEGER NOT NULL);";

/// One claim as filed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimRecord {
    /// The transaction that filed it.
    pub tx_hash: B256,
    /// Its log's index in the block.
    pub log_index: u64,
    /// Main-chain block.
    pub block: u64,
    /// The block's unix time.
    pub filed_at: u64,
    /// The lane service it was filed against.
    pub service: B256,
    /// That service's operator.
    pub operator: Address,
    /// The lane of the request it names.
    pub lane: Lane,
    /// The request nonce it names.
    pub nonce: u64,
    /// Who filed it.
    pub claimant: Address,
    /// The service's location when it was filed (the one that failed the user).
    pub location: String,
}

/// A claim with what became of its request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimEntry {
    /// The claim.
    #[serde(flatten)]
    pub claim: ClaimRecord,
    /// Unix time of the handle's block once the request is handled.
    pub resolved_at: Option<u64>,
    /// The handle's transaction (when it was found).
    pub handle_tx: Option<B256>,
    /// The handle's block (when it was found).
    pub handle_block: Option<u64>,
}

/// How a claim's request was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// Unix time of the handle.
    pub at: u64,
    /// The handle's transaction and block, when found.
    pub handle: Option<(B256, u64)>,
}

fn address(bytes: Vec<u8>) -> Result<Address, StoreError> {
    (bytes.len() == 20)
        .then(|| Address::from_slice(&bytes))
        .ok_or_else(|| StoreError::Corrupt(format!("claims: address of {} bytes", bytes.len())))
}

fn hash(bytes: Vec<u8>) -> Result<B256, StoreError> {
    (bytes.len() == 32)
        .then(|| B256::from_slice(&bytes))
        .ok_or_else(|| StoreError::Corrupt(format!("claims: hash of {} bytes", bytes.len())))
}

type RawClaim = (
    Vec<u8>,
    i64,
    i64,
    i64,
    Vec<u8>,
    Vec<u8>,
    String,
    i64,
    Vec<u8>,
    String,
    Option<i64>,
    Option<Vec<u8>>,
    Option<i64>,
);

fn entry(raw: RawClaim) -> Result<ClaimEntry, StoreError> {
    let (tx, log_index, block, filed_at, service, operator, lane, nonce, claimant, location) = (
        raw.0, raw.1, raw.2, raw.3, raw.4, raw.5, raw.6, raw.7, raw.8, raw.9,
    );
    Ok(ClaimEntry {
        claim: ClaimRecord {
            tx_hash: hash(tx)?,
            log_index: to_u64(log_index),
            block: to_u64(block),
            filed_at: to_u64(filed_at),
            service: hash(service)?,
            operator: address(operator)?,
            lane: lane
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("claims: lane {lane:?}")))?,
            nonce: to_u64(nonce),
            claimant: address(claimant)?,
            location,
        },
        resolved_at: raw.10.map(to_u64),
        handle_tx: raw.11.map(hash).transpose()?,
        handle_block: raw.12.map(to_u64),
    })
}

impl Store {
    /// The next main-chain block the claims scan reads (`None` before the first scan).
    pub fn claims_next_block(&self) -> Result<Option<u64>, StoreError> {
        next_block(&self.conn)
    }

    /// Record the claims found below `next_block` and move the scan there, in one transaction
    /// (a claim already recorded is left as it is). Returns how many were new.
    pub fn record_claims(
        &mut self,
        claims: &[ClaimRecord],
        next_block: u64,
    ) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut new = 0usize;
        for c in claims {
            new = new.saturating_add(tx.execute(
                "INSERT OR IGNORE INTO claims (tx_hash, log_index, block, filed_at, service, operator, lane, nonce, claimant, location)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    c.tx_hash.as_slice(),
                    to_i64(c.log_index),
                    to_i64(c.block),
                    to_i64(c.filed_at),
                    c.service.as_slice(),
                    c.operator.as_slice(),
                    c.lane.as_str(),
                    to_i64(c.nonce),
                    c.claimant.as_slice(),
                    c.location,
                ],
            )?);
        }
        tx.execute(
            "INSERT INTO claims_scan (id, next_block) VALUES (0, ?1)
             ON CONFLICT (id) DO UPDATE SET next_block = MAX(next_block, excluded.next_block)",
            params![to_i64(next_block)],
        )?;
        tx.commit()?;
        Ok(new)
    }

    /// The distinct requests named by claims not resolved yet, oldest claim first, at most
    /// `limit`.
    pub fn unresolved_claims(&self, limit: usize) -> Result<Vec<(Lane, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT lane, nonce FROM claims WHERE resolved_at IS NULL
             GROUP BY lane, nonce ORDER BY MIN(block) LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![to_i64(limit as u64)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (lane, nonce) = row?;
            let lane = lane
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("claims: lane {lane:?}")))?;
            out.push((lane, to_u64(nonce)));
        }
        Ok(out)
    }

    /// Mark every claim naming `lane`/`nonce` resolved.
    pub fn resolve_claims(
        &mut self,
        lane: Lane,
        nonce: u64,
        resolution: Resolution,
    ) -> Result<usize, StoreError> {
        let (tx, block) = resolution
            .handle
            .map_or((None, None), |(tx, block)| (Some(tx), Some(block)));
        Ok(self.conn.execute(
            "UPDATE claims SET resolved_at = ?3, handle_tx = ?4, handle_block = ?5
             WHERE lane = ?1 AND nonce = ?2 AND resolved_at IS NULL",
            params![
                lane.as_str(),
                to_i64(nonce),
                to_i64(resolution.at),
                tx.as_ref().map(|t| t.as_slice().to_vec()),
                block.map(to_i64),
            ],
        )?)
    }

    /// Claims newest first: at most `limit`, skipping `offset`; with `about`, only those naming
    /// that request.
    pub fn claims(
        &self,
        about: Option<(Lane, u64)>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ClaimEntry>, StoreError> {
        claims_page(&self.conn, about, limit, offset)
    }

    /// Claims recorded, and of them still unresolved.
    pub fn claim_counts(&self) -> Result<(u64, u64), StoreError> {
        counts(&self.conn)
    }
}

/// The next main-chain block the claims history reads.
fn next_block(conn: &Connection) -> Result<Option<u64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT next_block FROM claims_scan WHERE id = 0")?
        .query_row([], |r| r.get::<_, i64>(0))
        .optional()?
        .map(to_u64))
}

/// Claims newest first (along the block index): at most `limit`, skipping `offset`; with
/// `about`, only those naming that request.
fn claims_page(
    conn: &Connection,
    about: Option<(Lane, u64)>,
    limit: usize,
    offset: usize,
) -> Result<Vec<ClaimEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT tx_hash, log_index, block, filed_at, service, operator, lane, nonce, claimant,
                location, resolved_at, handle_tx, handle_block
         FROM claims WHERE (?1 IS NULL OR (lane = ?1 AND nonce = ?2))
         ORDER BY block DESC, log_index DESC LIMIT ?3 OFFSET ?4",
    )?;
    let rows = stmt.query_map(
        params![
            about.map(|(l, _)| l.as_str()),
            about.map(|(_, n)| to_i64(n)),
            to_i64(limit as u64),
            to_i64(offset as u64)
        ],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
            ))
        },
    )?;
    rows.map(|r| entry(r?)).collect()
}

/// Claims recorded, and of them still unresolved.
fn counts(conn: &Connection) -> Result<(u64, u64), StoreError> {
    let (all, open): (i64, i64) = conn
        .prepare_cached("SELECT COUNT(*), COUNT(*) - COUNT(resolved_at) FROM claims")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((to_u64(all), to_u64(open)))
}

/// One page of the claims history with its counts, as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct ClaimsPage {
    /// The claims of the page, newest first.
    pub claims: Vec<ClaimEntry>,
    /// Claims recorded.
    pub all: u64,
    /// Of them still unresolved.
    pub open: u64,
    /// Next main-chain block the history reads.
    pub next_block: Option<u64>,
}

/// The dashboard's reads of the claims history through a read-only connection of its own (the
/// store is in WAL mode: these reads neither wait for the relay's writes nor hold them up, and a
/// visitor never holds the relay's store lock).
#[derive(Clone)]
pub struct ClaimsReader {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
}

impl ClaimsReader {
    /// A reader of the store file at `path`, opened at the first read.
    pub fn of_file(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            conn: Arc::default(),
        }
    }

    /// `limit` claims from `offset`, newest first, with the counts.
    pub fn page(&self, limit: usize, offset: usize) -> Result<ClaimsPage, StoreError> {
        let read = |conn: &Connection| -> Result<ClaimsPage, StoreError> {
            let (all, open) = counts(conn)?;
            Ok(ClaimsPage {
                claims: claims_page(conn, None, limit, offset)?,
                all,
                open,
                next_block: next_block(conn)?,
            })
        };
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if conn.is_none() {
            let opened = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            opened.busy_timeout(std::time::Duration::from_secs(2))?;
            // As the store's own connection: kept statements keep their plans (schema.rs).
            opened.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
                true,
            )?;
            *conn = Some(opened);
        }
        match conn.as_ref() {
            Some(c) => read(c),
            None => Err(StoreError::Sqlite(rusqlite::Error::InvalidQuery)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(tx: u8, block: u64, nonce: u64) -> ClaimRecord {
        ClaimRecord {
            tx_hash: B256::repeat_byte(tx),
            log_index: 0,
            block,
            filed_at: 1_000 + block,
            service: B256::repeat_byte(0xaa),
            operator: Address::repeat_byte(1),
            lane: Lane::MainToService,
            nonce,
            claimant: Address::repeat_byte(2),
            location: "http://127.0.0.1:1".into(),
        }
    }

    #[test]
    fn claims_are_kept_once_with_the_scan_position_and_resolve_by_request() {
        let mut store = Store::open_in_memory("test").unwrap();
        assert_eq!(store.claims_next_block().unwrap(), None);
        let a = claim(1, 10, 5);
        let b = claim(2, 12, 5);
        let c = claim(3, 13, 7);
        assert_eq!(store.record_claims(&[a.clone(), b.clone()], 13).unwrap(), 2);
        // Read again (a retried range): nothing doubles, the scan never moves back.
        assert_eq!(store.record_claims(&[a.clone(), c.clone()], 11).unwrap(), 1);
        assert_eq!(store.claims_next_block().unwrap(), Some(13));
        assert_eq!(store.claim_counts().unwrap(), (3, 3));
        assert_eq!(
            store.unresolved_claims(10).unwrap(),
            vec![(Lane::MainToService, 5), (Lane::MainToService, 7)]
        );
        let resolved = Resolution {
            at: 2_000,
            handle: Some((B256::repeat_byte(9), 40)),
        };
        assert_eq!(
            store
                .resolve_claims(Lane::MainToService, 5, resolved)
                .unwrap(),
            2
        );
        assert_eq!(store.claim_counts().unwrap(), (3, 1));
        let all = store.claims(None, 10, 0).unwrap();
        assert_eq!(
            all.iter().map(|e| e.claim.tx_hash).collect::<Vec<_>>(),
            vec![c.tx_hash, b.tx_hash, a.tx_hash],
            "newest first"
        );
        assert_eq!(all[1].resolved_at, Some(2_000));
        assert_eq!(all[1].handle_tx, Some(B256::repeat_byte(9)));
        assert_eq!(all[0].resolved_at, None);
        let about = store.claims(Some((Lane::MainToService, 7)), 10, 0).unwrap();
        assert_eq!(about.len(), 1);
        assert_eq!(about[0].claim, c);
        assert_eq!(store.claims(None, 1, 1).unwrap()[0].claim, b);
    }
}
