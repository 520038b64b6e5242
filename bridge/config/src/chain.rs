//! The chain sections: where each of the two chains is reached, its bridge, and when one of its
//! blocks counts as final.

use alloy_primitives::Address;
use multibridge_contracts::ChainRole;
use serde::{Deserialize, Serialize};

use crate::Problem;

/// The devnet chain ids: anvil's 31337 and the ids above it up to 31413, where dev keys, no
/// confirmations and fault injection are accepted. 31414 (Evoke testnet) and 31415 (Filecoin
/// Wallaby) are public chains; the range stops below them. It holds a hub of 64 service chains
/// under one main chain (`bench-hub`), which the earlier 31337–31399 did not.
pub const DEVNET_CHAIN_IDS: std::ops::RangeInclusive<u64> = 31_337..=31_413;

/// Whether `chain_id` is a devnet chain ([`DEVNET_CHAIN_IDS`]).
pub fn is_devnet_chain(chain_id: u64) -> bool {
    DEVNET_CHAIN_IDS.contains(&chain_id)
}

/// The two chains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chains {
    /// The main (parent) chain.
    pub main: ChainConfig,
    /// The service (child) chain.
    pub service: ChainConfig,
}

impl Chains {
    /// The chain playing `role`.
    pub fn get(&self, role: ChainRole) -> &ChainConfig {
        match role {
            ChainRole::Main => &self.main,
            ChainRole::Service => &self.service,
        }
    }
}

/// One chain: where to reach it and its bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Expected chain id; startup fails on a mismatch.
    pub chain_id: u64,
    /// RPC endpoints in order of preference (failover goes down the list).
    pub rpc_urls: Vec<String>,
    /// A WebSocket endpoint (`ws://` or `wss://`) of the node behind the first of `rpc_urls`
    /// (anvil serves it on its HTTP port; geth, reth and erigon on their own, 8546 by default):
    /// the relay subscribes to its new heads and reads the head over `rpc_urls` the moment a
    /// block is pushed, instead of asking for it between blocks. A push is a wake-up only: the
    /// head, and every confirmation counted from it, is always what `rpc_urls` answer. Without
    /// it, or while the subscription is down or behind, the head is read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// The bridge contract on this chain.
    pub bridge: Address,
    /// Blocks a request must be buried under before it is voted on, or `"finalized"`: only
    /// what the chain's finalized block includes (audit M-8).
    #[serde(default = "default_confirmations")]
    pub confirmations: Confirmations,
    /// First block to index (the bridge's deployment block).
    #[serde(default)]
    pub start_block: u64,
    /// How often a caught-up indexer asks for the head, in milliseconds, at most; on a chain
    /// that makes blocks on a clock it asks when the next block is due (then every 100 ms),
    /// stepping at least every second (or this poll, if longer) meanwhile.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Largest block range of one `eth_getLogs`.
    #[serde(default = "default_max_block_range")]
    pub max_block_range: u64,
    /// No transaction on this chain bids more than this fee cap, in gwei, whatever its RPC says
    /// the base fee or tip is (audit M-7).
    #[serde(default = "default_max_fee_gwei")]
    pub max_fee_gwei: u64,
    /// How many of `rpc_urls` must return the same request logs before they are indexed (1: the
    /// endpoint in use alone). With independent providers, one that lies or is broken cannot
    /// make this relay vote a request the chain does not hold (audit M-7).
    #[serde(default = "default_log_quorum")]
    pub log_quorum: usize,
    /// An endpoint trailing the best endpoint's head by more blocks than this is demoted
    /// (calls go to a healthy one while there is one).
    #[serde(default = "default_max_lag_blocks")]
    pub max_lag_blocks: u64,
    /// An endpoint whose head has not moved for this many seconds while another endpoint's has
    /// is demoted (a frozen node that still answers).
    #[serde(default = "default_stall_secs")]
    pub stall_secs: u64,
    /// The most one RPC answer may hold, MiB: a larger one is an error of that endpoint (the
    /// call fails over), never memory one endpoint chooses (audit A3-L5).
    #[serde(default = "default_max_answer_mib")]
    pub max_answer_mib: u64,
}

fn default_max_answer_mib() -> u64 {
    32
}

fn default_max_lag_blocks() -> u64 {
    8
}

fn default_stall_secs() -> u64 {
    30
}

fn default_log_quorum() -> usize {
    1
}

fn default_max_fee_gwei() -> u64 {
    1_000
}

fn default_confirmations() -> Confirmations {
    Confirmations::Depth(1)
}

/// When a block counts as final: a number of blocks below the head, or the chain's own
/// `finalized` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ConfirmationsRepr", into = "ConfirmationsRepr")]
pub enum Confirmations {
    /// This many blocks below the head.
    Depth(u64),
    /// The block the chain reports as `finalized`.
    Finalized,
}

impl Confirmations {
    /// The fixed depth, if it is one.
    pub fn depth(self) -> Option<u64> {
        match self {
            Self::Depth(d) => Some(d),
            Self::Finalized => None,
        }
    }
}

impl std::fmt::Display for Confirmations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Depth(d) => write!(f, "{d}"),
            Self::Finalized => f.write_str("finalized"),
        }
    }
}

/// How `confirmations` is written in the file: a number or `"finalized"`.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ConfirmationsRepr {
    Depth(u64),
    Named(String),
}

impl TryFrom<ConfirmationsRepr> for Confirmations {
    type Error = String;

    fn try_from(repr: ConfirmationsRepr) -> Result<Self, String> {
        match repr {
            ConfirmationsRepr::Depth(d) => Ok(Self::Depth(d)),
            ConfirmationsRepr::Named(s) if s == "finalized" => Ok(Self::Finalized),
            ConfirmationsRepr::Named(s) => Err(format!(
                "confirmations must be a number of blocks or \"finalized\", not {s:?}"
            )),
        }
    }
}

impl From<Confirmations> for ConfirmationsRepr {
    fn from(c: Confirmations) -> Self {
        match c {
            Confirmations::Depth(d) => Self::Depth(d),
            Confirmations::Finalized => Self::Named("finalized".to_owned()),
        }
    }
}
fn default_poll_interval_ms() -> u64 {
    500
}
fn default_max_block_range() -> u64 {
    1_000
}

impl ChainConfig {
    /// The first problem with the section of the chain at `field` (`chains.main`, …).
    pub fn problem(
        &self,
        field: &'static str,
        confirmations_field: &'static str,
    ) -> Option<Problem> {
        // Audit M-8: with no confirmations a source reorg has the relays vote for a request that
        // no longer exists.
        if self.confirmations == Confirmations::Depth(0) && !is_devnet_chain(self.chain_id) {
            return Some((
                confirmations_field,
                format!(
                    "0 is only accepted on devnet chains (31337-31413), chain {} is not: \
                     a reorg could remove a request after the relays voted for it; \
                     wait for at least the chain's usual reorg depth",
                    self.chain_id
                ),
            ));
        }
        if self.log_quorum == 0 || self.log_quorum > self.rpc_urls.len().max(1) {
            return Some((
                "chains.*.log_quorum",
                format!(
                    "chain {}: log_quorum {} must be between 1 and the number of rpc_urls ({})",
                    self.chain_id,
                    self.log_quorum,
                    self.rpc_urls.len()
                ),
            ));
        }
        if self.rpc_urls.is_empty() {
            return Some((field, "rpc_urls is empty: give at least one URL".into()));
        }
        if let Some(url) = &self.ws_url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
                // The scheme at most: the rest of an endpoint's URL may hold an API key.
                let given = match url.split_once("://") {
                    Some((scheme, _)) => format!("{scheme}://…"),
                    None => "a value without a scheme".to_owned(),
                };
                return Some((
                    "chains.*.ws_url",
                    format!(
                        "chain {}: ws_url must start with ws:// or wss:// (the node's WebSocket endpoint), not {given}",
                        self.chain_id
                    ),
                ));
            }
        }
        if self.bridge == Address::ZERO {
            return Some((field, "bridge is the zero address".into()));
        }
        if self.max_block_range == 0 {
            return Some((field, "max_block_range must be at least 1".into()));
        }
        if self.max_answer_mib == 0 {
            return Some((field, "max_answer_mib must be at least 1".into()));
        }
        if self.stall_secs == 0 {
            return Some((field, "stall_secs must be at least 1".into()));
        }
        None
    }
}

impl Chains {
    /// The first problem with the two chain sections.
    pub fn problem(&self) -> Option<Problem> {
        self.main
            .problem("chains.main", "chains.main.confirmations")
            .or_else(|| {
                self.service
                    .problem("chains.service", "chains.service.confirmations")
            })
            .or_else(|| {
                (self.main.chain_id == self.service.chain_id).then(|| {
                    (
                        "chains",
                        format!(
                            "main and service have the same chain id {}: votes would not be domain-separated",
                            self.main.chain_id
                        ),
                    )
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_ids_hold_a_hub_of_64_and_stop_below_the_public_chains_above() {
        // The main chain and 64 service chains of `bench-hub`.
        assert!((31_337..31_337 + 65).all(is_devnet_chain));
        for public in [1, 1_337, 31_336, 31_414, 31_415] {
            assert!(!is_devnet_chain(public), "{public}");
        }
    }

    #[test]
    fn a_ws_url_must_be_a_websocket_url_and_its_secret_is_not_repeated() {
        let mut chain = ChainConfig {
            chain_id: 1,
            rpc_urls: vec!["https://rpc.example/v2/secret-key".to_owned()],
            ws_url: Some("wss://rpc.example/v2/secret-key".to_owned()),
            bridge: Address::repeat_byte(1),
            confirmations: Confirmations::Depth(12),
            start_block: 0,
            poll_interval_ms: default_poll_interval_ms(),
            max_block_range: default_max_block_range(),
            max_fee_gwei: default_max_fee_gwei(),
            log_quorum: 1,
            max_lag_blocks: default_max_lag_blocks(),
            stall_secs: default_stall_secs(),
            max_answer_mib: default_max_answer_mib(),
        };
        assert_eq!(
            chain.problem("chains.main", "chains.main.confirmations"),
            None
        );
        chain.ws_url = Some("https://rpc.example/v2/secret-key".to_owned());
        let (field, problem) = chain
            .problem("chains.main", "chains.main.confirmations")
            .expect("an HTTP URL as ws_url is refused");
        assert_eq!(field, "chains.*.ws_url");
        assert!(problem.contains("ws:// or wss://"), "{problem}");
        assert!(!problem.contains("secret-key"), "{problem}");
        chain.ws_url = Some("rpc.example:8546/secret-key".to_owned());
        let (_, problem) = chain
            .problem("chains.main", "chains.main.confirmations")
            .expect("a URL without a scheme is refused");
        assert!(!problem.contains("secret-key"), "{problem}");
    }
}
