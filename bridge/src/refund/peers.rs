//! Other operators' refund signatures: fetched from the location each published for the lane in
//! the service registry — its HTTP API (`GET {location}/refunds/{lane}?from=N&limit=1`; a
//! location listing every replica is asked at each URL until one has it), or the object store of
//! an operator who does not expose HTTP (`voting.attestation_store`: one object per signed
//! refund beside its attestation pages, [`refund_object_path`]) — every answer bounded in size
//! and checked by recovering its signer: a peer's answer is never trusted as it comes.

use std::time::Duration;

use alloy::primitives::{Address, B256};
use futures::future::BoxFuture;
use multibridge_contracts::Lane;
use multibridge_contracts::attestation::recover_signer;

use super::{RefundPage, SignedRefund};
use crate::attest::collect::{PeerError, RegistryPeers};
use crate::attest::location::LocationPolicy;
use crate::attest::page::is_object_location;
use crate::storage::{Storage, StorageError};

/// Where an operator whose lane service is `service_id` publishes its signature of the refund
/// of `nonce` in its object store: under the `attestations/` prefix its readers may already
/// read.
pub fn refund_object_path(service_id: B256, nonce: u64) -> String {
    format!("attestations/{service_id:x}/refunds/{nonce:020}.json")
}

/// Publish `operator`'s `signature` of the refund of `lane`'s request `nonce` in `storage`.
pub async fn publish_refund(
    storage: &Storage,
    service_id: B256,
    lane: Lane,
    operator: Address,
    nonce: u64,
    signature: &[u8; 65],
) -> Result<(), StorageError> {
    let page = RefundPage {
        lane: lane.as_str().to_owned(),
        operator,
        refunds: vec![SignedRefund {
            nonce,
            signature: signature.to_vec().into(),
        }],
    };
    let bytes = serde_json::to_vec(&page).unwrap_or_default();
    storage
        .put(
            &refund_object_path(service_id, nonce),
            "refund-signature",
            &operator.to_string(),
            bytes,
        )
        .await
        .map(|_| ())
}

/// `operator`'s published signature of the refund of `nonce` in the object store at
/// `location`, checked against `digest` (`None`: not published).
pub async fn read_refund(
    location: &str,
    timeout: Duration,
    service_id: B256,
    lane: Lane,
    operator: Address,
    nonce: u64,
    digest: B256,
) -> Result<Option<[u8; 65]>, PeerError> {
    let storage = Storage::open_public(location, timeout)
        .map_err(|e| PeerError::Unreachable(e.to_string()))?;
    let path = refund_object_path(service_id, nonce);
    let bytes = match storage
        .get_bounded(&path, u64::try_from(MAX_ANSWER_BYTES).unwrap_or(u64::MAX))
        .await
    {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(StorageError::TooLarge { size, .. }) => {
            return Err(PeerError::Garbage(format!("{path} has {size} bytes")));
        }
        Err(e) => return Err(PeerError::Unreachable(e.to_string())),
    };
    let page: RefundPage =
        serde_json::from_slice(&bytes).map_err(|e| PeerError::Garbage(e.to_string()))?;
    checked(&page, lane, operator, nonce, digest)
}

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
    domain: multibridge_contracts::VoteDomain,
    timeout: Duration,
}

impl RegistryRefundPeers {
    /// Peers located through `peers`, fetched with a client that follows `policy`, each request
    /// bounded by `timeout`.
    pub fn new(
        peers: RegistryPeers,
        domain: multibridge_contracts::VoteDomain,
        timeout: Duration,
        policy: LocationPolicy,
    ) -> Self {
        Self {
            peers,
            http: policy.http_client(timeout),
            domain,
            timeout,
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
        if is_object_location(&location) {
            let service_id =
                multibridge_contracts::LaneServiceMeta::of(&self.domain, operator).service_id();
            return read_refund(
                &location,
                self.timeout,
                service_id,
                lane,
                operator,
                nonce,
                digest,
            )
            .await;
        }
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
    checked(&page, lane, operator, nonce, digest)
}

/// `operator`'s signature of `nonce` in `page`, if it is there and is `operator`'s over `digest`.
fn checked(
    page: &RefundPage,
    lane: Lane,
    operator: Address,
    nonce: u64,
    digest: B256,
) -> Result<Option<[u8; 65]>, PeerError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::SignerSync as _;
    use alloy::signers::local::PrivateKeySigner;
    use multibridge_contracts::attestation::canonical_bytes;

    /// An operator without HTTP publishes its refund signature in its object store; a reader
    /// of its public location finds it, checks it, and refuses another operator's or another
    /// digest's.
    #[tokio::test]
    async fn a_refund_signature_published_in_an_object_store_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let settings = multibridge_config::StorageSettings::Local {
            path: dir.path().to_owned(),
        };
        let storage = Storage::open(&settings).unwrap();
        let location = crate::storage::public_location(&settings);
        let signer = PrivateKeySigner::random();
        let operator = signer.address();
        let digest = B256::repeat_byte(7);
        let signature = canonical_bytes(&signer.sign_hash_sync(&digest).unwrap());
        let service = B256::repeat_byte(3);
        let lane = Lane::MainToService;
        let timeout = Duration::from_secs(5);
        assert_eq!(
            read_refund(&location, timeout, service, lane, operator, 4, digest)
                .await
                .unwrap(),
            None,
            "nothing published yet"
        );
        publish_refund(&storage, service, lane, operator, 4, &signature)
            .await
            .unwrap();
        assert_eq!(
            read_refund(&location, timeout, service, lane, operator, 4, digest)
                .await
                .unwrap(),
            Some(signature)
        );
        assert!(matches!(
            read_refund(
                &location,
                timeout,
                service,
                lane,
                operator,
                4,
                B256::repeat_byte(8)
            )
            .await,
            Err(PeerError::Garbage(_))
        ));
        let other = PrivateKeySigner::random().address();
        assert!(matches!(
            read_refund(&location, timeout, service, lane, other, 4, digest).await,
            Err(PeerError::Garbage(_))
        ));
        assert_eq!(
            read_refund(&location, timeout, service, lane, operator, 5, digest)
                .await
                .unwrap(),
            None
        );
        assert!(refund_object_path(service, 4).starts_with("attestations/"));
    }
}
