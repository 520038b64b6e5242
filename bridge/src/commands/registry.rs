//! `multibridge registry`: the lane services of the bridge pair in the service registry — per
//! lane, every operator registered on the destination bridge (and any other operator that
//! registered a service) with its service id and where the registry says it is served. With
//! `[etcd]` configured, each row also shows the URL of the replica that leads the service's
//! election, so a location that has not followed a failover yet is visible.

use alloy::primitives::{Address, B256};
use multibridge_contracts::{Lane, LaneServiceMeta};
use serde::Serialize;

use crate::chain::{ChainError, ChainPair, RetryPolicy};
use crate::config::Config;
use crate::registry::registered_services;

/// One (lane, operator) row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRow {
    /// Direction.
    pub lane: Lane,
    /// The operator the service belongs to.
    pub operator: Address,
    /// Whether the operator is registered on the lane's destination bridge (a deregistered
    /// operator's service may linger in the registry).
    pub operator_registered: bool,
    /// The service id (derived from the bridge pair, direction and operator).
    pub id: B256,
    /// Where the registry says the service is served; `None`: not registered.
    pub location: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Unix seconds of the last registry update.
    pub updated_at: Option<u64>,
    /// With `[etcd]`: the URL of the replica leading this service's election (`None`: nobody
    /// leads, or not this operator under the lane scope).
    pub leader_url: Option<String>,
}

impl ServiceRow {
    /// The registry's location differs from the leader's URL (a failover it has not followed
    /// yet, or a replica that cannot write the registry).
    pub fn location_outdated(&self) -> bool {
        matches!((&self.location, &self.leader_url), (Some(l), Some(u)) if l != u)
    }
}

/// Every row and where they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryReport {
    /// The `ServiceRegistry` on the main chain.
    pub registry: Address,
    /// Rows, lane by lane.
    pub services: Vec<ServiceRow>,
    /// Set when `[etcd]` is configured but could not be read (leaders unknown).
    pub etcd_error: Option<String>,
}

/// Why the registry could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryCommandError {
    /// The config names no registry.
    #[error(
        "the config has no [registry] section: give the ServiceRegistry address as [registry] address = \"0x…\""
    )]
    NoRegistry,
    /// A chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// List the lane services of every configured lane.
pub async fn list_services(config: &Config) -> Result<RegistryReport, RegistryCommandError> {
    let registry = config
        .registry
        .as_ref()
        .ok_or(RegistryCommandError::NoRegistry)?
        .address;
    let chains = ChainPair::for_command(&config.chains, RetryPolicy::interactive())?;
    let metrics = multibridge_monitoring::Metrics::new(&[], 1)
        .expect("the metric definitions are unique and valid (unit-tested in monitoring)");
    let pool = crate::leadership::command_etcd_pool(config, &metrics);
    let registered = registered_services(&chains.main, registry).await?;
    let mut etcd_error = None;
    let mut services = Vec::new();
    for lane in config.lanes.iter().copied() {
        let destination = chains.get(lane.destination());
        let src = config.chains.get(lane.source());
        let dst = config.chains.get(lane.destination());
        let registered: Vec<_> = registered
            .iter()
            .filter(|r| r.serves(src.chain_id, dst.chain_id, dst.bridge))
            .collect();
        let on_bridge = destination.views().operators().await?;
        let mut operators = on_bridge.clone();
        for r in &registered {
            if !operators.contains(&r.meta.operator) {
                operators.push(r.meta.operator);
            }
        }
        for operator in operators {
            let id = LaneServiceMeta {
                src_chain_id: src.chain_id,
                src_bridge: src.bridge,
                dst_chain_id: dst.chain_id,
                dst_bridge: dst.bridge,
                operator,
            }
            .service_id();
            let entry = registered.iter().find(|r| r.id == id);
            let leader_url = if etcd_error.is_none() {
                match crate::leadership::Elections::of(config, pool.as_ref())
                    .leader_of(lane, operator)
                    .await
                {
                    Ok(leader) => leader.map(|l| l.url),
                    Err(e) => {
                        etcd_error = Some(e.to_string());
                        None
                    }
                }
            } else {
                None
            };
            services.push(ServiceRow {
                lane,
                operator,
                operator_registered: on_bridge.contains(&operator),
                id,
                location: entry.map(|e| e.location.clone()),
                name: entry.map(|e| e.name.clone()),
                updated_at: entry.map(|e| e.updated_at),
                leader_url,
            });
        }
    }
    Ok(RegistryReport {
        registry,
        services,
        etcd_error,
    })
}

/// The human-readable listing.
pub fn render_table(report: &RegistryReport) -> String {
    let mut out = format!("service registry {}\n", report.registry);
    out.push_str(&format!(
        "{:<16} {:<42} {:<66} {}\n",
        "lane", "operator", "service id", "location"
    ));
    for row in &report.services {
        let mut location = row
            .location
            .clone()
            .unwrap_or_else(|| "not registered".into());
        if !row.operator_registered {
            location.push_str("  (operator not registered on the bridge)");
        }
        if row.location_outdated() {
            location.push_str(&format!(
                "  (outdated: the leader is {})",
                row.leader_url.as_deref().unwrap_or_default()
            ));
        }
        out.push_str(&format!(
            "{:<16} {:<42} {:<66} {}\n",
            row.lane.as_str(),
            row.operator.to_string(),
            row.id.to_string(),
            location
        ));
    }
    if let Some(e) = &report.etcd_error {
        out.push_str(&format!("etcd not readable, leaders unknown: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(location: Option<&str>, leader: Option<&str>, registered: bool) -> ServiceRow {
        ServiceRow {
            lane: Lane::MainToService,
            operator: Address::repeat_byte(1),
            operator_registered: registered,
            id: B256::repeat_byte(2),
            location: location.map(Into::into),
            name: None,
            updated_at: None,
            leader_url: leader.map(Into::into),
        }
    }

    #[test]
    fn a_location_is_outdated_only_when_a_leader_is_known_and_differs() {
        assert!(!row(Some("http://a"), None, true).location_outdated());
        assert!(!row(Some("http://a"), Some("http://a"), true).location_outdated());
        assert!(row(Some("http://a"), Some("http://b"), true).location_outdated());
        assert!(!row(None, Some("http://b"), true).location_outdated());
    }

    #[test]
    fn the_table_says_what_is_missing_and_what_is_outdated() {
        let report = RegistryReport {
            registry: Address::repeat_byte(9),
            services: vec![
                row(None, None, true),
                row(Some("http://a"), Some("http://b"), true),
                row(Some("http://c"), None, false),
            ],
            etcd_error: None,
        };
        let table = render_table(&report);
        assert!(table.contains("not registered\n"), "{table}");
        assert!(
            table.contains("http://a  (outdated: the leader is http://b)"),
            "{table}"
        );
        assert!(
            table.contains("http://c  (operator not registered on the bridge)"),
            "{table}"
        );
    }
}

/// `multibridge registry`.
#[derive(clap::Args)]
pub struct Args {
    /// The config file (a relay config works).
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: std::path::PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Run `multibridge registry`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let c = Config::load(&args.config)?;
    let report = list_services(&c).await?;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&report)?)
    } else {
        render_table(&report)
    };
    print!("{}", multibridge_monitoring::redact_urls(&text));
    Ok(())
}
