//! The recovery worker (DESIGN.md §5): per lane, compares the source `requestNonce` with the
//! destination `lowerHandleNonce`; when requests are pending and the lower nonce has not moved
//! since the previous tick, re-reads the source's request events from the destination's
//! `recoveryBlockNumber` in bounded strides, keeps those neither handled on the destination nor
//! voted by this operator, caps the round and hands them to the voter. A claim filed in the
//! service registry targets one nonce at once, stalled or not.
//!
//! It needs no local state to be correct: every decision comes from the chains, so a wiped
//! store is recovered from them alone. What it improves on in Klaytn's recovery (see
//! `../shared/research/klaytn.md`): it asks the destination whether each request is handled or
//! already voted by this operator instead of re-sending blindly, and it never drops a request —
//! a request the destination cannot execute yet stays open in the voter with its reason.
//!
//! The chains and the voter are reached through two small traits ([`LaneChains`],
//! [`VoteQueue`]) so every decision is unit-tested with fakes.
#![forbid(unsafe_code)]
#![deny(clippy::arithmetic_side_effects)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

mod detector;
mod scan;
mod worker;

pub use detector::{StallDetector, Verdict};
pub use multibridge_contracts::NonceState;
pub use scan::{ScanPlan, strides};
pub use worker::{LaneChains, Recovery, RecoveryConfig, RecoveryError, Round, VoteQueue};
