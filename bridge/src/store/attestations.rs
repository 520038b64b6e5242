//! Attested batches in the store: which stored requests form the batch of a nonce
//! ([`multibridge_contracts::attestation`]), and this operator's own signature of each batch it
//! signed — what its HTTP API serves to the other operators and to users.

use alloy::primitives::B256;
use rusqlite::params;

use super::*;

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS attestations (
        lane TEXT NOT NULL,
        first_nonce INTEGER NOT NULL,
        count INTEGER NOT NULL,
        digest BLOB NOT NULL,
        signature BLOB NOT NULL,
        signed_at INTEGER NOT NULL,
        PRIMARY KEY (lane, first_nonce));
    CREATE INDEX IF NOT EXISTS requests_block ON requests (lane, src_block, nonce);";

/// The fresh open requests of a lane by nonce, with all an attested step's look-ahead asks of
/// them: that query reads this index alone (a few bytes per request) instead of every row with
/// its payload — thousands per step, which spilled out of the 2 MB page cache into a `pread`
/// per page. `status` and `reason` are the same in every entry, but SQLite reads a column the
/// query names from the row unless the index holds it. Created after the migrations
/// (`not_before` came with schema version 2).
pub(super) const FRESH_NONCES_INDEX: &str = "
    CREATE INDEX IF NOT EXISTS requests_fresh
        ON requests (lane, nonce, not_before, status, reason)
        WHERE status = 'observed' AND reason IS NULL;";

/// This operator's signature of one attested batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnAttestation {
    /// The batch's first nonce.
    pub first_nonce: u64,
    /// How many consecutive nonces it holds.
    pub count: u64,
    /// The EIP-712 digest signed.
    pub digest: B256,
    /// 65 bytes r ‖ s ‖ v, low s.
    pub signature: alloy::primitives::Bytes,
}

impl Store {
    /// The requests of the attested batch `nonce` belongs to: the run of its source blocks'
    /// stored requests ([`batch_blocks`](multibridge_contracts::attestation::batch_blocks): its
    /// own block, or its aligned pair when the pair's first block holds few; runs of 32 from
    /// their first, [`batch_run`](multibridge_contracts::attestation::batch_run)) that holds
    /// `nonce`, in nonce order (whatever their state: a batch is the same for every operator,
    /// handled items included; compaction keeps a pair's rows whole while one may be open).
    /// Empty while its blocks (a pair's second one too) are not indexed yet: the batch is not
    /// known before.
    pub fn batch_of(&self, lane: Lane, nonce: u64) -> Result<Vec<Request>, StoreError> {
        use multibridge_contracts::attestation::{batch_blocks, batch_run};
        let Some(block) = self.src_block_of(lane, nonce)? else {
            return Ok(Vec::new());
        };
        // The pair's blocks: (block, requests, first nonce, last nonce) of each that holds any.
        let pair = block & !1;
        let blocks: Vec<(u64, usize, u64, u64)> = self
            .conn
            .prepare_cached(
                "SELECT src_block, COUNT(*), MIN(nonce), MAX(nonce) FROM requests
                 WHERE lane = ?1 AND src_block >= ?2 AND src_block <= ?3 GROUP BY src_block",
            )?
            .query_map(
                params![lane.as_str(), to_i64(pair), to_i64(pair.saturating_add(1))],
                |r| {
                    Ok((
                        to_u64(r.get(0)?),
                        usize::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        to_u64(r.get(2)?),
                        to_u64(r.get(3)?),
                    ))
                },
            )?
            .collect::<Result<_, _>>()?;
        let pair_first = blocks.iter().find(|b| b.0 == pair).map_or(0, |b| b.1);
        let (from, to) = batch_blocks(block, pair_first);
        // Only blocks the indexer has read whole: a row stored ahead of it (recovery's
        // requeue) says nothing of its block's other requests.
        if self.cursor(lane)?.is_none_or(|next| next <= to) {
            return Ok(Vec::new());
        }
        let taken = blocks.iter().filter(|b| (from..=to).contains(&b.0));
        let first = taken.clone().map(|b| b.2).min().unwrap_or(nonce);
        let last = taken.map(|b| b.3).max().unwrap_or(nonce);
        let (start, end) = batch_run(first, last, nonce);
        let mut stmt = self.conn.prepare_cached(
            "SELECT payload FROM requests WHERE lane = ?1 AND nonce >= ?2 AND nonce < ?3
             ORDER BY nonce",
        )?;
        let rows = stmt.query_map(params![lane.as_str(), to_i64(start), to_i64(end)], |r| {
            r.get::<_, Vec<u8>>(0)
        })?;
        let mut out = Vec::new();
        for row in rows {
            out.push(Request::abi_decode(&row?).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    /// Remember this operator's signature of a batch (a second signature of the same batch
    /// replaces the first: the digest is the same, a deterministic signer gives the same bytes).
    pub fn put_attestation(&self, lane: Lane, own: &OwnAttestation) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO attestations (lane, first_nonce, count, digest, signature, signed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (lane, first_nonce) DO UPDATE SET count = excluded.count,
                 digest = excluded.digest, signature = excluded.signature,
                 signed_at = excluded.signed_at",
            )?
            .execute(params![
                lane.as_str(),
                to_i64(own.first_nonce),
                to_i64(own.count),
                own.digest.as_slice(),
                own.signature.as_ref(),
                to_i64(unix_now())
            ])?;
        Ok(())
    }

    /// This operator's signatures of the batches of `lane` that end above `from`, in nonce
    /// order, at most `limit`.
    pub fn attestations_from(
        &self,
        lane: Lane,
        from: u64,
        limit: usize,
    ) -> Result<Vec<OwnAttestation>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT first_nonce, count, digest, signature FROM attestations
             WHERE lane = ?1 AND first_nonce >= ?4 AND first_nonce + count > ?2
             ORDER BY first_nonce LIMIT ?3",
        )?;
        // A batch is at most ATTESTED_BATCH consecutive nonces: the key's range bounds the scan.
        let lowest = from.saturating_sub(multibridge_contracts::attestation::ATTESTED_BATCH - 1);
        let rows = stmt.query_map(
            params![
                lane.as_str(),
                to_i64(from),
                to_i64(limit as u64),
                to_i64(lowest)
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            },
        )?;
        rows.map(|row| {
            let (first, count, digest, signature) = row?;
            own_attestation(first, count, digest, signature)
        })
        .collect()
    }

    /// This operator's signature of the batch starting at `first_nonce`, if it signed it.
    pub fn attestation(
        &self,
        lane: Lane,
        first_nonce: u64,
    ) -> Result<Option<OwnAttestation>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT count, digest, signature FROM attestations
                 WHERE lane = ?1 AND first_nonce = ?2",
            )?
            .query_row(params![lane.as_str(), to_i64(first_nonce)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()?;
        row.map(|(count, digest, signature)| {
            own_attestation(to_i64(first_nonce), count, digest, signature)
        })
        .transpose()
    }
}

/// An `attestations` row as an [`OwnAttestation`].
fn own_attestation(
    first: i64,
    count: i64,
    digest: Vec<u8>,
    signature: Vec<u8>,
) -> Result<OwnAttestation, StoreError> {
    if digest.len() != 32 {
        return Err(StoreError::Corrupt(format!(
            "attestation digest of {} bytes",
            digest.len()
        )));
    }
    Ok(OwnAttestation {
        first_nonce: to_u64(first),
        count: to_u64(count),
        digest: B256::from_slice(&digest),
        signature: signature.into(),
    })
}
