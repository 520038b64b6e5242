//! State backups (issue 15, seed 003's extended BR2K): the pieces built so far.
//!
//! - [`ecies`]: the encryption of the state-backup log to the service's backup public key, in
//!   the standard secp256k1 ECIES construction (interoperable with eciesjs, tested).

pub mod ecies;
