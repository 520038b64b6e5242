//! multibridge on one machine, for real: two anvil chains, a three-member etcd cluster, the
//! deployed contracts and (later) the relays — and the harness every end-to-end test uses.
//!
//! Everything a [`Devnet`] starts is killed when it is dropped, also when a test panics.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod anvil;
pub mod bench;
pub mod browser;
pub mod deploy;
pub mod devnet;
pub mod driver;
pub mod error;
pub mod etcd;
pub mod experiment;
pub mod failover_bench;
pub mod ha;
pub mod hsm;
pub mod invariants;
pub mod join_bench;
pub mod kms;
pub mod lying_rpc;
pub mod manifest;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod s3;
pub mod scrape;
pub mod screenshots;
pub mod signer_bench;
pub mod tools;
pub mod tx;
pub mod wait;

pub use devnet::{DEVNET_BACKUP_SECRET, Devnet, DevnetOptions, DevnetSigner};
pub use driver::{Driver, VoteOutcome};
pub use error::DevnetError;
pub use manifest::Manifest;
