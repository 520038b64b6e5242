//! A secp256k1 key in AWS KMS (`ECC_SECG_P256K1`, `SIGN_VERIFY`), through alloy's KMS signer:
//! the public key is read once (`GetPublicKey`) for the address; each signature is one `Sign` of
//! the 32-byte hash as a `DIGEST` (KMS never hashes it again). Credentials come from the standard
//! AWS chain (environment, profile, web identity, instance metadata); nothing secret is in the
//! relay's config. `endpoint_url` points at a VPC endpoint or, in the tests, at a local stand-in.

use std::time::Duration;

use alloy::primitives::{Address, B256, Signature};
use alloy::signers::Signer as _;
use alloy_signer_aws::AwsSigner;

use super::SignerError;

const BACKEND: &str = "aws-kms";

/// Which key, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKey {
    /// Key id, key ARN, or alias (`alias/...`; an alias is resolved once, at start).
    pub key_id: String,
    /// Region (default: the AWS chain's, e.g. `AWS_REGION`).
    pub region: Option<String>,
    /// Endpoint (default: the region's public KMS endpoint).
    pub endpoint_url: Option<String>,
}

/// The signer of one KMS key.
#[derive(Debug, Clone)]
pub struct KmsSigner {
    inner: AwsSigner,
}

/// Longest one KMS call may take (the relay's own bound on a signature is longer, so a slow
/// call is this error, with the SDK's reason).
const CALL_TIMEOUT: Duration = Duration::from_secs(8);

impl KmsSigner {
    /// Read the key's public key and derive its address.
    pub async fn open(key: &KmsKey) -> Result<Self, SignerError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(CALL_TIMEOUT)
                    .build(),
            );
        if let Some(region) = &key.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &key.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let config = loader.load().await;
        let client = aws_sdk_kms::Client::new(&config);
        let inner = AwsSigner::new(client, key.key_id.clone(), None)
            .await
            .map_err(|e| SignerError::Unavailable {
                backend: BACKEND,
                reason: format!("GetPublicKey of {}: {}", key.key_id, error_text(&e)),
            })?;
        Ok(Self { inner })
    }

    /// The key's address.
    pub fn address(&self) -> Address {
        self.inner.address()
    }

    /// One `Sign` of `hash`.
    pub async fn sign_hash(&self, hash: &B256) -> Result<Signature, SignerError> {
        self.inner
            .sign_hash(hash)
            .await
            .map_err(|e| SignerError::Unavailable {
                backend: BACKEND,
                reason: format!("Sign: {}", error_text(&e)),
            })
    }
}

/// An error and its sources on one line (the SDK's top-level message alone is often just
/// "service error").
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}
