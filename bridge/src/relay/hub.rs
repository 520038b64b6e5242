//! What the bridge pairs of one process share (`[[pairs]]`, issue 37): one submitter per
//! (chain, signer) and, under etcd, one election per chain the operator's key writes to.
//!
//! A key has one nonce sequence on a chain however many pairs write to it there (the main
//! chain of several service chains; a service chain that is also the main chain of a nested
//! one). So the first pair that needs the key on a chain starts its submitter and every other
//! pair sends through the same one: its jobs are served in the order they arrive, each client
//! waiting for its own before it sends the next, so a busy pair cannot starve a quiet one. For
//! the same reason the lanes of every pair that write to one chain follow one election: two
//! replicas leading two pairs' lanes into one chain would both send with the key there. The
//! first such lane to start campaigns, for a key named by the chain
//! ([`crate::leadership::leader_key_of`] with `elect_by_chain`), so every replica campaigns for
//! the same election whichever of its pairs starts first.
//!
//! A single-pair relay has a share of its own, which changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use alloy::primitives::Address;
use multibridge_contracts::Lane;

use crate::chain::submitter::SubmitterHandle;
use crate::lane::LaneControl;

/// The submitters and elections of one process, by chain id, the tasks that run them (on
/// the process, not on the pair that started them: a pair that fails alone stops none of them)
/// and the process's etcd connections.
#[derive(Clone, Default)]
pub struct HubShare(
    Arc<Mutex<Inner>>,
    crate::task::SharedTasks,
    crate::leadership::etcd_pool::EtcdConnections,
);

#[derive(Default)]
struct Inner {
    submitters: HashMap<(u64, Address), SubmitterHandle>,
    controls: HashMap<u64, LaneControl>,
    /// The process serves several pairs (a failing one waits alone).
    several: bool,
}

impl HubShare {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A share for a process of `pairs` pairs.
    pub fn for_pairs(pairs: usize) -> Self {
        let share = Self::default();
        share.inner().several = pairs > 1;
        share
    }

    /// Whether the process serves several pairs.
    pub fn several(&self) -> bool {
        self.inner().several
    }

    /// Where the shared tasks run.
    pub fn tasks(&self) -> &crate::task::SharedTasks {
        &self.1
    }

    /// The etcd connections every pool of the process uses.
    pub fn etcd_connections(&self) -> &crate::leadership::etcd_pool::EtcdConnections {
        &self.2
    }

    /// The submitter of `signer` on chain `chain_id`: the one already running, or the one
    /// `start` starts (and which every later caller shares).
    pub fn submitter(
        &self,
        chain_id: u64,
        signer: Address,
        start: impl FnOnce() -> SubmitterHandle,
    ) -> SubmitterHandle {
        self.inner()
            .submitters
            .entry((chain_id, signer))
            .or_insert_with(start)
            .clone()
    }

    /// The control of `lane`, whose votes go to chain `destination`: standalone always its own;
    /// under etcd the first lane into a chain campaigns and every later one follows it.
    pub fn control(&self, lane: Lane, destination: u64, leased: bool) -> LaneControl {
        if !leased {
            return LaneControl::new(lane, false);
        }
        let mut inner = self.inner();
        if let Some(leader) = inner.controls.get(&destination) {
            return LaneControl::follow(lane, leader);
        }
        let control = LaneControl::new(lane, true);
        inner
            .controls
            .insert(destination, LaneControl::follow(lane, &control));
        control
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_into_one_chain_follow_one_election_and_standalone_lanes_are_their_own() {
        let hub = HubShare::default();
        let first = hub.control(Lane::MainToService, 2, true);
        let other_pair = hub.control(Lane::ServiceToMain, 2, true);
        let elsewhere = hub.control(Lane::ServiceToMain, 1, true);
        assert!(first.campaigns);
        assert!(!other_pair.campaigns);
        assert!(elsewhere.campaigns);
        // The follower sees what the leader's campaign sets.
        first.leading_tx.send_replace(true);
        assert!(*other_pair.leading.borrow());
        assert!(!*elsewhere.leading.borrow());
        let standalone = HubShare::default().control(Lane::MainToService, 2, false);
        assert!(standalone.campaigns && *standalone.leading.borrow());
    }
}
