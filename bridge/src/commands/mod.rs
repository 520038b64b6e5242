//! The operator and user commands of the `multibridge` binary (the daemon is [`crate::relay`]).

pub mod backup;
pub mod claim;
pub mod registry;
pub mod status;
pub mod transfer;
