//! What one lane's tasks read of the configuration: its two chains' sections, voting, recovery,
//! etcd and the registry, taken once when the lane starts. A lane never holds the whole
//! [`Config`] (review 2026-11-26 §5): what it may depend on is listed here.

use multibridge_config::{
    ChainConfig, EtcdConfig, RecoverySettings, RegistryConfig, VotingMode, VotingSettings,
};
use multibridge_contracts::{Lane, VoteDomain};

use crate::config::Config;

/// The sections of the config one lane reads.
#[derive(Debug, Clone)]
pub struct LaneSettings {
    /// The lane.
    pub lane: Lane,
    /// Its source chain's section.
    pub source: ChainConfig,
    /// Its destination chain's section.
    pub destination: ChainConfig,
    /// `[voting]`.
    pub voting: VotingSettings,
    /// `[recovery]`.
    pub recovery: RecoverySettings,
    /// `[etcd]` (absent: standalone).
    pub etcd: Option<EtcdConfig>,
    /// The lane's election directory in etcd (with `[etcd]`).
    pub election_dir: Option<String>,
    /// The key its leader holds (with `[etcd]`).
    pub leader_key: Option<String>,
    /// `[registry]` (attested mode finds its peers there).
    pub registry: Option<RegistryConfig>,
    /// The domain its destination binds votes and attestations to.
    pub domain: VoteDomain,
    /// Both chains are local devnet chains (a peer's loopback location is accepted).
    pub devnet: bool,
    /// Fault injection: the voter tampers with its payloads (tests only).
    pub tamper_votes: bool,
}

impl LaneSettings {
    /// `lane`'s sections of `config`.
    pub fn of(config: &Config, lane: Lane) -> Self {
        Self {
            lane,
            source: config.chains.get(lane.source()).clone(),
            destination: config.chains.get(lane.destination()).clone(),
            voting: config.voting.clone(),
            recovery: config.recovery,
            etcd: config.etcd.clone(),
            election_dir: crate::leadership::lane_election_dir(config, lane),
            leader_key: crate::leadership::lane_leader_key(config, lane),
            registry: config.registry.clone(),
            domain: vote_domain(config, lane),
            devnet: multibridge_config::is_devnet_chain(config.chains.main.chain_id)
                && multibridge_config::is_devnet_chain(config.chains.service.chain_id),
            tamper_votes: config.fault_injection.tamper_votes,
        }
    }

    /// How the lane reaches its threshold.
    pub fn mode(&self) -> VotingMode {
        self.voting.mode_of(self.lane)
    }
}

/// The domain `lane`'s destination binds votes and attestations to.
pub fn vote_domain(config: &Config, lane: Lane) -> VoteDomain {
    let (src, dst) = (
        config.chains.get(lane.source()),
        config.chains.get(lane.destination()),
    );
    VoteDomain {
        src_chain_id: src.chain_id,
        src_bridge: src.bridge,
        dst_chain_id: dst.chain_id,
        dst_bridge: dst.bridge,
    }
}
