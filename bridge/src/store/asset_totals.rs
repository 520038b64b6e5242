//! What the conservation check keeps (DESIGN §8, §9; audit A3-M2): per lane, the running totals
//! of what was requested on the source and released on the destination, and the position of
//! each side's scan — each range's totals move in the same transaction as its position, so a
//! crash never counts a block twice.
//!
//! Releases are matched **by nonce**, not compared by heads: a request the source scan read is
//! *open* until the destination's release of its nonce is read; a release whose nonce the
//! source scan has not covered yet is *held* until it has. Only a matched release counts as
//! released. So whatever depth or endpoint lag each side reads at, an honest bridge always
//! shows released ≤ requested, and the difference is exactly what is still in flight. A
//! release whose vote key differs from the open request at its nonce (or that finds no open
//! request) is *forged*: it is recorded with its evidence, counted under its asset, and raised
//! once to the guardian.

use alloy::primitives::{Address, B256, U256};
use multibridge_contracts::Lane;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::{Store, StoreError, to_i64, to_u64};

/// Which side of a lane a total belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetSide {
    /// Requested on the source (locked or burned there); keyed by the source token.
    Requested,
    /// Released on the destination (unlocked or minted there); keyed by the source token of the
    /// request it paid (a forged release: by its token's source counterpart, or the
    /// destination token itself when no counterpart is known).
    Released,
    /// Refunded on the source after the destination cancelled the request (issue 53); keyed by
    /// the source token.
    Refunded,
}

impl AssetSide {
    fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Released => "released",
            Self::Refunded => "refunded",
        }
    }
}

/// A request the source scan read, as conservation needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedRequest {
    /// Its nonce.
    pub nonce: u64,
    /// Its vote key on this lane.
    pub key: B256,
    /// The source token (zero: native coin).
    pub asset: Address,
    /// What it moves, in the asset's units (an ERC-721 counts one).
    pub units: U256,
    /// The source transaction that requested it.
    pub tx: B256,
}

/// A release the destination scan read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedRelease {
    /// The nonce it executed.
    pub nonce: u64,
    /// The vote key it executed under.
    pub key: B256,
    /// The destination token released (zero: native coin).
    pub token: Address,
    /// What it released, in the asset's units.
    pub units: U256,
    /// The destination transaction that executed it.
    pub tx: B256,
    /// Its destination block.
    pub block: u64,
}

/// A release that paid no request the source made at its nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgedRelease {
    /// The release.
    pub release: ScannedRelease,
    /// The source's request at that nonce (vote key, transaction), if the scan read one.
    pub request: Option<(B256, B256)>,
    /// The asset it is counted under.
    pub asset: Address,
}

/// A held release as read: nonce, key, token, units, tx, block.
type RawRelease = (u64, Vec<u8>, Vec<u8>, String, Vec<u8>, i64);

/// Marks a store whose totals were kept by nonce (older ones compared by heads and keyed
/// releases by the destination token: their totals are dropped and scanned again).
pub(super) const BY_NONCE: &str = "conservation_by_nonce";

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS asset_scan (
        lane TEXT NOT NULL,
        side TEXT NOT NULL,
        next_block INTEGER NOT NULL,
        PRIMARY KEY (lane, side));
    CREATE TABLE IF NOT EXISTS asset_totals (
        lane TEXT NOT NULL,
        side TEXT NOT NULL,
        asset BLOB NOT NULL,
        total TEXT NOT NULL,
        PRIMARY KEY (lane, side, asset));
    CREATE TABLE IF NOT EXISTS asset_cover (
        lane TEXT PRIMARY KEY,
        next_nonce INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS asset_open (
        lane TEXT NOT NULL,
        nonce INTEGER NOT NULL,
        key BLOB NOT NULL,
        asset BLOB NOT NULL,
        units TEXT NOT NULL,
        tx BLOB NOT NULL,
        PRIMARY KEY (lane, nonce));
    CREATE TABLE IF NOT EXISTS asset_held (
        lane TEXT NOT NULL,
        nonce INTEGER NOT NULL,
        key BLOB NOT NULL,
        token BLOB NOT NULL,
        units TEXT NOT NULL,
        tx BLOB NOT NULL,
        block INTEGER NOT NULL,
        PRIMARY KEY (lane, nonce));
    CREATE TABLE IF NOT EXISTS asset_forged (
        lane TEXT NOT NULL,
        nonce INTEGER NOT NULL,
        key BLOB NOT NULL,
        token BLOB NOT NULL,
        asset BLOB NOT NULL,
        units TEXT NOT NULL,
        tx BLOB NOT NULL,
        block INTEGER NOT NULL,
        request_key BLOB,
        request_tx BLOB,
        raised INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (lane, nonce));
    CREATE TABLE IF NOT EXISTS token_pairs (
        lane TEXT NOT NULL,
        local BLOB NOT NULL,
        remote BLOB NOT NULL,
        PRIMARY KEY (lane, local));";

/// The tables a store snapshot carries for conservation (restored together).
pub(super) const TABLES: [&str; 7] = [
    "asset_scan",
    "asset_totals",
    "asset_cover",
    "asset_open",
    "asset_held",
    "asset_forged",
    "token_pairs",
];

fn parse_total(text: &str) -> Result<U256, StoreError> {
    text.parse::<U256>()
        .map_err(|e| StoreError::Corrupt(format!("asset total {text:?}: {e}")))
}

fn address(bytes: &[u8]) -> Result<Address, StoreError> {
    Address::try_from(bytes).map_err(|_| StoreError::Corrupt("asset address length".into()))
}

fn hash(bytes: &[u8]) -> Result<B256, StoreError> {
    B256::try_from(bytes).map_err(|_| StoreError::Corrupt("hash length".into()))
}

/// Add `amount` to the `side` total of `asset` on `lane`.
fn add_total(
    tx: &Transaction<'_>,
    lane: Lane,
    side: AssetSide,
    asset: Address,
    amount: U256,
) -> Result<(), StoreError> {
    let current: Option<String> = tx
        .prepare_cached(
            "SELECT total FROM asset_totals WHERE lane = ?1 AND side = ?2 AND asset = ?3",
        )?
        .query_row(
            params![lane.as_str(), side.as_str(), asset.as_slice()],
            |r| r.get(0),
        )
        .optional()?;
    let current = current.as_deref().map(parse_total).transpose()?;
    let total = current
        .unwrap_or_default()
        .checked_add(amount)
        .ok_or_else(|| StoreError::Corrupt(format!("{side:?} total of {asset} overflows")))?;
    tx.prepare_cached(
        "INSERT INTO asset_totals (lane, side, asset, total) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (lane, side, asset) DO UPDATE SET total = excluded.total",
    )?
    .execute(params![
        lane.as_str(),
        side.as_str(),
        asset.as_slice(),
        total.to_string()
    ])?;
    Ok(())
}

fn set_scan(
    tx: &Transaction<'_>,
    lane: Lane,
    side: AssetSide,
    next: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO asset_scan (lane, side, next_block) VALUES (?1, ?2, ?3)
         ON CONFLICT (lane, side) DO UPDATE SET next_block = excluded.next_block",
    )?
    .execute(params![lane.as_str(), side.as_str(), to_i64(next)])?;
    Ok(())
}

impl Store {
    /// Record the source's refunds read up to `next_block`: each (source asset, units) is added
    /// to the refunded totals in the same transaction as the scan moves on (a range read again
    /// after a crash never counts twice).
    pub fn record_refunded(
        &mut self,
        lane: Lane,
        next_block: u64,
        refunds: &[(Address, U256)],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (asset, units) in refunds {
            add_total(&tx, lane, AssetSide::Refunded, *asset, *units)?;
        }
        set_scan(&tx, lane, AssetSide::Refunded, next_block)?;
        tx.commit()?;
        Ok(())
    }

    /// Drop totals kept by an older relay that compared by heads (read again by nonce).
    pub(super) fn upgrade_conservation(&self) -> Result<(), StoreError> {
        let marked: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                params![BY_NONCE],
                |r| r.get(0),
            )
            .optional()?;
        if marked.is_none() {
            self.conn.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 DELETE FROM asset_scan; DELETE FROM asset_totals;
                 INSERT INTO meta (key, value) VALUES ('{BY_NONCE}', '1');
                 COMMIT;"
            ))?;
        }
        Ok(())
    }

    /// The next block the `side` scan of `lane` reads, if it started.
    pub fn asset_scan_next(&self, lane: Lane, side: AssetSide) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT next_block FROM asset_scan WHERE lane = ?1 AND side = ?2")?
            .query_row(params![lane.as_str(), side.as_str()], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(to_u64))
    }

    /// The first nonce the source scan of `lane` has not read yet (every nonce below it was
    /// read, without a gap), if it started.
    pub fn asset_cover(&self, lane: Lane) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT next_nonce FROM asset_cover WHERE lane = ?1")?
            .query_row(params![lane.as_str()], |r| r.get::<_, i64>(0))
            .optional()?
            .map(to_u64))
    }

    /// Record the source range read up to `next_block`: `requests` (contiguous nonces from the
    /// covered nonce, or from `first_nonce` on a first range) are added to the requested
    /// totals and kept open; the scan moves on. Refuses a range whose nonces leave a gap
    /// (a node that dropped a log): nothing moves, the range is read again.
    pub fn record_requested(
        &mut self,
        lane: Lane,
        first_nonce: u64,
        next_block: u64,
        requests: &[ScannedRequest],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut cover: u64 = tx
            .prepare_cached("SELECT next_nonce FROM asset_cover WHERE lane = ?1")?
            .query_row(params![lane.as_str()], |r| r.get::<_, i64>(0))
            .optional()?
            .map_or(first_nonce, to_u64);
        for request in requests {
            if request.nonce < cover {
                // Read before (a range read again after a failure in another process): counted.
                continue;
            }
            if request.nonce != cover {
                return Err(StoreError::Corrupt(format!(
                    "{lane}: the source scan read request {} where {cover} was next (a log is \
                     missing; the range is read again)",
                    request.nonce
                )));
            }
            add_total(
                &tx,
                lane,
                AssetSide::Requested,
                request.asset,
                request.units,
            )?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO asset_open (lane, nonce, key, asset, units, tx)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                lane.as_str(),
                to_i64(request.nonce),
                request.key.as_slice(),
                request.asset.as_slice(),
                request.units.to_string(),
                request.tx.as_slice()
            ])?;
            cover = cover.saturating_add(1);
        }
        tx.prepare_cached(
            "INSERT INTO asset_cover (lane, next_nonce) VALUES (?1, ?2)
             ON CONFLICT (lane) DO UPDATE SET next_nonce = excluded.next_nonce",
        )?
        .execute(params![lane.as_str(), to_i64(cover)])?;
        set_scan(&tx, lane, AssetSide::Requested, next_block)?;
        tx.commit()?;
        Ok(())
    }

    /// Record the destination range read up to `next_block`: every release of a nonce at or
    /// above `first_nonce` is held until it is matched ([`Store::match_releases`]).
    pub fn record_released(
        &mut self,
        lane: Lane,
        first_nonce: u64,
        next_block: u64,
        releases: &[ScannedRelease],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for release in releases.iter().filter(|r| r.nonce >= first_nonce) {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO asset_held (lane, nonce, key, token, units, tx, block)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                lane.as_str(),
                to_i64(release.nonce),
                release.key.as_slice(),
                release.token.as_slice(),
                release.units.to_string(),
                release.tx.as_slice(),
                to_i64(release.block)
            ])?;
        }
        set_scan(&tx, lane, AssetSide::Released, next_block)?;
        tx.commit()?;
        Ok(())
    }

    /// Releases held whose nonce the source scan covered, with the destination tokens they
    /// released (to look up their counterparts before [`Store::match_releases`]).
    pub fn held_tokens(&self, lane: Lane) -> Result<Vec<Address>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT h.token FROM asset_held h JOIN asset_cover c ON c.lane = h.lane
             WHERE h.lane = ?1 AND h.nonce < c.next_nonce",
        )?;
        let rows = stmt.query_map(params![lane.as_str()], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(address(&row?)?);
        }
        Ok(out)
    }

    /// Match every held release whose nonce the source scan covered with the open request at
    /// that nonce, in one transaction: the same vote key counts as released under the request's
    /// asset; anything else is a forged release, recorded (with `to_source` naming the source
    /// counterpart of its token, if known) and returned. Releases above the covered nonce stay
    /// held.
    pub fn match_releases(
        &mut self,
        lane: Lane,
        to_source: impl Fn(Address) -> Option<Address>,
    ) -> Result<Vec<ForgedRelease>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: Vec<RawRelease> = {
            let mut stmt = tx.prepare_cached(
                "SELECT h.nonce, h.key, h.token, h.units, h.tx, h.block FROM asset_held h
                 JOIN asset_cover c ON c.lane = h.lane
                 WHERE h.lane = ?1 AND h.nonce < c.next_nonce ORDER BY h.nonce",
            )?;
            let rows = stmt.query_map(params![lane.as_str()], |r| {
                Ok((
                    to_u64(r.get::<_, i64>(0)?),
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut forged = Vec::new();
        for (nonce, key, token, units, hash_bytes, block) in held {
            let release = ScannedRelease {
                nonce,
                key: hash(&key)?,
                token: address(&token)?,
                units: parse_total(&units)?,
                tx: hash(&hash_bytes)?,
                block: to_u64(block),
            };
            let open: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = tx
                .prepare_cached(
                    "SELECT key, asset, tx FROM asset_open WHERE lane = ?1 AND nonce = ?2",
                )?
                .query_row(params![lane.as_str(), to_i64(nonce)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let request = match &open {
                Some((key, asset, request_tx)) => {
                    Some((hash(key)?, address(asset)?, hash(request_tx)?))
                }
                None => None,
            };
            tx.prepare_cached("DELETE FROM asset_held WHERE lane = ?1 AND nonce = ?2")?
                .execute(params![lane.as_str(), to_i64(nonce)])?;
            tx.prepare_cached("DELETE FROM asset_open WHERE lane = ?1 AND nonce = ?2")?
                .execute(params![lane.as_str(), to_i64(nonce)])?;
            match request {
                Some((key, asset, _)) if key == release.key => {
                    add_total(&tx, lane, AssetSide::Released, asset, release.units)?;
                }
                request => {
                    let asset = if release.token == Address::ZERO {
                        Address::ZERO
                    } else {
                        to_source(release.token).unwrap_or(release.token)
                    };
                    add_total(&tx, lane, AssetSide::Released, asset, release.units)?;
                    let request = request.map(|(key, _, request_tx)| (key, request_tx));
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO asset_forged (lane, nonce, key, token, asset, units,
                             tx, block, request_key, request_tx)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )?
                    .execute(params![
                        lane.as_str(),
                        to_i64(nonce),
                        release.key.as_slice(),
                        release.token.as_slice(),
                        asset.as_slice(),
                        release.units.to_string(),
                        release.tx.as_slice(),
                        to_i64(release.block),
                        request.map(|(k, _)| k.to_vec()),
                        request.map(|(_, t)| t.to_vec()),
                    ])?;
                    forged.push(ForgedRelease {
                        release,
                        request,
                        asset,
                    });
                }
            }
        }
        tx.commit()?;
        Ok(forged)
    }

    /// Forged releases not yet raised to the guardian (oldest first).
    pub fn forged_unraised(&self, lane: Lane) -> Result<Vec<ForgedRelease>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT nonce, key, token, asset, units, tx, block, request_key, request_tx
             FROM asset_forged WHERE lane = ?1 AND raised = 0 ORDER BY nonce LIMIT 64",
        )?;
        let rows = stmt.query_map(params![lane.as_str()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<Vec<u8>>>(7)?,
                r.get::<_, Option<Vec<u8>>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (nonce, key, token, asset, units, tx, block, request_key, request_tx) = row?;
            let request = match (request_key, request_tx) {
                (Some(k), Some(t)) => Some((hash(&k)?, hash(&t)?)),
                _ => None,
            };
            out.push(ForgedRelease {
                release: ScannedRelease {
                    nonce: to_u64(nonce),
                    key: hash(&key)?,
                    token: address(&token)?,
                    units: parse_total(&units)?,
                    tx: hash(&tx)?,
                    block: to_u64(block),
                },
                request,
                asset: address(&asset)?,
            });
        }
        Ok(out)
    }

    /// Note that the forged release at `nonce` was raised to the guardian.
    pub fn forged_raised(&self, lane: Lane, nonce: u64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE asset_forged SET raised = 1 WHERE lane = ?1 AND nonce = ?2")?
            .execute(params![lane.as_str(), to_i64(nonce)])?;
        Ok(())
    }

    /// Counts of what the conservation check holds on `lane`: requests read and not yet
    /// released (in flight), releases waiting for the source scan, forged releases.
    pub fn conservation_counts(&self, lane: Lane) -> Result<(u64, u64, u64), StoreError> {
        let count = |table: &str| -> Result<u64, StoreError> {
            Ok(to_u64(
                self.conn
                    .prepare_cached(&format!("SELECT COUNT(*) FROM {table} WHERE lane = ?1"))?
                    .query_row(params![lane.as_str()], |r| r.get::<_, i64>(0))?,
            ))
        };
        Ok((
            count("asset_open")?,
            count("asset_held")?,
            count("asset_forged")?,
        ))
    }

    /// The source counterpart of destination token `local` on `lane`, as first seen.
    pub fn token_counterpart(
        &self,
        lane: Lane,
        local: Address,
    ) -> Result<Option<Address>, StoreError> {
        self.conn
            .prepare_cached("SELECT remote FROM token_pairs WHERE lane = ?1 AND local = ?2")?
            .query_row(params![lane.as_str(), local.as_slice()], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()?
            .map(|bytes| address(&bytes))
            .transpose()
    }

    /// Keep `remote` as the source counterpart of `local` on `lane` (the first one seen stays:
    /// a pair deregistered or paired again later does not change what its past releases were).
    pub fn keep_token_counterpart(
        &self,
        lane: Lane,
        local: Address,
        remote: Address,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO token_pairs (lane, local, remote) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![lane.as_str(), local.as_slice(), remote.as_slice()])?;
        Ok(())
    }

    /// Every `side` total of `lane`, by asset.
    pub fn asset_totals(
        &self,
        lane: Lane,
        side: AssetSide,
    ) -> Result<Vec<(Address, U256)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT asset, total FROM asset_totals WHERE lane = ?1 AND side = ?2 ORDER BY asset",
        )?;
        let rows = stmt.query_map(params![lane.as_str(), side.as_str()], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (asset, total) = row?;
            out.push((address(&asset)?, parse_total(&total)?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANE: Lane = Lane::MainToService;

    fn request(nonce: u64, key: u8, units: u64) -> ScannedRequest {
        ScannedRequest {
            nonce,
            key: B256::repeat_byte(key),
            asset: Address::ZERO,
            units: U256::from(units),
            tx: B256::repeat_byte(0xa0),
        }
    }

    fn release(nonce: u64, key: u8, units: u64) -> ScannedRelease {
        ScannedRelease {
            nonce,
            key: B256::repeat_byte(key),
            token: Address::ZERO,
            units: U256::from(units),
            tx: B256::repeat_byte(0xb0),
            block: 7,
        }
    }

    type Totals = Vec<(Address, U256)>;

    fn totals(store: &Store) -> (Totals, Totals) {
        (
            store.asset_totals(LANE, AssetSide::Requested).unwrap(),
            store.asset_totals(LANE, AssetSide::Released).unwrap(),
        )
    }

    /// A release read before the request it pays (a guardian whose source depth is deeper than
    /// the executors', or a lagging source endpoint: audit A3-M2) is held, never counted
    /// against requests that do not include it.
    #[test]
    fn a_release_ahead_of_the_source_scan_is_held_until_its_nonce_is_covered() {
        let mut store = Store::open_in_memory("t").unwrap();
        store
            .record_requested(LANE, 0, 10, &[request(0, 1, 5)])
            .unwrap();
        store
            .record_released(LANE, 0, 20, &[release(0, 1, 5), release(1, 2, 3)])
            .unwrap();
        assert!(store.match_releases(LANE, |_| None).unwrap().is_empty());
        let (requested, released) = totals(&store);
        assert_eq!(requested, vec![(Address::ZERO, U256::from(5))]);
        assert_eq!(released, vec![(Address::ZERO, U256::from(5))]);
        assert_eq!(store.conservation_counts(LANE).unwrap(), (0, 1, 0));
        // The source scan reaches nonce 1: matched, counted.
        store
            .record_requested(LANE, 0, 11, &[request(1, 2, 3)])
            .unwrap();
        assert!(store.match_releases(LANE, |_| None).unwrap().is_empty());
        let (requested, released) = totals(&store);
        assert_eq!(requested, vec![(Address::ZERO, U256::from(8))]);
        assert_eq!(released, vec![(Address::ZERO, U256::from(8))]);
        assert_eq!(store.conservation_counts(LANE).unwrap(), (0, 0, 0));
        assert_eq!(store.asset_cover(LANE).unwrap(), Some(2));
        assert_eq!(
            store.asset_scan_next(LANE, AssetSide::Released).unwrap(),
            Some(20)
        );
    }

    /// A forged release is recorded once with the request it voided, and what it released
    /// counts against conservation however long honest requests around it take.
    #[test]
    fn a_release_under_another_key_is_forged_and_in_flight_requests_never_grow_its_excess() {
        let mut store = Store::open_in_memory("t").unwrap();
        store
            .record_requested(
                LANE,
                0,
                10,
                &[request(0, 1, 5), request(1, 2, 7), request(2, 3, 9)],
            )
            .unwrap();
        store
            .record_released(LANE, 0, 20, &[release(0, 9, 600)])
            .unwrap();
        let forged = store.match_releases(LANE, |_| None).unwrap();
        assert_eq!(forged.len(), 1);
        assert_eq!(forged[0].release.nonce, 0);
        assert_eq!(
            forged[0].request,
            Some((B256::repeat_byte(1), B256::repeat_byte(0xa0)))
        );
        let excess = |store: &Store| {
            let (requested, released) = totals(store);
            released[0].1.saturating_sub(requested[0].1)
        };
        let (_, released) = totals(&store);
        assert_eq!(released, vec![(Address::ZERO, U256::from(600))]);
        // Honest releases complete: released grows by exactly what was requested.
        let before = excess(&store);
        store
            .record_released(LANE, 0, 21, &[release(1, 2, 7), release(2, 3, 9)])
            .unwrap();
        assert!(store.match_releases(LANE, |_| None).unwrap().is_empty());
        let (requested, released) = totals(&store);
        assert_eq!(requested, vec![(Address::ZERO, U256::from(21))]);
        assert_eq!(released, vec![(Address::ZERO, U256::from(616))]);
        assert!(excess(&store) >= before);
        assert_eq!(store.conservation_counts(LANE).unwrap(), (0, 0, 1));
        // Raised once.
        assert_eq!(store.forged_unraised(LANE).unwrap().len(), 1);
        store.forged_raised(LANE, 0).unwrap();
        assert!(store.forged_unraised(LANE).unwrap().is_empty());
    }

    #[test]
    fn a_range_with_a_nonce_gap_moves_nothing_and_a_range_read_again_counts_once() {
        let mut store = Store::open_in_memory("t").unwrap();
        store
            .record_requested(LANE, 4, 10, &[request(4, 1, 5)])
            .unwrap();
        let err = store
            .record_requested(LANE, 4, 12, &[request(6, 2, 5)])
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert_eq!(store.asset_cover(LANE).unwrap(), Some(5));
        assert_eq!(
            store.asset_scan_next(LANE, AssetSide::Requested).unwrap(),
            Some(10)
        );
        store
            .record_requested(LANE, 4, 12, &[request(4, 1, 5), request(5, 2, 5)])
            .unwrap();
        let (requested, _) = totals(&store);
        assert_eq!(requested, vec![(Address::ZERO, U256::from(10))]);
        // Releases below the first nonce (history before the scan's start) are not counted.
        store
            .record_released(LANE, 4, 3, &[release(2, 1, 99)])
            .unwrap();
        assert_eq!(store.conservation_counts(LANE).unwrap(), (2, 0, 0));
    }

    /// Audit A3-L6: a counterpart once seen stays, whatever the pair becomes later.
    #[test]
    fn a_token_counterpart_is_kept_as_first_seen() {
        let store = Store::open_in_memory("t").unwrap();
        let (local, remote) = (Address::repeat_byte(1), Address::repeat_byte(2));
        assert_eq!(store.token_counterpart(LANE, local).unwrap(), None);
        store.keep_token_counterpart(LANE, local, remote).unwrap();
        store
            .keep_token_counterpart(LANE, local, Address::repeat_byte(3))
            .unwrap();
        assert_eq!(store.token_counterpart(LANE, local).unwrap(), Some(remote));
        assert_eq!(
            store.token_counterpart(Lane::ServiceToMain, local).unwrap(),
            None
        );
    }

    #[test]
    fn an_overflowing_total_is_refused_and_nothing_moves() {
        let mut store = Store::open_in_memory("t").unwrap();
        store
            .record_requested(LANE, 0, 5, &[request(0, 1, 0)])
            .unwrap();
        let mut big = request(1, 2, 0);
        big.units = U256::MAX;
        store.record_requested(LANE, 0, 6, &[big]).unwrap();
        let err = store
            .record_requested(LANE, 0, 9, &[request(2, 3, 1)])
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert_eq!(
            store.asset_scan_next(LANE, AssetSide::Requested).unwrap(),
            Some(6)
        );
        assert_eq!(store.asset_cover(LANE).unwrap(), Some(2));
    }
}
