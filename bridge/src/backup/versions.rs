//! The state versions of seed 003 in etcd, per operator and lane, under
//! `<prefix>/<pair>/<lane>/<operator>/state/`:
//!
//! | key | the paper's | value |
//! |---|---|---|
//! | `service-state` | SV, "Service-State" | the service's latest state version |
//! | `ssv/<replica>` | SSV, "State-<server>" | the version of one replica's local store |
//! | `ssi` | SSI | `-1` while a backup runs, `0` otherwise |
//! | `members/<replica>` | members | every replica that ever ran (no lease) |
//! | `alive/<replica>` | alive members | bound to the replica's lease: gone when it is |
//! | `last-backup` | — | what the last backup compacted (for followers) |
//! | `backup-request`, `backup-result` | — | on-demand backups (`multibridge backup`) |
//!
//! Every version starts at 1 and goes up by one per backup (the paper, §3.1).

use std::collections::BTreeMap;

use alloy::primitives::Address;
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use multibridge_contracts::Lane;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::leadership::etcd_pool::{EtcdPool, EtcdUnavailable};

/// The keys of one operator's lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKeys {
    dir: String,
}

impl StateKeys {
    /// The keys of `operator`'s `lane` under the config's etcd prefix (`None` without etcd).
    pub fn of(config: &Config, lane: Lane, operator: Address) -> Option<Self> {
        let etcd = config.etcd.as_ref()?;
        let pair = crate::leadership::pair_name(config);
        let prefix = etcd.prefix.trim_end_matches('/');
        Some(Self {
            dir: format!("{prefix}/{pair}/{lane}/{operator:#x}/state"),
        })
    }

    /// The prefix every key of the lane's state begins with (its directory and a slash).
    pub fn prefix(&self) -> String {
        format!("{}/", self.dir)
    }

    /// The operator's whole etcd prefix for the pair (what a backup saves of etcd).
    pub fn pair_prefix(config: &Config) -> Option<String> {
        let etcd = config.etcd.as_ref()?;
        let pair = crate::leadership::pair_name(config);
        Some(format!("{}/{pair}/", etcd.prefix.trim_end_matches('/')))
    }

    /// SV.
    pub fn sv(&self) -> String {
        format!("{}/service-state", self.dir)
    }
    /// SSV of `replica`.
    pub fn ssv(&self, replica: &str) -> String {
        format!("{}/ssv/{replica}", self.dir)
    }
    /// SSI.
    pub fn ssi(&self) -> String {
        format!("{}/ssi", self.dir)
    }
    /// Membership of `replica`.
    pub fn member(&self, replica: &str) -> String {
        format!("{}/members/{replica}", self.dir)
    }
    /// Liveness of `replica`.
    pub fn alive(&self, replica: &str) -> String {
        format!("{}/alive/{replica}", self.dir)
    }
    /// The last backup's record.
    pub fn last_backup(&self) -> String {
        format!("{}/last-backup", self.dir)
    }
    /// An on-demand backup request.
    pub fn request(&self) -> String {
        format!("{}/backup-request", self.dir)
    }
    /// The answer to the last request.
    pub fn result(&self) -> String {
        format!("{}/backup-result", self.dir)
    }
}

/// What followers read after a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBackup {
    /// The state version the backup saved.
    pub version: u64,
    /// Requests below this nonce were compacted.
    pub compacted_below: u64,
    /// Unix seconds of its end.
    pub at: u64,
    /// The replica that made it.
    pub subject: String,
}

/// An on-demand backup request, or its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnDemand {
    /// Matches a result to its request.
    pub id: String,
    /// Unix seconds.
    pub at: u64,
    /// The answer: the version saved, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Result<u64, String>>,
}

/// Every version of one operator's lane, as etcd has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionsView {
    /// SV (absent before the first relay of this version ran).
    pub sv: Option<u64>,
    /// SSV of each replica.
    pub ssv: BTreeMap<String, u64>,
    /// SSI.
    pub ssi: Option<i64>,
    /// Every replica that ever ran.
    pub members: Vec<String>,
    /// The replicas whose lease is alive.
    pub alive: Vec<String>,
    /// The last backup.
    pub last_backup: Option<LastBackup>,
    /// A request not answered yet.
    pub request: Option<OnDemand>,
    /// The answer to the last request.
    pub result: Option<OnDemand>,
}

impl VersionsView {
    /// Whether a majority of the members is gone (at least two members, more than half not
    /// alive).
    pub fn majority_lost(&self) -> bool {
        let members = self.members.len();
        let alive = self
            .alive
            .iter()
            .filter(|a| self.members.contains(a))
            .count();
        members >= 2 && alive.saturating_mul(2) <= members
    }
}

/// Read every key of `keys`.
pub async fn read(pool: &EtcdPool, keys: &StateKeys) -> Result<VersionsView, EtcdUnavailable> {
    let mut found = super::state_reads::read_ranges(pool, &[keys.prefix()]).await?;
    Ok(VersionsView::of(keys, found.pop().unwrap_or_default()))
}

impl VersionsView {
    /// The view of `keys` from the keys and values read under [`StateKeys::prefix`].
    pub fn of(keys: &StateKeys, kvs: super::state_reads::Kvs) -> Self {
        let dir = keys.prefix();
        let mut view = Self::default();
        for (key, value) in kvs {
            let key = String::from_utf8_lossy(&key);
            let Some(rest) = key.strip_prefix(&dir) else {
                continue;
            };
            view.note(rest, &value);
        }
        view
    }

    /// Note the key `rest` (below the lane's state directory) holding `value`.
    fn note(&mut self, rest: &str, value: &[u8]) {
        let text = String::from_utf8_lossy(value);
        if rest == "service-state" {
            self.sv = text.trim().parse().ok();
        } else if rest == "ssi" {
            self.ssi = text.trim().parse().ok();
        } else if let Some(replica) = rest.strip_prefix("ssv/") {
            if let Ok(v) = text.trim().parse() {
                self.ssv.insert(replica.to_owned(), v);
            }
        } else if let Some(replica) = rest.strip_prefix("members/") {
            self.members.push(replica.to_owned());
        } else if let Some(replica) = rest.strip_prefix("alive/") {
            self.alive.push(replica.to_owned());
        } else if rest == "last-backup" {
            self.last_backup = serde_json::from_slice(value).ok();
        } else if rest == "backup-request" {
            self.request = serde_json::from_slice(value).ok();
        } else if rest == "backup-result" {
            self.result = serde_json::from_slice(value).ok();
        }
    }
}

/// Put `value` at `key` (optionally under `lease`).
pub async fn put(
    pool: &EtcdPool,
    key: String,
    value: String,
    lease: Option<i64>,
) -> Result<(), EtcdUnavailable> {
    pool.call("write state version", |mut c| {
        let (key, value) = (key.clone(), value.clone());
        async move {
            let options = lease.map(|l| PutOptions::new().with_lease(l));
            c.put(key, value, options).await.map(|_| ())
        }
    })
    .await
}

/// Put `value` at `key` unless the key exists.
pub async fn put_if_absent(
    pool: &EtcdPool,
    key: String,
    value: String,
) -> Result<(), EtcdUnavailable> {
    pool.call("create state version", |mut c| {
        let (key, value) = (key.clone(), value.clone());
        async move {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value, None)]);
            c.txn(txn).await.map(|_| ())
        }
    })
    .await
}

/// Every key under `prefix` with its value (UTF-8 where it is, hex otherwise), its lease and
/// revision: the operator's etcd state for a backup.
pub async fn dump_prefix(pool: &EtcdPool, prefix: &str) -> Result<Vec<u8>, EtcdUnavailable> {
    let prefix = prefix.to_owned();
    let entries = pool
        .call("read etcd prefix", |mut c| {
            let prefix = prefix.clone();
            async move {
                let resp = c.get(prefix, Some(GetOptions::new().with_prefix())).await?;
                let revision = resp.header().map_or(0, |h| h.revision());
                let kvs = resp
                    .kvs()
                    .iter()
                    .map(|kv| {
                        serde_json::json!({
                            "key": String::from_utf8_lossy(kv.key()),
                            "value": std::str::from_utf8(kv.value()).map_or_else(
                                |_| format!("0x{}", alloy::hex::encode(kv.value())),
                                str::to_owned,
                            ),
                            "lease": kv.lease(),
                            "mod_revision": kv.mod_revision(),
                        })
                    })
                    .collect::<Vec<_>>();
                Ok(serde_json::json!({"revision": revision, "kvs": kvs}))
            }
        })
        .await?;
    Ok(serde_json::to_vec_pretty(&entries).unwrap_or_default())
}

/// A full etcd snapshot through the maintenance API.
pub async fn full_snapshot(pool: &EtcdPool) -> Result<Vec<u8>, EtcdUnavailable> {
    pool.call("etcd snapshot", |mut c| async move {
        let mut stream = c.snapshot().await?;
        let mut out = Vec::new();
        while let Some(part) = stream.message().await? {
            out.extend_from_slice(part.blob());
        }
        Ok(out)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_lost_needs_more_than_half_of_at_least_two_members_gone() {
        let view = |members: &[&str], alive: &[&str]| VersionsView {
            members: members.iter().map(|s| (*s).to_owned()).collect(),
            alive: alive.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        assert!(!view(&["a"], &[]).majority_lost());
        assert!(!view(&["a", "b", "c"], &["a", "b"]).majority_lost());
        assert!(view(&["a", "b", "c"], &["a"]).majority_lost());
        assert!(view(&["a", "b"], &["a"]).majority_lost());
        // A name alive but not a member does not count.
        assert!(view(&["a", "b", "c"], &["a", "x"]).majority_lost());
    }
}
