//! Leadership among replicas through etcd (DESIGN §6): per-lane campaigns, the fence checked
//! before every broadcast, progress records, and the key layout they use.

pub mod attempt_bound;
pub mod campaign;
pub mod etcd_pool;
pub mod etcd_version;
pub mod gather;
pub mod health;
pub mod heartbeats;
pub mod history;
pub mod key_history;
pub mod key_reads;
pub mod layout;
pub mod progress;
pub mod progress_writes;
pub mod runtime;
pub mod shared_lease;

use std::time::Duration;

use alloy::primitives::Address;
use multibridge_contracts::Lane;

use crate::config::Config;

/// The etcd directory of `lane`'s election for the operator of `config` (`None` without
/// `[etcd]`).
pub fn lane_election_dir(config: &Config, lane: Lane) -> Option<String> {
    election_dir_of(config, lane, config.operator.address)
}

/// The etcd directory of `lane`'s election for `operator` under `config`'s prefix and scope
/// (with the lane scope, every operator shares one).
pub fn election_dir_of(config: &Config, lane: Lane, operator: Address) -> Option<String> {
    let etcd = config.etcd.as_ref()?;
    Some(layout::election_dir(
        &etcd.prefix,
        &pair_name(config),
        lane,
        etcd.scope,
        operator,
    ))
}

/// The leader key `operator`'s replicas campaign for on `lane` under `config`: `<election
/// dir>/leader`, or in a process serving several pairs (`elect_by_chain`) the key of the lane's
/// destination chain, `<prefix>/chain-<id>[/<operator>]/leader` — one election for every pair's
/// lanes into that chain, whichever pair's lane campaigns on a replica.
pub fn leader_key_of(config: &Config, lane: Lane, operator: Address) -> Option<String> {
    let etcd = config.etcd.as_ref()?;
    if !etcd.elect_by_chain {
        return election_dir_of(config, lane, operator).map(|dir| layout::leader_key(&dir));
    }
    let chain = config.chains.get(lane.destination()).chain_id;
    Some(layout::leader_key(&layout::chain_election_dir(
        &etcd.prefix,
        chain,
        etcd.scope,
        operator,
    )))
}

/// [`leader_key_of`] this replica's operator.
pub fn lane_leader_key(config: &Config, lane: Lane) -> Option<String> {
    leader_key_of(config, lane, config.operator.address)
}

/// Who leads each lane's election, read from etcd: the one reader behind `status`, the registry
/// sync, the dashboard's services and tracker and `multibridge registry` (each used to put the
/// leader key and [`campaign::read_leader`] together by hand).
pub struct Elections<'a> {
    config: &'a Config,
    pool: Option<&'a etcd_pool::EtcdPool>,
}

impl<'a> Elections<'a> {
    /// The elections of `config`'s pair, read through `pool` (`None`: no etcd, no leaders).
    pub fn of(config: &'a Config, pool: Option<&'a etcd_pool::EtcdPool>) -> Self {
        Self { config, pool }
    }

    /// The leader of `operator`'s election on `lane` (`None`: none, no etcd, or — under the
    /// lane scope, where every operator shares one election — a replica of another operator).
    pub async fn leader_of(
        &self,
        lane: Lane,
        operator: Address,
    ) -> Result<Option<campaign::LeaderInfo>, etcd_pool::EtcdUnavailable> {
        let (Some(pool), Some(key)) = (self.pool, leader_key_of(self.config, lane, operator))
        else {
            return Ok(None);
        };
        Ok(campaign::read_leader(pool, &key)
            .await?
            .filter(|l| l.operator.parse::<Address>().ok() == Some(operator)))
    }

    /// The leader of this replica's own operator's election on `lane`.
    pub async fn leader(
        &self,
        lane: Lane,
    ) -> Result<Option<campaign::LeaderInfo>, etcd_pool::EtcdUnavailable> {
        self.leader_of(lane, self.config.operator.address).await
    }
}

/// The bridge pair's name in etcd keys, storage paths and backup logs.
pub fn pair_name(config: &Config) -> String {
    layout::pair(
        config.chains.main.chain_id,
        config.chains.main.bridge,
        config.chains.service.chain_id,
        config.chains.service.bridge,
    )
}

/// The endpoint pool of `config`'s etcd cluster (`None` without `[etcd]`), counting attempts in
/// `metrics`.
pub fn etcd_pool(
    config: &Config,
    metrics: &multibridge_monitoring::Metrics,
) -> Option<etcd_pool::EtcdPool> {
    config.etcd.as_ref().map(|e| {
        metrics.init_etcd(e.endpoints.len());
        etcd_pool::EtcdPool::new(
            e.endpoints.clone(),
            attempt_timeout(e.lease_ttl_secs),
            metrics.etcd(),
        )
        .with_access(etcd_pool::EtcdAccess::of(e))
    })
}

/// The pool of a one-shot command (`status`, `registry`, `backup`): it keeps no lease, so an
/// attempt may wait for a slow member, or its password check, up to [`COMMAND_ATTEMPT`].
pub fn command_etcd_pool(
    config: &Config,
    metrics: &multibridge_monitoring::Metrics,
) -> Option<etcd_pool::EtcdPool> {
    bounded_etcd_pool(config, metrics, COMMAND_ATTEMPT, "command")
}

/// Bound of one etcd attempt in a one-shot command.
pub const COMMAND_ATTEMPT: Duration = Duration::from_secs(5);

/// Bound of one etcd attempt of a relay's background work (backups and state versions, progress
/// records, the registry's and the dashboard's reads). None of it holds a lease: a slow etcd
/// (a disk whose fsync takes hundreds of milliseconds makes every write and linearizable read
/// that slow) must delay it, not fail it at every try. The elections keep their own pool and
/// the lease's short bound ([`attempt_timeout`]).
pub const BACKGROUND_ATTEMPT: Duration = Duration::from_secs(3);

/// The pool of a relay's background work: [`etcd_pool`] with [`BACKGROUND_ATTEMPT`] (the
/// lease's bound, [`attempt_timeout`], is at most 1 s).
pub fn background_etcd_pool(
    config: &Config,
    metrics: &multibridge_monitoring::Metrics,
) -> Option<etcd_pool::EtcdPool> {
    bounded_etcd_pool(config, metrics, BACKGROUND_ATTEMPT, "background")
}

/// [`etcd_pool`] with attempts bounded by `bound`, named `name` in the metrics.
fn bounded_etcd_pool(
    config: &Config,
    metrics: &multibridge_monitoring::Metrics,
    bound: Duration,
    name: &'static str,
) -> Option<etcd_pool::EtcdPool> {
    etcd_pool(config, metrics).map(|pool| pool.with_attempt_timeout(bound).named(name))
}

/// Bound of one etcd attempt: a third of the lease TTL (at most 1 s), so a dead member costs
/// at most that before the next one is tried and a renewal still lands within the TTL.
pub fn attempt_timeout(ttl_secs: u64) -> Duration {
    Duration::from_millis(ttl_secs.saturating_mul(1000) / 3).min(Duration::from_secs(1))
}
