//! The devnet and what tests and benchmarks do with it: start it ([`devnet`]), drive transfers
//! ([`driver`]), check the invariants ([`invariants`]), inject faults ([`proxy`], [`process`]),
//! read the relays' metrics ([`scrape`]) and wait on conditions ([`wait`]).

pub mod accounts;
pub mod anvil;
pub mod browser;
pub mod deploy;
pub mod devnet;
pub mod driver;
pub mod etcd;
pub mod ha;
pub mod http;
pub mod invariants;
pub mod machine;
pub mod manifest;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod scrape;
pub mod tools;
pub mod tx;
pub mod wait;
pub mod watch;
