//! The multibridge contracts as Rust: `alloy::sol!` bindings generated from the committed
//! artifacts in `contracts/artifacts/`, and the typed values every other crate shares (lanes,
//! asset kinds, the request a relay votes on, service ids).
#![forbid(unsafe_code)]
#![deny(clippy::arithmetic_side_effects)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

pub mod artifacts;
pub mod attestation;
pub mod bindings;
pub mod claim;
pub mod lane;
pub mod lifecycle;
pub mod request;
pub mod service_id;

pub use bindings::history::HistoryBridge;
pub use bindings::{
    Bridge, GasPriceGriefer, IERC20, IERC165, IERC721, ServiceRegistry, TestNFT, TestToken,
};
pub use claim::{ClaimData, LaneServiceMeta, RegistryDataError};
pub use lane::{ChainRole, Lane};
pub use lifecycle::{
    NonceState, RejectReason, RequestStatus, UnknownName, WaitReason, bridge_error_name,
    skip_reason_name,
};
pub use request::{
    AssetKind, AttestedExecution, Request, RequestError, TokenMode, VoteDomain, request_from_log,
};
pub use service_id::bridge_service_id;

/// `Bridge.VERSION()`: part of every vote's domain. A bump makes old votes count nowhere.
pub const BRIDGE_VERSION: u64 = 1;

/// Where `Bridge` keeps its threshold: storage slot and byte offset within the slot (from the
/// least significant byte, as `forge inspect Bridge storageLayout` reports it; a cargo test
/// checks these against the compiled layout). The relay estimates a vote's gas as if its vote
/// were the deciding one by overriding this byte to 1 in `eth_estimateGas`.
pub const THRESHOLD_SLOT: u64 = 2;
/// See [`THRESHOLD_SLOT`].
pub const THRESHOLD_OFFSET: usize = 25;

/// `Bridge.MAX_LOWER_ADVANCE()`: already-handled nonces one vote call may move
/// lowerHandleNonce over (eight words of its handled-nonce bitmap).
pub const MAX_LOWER_ADVANCE: u64 = 2_048;

/// Gas a vote may need beyond its estimate when other operators' votes handled nonces above
/// its own between the estimate and its block: moving lowerHandleNonce over
/// [`MAX_LOWER_ADVANCE`] of them (measured 22.4k by `BridgeGasTest`; rounded up).
pub const LOWER_ADVANCE_GAS: u64 = 32_000;

/// `Bridge.ITEM_GAS()`: the gas one vote or execution item needs left at its start (its worst
/// case, checked by the bridge before every item: an item that does not fit is skipped with
/// `GasBudgetTooLow`, never run out of gas). A relay plans every vote as its simulated gas plus
/// this, so no recipient, token or state change between the simulation and the block can make a
/// vote fail (audit NEW-H1). A test checks it against the contract.
pub const ITEM_GAS: u64 = 380_000;

/// `Bridge.NATIVE_ITEM_GAS()`: what a native item needs left at its start instead of
/// [`ITEM_GAS`] (no token call or view: the queue's writes are its dearest path). A vote or an
/// execution of native items only is planned with this headroom (issue 54: ITEM_GAS on every
/// vote reserved a third of a deciding vote's use again). A bridge deployed before it has no such
/// getter and needs ITEM_GAS for every item: a relay reads the bridge's value ([`item_gas`]). A
/// test checks it against the contract.
pub const NATIVE_ITEM_GAS: u64 = 270_000;

/// The gas one item of `requests` may need left at its start on a bridge whose native items
/// need `native_item_gas`: that for a batch of native items only, [`ITEM_GAS`] as soon as one
/// item is of another kind. `native_item_gas` is what the bridge answered (kept within
/// [`RECORD_GAS`]..=[`ITEM_GAS`]: the value of one endpoint's answer can cost a skipped item,
/// never a vote run out of gas, which the bridge itself prevents).
pub fn item_gas<'a>(requests: impl IntoIterator<Item = &'a Request>, native_item_gas: u64) -> u64 {
    if requests
        .into_iter()
        .all(|r| r.kind == AssetKind::Native as u8)
    {
        native_item_gas.clamp(RECORD_GAS, ITEM_GAS)
    } else {
        ITEM_GAS
    }
}

/// `Bridge.RECORD_GAS()`: the gas a vote item that only records (its key stays below the
/// threshold) needs left at its start. A relay that expects its vote to record — its committee
/// rank comes before the deciding vote's — plans it as its recording simulation plus this; if
/// the vote lands after the threshold was reached anyway, the items that would execute without
/// their kind's item gas left ([`ITEM_GAS`], or [`NATIVE_ITEM_GAS`] for native coin) are skipped
/// (`GasBudgetTooLow`), never run out of gas, and voted again.
pub const RECORD_GAS: u64 = 100_000;

/// `Bridge.RELEASE_GAS()`: the gas `executeQueuedRelease` needs left at its start (the capped
/// token call and the credit's writes); a relay plans an execution as its estimate plus this.
pub const RELEASE_GAS: u64 = 230_000;

/// `Bridge.VOTE_WINDOW()`: votes are taken for nonces below `upperHandleNonce + VOTE_WINDOW`.
pub const VOTE_WINDOW: u64 = 4_096;

/// `slot` (the value of [`THRESHOLD_SLOT`]) with the threshold set to one.
pub fn with_threshold_one(slot: alloy::primitives::B256) -> alloy::primitives::B256 {
    let mut bytes = slot.0;
    // B256 is big-endian: byte offset k from the least significant end is index 31 - k.
    if let Some(b) = bytes.get_mut(31usize.saturating_sub(THRESHOLD_OFFSET)) {
        *b = 1;
    }
    alloy::primitives::B256::from(bytes)
}
