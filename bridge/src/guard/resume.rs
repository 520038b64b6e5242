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
//! A resume is what makes a guardian hold back from a confirmed breach, so it is read like the
//! breach itself: on every endpoint of the chain, each judging on its own, and it counts only
//! where every endpoint that answered (at least the chain's quorum, [`super::confirm::quorum`])
//! says so. One endpoint that lies or lags cannot stop a pause; where they disagree, the
//! guardian pauses, as it would have when it saw the breach.
//!
//! Where the breach happened on the other chain, "since the breach" is a block time: a pause
//! counts if its block is no older than [`CLOCK_SLACK_SECS`] before the breach's block time
//! (the slack leans towards the owner: two chains' clocks that disagree by less never make a
//! guardian overrule a resume). Where the scan starts on that chain is found once, from one
//! endpoint's block times; an endpoint that shifts it only makes the scan longer or makes the
//! guardian pause.

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use alloy::transports::TransportError;
use multibridge_contracts::Bridge;

use crate::chain::{ChainClient, ChainError, contract_to_transport};

/// How far apart two chains' block times may be and still be read as the same moment.
pub const CLOCK_SLACK_SECS: u64 = 60;
/// Most log reads one look for a pause makes per endpoint (a breach older than that many ranges
/// is looked at as if nobody paused since: the guardian pauses, as it would have when it saw
/// the breach).
pub const PAUSE_SCAN_QUERIES: u32 = 64;

/// How long a guardian asks again for a resume check it cannot read before the bridge's
/// paused flag decides (a moment's failure of every endpoint must not overrule an owner's
/// resume; a check that never answers must not hold a pause back for good).
pub const UNREAD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// A breach at most this many blocks below its chain's head is fresh: too recent for an owner
/// to have paused and resumed since, so a resume check that cannot be read holds nothing back.
pub const FRESH_BREACH_BLOCKS: u64 = 10;

/// What a guardian goes by where it cannot read what a bridge did since a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// This guardian read the owner's resume of it before: it stands.
    Resumed,
    /// Ask again at the next round (the pause waits; the freeze does not).
    AskAgain,
    /// A fresh breach, or failing for [`UNREAD_PATIENCE`]: the bridge's paused flag decides.
    ByFlag,
}

/// [`Unread`] for a check failing for `failing_for`, whose resume this guardian `respected`
/// before, of a breach that is `fresh` ([`FRESH_BREACH_BLOCKS`]).
pub fn when_unread(respected: bool, failing_for: std::time::Duration, fresh: bool) -> Unread {
    if respected {
        Unread::Resumed
    } else if fresh || failing_for >= UNREAD_PATIENCE {
        Unread::ByFlag
    } else {
        Unread::AskAgain
    }
}

/// What a bridge did since a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinceBreach {
    /// It is paused now.
    Paused,
    /// It was paused since the breach and is unpaused now: the owner resumed it.
    Resumed,
    /// It is unpaused and nobody paused it since the breach (or too long ago to tell, or its
    /// endpoints do not agree that the owner resumed it).
    NeverPaused,
}

/// Where "since the breach" starts on a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    /// The first block scanned.
    pub block: u64,
    /// A pause counts only in a block at least this new (unix seconds; the other chain's).
    pub not_before_time: Option<u64>,
}

/// What `chain`'s bridge did since `since`, by every endpoint's own reading.
pub async fn since_breach(
    chain: &ChainClient,
    since: Since,
    max_range: u64,
) -> Result<SinceBreach, ChainError> {
    let (bridge, span) = (chain.bridge(), max_range.max(1));
    let said = each_endpoint(chain, |p| async move {
        one_endpoint(p, bridge, since, span).await
    })
    .await?;
    Ok(combine(&said, super::confirm::quorum(chain)))
}

/// What every endpoint of `chain` answered to `read` (its own `eth_getLogs` reading), those
/// that failed left out (logged); none answering is `Unavailable` with the last failure.
async fn each_endpoint<T, F, Fut>(chain: &ChainClient, read: F) -> Result<Vec<T>, ChainError>
where
    F: Fn(DynProvider) -> Fut,
    Fut: std::future::Future<Output = Result<T, TransportError>>,
{
    let answers = chain.on_each_endpoint("eth_getLogs", read).await;
    let attempts = u32::try_from(answers.len()).unwrap_or(u32::MAX);
    let mut said = Vec::with_capacity(answers.len());
    let mut last = String::new();
    for (label, answer) in answers {
        match answer {
            Ok(s) => said.push(s),
            Err(e) => {
                tracing::debug!(chain = %chain.role(), endpoint = %label, error = %e, "guardian: cannot read the bridge's owner decisions since the breach");
                last = format!("{label}: {e}");
            }
        }
    }
    if said.is_empty() {
        return Err(ChainError::Unavailable {
            chain: chain.role(),
            method: "eth_getLogs",
            attempts,
            last,
        });
    }
    Ok(said)
}

/// Whether a log of `filter` in `from..=head`, read `span` blocks at a time (at most
/// [`PAUSE_SCAN_QUERIES`] reads: a breach older than that is looked at as if nothing
/// happened since), is one that `found` accepts.
async fn any_log<Fut>(
    p: &DynProvider,
    filter: Filter,
    from: u64,
    head: u64,
    span: u64,
    mut found: impl FnMut(alloy::rpc::types::Log) -> Fut,
) -> Result<bool, TransportError>
where
    Fut: std::future::Future<Output = Result<bool, TransportError>>,
{
    let mut start = from;
    for _ in 0..PAUSE_SCAN_QUERIES {
        if start > head {
            break;
        }
        let end = start.saturating_add(span.saturating_sub(1)).min(head);
        for log in p
            .get_logs(&filter.clone().from_block(start).to_block(end))
            .await?
        {
            if found(log).await? {
                return Ok(true);
            }
        }
        start = end.saturating_add(1);
    }
    Ok(false)
}

/// The endpoints' readings as one: resumed only if at least `quorum` answered and all of those
/// say so; else never paused if any says so (the guardian pauses); else paused if any says so.
fn combine(said: &[SinceBreach], quorum: usize) -> SinceBreach {
    if said.len() >= quorum.max(1) && said.iter().all(|s| *s == SinceBreach::Resumed) {
        SinceBreach::Resumed
    } else if said.is_empty() || said.contains(&SinceBreach::NeverPaused) {
        SinceBreach::NeverPaused
    } else if said.contains(&SinceBreach::Paused) {
        SinceBreach::Paused
    } else {
        // Some say resumed, too few to count: as if nobody had paused.
        SinceBreach::NeverPaused
    }
}

/// One endpoint's reading: its `paused()` at its head, else whether a `PausedChanged(true)` of
/// `bridge` lies in `since.block..=head` (and, with `since.not_before_time`, in a block no
/// older than that).
async fn one_endpoint(
    p: DynProvider,
    bridge: Address,
    since: Since,
    span: u64,
) -> Result<SinceBreach, TransportError> {
    let head = p.get_block_number().await?;
    let paused = Bridge::new(bridge, p.clone())
        .paused()
        .block(head.into())
        .call()
        .await
        .map_err(contract_to_transport)?;
    if paused {
        return Ok(SinceBreach::Paused);
    }
    let filter = Filter::new()
        .address(bridge)
        .event_signature(Bridge::PausedChanged::SIGNATURE_HASH);
    let resumed = any_log(&p, filter, since.block, head, span, |log| {
        let p = p.clone();
        async move {
            let paused_here = !log.removed
                && log.address() == bridge
                && log
                    .log_decode::<Bridge::PausedChanged>()
                    .is_ok_and(|e| e.inner.data.paused);
            let Some(block) = log.block_number.filter(|_| paused_here) else {
                return Ok(false);
            };
            let Some(not_before) = since.not_before_time else {
                return Ok(true);
            };
            let time = p
                .get_block_by_number(BlockNumberOrTag::Number(block))
                .await?
                .map_or(0, |b| b.header.timestamp);
            Ok(time >= not_before)
        }
    })
    .await?;
    Ok(if resumed {
        SinceBreach::Resumed
    } else {
        SinceBreach::NeverPaused
    })
}

/// Whether the owner lifted a freeze of `chain`'s queued release of `nonce` at block `from` or
/// later (a `QueuedReleaseFrozen(nonce, false)`: only the owner lifts one), by every endpoint's
/// own reading: `true` only where every endpoint that answered, at least the quorum, found one
/// (one endpoint that lies or lags cannot stop a freeze).
pub async fn freeze_lifted(
    chain: &ChainClient,
    nonce: u64,
    from: u64,
    max_range: u64,
) -> Result<bool, ChainError> {
    let (bridge, span) = (chain.bridge(), max_range.max(1));
    let said = each_endpoint(chain, |p| async move {
        lifted_on(p, bridge, nonce, from, span).await
    })
    .await?;
    Ok(all_say_lifted(&said, super::confirm::quorum(chain)))
}

/// Lifted only if at least `quorum` endpoints answered and every one of them found the lift.
fn all_say_lifted(said: &[bool], quorum: usize) -> bool {
    said.len() >= quorum.max(1) && said.iter().all(|lifted| *lifted)
}

/// One endpoint's reading: whether a `QueuedReleaseFrozen(nonce, false)` of `bridge` lies in
/// `from..=head`.
async fn lifted_on(
    p: DynProvider,
    bridge: Address,
    nonce: u64,
    from: u64,
    span: u64,
) -> Result<bool, TransportError> {
    let head = p.get_block_number().await?;
    let filter = Filter::new()
        .address(bridge)
        .event_signature(Bridge::QueuedReleaseFrozen::SIGNATURE_HASH)
        .topic1(alloy::primitives::U256::from(nonce));
    any_log(&p, filter, from, head, span, |log| async move {
        Ok(!log.removed
            && log.address() == bridge
            && log
                .log_decode::<Bridge::QueuedReleaseFrozen>()
                .is_ok_and(|e| e.inner.data.nonce == nonce && !e.inner.data.frozen))
    })
    .await
}

/// Where "since the breach" starts on `chain`, the other chain than the breach's, whose block
/// time `at` is: the first block no older than `at` − [`CLOCK_SLACK_SECS`] (its head when none
/// is), found by bisecting block times.
pub async fn since_time(chain: &ChainClient, at: u64) -> Result<Since, ChainError> {
    let target = at.saturating_sub(CLOCK_SLACK_SECS);
    let head = chain.head().await?;
    let (mut low, mut high) = (0u64, head);
    // Every block below `low` is older than `target`; `high` is the answer if no block in
    // low..high is.
    while low < high {
        let mid = low.saturating_add(high.saturating_sub(low) / 2);
        if chain.block_time(mid).await? >= target {
            high = mid;
        } else {
            low = mid.saturating_add(1);
        }
    }
    Ok(Since {
        block: high,
        not_before_time: Some(target),
    })
}

#[cfg(test)]
mod tests {
    use super::SinceBreach::{NeverPaused, Paused, Resumed};
    use super::{UNREAD_PATIENCE, Unread, all_say_lifted, combine, when_unread};

    #[test]
    fn a_lifted_freeze_counts_only_where_every_answering_endpoint_and_a_quorum_say_so() {
        assert!(all_say_lifted(&[true, true], 2));
        assert!(all_say_lifted(&[true], 1));
        assert!(!all_say_lifted(&[true], 2), "one of two answered");
        assert!(
            !all_say_lifted(&[true, false], 2),
            "one endpoint lies or lags"
        );
        assert!(!all_say_lifted(&[], 1));
    }

    #[test]
    fn an_unreadable_check_waits_then_goes_by_the_flag_and_never_overrules_a_resume_seen() {
        let moment = std::time::Duration::from_millis(1);
        assert_eq!(when_unread(false, moment, false), Unread::AskAgain);
        assert_eq!(when_unread(false, UNREAD_PATIENCE, false), Unread::ByFlag);
        assert_eq!(
            when_unread(false, moment, true),
            Unread::ByFlag,
            "a fresh breach is paused at once: nobody can have resumed since"
        );
        assert_eq!(when_unread(true, moment, false), Unread::Resumed);
        assert_eq!(
            when_unread(true, UNREAD_PATIENCE * 10, true),
            Unread::Resumed,
            "a resume this guardian read stands"
        );
    }

    #[test]
    fn a_resume_counts_only_where_every_answering_endpoint_and_a_quorum_say_so() {
        assert_eq!(combine(&[Resumed, Resumed], 2), Resumed);
        assert_eq!(combine(&[Resumed], 1), Resumed);
        // One of two answered: too few to hold back from a confirmed breach.
        assert_eq!(combine(&[Resumed], 2), NeverPaused);
        // One endpoint that lies (or lags) cannot stop the pause.
        assert_eq!(combine(&[Resumed, NeverPaused], 2), NeverPaused);
        assert_eq!(combine(&[NeverPaused, Resumed, Resumed], 2), NeverPaused);
        assert_eq!(combine(&[], 1), NeverPaused);
    }

    #[test]
    fn a_bridge_paused_by_its_endpoints_needs_no_pause() {
        assert_eq!(combine(&[Paused, Paused], 2), Paused);
        assert_eq!(combine(&[Paused, Resumed], 2), Paused);
        assert_eq!(combine(&[Paused, NeverPaused], 2), NeverPaused);
    }
}
