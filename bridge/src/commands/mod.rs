//! The commands of the `multibridge` binary, one file each: its clap arguments (`Args`), its
//! `run` and its printing. `main.rs` only parses, sets up logging and the runtime, and
//! dispatches. The daemon itself is [`crate::relay`].
//!
//! | command | file |
//! |---|---|
//! | `run` | [`run`] |
//! | `config validate`, `config check` | [`config`] |
//! | `status`, `registry` | [`status`], [`registry`] |
//! | `deploy`, `admin …` | [`deploy`], [`admin`] (through `multibridge_admin`) |
//! | `backup …` | [`backup`] |
//! | `transfer`, `claim`, `refund`, `track` | [`transfer`], [`claim`], [`refund`], [`track`] (a user's commands) |
//! | `hsm …` | [`hsm`] |

use std::path::PathBuf;

pub mod admin;
pub mod backup;
pub mod claim;
pub mod config;
pub mod deploy;
pub mod execute;
pub mod hsm;
pub mod refund;
pub mod registry;
pub mod run;
pub mod status;
pub mod track;
pub mod transfer;

/// How a user gives their key.
#[derive(clap::Args)]
pub struct UserKeyArgs {
    /// Environment variable holding the user's hex private key.
    #[arg(long, conflicts_with_all = ["keystore", "signer_file"])]
    key_env: Option<String>,
    /// The user's JSON keystore (with --password-file).
    #[arg(long, requires = "password_file", conflicts_with = "signer_file")]
    keystore: Option<PathBuf>,
    /// File holding the keystore password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// A file holding a signer section (`kind = "pkcs11"`, `"aws-kms"` or `"keystore"`, the
    /// fields of `[operator.signer]`): a key in an HSM or KMS.
    #[arg(long)]
    signer_file: Option<PathBuf>,
}

impl UserKeyArgs {
    /// The signer, whatever holds the key (checked to sign).
    pub async fn signer(&self) -> anyhow::Result<crate::chain::signer::OperatorSigner> {
        Ok(match &self.signer_file {
            Some(path) => crate::chain::signer::open::load_signer_file(path).await?,
            None => crate::chain::signer::OperatorSigner::local(self.load()?),
        })
    }

    fn load(&self) -> anyhow::Result<alloy::signers::local::PrivateKeySigner> {
        Ok(match (&self.key_env, &self.keystore, &self.password_file) {
            (Some(var), _, _) => std::env::var(var)
                .map_err(|_| anyhow::anyhow!("--key-env {var}: the variable is not set"))?
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--key-env {var}: not a 32-byte hex private key"))?,
            (None, Some(path), Some(password_file)) => {
                let password =
                    crate::chain::signer::open::read_password(Some(password_file), None)?;
                crate::chain::signer::open::decrypt_keystore(path, &password)?
            }
            _ => anyhow::bail!(
                "give the user's key with --key-env VAR, --keystore FILE --password-file FILE or --signer-file FILE"
            ),
        })
    }
}

/// Request `nonce` of `lane` as its source bridge logged it, searched back from the head to the
/// source's `start_block` (what a user's command names by nonce).
pub(crate) async fn request_at(
    config: &crate::config::Config,
    source: &crate::chain::ChainClient,
    lane: multibridge_contracts::Lane,
    nonce: u64,
) -> Result<Option<multibridge_contracts::Request>, crate::chain::ChainError> {
    let chain = config.chains.get(lane.source());
    let head = source.head().await?;
    crate::chain::lookup::find_request(
        source,
        nonce,
        crate::chain::lookup::ScanBounds {
            floor: chain.start_block,
            top: head,
            max_range: chain.max_block_range.max(1),
            not_before: None,
            max_queries: 10_000,
        },
    )
    .await
}
