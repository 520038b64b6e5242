//! The tasks of one lane on one replica: the indexer (always, so a follower stays warm), and —
//! while this replica leads the lane — the voter, the recovery worker and the upkeep (lower-nonce
//! advance, queued releases); with etcd also the lane's campaign and progress record. [`spawn`]
//! starts them all on the relay's task set.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::Address;
use multibridge_contracts::Lane;
use multibridge_monitoring::{Metrics, Readiness};
use multibridge_recovery::Recovery;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::chain::ChainPair;
use crate::chain::fence::Fence;
use crate::chain::logs::LogSpan;
use crate::chain::submitter::{JobEvent, SubmitClient, SubmitterHandle};
use crate::config::Config;
use crate::leadership::campaign::{Campaign, HeldLease, LeaderInfo, LeaseMemory};
use crate::leadership::etcd_pool::EtcdPool;
use crate::leadership::health::ServeHealth;
use crate::leadership::layout::leader_key;
use crate::leadership::progress::Progress;
use crate::store::SharedStore;
use crate::task::run_stepper;
use crate::voter::{BridgeReads, Voter};

pub mod advance;
pub mod indexing;
pub mod recovery;
pub mod releases;
pub mod settings;
pub mod upkeep;
pub mod voting;

pub use settings::{LaneSettings, vote_domain};

use indexing::{Indexer, IndexerSettings};
use recovery::{ChainLane, LaneRecovery, StoreQueue};
use voting::LaneVoting;

/// Whether this replica may act on a lane: its fence (checked before every broadcast), the
/// watch of its leadership and the lease its campaign holds.
pub struct LaneControl {
    /// The lane.
    pub lane: Lane,
    /// Checked immediately before every broadcast for the lane.
    pub fence: Fence,
    /// Set by the campaign (always `true` standalone).
    pub leading_tx: watch::Sender<bool>,
    /// What the lane's tasks watch.
    pub leading: watch::Receiver<bool>,
    /// The campaign's lease (revoked when the replica stops).
    pub held: HeldLease,
    /// Whether this lane runs the campaign behind its control (`false`: it follows the
    /// election of another pair's lane that writes to the same chain with the same key).
    pub campaigns: bool,
}

impl LaneControl {
    /// The control of `lane`: leased under etcd, always open standalone.
    pub fn new(lane: Lane, leased: bool) -> Self {
        let (leading_tx, leading) = watch::channel(!leased);
        Self {
            lane,
            fence: if leased {
                Fence::leased_with_heartbeats()
            } else {
                Fence::standalone()
            },
            leading_tx,
            leading,
            held: HeldLease::default(),
            campaigns: true,
        }
    }

    /// The control of `lane` when another pair's lane `leader` writes to the same chain with
    /// the same key (`[[pairs]]`): one election rules both, since two replicas sending with one
    /// key on one chain would race for its nonces. `lane` runs no campaign of its own.
    pub fn follow(lane: Lane, leader: &LaneControl) -> Self {
        Self {
            lane,
            fence: leader.fence.clone(),
            leading_tx: leader.leading_tx.clone(),
            leading: leader.leading.clone(),
            held: leader.held.clone(),
            campaigns: false,
        }
    }
}

/// What every lane of a replica shares.
pub struct Shared {
    /// The config, for the replica-wide tasks (backup, registry, guardian, dashboard, watcher);
    /// a lane's tasks read their [`LaneSettings`] instead.
    pub config: Config,
    /// The operator.
    pub operator: Address,
    /// Both chains.
    pub chains: ChainPair,
    /// The store.
    pub store: SharedStore,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness.
    pub readiness: Arc<Readiness>,
    /// etcd (absent: standalone).
    pub etcd: Option<Arc<EtcdPool>>,
    /// The campaigns' own connections to etcd, used only on the leadership runtime
    /// ([`crate::leadership::runtime`]; absent: standalone).
    pub campaign_etcd: Option<Arc<EtcdPool>>,
    /// This replica's name.
    pub replica: String,
    /// This replica's advertised URL.
    pub own_url: String,
    /// The operator's signer (every submitter signs with it; the voters probe it while it
    /// fails).
    pub signer: crate::chain::signer::OperatorSigner,
    /// The place this process holds the store from (`None`: campaigns never resume a term).
    pub store_holder: Option<String>,
    /// Whether the operator's signer fails (one for every lane).
    pub signer_health: crate::leadership::health::SignerHealth,
    /// `/status`.
    pub board: Arc<multibridge_monitoring::StatusBoard>,
    /// Where the lane leaders also write their signatures (`voting.attestation_store`).
    pub attestation_store: Option<crate::storage::Storage>,
    /// Where the tasks every pair of the process shares run (the election of a chain).
    pub shared_tasks: crate::task::SharedTasks,
    /// Whether the process serves several pairs: a chain's election then rules every pair's
    /// lanes into it, and a step-down goes by what all of them share (destination, signer).
    pub several_pairs: bool,
}

/// What a lane's voter sends with: its destination's submitter client and the events of its
/// transactions.
pub type VoteSubmitter = (SubmitClient, mpsc::UnboundedReceiver<JobEvent>);

/// Start the tasks of `lane` on `tasks`: campaign and progress (with etcd), indexer, voter and
/// recovery (with the lower-nonce advancer), both sending through `submitter`, the destination
/// chain's. `claims` receives the nonces users claimed on this lane.
pub fn spawn(
    shared: &Shared,
    settings: &LaneSettings,
    control: &LaneControl,
    submitter: &SubmitterHandle,
    claims: mpsc::Receiver<u64>,
    tasks: &mut JoinSet<crate::task::TaskResult>,
) {
    let lane = control.lane;
    let operator = shared.operator;
    let metrics = shared.metrics.lane(lane);
    let source_config = &settings.source;
    let source = shared.chains.get(lane.source()).clone();
    let destination = shared.chains.get(lane.destination()).clone();

    if let (Some(pool), Some(dir), Some(etcd)) =
        (&shared.etcd, settings.election_dir.clone(), &settings.etcd)
    {
        // `multibridge_leader` reads what the fence would answer at the scrape: a leader paused
        // past its lease reads 0 at its first scrape after waking, never beside its successor.
        // `multibridge_fence_open_seconds` beside it: how long the fence stays open without
        // etcd (near 0 on a leader: etcd answers too slowly to keep it open).
        let (fence, gauge, open) = (
            control.fence.clone(),
            metrics.leader.clone(),
            metrics.fence_open.clone(),
        );
        shared.metrics.on_render(move || {
            // One read of the fence for both: open for some time is exactly what `check` allows.
            let open_for = fence.open_for();
            gauge.set(i64::from(!open_for.is_zero()));
            open.set(open_for.as_secs_f64());
        });
        let health = etcd.step_down_after().map(|bound| ServeHealth {
            destination: destination.liveness(),
            source: (!shared.several_pairs).then(|| crate::leadership::health::SourceHealth {
                chain: source.liveness(),
                readiness: shared.readiness.clone(),
                indexer: indexing::indexer_component(lane),
            }),
            signer: shared.signer_health.clone(),
            bound,
        });
        let campaign = Campaign {
            lane,
            key: settings
                .leader_key
                .clone()
                .unwrap_or_else(|| leader_key(&dir)),
            me: LeaderInfo {
                replica: shared.replica.clone(),
                url: shared.own_url.clone(),
                operator: operator.to_string(),
                heartbeat_ms: Some(etcd.lease_ttl_secs.saturating_mul(1_000)),
                released: false,
            },
            ttl: Duration::from_secs(etcd.lease_ttl_secs),
            reads: crate::leadership::campaign::standby_reads(
                shared.campaign_etcd.as_deref().unwrap_or(pool),
                Duration::from_secs(etcd.lease_ttl_secs),
            ),
            beats: crate::leadership::heartbeats::Heartbeats::of(
                shared.campaign_etcd.as_deref().unwrap_or(pool),
            ),
            lease: crate::leadership::shared_lease::SharedLease::of(
                shared.campaign_etcd.as_deref().unwrap_or(pool),
                Duration::from_secs(etcd.lease_ttl_secs),
            ),
            pool: shared.campaign_etcd.clone().unwrap_or_else(|| pool.clone()),
            fence: control.fence.clone(),
            held: control.held.clone(),
            kept_history: etcd.keep_history(),
            leading: control.leading_tx.clone(),
            metrics: metrics.clone(),
            readiness: shared.readiness.clone(),
            memory: shared.store_holder.clone().map(|holder| LeaseMemory {
                store: shared.store.clone(),
                holder,
            }),
            health: health.clone().map(|health| (health, dir.clone())),
        };
        if control.campaigns {
            // The election of the chain: every pair's lanes into it follow this campaign, so
            // it runs on the process, not on this pair's tasks.
            let span = tracing::info_span!("campaign", %lane, %operator, replica = %shared.replica);
            // On the leadership runtime: its heartbeats never wait behind the relay's load.
            shared.shared_tasks.spawn_on(
                crate::leadership::runtime::handle(),
                campaign.run().instrument(span),
            );
        }
        let progress = Progress {
            lane,
            dir,
            replica: shared.replica.clone(),
            pool: pool.clone(),
            store: shared.store.clone(),
            leading: control.leading.clone(),
            health,
            signer: Some(shared.signer.clone()),
        };
        let span = tracing::info_span!("progress", %lane, %operator, replica = %shared.replica);
        tasks.spawn(
            async move {
                progress.run().await;
                Ok(())
            }
            .instrument(span),
        );
    }

    // The indexer rings it when it stores new requests: the voter steps at once.
    let stored = Arc::new(tokio::sync::Notify::new());
    // It publishes the requests of the block its next head confirms: the voter plans their
    // votes between blocks.
    let upcoming = crate::voter::prepared::Upcoming::default();
    let mut indexer = Indexer::new(
        source.clone(),
        IndexerSettings {
            confirmations: source_config.confirmations,
            start_block: source_config.start_block,
            max_block_range: source_config.max_block_range.max(1),
            poll: Duration::from_millis(source_config.poll_interval_ms.max(50)),
        },
        shared.store.clone(),
        metrics.clone(),
        shared.readiness.clone(),
    )
    .ringing(stored.clone());
    // Attested batches are not planned ahead: nothing to publish for.
    if settings.mode() != crate::config::VotingMode::Attestations {
        indexer = indexer.publishing(upcoming.clone());
    }
    let span = tracing::info_span!("indexer", chain = %lane.source(), %lane, %operator);
    tasks.spawn(run_stepper(lane, "indexer", indexer).instrument(span));

    let (submit, events): VoteSubmitter = submitter.client();
    let mut voter = Voter::new(
        settings.destination.bridge,
        operator,
        shared.store.clone(),
        BridgeReads {
            chain: destination.clone(),
            operator,
            confirmations: settings.destination.confirmations,
            warming: Arc::default(),
        },
        submit,
        events,
        crate::voter::VoterConfig::from(&settings.voting),
        metrics.clone(),
    );
    voter.tamper_payloads(settings.tamper_votes);
    voter.preparing(upcoming);
    if settings.mode() == crate::config::VotingMode::Attestations
        && let Some(attestor) = attestor(shared, settings, tasks)
    {
        voter.attest_with(attestor);
    }
    let voting = LaneVoting::new(voter, control.leading.clone(), metrics.clone())
        .with_signer(shared.signer.clone(), shared.signer_health.clone())
        .woken_by(stored);
    let span = tracing::info_span!("voter", chain = %lane.destination(), %lane, %operator);
    tasks.spawn(run_stepper(lane, "voter", voting).instrument(span));

    let recovery = LaneRecovery::new(
        Recovery::new(recovery::worker_config(&settings.recovery), metrics.clone()),
        ChainLane {
            source,
            destination: destination.clone(),
            confirmations: source_config.confirmations,
            operator,
            span: Mutex::new(LogSpan::with_max(settings.recovery.stride_blocks)),
        },
        StoreQueue {
            lane,
            store: shared.store.clone(),
        },
        claims,
        control.leading.clone(),
    );
    let span = tracing::info_span!("recovery", chain = %lane.destination(), %lane, %operator);
    tasks.spawn(run_stepper(lane, "recovery", recovery).instrument(span));

    let destination_bridge = settings.destination.bridge;
    let upkeep = upkeep::Upkeep {
        advance: advance::LowerAdvance::new(
            destination.clone(),
            destination_bridge,
            operator,
            submitter.client().0,
            metrics.clone(),
        ),
        releases: releases::QueuedReleases::new(
            destination,
            destination_bridge,
            operator,
            submitter.client().0,
            metrics,
        ),
        leading: control.leading.clone(),
        interval: Duration::from_millis(settings.recovery.interval_ms.max(100)),
    };
    let span = tracing::info_span!("upkeep", chain = %lane.destination(), %lane, %operator);
    tasks.spawn(run_stepper(lane, "upkeep", upkeep).instrument(span));
}

/// The planner of `lane`'s attested batches (`None` without `[registry]`, which the config
/// validation refuses for a lane in attested mode).
/// With `voting.attestation_store`, the writer of its signature pages runs beside it on `tasks`.
fn attestor(
    shared: &Shared,
    settings: &LaneSettings,
    tasks: &mut JoinSet<crate::task::TaskResult>,
) -> Option<crate::attest::Attestor> {
    let lane = settings.lane;
    let registry = settings.registry.as_ref()?;
    let domain = settings.domain;
    let pages = shared.attestation_store.clone().map(|storage| {
        let service_id =
            multibridge_contracts::LaneServiceMeta::of(&domain, shared.operator).service_id();
        let (writer, pages) = crate::attest::serve::PageWriter::new(
            lane,
            shared.operator,
            service_id,
            storage,
            shared.store.clone(),
            shared.metrics.attest.clone(),
        );
        let span = tracing::info_span!("attestation pages", chain = %lane.destination(), %lane, operator = %shared.operator);
        tasks.spawn(run_stepper(lane, "attestation pages", writer).instrument(span));
        pages
    });
    let peers = crate::attest::collect::RegistryPeers::new(
        shared.chains.main.clone(),
        registry.address,
        lane,
        domain,
        Duration::from_millis(settings.voting.peer_timeout_ms),
        crate::attest::location::LocationPolicy {
            devnet: settings.devnet,
            peer_stores: settings.voting.peer_stores.clone(),
        },
    );
    Some(
        crate::attest::Attestor::new(
            lane,
            domain,
            shared.operator,
            shared.signer.clone(),
            shared.store.clone(),
            Arc::new(peers),
            Duration::from_secs(settings.voting.standby_after_secs.max(1)),
            shared.metrics.attest.clone(),
        )
        .with_board(shared.board.clone()),
    )
    .map(|attestor| match pages {
        Some(pages) => attestor.with_pages(pages),
        None => attestor,
    })
}
