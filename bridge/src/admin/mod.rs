//! Putting a bridge pair on real chains and running it: [`deploy`] (a resumable deployment of
//! both bridges and the registry, checked against the committed artifacts, with a manifest and
//! a starter relay config per operator) and [`journal`] (the crash-safe record of its
//! transactions); [`plan`]/[`apply`] of a desired state, [`pause`] and funding, and
//! [`releases`]: freezing, cancelling and settling held releases.

pub mod apply;
pub mod deploy;
pub mod journal;
pub mod pause;
pub mod plan;
pub mod releases;
pub mod send;
pub mod state;
