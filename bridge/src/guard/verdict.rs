//! Whether an executed request is the source chain's request: the guardian's judgement of one
//! `HandleValueTransfer`, from what it could find of the source through the endpoint in use
//! (pure, so every case is tested without chains). A `Forged` verdict is a suspicion, not yet a
//! reason to pause: [`super::confirm`] reads it again on every endpoint first.

use alloy::primitives::B256;

use super::confirm::SourceClaim;

/// What the guardian found of the source request of one executed nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEvidence {
    /// The request at the nonce (from the relay's store, from the transaction the handle
    /// names, or from a scan of the source's logs): its vote key and source transaction.
    Request {
        /// Its vote key.
        key: B256,
        /// The source transaction that made it.
        tx: B256,
    },
    /// The source never assigned the nonce: its `requestNonce` is `request_nonce`, its latest
    /// block `head_age_secs` old.
    NotRequested {
        /// The source's `requestNonce` now.
        request_nonce: u64,
        /// Age of the source's latest block, seconds.
        head_age_secs: u64,
    },
    /// The source assigned the nonce, but its request was not found within the scan's bounds.
    NotFound,
}

/// The judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The executed payload is the source's request.
    Genuine,
    /// Released without a matching source request: why, and what the source's side of the
    /// finding is (to be confirmed on every endpoint before anything is paused).
    Forged(String, SourceClaim),
    /// Cannot tell yet (the source node looks stale, or the request is out of reach): read
    /// again later, do not act.
    Unknown(String),
}

/// Judge the execution of `nonce` under `executed_key` against `evidence`; a nonce the source
/// never assigned counts as forged only while the source's head is at most `stale_secs` old.
pub fn judge(nonce: u64, executed_key: B256, evidence: SourceEvidence, stale_secs: u64) -> Verdict {
    match evidence {
        SourceEvidence::Request { key, .. } if key == executed_key => Verdict::Genuine,
        SourceEvidence::Request { key, tx } => Verdict::Forged(
            format!(
                "nonce {nonce} executed under vote key {executed_key}, but the source's request has key {key}"
            ),
            SourceClaim::Request { key, tx },
        ),
        SourceEvidence::NotRequested { head_age_secs, .. } if head_age_secs > stale_secs => {
            Verdict::Unknown(format!(
                "nonce {nonce} is not requested on the source, but the source's latest block is {head_age_secs} s old (bound {stale_secs} s): its node may be behind"
            ))
        }
        SourceEvidence::NotRequested { request_nonce, .. } => Verdict::Forged(
            format!(
                "nonce {nonce} executed, but the source never requested it (its requestNonce is {request_nonce})"
            ),
            SourceClaim::NotRequested,
        ),
        SourceEvidence::NotFound => Verdict::Unknown(format!(
            "the source's request {nonce} was not found within the scan's bounds"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: B256 = B256::repeat_byte(7);
    const TX: B256 = B256::repeat_byte(9);

    #[test]
    fn the_requests_own_key_is_genuine_and_any_other_is_forged() {
        assert_eq!(
            judge(5, KEY, SourceEvidence::Request { key: KEY, tx: TX }, 60),
            Verdict::Genuine
        );
        let other = B256::repeat_byte(8);
        let forged = judge(5, KEY, SourceEvidence::Request { key: other, tx: TX }, 60);
        assert!(
            matches!(
                forged,
                Verdict::Forged(ref why, SourceClaim::Request { key, tx })
                    if why.contains("nonce 5") && key == other && tx == TX
            ),
            "{forged:?}"
        );
    }

    #[test]
    fn a_nonce_the_source_never_assigned_is_forged_while_the_source_is_fresh() {
        let evidence = |age| SourceEvidence::NotRequested {
            request_nonce: 5,
            head_age_secs: age,
        };
        assert!(matches!(
            judge(5, KEY, evidence(3), 60),
            Verdict::Forged(_, SourceClaim::NotRequested)
        ));
        assert!(matches!(
            judge(9, KEY, evidence(60), 60),
            Verdict::Forged(_, SourceClaim::NotRequested)
        ));
        // A source node minutes behind may simply not have the request yet: wait, do not pause.
        assert!(matches!(
            judge(5, KEY, evidence(61), 60),
            Verdict::Unknown(_)
        ));
    }

    #[test]
    fn a_request_out_of_reach_is_no_reason_to_pause() {
        assert!(matches!(
            judge(5, KEY, SourceEvidence::NotFound, 60),
            Verdict::Unknown(_)
        ));
    }
}
