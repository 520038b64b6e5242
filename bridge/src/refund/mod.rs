//! The refund path (issue 53): a request the destination can never execute, or whose requester
//! asks for its money back, ends cancelled on the destination and refunded on the source,
//! decided by the same threshold of the same operators as a release.
//!
//! Two tasks per lane, both re-deriving every step from the chains and [`crate::store::refunds`]
//! (so a relay killed between two steps carries on where it stopped):
//!
//! - the [`desk::RefundDesk`] (every replica; sends only while it leads the lane, through the
//!   destination's submitter): takes the requester's refund claims, notes since when the
//!   destination refuses a request for a reason held permanent, votes `cancelValueTransfers` for
//!   the requests due (asked and older than `refund_after_secs`, or refused that long), reads the
//!   destination's `HandleCancelled` at the confirmation depth of both chains and signs the
//!   refund of every cancel whose vote key is the request this relay indexed;
//! - the [`sender::RefundSender`] (sends only while it leads the chain the lane starts on,
//!   through that chain's submitter): collects a threshold of the source's operators'
//!   signatures — its own from the store, the others' from their published `/refunds/{lane}`
//!   routes — and calls `refund`, one operator's turn per nonce, anyone's after a few rounds.
//!
//! Cancels are voted in both voting modes: they are rare, and one path is one path to trust
//! (`cancelAttested` is there for anyone holding the signatures).

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::chain::submitter::SubmitterHandle;
use crate::lane::{LaneControl, LaneSettings, Shared};
use crate::task::run_stepper;

pub mod desk;
pub mod peers;
pub mod sender;

/// A requester's refund claim as the registry delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundAsk {
    /// The request nonce.
    pub nonce: u64,
    /// Who filed the claim (must be the request's requester).
    pub claimant: Address,
}

/// One operator's refund signature as its route serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRefund {
    /// The request nonce.
    pub nonce: u64,
    /// The canonical 65-byte signature over the source's `refundDigest` of the request.
    pub signature: alloy::primitives::Bytes,
}

/// What `/refunds/{lane}` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPage {
    /// The lane.
    pub lane: String,
    /// The operator whose signatures these are.
    pub operator: Address,
    /// Its signatures, nonce ascending.
    pub refunds: Vec<SignedRefund>,
}

/// Most signatures one page answers.
pub const MAX_REFUND_PAGE: usize = 64;

/// An operator that voted to cancel a request votes again only after this long (a vote lost to
/// a reorg or a failed transaction; the bridge skips a second vote of the same operator).
pub const REVOTE_AFTER_SECS: u64 = 120;

/// Start the refund tasks of `lane`: the desk on the lane's destination (under `control`) and
/// the sender on its source (under the control of the lane that writes there, `source_writer`),
/// with the submitters of both chains. Without a submitter for the source (the operator does not
/// write there) only the desk runs: the other operators send.
pub fn spawn(
    shared: &Shared,
    settings: &LaneSettings,
    control: &LaneControl,
    destination_submitter: &SubmitterHandle,
    source_writer: Option<(&LaneControl, &SubmitterHandle)>,
    asks: mpsc::Receiver<RefundAsk>,
    tasks: &mut JoinSet<crate::task::TaskResult>,
) {
    let lane = control.lane;
    let operator = shared.operator;
    let interval = Duration::from_millis(settings.recovery.interval_ms.clamp(100, 5_000));
    let metrics = shared.metrics.lane(lane);
    let desk = desk::RefundDesk::new(
        desk::DeskSettings {
            lane,
            domain: settings.domain,
            refund_after: settings.recovery.refund_after_secs,
            confirmations: settings.destination.confirmations,
            source_depth: settings.source.confirmations.depth().unwrap_or(0),
            scan_from: settings.destination.start_block,
            max_range: settings.destination.max_block_range.max(1),
            interval,
        },
        shared.store.clone(),
        shared.chains.get(lane.destination()).clone(),
        (
            shared.chains.get(lane.source()).clone(),
            settings.source.confirmations,
        ),
        shared.signer.clone(),
        destination_submitter.client().0,
        control.leading.clone(),
        asks,
        metrics.clone(),
    )
    .publish_to(shared.attestation_store.clone().map(|storage| {
        let service_id =
            multibridge_contracts::LaneServiceMeta::of(&settings.domain, operator).service_id();
        (storage, service_id, operator)
    }));
    let span = tracing::info_span!("refund desk", chain = %lane.destination(), %lane, %operator);
    tasks.spawn(run_stepper(lane, "refund desk", desk).instrument(span));

    let (Some((writer, submitter)), Some(registry)) = (source_writer, &settings.registry) else {
        return;
    };
    let (main, registry, domain) = (
        shared.chains.main.clone(),
        registry.address,
        settings.domain,
    );
    let (timeout, policy) = (
        Duration::from_millis(settings.voting.peer_timeout_ms),
        crate::attest::location::LocationPolicy {
            devnet: settings.devnet,
            peer_stores: settings.voting.peer_stores.clone(),
        },
    );
    let peers = sender::LazyPeers::new(move || {
        Arc::new(peers::RegistryRefundPeers::new(
            crate::attest::collect::RegistryPeers::new(
                main,
                registry,
                lane,
                domain,
                timeout,
                policy.clone(),
            ),
            domain,
            timeout,
            policy,
        ))
    });
    let sender = sender::RefundSender::new(
        lane,
        settings.domain,
        operator,
        shared.store.clone(),
        shared.chains.get(lane.source()).clone(),
        submitter.client().0,
        writer.leading.clone(),
        peers,
        interval,
        metrics,
    );
    let span = tracing::info_span!("refund sender", chain = %lane.source(), %lane, %operator);
    tasks.spawn(run_stepper(lane, "refund sender", sender).instrument(span));
}
