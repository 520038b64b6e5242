//! etcd calls that survive a dead or paused member: one client per endpoint (the client does
//! not route around a bad endpoint by itself), each attempt bounded in time. Writes try the
//! endpoints in turn, starting from the last one that answered (a write must not be sent twice);
//! idempotent calls (lease renewals, reads) race every endpoint and take the first answer, so a
//! dead, paused or leaderless member costs nothing while another answers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use multibridge_monitoring::{EtcdMetrics, EtcdOutcome};
use tokio::sync::Mutex;

use super::attempt_bound::{AttemptBound, BoundChange};

/// How long a connection (TLS handshake, and with a user the cluster's password check, a
/// bcrypt run that takes a loaded member seconds) may take before it is given up. It runs in
/// the background: an attempt that times out leaves it going and the next attempt takes it
/// over, so a connect slower than one attempt still completes.
const CONNECT_BOUND: Duration = Duration::from_secs(15);

/// A connect in progress, shared by the attempts that wait for it.
type Connecting = Shared<BoxFuture<'static, Result<Client, String>>>;

/// One endpoint's connection: none yet, being made, or made; a connect and the connection it
/// makes carry the slot's generation at its start, so what an attempt finds out about its
/// connection touches that connection only, never a newer one another pool made meanwhile.
#[derive(Default)]
enum Connection {
    #[default]
    None,
    Connecting(Connecting, u64),
    Ready(Box<Client>, u64),
}

/// An etcd call failed on every endpoint.
#[derive(Debug, Clone, thiserror::Error)]
#[error("etcd {what} failed on every endpoint ({endpoints}); last error: {last}")]
pub struct EtcdUnavailable {
    /// The call.
    pub what: &'static str,
    /// The endpoints tried.
    pub endpoints: String,
    /// The last endpoint's error.
    pub last: String,
}

impl EtcdUnavailable {
    /// Always worth retrying: a quorum may come back.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// How to authenticate to etcd: TLS material and a user, read from their files at each
/// connect (so a rotated certificate or password is picked up by the next connection). It names
/// files and variables, never a secret: it keys the connections a process shares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EtcdAccess {
    tls: Option<crate::config::EtcdTlsConfig>,
    user: Option<(String, Option<std::path::PathBuf>, Option<String>)>,
}

impl EtcdAccess {
    /// The access `[etcd]` configures.
    pub fn of(config: &crate::config::EtcdConfig) -> Self {
        Self {
            tls: config.tls.clone(),
            user: config.username.clone().map(|name| {
                (
                    name,
                    config.password_file.clone(),
                    config.password_env.clone(),
                )
            }),
        }
    }

    /// What to check when a call failed with `error`: a TLS connection that the cluster cuts is,
    /// without a client certificate configured, most likely its `--client-cert-auth`.
    pub fn hint(&self, error: &str) -> &'static str {
        let no_identity = self
            .tls
            .as_ref()
            .is_some_and(|t| t.cert_file.is_none() || t.key_file.is_none());
        if no_identity && error.to_ascii_lowercase().contains("transport") {
            " (no client certificate is configured: if the cluster runs --client-cert-auth, set etcd.tls.cert_file and key_file)"
        } else {
            ""
        }
    }

    /// `options` with TLS and the user added; `Err` names the file or variable that failed.
    pub fn options(&self, mut options: ConnectOptions) -> Result<ConnectOptions, String> {
        use etcd_client::{Certificate, Identity, TlsOptions};
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| format!("cannot read etcd {what} {}: {e}", path.display()))
        };
        if let Some(tls) = &self.tls {
            let mut t =
                TlsOptions::new().ca_certificate(Certificate::from_pem(read("CA", &tls.ca_file)?));
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                t = t.identity(Identity::from_pem(
                    read("client certificate", cert)?,
                    read("client key", key)?,
                ));
            }
            if let Some(domain) = &tls.domain {
                t = t.domain_name(domain.clone());
            }
            options = options.with_tls(t);
        }
        if let Some((name, file, env)) = &self.user {
            let password = crate::config::read_secret(file.as_deref(), env.as_deref())
                .map_err(|e| format!("etcd user {name}: {e}"))?;
            options = options.with_user(name.clone(), password);
        }
        Ok(options)
    }
}

/// One endpoint's connection slot; pools that share connections hold the same slot.
type Slot = Arc<SlotState>;

/// An endpoint's connection and when a call on it last answered.
#[derive(Default)]
struct SlotState {
    connection: Mutex<Connection>,
    /// The generation of the slot's newest connect (from 1).
    generation: AtomicU64,
    /// The generation of a connection an attempt was abandoned on unanswered past its pool's
    /// floor (0: none): it is made again before the next attempt of any pool (see
    /// [`Abandoned`]).
    suspect: AtomicU64,
    /// When an attempt on the endpoint last answered, in any pool on the slot (an answer after
    /// an abandoned attempt started proves the connection alive, whoever's call it was).
    answered: std::sync::Mutex<Option<std::time::Instant>>,
}

impl SlotState {
    /// A call on the connection of `generation` answered: it is alive, whoever doubted it (a
    /// newer connection's doubt stays).
    fn answered(&self, generation: u64) {
        *self.answered.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        self.clear_suspect(generation);
    }

    /// Whether a call on the endpoint answered at or after `started`.
    fn answered_since(&self, started: std::time::Instant) -> bool {
        self.answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at >= started)
    }

    /// Clear the doubt on the connection of `generation`; whether there was one.
    fn clear_suspect(&self, generation: u64) -> bool {
        self.suspect
            .compare_exchange(generation, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// What a shared connection is made for: the pools that use it (by name), an endpoint and how
/// it is reached.
type SlotKey = (&'static str, String, EtcdAccess);

/// The etcd connections of one process, by pool name, endpoint and access: the pools of one name
/// of every bridge pair of a hub use one connection per member (gRPC multiplexes their calls)
/// instead of one each — at 64 pairs 128 connections of ~70 KB each (heaptrack: tonic's channel
/// and its HTTP/2 buffers) become two per member. The name keeps the elections' connection apart
/// from the background work's: the campaigns run on the leadership runtime, and a connection
/// runs on the runtime that made it, so theirs must be made there and carry nothing else
/// ([`crate::leadership::runtime`]). A slot lives while a pool holds it. What a call finds out
/// is the slot's: an answer in one pool proves the connection alive for every pool, and a pool
/// that finds it failed or suspect makes it again for all of them (calls under way on the old
/// one finish on it).
#[derive(Clone, Default)]
pub struct EtcdConnections(Arc<std::sync::Mutex<HashMap<SlotKey, std::sync::Weak<SlotState>>>>);

impl EtcdConnections {
    /// The slot of `endpoint` reached with `access` for the pools named `pools`: the one a live
    /// pool holds, or a new one.
    fn slot(&self, pools: &'static str, endpoint: &str, access: &EtcdAccess) -> Slot {
        let mut slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|_, slot| slot.strong_count() > 0);
        let key = (pools, endpoint.to_owned(), access.clone());
        if let Some(slot) = slots.get(&key).and_then(std::sync::Weak::upgrade) {
            return slot;
        }
        let slot = Slot::default();
        slots.insert(key, Arc::downgrade(&slot));
        slot
    }
}

/// One client per endpoint, created on first use and dropped after a failure.
pub struct EtcdPool {
    endpoints: Vec<String>,
    access: EtcdAccess,
    clients: Vec<Slot>,
    preferred: AtomicUsize,
    /// The configured bound of one attempt.
    floor: Duration,
    /// Each kind of call's bound, raised while the whole cluster answers it slower.
    bounds: std::sync::Mutex<HashMap<&'static str, Arc<AttemptBound>>>,
    /// The pool's name in `etcd_attempt_bound_seconds{pool,call}`.
    name: &'static str,
    metrics: EtcdMetrics,
}

impl std::fmt::Debug for EtcdPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdPool")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl EtcdPool {
    /// A pool over `endpoints`; each attempt (connect included) is bounded by `attempt_timeout`
    /// (raised while the whole cluster answers slower: [`AttemptBound`]) and counted in
    /// `metrics` (`etcd_requests_total`). Named `elections` until [`named`](Self::named).
    pub fn new(endpoints: Vec<String>, attempt_timeout: Duration, metrics: EtcdMetrics) -> Self {
        let clients = endpoints.iter().map(|_| Slot::default()).collect();
        Self {
            floor: attempt_timeout,
            bounds: std::sync::Mutex::default(),
            endpoints,
            access: EtcdAccess::default(),
            clients,
            preferred: AtomicUsize::new(0),
            name: "elections",
            metrics,
        }
    }

    /// The same pool under `name` (`etcd_attempt_bound_seconds{pool,call}`).
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// The bound of `what`'s attempts (made at the floor, and published, on first use).
    fn bound(&self, what: &'static str) -> Arc<AttemptBound> {
        let mut bounds = self.bounds.lock().unwrap_or_else(|p| p.into_inner());
        bounds
            .entry(what)
            .or_insert_with(|| {
                self.metrics
                    .attempt_bound(self.name, what, self.floor.as_secs_f64());
                Arc::new(AttemptBound::new(self.floor, self.endpoints.len()))
            })
            .clone()
    }

    /// Say and publish a change of `what`'s attempt bound.
    fn bound_changed(&self, what: &'static str, change: Option<BoundChange>) {
        let Some(change) = change else {
            return;
        };
        let (BoundChange::Raised(to) | BoundChange::Lowered(to)) = change;
        self.metrics
            .attempt_bound(self.name, what, to.as_secs_f64());
        let floor_ms = u64::try_from(self.floor.as_millis()).unwrap_or(u64::MAX);
        let bound_ms = u64::try_from(to.as_millis()).unwrap_or(u64::MAX);
        if matches!(change, BoundChange::Raised(_)) {
            tracing::warn!(
                pool = self.name,
                call = what,
                floor_ms,
                bound_ms,
                "no etcd endpoint answered within the attempt bound: etcd is slow (a slow disk or an overloaded member?); attempts now wait longer. If lease_lapses_total rises, raise lease_ttl_secs"
            );
        } else {
            tracing::info!(
                pool = self.name,
                call = what,
                floor_ms,
                bound_ms,
                "etcd answers fast again: attempt bound lowered"
            );
        }
    }

    /// Count a read of `what` answered from another task's read (`etcd_shared_reads_total`).
    pub fn count_shared(&self, what: &str) {
        self.metrics.shared_read(what);
    }

    /// Count `n` leader-key heartbeats that ended with `outcome` (`etcd_heartbeats_total`).
    pub fn count_heartbeats(&self, outcome: &str, n: usize) {
        self.metrics.heartbeats(outcome, n);
    }

    /// Count `n` lane progress records that ended with `outcome`
    /// (`etcd_progress_records_total`).
    pub fn count_progress(&self, outcome: &str, n: usize) {
        self.metrics.progress_records(outcome, n);
    }

    /// The endpoints, in the order they are tried.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn count(&self, index: usize, what: &str, outcome: EtcdOutcome) {
        self.metrics.attempt(index, what, outcome);
    }

    /// Connect with `access` (TLS, user) instead of plain, anonymous connections.
    pub fn with_access(mut self, access: EtcdAccess) -> Self {
        self.access = access;
        self
    }

    /// The same pool on the connections of `shared` (set after [`with_access`](Self::with_access)
    /// and [`named`](Self::named): connections are shared by name, endpoint and access).
    pub fn sharing(mut self, shared: &EtcdConnections) -> Self {
        self.clients = self
            .endpoints
            .iter()
            .map(|endpoint| shared.slot(self.name, endpoint, &self.access))
            .collect();
        self
    }

    /// Endpoint `index`'s client and its connection's generation; a connect is started in the
    /// background when there is none (or joined when one is under way) and waited for at most
    /// one attempt.
    async fn client(&self, index: usize, bound: Duration) -> Result<(Client, u64), String> {
        let state = self.clients.get(index).ok_or("no such endpoint")?;
        let (connecting, generation) = {
            let mut slot = state.connection.lock().await;
            if let Connection::Ready(_, generation) = &*slot
                && state.clear_suspect(*generation)
            {
                tracing::debug!(
                    pool = self.name,
                    endpoint = %self.label(index),
                    "etcd connection made again: an attempt on it was abandoned unanswered"
                );
                *slot = Connection::None;
            }
            match &*slot {
                Connection::Ready(client, generation) => {
                    return Ok((Client::clone(client), *generation));
                }
                Connection::Connecting(connecting, generation) => (connecting.clone(), *generation),
                Connection::None => {
                    let connecting = self.connect(index)?;
                    let generation = state
                        .generation
                        .fetch_add(1, Ordering::Relaxed)
                        .wrapping_add(1);
                    *slot = Connection::Connecting(connecting.clone(), generation);
                    (connecting, generation)
                }
            }
        };
        let outcome = tokio::time::timeout(bound, connecting.clone())
            .await
            .map_err(|_| "connect timed out (still connecting)".to_owned())?;
        let mut slot = state.connection.lock().await;
        // Only the connect this attempt waited for is settled here (a newer one stays).
        if let Connection::Connecting(current, _) = &*slot
            && current.ptr_eq(&connecting)
        {
            *slot = match &outcome {
                Ok(client) => Connection::Ready(Box::new(client.clone()), generation),
                Err(_) => Connection::None,
            };
        }
        outcome.map(|client| (client, generation))
    }

    /// A connect to endpoint `index` running on its own task, bounded by [`CONNECT_BOUND`].
    fn connect(&self, index: usize) -> Result<Connecting, String> {
        let endpoint = self.endpoints.get(index).ok_or("no such endpoint")?.clone();
        self.metrics.connect(self.name);
        let options = self.access.options(
            ConnectOptions::new()
                // The TCP (and TLS) part keeps the attempt's bound, so a connect to a member
                // that does not answer is given up, and started again, as soon as before.
                .with_connect_timeout(self.floor.max(Duration::from_secs(1)))
                // Every call is bounded by its attempt; this backstop is for the password
                // check that the connect itself makes.
                .with_timeout(CONNECT_BOUND),
        )?;
        let task = tokio::spawn(async move {
            tokio::time::timeout(
                CONNECT_BOUND,
                Client::connect([endpoint.as_str()], Some(options)),
            )
            .await
            .map_err(|_| format!("connect timed out after {}s", CONNECT_BOUND.as_secs()))?
            .map_err(|e| e.to_string())
        });
        Ok(
            async move { task.await.map_err(|e| format!("connect task ended: {e}"))? }
                .boxed()
                .shared(),
        )
    }

    /// Drop endpoint `index`'s connection of `generation` (a newer one, or a connect under way,
    /// is kept: it is the reconnect).
    async fn forget(&self, index: usize, generation: u64) {
        if let Some(slot) = self.clients.get(index) {
            let mut slot = slot.connection.lock().await;
            if matches!(&*slot, Connection::Ready(_, current) if *current == generation) {
                *slot = Connection::None;
            }
        }
    }

    /// One attempt of `f` on endpoint `index`, bounded in time and counted; a failed endpoint's
    /// client is dropped (reconnected at its next use). `Err` names the endpoint and the cause.
    async fn attempt<T, F, Fut>(&self, index: usize, what: &'static str, f: &F) -> Result<T, String>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let bound = self.bound(what);
        let (client, generation) = match self.client(index, bound.current()).await {
            Ok(c) => c,
            Err(e) => {
                self.count(index, what, EtcdOutcome::Error);
                return Err(format!(
                    "{}: {e}{}",
                    self.label(index),
                    self.access.hint(&e)
                ));
            }
        };
        let started = std::time::Instant::now();
        let mut abandoned = Abandoned {
            pool: self,
            index,
            generation,
            what,
            started,
            armed: true,
        };
        let outcome = tokio::time::timeout(bound.current(), f(client)).await;
        abandoned.armed = false;
        let last = match outcome {
            Ok(Ok(value)) => {
                if let Some(slot) = self.clients.get(index) {
                    slot.answered(generation);
                }
                self.bound_changed(what, bound.answered(started.elapsed()));
                self.count(index, what, EtcdOutcome::Ok);
                self.preferred.store(index, Ordering::Relaxed);
                return Ok(value);
            }
            Ok(Err(e)) => {
                self.count(index, what, EtcdOutcome::Error);
                let e = e.to_string();
                format!("{}: {e}{}", self.label(index), self.access.hint(&e))
            }
            Err(_) => {
                self.bound_changed(what, bound.timed_out());
                self.count(index, what, EtcdOutcome::Timeout);
                format!("{}: timed out", self.label(index))
            }
        };
        self.forget(index, generation).await;
        Err(last)
    }

    /// An attempt of `what` on endpoint `index`, started at `started`, was dropped before it
    /// ended. Its connection is suspect only if it ran past the floor and nothing answered on
    /// the endpoint since it started (a slow cluster answers late but answers: the attempts of
    /// a race's earlier waves are then dropped on a live connection).
    fn abandoned(
        &self,
        index: usize,
        generation: u64,
        what: &'static str,
        started: std::time::Instant,
    ) {
        if started.elapsed() < self.floor {
            return;
        }
        let Some(slot) = self.clients.get(index) else {
            return;
        };
        if slot.answered_since(started) {
            return;
        }
        self.count(index, what, EtcdOutcome::Abandoned);
        // Never over a newer connection's doubt: a late drop of an attempt on an older one
        // would hide it until another attempt on the newer one was dropped (generations only
        // grow, and a connection's doubt is cleared when it is made again).
        slot.suspect.fetch_max(generation, Ordering::Relaxed);
        // An answer that landed between the check above and the doubt clears it (its own
        // clear found no doubt yet).
        if slot.answered_since(started) {
            slot.clear_suspect(generation);
        }
    }

    fn unavailable(&self, what: &'static str, last: String) -> EtcdUnavailable {
        EtcdUnavailable {
            what,
            endpoints: self.endpoints.join(","),
            last,
        }
    }

    /// Run `f` on one endpoint after another until one answers in time.
    pub async fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, EtcdUnavailable>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.endpoints.len().max(1);
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = String::from("no endpoints");
        for offset in 0..n {
            let index = start.wrapping_add(offset).checked_rem(n).unwrap_or(0);
            match self.attempt(index, what, &f).await {
                Ok(value) => return Ok(value),
                Err(e) => last = e,
            }
        }
        Err(self.unavailable(what, last))
    }

    /// Run `f` on every endpoint at once; each endpoint's answer, in endpoint order.
    pub async fn each<T, F, Fut>(&self, what: &'static str, f: F) -> Vec<Result<T, String>>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let f = &f;
        futures::future::join_all(
            (0..self.endpoints.len()).map(|index| self.attempt(index, what, f)),
        )
        .await
    }

    /// Run the idempotent `f` on every endpoint at once and take the first answer (the others
    /// are dropped). For calls that may safely reach the cluster more than once: lease renewals
    /// and reads, never a compare-and-create.
    pub async fn race<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, EtcdUnavailable>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        use futures::StreamExt as _;
        let f = &f;
        let mut attempts: futures::stream::FuturesUnordered<_> = (0..self.endpoints.len())
            .map(|index| self.attempt(index, what, f))
            .collect();
        let mut last = String::from("no endpoints");
        while let Some(attempt) = attempts.next().await {
            match attempt {
                Ok(value) => return Ok(value),
                Err(e) => last = e,
            }
        }
        Err(self.unavailable(what, last))
    }

    /// [`race`](Self::race) started again on every endpoint every `every` while no answer came,
    /// until `until`; gives the first answer and when the attempt that gave it was sent. An etcd
    /// member without a leader holds a request it must forward until its next look for one,
    /// and it looks in steps of its election timeout, which is as long as an attempt may take:
    /// during an etcd election a single race is cut just before that look. A fresh wave that
    /// arrives once a leader is known is forwarded at once. The first wave always goes out.
    ///
    /// The first wave is *hedged*: it goes to the endpoint that answered last, and to the
    /// others only when that one has not answered within half an attempt's floor (or failed).
    /// A healthy cluster so handles one request per call instead of one per member — a
    /// follower forwards each renewal to the raft leader, so racing every member tripled the
    /// leader's load — and a dead or paused member costs half a floor once, until another
    /// member's answer makes that one the first asked.
    pub async fn race_hedged<T, F, Fut>(
        &self,
        what: &'static str,
        every: Duration,
        until: std::time::Instant,
        f: F,
    ) -> Result<(T, std::time::Instant), EtcdUnavailable>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        use futures::StreamExt as _;
        use std::time::Instant;
        let f = &f;
        let wave = |index: usize| async move {
            let sent = Instant::now();
            self.attempt(index, what, f)
                .await
                .map(|value| (value, sent))
        };
        let n = self.endpoints.len();
        let first = self
            .preferred
            .load(Ordering::Relaxed)
            .checked_rem(n)
            .unwrap_or(0);
        let mut attempts = futures::stream::FuturesUnordered::new();
        let mut last = String::from("no endpoints");
        let mut next_wave = Some(Instant::now());
        // When the first wave's other endpoints are asked (`None`: no first wave yet pending).
        let mut rest_at: Option<Instant> = None;
        let mut waves = 0_u32;
        let every = every.max(Duration::from_millis(10));
        let hedge = self.floor.checked_div(2).unwrap_or_default();
        let deadline = tokio::time::Instant::from_std(until);
        loop {
            let now = Instant::now();
            if let Some(at) = next_wave
                && now >= at
            {
                // The first full wave goes no sooner than the hedge: until then one request
                // is out.
                let mut gap = every;
                if waves == 0 && n > 1 {
                    attempts.push(wave(first));
                    rest_at = Some(now.checked_add(hedge).unwrap_or(now));
                    gap = every.max(hedge);
                } else {
                    attempts.extend((0..n).map(wave));
                    rest_at = None;
                }
                waves = waves.saturating_add(1);
                next_wave = at.checked_add(gap).filter(|next| *next < until);
            }
            if rest_at.is_some_and(|at| now >= at) {
                attempts.extend((0..n).filter(|i| *i != first).map(wave));
                rest_at = None;
            }
            if attempts.is_empty() && next_wave.is_none() {
                return Err(self.unavailable(what, last));
            }
            let wake = [next_wave, rest_at]
                .into_iter()
                .flatten()
                .map(tokio::time::Instant::from_std)
                .fold(deadline, std::cmp::Ord::min);
            tokio::select! {
                Some(attempt) = attempts.next(), if !attempts.is_empty() => match attempt {
                    Ok(answer) => return Ok(answer),
                    Err(e) => {
                        last = e;
                        // The endpoint asked first failed: ask the others now.
                        if rest_at.is_some() {
                            rest_at = Some(Instant::now());
                        }
                    }
                },
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(self.unavailable(what, format!("{last} (no answer in time)")));
                    }
                }
            }
        }
    }

    /// The configured bound of one attempt (a kind of call the whole cluster answers slower
    /// is given up to four times as long).
    pub fn attempt_timeout(&self) -> Duration {
        self.floor
    }

    /// The bound of an attempt of `what` that starts now.
    #[cfg(test)]
    pub fn attempt_bound(&self, what: &'static str) -> Duration {
        self.bound(what).current()
    }

    /// The same pool with attempts bounded by `bound`: one-shot commands, which keep no lease,
    /// wait for a slow member (or its password check) rather than report it unreachable.
    pub fn with_attempt_timeout(mut self, bound: Duration) -> Self {
        self.floor = bound;
        self.bounds = std::sync::Mutex::default();
        self
    }

    /// The value of one key (`None`: no such key), from whichever endpoint answers first.
    pub async fn get(
        &self,
        what: &'static str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, EtcdUnavailable> {
        self.race(what, |mut c| async move {
            let resp = c.get(key, None).await?;
            Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
        })
        .await
    }

    fn label(&self, index: usize) -> String {
        format!(
            "#{index} {}",
            self.endpoints.get(index).map_or("?", String::as_str)
        )
    }
}

/// Marks an attempt that is dropped before its call ended (its race was answered by another
/// endpoint, or ran out of time). One still unanswered past the pool's floor — a healthy member
/// answers well within it — makes its endpoint's connection suspect: a connection that a
/// network cut left dead never answers, and with a race's deadline shorter than an attempt's
/// (raised) bound, every attempt on it would be cut before it could time out and drop it, so a
/// replica whose links came back would stay unable to renew its lease.
struct Abandoned<'a> {
    pool: &'a EtcdPool,
    index: usize,
    /// The generation of the connection the attempt used.
    generation: u64,
    what: &'static str,
    started: std::time::Instant,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pool
                .abandoned(self.index, self.generation, self.what, self.started);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use multibridge_contracts::Lane;
    use multibridge_monitoring::Metrics;

    use super::EtcdPool;

    /// The sum of the `family` series in `metrics`' text whose labels hold every one of `has`.
    fn counted(metrics: &Metrics, family: &str, has: &[&str]) -> f64 {
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(family) && has.iter().all(|h| l.contains(h)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The keep-alive attempts counted with `outcome` in `metrics`' text.
    fn attempts(metrics: &Metrics, outcome: &str) -> f64 {
        counted(
            metrics,
            "multibridge_etcd_requests_total",
            &["lease keep-alive", &format!("outcome=\"{outcome}\"")],
        )
    }

    #[tokio::test]
    async fn a_connection_whose_attempt_was_abandoned_unanswered_is_made_again() {
        // A member that accepts connections and never answers: what a replica's connection
        // looks like after a network cut that took the bytes in flight.
        let (url, accepted, held) = silent_member().await;
        let connections = || accepted.load(std::sync::atomic::Ordering::SeqCst);
        let metrics = Metrics::new(&Lane::ALL, 1).unwrap();
        let pool = EtcdPool::new(vec![url], Duration::from_millis(100), metrics.etcd());
        let race = |deadline: Duration| one_wave(&pool, Instant::now() + deadline);
        // An attempt that times out raises the bound (every endpoint timed out: 200 ms), so
        // from now on a race of 150 ms cuts its attempt before the attempt's own bound.
        race(Duration::from_millis(250)).await.expect_err("silent");
        assert_eq!(
            pool.attempt_bound(multibridge_monitoring::metrics::ETCD_KEEP_ALIVE),
            Duration::from_millis(200)
        );
        race(Duration::from_millis(150)).await.expect_err("silent");
        let before = connections();
        assert!(before >= 1, "the attempts connected");
        assert_eq!(attempts(&metrics, "abandoned"), 1.0, "cut past the floor");
        race(Duration::from_millis(150)).await.expect_err("silent");
        let deadline = Instant::now() + Duration::from_secs(2);
        while connections() == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        held.abort();
        assert_eq!(
            connections(),
            before + 1,
            "the abandoned attempt's connection was made again, not reused"
        );
    }

    /// A silent member and one process's shared connections to it: what the sharing tests
    /// start from.
    struct SharedMember {
        url: String,
        accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        held: tokio::task::JoinHandle<()>,
        metrics: Metrics,
        shared: super::EtcdConnections,
    }

    impl SharedMember {
        async fn start() -> Self {
            let (url, accepted, held) = silent_member().await;
            Self {
                url,
                accepted,
                held,
                metrics: Metrics::new(&Lane::ALL, 1).unwrap(),
                shared: super::EtcdConnections::default(),
            }
        }

        /// A pool of its own (floor 100 ms), as every pool of every pair was.
        fn alone(&self) -> EtcdPool {
            EtcdPool::new(
                vec![self.url.clone()],
                Duration::from_millis(100),
                self.metrics.etcd(),
            )
        }

        /// A pool on the shared connections.
        fn pool(&self) -> EtcdPool {
            self.alone().sharing(&self.shared)
        }

        /// How many connections the member took.
        fn connections(&self) -> usize {
            self.accepted.load(std::sync::atomic::Ordering::SeqCst)
        }

        /// `etcd_connects_total{pool="elections"}`.
        fn connects(&self) -> f64 {
            counted(
                &self.metrics,
                "multibridge_etcd_connects_total",
                &["pool=\"elections\""],
            )
        }
    }

    impl Drop for SharedMember {
        fn drop(&mut self) {
            self.held.abort();
        }
    }

    #[tokio::test]
    async fn pools_that_share_the_process_connections_open_one_per_member() {
        let member = SharedMember::start().await;
        let (elections, background) = (member.pool(), member.pool());
        one_wave(&elections, Instant::now() + Duration::from_millis(80))
            .await
            .expect_err("silent");
        assert_eq!(member.connections(), 1, "the first pool connected");
        one_wave(&background, Instant::now() + Duration::from_millis(80))
            .await
            .expect_err("silent");
        assert_eq!(
            member.connections(),
            1,
            "the second pool used the first one's connection"
        );
        assert_eq!(member.connects(), 1.0, "one connect counted");
        // A pool of its own connects for itself (what every pool of every pair did).
        one_wave(&member.alone(), Instant::now() + Duration::from_millis(80))
            .await
            .expect_err("silent");
        assert_eq!(member.connections(), 2);
    }

    #[tokio::test]
    async fn a_connection_one_pool_finds_suspect_is_made_again_for_every_pool_on_it() {
        let member = SharedMember::start().await;
        let (elections, background) = (member.pool(), member.pool());
        // As in the single pool's test: a timeout raises the elections' bound to 200 ms, and a
        // race of 150 ms then abandons its attempt past the floor, unanswered.
        one_wave(&elections, Instant::now() + Duration::from_millis(250))
            .await
            .expect_err("silent");
        one_wave(&elections, Instant::now() + Duration::from_millis(150))
            .await
            .expect_err("silent");
        assert_eq!(
            attempts(&member.metrics, "abandoned"),
            1.0,
            "cut past the floor"
        );
        let before = member.connections();
        // The other pool's next attempt does not use the connection the first found suspect.
        one_wave(&background, Instant::now() + Duration::from_millis(80))
            .await
            .expect_err("silent");
        let deadline = Instant::now() + Duration::from_secs(2);
        while member.connections() == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            member.connections(),
            before + 1,
            "made again for the other pool too"
        );
    }

    #[tokio::test]
    async fn what_an_attempt_finds_out_touches_only_the_connection_it_used() {
        let member = SharedMember::start().await;
        let (a, b) = (member.pool(), member.pool());
        let bound = Duration::from_secs(2);
        let (_, first) = a.client(0, bound).await.expect("connects");
        // A call on it failed: dropped, and the other pool makes it again.
        a.forget(0, first).await;
        let (_, second) = b.client(0, bound).await.expect("connects");
        assert_ne!(first, second);
        let made = member.connections();
        // Late news of the first connection — a failure, an attempt abandoned long past the
        // floor — leaves the second alone.
        a.forget(0, first).await;
        a.abandoned(
            0,
            first,
            multibridge_monitoring::metrics::ETCD_KEEP_ALIVE,
            Instant::now() - Duration::from_secs(5),
        );
        let (_, still) = b.client(0, bound).await.expect("connected");
        assert_eq!(still, second, "the newer connection stays");
        assert_eq!(member.connections(), made, "and nothing connected again");
        // News of the second connection does drop it.
        b.forget(0, second).await;
        let (_, third) = a.client(0, bound).await.expect("connects");
        assert_ne!(third, second);
        // A doubt on the third, then a late one on the second: the third's stands, and the
        // next attempt makes it again.
        let long_ago = Instant::now() - Duration::from_secs(5);
        let keep_alive = multibridge_monitoring::metrics::ETCD_KEEP_ALIVE;
        a.abandoned(0, third, keep_alive, long_ago);
        a.abandoned(0, second, keep_alive, long_ago);
        let (_, fourth) = b.client(0, bound).await.expect("connects");
        assert_ne!(fourth, third, "the newer connection's doubt was kept");
    }

    #[test]
    fn connections_are_shared_by_pool_name_endpoint_and_access_while_a_pool_holds_them() {
        let shared = super::EtcdConnections::default();
        let plain = super::EtcdAccess::default();
        let user = super::EtcdAccess {
            tls: None,
            user: Some(("relay".to_owned(), None, Some("ETCD_PASSWORD".to_owned()))),
        };
        let slot = |pools, endpoint| shared.slot(pools, endpoint, &plain);
        let same = |a: &super::Slot, b: &super::Slot| std::sync::Arc::ptr_eq(a, b);
        let a = slot("elections", "http://a:2379");
        assert!(same(&a, &slot("elections", "http://a:2379")));
        assert!(!same(&a, &slot("elections", "http://b:2379")));
        assert!(!same(&a, &shared.slot("elections", "http://a:2379", &user)));
        // The campaigns' connections are never the background work's (another runtime).
        assert!(!same(&a, &slot("background", "http://a:2379")));
        // Once no pool holds a slot, its entry goes (a pair stopped and started again connects
        // anew rather than reviving a dropped connection).
        let weak = std::sync::Arc::downgrade(&a);
        drop(a);
        let _other = slot("elections", "http://c:2379");
        assert!(weak.upgrade().is_none());
        assert_eq!(
            shared.0.lock().unwrap().len(),
            1,
            "only the live slot is kept"
        );
    }

    /// A hedged race of lease reads until `until` whose later full waves come too late to
    /// matter (one every 10 s).
    async fn one_wave(
        pool: &EtcdPool,
        until: Instant,
    ) -> Result<(i64, Instant), super::EtcdUnavailable> {
        pool.race_hedged(
            multibridge_monitoring::metrics::ETCD_KEEP_ALIVE,
            Duration::from_secs(10),
            until,
            |mut c| async move { c.lease_time_to_live(1, None).await.map(|r| r.ttl()) },
        )
        .await
    }

    /// A member that accepts connections and never answers; how many connections it took.
    async fn silent_member() -> (
        String,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        tokio::task::JoinHandle<()>,
    ) {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                open.push(socket);
            }
        });
        (url, accepted, held)
    }

    #[tokio::test]
    async fn a_hedged_race_asks_the_other_members_only_when_the_first_is_slow_or_fails() {
        use std::sync::atomic::Ordering::SeqCst;
        let (first, first_asked, first_held) = silent_member().await;
        let (second, second_asked, second_held) = silent_member().await;
        let metrics = Metrics::new(&Lane::ALL, 1).unwrap();
        // Floor 400 ms: the others are asked 200 ms after the first.
        let pool = EtcdPool::new(
            vec![first, second],
            Duration::from_millis(400),
            metrics.etcd(),
        );
        let race = |deadline: Duration| one_wave(&pool, Instant::now() + deadline);
        let watched = async {
            let deadline = Instant::now() + Duration::from_millis(150);
            while Instant::now() < deadline {
                assert_eq!(
                    second_asked.load(SeqCst),
                    0,
                    "the second member was asked before the first had its half floor"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let (result, ()) = tokio::join!(race(Duration::from_millis(350)), watched);
        result.expect_err("nobody answers");
        assert!(first_asked.load(SeqCst) >= 1, "the first member was asked");
        assert!(
            second_asked.load(SeqCst) >= 1,
            "the second member was asked once the first stayed silent"
        );
        first_held.abort();
        second_held.abort();

        // A first member that refuses connections: the others are asked at once.
        let refused = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused_url = format!("http://{}", refused.local_addr().unwrap());
        drop(refused);
        let (second, second_asked, second_held) = silent_member().await;
        let pool = EtcdPool::new(
            vec![refused_url, second],
            Duration::from_secs(2),
            metrics.etcd(),
        );
        let start = Instant::now();
        let asked_at = async {
            while second_asked.load(SeqCst) == 0 && start.elapsed() < Duration::from_secs(3) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            start.elapsed()
        };
        let race = one_wave(&pool, start + Duration::from_millis(1_500));
        let (result, asked_at) = tokio::join!(race, asked_at);
        second_held.abort();
        result.expect_err("nobody answers");
        assert!(
            asked_at < Duration::from_millis(900),
            "the second member was asked {asked_at:?} after a first that refused (half the floor: 1 s)"
        );
    }

    #[tokio::test]
    async fn hedged_races_send_fresh_waves_until_their_deadline_and_then_give_up() {
        // A member that accepts connections and never answers (a paused process): every
        // attempt runs into its timeout, so only fresh waves can reach a member that recovers.
        let (url, _, held) = silent_member().await;
        let metrics = Metrics::new(&Lane::ALL, 1).unwrap();
        let pool = EtcdPool::new(vec![url], Duration::from_millis(200), metrics.etcd());
        let start = Instant::now();
        let until = start + Duration::from_millis(500);
        let result = pool
            .race_hedged(
                multibridge_monitoring::metrics::ETCD_KEEP_ALIVE,
                Duration::from_millis(100),
                until,
                |mut c| async move { c.lease_time_to_live(1, None).await.map(|r| r.ttl()) },
            )
            .await;
        let elapsed = start.elapsed();
        held.abort();
        let e = result.expect_err("nobody answered");
        assert!(e.last.contains("no answer in time"), "{e}");
        assert!(
            elapsed >= Duration::from_millis(500) && elapsed < Duration::from_millis(900),
            "gave up after {elapsed:?}"
        );
        // Waves at 0, 100, ..., 400 ms on the one endpoint; those of 0 and 100 ms time out (at
        // 200 and 300 ms) before the deadline. The first timeout raised the bound (the only
        // endpoint, so every member was slow: 400 ms), so the wave of 200 ms outlasts the
        // deadline and, like the later ones, is dropped uncounted. One race alone would have
        // made one attempt.
        let counted = attempts(&metrics, "timeout") + attempts(&metrics, "error");
        assert!(counted >= 2.0, "only {counted} attempts counted");
        assert!(
            pool.attempt_bound(multibridge_monitoring::metrics::ETCD_KEEP_ALIVE)
                > Duration::from_millis(200),
            "no endpoint answered: the bound was raised"
        );
    }
}
