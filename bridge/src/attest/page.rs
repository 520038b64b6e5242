//! The wire format of an operator's attested signatures, one format for both ways they are
//! served: an [`AttestationPage`] is what `GET /attestations/{lane}` answers and what an
//! attestation store holds per page object ([`page_path`], [`PAGE_NONCES`] nonces each).

use alloy::primitives::B256;
use serde::{Deserialize, Serialize};

use crate::store::attestations::OwnAttestation;

/// Most batches one HTTP answer carries.
pub const MAX_PAGE: usize = 256;

/// What the route answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationPage {
    /// The lane.
    pub lane: String,
    /// The operator whose signatures these are.
    pub operator: alloy::primitives::Address,
    /// Its signatures, by first nonce.
    pub attestations: Vec<OwnAttestation>,
}

/// Nonces per page object: 32 attested windows. A page holds at most one batch per nonce, so
/// at most this many signatures (~256 KiB of JSON when every batch is a single request).
pub const PAGE_NONCES: u64 = 1024;

/// Largest page object a reader takes (a page of single-request batches is ~256 KiB).
pub const MAX_PAGE_BYTES: u64 = 1024 * 1024;

/// The page `nonce` belongs to.
pub fn page_of(nonce: u64) -> u64 {
    nonce.checked_div(PAGE_NONCES).unwrap_or(0)
}

/// The object of page `page` of the lane service `service_id`, under the storage's prefix.
pub fn page_path(service_id: B256, page: u64) -> String {
    format!("attestations/{service_id:x}/{page:020}.json")
}

/// Whether a published location names an object store (not an HTTP API).
pub fn is_object_location(location: &str) -> bool {
    location.starts_with("file://") || location.starts_with("s3://")
}
