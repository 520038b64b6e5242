//! Leadership among replicas through etcd (DESIGN §6): per-lane campaigns, the fence checked
//! before every broadcast, progress records, and the keys they use.

pub mod campaign;
pub mod etcd_pool;
pub mod fence;
pub mod keys;
pub mod progress;
