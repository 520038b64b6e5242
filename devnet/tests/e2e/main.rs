//! The end-to-end tests: real anvil chains, a real etcd cluster, real relay processes, real
//! faults. One test binary (one link of the whole dependency graph); run one file with
//! `cargo test -p multibridge-devnet --test e2e relay::` or one test by name.
#![allow(clippy::unwrap_used, clippy::panic)]

mod bad_input;
mod cli;
mod etcd_faults;
mod indexer;
mod lane_scope;
mod leadership;
mod lifecycle;
mod monitoring;
mod recovery;
mod relay;
mod reorg;
mod sender;
mod votes;
