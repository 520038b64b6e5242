//! The operator's signer, whatever holds the key: a keystore decrypted into memory, a PKCS#11
//! token (an HSM: the key is generated inside it and never leaves), or AWS KMS. Every backend
//! signs a 32-byte hash; this module bounds each signature in time, checks that it recovers to
//! the operator's address, and tells a failure the relay can wait out (HSM unplugged, KMS
//! throttled: [`SignerError::is_retryable`]) from one a person must fix (the wrong key).
//!
//! The relay never stops on a failing signer: the lane voter pauses sending with the reason
//! `signer_unavailable` (status, `multibridge_sending_paused`, an alert) and resumes when a probe
//! signature succeeds again (see `lane::voting`).

pub mod aws;
pub mod open;
pub mod pkcs11;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::consensus::SignableTransaction;
use alloy::network::{EthereumWallet, TxSigner};
use alloy::primitives::{Address, B256, Signature, keccak256};
use alloy::signers::Signer as _;
use alloy::signers::local::PrivateKeySigner;

/// Longest a signature may take before the signer counts as hanging.
pub const SIGN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the signer did not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// The backend did not answer in time (a hung HSM, a throttled KMS).
    #[error("the {backend} signer did not answer within {secs} s")]
    Timeout {
        /// Backend name.
        backend: &'static str,
        /// The bound.
        secs: u64,
    },
    /// The backend answered with an error or cannot be reached (token removed, PIN refused,
    /// KMS throttling or unreachable).
    #[error("the {backend} signer failed: {reason}")]
    Unavailable {
        /// Backend name.
        backend: &'static str,
        /// What it said (no secret).
        reason: String,
    },
    /// The backend returned a signature that does not recover to its own address.
    #[error("the {backend} signer returned a signature that recovers to {actual}, not {expected}")]
    BadSignature {
        /// Backend name.
        backend: &'static str,
        /// Its address.
        expected: Address,
        /// What the signature recovers to (zero: to nothing).
        actual: Address,
    },
    /// The signer could not be set up (bad module path, no such token or key, bad PIN source).
    #[error("the {backend} signer cannot be set up: {reason}")]
    Setup {
        /// Backend name.
        backend: &'static str,
        /// Why.
        reason: String,
    },
}

impl SignerError {
    /// Whether the same signature may succeed later without a person (the relay pauses sending
    /// and retries).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Unavailable { .. })
    }
}

/// The backends.
#[derive(Debug)]
enum Backend {
    Local(PrivateKeySigner),
    Pkcs11(pkcs11::Pkcs11Signer),
    Aws(aws::KmsSigner),
    /// Unit tests: a backend that never answers.
    #[cfg(test)]
    Stalled,
}

/// The operator's signer: cheap to clone, shared by every sender of the relay.
#[derive(Clone)]
pub struct OperatorSigner {
    backend: Arc<Backend>,
    address: Address,
    timeout: Duration,
    metrics: Option<Arc<multibridge_monitoring::Metrics>>,
}

impl std::fmt::Debug for OperatorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorSigner")
            .field("backend", &self.backend())
            .field("address", &self.address)
            .finish()
    }
}

impl OperatorSigner {
    /// A key held in memory (a decrypted keystore or a devnet key).
    pub fn local(key: PrivateKeySigner) -> Self {
        let address = key.address();
        Self {
            backend: Arc::new(Backend::Local(key)),
            address,
            timeout: SIGN_TIMEOUT,
            metrics: None,
        }
    }

    /// A key inside a PKCS#11 token.
    pub fn pkcs11(signer: pkcs11::Pkcs11Signer) -> Self {
        let address = signer.address();
        Self {
            backend: Arc::new(Backend::Pkcs11(signer)),
            address,
            timeout: SIGN_TIMEOUT,
            metrics: None,
        }
    }

    /// A key in AWS KMS.
    pub fn aws(signer: aws::KmsSigner) -> Self {
        let address = signer.address();
        Self {
            backend: Arc::new(Backend::Aws(signer)),
            address,
            timeout: SIGN_TIMEOUT,
            metrics: None,
        }
    }

    /// The same signer with another bound on one signature.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same signer recording every signature in `metrics` (`signer_signatures_total`,
    /// `signer_sign_seconds`).
    pub fn with_metrics(mut self, metrics: Arc<multibridge_monitoring::Metrics>) -> Self {
        metrics.init_signer(self.backend());
        self.metrics = Some(metrics);
        self
    }

    /// The signing address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// `keystore`, `pkcs11` or `aws-kms` (metrics label, status).
    pub fn backend(&self) -> &'static str {
        match *self.backend {
            Backend::Local(_) => "keystore",
            Backend::Pkcs11(_) => "pkcs11",
            Backend::Aws(_) => "aws-kms",
            #[cfg(test)]
            Backend::Stalled => "stalled",
        }
    }

    /// The key in memory, for a backend that has one (keystore, devnet key).
    pub fn local_key(&self) -> Option<&PrivateKeySigner> {
        match &*self.backend {
            Backend::Local(key) => Some(key),
            _ => None,
        }
    }

    /// A wallet for building transactions with this signer.
    pub fn wallet(&self) -> EthereumWallet {
        EthereumWallet::from(self.clone())
    }

    /// Sign `hash`, bounded by the timeout; an HSM's or KMS's signature is checked to recover to
    /// this signer's address (a local key signs with the very key its address comes from: its
    /// signatures are not recovered again, which was a fifth of an attested relay's curve
    /// arithmetic).
    pub async fn sign_hash(&self, hash: &B256) -> Result<Signature, SignerError> {
        let started = Instant::now();
        let result = self.sign_checked(hash).await;
        if let Some(metrics) = &self.metrics {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(SignerError::Timeout { .. }) => "timeout",
                Err(SignerError::BadSignature { .. }) => "wrong_key",
                Err(_) => "failed",
            };
            metrics.signature(self.backend(), outcome, started.elapsed().as_secs_f64());
        }
        result
    }

    async fn sign_checked(&self, hash: &B256) -> Result<Signature, SignerError> {
        let backend = self.backend();
        let signed = tokio::time::timeout(self.timeout, async {
            match &*self.backend {
                Backend::Local(key) => key
                    .sign_hash(hash)
                    .await
                    .map_err(|e| unavailable(backend, e)),
                Backend::Pkcs11(hsm) => hsm.sign_hash(*hash).await,
                Backend::Aws(kms) => kms.sign_hash(hash).await,
                #[cfg(test)]
                Backend::Stalled => std::future::pending().await,
            }
        })
        .await
        .map_err(|_| SignerError::Timeout {
            backend,
            secs: self.timeout.as_secs().max(1),
        })??;
        if matches!(&*self.backend, Backend::Local(_)) {
            return Ok(signed);
        }
        let recovered = signed
            .recover_address_from_prehash(hash)
            .unwrap_or(Address::ZERO);
        if recovered != self.address {
            return Err(SignerError::BadSignature {
                backend,
                expected: self.address,
                actual: recovered,
            });
        }
        Ok(signed)
    }

    /// Sign a probe (a fixed hash naming this purpose) and say how long it took: whether the
    /// signer answers now, with a signature of its own key.
    pub async fn probe(&self) -> Result<Duration, SignerError> {
        let started = Instant::now();
        self.sign_hash(&keccak256(b"multibridge signer probe"))
            .await?;
        Ok(started.elapsed())
    }
}

impl From<PrivateKeySigner> for OperatorSigner {
    fn from(key: PrivateKeySigner) -> Self {
        Self::local(key)
    }
}

fn unavailable(backend: &'static str, e: impl std::fmt::Display) -> SignerError {
    SignerError::Unavailable {
        backend,
        reason: e.to_string(),
    }
}

#[async_trait::async_trait]
impl TxSigner<Signature> for OperatorSigner {
    fn address(&self) -> Address {
        self.address
    }

    async fn sign_transaction(
        &self,
        tx: &mut dyn SignableTransaction<Signature>,
    ) -> alloy::signers::Result<Signature> {
        self.sign_hash(&tx.signature_hash())
            .await
            .map_err(alloy::signers::Error::other)
    }
}

/// The [`SignerError`] inside a signing error of [`OperatorSigner`] (alloy wraps it in
/// `alloy_signer::Error::Other`, whose `source()` skips it, so it is matched, not walked to).
pub fn signer_error(error: &alloy::signers::Error) -> Option<&SignerError> {
    match error {
        alloy::signers::Error::Other(inner) => inner.downcast_ref::<SignerError>(),
        _ => None,
    }
}

/// The Ethereum address of an uncompressed SEC1 public key (`04 || X || Y`).
pub fn address_of_point(point: &[u8]) -> Option<Address> {
    match point {
        [0x04, xy @ ..] if xy.len() == 64 => Some(Address::from_slice(&keccak256(xy)[12..])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_key_signs_and_its_signatures_recover_to_it() {
        let key = PrivateKeySigner::random();
        let signer = OperatorSigner::local(key.clone());
        assert_eq!(signer.backend(), "keystore");
        assert_eq!(signer.address(), key.address());
        let hash = keccak256(b"vote");
        let signed = signer.sign_hash(&hash).await.unwrap();
        assert_eq!(
            signed.recover_address_from_prehash(&hash).unwrap(),
            key.address()
        );
        signer.probe().await.unwrap();
    }

    #[tokio::test]
    async fn a_signer_that_never_answers_is_a_retryable_timeout() {
        let address = Address::repeat_byte(9);
        let signer = OperatorSigner {
            backend: Arc::new(Backend::Stalled),
            address,
            timeout: SIGN_TIMEOUT,
            metrics: None,
        }
        .with_timeout(Duration::from_millis(50));
        let started = Instant::now();
        let err = signer.probe().await.unwrap_err();
        assert_eq!(
            err,
            SignerError::Timeout {
                backend: "stalled",
                secs: 1
            }
        );
        assert!(err.is_retryable());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn retryable_failures_are_the_ones_that_can_pass() {
        let timeout = SignerError::Timeout {
            backend: "pkcs11",
            secs: 10,
        };
        let gone = SignerError::Unavailable {
            backend: "pkcs11",
            reason: "CKR_TOKEN_NOT_PRESENT".into(),
        };
        let wrong = SignerError::BadSignature {
            backend: "aws-kms",
            expected: Address::ZERO,
            actual: Address::repeat_byte(1),
        };
        assert!(timeout.is_retryable() && gone.is_retryable());
        assert!(!wrong.is_retryable());
    }

    #[test]
    fn the_error_is_found_inside_a_signer_error_chain() {
        let inner = SignerError::Timeout {
            backend: "aws-kms",
            secs: 10,
        };
        let wrapped = alloy::signers::Error::other(inner.clone());
        assert_eq!(signer_error(&wrapped), Some(&inner));
    }

    #[test]
    fn address_of_a_point() {
        let key = PrivateKeySigner::random();
        let point = key
            .credential()
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        assert_eq!(address_of_point(&point), Some(key.address()));
        assert_eq!(address_of_point(&point[1..]), None);
    }
}
