//! The etcd key layout: `<prefix>/<pair>/<lane>/<operator>/…` (operator scope) or
//! `<prefix>/<pair>/<lane>/…` (lane scope, one election among every operator).

use alloy::primitives::Address;
use multibridge_contracts::Lane;
use serde::{Deserialize, Serialize};

use crate::config::ElectionScope;

/// The bridge pair's part of every key.
pub fn pair(
    main_chain_id: u64,
    main_bridge: Address,
    service_chain_id: u64,
    service_bridge: Address,
) -> String {
    format!("{main_chain_id}-{main_bridge:#x}-{service_chain_id}-{service_bridge:#x}")
}

/// The directory of one election.
pub fn election_dir(
    prefix: &str,
    pair: &str,
    lane: Lane,
    scope: ElectionScope,
    operator: Address,
) -> String {
    scoped(
        format!("{}/{pair}/{lane}", prefix.trim_end_matches('/')),
        scope,
        operator,
    )
}

/// The directory of the one election for every lane into chain `chain_id` of a process
/// serving several pairs (`elect_by_chain`).
pub fn chain_election_dir(
    prefix: &str,
    chain_id: u64,
    scope: ElectionScope,
    operator: Address,
) -> String {
    scoped(
        format!("{}/chain-{chain_id}", prefix.trim_end_matches('/')),
        scope,
        operator,
    )
}

/// `base`, with the operator under the operator scope (the lane scope: every operator's).
fn scoped(base: String, scope: ElectionScope, operator: Address) -> String {
    match scope {
        ElectionScope::Operator => format!("{base}/{operator:#x}"),
        ElectionScope::Lane => base,
    }
}

/// The leader key of an election.
pub fn leader_key(dir: &str) -> String {
    format!("{dir}/leader")
}

/// Where a replica records its progress.
pub fn progress_key(dir: &str, replica: &str) -> String {
    format!("{dir}/progress/{replica}")
}

/// Where the leader records the lane cursor.
pub fn cursor_key(dir: &str) -> String {
    format!("{dir}/cursor")
}

/// One replica's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaProgress {
    /// The replica.
    pub replica: String,
    /// Whether it leads the lane.
    pub leader: bool,
    /// Next source block its indexer reads.
    pub cursor: Option<u64>,
    /// Highest request nonce in its store (its latest processed index).
    pub latest_nonce: Option<u64>,
    /// Handled requests in its store.
    pub handled: u64,
    /// Unix seconds of the record.
    pub at: u64,
    /// Whether it can serve the lane now (its destination chain answers, its signer signs);
    /// absent from a replica that does not say (an older version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_election_is_one_per_chain_and_operator_whatever_the_pair() {
        let op = Address::repeat_byte(0xaa);
        let a = chain_election_dir("/mb/", 31337, ElectionScope::Operator, op);
        assert_eq!(
            a,
            "/mb/chain-31337/0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        assert_ne!(
            a,
            chain_election_dir("/mb", 31338, ElectionScope::Operator, op)
        );
        assert_eq!(
            chain_election_dir("/mb", 31337, ElectionScope::Lane, op),
            "/mb/chain-31337"
        );
    }

    #[test]
    fn keys_separate_pairs_lanes_operators_and_scopes() {
        let p = pair(1, Address::repeat_byte(1), 2, Address::repeat_byte(2));
        let op = Address::repeat_byte(0xaa);
        let a = election_dir("/mb/", &p, Lane::MainToService, ElectionScope::Operator, op);
        assert_eq!(
            a,
            format!("/mb/{p}/main-to-service/0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        );
        let b = election_dir("/mb", &p, Lane::MainToService, ElectionScope::Lane, op);
        assert_eq!(b, format!("/mb/{p}/main-to-service"));
        assert_eq!(leader_key(&b), format!("{b}/leader"));
        assert_ne!(
            leader_key(&a),
            leader_key(&election_dir(
                "/mb",
                &p,
                Lane::ServiceToMain,
                ElectionScope::Operator,
                op
            ))
        );
        assert_eq!(progress_key(&b, "r1"), format!("{b}/progress/r1"));
    }
}
