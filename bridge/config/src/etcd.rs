//! The `[etcd]` section: the cluster the replicas of an operator elect their leaders through,
//! with TLS and a user when the cluster asks for them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Problem;

/// etcd leadership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client endpoints of the cluster members.
    pub endpoints: Vec<String>,
    /// Key prefix for elections and progress.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
    /// Leader lease TTL in seconds: a dead leader is replaced within about this long (default
    /// 1). etcd grants at least 1.5 x its election timeout, rounded up to whole seconds: for 1 s
    /// leases run the cluster with `--heartbeat-interval 50 --election-timeout 500` (with
    /// etcd's defaults every lease lasts at least 2 s; the relay warns and counts the longer
    /// TTL in `multibridge_etcd_lease_granted_ttl_seconds`).
    #[serde(default = "default_lease_ttl_secs")]
    pub lease_ttl_secs: u64,
    /// This replica's name in elections and progress records (default: its advertised URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Who competes for a lane: `operator` (the replicas of this operator; default) or `lane`
    /// (every operator's replicas: one active voter per lane, for threshold-1 deployments).
    #[serde(default)]
    pub scope: ElectionScope,
    /// A lane leader whose destination chain has left a call unanswered, whose source chain
    /// has or whose lane indexer has kept failing (one pair per process), or whose signer has
    /// failed, for this many seconds hands the lane to a replica of its operator that reports
    /// it can serve (default: 3, independent of the lease: longer than an RPC's slowest answer;
    /// 0: never step down for that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_down_after_secs: Option<u64>,
    /// TLS to the cluster (the endpoints are then `https://`), with a client certificate when
    /// the cluster runs `--client-cert-auth` (audit M-5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EtcdTlsConfig>,
    /// etcd user (with `auth enable` on the cluster); its password from `password_file` (first
    /// line) or `password_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the etcd user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the etcd user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Elect per destination chain instead of per (pair, lane): set for every pair of a
    /// `[[pairs]]` file, where the lanes of several pairs write to one chain with one key and
    /// every replica must campaign for the same election whichever of its pairs starts first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub elect_by_chain: bool,
    /// Seconds of key history the relay keeps in the cluster: every relay process compacts
    /// what is older (default 300; at least 10 and three lease TTLs; 0: never, for a cluster
    /// that compacts itself with `--auto-compaction-*` or serves others whose history must
    /// stay — in every relay process that uses the cluster). Every heartbeat,
    /// progress record and cursor is a new key version, and etcd keeps every version until it
    /// is compacted: uncompacted, a 64-pair hub filled etcd's default 2 GiB quota in about an
    /// hour and a single pair in days, after which etcd refuses every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_history_secs: Option<u64>,
}

/// TLS material for etcd, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTlsConfig {
    /// The CA that signed the members' server certificates.
    pub ca_file: PathBuf,
    /// This replica's client certificate (with `key_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the members' certificates carry, when it is not the endpoints' host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// Who competes in one election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ElectionScope {
    /// The replicas of one operator (every operator votes through its leader).
    #[default]
    Operator,
    /// Every replica of every operator: one active voter per lane (threshold-1 deployments).
    Lane,
}

fn default_etcd_prefix() -> String {
    "/multibridge".to_owned()
}
fn default_lease_ttl_secs() -> u64 {
    1
}

/// Default of `step_down_after_secs`.
pub const DEFAULT_STEP_DOWN_AFTER_SECS: u64 = 3;

/// Default of `keep_history_secs`.
pub const DEFAULT_KEEP_HISTORY_SECS: u64 = 300;

/// The least `keep_history_secs` other than 0 (and at least three lease TTLs): a standby reads
/// the leader key's history back to its last change, which a heartbeat renews.
pub const LEAST_KEEP_HISTORY_SECS: u64 = 10;

impl EtcdConfig {
    /// How long a leader may be unable to serve before it hands the lane over (`None`: never).
    pub fn step_down_after(&self) -> Option<std::time::Duration> {
        match self
            .step_down_after_secs
            .unwrap_or(DEFAULT_STEP_DOWN_AFTER_SECS)
        {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        }
    }

    /// How much key history the relay keeps (`None`: the relay compacts nothing).
    pub fn keep_history(&self) -> Option<std::time::Duration> {
        match self.keep_history_secs.unwrap_or(DEFAULT_KEEP_HISTORY_SECS) {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        }
    }

    /// The first problem with the section (the TLS files must be readable).
    pub fn problem(&self) -> Option<Problem> {
        let least = LEAST_KEEP_HISTORY_SECS.max(self.lease_ttl_secs.saturating_mul(3));
        if let Some(secs) = self.keep_history_secs
            && secs != 0
            && secs < least
        {
            return Some((
                "etcd.keep_history_secs",
                format!(
                    "{secs} is too short: at least {least} ({LEAST_KEEP_HISTORY_SECS}, and three lease TTLs: a standby reads the leader key's history back to its last change), or 0 to leave compaction to the cluster"
                ),
            ));
        }
        if self.endpoints.is_empty() {
            return Some((
                "etcd.endpoints",
                "give at least one endpoint or drop [etcd]".into(),
            ));
        }
        if self.lease_ttl_secs == 0 {
            return Some(("etcd.lease_ttl_secs", "must be at least 1 second".into()));
        }
        let https = self
            .endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        match &self.tls {
            Some(_) if https != self.endpoints.len() => {
                return Some((
                    "etcd.endpoints",
                    "with [etcd.tls] every endpoint must be https://".into(),
                ));
            }
            None if https > 0 => {
                return Some((
                    "etcd.tls",
                    "https:// endpoints need [etcd.tls] with at least ca_file".into(),
                ));
            }
            _ => {}
        }
        if let Some(tls) = &self.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Some((
                    "etcd.tls",
                    "cert_file and key_file go together (a client certificate and its key)".into(),
                ));
            }
            for (field, file) in [
                ("etcd.tls.ca_file", Some(&tls.ca_file)),
                ("etcd.tls.cert_file", tls.cert_file.as_ref()),
                ("etcd.tls.key_file", tls.key_file.as_ref()),
            ] {
                if let Some(file) = file
                    && let Err(e) = std::fs::metadata(file)
                {
                    return Some((field, format!("cannot read {}: {e}", file.display())));
                }
            }
        }
        if self.username.is_some() && self.password_file.is_none() && self.password_env.is_none() {
            return Some((
                "etcd.username",
                "an etcd user needs password_file or password_env".into(),
            ));
        }
        None
    }
}
