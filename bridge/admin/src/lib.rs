//! The owner's and the pauser's toolkit (`multibridge deploy` and `multibridge admin …`): it
//! shares nothing with the relay but the chain layer and the config.
//!
//! | module | job |
//! |---|---|
//! | [`deploy`], [`journal`] | a resumable deployment of both bridges and the registry, checked against the committed artifacts, with a manifest and a starter relay config per operator; the crash-safe record of its transactions |
//! | [`state`] | a bridge's live configuration as its chain says it |
//! | [`plan`], [`apply`] | a desired-state file against the live state: the calls in a safe order, sent or written as a Safe batch |
//! | [`pause`] | pause, unpause, fund |
//! | [`releases`] | freezing, cancelling and settling held releases |
//! | [`send`] | one simulated-then-sent administrative call |
#![forbid(unsafe_code)]
#![deny(clippy::arithmetic_side_effects)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

use multibridge_chain as chain;
use multibridge_chain::signer;
use multibridge_config as config;

pub mod apply;
pub mod deploy;
pub mod journal;
pub mod pause;
pub mod plan;
pub mod releases;
pub mod send;
pub mod state;
