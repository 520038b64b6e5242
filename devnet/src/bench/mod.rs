//! The benchmark commands: each runs on a real devnet and prints its figures as a readable
//! table and as JSON (see docs/benchmarks.md).
//!
//! | command | module |
//! |---|---|
//! | `bench` | [`transfers`]: latency, throughput, gas per transfer, memory |
//! | `bench-failover` | [`failover`]: how fast a standby takes over |
//! | `bench-join` | [`join`]: how fast a new replica is warm |
//! | `bench-signers` | [`signer`]: what one signature costs per backend |
//! | `bench-modes` | [`modes`]: votes beside attested batches per committee size; [`steady`]: gas per transfer at a fixed load |
//! | `bench-hub` | [`hub`]: one process serving many service chains: RSS per lane, isolation |
//! | `bench --compare FILE` | [`compare`]: each figure beside an earlier run's |

pub mod compare;
pub mod failover;
pub mod hub;
pub mod join;
pub mod modes;
pub mod signer;
pub mod steady;
pub mod takeover;
pub mod transfers;

pub use transfers::percentile;
