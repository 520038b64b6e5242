//! The `[voting]` section: how votes are batched and sent (per lane). Its runtime forms are the
//! voter's and the sender's own types, built where they live.

use serde::{Deserialize, Serialize};

use crate::Problem;

/// How a lane's transfers reach the threshold on the destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VotingMode {
    /// Every operator votes in a transaction of its own (`handleValueTransfers`); the
    /// threshold-th vote executes. The default, and the design of the service-chain bridge.
    #[default]
    Votes,
    /// Operators sign each batch (EIP-712) and serve their signatures; one transaction carrying
    /// a threshold of them executes it (`executeAttested`): about half the gas per transfer.
    Attestations,
}

impl VotingMode {
    /// The name in the config and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Votes => "votes",
            Self::Attestations => "attestations",
        }
    }
}

/// Batching and sending of votes (per lane).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VotingSettings {
    /// Most requests in one vote transaction (1–64; the bridge takes at most 64). Default 32:
    /// a block is packed by gas limits, so the last few percent of every block stay empty when
    /// the next vote's limit does not fit; batches of 32 (limit ~1.6M gas on a 30M block) fill
    /// blocks 93–98 % during a backlog where batches of 64 (~2.8M) filled 86–91 %, for ~1k gas
    /// more per transfer (docs/benchmarks.md).
    pub batch_size: usize,
    /// How long an idle voter waits before it looks at the store again, ms; it looks at once
    /// when its indexer stores new requests.
    pub batch_wait_ms: u64,
    /// Pause before retrying a request the destination cannot execute yet, seconds.
    pub retry_after_secs: u64,
    /// Most vote transactions of one lane unmined at once. More only queue in the mempool,
    /// where a rising base fee strands them; fewer leave block space unused.
    pub max_in_flight: usize,
    /// Most `executeAttested` transactions of one attested lane unmined at once (in place of
    /// `max_in_flight`, which bounds vote transactions). An operator sends only the batches
    /// whose turn is its own, so at the end of a backlog the last batches are often one
    /// operator's: with 24 in flight it filled about three quarters of each block alone
    /// (a 30M block holds about 33 batches of 32 native transfers); 64 is two blocks' worth.
    pub attested_max_in_flight: usize,
    /// A vote transaction unmined this long is re-sent with higher fees, seconds.
    pub stuck_after_secs: u64,
    /// Percent added to a vote's gas estimate. The estimate already covers both paths a vote
    /// can take when mined (recording, or executing after other operators' votes landed first);
    /// the margin covers what changes in between. A block holds transactions by their gas
    /// limits, so a large margin leaves block space unused.
    pub gas_margin_percent: u64,
    /// For each request the first `threshold` operators (a ranking every operator computes
    /// alike) vote at once; the others vote only if it is still open this many seconds after
    /// they stored it. Votes arriving after the threshold cost gas and block space for nothing;
    /// this keeps them from being sent, at the price of this delay for the requests a down
    /// operator was first for. 0: every operator votes at once.
    pub standby_after_secs: u64,
    /// How transfers reach the threshold: `votes` (default) or `attestations`, for every lane
    /// unless `lane_modes` names the lane.
    pub mode: VotingMode,
    /// The mode of single lanes (`main-to-service`, `service-to-main`), over `mode`.
    pub lane_modes: std::collections::BTreeMap<String, VotingMode>,
    /// Attested batches: how long to wait for a peer operator's HTTP API, ms.
    pub peer_timeout_ms: u64,
    /// Attested batches through an object store, for an operator who does not expose HTTP: the
    /// lane leader also writes its signatures to this storage (a local directory or an S3
    /// bucket whose `attestations/` prefix the other operators may read without credentials),
    /// and the registry publishes the storage (`file://…` or `s3://…`) as the location of the
    /// operator's attested lane services instead of the HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_store: Option<crate::StorageSettings>,
    /// Peers' attestation stores in a local directory (`file://…`) this relay may read when
    /// the registry names them as a peer's location (a shared mount). A `file://` location the
    /// registry names and this list does not is refused (audit A3-L4): a registry entry must not
    /// point the relay at its own disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_stores: Vec<String>,
}

impl Default for VotingSettings {
    fn default() -> Self {
        Self {
            batch_size: 32,
            batch_wait_ms: 200,
            retry_after_secs: 5,
            max_in_flight: 24,
            attested_max_in_flight: 64,
            stuck_after_secs: 15,
            gas_margin_percent: 5,
            standby_after_secs: 5,
            mode: VotingMode::Votes,
            lane_modes: Default::default(),
            peer_timeout_ms: 2_000,
            attestation_store: None,
            peer_stores: Vec::new(),
        }
    }
}

impl VotingSettings {
    /// The first problem with the section.
    pub fn problem(&self) -> Option<Problem> {
        if !(1..=64).contains(&self.batch_size) {
            return Some((
                "voting.batch_size",
                format!(
                    "{} is outside 1..=64 (the bridge takes at most 64)",
                    self.batch_size
                ),
            ));
        }
        if self.max_in_flight == 0 {
            return Some(("voting.max_in_flight", "must be at least 1".into()));
        }
        if self.attested_max_in_flight == 0 {
            return Some(("voting.attested_max_in_flight", "must be at least 1".into()));
        }
        if self.stuck_after_secs == 0 || self.retry_after_secs == 0 {
            return Some((
                "voting",
                "stuck_after_secs and retry_after_secs must be at least 1".into(),
            ));
        }
        if let Some(lane) = self
            .lane_modes
            .keys()
            .find(|l| l.parse::<multibridge_contracts::Lane>().is_err())
        {
            return Some((
                "voting.lane_modes",
                format!("{lane:?} is not a lane (main-to-service or service-to-main)"),
            ));
        }
        if self.peer_timeout_ms == 0 {
            return Some(("voting.peer_timeout_ms", "must be at least 1".into()));
        }
        if let Some(store) = self.peer_stores.iter().find(|s| !s.starts_with("file:///")) {
            return Some((
                "voting.peer_stores",
                format!("{store:?} is not a file:///absolute/path location"),
            ));
        }
        if let Some(crate::StorageSettings::Local { path }) = &self.attestation_store
            && !path.is_absolute()
        {
            return Some((
                "voting.attestation_store.path",
                format!(
                    "{} is relative: the other operators read it as a file:// location, which names an absolute directory",
                    path.display()
                ),
            ));
        }
        None
    }

    /// The mode of `lane`.
    pub fn mode_of(&self, lane: multibridge_contracts::Lane) -> VotingMode {
        self.lane_modes
            .get(lane.as_str())
            .copied()
            .unwrap_or(self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attestation_store_parses_and_a_relative_directory_is_refused() {
        let parsed: VotingSettings = toml::from_str(
            r#"
            mode = "attestations"
            attestation_store = { kind = "s3", bucket = "op1-signatures", region = "eu-west-1" }
            "#,
        )
        .expect("parses");
        assert!(matches!(
            parsed.attestation_store,
            Some(crate::StorageSettings::S3 { ref bucket, .. }) if bucket == "op1-signatures"
        ));
        assert_eq!(parsed.problem(), None);
        let relative: VotingSettings =
            toml::from_str(r#"attestation_store = { kind = "local", path = "sigs" }"#)
                .expect("parses");
        let (key, why) = relative
            .problem()
            .expect("a relative directory is a problem");
        assert_eq!(key, "voting.attestation_store.path");
        assert!(why.contains("absolute"), "{why}");
    }

    #[test]
    fn each_room_has_its_default_and_neither_may_be_zero() {
        let parsed: VotingSettings = toml::from_str("max_in_flight = 8").expect("parses");
        assert_eq!(
            (parsed.max_in_flight, parsed.attested_max_in_flight),
            (8, 64)
        );
        for (text, key) in [
            ("max_in_flight = 0", "voting.max_in_flight"),
            (
                "attested_max_in_flight = 0",
                "voting.attested_max_in_flight",
            ),
        ] {
            let parsed: VotingSettings = toml::from_str(text).expect("parses");
            assert_eq!(parsed.problem().map(|(k, _)| k), Some(key), "{text}");
        }
    }
}
