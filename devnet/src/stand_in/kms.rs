//! TEST ONLY: a local stand-in for AWS KMS's signing API, so the relay's `aws-kms` signer (alloy's
//! KMS signer over the AWS SDK: SigV4-signed requests, the JSON 1.1 protocol, `GetPublicKey`,
//! `Sign` of a `DIGEST`) can be driven end to end on a machine that reaches no cloud.
//!
//! It answers `TrentService.GetPublicKey` and `TrentService.Sign` for secp256k1 keys it derives
//! from their ids (`ECC_SECG_P256K1`, `ECDSA_SHA_256`, DER signatures, DER SubjectPublicKeyInfo,
//! as KMS does), insists on a SigV4 `Authorization` header, and can be told to throttle
//! (`ThrottlingException`, as a rate-limited KMS) or to hang. What it cannot show: that real KMS
//! accepts the SDK's credentials and requests; moto's KMS (already used for S3) was tried first
//! but hashes a `DIGEST` message again, so its signatures do not recover.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use alloy::primitives::{Address, keccak256};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k256::ecdsa::SigningKey;
use k256::ecdsa::signature::hazmat::PrehashSigner;

use crate::error::DevnetError;

/// DER prefix of a secp256k1 SubjectPublicKeyInfo (id-ecPublicKey, secp256k1) before the
/// 65-byte uncompressed point.
const SPKI_PREFIX: [u8; 23] = [
    0x30, 0x56, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x0a, 0x03, 0x42, 0x00,
];

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KmsMode {
    /// Normally.
    Serving = 0,
    /// `ThrottlingException` to every call.
    Throttling = 1,
    /// Never (the request is held open).
    Hanging = 2,
}

/// The running stand-in.
pub struct KmsStandIn {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KmsStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The key the stand-in holds for `key_id` (derived from it: stable across restarts).
pub fn key_for(key_id: &str) -> SigningKey {
    let mut seed = keccak256(format!("multibridge kms stand-in {key_id}"));
    loop {
        if let Ok(key) = SigningKey::from_slice(seed.as_slice()) {
            return key;
        }
        seed = keccak256(seed);
    }
}

/// The Ethereum address of the stand-in's key `key_id`.
pub fn address_for(key_id: &str) -> Address {
    let point = key_for(key_id).verifying_key().to_encoded_point(false);
    multibridge_chain::signer::address_of_point(point.as_bytes())
        .expect("an uncompressed SEC1 encoding is 04 || X || Y")
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        serde_json::json!({ "__type": kind, "message": message }).to_string(),
    )
        .into_response()
}

async fn handle(mode: Arc<AtomicU8>, headers: HeaderMap, body: String) -> Response {
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
    if !signed {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingAuthenticationTokenException",
            "no SigV4 signature",
        );
    }
    match mode.load(Ordering::Relaxed) {
        m if m == KmsMode::Throttling as u8 => {
            return error(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate exceeded",
            );
        }
        m if m == KmsMode::Hanging as u8 => {
            std::future::pending::<()>().await;
        }
        _ => {}
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Ok(request) = serde_json::from_str::<serde_json::Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "body is not JSON",
        );
    };
    let Some(key_id) = request["KeyId"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "KeyId is required",
        );
    };
    let key = key_for(key_id);
    let arn = format!("arn:aws:kms:us-east-1:000000000000:key/{key_id}");
    match target {
        "TrentService.GetPublicKey" => {
            let mut spki = SPKI_PREFIX.to_vec();
            spki.extend_from_slice(key.verifying_key().to_encoded_point(false).as_bytes());
            let answer = serde_json::json!({
                "KeyId": arn,
                "PublicKey": B64.encode(spki),
                "KeySpec": "ECC_SECG_P256K1",
                "CustomerMasterKeySpec": "ECC_SECG_P256K1",
                "KeyUsage": "SIGN_VERIFY",
                "SigningAlgorithms": ["ECDSA_SHA_256"],
            });
            (
                [("content-type", "application/x-amz-json-1.1")],
                answer.to_string(),
            )
                .into_response()
        }
        "TrentService.Sign" => {
            if request["MessageType"] != "DIGEST" || request["SigningAlgorithm"] != "ECDSA_SHA_256"
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    "this stand-in signs ECDSA_SHA_256 digests only",
                );
            }
            let Some(digest) = request["Message"].as_str().and_then(|m| B64.decode(m).ok()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    "Message is not base64",
                );
            };
            if digest.len() != 32 {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    "a DIGEST is 32 bytes",
                );
            }
            let signature: k256::ecdsa::Signature = match key.sign_prehash(&digest) {
                Ok(s) => s,
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "KMSInternalException",
                        &e.to_string(),
                    );
                }
            };
            let answer = serde_json::json!({
                "KeyId": arn,
                "Signature": B64.encode(signature.to_der().as_bytes()),
                "SigningAlgorithm": "ECDSA_SHA_256",
            });
            (
                [("content-type", "application/x-amz-json-1.1")],
                answer.to_string(),
            )
                .into_response()
        }
        other => error(StatusCode::BAD_REQUEST, "UnknownOperationException", other),
    }
}

impl KmsStandIn {
    /// Serve on a free loopback port.
    pub async fn start() -> Result<Self, DevnetError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(DevnetError::Ports)?;
        let addr = listener.local_addr().map_err(DevnetError::Ports)?;
        let mode = Arc::new(AtomicU8::new(KmsMode::Serving as u8));
        let for_handler = mode.clone();
        let app = Router::new().fallback(move |headers: HeaderMap, body: String| {
            let mode = for_handler.clone();
            async move { handle(mode, headers, body).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, mode, task })
    }

    /// Its endpoint URL (`endpoint_url` of an `aws-kms` signer).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer from now on as `mode` says.
    pub fn set_mode(&self, mode: KmsMode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }
}
