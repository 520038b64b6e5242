//! The multibridge relay: one replica of one operator, and the operator CLI (DESIGN.md §4–§6).
//!
//! # The tasks of one replica
//!
//! ```text
//!                       ┌──────────── etcd ────────────┐
//!                       │ campaign (per chain) ─ fence │ progress (per lane)
//!                       └──────────────┬───────────────┘
//!  source chain                        │ leading?                          destination chain
//!  ──────────► indexer ──► store ◄── voter ──► submitter (per chain+signer) ──────────►
//!   (per lane)           (SQLite)   │ plan:    ▲ also serves registry, upkeep, dashboard
//!                           ▲       │ votes or │
//!                           │       │ attested ┤◄── peers' signatures (registry locations:
//!                           │       ▼          │     HTTP /attestations, object stores)
//!                           │   turns: who acts│
//!                           └─ recovery (per lane, leader only) ◄── claims watcher
//!  watcher: heads, balances, nonces, conservation by nonce → metrics, /status ──► guardian
//! ```
//!
//! | task | module | runs |
//! |---|---|---|
//! | indexer | [`lane::indexing`] | per lane, on every replica (followers stay warm) |
//! | campaign | [`leadership::campaign`] | per chain the lanes write to, with `[etcd]` (shared by every pair of a process) |
//! | progress | [`leadership::progress`] | per lane, with `[etcd]` |
//! | voter | [`lane::voting`] → [`voter`] (planner: votes, or [`attest`] for attested lanes) | per lane, while leading |
//! | recovery | [`lane::recovery`] → `multibridge_recovery` | per lane, while leading |
//! | upkeep (lowerHandleNonce, due queued releases) | [`lane::upkeep`] | per lane, while leading |
//! | attestation pages | [`attest::serve`] | per attested lane with `voting.attestation_store`, while leading |
//! | submitter | [`chain::submitter`] | per chain the key writes to (shared by every pair of a process) |
//! | registry sync, claims (and refund claims) | [`registry`] | with `[registry]` |
//! | refund desk: refund claims, permanent refusals, cancel votes, cancels read at depth, refund signatures | [`refund::desk`] | per lane on every replica; sends only while leading |
//! | refund sender: a threshold of refund signatures → `refund` on the source | [`refund::sender`] | per lane, while leading the source chain's election |
//! | watcher (and the conservation scan) | [`observe`] | once |
//! | config drift watch | [`observe::drift`] | once |
//! | guardian, its submitters | [`guard`] | with `[guardian]` |
//! | backup worker | [`backup::worker`] | with `[backup]` |
//! | dashboard timeline, claims history, manager submitter | [`dashboard`] | with the dashboard |
//!
//! Who acts for what and when (votes, attested batches, upkeep) is one rule, in [`turns`].
//! Object storage (backups, attestation stores) is [`storage`].
//!
//! Each loops through [`task::run_stepper`] or a loop of its own: a step, a pause, retry what
//! may heal, stop the relay on what cannot ([`error::RelayError`]). [`relay::run`] composes
//! them; a chain's contract views are read through [`chain::BridgeViews`] only.
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
//!  any open ── refund due: asked and old, or refused for good (issue 53) ── cancel vote ──►
//!     cancelled on the destination (handled there, nothing paid) ──► refund signed ──►
//!     refunded on the source ([`store::refunds`])
//! ```
//!
//! Every outcome goes through [`voter::Voter::settle`] and one [`store::Transition`]; status and
//! reason names are the stable names of `multibridge_contracts::lifecycle`, shared with the
//! metric labels.
#![forbid(unsafe_code)]
// The admin commands nest alloy futures deeper than the default layout depth of 128.
#![recursion_limit = "256"]
#![deny(clippy::arithmetic_side_effects)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

pub mod commands;
pub use multibridge_chain as chain;
pub use multibridge_config as config;

mod attest;
mod backup;
mod dashboard;
mod error;
mod guard;
mod lane;
mod leadership;
mod observe;
mod preflight;
mod refund;
mod registry;
mod relay;
mod startup;
mod storage;
mod store;
mod task;
mod turns;
mod voter;

pub use error::RelayError;

/// What the devnet harness and its end-to-end tests reach inside the relay (the relay's public
/// surface besides the commands): backup keys and logs, the store, the indexer, the election
/// layout, the registry's lane services, whose turn a batch is. Everything else is the crate's own.
pub mod harness {
    pub use crate::backup::ecies;
    pub use crate::backup::join::newest_log;
    pub use crate::backup::keys::{parse_private_key, public_key_hex};
    pub use crate::backup::log::BackupLog;
    pub use crate::lane::indexing::{Indexer, IndexerSettings, Step};
    pub use crate::leadership::etcd_version::revokes_live_leases;
    pub use crate::leadership::key_history::REPLAY_REVISIONS;
    pub use crate::leadership::{election_dir_of, layout::leader_key};
    pub use crate::registry::lane_services;
    pub use crate::storage::sha256_hex;
    pub use crate::store::{SharedStore, Store, identity, payload_hash};
    pub use crate::turns::turn_of;
}
