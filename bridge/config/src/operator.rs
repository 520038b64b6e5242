//! The operator section: which address this replica signs for and where its key comes from,
//! a [`Secret`] that never prints, and the reader of passwords and PINs kept in a file or an
//! environment variable.

use std::fmt;
use std::path::{Path, PathBuf};

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

use crate::Problem;

/// The operator and how to get its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Expected operator address; startup fails if the key does not match it.
    pub address: Address,
    /// Where the signing key comes from.
    pub signer: SignerConfig,
}

/// Signing key source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SignerConfig {
    /// Encrypted JSON keystore (v3) with its password in a file or an environment variable.
    Keystore {
        /// Path of the keystore file.
        path: PathBuf,
        /// File holding the password (first line).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_file: Option<PathBuf>,
        /// Environment variable holding the password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_env: Option<String>,
    },
    /// A raw hex private key. Devnet only: refused unless the chain ids are devnet ones.
    DevKey {
        /// 0x-prefixed 32-byte hex key.
        private_key: Secret,
    },
    /// A secp256k1 key inside a PKCS#11 token (an HSM), found by label; the key never leaves
    /// the token (`multibridge hsm create-key` makes one).
    Pkcs11 {
        /// The vendor's PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
        module: PathBuf,
        /// The token's label.
        token_label: String,
        /// The key's label.
        key_label: String,
        /// File holding the user PIN (first line).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pin_file: Option<PathBuf>,
        /// Environment variable holding the user PIN.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pin_env: Option<String>,
    },
    /// A secp256k1 key (`ECC_SECG_P256K1`) in AWS KMS; credentials from the standard AWS chain.
    AwsKms {
        /// Key id, ARN or alias.
        key_id: String,
        /// Region (default: the AWS chain's, e.g. `AWS_REGION`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Endpoint (default: the region's; a VPC endpoint, or a test stand-in).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint_url: Option<String>,
    },
}

/// A string that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl OperatorConfig {
    /// The first problem with the section.
    pub fn problem(&self) -> Option<Problem> {
        self.signer.problem(SignerField::Operator)
    }
}

/// Which section a signer is configured in (the field a problem names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerField {
    /// `[operator.signer]`.
    Operator,
    /// `[guardian.signer]`.
    Guardian,
}

impl SignerConfig {
    /// The first problem with the signer configured at `at`.
    pub fn problem(&self, at: SignerField) -> Option<Problem> {
        let (field, key_id_field) = match at {
            SignerField::Operator => ("operator.signer", "operator.signer.key_id"),
            SignerField::Guardian => ("guardian.signer", "guardian.signer.key_id"),
        };
        match self {
            Self::Keystore {
                password_file: None,
                password_env: None,
                ..
            } => Some((
                field,
                "a keystore needs password_file or password_env".into(),
            )),
            Self::Pkcs11 {
                pin_file: None,
                pin_env: None,
                ..
            } => Some((field, "a PKCS#11 key needs pin_file or pin_env".into())),
            Self::AwsKms { key_id, .. } if key_id.trim().is_empty() => {
                Some((key_id_field, "must not be empty".into()))
            }
            _ => None,
        }
    }
}

/// Why a password, PIN or token kept outside the config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("cannot read password file {path}: {source}")]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The environment variable is not set.
    #[error("environment variable {0} (the password) is not set")]
    EnvMissing(String),
    /// Neither a file nor a variable is configured.
    #[error("no password configured: give a password file or an environment variable")]
    NotConfigured,
}

/// A secret from the first line of `file` (a trailing newline is not part of it), else from the
/// environment variable `env`.
pub fn read_secret(file: Option<&Path>, env: Option<&str>) -> Result<String, SecretError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::FileUnreadable {
            path: path.to_owned(),
            source,
        })?;
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    if let Some(var) = env {
        return std::env::var(var).map_err(|_| SecretError::EnvMissing(var.to_owned()));
    }
    Err(SecretError::NotConfigured)
}
