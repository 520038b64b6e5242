//! The refund path of each request as this relay knows it (issue 53): the requester's ask, since
//! when the destination refuses it for a reason held permanent, this operator's cancel vote, the
//! destination's cancel seen at its confirmation depth, this operator's refund signature and the
//! source's refund. One row per (lane, nonce) that ever entered the path, with the request's
//! payload copied in once known, so a compaction of the requests table never strands a refund.
//!
//! Every step is re-derived from the chains by the refund tasks ([`crate::refund`]); the rows
//! only remember what was decided and done, so a relay killed between two steps carries on.

use multibridge_contracts::{Lane, Request, WaitReason};
use rusqlite::{OptionalExtension, params};

use alloy::sol_types::SolValue;

use super::{OPEN, Store, StoreError, to_i64, to_u64};

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS refunds (
        lane TEXT NOT NULL,
        nonce INTEGER NOT NULL,
        payload BLOB,
        asked_at INTEGER,
        refused_since INTEGER,
        cancel_voted_at INTEGER,
        cancel_votes INTEGER NOT NULL DEFAULT 0,
        cancelled_block INTEGER,
        cancelled_key BLOB,
        signature BLOB,
        refunded_at INTEGER,
        PRIMARY KEY (lane, nonce));
    CREATE INDEX IF NOT EXISTS refunds_open ON refunds (lane, nonce)
        WHERE refunded_at IS NULL;";

/// The waiting reasons held permanent once they last `refund_after_secs`: the destination
/// knows no pair for the token or holds it locked, or refuses with something the relay has no
/// name for (a recipient the token refuses, a cap below the amount). Not: liquidity, the
/// outflow limit, the release delay, the vote window (they pass by themselves) and a pause (an
/// owner's decision — the requester may still ask).
pub const PERMANENT_WAITS: [WaitReason; 3] = [
    WaitReason::TokenNotRegistered,
    WaitReason::TokenLocked,
    WaitReason::Other,
];

/// One request's refund path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRow {
    /// Lane.
    pub lane: Lane,
    /// Nonce.
    pub nonce: u64,
    /// The request, once known.
    pub request: Option<Request>,
    /// When its requester asked (unix seconds).
    pub asked_at: Option<u64>,
    /// Since when the destination refuses it for a permanent reason (unix seconds).
    pub refused_since: Option<u64>,
    /// When this operator last voted to cancel it (unix seconds).
    pub cancel_voted_at: Option<u64>,
    /// The destination block of its cancel, once seen at the confirmation depth.
    pub cancelled_block: Option<u64>,
    /// This operator's refund signature (canonical 65 bytes).
    pub signature: Option<[u8; 65]>,
    /// When the source was seen to have refunded it (unix seconds).
    pub refunded_at: Option<u64>,
}

const COLUMNS: &str = "nonce, payload, asked_at, refused_since, cancel_voted_at, cancelled_block, signature, refunded_at";

fn opt(v: Option<i64>) -> Option<u64> {
    v.map(to_u64)
}

fn read_row(lane: Lane, r: &rusqlite::Row<'_>) -> Result<RefundRow, rusqlite::Error> {
    let payload: Option<Vec<u8>> = r.get(1)?;
    let signature: Option<Vec<u8>> = r.get(6)?;
    Ok(RefundRow {
        lane,
        nonce: to_u64(r.get(0)?),
        request: payload.and_then(|p| Request::abi_decode(&p).ok()),
        asked_at: opt(r.get(2)?),
        refused_since: opt(r.get(3)?),
        cancel_voted_at: opt(r.get(4)?),
        cancelled_block: opt(r.get(5)?),
        signature: signature.and_then(|s| <[u8; 65]>::try_from(s.as_slice()).ok()),
        refunded_at: opt(r.get(7)?),
    })
}

impl Store {
    /// The refund path of `nonce`, if it ever entered it.
    pub fn refund_of(&self, lane: Lane, nonce: u64) -> Result<Option<RefundRow>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM refunds WHERE lane = ?1 AND nonce = ?2"
            ))?
            .query_row(params![lane.as_str(), to_i64(nonce)], |r| read_row(lane, r))
            .optional()?)
    }

    /// Record that the requester asked for `request` to be refunded at `at` (the first ask
    /// counts). `false`: it had asked already.
    pub fn ask_refund(&self, lane: Lane, request: &Request, at: u64) -> Result<bool, StoreError> {
        let changed = self.exec(
            "INSERT INTO refunds (lane, nonce, payload, asked_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (lane, nonce) DO UPDATE SET asked_at = ?4, payload = COALESCE(payload, ?3)
             WHERE asked_at IS NULL",
            params![
                lane.as_str(),
                to_i64(request.nonce),
                request.abi_encode(),
                to_i64(at)
            ],
        )?;
        Ok(changed == 1)
    }

    /// Bring `refused_since` up to date with the requests table at `now`: set for open
    /// requests that wait for a [`PERMANENT_WAITS`] reason (from now, if not set), cleared for
    /// those that no longer do. Returns how many started being refused.
    pub fn note_refusals(&mut self, lane: Lane, now: u64) -> Result<usize, StoreError> {
        let reasons = PERMANENT_WAITS
            .iter()
            .map(|r| format!("'{}'", r.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        self.in_transaction(|store| {
            let started = store.exec(
                &format!(
                    "INSERT INTO refunds (lane, nonce, payload, refused_since)
                     SELECT lane, nonce, payload, ?2 FROM requests
                     WHERE lane = ?1 AND status IN {OPEN} AND reason IN ({reasons}) AND true
                     ON CONFLICT (lane, nonce) DO UPDATE SET refused_since = ?2
                     WHERE refused_since IS NULL"
                ),
                params![lane.as_str(), to_i64(now)],
            )?;
            store.exec(
                &format!(
                    "UPDATE refunds SET refused_since = NULL
                     WHERE lane = ?1 AND refused_since IS NOT NULL
                     AND nonce NOT IN (SELECT nonce FROM requests
                         WHERE lane = ?1 AND status IN {OPEN} AND reason IN ({reasons}))"
                ),
                params![lane.as_str()],
            )?;
            Ok(started)
        })
    }

    /// The requests of `lane` due for a cancel vote at `now`: not yet cancelled and still open
    /// in the requests table (or set aside as one the destination can never take: oversized,
    /// out of gas), asked by their requester and observed at least `after` seconds ago, or
    /// refused for a permanent reason for `after` seconds. One this operator voted to cancel is
    /// due again only `revote_after` seconds after its vote, doubled at every vote (a vote lost
    /// to a reorg is sent again; one the others never match costs little). At most `limit`,
    /// oldest nonce first; a row whose payload does not decode is passed over.
    pub fn refunds_due(
        &self,
        lane: Lane,
        now: u64,
        after: u64,
        revote_after: u64,
        limit: usize,
    ) -> Result<Vec<Request>, StoreError> {
        let until = to_i64(now.saturating_sub(after));
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT q.nonce, q.payload FROM refunds f
             JOIN requests q ON q.lane = f.lane AND q.nonce = f.nonce
             WHERE f.lane = ?1 AND f.cancelled_block IS NULL
             AND (q.status IN {OPEN}
                  OR (q.status = 'rejected' AND q.reason IN ('oversized', 'out_of_gas')))
             AND ((f.asked_at IS NOT NULL AND q.observed_at <= ?2) OR f.refused_since <= ?2)
             AND (f.cancel_voted_at IS NULL
                  OR f.cancel_voted_at + (?3 << MIN(f.cancel_votes - 1, 10)) <= ?4)
             ORDER BY f.nonce LIMIT ?5"
        ))?;
        let rows = statement.query_map(
            params![
                lane.as_str(),
                until,
                to_i64(revote_after),
                to_i64(now),
                to_i64(limit as u64)
            ],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )?;
        let mut due = Vec::new();
        for row in rows {
            let (nonce, payload) = row?;
            match Request::abi_decode(&payload) {
                Ok(request) => due.push(request),
                Err(e) => {
                    tracing::error!(%lane, nonce, error = %e, "a stored request does not decode: not cancelled");
                }
            }
        }
        Ok(due)
    }

    /// This operator voted to cancel `nonces` at `at`.
    pub fn cancel_voted(&mut self, lane: Lane, nonces: &[u64], at: u64) -> Result<(), StoreError> {
        self.in_transaction(|store| {
            for nonce in nonces {
                store.exec(
                    "UPDATE refunds SET cancel_voted_at = ?3, cancel_votes = cancel_votes + 1
                     WHERE lane = ?1 AND nonce = ?2",
                    params![lane.as_str(), to_i64(*nonce), to_i64(at)],
                )?;
            }
            Ok(())
        })
    }

    /// The destination cancelled `request` (vote key `key`) in `block`, seen at its
    /// confirmation depth. `false`: known already.
    pub fn note_cancelled(
        &self,
        lane: Lane,
        request: &Request,
        key: alloy::primitives::B256,
        block: u64,
    ) -> Result<bool, StoreError> {
        let changed = self.exec(
            "INSERT INTO refunds (lane, nonce, payload, cancelled_block, cancelled_key)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (lane, nonce) DO UPDATE SET cancelled_block = ?4, cancelled_key = ?5,
                 payload = ?3
             WHERE cancelled_block IS NULL",
            params![
                lane.as_str(),
                to_i64(request.nonce),
                request.abi_encode(),
                to_i64(block),
                key.as_slice()
            ],
        )?;
        Ok(changed == 1)
    }

    /// Cancelled requests of `lane` this operator has not signed the refund of yet (oldest
    /// first, at most `limit`).
    pub fn refunds_to_sign(&self, lane: Lane, limit: usize) -> Result<Vec<RefundRow>, StoreError> {
        self.refund_rows(
            lane,
            "cancelled_block IS NOT NULL AND signature IS NULL AND refunded_at IS NULL",
            0,
            limit,
        )
    }

    /// Cancelled requests of `lane` this operator signed and has not seen refunded, from nonce
    /// `from` (at most `limit`).
    pub fn refunds_to_send(
        &self,
        lane: Lane,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RefundRow>, StoreError> {
        self.refund_rows(
            lane,
            "signature IS NOT NULL AND refunded_at IS NULL",
            from,
            limit,
        )
    }

    /// Requests of `lane` cancelled and not seen refunded, from nonce `from` (at most `limit`).
    pub fn refunds_unseen(
        &self,
        lane: Lane,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RefundRow>, StoreError> {
        self.refund_rows(
            lane,
            "cancelled_block IS NOT NULL AND refunded_at IS NULL",
            from,
            limit,
        )
    }

    /// This operator's refund signatures of `lane` from nonce `from` (what its route serves),
    /// at most `limit`.
    pub fn refund_signatures(
        &self,
        lane: Lane,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RefundRow>, StoreError> {
        self.refund_rows(lane, "signature IS NOT NULL", from, limit)
    }

    fn refund_rows(
        &self,
        lane: Lane,
        clause: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RefundRow>, StoreError> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM refunds WHERE lane = ?1 AND nonce >= ?2 AND {clause}
             ORDER BY nonce LIMIT ?3"
        ))?;
        let rows = statement.query_map(
            params![lane.as_str(), to_i64(from), to_i64(limit as u64)],
            |r| read_row(lane, r),
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// This operator signed the refund of `nonce`.
    pub fn refund_signed(
        &self,
        lane: Lane,
        nonce: u64,
        signature: &[u8; 65],
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE refunds SET signature = ?3 WHERE lane = ?1 AND nonce = ?2",
            params![lane.as_str(), to_i64(nonce), signature.as_slice()],
        )?;
        Ok(())
    }

    /// The source refunded `nonce` (seen at `at`). `false`: known already.
    pub fn note_refunded(&self, lane: Lane, nonce: u64, at: u64) -> Result<bool, StoreError> {
        Ok(self.exec(
            "UPDATE refunds SET refunded_at = ?3 WHERE lane = ?1 AND nonce = ?2 AND refunded_at IS NULL",
            params![lane.as_str(), to_i64(nonce), to_i64(at)],
        )? == 1)
    }

    /// How many requests of `lane` are cancelled and not seen refunded.
    pub fn refunds_waiting(&self, lane: Lane) -> Result<u64, StoreError> {
        Ok(to_u64(
            self.conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM refunds WHERE lane = ?1 AND cancelled_block IS NOT NULL
                     AND refunded_at IS NULL",
                )?
                .query_row(params![lane.as_str()], |r| r.get(0))?,
        ))
    }

    /// Where the scan of `lane`'s destination for cancels goes on (its next block), if it ran.
    pub fn cancel_scan_next(&self, lane: Lane) -> Result<Option<u64>, StoreError> {
        let text: Option<String> = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row(params![format!("cancel_scan/{lane}")], |r| r.get(0))
            .optional()?;
        Ok(text.and_then(|t| t.parse().ok()))
    }

    /// The scan of `lane`'s destination for cancels read every block below `next`.
    pub fn set_cancel_scan_next(&self, lane: Lane, next: u64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = ?2",
            params![format!("cancel_scan/{lane}"), next.to_string()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Transition;
    use alloy::primitives::{Address, B256, Bytes, U256};

    fn request(nonce: u64) -> Request {
        Request {
            nonce,
            kind: 0,
            from: Address::repeat_byte(1),
            to: Address::repeat_byte(2),
            token: Address::ZERO,
            amount: U256::from(5),
            fee: U256::ZERO,
            extraData: Bytes::new(),
            srcChainId: U256::from(1),
            srcBridge: Address::repeat_byte(9),
            srcTxHash: B256::repeat_byte(u8::try_from(nonce % 250).unwrap()),
            srcBlockNumber: 100 + nonce,
            srcLogIndex: 0,
        }
    }

    fn store_with(lane: Lane, nonces: &[u64]) -> Store {
        let mut store = Store::open_in_memory("test").unwrap();
        let requests: Vec<_> = nonces.iter().map(|n| request(*n)).collect();
        store.record_range(lane, &requests, 200).unwrap();
        store
    }

    #[test]
    fn an_ask_is_due_after_the_window_from_when_the_request_was_observed() {
        let lane = Lane::MainToService;
        let store = store_with(lane, &[0, 1]);
        let observed = store.observed_at(lane, 0).unwrap().unwrap();
        assert!(store.ask_refund(lane, &request(0), observed).unwrap());
        assert!(
            !store.ask_refund(lane, &request(0), observed + 5).unwrap(),
            "once"
        );
        assert!(
            store
                .refunds_due(lane, observed + 99, 100, 60, 10)
                .unwrap()
                .is_empty()
        );
        let due = store
            .refunds_due(lane, observed + 100, 100, 60, 10)
            .unwrap();
        assert_eq!(due.iter().map(|r| r.nonce).collect::<Vec<_>>(), vec![0]);
        let mut store = store;
        store.cancel_voted(lane, &[0], observed + 100).unwrap();
        assert!(
            store
                .refunds_due(lane, observed + 120, 100, 60, 10)
                .unwrap()
                .is_empty(),
            "voted"
        );
        assert_eq!(
            store
                .refunds_due(lane, observed + 160, 100, 60, 10)
                .unwrap()
                .len(),
            1,
            "voted again after a while"
        );
        store.apply(lane, 0, &Transition::Handled).unwrap();
        assert!(
            store
                .refunds_due(lane, observed + 1_000, 100, 60, 10)
                .unwrap()
                .is_empty(),
            "handled: nothing to cancel"
        );
    }

    #[test]
    fn a_permanent_refusal_counts_from_when_first_seen_and_clears_when_it_passes() {
        let lane = Lane::MainToService;
        let mut store = store_with(lane, &[0, 1, 2]);
        let waiting = |reason| Transition::Waiting {
            reason,
            detail: String::new(),
        };
        store
            .apply(lane, 0, &waiting(WaitReason::TokenNotRegistered))
            .unwrap();
        store
            .apply(lane, 1, &waiting(WaitReason::InsufficientLiquidity))
            .unwrap();
        assert_eq!(store.note_refusals(lane, 1_000).unwrap(), 1);
        assert_eq!(
            store.note_refusals(lane, 1_050).unwrap(),
            0,
            "still since 1000"
        );
        assert_eq!(
            store.refund_of(lane, 0).unwrap().unwrap().refused_since,
            Some(1_000)
        );
        assert!(
            store.refund_of(lane, 1).unwrap().is_none(),
            "liquidity comes by itself"
        );
        assert_eq!(
            store.refunds_due(lane, 1_099, 100, 60, 10).unwrap().len(),
            0
        );
        assert_eq!(
            store.refunds_due(lane, 1_100, 100, 60, 10).unwrap().len(),
            1
        );
        // The pair registered after all: the request waits for liquidity now.
        store
            .apply(lane, 0, &waiting(WaitReason::InsufficientLiquidity))
            .unwrap();
        store.note_refusals(lane, 1_100).unwrap();
        assert_eq!(
            store.refund_of(lane, 0).unwrap().unwrap().refused_since,
            None
        );
        assert!(
            store
                .refunds_due(lane, 5_000, 100, 60, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_cancel_is_signed_once_served_and_refunded_once() {
        let lane = Lane::ServiceToMain;
        let store = store_with(lane, &[3]);
        let key = B256::repeat_byte(9);
        assert!(store.note_cancelled(lane, &request(3), key, 40).unwrap());
        assert!(!store.note_cancelled(lane, &request(3), key, 41).unwrap());
        assert_eq!(store.refunds_waiting(lane).unwrap(), 1);
        let to_sign = store.refunds_to_sign(lane, 10).unwrap();
        assert_eq!(to_sign.len(), 1);
        assert_eq!(to_sign[0].request, Some(request(3)));
        store.refund_signed(lane, 3, &[7u8; 65]).unwrap();
        assert!(store.refunds_to_sign(lane, 10).unwrap().is_empty());
        assert_eq!(
            store.refund_signatures(lane, 0, 10).unwrap()[0].signature,
            Some([7u8; 65])
        );
        assert_eq!(store.refunds_to_send(lane, 0, 10).unwrap().len(), 1);
        assert!(store.note_refunded(lane, 3, 99).unwrap());
        assert!(!store.note_refunded(lane, 3, 100).unwrap());
        assert!(store.refunds_to_send(lane, 0, 10).unwrap().is_empty());
        assert_eq!(store.refunds_waiting(lane).unwrap(), 0);
        assert_eq!(
            store.refund_signatures(lane, 0, 10).unwrap().len(),
            1,
            "still served"
        );
        assert_eq!(store.cancel_scan_next(lane).unwrap(), None);
        store.set_cancel_scan_next(lane, 77).unwrap();
        assert_eq!(store.cancel_scan_next(lane).unwrap(), Some(77));
    }
}
