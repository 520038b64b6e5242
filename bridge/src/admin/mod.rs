//! Putting a bridge pair on real chains and running it: [`deploy`] (a resumable deployment of
//! both bridges and the registry, checked against the committed artifacts, with a manifest and
//! a starter relay config per operator) and [`journal`] (the crash-safe record of its
//! transactions).

pub mod apply;
pub mod deploy;
pub mod journal;
pub mod pause;
pub mod plan;
pub mod send;
pub mod state;
