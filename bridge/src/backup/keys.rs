//! The backup key pair: the public key from the config (SEC1 hex), the private key from a file
//! or an environment variable (hex), never logged.

use std::path::{Path, PathBuf};

use k256::{PublicKey, SecretKey};

/// Why a backup key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BackupKeyError {
    /// Not hex.
    #[error("backup key is not hex")]
    NotHex,
    /// Not a secp256k1 public key.
    #[error(
        "backup public key is not a secp256k1 point (give 33 or 65 bytes SEC1 hex, e.g. from `multibridge backup keygen`)"
    )]
    NotAPoint,
    /// Not a secp256k1 private key.
    #[error("backup private key is not a secp256k1 scalar (give 32 bytes hex)")]
    NotAScalar,
    /// The file could not be read.
    #[error("cannot read backup.private_key_file {path}: {source}")]
    Unreadable {
        /// File.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The variable is not set.
    #[error("environment variable {0} (backup.private_key_env) is not set")]
    EnvMissing(String),
    /// Neither is configured.
    #[error(
        "no backup private key: set backup.private_key_file or backup.private_key_env to join from a backup"
    )]
    NotConfigured,
    /// The private key is not the pair of the configured public key.
    #[error("the backup private key does not belong to backup.public_key")]
    Mismatch,
}

fn hex_bytes(text: &str) -> Result<Vec<u8>, BackupKeyError> {
    let text = text.trim();
    let text = text.strip_prefix("0x").unwrap_or(text);
    alloy::hex::decode(text).map_err(|_| BackupKeyError::NotHex)
}

/// The public key from SEC1 hex (compressed or uncompressed): the config's own check.
pub fn parse_public_key(text: &str) -> Result<PublicKey, BackupKeyError> {
    use crate::config::backup::PublicKeyError;
    crate::config::backup::parse_public_key(text).map_err(|e| match e {
        PublicKeyError::NotHex => BackupKeyError::NotHex,
        PublicKeyError::NotAPoint => BackupKeyError::NotAPoint,
    })
}

/// The private key from 32 bytes hex.
pub fn parse_private_key(text: &str) -> Result<SecretKey, BackupKeyError> {
    SecretKey::from_slice(&hex_bytes(text)?).map_err(|_| BackupKeyError::NotAScalar)
}

/// Read the private key from `file` (first line) or `env`.
pub fn read_private_key(
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<SecretKey, BackupKeyError> {
    let text = if let Some(path) = file {
        std::fs::read_to_string(path)
            .map_err(|source| BackupKeyError::Unreadable {
                path: path.to_owned(),
                source,
            })?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    } else if let Some(var) = env {
        std::env::var(var).map_err(|_| BackupKeyError::EnvMissing(var.to_owned()))?
    } else {
        return Err(BackupKeyError::NotConfigured);
    };
    parse_private_key(&text)
}

/// SEC1 hex of a public key (compressed), as the config takes it.
pub fn public_key_hex(key: &PublicKey) -> String {
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    format!(
        "0x{}",
        alloy::hex::encode(key.to_encoded_point(true).as_bytes())
    )
}

/// The pair of the configured public key, or [`BackupKeyError::Mismatch`].
pub fn matching(secret: SecretKey, public: &PublicKey) -> Result<SecretKey, BackupKeyError> {
    if &secret.public_key() == public {
        Ok(secret)
    } else {
        Err(BackupKeyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_keys_are_named() {
        let secret = SecretKey::random(&mut rand_core::OsRng);
        let public = secret.public_key();
        let hex = public_key_hex(&public);
        assert_eq!(parse_public_key(&hex).expect("compressed"), public);
        let secret_hex = alloy::hex::encode(secret.to_bytes());
        let parsed = parse_private_key(&secret_hex).expect("scalar");
        assert!(matching(parsed, &public).is_ok());
        let other = SecretKey::random(&mut rand_core::OsRng);
        assert!(matches!(
            matching(other, &public),
            Err(BackupKeyError::Mismatch)
        ));
        assert!(matches!(
            parse_public_key("0x02ff"),
            Err(BackupKeyError::NotAPoint)
        ));
        assert!(matches!(
            parse_public_key("zz"),
            Err(BackupKeyError::NotHex)
        ));
        assert!(matches!(
            read_private_key(None, Some("MB_SURELY_UNSET_BACKUP_KEY")),
            Err(BackupKeyError::EnvMissing(_))
        ));
    }
}
