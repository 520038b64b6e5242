//! One lane's election among the replicas of one operator (or, with the lane scope, among every
//! operator's replicas): compare-and-create of the leader key bound to this replica's lease,
//! lease renewals every sixth of the TTL (raced over every endpoint, sent again every poll while
//! none is answered), and stepping down as soon as the lease cannot be proven. The leader key's value
//! names the replica and the URL it advertises.
//!
//! An etcd leader election (a member killed or paused, quorum intact) leaves the cluster unable
//! to renew leases for about the election timeout. A leader that could not prove its lease in
//! that time stops sending (the fence) but keeps its lease id: as soon as etcd answers again, a
//! renewal that the server grants and a leader key that still names this replica *resume* the
//! term — nobody else can have led while that key lived — instead of waiting for the old key to
//! expire on the server (which a new etcd leader postpones by a full TTL).
//!
//! A replica *restarted* while its previous lease still lives (a crash, a SIGKILL, a host's
//! processes all restarted) takes its term back the same way instead of waiting out the TTL —
//! but only when it proves it is the process that held it: the lease, the key and the key's
//! create revision are remembered in its store beside the place that wrote them (the store
//! lock's holder, [`crate::store::lock`]); the lock proves no other process of this place is
//! alive, and the place differs for a copied or restored store. The fence extends only from a
//! renewal this process sent.
//!
//! A dead leader's lease runs out on the server a TTL after its last renewal, but etcd looks
//! for expired leases only every 500 ms: a successor waited up to 1.5 TTL. So a leader also
//! *heartbeats*: with every renewal it rewrites its key (same value, same lease), and may send
//! only within a TTL (less the margin) of the last rewrite it sent that succeeded (the fence's
//! heartbeat). A standby that has seen the key's revision unchanged for the TTL the leader
//! advertises, by its own clock, takes the key over with a compare-and-swap on that revision:
//! every rewrite that succeeded was sent before the standby first saw the revision, so the old
//! leader's fence is closed, and a rewrite after the takeover fails. A leader key that does
//! not advertise heartbeats (an older version) is only ever won after it disappears.
//!
//! etcd's election API blocks in `campaign` on a single endpoint; a transaction through the
//! endpoint pool is the same protocol (first to create the key under a live lease leads; the key
//! disappears with the lease) and survives a dead member.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use multibridge_contracts::Lane;
use multibridge_monitoring::{LaneMetrics, Readiness};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::etcd_pool::{EtcdPool, EtcdUnavailable};
use super::health::{HandoverBackoff, ServeHealth, Unfit, healthy_peer};
use super::heartbeats::{Heartbeats, next_poll};
use super::key_history::{self, Deletion};
use super::key_reads::KeyReads;
use super::shared_lease::SharedLease;
use crate::chain::fence::Fence;
use crate::store::{LeaseRecord, SharedStore};

/// What the leader key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// The replica's name.
    pub replica: String,
    /// Its HTTP API URL (published in the service registry).
    pub url: String,
    /// The operator it votes for.
    pub operator: String,
    /// The TTL of its heartbeats, milliseconds: a standby may take the key over once its
    /// revision stayed unchanged this long (`None`: it does not heartbeat; wait for the key to
    /// disappear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
    /// Written by the holder itself once its fence is closed (it stops or hands the lane
    /// over): a standby may take the key over at once. Never set in a live term.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

/// Who the leader key of an election names (`None`: no leader, or a value this version cannot
/// read).
pub async fn read_leader(
    pool: &EtcdPool,
    key: &str,
) -> Result<Option<LeaderInfo>, EtcdUnavailable> {
    let value = pool.get("read leader", key).await?;
    Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// [`read_leader`] through `reads`: answered with the other keys its readers asked lately.
pub async fn read_leader_from(
    reads: &KeyReads,
    pool: &EtcdPool,
    key: &str,
) -> Result<Option<LeaderInfo>, EtcdUnavailable> {
    let kv = reads.get(pool, key).await?;
    Ok(kv.and_then(|kv| serde_json::from_slice(kv.value()).ok()))
}

/// The lease a campaign holds and the leader key it campaigns for, readable from outside its
/// task so a stopping replica can release the key and revoke the lease.
#[derive(Debug, Clone, Default)]
pub struct HeldLease(Arc<std::sync::Mutex<Held>>);

#[derive(Debug, Default)]
struct Held {
    lease: Option<i64>,
    key: String,
    me: Option<LeaderInfo>,
    /// The process's lease book this campaign enlisted in (taken at its resignation).
    shared: Option<Arc<SharedLease>>,
}

impl HeldLease {
    fn bind(&self, key: &str, me: &LeaderInfo, shared: &Arc<SharedLease>) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.key = key.to_owned();
        held.me = Some(me.clone());
        if held.shared.is_none() {
            shared.enlist();
            held.shared = Some(shared.clone());
        }
    }

    fn take_shared(&self) -> Option<Arc<SharedLease>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shared
            .take()
    }

    fn set(&self, lease: Option<i64>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).lease = lease;
    }

    fn take(&self) -> Option<(i64, String, Option<LeaderInfo>)> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let lease = held.lease.take()?;
        Some((lease, held.key.clone(), held.me.clone()))
    }
}

/// A campaign takes no key over in its first this long: replicas restarted together (a host's
/// processes after a crash) resume their own terms instead of racing each other's heartbeats.
const TAKEOVER_GRACE: Duration = Duration::from_secs(2);

/// How long a stopping replica tries to release its key and revoke its lease.
const RESIGN_TIMEOUT: Duration = Duration::from_secs(2);

/// Mark the leader key released if it still names `me` under `lease` (same lease, so it still
/// goes with the lease): a standby takes it over at its next poll, and one that sees it deleted
/// next learns from its history that this holder's fence had closed. Call only once the fence
/// is closed. `true` when the key was ours and is now marked.
async fn release_key(
    pool: &EtcdPool,
    key: &str,
    me: &LeaderInfo,
    lease: i64,
) -> Result<bool, EtcdUnavailable> {
    let mine = serde_json::to_string(me).unwrap_or_default();
    let released = serde_json::to_string(&LeaderInfo {
        released: true,
        ..me.clone()
    })
    .unwrap_or_default();
    pool.call("release", |mut c| {
        let (key, mine, released) = (key.to_owned(), mine.clone(), released.clone());
        async move {
            let txn = Txn::new()
                .when([
                    Compare::lease(key.clone(), CompareOp::Equal, lease),
                    Compare::value(key.clone(), CompareOp::Equal, mine),
                ])
                .and_then([TxnOp::put(
                    key,
                    released,
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            Ok(c.txn(txn).await?.succeeded())
        }
    })
    .await
}

/// Give a lane up: release the leader key (best effort: unreleased, a standby takes it over
/// once its heartbeat has run out). The lease stays: the process's other elections live under
/// it ([`SharedLease`]). Call only once the fence is closed.
async fn give_up(pool: &EtcdPool, key: &str, me: &LeaderInfo, lease: i64) {
    match tokio::time::timeout(RESIGN_TIMEOUT, release_key(pool, key, me, lease)).await {
        Ok(Ok(true)) => tracing::info!("leader key released; a standby can lead at once"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "leader key not released"),
        Err(_) => tracing::warn!("leader key release timed out"),
    }
}

/// Revoke `lease` when the process stops, after every key under it was released (best effort:
/// unrevoked, it runs out by its TTL): the keys a release did not reach go with it.
pub async fn revoke_lease(pool: &EtcdPool, lease: i64) {
    let revoke = pool.call("lease revoke", |mut c| async move {
        c.lease_revoke(lease).await.map(|_| ())
    });
    match tokio::time::timeout(RESIGN_TIMEOUT, revoke).await {
        Ok(Ok(())) => tracing::info!("lease revoked; a follower can lead at once"),
        Ok(Err(e)) => tracing::warn!(error = %e, "lease not revoked; it runs out by its TTL"),
        Err(_) => tracing::warn!("lease revoke timed out; it runs out by its TTL"),
    }
}

/// Give a lane up when the replica stops: close the fence, then release the leader key, so a
/// follower leads at its next poll instead of after the TTL. The process's elections share
/// their lease ([`SharedLease`]): the last of them to resign gets the leases to revoke
/// ([`revoke_lease`]), the others none. Call only once nothing can broadcast any more. Best
/// effort: if etcd cannot be reached the lease simply runs out.
pub async fn resign(pool: &EtcdPool, fence: &Fence, held: &HeldLease) -> Vec<i64> {
    fence.lead(false);
    fence.expire();
    if let Some((lease, key, Some(me))) = held.take() {
        give_up(pool, &key, &me, lease).await;
    }
    match held.take_shared() {
        Some(shared) if shared.leave() => shared.leases().await,
        _ => Vec::new(),
    }
}

/// The readiness component of etcd.
pub const ETCD_COMPONENT: &str = "etcd";

/// One lane's campaign.
pub struct Campaign {
    /// Lane.
    pub lane: Lane,
    /// The leader key.
    pub key: String,
    /// This replica.
    pub me: LeaderInfo,
    /// Lease TTL.
    pub ttl: Duration,
    /// etcd.
    pub pool: Arc<EtcdPool>,
    /// The process's reads of the leader keys its standbys follow ([`standby_reads`]).
    pub reads: Arc<KeyReads>,
    /// The process's heartbeats, sent together ([`Heartbeats::of`]).
    pub beats: Arc<Heartbeats>,
    /// The process's lease, shared by its campaigns ([`SharedLease::of`]).
    pub lease: Arc<SharedLease>,
    /// The lane's fence (this task opens and closes it).
    pub fence: Fence,
    /// The lease this campaign holds.
    pub held: HeldLease,
    /// Leading or not, for the voter.
    pub leading: watch::Sender<bool>,
    /// The lane's metrics (`leader`, `leadership_changes_total`).
    pub metrics: LaneMetrics,
    /// Readiness (`etcd`).
    pub readiness: Arc<Readiness>,
    /// Where won leases are remembered for a restart (`None`: never resume).
    pub memory: Option<LeaseMemory>,
    /// Whether this replica can serve the lane, and the election's directory where its peers
    /// say whether they can (`None`: never hand over for that).
    pub health: Option<(ServeHealth, String)>,
    /// How much key history this process's compaction keeps (`etcd.keep_history_secs`; `None`:
    /// the cluster compacts itself, and a compacted history proves nothing).
    pub kept_history: Option<Duration>,
}

/// The store a campaign remembers its leases in, and the place this process holds it from.
#[derive(Clone)]
pub struct LeaseMemory {
    /// The replica's store.
    pub store: SharedStore,
    /// The store lock's holder identity.
    pub holder: String,
}

/// The leader key as etcd holds it.
struct LeaderKv {
    value: Vec<u8>,
    lease: i64,
    create_revision: i64,
    mod_revision: i64,
}

impl LeaderKv {
    fn of(kv: &etcd_client::KeyValue) -> Self {
        Self {
            value: kv.value().to_vec(),
            lease: kv.lease(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }

    /// How long the leader it names says its revision may stay unchanged (`None`: it does not
    /// heartbeat).
    fn heartbeat(&self) -> Option<Duration> {
        serde_json::from_slice::<LeaderInfo>(&self.value)
            .ok()?
            .heartbeat_ms
            .map(Duration::from_millis)
    }

    /// Whether its holder released it (its fence is closed).
    fn released(&self) -> bool {
        serde_json::from_slice::<LeaderInfo>(&self.value).is_ok_and(|info| info.released)
    }
}

/// The leader key's revision as a standby last saw it change.
#[derive(Debug, Clone, Copy)]
pub struct Observed {
    revision: i64,
    since: Instant,
    /// How long the leader it names may leave its revision unchanged.
    heartbeat: Duration,
    /// The key at `revision` was released by its holder (its fence closed).
    released: bool,
    /// Once the key was seen deleted: from when this standby may create it.
    create_at: Option<Instant>,
    /// Once the key was seen deleted: the revision after that deletion (its history from there
    /// is read once this standby created the key), or after `revision` if it is not known.
    history_from: i64,
}

/// The last leader key this replica held, in this process or in its dead predecessor at this
/// place (its store record): where a campaign that has seen no other key since reads the key's
/// history from ([`key_history`]).
#[derive(Debug, Clone, Copy)]
struct OwnKey {
    lease: i64,
    revision: i64,
}

impl Standing {
    /// Whether this campaign knows `kv` (naming this replica under `lease`) as its own: it led
    /// under it, or wrote it, at or after its creation.
    fn knows(&self, lease: i64, kv: &LeaderKv) -> bool {
        self.own
            .is_some_and(|o| o.lease == lease && o.revision >= kv.create_revision)
    }

    /// This replica holds the key (created at or before `revision`) under `lease`.
    fn led(&mut self, lease: i64, revision: i64) {
        self.observed = None;
        self.hold = None;
        self.own = Some(OwnKey { lease, revision });
    }
}

/// What a campaign knows of the leader key from one poll to the next.
struct Standing {
    /// The revision it follows, while another replica holds the key.
    observed: Option<Observed>,
    /// Before this, it takes no key over ([`TAKEOVER_GRACE`]).
    not_before: Instant,
    /// The last key this replica held.
    own: Option<OwnKey>,
    /// A key it created but leads under only from `.0` (its create revision `.1`): the history
    /// showed a holder that may still be sending.
    hold: Option<(Instant, i64)>,
}

impl Observed {
    /// Note `revision` seen at `now` (after the read answered: at or after it was written);
    /// whether it has stayed unchanged for the leader's `heartbeat` since first seen, or since
    /// `not_before` if later. A leader that does not heartbeat is never overdue.
    fn overdue(
        observed: &mut Option<Self>,
        revision: i64,
        heartbeat: Option<Duration>,
        now: Instant,
        not_before: Instant,
    ) -> bool {
        Self::note(observed, revision, heartbeat, false, now, not_before)
            .is_some_and(|o| now.saturating_duration_since(o.since) >= o.heartbeat)
    }

    /// Note `revision` (a release when `released`); the observation it is now part of.
    fn note(
        observed: &mut Option<Self>,
        revision: i64,
        heartbeat: Option<Duration>,
        released: bool,
        now: Instant,
        not_before: Instant,
    ) -> Option<Self> {
        let Some(heartbeat) = heartbeat else {
            *observed = None;
            return None;
        };
        match observed {
            Some(o) if o.revision == revision => {}
            _ => {
                *observed = Some(Self {
                    revision,
                    since: now.max(not_before),
                    heartbeat,
                    released,
                    create_at: None,
                    history_from: 0,
                });
            }
        }
        *observed
    }

    /// From when a standby that saw this revision and then, at `absent_at`, no key may create
    /// it. etcd may delete a live leader's key: a raft leader that was stuck (paused, a slow
    /// disk) and resumes still believes it holds every lease and revokes those it thinks
    /// expired (etcd-io/etcd#15247, fixed in 3.4.28 and 3.5.11). That leader's fence is open
    /// until a TTL (less the margin) after the last heartbeat it sent that succeeded, so the key
    /// is created only once that has certainly passed: right away after a release; a heartbeat
    /// after first seeing this revision when the history shows no write after it; a heartbeat
    /// after the absence was seen otherwise.
    fn create_at(&self, deletion: Deletion, absent_at: Instant) -> Instant {
        let after = |from: Instant| from.checked_add(self.heartbeat).unwrap_or(from);
        match deletion {
            Deletion::Released => absent_at,
            Deletion::AfterSeen if self.released => absent_at,
            Deletion::AfterSeen => after(self.since).min(after(absent_at)),
            Deletion::Unproven => after(absent_at),
        }
    }
}

/// What an attempt to lead found.
enum Attempt {
    /// This replica created the key: its create revision.
    Won(i64),
    /// Another key holds it.
    Held(LeaderKv),
    /// Nobody holds it any more (deleted between the compare and the read).
    Empty,
}

/// The reads of the leader keys the standbys of the process on `pool` follow, for campaigns
/// whose lease lives `ttl`: fresh for half a poll.
pub fn standby_reads(pool: &EtcdPool, ttl: Duration) -> Arc<KeyReads> {
    KeyReads::of(
        pool,
        multibridge_monitoring::metrics::ETCD_LEADER_KEYS,
        poll_interval(ttl).checked_div(2).unwrap_or_default(),
    )
}

/// How often a follower reads the key and a leader looks whether its renewal is due.
fn poll_interval(ttl: Duration) -> Duration {
    ttl.checked_div(10)
        .unwrap_or_default()
        .clamp(Duration::from_millis(100), Duration::from_millis(500))
}

impl Campaign {
    fn set_leader(&self, leader: bool, why: &str) {
        if *self.leading.borrow() == leader {
            return;
        }
        self.fence.lead(leader);
        let _ = self.leading.send(leader);
        let lane = self.lane.as_str();
        self.metrics.leader.set(i64::from(leader));
        self.metrics.leadership_changes.inc();
        if leader {
            tracing::info!(%lane, key = %self.key, reason = why, "leading the lane");
        } else {
            tracing::warn!(%lane, reason = why, "stepped down");
        }
    }

    /// The process's lease ([`SharedLease`]), granted when it has none; the fence is extended
    /// from when its last grant or renewal that the server answered was sent.
    async fn grant(&self) -> Result<i64, EtcdUnavailable> {
        let held = self.lease.take(&self.pool, self.ttl).await?;
        if held.granted_secs > 0 {
            // etcd raises a TTL below 1.5 election timeouts to that minimum: the server's
            // figure is the lease's (and a dead leader's successor waits that long).
            self.metrics
                .lease_granted_ttl
                .set(i64::try_from(held.granted_secs).unwrap_or(i64::MAX));
        }
        if held.granted_now && held.granted_secs > self.ttl.as_secs() {
            tracing::warn!(
                lane = %self.lane,
                configured_secs = self.ttl.as_secs(),
                granted_secs = held.granted_secs,
                "etcd granted a longer lease than configured (its minimum is 1.5 x its election timeout): a dead leader is replaced after the longer TTL; run etcd with --heartbeat-interval 50 --election-timeout 500 for 1 s leases"
            );
        }
        let ttl = if held.granted_secs == 0 {
            self.ttl
        } else {
            self.ttl.min(Duration::from_secs(held.granted_secs))
        };
        self.fence.extend(held.proven_at, ttl);
        Ok(held.id)
    }

    /// Renew `lease`; an error saying "lease not found" ([`is_lease_gone`]) when the server
    /// says it is gone. Fresh renewals go out every poll while none is answered (see
    /// [`EtcdPool::race_hedged`]), until the fence would close (at least one attempt's time),
    /// so a renewal lands as soon as an etcd election ends.
    async fn renew(&self, lease: i64) -> Result<Instant, EtcdUnavailable> {
        let poll = poll_interval(self.ttl);
        let sent = self
            .lease
            .renew(lease, poll, &self.pool, || async {
                // Counted from when the renewal goes out (it may have waited for another's).
                let until = Instant::now()
                    .checked_add(
                        self.fence
                            .remaining()
                            .min(self.ttl)
                            .max(self.pool.attempt_timeout()),
                    )
                    .unwrap_or_else(Instant::now);
                self.pool
                    .race_hedged(
                        multibridge_monitoring::metrics::ETCD_KEEP_ALIVE,
                        poll,
                        until,
                        // Opening a keep-alive stream sends one renewal and reads its answer
                        // (an error saying "lease not found" when the server's TTL is 0: see
                        // `is_lease_gone`). A further `keep_alive` on the stream, which this sent
                        // before, was a second renewal of the lease in the same instant.
                        |mut c| async move { c.lease_keep_alive(lease).await.map(|_| ()) },
                    )
                    .await
                    .map(|((), sent)| sent)
            })
            .await?;
        // A leader whose lease ran out by its own clock while this renewal was out (its sends
        // were refused meanwhile) keeps the lane now: counted, since the leadership gauge reads
        // 1 before and after and `leadership_changes_total` did not move.
        let lapsed = *self.leading.borrow() && !self.fence.lease_valid();
        // The server counts the TTL from when its leader handled the renewal, which is after
        // it was sent: counting from `sent` keeps this replica's view the shorter one.
        // The answer's TTL is the lease's granted TTL, never below the configured one (etcd
        // only raises a TTL to its minimum): the configured TTL is the shorter view.
        self.fence.extend(sent, self.ttl);
        if lapsed && self.fence.lease_valid() {
            self.metrics.lease_lapses.inc();
            tracing::warn!(lane = %self.lane, "lease ran out by this replica's clock before its renewal came back; renewed, sends resume");
        }
        Ok(sent)
    }

    /// Try to create the leader key under `lease`; the key that holds it otherwise.
    async fn try_lead(&self, lease: i64) -> Result<Attempt, EtcdUnavailable> {
        let value = serde_json::to_string(&self.me).unwrap_or_default();
        let key = self.key.clone();
        let sent = Instant::now();
        let attempt = self
            .pool
            .call("campaign", |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(
                            key.clone(),
                            value,
                            Some(PutOptions::new().with_lease(lease)),
                        )])
                        .or_else([TxnOp::get(key, None)]);
                    let resp = c.txn(txn).await?;
                    if resp.succeeded() {
                        // The put is the transaction's only write: the key's create revision
                        // is the revision the transaction made.
                        return Ok(Attempt::Won(resp.header().map_or(0, |h| h.revision())));
                    }
                    Ok(first_kv(&resp).map_or(Attempt::Empty, Attempt::Held))
                }
            })
            .await?;
        if matches!(attempt, Attempt::Won(_)) {
            // Creating the key is the first heartbeat.
            self.fence.beat(sent, self.ttl);
        }
        Ok(attempt)
    }

    /// Rewrite the leader key (same value, same lease) if it still names this replica under
    /// `lease`: the heartbeat, sent with the process's other leaders' due at the same poll
    /// ([`Heartbeats`]). The rewrite's revision when it did (the fence's heartbeat is extended
    /// from the moment its transaction was sent).
    async fn touch(&self, lease: i64) -> Result<Option<i64>, EtcdUnavailable> {
        let value = serde_json::to_string(&self.me).unwrap_or_default();
        let beat = self.beats.beat(&self.pool, &self.key, value, lease).await?;
        if beat.rewritten {
            self.fence.beat(beat.sent, self.ttl);
        }
        Ok(beat.rewritten.then_some(beat.revision))
    }

    /// Take the leader key over from a leader whose heartbeat stopped: put this replica's
    /// value under `lease` only if the key's revision is still `revision`. `Some(create
    /// revision)` when taken.
    async fn take_over(&self, lease: i64, revision: i64) -> Result<Option<i64>, EtcdUnavailable> {
        let value = serde_json::to_string(&self.me).unwrap_or_default();
        let key = self.key.clone();
        let sent = Instant::now();
        let taken = self
            .pool
            .call("take over", |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    let txn = Txn::new()
                        .when([Compare::mod_revision(
                            key.clone(),
                            CompareOp::Equal,
                            revision,
                        )])
                        .and_then([
                            TxnOp::put(
                                key.clone(),
                                value,
                                Some(PutOptions::new().with_lease(lease)),
                            ),
                            TxnOp::get(key, None),
                        ]);
                    let resp = c.txn(txn).await?;
                    Ok(resp
                        .succeeded()
                        .then(|| first_kv(&resp).map_or(0, |kv| kv.create_revision)))
                }
            })
            .await?;
        if taken.is_some() {
            self.fence.beat(sent, self.ttl);
        }
        Ok(taken)
    }

    /// Whether the leader named by `kv` has not heartbeaten for as long as it advertises, by
    /// this replica's clock since it first saw `kv`'s revision, or since `not_before` if later
    /// (a campaign just started gives a leader restarted beside it time to resume its term).
    fn overdue(&self, kv: &LeaderKv, observed: &mut Option<Observed>, not_before: Instant) -> bool {
        Observed::overdue(
            observed,
            kv.mod_revision,
            kv.heartbeat(),
            Instant::now(),
            not_before,
        )
    }

    /// A standby read `kv`: resume it if it is this replica's term, take it over if its
    /// holder released it or its heartbeat stopped, else note its revision.
    async fn follow(
        &self,
        lease: &mut Option<i64>,
        kv: LeaderKv,
        standing: &mut Standing,
    ) -> Result<(), EtcdUnavailable> {
        let Some(mut id) = *lease else {
            return Ok(());
        };
        // A key that names this replica (at another URL: a hub's election of a chain is run by
        // whichever pair starts first) under this election's lease, or under another lease
        // this process renews — the lease of this replica's previous process at this place,
        // which an election of this process resumed after proving it is that place (its store
        // record and lock) — was written by this process or that one: this election's term,
        // taken back at once (a compare on its revision rewrites it with this election's
        // value) rather than waited out as a stranger's.
        if self.names_my_replica(&kv) && !self.names_me_under(&kv, id) {
            let proven = if kv.lease == id {
                true
            } else if let Some(proven_at) = self.lease.renewed(kv.lease).await {
                // Proven by that lease's own last answered renewal: the fence may already be
                // open from this election's lease, which says nothing about that one.
                let proven = crate::chain::fence::lease_proven(proven_at, self.ttl);
                if proven {
                    self.fence.extend(proven_at, self.ttl);
                }
                proven
            } else {
                false
            };
            if proven {
                *lease = Some(kv.lease);
                id = kv.lease;
                if let Some(revision) = self.take_over(id, kv.mod_revision).await? {
                    standing.led(id, revision);
                    self.remember(id, revision);
                    self.set_leader(
                        true,
                        "resumed: the leader key names this replica under this process's lease",
                    );
                }
                return Ok(());
            }
        }
        // A key that names this replica under its live lease is this replica's term (after an
        // etcd outage that outlasted the fence): resume it rather than wait.
        if self.names_me_under(&kv, id) {
            standing.led(id, kv.create_revision);
            if self.touch(id).await?.is_some() {
                self.set_leader(true, "resumed: the leader key and its lease are still ours");
            }
            return Ok(());
        }
        let released = kv.released();
        Observed::note(
            &mut standing.observed,
            kv.mod_revision,
            kv.heartbeat(),
            released,
            Instant::now(),
            standing.not_before,
        );
        let (due, why) = if released {
            (true, "took over: the leader released the lane")
        } else {
            (
                self.overdue(&kv, &mut standing.observed, standing.not_before),
                "took over: the leader's heartbeat stopped",
            )
        };
        if due && let Some(revision) = self.take_over(id, kv.mod_revision).await? {
            standing.led(id, revision);
            self.remember(id, revision);
            self.metrics.leadership_takeovers.inc();
            self.set_leader(true, why);
        }
        Ok(())
    }

    /// This campaign created the leader key under `id` at `revision` (`won_at`: when it learnt
    /// it): lead now, or hold the key until every holder the key's history from `history_from`
    /// shows deleted without a release has certainly stopped sending. What happened to the key
    /// since this replica's last write of it (no other key seen since), or since the deletion it
    /// waited out (a key created and deleted between two polls, or while it did not poll),
    /// decides.
    async fn decide(
        &self,
        standing: &mut Standing,
        (id, revision): (i64, i64),
        history_from: i64,
        won_at: Instant,
    ) {
        // Every holder deleted before the creation sent its last heartbeat before its
        // deletion, which came before `won_at`. Not released by a stop while the history is
        // read (a standby would take it over at once): the loop hands the lease back once it
        // leads.
        self.held.set(None);
        match self
            .lost_before(history_from, standing.own, id, revision)
            .await
        {
            None => {
                standing.led(id, revision);
                self.remember(id, revision);
                self.set_leader(true, "won");
            }
            Some(wait) => {
                self.metrics.leader_key_lost.inc();
                tracing::info!(
                    lane = %self.lane,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "created the leader key after another holder's was deleted without a release (or its history could not be read): leading once that holder's heartbeat has run out"
                );
                // What this replica knew of the key stays until the hold has passed: a hold
                // lost (its lease gone) and the key created again reads the same deletions.
                standing.observed = None;
                standing.hold = Some((won_at.checked_add(wait).unwrap_or(won_at), revision));
            }
        }
    }

    /// Whether `kv` names this replica under `id` but this campaign does not know it wrote it:
    /// it created the key, and the creation's answer was lost.
    fn unknown_own(&self, standing: &Standing, kv: &LeaderKv, id: i64) -> bool {
        self.names_me_under(kv, id) && !standing.knows(id, kv)
    }

    /// How long a key this campaign created under `lease` at `revision` must wait before it
    /// leads: the heartbeat of a holder whose key the history from revision `from` shows
    /// deleted without a release ([`key_history::unreleased_loss`]; this process's lease and
    /// `own`'s are this replica's); a TTL when the history cannot be read whole in a third of
    /// a TTL, or one etcd attempt's bound if shorter (the step renews nothing meanwhile).
    /// `None`: lead now.
    async fn lost_before(
        &self,
        from: i64,
        own: Option<OwnKey>,
        lease: i64,
        revision: i64,
    ) -> Option<Duration> {
        let mine = [lease, own.map_or(lease, |o| o.lease)];
        let kept_a_ttl = self.kept_history.is_some_and(|keep| keep >= self.ttl);
        // Within one attempt's bound too: an attempt cut by the pool is taken for a dead
        // connection.
        let bound = self
            .ttl
            .checked_div(3)
            .unwrap_or_default()
            .min(self.pool.attempt_timeout());
        let deadline = tokio::time::Instant::now()
            .checked_add(bound)
            .unwrap_or_else(tokio::time::Instant::now);
        let read = key_history::writes_between(
            &self.pool,
            &self.key,
            (from, revision),
            kept_a_ttl,
            deadline,
        );
        // The attempts answer by themselves at the deadline; this only bounds a connection
        // that does not come.
        let slack = deadline
            .checked_add(Duration::from_millis(50))
            .unwrap_or(deadline);
        match tokio::time::timeout_at(slack, read).await {
            Ok(Some(writes)) => key_history::unreleased_loss(&writes, &mine, self.ttl),
            // `writes_between` said why.
            Ok(None) => Some(self.ttl),
            Err(_) => {
                tracing::info!(lane = %self.lane, "leader key history not read in time");
                Some(self.ttl)
            }
        }
    }

    /// The leader key now (`None`: nobody leads), raced over every endpoint.
    async fn leader_kv(&self) -> Result<Option<LeaderKv>, EtcdUnavailable> {
        let key = self.key.as_str();
        self.pool
            .race("read leader", |mut c| async move {
                let resp = c.get(key, None).await?;
                Ok(resp.kvs().first().map(LeaderKv::of))
            })
            .await
    }

    /// The leader key as a standby follows it every poll: as the process last read it with
    /// every other leader key its standbys follow, at most half a poll ago ([`KeyReads`]).
    async fn followed_kv(&self) -> Result<Option<LeaderKv>, EtcdUnavailable> {
        Ok(self
            .reads
            .get(&self.pool, &self.key)
            .await?
            .as_ref()
            .map(LeaderKv::of))
    }

    /// Whether `kv` names this replica of this operator with this heartbeat, unreleased
    /// (whatever URL it advertises).
    fn names_my_replica(&self, kv: &LeaderKv) -> bool {
        serde_json::from_slice::<LeaderInfo>(&kv.value).is_ok_and(|info| {
            info.replica == self.me.replica
                && info.operator == self.me.operator
                && info.heartbeat_ms == self.me.heartbeat_ms
                && !info.released
        })
    }

    fn names_me_under(&self, kv: &LeaderKv, lease: i64) -> bool {
        kv.lease == lease
            && serde_json::from_slice::<LeaderInfo>(&kv.value)
                .ok()
                .as_ref()
                == Some(&self.me)
    }

    /// Take back the term a previous process of this replica held, if it is still alive and
    /// this process proves it is that replica at that place: `Some(lease)` when resumed; with
    /// the key that process held, whether resumed or not (that process is gone: the store lock
    /// proves it).
    async fn resume(&self) -> (Option<i64>, Option<OwnKey>) {
        let Some(memory) = self.memory.as_ref() else {
            return (None, None);
        };
        let record = match memory.store.lock().remembered_lease(self.lane) {
            Ok(Some(record)) => record,
            Ok(None) => return (None, None),
            Err(e) => {
                tracing::warn!(lane = %self.lane, error = %e, "remembered lease unreadable");
                return (None, None);
            }
        };
        let mine = record.holder == memory.holder && record.key == self.key;
        let own = mine.then_some(OwnKey {
            lease: record.lease,
            revision: record.create_revision,
        });
        let outcome = if !mine {
            Err("written by another place or for another election")
        } else {
            match self.renew(record.lease).await {
                Ok(sent) => match self.leader_kv().await {
                    Ok(Some(kv))
                        if self.names_me_under(&kv, record.lease)
                            && kv.create_revision == record.create_revision =>
                    {
                        // A heartbeat before the first send (a standby may be about to take
                        // the key over: then the rewrite fails and so does the resume).
                        match self.touch(record.lease).await {
                            Ok(Some(_)) => Ok(sent),
                            Ok(None) => Err("the leader key is no longer ours"),
                            Err(_) => Err("etcd unavailable"),
                        }
                    }
                    Ok(_) => Err("the leader key is no longer ours"),
                    Err(_) => Err("etcd unavailable"),
                },
                Err(e) if is_lease_gone(&e) => Err("the lease ran out"),
                Err(_) => Err("etcd unavailable"),
            }
        };
        match outcome {
            Ok(sent) => {
                // The key's value names the TTL it was granted with, which is the one
                // configured now: the process's other elections may join this lease.
                self.lease
                    .adopt(record.lease, sent, self.ttl.as_secs())
                    .await;
                self.metrics.leadership_resumed.inc();
                self.set_leader(
                    true,
                    "resumed after a restart: our lease and key still live",
                );
                (Some(record.lease), own)
            }
            Err(why) => {
                tracing::info!(lane = %self.lane, reason = why, "not resuming the previous term");
                self.fence.expire();
                self.forget();
                (None, own)
            }
        }
    }

    fn remember(&self, lease: i64, create_revision: i64) {
        let Some(memory) = &self.memory else {
            return;
        };
        let record = LeaseRecord {
            lease,
            key: self.key.clone(),
            create_revision,
            holder: memory.holder.clone(),
        };
        if let Err(e) = memory.store.lock().remember_lease(self.lane, &record) {
            tracing::warn!(lane = %self.lane, error = %e, "lease not remembered; a restart waits for it");
        }
    }

    fn forget(&self) {
        if let Some(memory) = &self.memory
            && let Err(e) = memory.store.lock().forget_lease(self.lane)
        {
            tracing::warn!(lane = %self.lane, error = %e, "lease not forgotten");
        }
    }

    /// A replica of this lane's election, other than this one, that says it can serve.
    async fn healthy_peer(&self) -> Option<String> {
        let (_, dir) = self.health.as_ref()?;
        match super::progress::read_progress(&self.pool, dir).await {
            Ok(records) => healthy_peer(&records, &self.me.replica, crate::store::unix_now())
                .map(|r| r.replica.clone()),
            Err(e) => {
                tracing::debug!(lane = %self.lane, error = %e, "peers' progress unreadable");
                None
            }
        }
    }

    /// Stop leading because this replica cannot serve and `peer` can; the caller releases the
    /// key so the peer leads at its next poll.
    async fn hand_over(
        &self,
        why: Unfit,
        unfit_for: Duration,
        peer: &str,
        backoff: &mut HandoverBackoff,
    ) {
        self.fence.expire();
        self.set_leader(false, why.as_str());
        self.metrics.handed_over(why.as_str());
        let hold = backoff.handed_over(Instant::now());
        tracing::warn!(
            lane = %self.lane,
            reason = why.as_str(),
            unable_for_ms = u64::try_from(unfit_for.as_millis()).unwrap_or(u64::MAX),
            to = peer,
            hold_off_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX),
            "cannot serve the lane: handing it to a replica that can"
        );
        self.forget();
    }

    /// Run until the task is aborted.
    pub async fn run(self) {
        self.readiness.register(ETCD_COMPONENT);
        self.held.bind(&self.key, &self.me, &self.lease);
        let poll = poll_interval(self.ttl);
        let renew_every = renew_interval(self.ttl);
        let (mut lease, own) = self.resume().await;
        let mut renewed_at = Instant::now();
        let mut backoff = HandoverBackoff::default();
        let mut standing = Standing {
            observed: None,
            not_before: Instant::now()
                .checked_add(TAKEOVER_GRACE)
                .unwrap_or_else(Instant::now),
            own,
            hold: None,
        };
        loop {
            let started = tokio::time::Instant::now();
            // First, before any etcd call: a replica that wakes from a pause (its clock jumped
            // past its lease) is no leader, whatever it last believed.
            self.step_down_unless_proven();
            let step = if backoff.holding(Instant::now()) {
                Ok(())
            } else {
                self.step(
                    &mut lease,
                    &mut renewed_at,
                    renew_every,
                    &mut backoff,
                    &mut standing,
                )
                .await
            };
            match step {
                Ok(()) => self.readiness.ok(ETCD_COMPONENT),
                Err(e) => {
                    self.readiness.failed(ETCD_COMPONENT, &e);
                    tracing::warn!(lane = %self.lane, error = %e, "etcd unavailable");
                }
            }
            // Whatever etcd says, a lease this replica cannot prove ends its leadership (the
            // lease id is kept: a renewal the server still grants resumes the term).
            self.step_down_unless_proven();
            // A key held without leading is never released at a stop (a standby would take it
            // over at once, before the holder it waits out has stopped): it goes with the lease.
            self.held
                .set(if standing.hold.is_some() { None } else { lease });
            // The next poll of the process's grid after the step's start (every campaign of
            // the process wakes at once, so the leaders due heartbeat in one transaction): a
            // step that spent its poll waiting on etcd (a renewal through an etcd election)
            // goes again at once, with no pause between its renewal waves.
            tokio::time::sleep_until(next_poll(started, poll)).await;
        }
    }

    fn step_down_unless_proven(&self) {
        if !self.fence.lease_valid() {
            self.set_leader(false, "lease not proven valid by this replica's clock");
        }
    }

    async fn step(
        &self,
        lease: &mut Option<i64>,
        renewed_at: &mut Instant,
        renew_every: Duration,
        backoff: &mut HandoverBackoff,
        standing: &mut Standing,
    ) -> Result<(), EtcdUnavailable> {
        let unfit = self.health.as_ref().and_then(|(health, _)| health.unfit());
        if unfit.is_some() && !*self.leading.borrow() && self.healthy_peer().await.is_some() {
            // Unable to serve, and a peer can: leave the lane to it (no campaign; the process's
            // lease stays for its other elections).
            lease.take();
            return Ok(());
        }
        let id = match *lease {
            Some(id) => id,
            None => {
                let id = self.grant().await?;
                *lease = Some(id);
                *renewed_at = Instant::now();
                id
            }
        };
        // Renew when due, and at every poll while the lease is not proven (a failed renewal is
        // retried at once, not a renewal interval later); due a renewal interval after the
        // last one was *sent*, so a slow answer does not space renewals further apart.
        let renewing = renewed_at.elapsed() >= renew_every || !self.fence.lease_valid();
        let leading = *self.leading.borrow();
        // A leader heartbeats with every renewal (and while the fence waits for one); the
        // heartbeat also proves the key is still ours. Between renewals nothing is read: the
        // fence does not depend on it, and a key taken over or deleted fails the next heartbeat
        // (a sixth of the TTL later). A read every poll cost etcd a request per lane leader and
        // poll.
        let beating = leading && (renewing || self.fence.check().is_err());
        let sent = Instant::now();
        // The renewal and the heartbeat go at once: each extends its own half of the fence,
        // and one slow answer (a loaded etcd takes hundreds of milliseconds) must not hold the
        // other back — one after the other, they let a loaded etcd close the fence before any
        // fault.
        let (renewal, heartbeat) = tokio::join!(
            async {
                if renewing {
                    Some(self.renew(id).await)
                } else {
                    None
                }
            },
            async {
                if beating {
                    Some(self.touch(id).await)
                } else {
                    None
                }
            },
        );
        if let Some(renewal) = renewal {
            let renewed = match renewal {
                Ok(_) => true,
                // etcd revoked the lease (it ran out while the cluster had no quorum): once this
                // replica's own clock says it is over too, take a new one. While the fence still
                // holds, the same answer from one lagging member is not believed.
                Err(e) if is_lease_gone(&e) && !self.fence.lease_valid() => {
                    self.lease.forget(id).await;
                    false
                }
                Err(e) => return Err(e),
            };
            if !renewed {
                self.fence.expire();
                self.set_leader(false, "lease expired on the server");
                self.forget();
                *lease = None;
                return Ok(());
            }
            *renewed_at = sent;
        }
        if leading {
            let ours = match heartbeat {
                Some(beat) => match beat? {
                    Some(revision) => {
                        // The key's history is read from this replica's last write of it (an
                        // answer that named no revision leaves the last one known).
                        if revision > 0 {
                            standing.own = Some(OwnKey {
                                lease: id,
                                revision,
                            });
                        }
                        true
                    }
                    None => false,
                },
                None => true,
            };
            if !ours {
                self.set_leader(false, "the leader key names another replica");
            } else if let Some((why, unfit_for)) = unfit {
                if let Some(peer) = self.healthy_peer().await {
                    self.hand_over(why, unfit_for, &peer, backoff).await;
                    *lease = None;
                    give_up(&self.pool, &self.key, &self.me, id).await;
                }
            } else {
                backoff.leading_fit(Instant::now());
            }
        } else if self.fence.lease_valid() {
            if let Some((at, revision)) = standing.hold {
                // This replica holds the key it created but waits out a holder that may still be
                // sending, heartbeating it meanwhile (so no standby takes it over as a key whose
                // holder died); then leads if the key is still its own.
                let beat = self.touch(id).await?;
                if beat.is_none() {
                    standing.hold = None;
                } else if Instant::now() >= at {
                    standing.led(id, revision);
                    self.remember(id, revision);
                    self.set_leader(true, "won, once the last holder's heartbeat had run out");
                }
                return Ok(());
            }
            // Where the key's history is read from once this replica created it: past the
            // deletion it waited out, or past its own last write of the key.
            let mut history_from = match standing.observed {
                Some(Observed {
                    create_at: Some(_),
                    history_from,
                    ..
                }) => history_from,
                _ => standing.own.map_or(1, |o| o.revision),
            };
            if let Some(seen) = standing.observed {
                // A leader key was seen: read it rather than create one, and create one after
                // a deletion only once its holder's fence has certainly closed.
                match self.followed_kv().await? {
                    Some(kv) if self.unknown_own(standing, &kv, id) => {
                        let created = kv.create_revision;
                        self.decide(standing, (id, created), history_from, Instant::now())
                            .await;
                        return Ok(());
                    }
                    Some(kv) => return self.follow(lease, kv, standing).await,
                    None => {
                        let create_at = match seen.create_at {
                            Some(at) => at,
                            None => {
                                let absent_at = Instant::now();
                                let (deletion, deleted_at) = key_history::deletion_after(
                                    &self.pool,
                                    &self.key,
                                    seen.revision,
                                )
                                .await
                                .unwrap_or_else(|e| {
                                    tracing::warn!(
                                        lane = %self.lane,
                                        error = %e,
                                        "leader key history unreadable"
                                    );
                                    (Deletion::Unproven, None)
                                });
                                history_from =
                                    deleted_at.unwrap_or(seen.revision).saturating_add(1);
                                let at = seen.create_at(deletion, absent_at);
                                if deletion != Deletion::Released && !seen.released {
                                    self.metrics.leader_key_lost.inc();
                                    tracing::info!(
                                        lane = %self.lane,
                                        history = ?deletion,
                                        wait_ms = u64::try_from(at.saturating_duration_since(absent_at).as_millis()).unwrap_or(u64::MAX),
                                        "the leader key disappeared without a release: leading once its holder's heartbeat has run out"
                                    );
                                }
                                standing.observed = Some(Observed {
                                    create_at: Some(at),
                                    history_from,
                                    ..seen
                                });
                                at
                            }
                        };
                        if Instant::now() < create_at {
                            return Ok(());
                        }
                    }
                }
            }
            match self.try_lead(id).await? {
                Attempt::Won(revision) => {
                    self.decide(standing, (id, revision), history_from, Instant::now())
                        .await;
                }
                // A key naming this replica under this lease that it does not know it created
                // (the creation's answer was lost: committed, then the attempt timed out and
                // another endpoint answered): created by this campaign, decided the same way.
                Attempt::Held(kv) if self.unknown_own(standing, &kv, id) => {
                    let created = kv.create_revision;
                    self.decide(standing, (id, created), history_from, Instant::now())
                        .await;
                }
                Attempt::Held(kv) => self.follow(lease, kv, standing).await?,
                Attempt::Empty => {}
            }
        }
        Ok(())
    }
}

/// The first key-value a transaction's get returned.
fn first_kv(resp: &etcd_client::TxnResponse) -> Option<LeaderKv> {
    resp.op_responses().iter().find_map(|op| match op {
        etcd_client::TxnOpResponse::Get(get) => get.kvs().first().map(LeaderKv::of),
        _ => None,
    })
}

/// Whether etcd answered that the lease does not exist (any more).
fn is_lease_gone(error: &EtcdUnavailable) -> bool {
    error
        .to_string()
        .to_ascii_lowercase()
        .contains("lease not found")
}

/// How often a lease is renewed: a sixth of the TTL (at least every poll), so a renewal that
/// fails during an etcd leader election is retried several times before the lease runs out.
fn renew_interval(ttl: Duration) -> Duration {
    ttl.checked_div(6)
        .unwrap_or_default()
        .max(poll_interval(ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_renewed_often_enough_to_survive_an_etcd_election() {
        // 3 s TTL: renewals every 500 ms, so the fence (TTL - 300 ms from the last renewal
        // sent) outlasts an etcd election of ~1.5 s by at least 700 ms.
        assert_eq!(
            renew_interval(Duration::from_secs(3)),
            Duration::from_millis(500)
        );
        assert_eq!(renew_interval(Duration::from_secs(1)).as_millis(), 166);
        assert_eq!(
            renew_interval(Duration::from_secs(60)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn a_standby_takes_over_only_after_the_revision_stayed_unchanged_for_the_heartbeat() {
        let t0 = Instant::now();
        let beat = Some(Duration::from_secs(1));
        let ms = Duration::from_millis;
        let mut seen = None;
        assert!(!Observed::overdue(&mut seen, 7, beat, t0, t0));
        assert!(!Observed::overdue(&mut seen, 7, beat, t0 + ms(900), t0));
        assert!(Observed::overdue(&mut seen, 7, beat, t0 + ms(1_000), t0));
        // A new revision (a heartbeat) starts the count again.
        assert!(!Observed::overdue(&mut seen, 8, beat, t0 + ms(1_100), t0));
        assert!(!Observed::overdue(&mut seen, 8, beat, t0 + ms(2_000), t0));
        assert!(Observed::overdue(&mut seen, 8, beat, t0 + ms(2_100), t0));
        // A campaign just started counts from its grace's end.
        let mut fresh = None;
        assert!(!Observed::overdue(&mut fresh, 8, beat, t0, t0 + ms(2_000)));
        assert!(!Observed::overdue(
            &mut fresh,
            8,
            beat,
            t0 + ms(2_900),
            t0 + ms(2_000)
        ));
        assert!(Observed::overdue(
            &mut fresh,
            8,
            beat,
            t0 + ms(3_000),
            t0 + ms(2_000)
        ));
        // A leader key of a version without heartbeats is never taken over.
        let mut old = None;
        for s in 0..10 {
            assert!(!Observed::overdue(
                &mut old,
                3,
                None,
                t0 + Duration::from_secs(s),
                t0
            ));
        }
    }

    #[test]
    fn a_deleted_key_is_created_only_once_its_holders_heartbeat_has_certainly_run_out() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let beat = Some(Duration::from_secs(1));
        let mut seen = None;
        let live = Observed::note(&mut seen, 7, beat, false, t0, t0).unwrap();
        let absent = t0 + ms(300);
        // Deleted right after the revision seen at t0: the holder's last heartbeat that
        // succeeded was sent before t0, so its fence closed before t0 + 1 s.
        assert_eq!(live.create_at(Deletion::AfterSeen, absent), t0 + ms(1_000));
        // A write the standby did not see (a later heartbeat), or no history: count from the
        // absence, which follows every heartbeat that succeeded.
        assert_eq!(
            live.create_at(Deletion::Unproven, absent),
            absent + ms(1_000)
        );
        // Its holder released it: at once.
        assert_eq!(live.create_at(Deletion::Released, absent), absent);
        let mut seen = None;
        let released = Observed::note(&mut seen, 8, beat, true, t0, t0).unwrap();
        assert_eq!(released.create_at(Deletion::AfterSeen, absent), absent);
        assert_eq!(
            released.create_at(Deletion::Unproven, absent),
            absent + ms(1_000)
        );
        // A revision noted again keeps its first sighting (and its release mark).
        let again = Observed::note(&mut seen, 8, beat, false, t0 + ms(500), t0).unwrap();
        assert!(again.released && again.since == t0);
        // A leader that does not heartbeat is not observed.
        assert!(Observed::note(&mut seen, 9, None, false, t0, t0).is_none() && seen.is_none());
    }

    #[test]
    fn a_release_keeps_the_holders_value_and_adds_only_the_mark() {
        let me = LeaderInfo {
            replica: "r1".into(),
            url: "http://x".into(),
            operator: "0x1".into(),
            heartbeat_ms: Some(1_000),
            released: false,
        };
        let live = serde_json::to_string(&me).unwrap();
        assert!(
            !live.contains("released"),
            "a live term's value is unchanged: {live}"
        );
        let released = serde_json::to_vec(&LeaderInfo {
            released: true,
            ..me.clone()
        })
        .unwrap();
        let kv = LeaderKv {
            value: released,
            lease: 1,
            create_revision: 1,
            mod_revision: 2,
        };
        assert!(kv.released() && kv.heartbeat() == Some(Duration::from_secs(1)));
    }

    #[test]
    fn followers_poll_often_enough_for_failover_within_ttl_plus_a_second() {
        assert_eq!(
            poll_interval(Duration::from_secs(3)),
            Duration::from_millis(300)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(60)),
            Duration::from_millis(500)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(1)),
            Duration::from_millis(100)
        );
    }
}
