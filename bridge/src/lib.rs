//! The multibridge relay: one replica of one operator, and the operator CLI (DESIGN.md §4–§6).
//!
//! # The tasks of one replica
//!
//! ```text
//!                       ┌──────────── etcd ────────────┐
//!                       │ campaign (per lane) ─ fence  │ progress (per lane)
//!                       └──────────────┬───────────────┘
//!  source chain                        │ leading?                          destination chain
//!  ──────────► indexer ──► store ◄── voter ──► submitter (per chain+signer) ──────────►
//!   (per lane)           (SQLite)     ▲   (per lane)    ▲ also serves the registry sync
//!                           ▲         │                 │
//!                           └─ recovery (per lane, leader only) ◄── claims watcher
//!  watcher: heads, balances, lane nonces, store counts, conservation → metrics, /status
//! ```
//!
//! | task | module | runs |
//! |---|---|---|
//! | indexer | [`lane::indexing`] | per lane, on every replica (followers stay warm) |
//! | campaign, progress | [`leadership`] | per lane, with `[etcd]` |
//! | voter | [`lane::voting`] → [`voter`] | per lane, while leading |
//! | recovery | [`lane::recovery`] → `multibridge_recovery` | per lane, while leading |
//! | submitter | [`chain::submitter`] | per chain the key writes to |
//! | registry sync, claims | [`registry`] | with `[registry]` |
//! | watcher | [`observe`] | once |
//!
//! Each loops through [`task::run_stepper`]: a step, a pause, retry what may heal, stop the
//! relay on what cannot ([`error::RelayError`]). [`relay::run`] composes them; a chain's
//! contract views are read through [`chain::BridgeViews`] only.
//!
//! # The life of a request (in this relay's store)
//!
//! ```text
//!  observed ──sent──► voting ──receipt: our vote──► voted ──pre-check: handled──► handled
//!     ▲  │                │  └──receipt / pre-check / refusal: executed ──────────► handled
//!     │  │                └── superseded, abandoned (term ended), reverted ──► observed
//!     │  └── destination cannot execute yet ──► observed + wait reason (retried alone)
//!     └── recovery requeue (found open on the chains) ─── voted/voting ──► observed
//!  any open ── can never be voted (wrong source, oversized) ──► rejected + reason
//! ```
//!
//! Every outcome goes through [`voter::Voter::settle`] and one [`store::Transition`]; status and
//! reason names are the stable names of `multibridge_contracts::lifecycle`, shared with the
//! metric labels.
#![forbid(unsafe_code)]
#![deny(clippy::arithmetic_side_effects)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

pub mod backup;
pub mod commands;
pub use multibridge_chain as chain;
pub use multibridge_config as config;
pub mod dashboard;
pub mod error;
pub mod lane;
pub mod leadership;
pub mod observe;
pub mod preflight;
pub mod registry;
pub mod relay;
pub mod startup;
pub mod store;
pub mod task;
pub mod voter;
