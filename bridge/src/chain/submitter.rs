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
use alloy::signers::local::PrivateKeySigner;
use multibridge_contracts::ChainRole;
use tokio::sync::{mpsc, oneshot, watch};

use super::ChainClient;
use super::sender::{SendError, Sender, SenderPolicy, Sent, Tracked};
use crate::leadership::fence::Fence;

/// How the gas limit of a job is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GasPlan {
    /// The node's estimate plus this many percent.
    Estimate {
        /// Percent added.
        margin_percent: u64,
    },
}

/// A transaction a client wants sent with the signer's key.
#[derive(Debug, Clone)]
pub struct Job {
    /// Contract called.
    pub to: Address,
    /// Calldata.
    pub input: Bytes,
    /// Gas sizing.
    pub gas: GasPlan,
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

/// Something that sends jobs: the real submitter, or a fake in unit tests.
pub trait Submit: Send + Sync {
    /// Send `job`; `Ok` once a node took it (or may have: see [`Sender`]).
    fn submit(&self, job: Job) -> impl Future<Output = Result<Sent, SubmitError>> + Send;
}

type ClientId = u64;

struct Command {
    client: ClientId,
    job: Job,
    reply: oneshot::Sender<Result<Sent, SubmitError>>,
}

/// The clients' event channels, shared by the handle (which adds them) and the task.
type Clients = Arc<Mutex<HashMap<ClientId, mpsc::UnboundedSender<JobEvent>>>>;

/// A writer of the signer's transactions on one chain.
#[derive(Clone)]
pub struct SubmitClient {
    id: ClientId,
    chain: ChainRole,
    commands: mpsc::Sender<Command>,
}

impl Submit for SubmitClient {
    async fn submit(&self, job: Job) -> Result<Sent, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command {
                client: self.id,
                job,
                reply,
            })
            .await
            .map_err(|_| SubmitError::Stopped(self.chain))?;
        answer.await.map_err(|_| SubmitError::Stopped(self.chain))?
    }
}

/// Where clients come from.
#[derive(Clone)]
pub struct SubmitterHandle {
    chain: ChainRole,
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
                chain: self.chain,
                commands: self.commands.clone(),
            },
            receiver,
        )
    }
}

/// How often transactions in flight are checked.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// The submitter task of one (chain, signer).
pub struct Submitter {
    chain: Arc<ChainClient>,
    signer: PrivateKeySigner,
    policy: SenderPolicy,
    fence: Fence,
    term: watch::Receiver<bool>,
    commands: mpsc::Receiver<Command>,
    clients: Clients,
    /// The current term's sender (built at its first send).
    sender: Option<Sender>,
    /// Transaction nonce → the client that sent it (this term).
    owners: BTreeMap<u64, (ClientId, u64)>,
}

impl Submitter {
    /// A submitter for `signer` on `chain`, sending under `fence` while `term` (the leadership
    /// of the lane whose votes go to this chain) is held.
    pub fn new(
        chain: Arc<ChainClient>,
        signer: PrivateKeySigner,
        policy: SenderPolicy,
        fence: Fence,
        term: watch::Receiver<bool>,
    ) -> (Self, SubmitterHandle) {
        let (commands_tx, commands) = mpsc::channel(16);
        let clients: Clients = Arc::default();
        let handle = SubmitterHandle {
            chain: chain.role(),
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
            },
            handle,
        )
    }

    /// Serve jobs until every client and the handle are gone.
    pub async fn run(mut self) {
        self.term.borrow_and_update();
        let mut term_open = true;
        loop {
            let polling = !self.owners.is_empty();
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
                        let result = self.submit(command.client, command.job).await;
                        let _ = command.reply.send(result);
                    }
                    None => return,
                },
                () = tokio::time::sleep(POLL_EVERY), if polling => self.poll().await,
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

    async fn submit(&mut self, client: ClientId, job: Job) -> Result<Sent, SubmitError> {
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
        let Some(sender) = self.sender.as_mut() else {
            return Err(SubmitError::Stopped(self.chain.role()));
        };
        let call = sender.call(job.to, job.input, U256::ZERO);
        let gas_limit = match job.gas {
            GasPlan::Estimate { margin_percent } => {
                let estimate = sender.estimate(&call).await?;
                estimate.saturating_add(estimate.saturating_mul(margin_percent) / 100)
            }
        };
        let sent = sender.send_call(call, gas_limit).await?;
        self.owners.insert(sent.nonce, (client, gas_limit));
        self.chain
            .metrics()
            .signer_nonce
            .set(i64::try_from(sender.next_nonce()).unwrap_or(i64::MAX));
        Ok(sent)
    }

    async fn poll(&mut self) {
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
            };
            if !matches!(event, JobEvent::Replaced { .. }) {
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
