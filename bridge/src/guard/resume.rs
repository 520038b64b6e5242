//! An owner's resume stands (DESIGN §9.10): a guardian that learns of a breach after it was
//! already answered — its process was stopped or starved while the others paused, or its alarm
//! came back from a later scan — does not pause a bridge the owner unpaused since.
//!
//! The record of "acted on" in each relay's store covers only that relay. The chain covers every
//! guardian: a bridge that was paused at or after the breach and reads unpaused now was unpaused
//! by its owner (only the owner unpauses), with the breach in front of them. Found on the devnet:
//! on a loaded machine one guardian confirmed a forged release after the owner had resumed both
//! bridges and paused the main bridge again; every transfer towards it stopped.
//!
//! Where the breach happened on the other chain, "since the breach" is read from the block
//! times: the first block of this chain at most [`CLOCK_SLACK_SECS`] before the breach's block
//! time. The slack leans towards the owner: two chains' clocks that disagree by less than it
//! never make a guardian overrule a resume.

use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::Bridge;

use crate::chain::{ChainClient, ChainError};

/// How far apart two chains' block times may be and still be read as the same moment.
pub const CLOCK_SLACK_SECS: u64 = 60;
/// Most log reads one look for a pause makes (a breach older than that many ranges is looked at
/// as if nobody paused since: the guardian pauses, as it would have when it saw the breach).
pub const PAUSE_SCAN_QUERIES: u32 = 64;

/// What a bridge did since a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinceBreach {
    /// It is paused now.
    Paused,
    /// It was paused at or after the breach and is unpaused now: the owner resumed it.
    Resumed,
    /// It is unpaused and nobody paused it since the breach (or too long ago to tell).
    NeverPaused,
}

/// What `chain`'s bridge did since its block `from`.
pub async fn since_block(
    chain: &ChainClient,
    from: u64,
    max_range: u64,
) -> Result<SinceBreach, ChainError> {
    if chain.views().paused().await? {
        return Ok(SinceBreach::Paused);
    }
    let head = chain.head().await?;
    let bridge = chain.bridge();
    let span = max_range.max(1);
    let mut start = from;
    for _ in 0..PAUSE_SCAN_QUERIES {
        if start > head {
            return Ok(SinceBreach::NeverPaused);
        }
        let end = start.saturating_add(span.saturating_sub(1)).min(head);
        let filter = Filter::new()
            .address(bridge)
            .event_signature(Bridge::PausedChanged::SIGNATURE_HASH)
            .from_block(start)
            .to_block(end);
        let paused_here = chain.logs(&filter).await?.iter().any(|log| {
            !log.removed
                && log.address() == bridge
                && log
                    .log_decode::<Bridge::PausedChanged>()
                    .is_ok_and(|e| e.inner.data.paused)
        });
        if paused_here {
            return Ok(SinceBreach::Resumed);
        }
        start = end.saturating_add(1);
    }
    Ok(SinceBreach::NeverPaused)
}

/// The first block of `chain` whose time is at least `at` − [`CLOCK_SLACK_SECS`] (its head when
/// none is): where "since the breach" starts on a chain other than the breach's.
pub async fn first_block_since(chain: &ChainClient, at: u64) -> Result<u64, ChainError> {
    let target = at.saturating_sub(CLOCK_SLACK_SECS);
    let head = chain.head().await?;
    let (mut low, mut high) = (0u64, head);
    // Invariant: every block below `low` is older than `target`; `high` is the answer if no
    // block in low..high is.
    while low < high {
        let mid = low.saturating_add(high.saturating_sub(low) / 2);
        if chain.block_time(mid).await? >= target {
            high = mid;
        } else {
            low = mid.saturating_add(1);
        }
    }
    Ok(high)
}
