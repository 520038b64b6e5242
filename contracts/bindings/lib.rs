//! The multibridge contracts as Rust: `alloy::sol!` bindings generated from the committed
//! artifacts in `contracts/artifacts/`, and the typed values every other crate shares (lanes,
//! asset kinds, the request a relay votes on, service ids).
#![forbid(unsafe_code)]
#![deny(clippy::arithmetic_side_effects)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

pub mod bindings;
pub mod claim;
pub mod lane;
pub mod lifecycle;
pub mod request;
pub mod service_id;

pub use bindings::{Bridge, IERC20, ServiceRegistry, TestToken};
pub use claim::{ClaimData, LaneServiceMeta, RegistryDataError};
pub use lane::{ChainRole, Lane};
pub use lifecycle::{
    NonceState, RejectReason, RequestStatus, UnknownName, WaitReason, bridge_error_name,
    skip_reason_name,
};
pub use request::{AssetKind, Request, RequestError, TokenMode, VoteDomain, request_from_log};
pub use service_id::bridge_service_id;

/// `Bridge.VERSION()`: part of every vote's domain. A bump makes old votes count nowhere.
pub const BRIDGE_VERSION: u64 = 1;
