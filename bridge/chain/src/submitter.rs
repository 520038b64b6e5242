//! One submitter per (chain, signer): the only task that sends transactions with the operator's
//! key on a chain. It owns the [`Sender`] (the nonce sequence, fees, replacements) and serves
//! every writer of that key — the voter of the lane that writes to the chain and the registry
//! sync — over a channel, reporting what happens to each transaction back to the client that
//! asked for it. Nothing else can consume one of the key's nonces, so "one sender per (chain,
//! signer)" holds by construction instead of by convention.
//!
//! Terms: the submitter sends under the lease of the lane whose votes go to its chain (with
//! etcd; standalone it always may). Whenever that lane's leadership changes, the old term's
//! transactions are reported [`JobEvent::Abandoned`] and the nonce sequence is rebuilt from the
//! chain before the next send. The fence is checked immediately before every broadcast attempt
//! (in [`Sender`]), so a replica that lost its lease sends nothing whatever it was doing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::types::TransactionReceipt;
use multibridge_contracts::ChainRole;
use tokio::sync::{mpsc, oneshot, watch};

use super::sender::{SendError, Sender, SenderPolicy, Sent, Tracked, call_request, estimate_gas};
use super::{ChainClient, ChainError};
use crate::fence::Fence;

/// How the gas limit of a job is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GasPlan {
    /// The node's estimate plus this many percent.
    Estimate {
        /// Percent added.
        margin_percent: u64,
    },
    /// A vote (or an execution) on `bridge`: it may only record the vote or, if other
    /// operators' votes land first, execute the transfers. The executing path is simulated —
    /// the bridge's threshold overridden to one, so every open item executes; it does all the
    /// recording path does and more (see `vote_gas`) — plus the margin for what changes between the simulation and the block,
    /// plus `item_gas`: the worst case of one item of the batch, which the bridge requires left
    /// before every item (`ITEM_GAS`, or `NATIVE_ITEM_GAS` for a batch of native items only:
    /// [`multibridge_contracts::item_gas`]). No simulation is trusted for what a recipient or token may do on
    /// chain (it runs at gas price 0; a callee can tell): whatever happens, an item that does not
    /// fit is skipped by the bridge, never run out of gas (audit NEW-H1). Plus the bounded
    /// lowerHandleNonce advance other operators' handles may leave to this vote
    /// ([`multibridge_contracts::LOWER_ADVANCE_GAS`]).
    Vote {
        /// The destination bridge.
        bridge: Address,
        /// Percent added.
        margin_percent: u64,
        /// What one item of the batch needs left at its start to execute.
        item_gas: u64,
    },
    /// A vote on `bridge` planned by what it does now: expected to record only (the operator's
    /// committee rank comes before the deciding vote's; issue 54: a recording vote planned for
    /// execution reserved twice the block space it used), or a deciding vote while the
    /// destination's blocks are full. Simulated as it is against the latest state: if it only
    /// records there, its gas plus the bridge's `RECORD_GAS` (the worst case of one record,
    /// which the bridge requires left before every vote item); if it executes there, its gas
    /// plus `item_gas` and the lowerHandleNonce advance (not the gas of executing every item,
    /// which [`GasPlan::Vote`] plans). No margin: the headroom is far above what the last item
    /// uses and covers what the simulation misses (the margin applies only where the
    /// simulation fails and the deciding plan is used). Should more of its items
    /// reach the threshold before it lands, those that would execute without `item_gas` left
    /// are skipped by the bridge (`GasBudgetTooLow`), never run out of gas, and the voter votes
    /// them again as the deciding vote.
    Record {
        /// The destination bridge.
        bridge: Address,
        /// Percent added where the vote cannot be simulated as it is and the deciding plan is
        /// used.
        margin_percent: u64,
        /// What one item of the batch needs left at its start to execute (the deciding plan's
        /// headroom, should it be planned as one).
        item_gas: u64,
    },
    /// `executeQueuedRelease`: the node's estimate plus the bridge's `RELEASE_GAS`, the worst
    /// case of the release it makes (which the bridge requires left before it).
    Release,
}

/// A transaction a client wants sent with the signer's key, its gas limit already chosen
/// ([`Submit::estimate`]).
#[derive(Debug, Clone)]
pub struct Job {
    /// Contract called.
    pub to: Address,
    /// Calldata.
    pub input: Bytes,
    /// Gas limit.
    pub gas_limit: u64,
    /// Bid a slightly higher tip than the market's, so that in a block holding other
    /// operators' votes of the same requests this one is ordered first (a recording vote:
    /// landing after the deciding one, it would decide with a recording vote's gas).
    pub lead: bool,
}

/// What happened to a transaction after [`SubmitClient::submit`] returned.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// Mined (successfully or reverted: see the receipt).
    Mined {
        /// The transaction's nonce.
        nonce: u64,
        /// The receipt of whichever of its versions was mined.
        receipt: Box<TransactionReceipt>,
        /// The gas limit it was sent with.
        gas_limit: u64,
    },
    /// Re-sent with higher fees under a new hash.
    Replaced {
        /// The transaction's nonce.
        nonce: u64,
        /// The new hash.
        hash: B256,
    },
    /// Stuck at the fee cap: re-broadcast as it was (see [`Tracked::AtFeeCap`]); still tracked.
    AtFeeCap {
        /// The transaction's nonce.
        nonce: u64,
        /// The max fee per gas it bids (wei).
        max_fee_per_gas: u128,
    },
    /// Its nonce was consumed by a transaction this submitter does not know.
    Superseded {
        /// The transaction's nonce.
        nonce: u64,
    },
    /// The term it was sent in ended before it was seen mined: what it was meant to do must be
    /// re-checked on the chain.
    Abandoned {
        /// The transaction's nonce.
        nonce: u64,
    },
}

/// Why a job was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The sender refused or failed (would revert, fenced, unfunded, unreachable, ...).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The submitter task is gone (the relay is stopping).
    #[error("the {0} submitter stopped")]
    Stopped(ChainRole),
}

impl SubmitError {
    /// Whether the same job may be sent later without a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Send(e) => e.is_retryable(),
            Self::Stopped(_) => false,
        }
    }
}

/// Estimate a call of `input` to `to` with `margin_percent` on top, then send it (the
/// occasional transactions: registry writes, backup logs).
pub async fn send_estimated(
    submit: &impl Submit,
    to: Address,
    input: Bytes,
    margin_percent: u64,
) -> Result<Sent, SubmitError> {
    send_planned(submit, to, input, GasPlan::Estimate { margin_percent }).await
}

/// Plan the gas of a call of `input` to `to` as `plan` says, then send it.
pub async fn send_planned(
    submit: &impl Submit,
    to: Address,
    input: Bytes,
    plan: GasPlan,
) -> Result<Sent, SubmitError> {
    let gas_limit = submit.estimate(to, input.clone(), plan).await?;
    submit
        .submit(Job {
            to,
            input,
            gas_limit,
            lead: false,
        })
        .await
}

/// Something that sends jobs: the real submitter, or a fake in unit tests.
pub trait Submit: Send + Sync {
    /// The gas limit to send a call of `input` to `to` with, as `plan` says; a call that would
    /// revert is [`SendError::WouldRevert`]. Read-only: estimates of several jobs may run at once.
    fn estimate(
        &self,
        to: Address,
        input: Bytes,
        plan: GasPlan,
    ) -> impl Future<Output = Result<u64, SubmitError>> + Send;
    /// Send `job`; `Ok` once a node took it (or may have: see [`Sender`]).
    fn submit(&self, job: Job) -> impl Future<Output = Result<Sent, SubmitError>> + Send;
}

type ClientId = u64;

struct Command {
    client: ClientId,
    job: Job,
    reply: oneshot::Sender<Result<Sent, SubmitError>>,
    /// When the client asked.
    queued: std::time::Instant,
}

/// The clients' event channels, shared by the handle (which adds them) and the task.
type Clients = Arc<Mutex<HashMap<ClientId, mpsc::UnboundedSender<JobEvent>>>>;

/// A writer of the signer's transactions on one chain.
#[derive(Clone)]
pub struct SubmitClient {
    id: ClientId,
    chain: Arc<ChainClient>,
    from: Address,
    commands: mpsc::Sender<Command>,
}

impl SubmitClient {
    /// The estimate of `call` as `plan` says, with the margin and headroom to add to it.
    async fn plan(
        &self,
        call: &alloy::rpc::types::TransactionRequest,
        plan: GasPlan,
    ) -> Result<(u64, u64, u64), SubmitError> {
        Ok(match plan {
            GasPlan::Estimate { margin_percent } => (
                estimate_gas(&self.chain, call, None).await?,
                margin_percent,
                0,
            ),
            GasPlan::Vote {
                bridge,
                margin_percent,
                item_gas,
            } => (
                vote_gas(&self.chain, bridge, call).await?,
                margin_percent,
                item_gas.saturating_add(multibridge_contracts::LOWER_ADVANCE_GAS),
            ),
            GasPlan::Record {
                bridge,
                margin_percent,
                item_gas,
            } => match simulated_gas(&self.chain, call, bridge, None).await? {
                // Planned by what it does there, without the margin (`by_simulation`).
                Simulated::Used { gas, executes } => (gas, 0, by_simulation(executes, item_gas)),
                // It cannot be simulated as it is: a deciding vote's plan.
                _ => (
                    vote_gas(&self.chain, bridge, call).await?,
                    margin_percent,
                    item_gas.saturating_add(multibridge_contracts::LOWER_ADVANCE_GAS),
                ),
            },
            GasPlan::Release => (
                estimate_gas(&self.chain, call, None).await?,
                0,
                multibridge_contracts::RELEASE_GAS,
            ),
        })
    }
}

impl Submit for SubmitClient {
    async fn estimate(&self, to: Address, input: Bytes, plan: GasPlan) -> Result<u64, SubmitError> {
        let call = call_request(&self.chain, self.from, to, input, U256::ZERO);
        // What the sender prices the job by (the latest block and the suggested tip, shared once
        // a block) is read while the job is simulated, so the send waits for neither: on a
        // hub's service chain, where a lane's vote is the only send of its block, those were
        // two more round trips between a request and its vote (issue 54). The estimate does not
        // wait for them (a plan that fails fast fails at once; a slow endpoint delays only the
        // send, which needs them anyway).
        let chain = self.chain.clone();
        tokio::spawn(async move { chain.warm_fee_reads().await });
        let (estimate, margin_percent, headroom) = self.plan(&call, plan).await?;
        Ok(estimate
            .saturating_add(estimate.saturating_mul(margin_percent) / 100)
            .saturating_add(headroom))
    }

    async fn submit(&self, job: Job) -> Result<Sent, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command {
                client: self.id,
                job,
                reply,
                queued: std::time::Instant::now(),
            })
            .await
            .map_err(|_| SubmitError::Stopped(self.chain.role()))?;
        answer
            .await
            .map_err(|_| SubmitError::Stopped(self.chain.role()))?
    }
}

/// The headroom of a vote planned by what its simulation at `latest` does
/// ([`GasPlan::Record`]): `RECORD_GAS` if it only records there; one item's worst case
/// (`item_gas`) and the lowerHandleNonce advance if it executes there. Items that become
/// executable before it lands cost more than their records; those that no longer fit are
/// skipped by the bridge (`GasBudgetTooLow`) and voted again as deciding.
///
/// No margin on top (issue 54): the headroom the bridge requires left before the last item is
/// far above what that item uses (a record ~25k against 100k; a native execution ~35k against
/// 270k), and that difference absorbs what the simulation misses. Should an item's check fail
/// all the same, the item is skipped, never run out of gas, and voted again; a margin would only
/// keep block space from every other transaction.
fn by_simulation(executes: bool, item_gas: u64) -> u64 {
    if executes {
        item_gas.saturating_add(multibridge_contracts::LOWER_ADVANCE_GAS)
    } else {
        multibridge_contracts::RECORD_GAS
    }
}

/// Where clients come from.
#[derive(Clone)]
pub struct SubmitterHandle {
    chain: Arc<ChainClient>,
    from: Address,
    commands: mpsc::Sender<Command>,
    clients: Clients,
    next_id: Arc<AtomicU64>,
}

impl SubmitterHandle {
    /// A new client and the channel its transactions' events arrive on.
    pub fn client(&self) -> (SubmitClient, mpsc::UnboundedReceiver<JobEvent>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (events, receiver) = mpsc::unbounded_channel();
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, events);
        (
            SubmitClient {
                id,
                chain: self.chain.clone(),
                from: self.from,
                commands: self.commands.clone(),
            },
            receiver,
        )
    }
}

/// Most jobs sent in one round (the channel holds no more).
const MAX_ROUND: usize = 64;

/// How often transactions in flight are checked.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// The instant `d` from now.
fn after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d).unwrap_or(now)
}

/// The submitter task of one (chain, signer).
pub struct Submitter {
    chain: Arc<ChainClient>,
    signer: crate::signer::OperatorSigner,
    policy: SenderPolicy,
    fence: Fence,
    term: watch::Receiver<bool>,
    commands: mpsc::Receiver<Command>,
    clients: Clients,
    /// The current term's sender (built at its first send).
    sender: Option<Sender>,
    /// Transaction nonce → the client that sent it (this term).
    owners: BTreeMap<u64, (ClientId, u64)>,
    /// Build the sender (read the key's nonce) when the task starts, not at the first job.
    warm: bool,
}

impl Submitter {
    /// A submitter for `signer` on `chain`, sending under `fence` while `term` (the leadership
    /// of the lane whose votes go to this chain) is held.
    pub fn new(
        chain: Arc<ChainClient>,
        signer: crate::signer::OperatorSigner,
        policy: SenderPolicy,
        fence: Fence,
        term: watch::Receiver<bool>,
    ) -> (Self, SubmitterHandle) {
        let (commands_tx, commands) = mpsc::channel(MAX_ROUND);
        let clients: Clients = Arc::default();
        let handle = SubmitterHandle {
            chain: chain.clone(),
            from: signer.address(),
            commands: commands_tx,
            clients: clients.clone(),
            next_id: Arc::new(AtomicU64::new(0)),
        };
        (
            Self {
                chain,
                signer,
                policy,
                fence,
                term,
                commands,
                clients,
                sender: None,
                owners: BTreeMap::new(),
                warm: false,
            },
            handle,
        )
    }

    /// Read the key's nonce when the task starts, so its first job is sent without that read
    /// (the guardian's pause, which must land within two blocks of a forged release, and may
    /// come days after the start). A failed read is retried at the first job.
    pub fn warm(mut self) -> Self {
        self.warm = true;
        self
    }

    /// Serve jobs until every client and the handle are gone.
    pub async fn run(mut self) {
        self.term.borrow_and_update();
        if self.warm
            && *self.term.borrow()
            && let Err(e) = self.ensure_sender().await
        {
            tracing::warn!(error = %e, "cannot read the key's nonce yet; read again at the first transaction");
        }
        let mut term_open = true;
        // Transactions in flight are checked every POLL_EVERY even while jobs keep arriving (a
        // dropped or priced-out one blocks everything the key sends after it).
        let mut next_poll = tokio::time::Instant::now();
        loop {
            let polling = !self.owners.is_empty();
            if polling && tokio::time::Instant::now() >= next_poll {
                self.poll_in_flight().await;
                next_poll = after(POLL_EVERY);
                continue;
            }
            if !polling {
                next_poll = after(POLL_EVERY);
            }
            tokio::select! {
                // A change of leadership first: no job sent after it may use the old term.
                biased;
                changed = self.term.changed(), if term_open => {
                    match changed {
                        Ok(()) => self.end_term(),
                        // The lane's campaign is gone (the relay stops): the fence alone rules.
                        Err(_) => term_open = false,
                    }
                }
                command = self.commands.recv() => match command {
                    Some(command) => {
                        // Whatever else waits goes in the same round (one job per client: each
                        // waits for its answer before it asks again).
                        let mut round = vec![command];
                        while round.len() < MAX_ROUND
                            && let Ok(more) = self.commands.try_recv()
                        {
                            round.push(more);
                        }
                        self.serve(round).await;
                    }
                    None => return,
                },
                () = tokio::time::sleep_until(next_poll), if polling => {}
            }
        }
    }

    /// The lane's leadership changed: what is in flight belongs to the old term.
    fn end_term(&mut self) {
        if self.sender.take().is_some() {
            tracing::info!(
                in_flight = self.owners.len(),
                "term ended: transactions in flight are re-checked by their senders"
            );
        }
        for (nonce, (client, _)) in std::mem::take(&mut self.owners) {
            self.report(client, JobEvent::Abandoned { nonce });
        }
    }

    /// Build the term's sender from the chain (its nonce) unless built.
    async fn ensure_sender(&mut self) -> Result<(), SubmitError> {
        if self.sender.is_none() {
            let sender = Sender::new(self.chain.clone(), self.signer.clone(), self.policy)
                .await?
                .with_fence(self.fence.clone());
            tracing::info!(
                next_nonce = sender.next_nonce(),
                "nonce sequence rebuilt from the chain"
            );
            self.sender = Some(sender);
        }
        Ok(())
    }

    /// Send the jobs of one round at once ([`Sender::send_round`]) and answer each client.
    async fn serve(&mut self, round: Vec<Command>) {
        let chain = self.chain.clone();
        let metrics = chain.metrics();
        for command in &round {
            metrics
                .queue_wait
                .observe(command.queued.elapsed().as_secs_f64());
        }
        let mut round = round.into_iter();
        if let Err(e) = self.ensure_sender().await {
            // No sender this term yet: each job finds out on its own.
            if let Some(first) = round.next() {
                let _ = first.reply.send(Err(e));
            }
            for command in round {
                let result = match self.ensure_sender().await {
                    Ok(()) => self.send_one(command.client, command.job).await,
                    Err(e) => Err(e),
                };
                let _ = command.reply.send(result);
            }
            return;
        }
        let Some(sender) = self.sender.as_mut() else {
            for command in round {
                let _ = command
                    .reply
                    .send(Err(SubmitError::Stopped(self.chain.role())));
            }
            return;
        };
        let commands: Vec<Command> = round.collect();
        let calls = commands
            .iter()
            .map(|c| {
                let call = sender.call(c.job.to, c.job.input.clone(), U256::ZERO);
                (call, c.job.gas_limit, c.job.lead)
            })
            .collect();
        let results = sender.send_round(calls).await;
        metrics
            .signer_nonce
            .set(i64::try_from(sender.next_nonce()).unwrap_or(i64::MAX));
        for (command, result) in commands.into_iter().zip(results) {
            if let Ok(sent) = &result {
                self.owners
                    .insert(sent.nonce, (command.client, command.job.gas_limit));
            }
            let _ = command.reply.send(result.map_err(SubmitError::from));
        }
    }

    /// Send one job (the sender built).
    async fn send_one(&mut self, client: ClientId, job: Job) -> Result<Sent, SubmitError> {
        let Some(sender) = self.sender.as_mut() else {
            return Err(SubmitError::Stopped(self.chain.role()));
        };
        let call = sender.call(job.to, job.input, U256::ZERO);
        let sent = sender.send_call(call, job.gas_limit, job.lead).await?;
        self.owners.insert(sent.nonce, (client, job.gas_limit));
        self.chain
            .metrics()
            .signer_nonce
            .set(i64::try_from(sender.next_nonce()).unwrap_or(i64::MAX));
        Ok(sent)
    }

    async fn poll_in_flight(&mut self) {
        let Some(sender) = self.sender.as_mut() else {
            return;
        };
        let tracked = match sender.poll().await {
            Ok(tracked) => tracked,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check transactions in flight; retrying");
                return;
            }
        };
        for tracked in tracked {
            let nonce = tracked.nonce();
            let Some(&(client, gas_limit)) = self.owners.get(&nonce) else {
                continue;
            };
            let event = match tracked {
                Tracked::Mined { nonce, receipt } => JobEvent::Mined {
                    nonce,
                    receipt,
                    gas_limit,
                },
                Tracked::Replaced { nonce, hash } => JobEvent::Replaced { nonce, hash },
                Tracked::Superseded { nonce } => JobEvent::Superseded { nonce },
                Tracked::AtFeeCap {
                    nonce,
                    max_fee_per_gas,
                } => JobEvent::AtFeeCap {
                    nonce,
                    max_fee_per_gas,
                },
            };
            if !matches!(event, JobEvent::Replaced { .. } | JobEvent::AtFeeCap { .. }) {
                self.owners.remove(&nonce);
            }
            self.report(client, event);
        }
    }

    fn report(&self, client: ClientId, event: JobEvent) {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(events) = clients.get(&client) {
            let _ = events.send(event);
        }
    }
}

/// Gas a vote uses on whichever path it takes, from one execution through `eth_simulateV1` as
/// if this vote were the deciding one (the bridge's threshold overridden to one): that path
/// records the vote as the other does and then executes, so it costs at least as much, except
/// for an item whose release cannot be made now — skipped there, recorded on chain. Such an item
/// alone (a waiting request goes alone) makes the deciding simulation revert, and the recording
/// path is simulated instead; in a batch the difference is a vote record (~25k gas), which the
/// plan's item-gas headroom covers, and an item short of gas is skipped by the bridge, never
/// run out of gas. One simulation per vote, not two: on a busy lane the simulations are most
/// of what the relays ask of the destination node. A node without `eth_simulateV1` gets
/// `eth_estimateGas` instead (each a binary search of many executions). What the callees may
/// do beyond the simulation is the bridge's item gas, added by the plan.
async fn vote_gas(
    chain: &ChainClient,
    bridge: Address,
    call: &alloy::rpc::types::TransactionRequest,
) -> Result<u64, SendError> {
    use alloy::rpc::types::state::{AccountOverride, StateOverride};

    let slot = U256::from(multibridge_contracts::THRESHOLD_SLOT);
    // As of the head (the voter's pre-check may have read it already: `warm_vote_reads`).
    let current = chain
        .threshold_slot(bridge)
        .await
        .map_err(SendError::Chain)?;
    let deciding = multibridge_contracts::with_threshold_one(current);
    let overrides: StateOverride = [(
        bridge,
        AccountOverride::default().with_state_diff([(B256::from(slot), deciding)]),
    )]
    .into_iter()
    .collect();
    Ok(
        match simulated_gas(chain, call, bridge, Some(overrides.clone())).await? {
            Simulated::Used { gas: executing, .. } => executing,
            // Not executable now (liquidity short, a pair locked): a vote that is only recorded.
            Simulated::Reverted => match simulated_gas(chain, call, bridge, None).await? {
                Simulated::Used { gas: plain, .. } => plain,
                // The node's own words for a refusal (the voter decodes them): estimate it.
                Simulated::Reverted | Simulated::Unsupported => {
                    return estimate_gas(chain, call, None).await;
                }
            },
            Simulated::Unsupported => {
                let plain = estimate_gas(chain, call, None).await?;
                let executing = match estimate_gas(chain, call, Some(&overrides)).await {
                    Ok(gas) => gas,
                    Err(SendError::Chain(_) | SendError::WouldRevert(_)) => plain,
                    Err(e) => return Err(e),
                };
                plain.max(executing)
            }
        },
    )
}

/// What one simulated execution said.
enum Simulated {
    /// Succeeded.
    Used {
        /// Gas used (before refunds).
        gas: u64,
        /// Whether it executed a transfer (a `HandleValueTransfer` of the bridge).
        executes: bool,
    },
    /// Reverted.
    Reverted,
    /// The node has no `eth_simulateV1` (or no state overrides in it).
    Unsupported,
}

async fn simulated_gas(
    chain: &ChainClient,
    call: &alloy::rpc::types::TransactionRequest,
    bridge: Address,
    overrides: Option<alloy::rpc::types::state::StateOverride>,
) -> Result<Simulated, SendError> {
    use alloy::providers::Provider;
    use alloy::rpc::types::simulate::{SimBlock, SimulatePayload};
    use alloy::sol_types::SolEvent;

    let payload = SimulatePayload {
        block_state_calls: vec![SimBlock {
            block_overrides: None,
            state_overrides: overrides,
            calls: vec![call.clone()],
        }],
        trace_transfers: false,
        validation: false,
        return_full_transactions: false,
    };
    let result = chain
        .call("eth_simulateV1", |p| {
            let payload = payload.clone();
            async move { p.simulate(&payload).latest().await }
        })
        .await;
    let blocks = match result {
        Ok(blocks) => blocks,
        Err(ChainError::Rejected { .. }) => return Ok(Simulated::Unsupported),
        Err(e) => return Err(SendError::Chain(e)),
    };
    let Some(outcome) = blocks.first().and_then(|b| b.calls.first()) else {
        return Ok(Simulated::Unsupported);
    };
    Ok(if outcome.status {
        let executed = multibridge_contracts::bindings::Bridge::HandleValueTransfer::SIGNATURE_HASH;
        Simulated::Used {
            gas: outcome.max_used_gas.unwrap_or(outcome.gas_used),
            executes: outcome
                .logs
                .iter()
                .any(|l| l.address() == bridge && l.topic0() == Some(&executed)),
        }
    } else {
        Simulated::Reverted
    })
}

#[cfg(test)]
mod tests {
    use super::by_simulation;
    use multibridge_contracts::{LOWER_ADVANCE_GAS, NATIVE_ITEM_GAS, RECORD_GAS};

    #[test]
    fn a_vote_planned_by_its_simulation_reserves_the_bridges_headroom_and_no_margin() {
        // Recording there: the bridge's check before a vote item, nothing more.
        assert_eq!(by_simulation(false, NATIVE_ITEM_GAS), RECORD_GAS);
        // Executing there: one item's worst case and the advance other handles may leave.
        assert_eq!(
            by_simulation(true, NATIVE_ITEM_GAS),
            NATIVE_ITEM_GAS + LOWER_ADVANCE_GAS
        );
    }
}
