//! The indexer's side of the store: the cursor moved in the same transaction as the requests
//! it found, and the gap check over the stored nonces.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::*;

impl Store {
    /// The next source block to index on `lane`, if indexing started.
    pub fn cursor(&self, lane: Lane) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT next_block FROM cursors WHERE lane = ?1")?
            .query_row([lane.as_str()], |r| r.get::<_, i64>(0))
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
        // Nonces a backup compacted away are handled for good: not stored again.
        let below: i64 = tx
            .query_row(
                "SELECT below FROM compaction WHERE lane = ?1",
                [lane.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let mut inserted = 0usize;
        let kept: Vec<&Request> = requests
            .iter()
            .filter(|r| to_i64(r.nonce) >= below)
            .collect();
        for request in &kept {
            if insert_observed(&tx, lane, request, at)?.is_none() {
                inserted = inserted.saturating_add(1);
            }
        }
        // The gap check starts at the first nonce this lane ever stored (earlier ones lie before
        // start_block, or below a backup's compaction point: not this relay's to look for).
        let first = kept.iter().map(|r| r.nonce).min();
        tx.execute(
            "INSERT INTO cursors (lane, next_block, updated_at, next_nonce) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (lane) DO UPDATE SET next_block = excluded.next_block,
                 updated_at = excluded.updated_at,
                 next_nonce = COALESCE(cursors.next_nonce, excluded.next_nonce)",
            params![lane.as_str(), to_i64(next_block), at, first.map(to_i64)],
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

    /// Nonces missing between the lane's contiguous watermark and its highest stored nonce, at
    /// most `limit` (each is a request the indexer must have skipped). Moves the watermark over
    /// the stored run first, so each call reads only rows it has not passed yet.
    pub fn missing_nonces(&mut self, lane: Lane, limit: usize) -> Result<Vec<u64>, StoreError> {
        let Some(mut expected) = self.contiguous_from(lane)? else {
            return Ok(Vec::new());
        };
        // Nonces a backup compacted away are handled for good: never a gap.
        expected = expected.max(self.compaction(lane)?.below);
        let mut missing = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT nonce FROM requests WHERE lane = ?1 AND nonce >= ?2 ORDER BY nonce",
            )?;
            let rows = stmt.query_map(params![lane.as_str(), to_i64(expected)], |r| {
                r.get::<_, i64>(0)
            })?;
            let mut run_ends = Some(expected);
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
                if missing.is_empty() {
                    run_ends = Some(expected);
                }
            }
            if let Some(next) = run_ends {
                self.conn.execute(
                    "UPDATE cursors SET next_nonce = ?2 WHERE lane = ?1 AND next_nonce < ?2",
                    params![lane.as_str(), to_i64(next)],
                )?;
            }
        }
        Ok(missing)
    }

    /// A nonce at or below that of every request mined from `block` on: one above the highest
    /// stored nonce when that request was mined before `block` (nonces are handed out in
    /// order), else 0 (nothing stored, or the cursor was rewound below it).
    pub fn nonce_floor_from(&self, lane: Lane, block: u64) -> Result<u64, StoreError> {
        let highest = self
            .conn
            .prepare_cached(
                "SELECT nonce, src_block FROM requests WHERE lane = ?1 ORDER BY nonce DESC LIMIT 1",
            )?
            .query_row([lane.as_str()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?;
        Ok(match highest {
            Some((nonce, src_block)) if to_u64(src_block) < block => {
                to_u64(nonce).saturating_add(1)
            }
            _ => 0,
        })
    }

    /// The first nonce not yet known to be stored without a gap (`None` before the first
    /// request was indexed).
    pub fn contiguous_from(&self, lane: Lane) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT next_nonce FROM cursors WHERE lane = ?1",
                [lane.as_str()],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?
            .flatten()
            .map(to_u64))
    }

    /// Give up looking for `nonce` (the source never returned its log): the gap check moves on
    /// past it. Recovery still finds it on the chains if it is unhandled.
    pub fn skip_gap(&mut self, lane: Lane, nonce: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE cursors SET next_nonce = ?2 WHERE lane = ?1 AND next_nonce <= ?3",
            params![
                lane.as_str(),
                to_i64(nonce.saturating_add(1)),
                to_i64(nonce)
            ],
        )?;
        Ok(())
    }
}
