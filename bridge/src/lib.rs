//! The multibridge relay: config, keys, chain clients, indexer, request store, voter, sender,
//! leadership and the operator CLI (DESIGN.md §4, §6).
#![forbid(unsafe_code)]
#![deny(clippy::arithmetic_side_effects)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

pub mod chain;
pub mod commands;
pub mod config;
pub mod conservation;
pub mod fees;
pub mod indexer;
pub mod keys;
pub mod lane_recovery;
pub mod lane_voting;
pub mod leadership;
pub mod registry;
pub mod relay;
pub mod rpc_error;
pub mod sender;
pub mod store;
pub mod voter;
pub mod watch;
