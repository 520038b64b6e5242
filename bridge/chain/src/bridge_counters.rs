//! A bridge's counters, read once per block for every task of the process that watches them
//! (issue 54).
//!
//! Four numbers say where a bridge stands: `requestNonce` (as a source), `lowerHandleNonce` and
//! `upperHandleNonce` (as a destination) and `queuedReleaseCount`. Measured on an idle hub, each
//! pair's tasks asked them about five times a second on each chain, each a request of its own:
//! the watcher's lane rounds, the leader's upkeep (the idle lane's advance, the queued
//! releases), recovery's rounds and the status page — tasks that only need them as new as the
//! head they read. Now they are read as one batch of four `eth_call`s pinned to the block the
//! shared head names ([`ChainClient::head`](crate::ChainClient::head)), so the four agree with
//! each other, and served to every asker of the process whose head has not moved past that
//! block.
//!
//! What still reads the bridge itself: the voter's pre-check and attested planning (their
//! decisions read the latest state), the guardian (a protection judges on its own reads) and
//! one-off commands.
//!
//! A reorg that replaces the head block at the same height is not seen by the number: counters
//! serve at most [`COUNTERS_FRESH_FOR`], then are read again. A failed read is shared for
//! [`FAILURE_SHARED_FOR`], so askers behind a dead endpoint do not queue up one failover each.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::eips::BlockId;
use alloy::primitives::{Address, Bytes};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::sol_types::SolCall;
use alloy::transports::{TransportError, TransportErrorKind};
use multibridge_contracts::bindings::Bridge;

/// Longest that counters read at a block serve the askers whose head is still that block (a
/// reorg at the same height is seen within it; on a chain of 1 s blocks a new block comes
/// first).
pub const COUNTERS_FRESH_FOR: Duration = Duration::from_secs(2);

/// How long a failed read of the counters is the answer of every asker.
pub const FAILURE_SHARED_FOR: Duration = Duration::from_millis(100);

/// Where a bridge stands at one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct BridgeCounters {
    /// The block they were read at.
    pub block: u64,
    /// `requestNonce`: the next nonce this bridge assigns as a source.
    pub request_nonce: u64,
    /// `lowerHandleNonce`: every nonce below it is handled (as a destination).
    pub lower_handle_nonce: u64,
    /// `upperHandleNonce`: no nonce at or above it is handled.
    pub upper_handle_nonce: u64,
    /// `queuedReleaseCount`: releases held back by the destination.
    pub queued_release_count: u64,
}

/// What the last read of one bridge's counters returned.
#[derive(Debug)]
enum Kept {
    Counters(Instant, BridgeCounters),
    Failed(Instant, String),
}

/// One bridge's counters as the process last read them.
#[derive(Debug, Default)]
pub struct CountersSlot {
    last: Mutex<Option<Kept>>,
    /// Held by the task reading, so the others wait for its answer.
    pub(crate) reading: tokio::sync::Mutex<()>,
}

/// What the slot holds for an asker: counters of its head or a later block, or why another
/// task's read just failed; with the age of that read.
pub type Served = (Result<BridgeCounters, String>, Duration);

impl CountersSlot {
    /// What the slot holds for an asker whose head is `head`, if anything still serves it.
    pub fn serves(&self, head: u64) -> Option<Served> {
        self.serves_at(head, Instant::now())
    }

    fn serves_at(&self, head: u64, now: Instant) -> Option<Served> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.as_ref()? {
            Kept::Counters(at, counters) => {
                let age = now.saturating_duration_since(*at);
                (counters.block >= head && age < COUNTERS_FRESH_FOR).then_some((Ok(*counters), age))
            }
            Kept::Failed(at, why) => {
                let age = now.saturating_duration_since(*at);
                (age < FAILURE_SHARED_FOR).then(|| (Err(why.clone()), age))
            }
        }
    }

    /// Keep what a read returned.
    pub fn keep(&self, read: Result<BridgeCounters, String>) {
        let now = Instant::now();
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(match read {
            Ok(counters) => Kept::Counters(now, counters),
            Err(why) => Kept::Failed(now, why),
        });
    }
}

/// The four counters of `bridge` at `block`, asked of `provider` as one batch.
pub async fn read_at(
    provider: DynProvider,
    bridge: Address,
    block: u64,
) -> Result<BridgeCounters, TransportError> {
    let client = provider.client();
    let mut batch = alloy::rpc::client::BatchRequest::new(client);
    let at = BlockId::number(block);
    let mut call = |input: Vec<u8>| {
        let request = TransactionRequest::default()
            .to(bridge)
            .input(TransactionInput::new(input.into()));
        batch.add_call::<_, Bytes>("eth_call", &(request, at))
    };
    let request = call(Bridge::requestNonceCall {}.abi_encode())?;
    let lower = call(Bridge::lowerHandleNonceCall {}.abi_encode())?;
    let upper = call(Bridge::upperHandleNonceCall {}.abi_encode())?;
    let queued = call(Bridge::queuedReleaseCountCall {}.abi_encode())?;
    batch.send().await?;
    Ok(BridgeCounters {
        block,
        request_nonce: decode::<Bridge::requestNonceCall>(&request.await?)?,
        lower_handle_nonce: decode::<Bridge::lowerHandleNonceCall>(&lower.await?)?,
        upper_handle_nonce: decode::<Bridge::upperHandleNonceCall>(&upper.await?)?,
        queued_release_count: u64::try_from(decode::<Bridge::queuedReleaseCountCall>(
            &queued.await?,
        )?)
        .unwrap_or(u64::MAX),
    })
}

/// A call's answer decoded; empty or garbled data (no bridge at the address on this node) is an
/// error of the endpoint, as a contract call's would be.
fn decode<C: SolCall>(data: &Bytes) -> Result<C::Return, TransportError> {
    C::abi_decode_returns(data).map_err(|e| {
        TransportErrorKind::custom_str(&format!(
            "{}: undecodable answer ({} bytes): {e}",
            C::SIGNATURE,
            data.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(block: u64) -> BridgeCounters {
        BridgeCounters {
            block,
            request_nonce: 7,
            ..BridgeCounters::default()
        }
    }

    #[test]
    fn counters_serve_askers_up_to_their_block_and_for_a_bounded_time() {
        let slot = CountersSlot::default();
        assert_eq!(slot.serves(10), None, "nothing read yet");
        slot.keep(Ok(at(10)));
        let now = Instant::now();
        let answer = |head| slot.serves_at(head, now).map(|(answer, _)| answer);
        assert_eq!(answer(9), Some(Ok(at(10))));
        assert_eq!(answer(10), Some(Ok(at(10))));
        assert_eq!(answer(11), None, "the head moved past them");
        let later = now + COUNTERS_FRESH_FOR;
        assert_eq!(
            slot.serves_at(10, later),
            None,
            "a reorg at the same height"
        );
    }

    #[test]
    fn a_failed_read_is_shared_only_briefly() {
        let slot = CountersSlot::default();
        slot.keep(Err("endpoint down".into()));
        let now = Instant::now();
        assert_eq!(
            slot.serves_at(10, now).map(|(answer, _)| answer),
            Some(Err("endpoint down".to_owned()))
        );
        assert_eq!(slot.serves_at(10, now + FAILURE_SHARED_FOR), None);
    }
}
