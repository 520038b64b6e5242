//! Authoring the relay configs of a devnet: one per operator (replica 1) and one per further
//! replica, each written as TOML beside the manifest, with the devnet's well-known dashboard
//! token and backup key.

use std::path::{Path, PathBuf};

use multibridge_config::{
    Chains, Config, EtcdConfig, HttpConfig, OperatorConfig, RegistryConfig, Secret, SignerConfig,
    StoreConfig,
};
use multibridge_contracts::{ChainRole, Lane};

use super::{Devnet, ReplicaLinks};
use crate::error::DevnetError;
use crate::harness::manifest::write_atomic;

/// DEVNET ONLY, well known: the admin token of every devnet relay's dashboard (written to
/// `<dir>/dashboard-token`). A real deployment gives each relay a secret of its own.
pub const DEVNET_DASHBOARD_TOKEN: &str = "devnet-dashboard-admin-token";

/// DEVNET ONLY, well known, never for real funds: the backup key pair every devnet relay
/// encrypts its backup logs to (the secret is written to `<dir>/backup-key.hex`).
pub const DEVNET_BACKUP_SECRET: &str =
    "0x6d756c7469627269646765206465766e6574206261636b7570206b6579212121";

impl Devnet {
    /// Relay config file of operator `index` (0-based).
    pub fn operator_config_path(&self, index: usize) -> PathBuf {
        self.options
            .dir
            .join(format!("operator-{}.toml", index.saturating_add(1)))
    }

    /// The relay config of operator `index` (0-based).
    pub fn operator_config(&self, index: usize) -> Result<Config, DevnetError> {
        let dev_key = self
            .accounts
            .operators
            .get(index)
            .ok_or_else(|| DevnetError::Invalid(format!("no operator {index}")))?;
        let (address, signer) = match &self.hsm {
            Some(hsm) => (
                self.operator_addresses
                    .get(index)
                    .copied()
                    .ok_or_else(|| DevnetError::Invalid(format!("no operator {index}")))?,
                hsm.signer_config(index),
            ),
            None => (
                dev_key.address(),
                SignerConfig::DevKey {
                    private_key: Secret::new(format!(
                        "0x{}",
                        alloy::hex::encode(dev_key.to_bytes())
                    )),
                },
            ),
        };
        let chain = |role: ChainRole| {
            let contracts = match role {
                ChainRole::Main => &self.deployment.main,
                ChainRole::Service => &self.deployment.service,
            };
            self.chain_config(contracts, self.replica_rpc_url(index, 0, role))
        };
        let http_port = super::hub::replica_port(&self.replica_http_ports, index, 0)?;
        Ok(Config {
            operator: OperatorConfig { address, signer },
            chains: Chains {
                main: chain(ChainRole::Main),
                service: chain(ChainRole::Service),
            },
            lanes: Lane::ALL.to_vec(),
            store: StoreConfig {
                path: self.replica_dir(index, 0).join("store.sqlite"),
            },
            voting: multibridge_config::VotingSettings {
                mode: self.options.voting_mode,
                attestation_store: self
                    .options
                    .attestation_stores
                    .iter()
                    .find(|(operator, _)| *operator == index)
                    .map(|(_, storage)| storage.clone()),
                // The other operators' stores in local directories: readable by every relay
                // of the devnet (a file:// location from the registry is read only if named).
                peer_stores: self
                    .options
                    .attestation_stores
                    .iter()
                    .filter_map(|(_, storage)| match storage {
                        multibridge_config::StorageSettings::Local { path } => {
                            Some(format!("file://{}", path.display()))
                        }
                        _ => None,
                    })
                    .collect(),
                ..Default::default()
            },
            recovery: Default::default(),
            http: HttpConfig {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], http_port)),
                expose: false,
                advertise_url: None,
                // Devnet blocks come every second: a relay is not ready 10 s after a dependency
                // last answered.
                ready_stale_secs: 10,
                watch_interval_ms: 1_000,
            },
            registry: Some(RegistryConfig {
                address: self.deployment.registry,
                replica_urls: super::hub::replica_urls(&self.replica_http_ports, index),
            }),
            etcd: self.etcd.as_ref().map(|etcd| EtcdConfig {
                endpoints: self
                    .links
                    .get(&(index, 0))
                    .map(ReplicaLinks::etcd_endpoints)
                    .unwrap_or_else(|| etcd.endpoints()),
                prefix: "/multibridge".to_owned(),
                lease_ttl_secs: self.options.lease_ttl_secs,
                replica: Some(format!("operator-{}-r1", index.saturating_add(1))),
                scope: Default::default(),
                step_down_after_secs: None,
                tls: None,
                username: None,
                password_file: None,
                password_env: None,
                elect_by_chain: false,
                keep_history_secs: None,
            }),
            backup: self.backup_settings()?,
            dashboard: self.dashboard_settings(index)?,
            guardian: self.guardian_config(index, 0)?,
            admin: Default::default(),
            fault_injection: Default::default(),
        })
    }

    /// The `[guardian]` section of replica `replica` of operator `index` (devnets with
    /// guardians): a dev key of its own, a pauser of both bridges.
    fn guardian_config(
        &self,
        index: usize,
        replica: usize,
    ) -> Result<Option<multibridge_config::GuardianConfig>, DevnetError> {
        if !self.options.guardians {
            return Ok(None);
        }
        let key = crate::harness::accounts::guardian_signer(index, replica)?;
        Ok(Some(multibridge_config::GuardianConfig {
            address: key.address(),
            signer: SignerConfig::DevKey {
                private_key: Secret::new(format!("0x{}", alloy::hex::encode(key.to_bytes()))),
            },
            source_stale_secs: 60,
            pause_both: true,
        }))
    }

    /// The `[dashboard]` section of operator `index`'s relays: the devnet admin token, and the
    /// manager key of `dashboard_manager` for operator 1.
    fn dashboard_settings(
        &self,
        index: usize,
    ) -> Result<multibridge_config::DashboardSettings, DevnetError> {
        let token_file = self.options.dir.join("dashboard-token");
        if !token_file.exists() {
            write_atomic(
                &token_file,
                format!("{DEVNET_DASHBOARD_TOKEN}\n").as_bytes(),
            )?;
        }
        Ok(multibridge_config::DashboardSettings {
            admin_token_file: Some(token_file),
            manager: if index == 0 {
                self.options.dashboard_manager.clone()
            } else {
                None
            },
            ..Default::default()
        })
    }

    /// The `[backup]` section of every relay (with etcd and `backup_every` only).
    fn backup_settings(&self) -> Result<Option<multibridge_config::BackupSettings>, DevnetError> {
        let (Some(every), Some(_)) = (self.options.backup_every, &self.etcd) else {
            return Ok(None);
        };
        let key_file = self.options.dir.join("backup-key.hex");
        if !key_file.exists() {
            write_atomic(&key_file, format!("{DEVNET_BACKUP_SECRET}\n").as_bytes())?;
        }
        let secret = multibridge::harness::parse_private_key(DEVNET_BACKUP_SECRET)
            .map_err(|e| DevnetError::Invalid(e.to_string()))?;
        Ok(Some(multibridge_config::BackupSettings {
            every_handled: every,
            on_majority_lost: true,
            min_interval_secs: 30,
            catch_up_secs: 5,
            public_key: multibridge::harness::public_key_hex(&secret.public_key()),
            private_key_file: Some(key_file),
            private_key_env: None,
            join_from_backup: true,
            etcd_snapshot: self.options.backup_etcd_snapshot,
            max_restore_mib: 2_048,
            storage: self.options.backup_storage.clone().unwrap_or(
                multibridge_config::StorageSettings::Local {
                    path: self.options.dir.join("backups"),
                },
            ),
        }))
    }

    /// Write one relay config per operator (on a hub devnet a `[[pairs]]` file), then
    /// `devnet.json`.
    pub(super) fn write_files(&self) -> Result<(), DevnetError> {
        for index in 0..self.accounts.operators.len() {
            self.write_config_text(
                &self.operator_config_path(index),
                &self.replica_config_text(index, 0)?,
            )?;
        }
        self.manifest().save()?;
        Ok(())
    }

    /// Config path of a replica (replica 0: [`operator_config_path`](Self::operator_config_path)).
    pub fn replica_config_path(&self, index: usize, replica: usize) -> PathBuf {
        if replica == 0 {
            return self.operator_config_path(index);
        }
        self.options.dir.join(format!(
            "operator-{}-r{}.toml",
            index.saturating_add(1),
            replica.saturating_add(1)
        ))
    }

    /// The config of replica `replica` of operator `index`: its own HTTP port, store and name.
    pub fn replica_config(&self, index: usize, replica: usize) -> Result<Config, DevnetError> {
        let mut config = self.operator_config(index)?;
        if replica == 0 {
            return Ok(config);
        }
        let port = super::hub::replica_port(&self.replica_http_ports, index, replica)?;
        config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        config.guardian = self.guardian_config(index, replica)?;
        config.store.path = self.replica_dir(index, replica).join("store.sqlite");
        for role in [ChainRole::Main, ChainRole::Service] {
            let url = self.replica_rpc_url(index, replica, role);
            match role {
                ChainRole::Main => config.chains.main.rpc_urls = vec![url],
                ChainRole::Service => config.chains.service.rpc_urls = vec![url],
            }
        }
        super::follow_rpc_urls(&mut config);
        if let Some(etcd) = config.etcd.as_mut() {
            if let Some(links) = self.links.get(&(index, replica)) {
                etcd.endpoints = links.etcd_endpoints();
            }
            etcd.replica = Some(format!(
                "operator-{}-r{}",
                index.saturating_add(1),
                replica.saturating_add(1)
            ));
        }
        Ok(config)
    }

    /// Write replica `replica` of operator `index`'s config file before (re)starting it.
    pub fn write_replica_config(
        &self,
        index: usize,
        replica: usize,
        config: &Config,
    ) -> Result<(), DevnetError> {
        self.write_config_to(&self.replica_config_path(index, replica), config)
    }

    /// Rewrite operator `index`'s config file (e.g. to inject a fault) before (re)starting it.
    pub fn write_operator_config(&self, index: usize, config: &Config) -> Result<(), DevnetError> {
        self.write_config_to(&self.operator_config_path(index), config)
    }

    pub(super) fn write_config_to(&self, path: &Path, config: &Config) -> Result<(), DevnetError> {
        let mut config = config.clone();
        super::follow_rpc_urls(&mut config);
        let toml = config
            .to_toml()
            .map_err(|e| DevnetError::Invalid(format!("render relay config: {e}")))?;
        self.write_config_text(path, &toml)
    }

    /// Write a rendered relay config with the devnet header.
    pub(super) fn write_config_text(&self, path: &Path, toml: &str) -> Result<(), DevnetError> {
        let header = "# multibridge relay config written by multibridge-devnet.\n\
                      # DEVNET ONLY: the key below is a public anvil test key.\n";
        write_atomic(path, format!("{header}{toml}").as_bytes())
    }
}
