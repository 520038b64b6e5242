//! multibridge on one machine, for real: two anvil chains, a three-member etcd cluster, the
//! deployed contracts and the relays — and the harness every end-to-end test uses.
//!
//! | folder | what |
//! |---|---|
//! | [`harness`] | the devnet itself (chains, etcd, contracts, relay configs and processes), the transfer driver, the invariants of DESIGN.md §9, fault tools (proxy, process signals) |
//! | [`stand_in`] | real or stand-in services a relay can be pointed at: SoftHSM2, a KMS, S3 (moto), a lying RPC |
//! | [`bench`] | `bench`, `bench-failover`, `bench-join`, `bench-signers`: figures as JSON and a table |
//! | [`experiment`] | the paper's experiments: load, soak, network cut, leader pause, Klaytn HA |
//!
//! Everything a [`Devnet`] starts is killed when it is dropped, also when a test panics.
#![forbid(unsafe_code)]

pub mod bench;
pub mod error;
pub mod experiment;
pub mod harness;
pub mod screenshots;
pub mod stand_in;

pub use error::DevnetError;
pub use harness::devnet::{
    DEVNET_BACKUP_SECRET, Devnet, DevnetOptions, DevnetSigner, LEASE_TTL_SECS,
};
pub use harness::driver::{Driver, VoteOutcome};
pub use harness::manifest::Manifest;
