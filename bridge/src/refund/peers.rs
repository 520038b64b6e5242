//! Other operators' refund signatures: fetched from the location each published for the lane in
//! the service registry (`GET {location}/refunds/{lane}?from=N&limit=1`; a location listing
//! every replica is asked at each URL until one has it), every answer bounded in size and
//! checked by recovering its signer — a peer's answer is never trusted as it comes.

use std::time::Duration;

use alloy::primitives::{Address, B256};
use futures::future::BoxFuture;
use multibridge_contracts::Lane;
use multibridge_contracts::attestation::recover_signer;

use super::RefundPage;
use crate::attest::collect::{PeerError, RegistryPeers};
use crate::attest::location::LocationPolicy;

/// Largest answer read from a peer (a page of one signature is ~250 bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A source of other operators' refund signatures.
pub trait RefundPeers: Send + Sync {
    /// `operator`'s signature of the refund of `lane`'s request `nonce` over `digest`, checked
    /// (`None`: it has none yet).
    fn signature(
        &self,
        lane: Lane,
        operator: Address,
        nonce: u64,
        digest: B256,
    ) -> BoxFuture<'_, Result<Option<[u8; 65]>, PeerError>>;
}

/// Peers found through the registry.
pub struct RegistryRefundPeers {
    peers: RegistryPeers,
    http: reqwest::Client,
}

impl RegistryRefundPeers {
    /// Peers located through `peers`, fetched with a client that follows `policy`, each request
    /// bounded by `timeout`.
    pub fn new(peers: RegistryPeers, timeout: Duration, policy: LocationPolicy) -> Self {
        Self {
            peers,
            http: policy.http_client(timeout),
        }
    }

    async fn fetch(
        &self,
        lane: Lane,
        operator: Address,
        nonce: u64,
        digest: B256,
    ) -> Result<Option<[u8; 65]>, PeerError> {
        let location = self.peers.location(operator).await?;
        let mut failed = None;
        for base in location
            .split_whitespace()
            .filter(|b| b.starts_with("http://") || b.starts_with("https://"))
        {
            match fetch_one(&self.http, base, lane, operator, nonce, digest).await {
                Ok(Some(signature)) => return Ok(Some(signature)),
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }
}

impl RefundPeers for RegistryRefundPeers {
    fn signature(
        &self,
        lane: Lane,
        operator: Address,
        nonce: u64,
        digest: B256,
    ) -> BoxFuture<'_, Result<Option<[u8; 65]>, PeerError>> {
        Box::pin(self.fetch(lane, operator, nonce, digest))
    }
}

/// `operator`'s refund signature of `nonce` from its HTTP API at `base`, checked against
/// `digest`.
pub async fn fetch_one(
    http: &reqwest::Client,
    base: &str,
    lane: Lane,
    operator: Address,
    nonce: u64,
    digest: B256,
) -> Result<Option<[u8; 65]>, PeerError> {
    let url = format!(
        "{}/refunds/{}?from={nonce}&limit=1",
        base.trim_end_matches('/'),
        lane.as_str()
    );
    let unreachable = |e: &dyn std::fmt::Display| {
        PeerError::Unreachable(
            multibridge_monitoring::redact::redact_urls(&e.to_string()).into_owned(),
        )
    };
    let mut answer = http.get(&url).send().await.map_err(|e| unreachable(&e))?;
    if !answer.status().is_success() {
        return Err(PeerError::Unreachable(format!("HTTP {}", answer.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| unreachable(&e))? {
        if body.len().saturating_add(chunk.len()) > MAX_ANSWER_BYTES {
            return Err(PeerError::Garbage(format!(
                "an answer over {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let page: RefundPage =
        serde_json::from_slice(&body).map_err(|e| PeerError::Garbage(e.to_string()))?;
    if page.operator != operator || page.lane != lane.as_str() {
        return Err(PeerError::Garbage(format!(
            "a page of {} for {}",
            page.operator, page.lane
        )));
    }
    let Some(signed) = page.refunds.iter().find(|r| r.nonce == nonce) else {
        return Ok(None);
    };
    let Ok(bytes) = <[u8; 65]>::try_from(signed.signature.as_ref()) else {
        return Err(PeerError::Garbage("a signature not 65 bytes long".into()));
    };
    if recover_signer(&digest, &bytes) != Some(operator) {
        return Err(PeerError::Garbage(format!(
            "a refund signature of nonce {nonce} not by {operator}"
        )));
    }
    Ok(Some(bytes))
}
