//! `multibridge backup …`: ask the leading replica for a backup now, show the newest backup log
//! (decrypted with the backup private key), make a backup key pair.

use clap::Subcommand;
use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use multibridge_contracts::Lane;
use serde::Serialize;

use crate::backup::join::{JoinError, newest_log};
use crate::backup::keys::{matching, parse_public_key, public_key_hex, read_private_key};
use crate::backup::log::BackupLog;
use crate::backup::versions::{self, OnDemand, StateKeys};
use crate::chain::{ChainPair, RetryPolicy};
use crate::config::Config;

/// Why a backup command failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupCommandError {
    /// The config has no `[backup]`, `[etcd]` or `[registry]`.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// etcd did not answer.
    #[error(transparent)]
    Etcd(#[from] crate::leadership::etcd_pool::EtcdUnavailable),
    /// No replica answered the request in time.
    #[error(
        "{lane}: no answer within {secs} s; is a relay with [backup] running and leading the registry's lane?"
    )]
    NoAnswer {
        /// Lane.
        lane: Lane,
        /// Waited.
        secs: u64,
    },
    /// The log could not be read.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// A chain could not be reached.
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    /// The key file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// File.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The answer of one lane.
#[derive(Debug, Clone, Serialize)]
pub struct BackupAnswer {
    /// Lane.
    pub lane: Lane,
    /// The version saved.
    pub version: Option<u64>,
    /// Why not.
    pub error: Option<String>,
}

/// Ask the replica that runs backups for one of each lane now and wait for the answers.
pub async fn request_now(
    config: &Config,
    lanes: &[Lane],
    timeout: Duration,
) -> Result<Vec<BackupAnswer>, BackupCommandError> {
    if config.backup.is_none() {
        return Err(BackupCommandError::NotConfigured(
            "this config has no [backup] section",
        ));
    }
    let metrics = multibridge_monitoring::Metrics::new(&[], 1)
        .expect("the metric definitions are unique and valid (unit-tested in monitoring)");
    let pool = crate::leadership::command_etcd_pool(config, &metrics)
        .ok_or(BackupCommandError::NotConfigured("backups need [etcd]"))?;
    let mut nonce = [0u8; 6];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let id = format!("{}-{}", crate::store::unix_now(), alloy::hex::encode(nonce));
    let mut answers = Vec::new();
    for lane in lanes {
        let keys = StateKeys::of(config, *lane, config.operator.address)
            .ok_or(BackupCommandError::NotConfigured("backups need [etcd]"))?;
        let request = OnDemand {
            id: id.clone(),
            at: crate::store::unix_now(),
            outcome: None,
        };
        versions::put(
            &pool,
            keys.request(),
            serde_json::to_string(&request).unwrap_or_default(),
            None,
        )
        .await?;
        let deadline = crate::backup::deadline_after(timeout);
        let answer = loop {
            let view = versions::read(&pool, &keys).await?;
            if let Some(result) = view.result.filter(|r| r.id == id) {
                break result.outcome;
            }
            if Instant::now() >= deadline {
                return Err(BackupCommandError::NoAnswer {
                    lane: *lane,
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        answers.push(match answer {
            Some(Ok(version)) => BackupAnswer {
                lane: *lane,
                version: Some(version),
                error: None,
            },
            Some(Err(e)) => BackupAnswer {
                lane: *lane,
                version: None,
                error: Some(e),
            },
            None => BackupAnswer {
                lane: *lane,
                version: None,
                error: Some("answered without an outcome".into()),
            },
        });
    }
    Ok(answers)
}

/// The newest backup log of `lane`, decrypted with the configured private key.
pub async fn show(config: &Config, lane: Lane) -> Result<BackupLog, BackupCommandError> {
    let backup = config
        .backup
        .as_ref()
        .ok_or(BackupCommandError::NotConfigured(
            "this config has no [backup] section",
        ))?;
    let registry = config
        .registry
        .as_ref()
        .ok_or(BackupCommandError::NotConfigured("backups need [registry]"))?;
    let public = parse_public_key(&backup.public_key).map_err(JoinError::from)?;
    let key = read_private_key(
        backup.private_key_file.as_deref(),
        backup.private_key_env.as_deref(),
    )
    .and_then(|k| matching(k, &public))
    .map_err(JoinError::from)?;
    let chains = ChainPair::for_command(&config.chains, RetryPolicy::interactive())?;
    Ok(newest_log(config, &chains.main, registry.address, lane, &key).await?)
}

/// Make a backup key pair: the private key into `out` (mode 0600, hex), the public key
/// returned (SEC1 compressed hex, for `backup.public_key`).
pub fn keygen(out: &Path) -> Result<String, BackupCommandError> {
    let secret = k256::SecretKey::random(&mut rand_core::OsRng);
    let text = format!("0x{}\n", alloy::hex::encode(secret.to_bytes()));
    write_private(out, &text).map_err(|source| BackupCommandError::Write {
        path: out.display().to_string(),
        source,
    })?;
    Ok(public_key_hex(&secret.public_key()))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

/// `multibridge backup …`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Ask the replica that runs backups to back up now (state-version-up) and wait for it.
    Now {
        /// The config file.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
        /// Only this lane (default: every configured lane).
        #[arg(long)]
        lane: Option<multibridge_contracts::Lane>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt and print the newest backup log of a lane (needs the backup private key).
    Show {
        /// The config file.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
        /// The lane.
        #[arg(long)]
        lane: multibridge_contracts::Lane,
    },
    /// Make a backup key pair: the private key into a new file (mode 0600), the public key
    /// printed for `backup.public_key`.
    Keygen {
        /// Where to write the private key (must not exist).
        #[arg(long)]
        private_key_out: PathBuf,
    },
}

/// Run `multibridge backup …`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        BackupCommand::Now {
            config,
            lane,
            timeout,
            json,
        } => {
            let c = Config::load(&config)?;
            let lanes = lane.map_or_else(|| c.lanes.clone(), |l| vec![l]);
            let answers =
                self::request_now(&c, &lanes, std::time::Duration::from_secs(timeout)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answers)?);
            } else {
                for a in &answers {
                    match (&a.version, &a.error) {
                        (Some(v), _) => println!("{}: backed up as state version {v}", a.lane),
                        (None, Some(e)) => println!("{}: backup failed: {e}", a.lane),
                        (None, None) => println!("{}: no outcome", a.lane),
                    }
                }
            }
            if answers.iter().any(|a| a.version.is_none()) {
                anyhow::bail!("a backup failed");
            }
            Ok(())
        }
        BackupCommand::Show { config, lane } => {
            let c = Config::load(&config)?;
            let log = self::show(&c, lane).await?;
            println!("{}", serde_json::to_string_pretty(&log)?);
            Ok(())
        }
        BackupCommand::Keygen { private_key_out } => {
            let public = self::keygen(&private_key_out)?;
            println!("backup public key (backup.public_key): {public}");
            println!("private key written to {}", private_key_out.display());
            Ok(())
        }
    }
}
