//! Users sending transfers at a steady rate, the way wallets do: each user signs with its own
//! key, keeps its own account nonce per chain and at most `in_flight` transactions unmined per
//! chain; a transaction that fails or whose receipt does not come makes the user re-read its
//! nonce from the chain before the next one (what a wallet does after a reorg or a dropped
//! transaction). Every submission is recorded with its time; the request's bridge nonce is
//! taken from the chain afterwards (by transaction hash), so a reorg cannot confuse the two.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane, TestToken};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::{Rng, Timeline};
use crate::Driver;
use crate::error::DevnetError;
use crate::harness::tx::signing_provider;

/// Gas limit of a request (well above what either request costs).
const REQUEST_GAS: u64 = 300_000;
/// How long a user waits for a receipt before it re-reads its nonce.
const RECEIPT_WAIT: Duration = Duration::from_secs(20);

/// What users send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Asset {
    /// The native coin.
    Native,
    /// The devnet's test token (locked on main, minted on service).
    Erc20,
}

/// The traffic of an experiment.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Devnet user indexes that send.
    pub users: Vec<usize>,
    /// Requests per second of each user.
    pub per_user_rate: f64,
    /// Lanes to send on (picked at random per request).
    pub lanes: Vec<Lane>,
    /// Share of ERC-20 requests (the rest native).
    pub erc20_share: f64,
    /// Unmined transactions a user keeps per chain.
    pub in_flight: usize,
    /// Stop after this many submissions in all (None: until stopped).
    pub limit: Option<usize>,
}

/// One submitted transfer.
#[derive(Debug, Clone, Serialize)]
pub struct Submitted {
    /// Sending user.
    pub user: usize,
    /// Lane.
    pub lane: Lane,
    /// Asset.
    pub asset: Asset,
    /// Recipient.
    pub to: Address,
    /// Amount (wei or token units).
    pub amount: U256,
    /// Transaction hash.
    pub tx: B256,
    /// Seconds since the start when the user sent it.
    pub sent: f64,
    /// Seconds since the start when the user had its receipt (its request on chain): what the
    /// relays could not shorten, whatever they do.
    pub mined: Option<f64>,
    /// Why it failed, if it did (revert, no receipt, node refused it).
    pub error: Option<String>,
}

/// The recipient of user `user`'s `asset` transfers on `lane` in a run with `seed`: fresh
/// addresses (nobody else sends them anything), so a recipient's balance must equal what the
/// source chain says was sent to it.
pub fn recipient(seed: u64, user: usize, lane: Lane, asset: Asset) -> Address {
    let tag = format!("multibridge experiment {seed} user {user} {lane} {asset:?}");
    Address::from_slice(&keccak256(tag.as_bytes())[12..])
}

/// A running load; [`stop`](Load::stop) ends it and returns every submission.
pub struct Load {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Submitted>>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), DevnetError>>>,
}

/// Give `users` wrapped test tokens on the service chain (so they can send ERC-20 back) and
/// approve both bridges for their tokens once (requests then need one transaction each).
/// Waits until the tokens arrived (relays must be running).
pub async fn prepare_users(
    driver: &Driver,
    users: &[usize],
    service_tokens: U256,
) -> Result<(), DevnetError> {
    for user in users {
        let key = driver.user(*user)?;
        // The bridging first: its own approval is exactly its amount, and would replace the
        // unlimited one below.
        if service_tokens > U256::ZERO {
            driver
                .request_erc20(Lane::MainToService, *user, key.address(), service_tokens)
                .await?;
        }
        for role in [ChainRole::Main, ChainRole::Service] {
            let contracts = &driver.chain(role).contracts;
            let provider = driver.wallet_provider(role, &key)?;
            crate::harness::tx::confirm(
                "approve the bridge",
                TestToken::new(contracts.token, provider)
                    .approve(contracts.bridge, U256::MAX)
                    .send()
                    .await,
            )
            .await?;
        }
    }
    if service_tokens > U256::ZERO {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        for user in users {
            let who = driver.user(*user)?.address();
            while driver.token_balance(ChainRole::Service, who).await? < service_tokens {
                if std::time::Instant::now() > deadline {
                    return Err(DevnetError::Invalid(format!(
                        "user {user}'s wrapped tokens did not arrive on the service chain in 120 s"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    Ok(())
}

impl Load {
    /// Start the users of `spec` (they must have run [`prepare_users`] for ERC-20 traffic).
    pub fn start(
        driver: &Driver,
        spec: &LoadSpec,
        rng: &Rng,
        seed: u64,
        timeline: &Timeline,
    ) -> Result<Self, DevnetError> {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let budget = spec
            .limit
            .map(|n| Arc::new(std::sync::atomic::AtomicUsize::new(n)));
        let mut tasks = Vec::new();
        let users = spec.users.len().max(1) as f64;
        for (i, user) in spec.users.iter().enumerate() {
            let key = driver.user(*user)?;
            let mut chains = BTreeMap::new();
            for role in [ChainRole::Main, ChainRole::Service] {
                chains.insert(
                    role,
                    UserChain {
                        provider: signing_provider(&driver.chain(role).rpc_url, &key)?,
                        bridge: driver.chain(role).contracts.bridge,
                        token: driver.chain(role).contracts.token,
                        gate: Arc::new(Semaphore::new(spec.in_flight.max(1))),
                        resync: Arc::new(AtomicBool::new(true)),
                        next_nonce: 0,
                    },
                );
            }
            let sender = UserSender {
                user: *user,
                address: key.address(),
                chains,
                spec: spec.clone(),
                rng: rng.fork(u64::try_from(*user).unwrap_or(0).saturating_add(1)),
                seed,
                timeline: timeline.clone(),
                records: records.clone(),
                stop: stop.clone(),
                budget: budget.clone(),
                // Users start spread over one period, not all in the same block.
                offset: i as f64 / users / spec.per_user_rate.max(0.001),
            };
            tasks.push(tokio::spawn(sender.run()));
        }
        Ok(Self {
            stop,
            records,
            tasks,
        })
    }

    /// Submissions so far.
    pub fn submitted(&self) -> usize {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether every user has stopped (its limit reached).
    pub fn finished(&self) -> bool {
        self.tasks.iter().all(tokio::task::JoinHandle::is_finished)
    }

    /// Stop the users, wait for their last receipts, and return every submission in order.
    pub async fn stop(self) -> Result<Vec<Submitted>, DevnetError> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await
                .map_err(|e| DevnetError::Invalid(format!("user task: {e}")))??;
        }
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        records.sort_by(|a, b| a.sent.total_cmp(&b.sent));
        Ok(records)
    }
}

struct UserChain {
    provider: DynProvider,
    bridge: Address,
    token: Address,
    gate: Arc<Semaphore>,
    /// Re-read the account nonce before the next send (at start, and after a failure).
    resync: Arc<AtomicBool>,
    next_nonce: u64,
}

struct UserSender {
    user: usize,
    address: Address,
    chains: BTreeMap<ChainRole, UserChain>,
    spec: LoadSpec,
    rng: Rng,
    seed: u64,
    timeline: Timeline,
    records: Arc<Mutex<Vec<Submitted>>>,
    stop: Arc<AtomicBool>,
    budget: Option<Arc<std::sync::atomic::AtomicUsize>>,
    offset: f64,
}

impl UserSender {
    async fn run(mut self) -> Result<(), DevnetError> {
        let period = 1.0 / self.spec.per_user_rate.max(0.001);
        let mut next = self.timeline.now() + self.offset;
        let in_flight = u32::try_from(self.spec.in_flight.max(1)).unwrap_or(1);
        while !self.stop.load(Ordering::Relaxed) {
            super::sleep_until(&self.timeline, next).await;
            next += period;
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(budget) = &self.budget
                && budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_err()
            {
                break;
            }
            let lane = self.spec.lanes[self.rng.below(self.spec.lanes.len())];
            let asset = if self.rng.chance(self.spec.erc20_share) {
                Asset::Erc20
            } else {
                Asset::Native
            };
            // Small amounts that differ, so a recipient's balance is a real sum.
            let amount = U256::from(1_000u64 + self.rng.below(9_000) as u64);
            self.send(lane, asset, amount).await?;
        }
        // The last receipts: every permit back.
        for chain in self.chains.values() {
            let _ = tokio::time::timeout(
                RECEIPT_WAIT + Duration::from_secs(5),
                chain.gate.acquire_many(in_flight),
            )
            .await;
        }
        Ok(())
    }

    async fn send(&mut self, lane: Lane, asset: Asset, amount: U256) -> Result<(), DevnetError> {
        let to = recipient(self.seed, self.user, lane, asset);
        let in_flight = u32::try_from(self.spec.in_flight.max(1)).unwrap_or(1);
        let address = self.address;
        let chain = self
            .chains
            .get_mut(&lane.source())
            .ok_or_else(|| DevnetError::Invalid("no source chain".into()))?;
        if chain.resync.swap(false, Ordering::Relaxed) {
            // Every transaction of this chain settled first, then the chain's word.
            let all =
                chain.gate.acquire_many(in_flight).await.map_err(|e| {
                    DevnetError::Invalid(format!("user {}: send gate: {e}", self.user))
                })?;
            drop(all);
            chain.next_nonce = loop {
                match chain.provider.get_transaction_count(address).await {
                    Ok(n) => break n,
                    Err(_) if !self.stop.load(Ordering::Relaxed) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(DevnetError::chain("eth_getTransactionCount", e)),
                }
            };
        }
        let permit = chain
            .gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| DevnetError::Invalid(format!("user {}: send gate: {e}", self.user)))?;
        let (input, value) = match asset {
            Asset::Native => (
                Bridge::requestNativeTransferCall {
                    to,
                    extraData: Bytes::new(),
                }
                .abi_encode(),
                amount,
            ),
            Asset::Erc20 => (
                Bridge::requestERC20TransferCall {
                    token: chain.token,
                    to,
                    amount,
                    extraData: Bytes::new(),
                }
                .abi_encode(),
                U256::ZERO,
            ),
        };
        let request = TransactionRequest::default()
            .with_to(chain.bridge)
            .with_input(input)
            .with_value(value)
            .with_nonce(chain.next_nonce)
            .with_gas_limit(REQUEST_GAS);
        let sent_at = self.timeline.now();
        // A node that never answers must not hold the user (nor the run) forever.
        let result = match tokio::time::timeout(
            RECEIPT_WAIT,
            chain.provider.send_transaction(request),
        )
        .await
        {
            Ok(Ok(pending)) => Ok(pending),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer to eth_sendRawTransaction within {RECEIPT_WAIT:?}"
            )),
        };
        let mut record = Submitted {
            user: self.user,
            lane,
            asset,
            to,
            amount,
            tx: B256::ZERO,
            sent: sent_at,
            mined: None,
            error: None,
        };
        match result {
            Ok(pending) => {
                chain.next_nonce = chain.next_nonce.saturating_add(1);
                record.tx = *pending.tx_hash();
                let index = push_record(&self.records, record);
                let records = self.records.clone();
                let resync = chain.resync.clone();
                let timeline = self.timeline.clone();
                let provider = chain.provider.clone();
                let hash = *pending.tx_hash();
                drop(pending);
                tokio::spawn(async move {
                    let outcome = receipt_of(&provider, hash, RECEIPT_WAIT).await;
                    if matches!(&outcome, Ok(receipt) if receipt.status())
                        && let Some(r) = records
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_mut(index)
                    {
                        r.mined = Some(timeline.now());
                    }
                    let error = match outcome {
                        Ok(receipt) if receipt.status() => None,
                        Ok(receipt) => Some(format!(
                            "reverted: {lane} {asset:?}, gas used {} of {REQUEST_GAS}",
                            receipt.gas_used
                        )),
                        Err(e) => Some(format!("no receipt: {e}")),
                    };
                    if let Some(error) = error {
                        resync.store(true, Ordering::Relaxed);
                        if let Some(r) = records
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_mut(index)
                        {
                            r.error = Some(error);
                        }
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                record.error = Some(format!("not accepted: {e}"));
                chain.resync.store(true, Ordering::Relaxed);
                push_record(&self.records, record);
                drop(permit);
            }
        }
        Ok(())
    }
}

/// Poll for `hash`'s receipt up to `wait`, the way a wallet does. alloy's pending-transaction
/// watcher follows new block numbers, so after an `anvil_reorg` re-mined a transaction under a
/// block number it had already seen, it waited out its timeout (14 of 356 user transactions in
/// one run, each holding its user 20 s). A transaction the node no longer knows for 2 s was
/// dropped: the user sends the same signed transaction again once, as a wallet re-broadcasts a
/// pending one (its later transactions wait behind its nonce: given up, they held the user 20 s
/// and more); dropped again, or refused, the user re-reads its nonce.
async fn receipt_of(
    provider: &DynProvider,
    hash: B256,
    wait: Duration,
) -> Result<alloy::rpc::types::TransactionReceipt, String> {
    use alloy::eips::eip2718::Encodable2718 as _;
    const POLL: Duration = Duration::from_millis(200);
    const DROPPED_AFTER: Duration = Duration::from_secs(2);
    let started = tokio::time::Instant::now();
    let mut unknown_since: Option<tokio::time::Instant> = None;
    // The signed transaction, once the node showed it: what is sent again if it is dropped.
    let mut signed: Option<Vec<u8>> = None;
    loop {
        if let Ok(Some(receipt)) = provider.get_transaction_receipt(hash).await {
            return Ok(receipt);
        }
        match provider.get_transaction_by_hash(hash).await {
            Ok(None) => {
                let since = *unknown_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= DROPPED_AFTER {
                    let again = match signed.take() {
                        Some(raw) => provider.send_raw_transaction(&raw).await.is_ok(),
                        None => false,
                    };
                    if !again {
                        return Err(format!(
                            "dropped: the node has not known it for {DROPPED_AFTER:?}"
                        ));
                    }
                    unknown_since = None;
                }
            }
            Ok(Some(tx)) => {
                unknown_since = None;
                if signed.is_none() {
                    signed = Some(tx.inner.inner().encoded_2718());
                }
            }
            Err(_) => {}
        }
        if started.elapsed() >= wait {
            return Err(format!("not mined within {wait:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Append a submission; returns its index.
fn push_record(records: &Mutex<Vec<Submitted>>, record: Submitted) -> usize {
    let mut records = records.lock().unwrap_or_else(|p| p.into_inner());
    records.push(record);
    records.len().saturating_sub(1)
}
