//! Where the other operators' signatures come from: the location each operator publishes for
//! its lane service in the service registry — the URL of the replica that leads the lane, asked
//! over HTTP, or an object store read without credentials ([`PageReader`]), checked against
//! the [`LocationPolicy`] first. Every answer is checked by the caller (each signature must
//! recover to that operator over the digest this relay computed) before it counts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use futures::future::BoxFuture;
use multibridge_contracts::{Lane, LaneServiceMeta, VoteDomain};

use std::sync::Arc;

use super::location::{LocationPolicy, Refused};
use super::page::{
    AttestationPage, MAX_PAGE, MAX_PAGE_BYTES, is_object_location, page_of, page_path,
};
use crate::chain::ChainClient;
use crate::storage::{Storage, StorageError};
use crate::store::attestations::OwnAttestation;

/// How long a location read from the registry is used.
const LOCATION_FRESH_FOR: Duration = Duration::from_secs(15);

/// How long a location is used after it answered with nothing this relay needs (issue 52): an
/// operator whose lane moved to another replica publishes the new location within a second,
/// while its old replica keeps answering with what it signed before; read the registry again
/// this soon rather than fetch from the old place for the rest of [`LOCATION_FRESH_FOR`].
const LOCATION_RECHECK_AFTER_NOTHING: Duration = Duration::from_secs(1);

/// The locations read from the registry, per operator, each with the time it is used until.
#[derive(Default)]
struct LocationCache(HashMap<Address, (Checked, Instant)>);

impl LocationCache {
    /// `operator`'s location if it is still used at `now`.
    fn get(&self, operator: Address, now: Instant) -> Option<&Checked> {
        self.0
            .get(&operator)
            .filter(|(_, until)| now < *until)
            .map(|(checked, _)| checked)
    }

    /// `operator`'s location as read at `now`.
    fn put(&mut self, operator: Address, checked: Checked, now: Instant) {
        let until = now.checked_add(LOCATION_FRESH_FOR).unwrap_or(now);
        self.0.insert(operator, (checked, until));
    }

    /// `operator`'s location answered with nothing needed at `now`: read it again soon.
    fn recheck_soon(&mut self, operator: Address, now: Instant) {
        if let Some((_, until)) = self.0.get_mut(&operator) {
            let soon = now
                .checked_add(LOCATION_RECHECK_AFTER_NOTHING)
                .unwrap_or(now);
            *until = (*until).min(soon);
        }
    }

    /// `operator`'s location failed: read it again at the next use.
    fn forget(&mut self, operator: Address) {
        self.0.remove(&operator);
    }
}

/// Why a peer's signatures could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The operator published no location for the lane's service.
    #[error("no location registered for the operator's lane service")]
    Unlocated,
    /// The location did not answer (or the registry could not be read).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The answer was not a page of attestations of that operator.
    #[error("garbage: {0}")]
    Garbage(String),
    /// The published location is not one this relay fetches (audit A3-L4).
    #[error("refused location: {0}")]
    Refused(String),
}

impl PeerError {
    /// The `outcome` label of the fetch metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unlocated => "unlocated",
            Self::Unreachable(_) => "unreachable",
            Self::Garbage(_) => "garbage",
            Self::Refused(_) => "refused",
        }
    }
}

/// A source of other operators' signatures.
pub trait PeerSource: Send + Sync {
    /// `operator`'s signatures of `lane`'s batches ending above `from`.
    fn fetch(
        &self,
        lane: Lane,
        operator: Address,
        from: u64,
    ) -> BoxFuture<'_, Result<Vec<OwnAttestation>, PeerError>>;
}

/// A location as the registry published it, checked: none registered, accepted, or refused (why).
type Checked = Option<Result<String, String>>;

/// Peers found through the service registry on the main chain.
pub struct RegistryPeers {
    main: std::sync::Arc<ChainClient>,
    registry: Address,
    lane: Lane,
    domain: VoteDomain,
    http: reqwest::Client,
    policy: LocationPolicy,
    /// Per operator its location as last read, and until when it is used (`None`: none
    /// registered; `Err`: one refused, and why).
    locations: Mutex<LocationCache>,
    /// Readers of the object-store locations met so far, by location.
    readers: Mutex<HashMap<String, Arc<PageReader>>>,
    timeout: Duration,
}

impl RegistryPeers {
    /// Peers of `lane` (bound to `domain`), located through `registry` on `main`, fetched where
    /// `policy` allows; each HTTP request bounded by `timeout`.
    pub fn new(
        main: std::sync::Arc<ChainClient>,
        registry: Address,
        lane: Lane,
        domain: VoteDomain,
        timeout: Duration,
        policy: LocationPolicy,
    ) -> Self {
        let http = policy.http_client(timeout);
        Self {
            main,
            registry,
            lane,
            domain,
            http,
            policy,
            locations: Mutex::new(LocationCache::default()),
            readers: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    /// The registry id of `operator`'s service of this lane.
    fn service_id(&self, operator: Address) -> alloy::primitives::B256 {
        LaneServiceMeta::of(&self.domain, operator).service_id()
    }

    /// Where `operator` serves the lane (read from the registry and checked against the
    /// [`LocationPolicy`], kept [`LOCATION_FRESH_FOR`]).
    pub async fn location(&self, operator: Address) -> Result<String, PeerError> {
        let known = |location: &Checked| match location {
            None => Err(PeerError::Unlocated),
            Some(Ok(location)) => Ok(location.clone()),
            Some(Err(why)) => Err(PeerError::Refused(why.clone())),
        };
        if let Some(location) = self
            .locations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(operator, Instant::now())
        {
            return known(location);
        }
        let location = crate::registry::registered_location(
            &self.main,
            self.registry,
            self.service_id(operator),
        )
        .await
        .map_err(|e| PeerError::Unreachable(format!("registry: {e}")))?
        .filter(|l| !l.is_empty());
        let checked = match location {
            None => None,
            Some(location) => Some(match self.policy.check(&location).await {
                Ok(()) => Ok(location),
                Err(Refused::Refused(why)) => {
                    tracing::warn!(lane = %self.lane, %operator, %why, "a peer operator's published location is refused");
                    Err(why)
                }
                Err(Refused::Unresolved(why)) => return Err(PeerError::Unreachable(why)),
            }),
        };
        self.locations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(operator, checked.clone(), Instant::now());
        known(&checked)
    }

    fn forget(&self, operator: Address) {
        self.locations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(operator);
    }

    /// `operator` answered, with nothing above what this relay has: see [`LocationCache::recheck_soon`].
    fn answered_nothing(&self, operator: Address) {
        self.locations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recheck_soon(operator, Instant::now());
    }

    async fn fetch_page(
        &self,
        lane: Lane,
        operator: Address,
        from: u64,
    ) -> Result<Vec<OwnAttestation>, PeerError> {
        if lane != self.lane {
            return Err(PeerError::Unreachable(format!(
                "lane {lane} not served here"
            )));
        }
        let base = self.location(operator).await?;
        let found = if is_object_location(&base) {
            self.read_pages(&base, lane, operator, from).await?
        } else if base.split_whitespace().nth(1).is_some() {
            self.fetch_any(&base, lane, operator, from).await?
        } else {
            let found = self.fetch_http(&base, lane, operator, from).await;
            if let Err(PeerError::Unreachable(_)) = &found {
                // The leader may have moved: read the location again next time.
                self.forget(operator);
            }
            found?
        };
        if !reaches_above(&found, from) {
            self.answered_nothing(operator);
        }
        Ok(found)
    }

    /// `operator`'s signatures above `from` from whichever of the URLs of `location` (its
    /// replicas, every one signing) answers first with some: all are asked at once, so a dead
    /// or cut-off replica costs nothing while another answers. An answer with nothing new from
    /// one waits for the others; garbage from one is reported only if none answers well.
    async fn fetch_any(
        &self,
        location: &str,
        lane: Lane,
        operator: Address,
        from: u64,
    ) -> Result<Vec<OwnAttestation>, PeerError> {
        use futures::StreamExt as _;
        let mut asks: futures::stream::FuturesUnordered<_> = location
            .split_whitespace()
            .map(|base| self.fetch_http(base, lane, operator, from))
            .collect();
        let mut answered: Option<Vec<OwnAttestation>> = None;
        let mut failed = None;
        while let Some(result) = asks.next().await {
            match result {
                Ok(found) if reaches_above(&found, from) => return Ok(found),
                Ok(found) => {
                    answered.get_or_insert(found);
                }
                // Garbage outranks unreachable: it is what the metrics and back-off must see.
                Err(e @ PeerError::Garbage(_)) => failed = Some(e),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match (answered, failed) {
            (Some(found), _) => Ok(found),
            (None, Some(e)) => Err(e),
            (None, None) => Err(PeerError::Unlocated),
        }
    }

    /// `operator`'s signatures above `from` from its HTTP API at `base`.
    async fn fetch_http(
        &self,
        base: &str,
        lane: Lane,
        operator: Address,
        from: u64,
    ) -> Result<Vec<OwnAttestation>, PeerError> {
        // A full page: one fetch per peer per step, so its size bounds how fast batches
        // complete — 64 batches (2,048 requests at 32 a batch) per step capped a 5 of 7 drain
        // at about 700 transfers/s against a capacity of 1,000.
        let url = format!(
            "{}/attestations/{}?from={from}&limit={MAX_PAGE}",
            base.trim_end_matches('/'),
            lane.as_str()
        );
        let answer = match self.http.get(&url).send().await {
            Ok(answer) => answer,
            Err(e) => {
                return Err(PeerError::Unreachable(
                    multibridge_monitoring::redact::redact_urls(&e.to_string()).into_owned(),
                ));
            }
        };
        if !answer.status().is_success() {
            return Err(PeerError::Unreachable(format!("HTTP {}", answer.status())));
        }
        // A peer shapes its answer: read at most what a full page can need, not what it sends.
        let mut body = Vec::new();
        let mut answer = answer;
        while let Some(chunk) = answer.chunk().await.map_err(|e| {
            PeerError::Unreachable(
                multibridge_monitoring::redact::redact_urls(&e.to_string()).into_owned(),
            )
        })? {
            if body.len().saturating_add(chunk.len()) > MAX_ANSWER_BYTES {
                return Err(PeerError::Garbage(format!(
                    "an answer over {MAX_ANSWER_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let page: AttestationPage =
            serde_json::from_slice(&body).map_err(|e| PeerError::Garbage(e.to_string()))?;
        if page.operator != operator || page.lane != lane.as_str() {
            return Err(PeerError::Garbage(format!(
                "a page of {} for {}",
                page.operator, page.lane
            )));
        }
        Ok(page.attestations)
    }

    /// `operator`'s signatures of batches ending above `from`, from the object store at
    /// `location`: the page of `from` and the [`PAGES_PER_FETCH`]` - 1` after it, read at once
    /// (a page is 1,024 nonces; one fetch per peer per step is what a step collects).
    async fn read_pages(
        &self,
        location: &str,
        lane: Lane,
        operator: Address,
        from: u64,
    ) -> Result<Vec<OwnAttestation>, PeerError> {
        let cached = self
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(location)
            .cloned();
        let reader = match cached {
            Some(reader) => reader,
            None => {
                let reader = Arc::new(PageReader::open(location, self.timeout)?);
                self.readers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(location.to_owned(), reader.clone());
                reader
            }
        };
        let service = self.service_id(operator);
        let first = page_of(from);
        let pages = futures::future::join_all(
            (0..PAGES_PER_FETCH).map(|i| reader.page(service, first.saturating_add(i))),
        )
        .await;
        let (mut above, mut failed) = (Vec::new(), None);
        for read in pages {
            // A page missing (not written yet) or unreadable while another was read: the
            // signatures found count; none found and one failed: the failure.
            let read = match read {
                Ok(Some(read)) => read,
                Ok(None) => continue,
                Err(e) => {
                    failed.get_or_insert(e);
                    continue;
                }
            };
            if read.operator != operator || read.lane != lane.as_str() {
                return Err(PeerError::Garbage(format!(
                    "a page of {} for {}",
                    read.operator, read.lane
                )));
            }
            above.extend(
                read.attestations
                    .into_iter()
                    .filter(|a| a.first_nonce.saturating_add(a.count) > from),
            );
        }
        match failed {
            Some(e) if above.is_empty() => Err(e),
            _ => Ok(above),
        }
    }
}

/// Whether `found` holds a signature of a batch ending above nonce `from` (something a fetch
/// from `from` did not have).
fn reaches_above(found: &[OwnAttestation], from: u64) -> bool {
    found
        .iter()
        .any(|a| a.first_nonce.saturating_add(a.count) > from)
}

/// The most an HTTP answer of a peer is read: a full page of [`MAX_PAGE`] signatures is about
/// 70 KiB of JSON.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Object-store pages one fetch reads (4,096 nonces: 128 batches of 32).
const PAGES_PER_FETCH: u64 = 4;

impl PeerSource for RegistryPeers {
    fn fetch(
        &self,
        lane: Lane,
        operator: Address,
        from: u64,
    ) -> BoxFuture<'_, Result<Vec<OwnAttestation>, PeerError>> {
        Box::pin(self.fetch_page(lane, operator, from))
    }
}

/// A read-only view of another operator's signature pages.
pub struct PageReader {
    storage: Storage,
}

impl PageReader {
    /// The reader of `location` (a [`public_location`](crate::storage::public_location)); requests bounded by `timeout`.
    pub fn open(location: &str, timeout: Duration) -> Result<Self, PeerError> {
        Storage::open_public(location, timeout)
            .map(|storage| Self { storage })
            .map_err(|e| PeerError::Unreachable(e.to_string()))
    }

    /// Page `page` of `service_id` (`None`: not written, nothing signed there yet).
    pub async fn page(
        &self,
        service_id: B256,
        page: u64,
    ) -> Result<Option<AttestationPage>, PeerError> {
        let path = page_path(service_id, page);
        let bytes = match self.storage.get_bounded(&path, MAX_PAGE_BYTES).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(StorageError::TooLarge { size, .. }) => {
                return Err(PeerError::Garbage(format!(
                    "page {path} has {size} bytes, more than the {MAX_PAGE_BYTES} a page can need"
                )));
            }
            Err(e) => return Err(PeerError::Unreachable(e.to_string())),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PeerError::Garbage(format!("page {path}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::public_location;
    use multibridge_config::StorageSettings;

    /// A location is used for 15 s, unless it answers with nothing needed: then it is read
    /// again from the registry after 1 s (an operator's lane moved to another replica); a
    /// failure forgets it at once. Never extended by an answer with nothing.
    #[test]
    fn a_location_that_answers_nothing_is_read_again_within_a_second() {
        let op = Address::repeat_byte(1);
        let t0 = Instant::now();
        let at = |secs: f64| t0 + Duration::from_secs_f64(secs);
        let mut cache = LocationCache::default();
        cache.put(op, Some(Ok("http://a".into())), t0);
        assert!(cache.get(op, at(14.9)).is_some());
        assert!(cache.get(op, at(15.0)).is_none());
        cache.recheck_soon(op, at(2.0));
        assert!(cache.get(op, at(2.9)).is_some());
        assert!(cache.get(op, at(3.0)).is_none());
        // A second answer with nothing later does not push the re-read out.
        cache.recheck_soon(op, at(2.5));
        assert!(cache.get(op, at(3.0)).is_none());
        cache.put(op, Some(Ok("http://b".into())), at(3.0));
        assert_eq!(
            cache.get(op, at(10.0)),
            Some(&Some(Ok("http://b".to_owned())))
        );
        cache.forget(op);
        assert!(cache.get(op, at(3.1)).is_none());
        // Nothing cached: nothing to shorten.
        cache.recheck_soon(op, at(4.0));
        assert!(cache.get(op, at(4.0)).is_none());
    }

    #[test]
    fn locations_name_what_a_reader_needs_and_no_secret() {
        assert_eq!(
            public_location(&StorageSettings::Local {
                path: "/var/lib/multibridge/sigs".into()
            }),
            "file:///var/lib/multibridge/sigs"
        );
        let s3 = public_location(&StorageSettings::S3 {
            bucket: "sigs".into(),
            endpoint: Some("http://user:secret@127.0.0.1:9000".into()),
            region: "eu-west-1".into(),
            prefix: "/op1/".into(),
            access_key_id_env: "AWS_ACCESS_KEY_ID".into(),
            secret_access_key_env: "AWS_SECRET_ACCESS_KEY".into(),
            allow_http: true,
        });
        assert!(
            s3.starts_with("s3://sigs/op1?region=eu-west-1&endpoint=http://"),
            "{s3}"
        );
        assert!(s3.ends_with("&allow_http=true"), "{s3}");
        assert!(
            !s3.contains("secret"),
            "credentials in a published location: {s3}"
        );
        assert!(is_object_location(&s3));
        assert!(!is_object_location("http://127.0.0.1:9465"));
        assert!(PageReader::open("s3://?region=x", Duration::from_secs(1)).is_err());
        assert!(PageReader::open("s3://b/p?color=red", Duration::from_secs(1)).is_err());
        assert!(PageReader::open(&s3, Duration::from_secs(1)).is_ok());
        assert_eq!(page_of(1023), 0);
        assert_eq!(page_of(1024), 1);
    }
}
