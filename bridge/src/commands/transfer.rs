//! `multibridge transfer`: request a transfer as a user and follow it to its handle on the other
//! chain, reporting progress (confirmations, votes) on the way.

use super::UserKeyArgs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolCall, SolEvent};
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{
    AssetKind, IERC20, IERC721, Lane, TokenMode, VoteDomain, request_from_log,
};
use serde::Serialize;

use crate::chain::sender::{SendError, Sender, SenderPolicy, Tracked};
use crate::chain::{ChainError, ChainPair, RetryPolicy};
use crate::config::Config;

/// What to transfer.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    /// Direction.
    pub lane: Lane,
    /// Recipient on the destination chain.
    pub to: Address,
    /// What moves.
    pub asset: TransferAsset,
    /// How long to follow the transfer before giving up.
    pub timeout: Duration,
}

/// What a transfer moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferAsset {
    /// Native coin, in wei.
    Native {
        /// Amount.
        amount: U256,
    },
    /// An ERC-20 registered on the source bridge, in its smallest unit.
    Erc20 {
        /// The token on the source chain.
        token: Address,
        /// Amount.
        amount: U256,
    },
    /// One ERC-721 registered on the source bridge; the same id arrives.
    Erc721 {
        /// The collection on the source chain.
        token: Address,
        /// Token id.
        token_id: U256,
    },
}

impl TransferAsset {
    /// The token whose fee applies (`Address::ZERO` for native coin).
    fn fee_token(self) -> Address {
        match self {
            Self::Native { .. } => Address::ZERO,
            Self::Erc20 { token, .. } | Self::Erc721 { token, .. } => token,
        }
    }
}

/// A step of the transfer, for progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferProgress {
    /// The request transaction was mined.
    Requested {
        /// Request nonce.
        nonce: u64,
        /// Request transaction.
        tx: B256,
    },
    /// Waiting for the source block to be deep enough for the relays.
    Confirming {
        /// Blocks on top so far.
        have: u64,
        /// Blocks the relays wait for.
        need: u64,
    },
    /// Votes for the exact payload on the destination.
    Votes {
        /// Counted votes.
        votes: U256,
        /// Votes needed.
        threshold: U256,
    },
}

/// The finished transfer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferOutcome {
    /// Lane.
    pub lane: Lane,
    /// Request nonce.
    pub nonce: u64,
    /// Request transaction on the source.
    pub request_tx: B256,
    /// Source block of the request.
    pub request_block: u64,
    /// Transaction that executed it on the destination.
    pub handle_tx: Option<B256>,
    /// Seconds from the request's receipt to the handle seen.
    pub latency_secs: f64,
    /// When the destination holds the release back (a large amount, or above its outflow
    /// limit): the unix time from which it is paid (by the relays, or anyone); a pauser may
    /// cancel it until then. `None`: paid with the handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_held_until: Option<u64>,
}

/// Why a transfer failed. Nothing is lost: a mined request is handled later by the relays'
/// recovery, and `multibridge claim` can ask for it.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The bridge refuses the request (cap, rate limit, paused, unregistered token, ...).
    #[error("the source bridge refuses the request: {0}")]
    Refused(String),
    /// The token is not registered on the source bridge for this kind of transfer; nothing
    /// was sent.
    #[error("{0}; nothing was sent")]
    WrongToken(String),
    /// The user does not hold the ERC-721 id; nothing was sent.
    #[error(
        "token id {token_id} of {token} is held by {holder}, not by the sender {sender}; nothing was sent"
    )]
    NotHolder {
        /// Collection.
        token: Address,
        /// Id.
        token_id: U256,
        /// Who holds it (the zero address: nobody, it does not exist).
        holder: Address,
        /// The signing user.
        sender: Address,
    },
    /// The request could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The request was mined but not handled in time.
    #[error(
        "request nonce {nonce} (tx {tx}) was not handled within {waited:?}; it stays pending and will be handled when the relays catch up"
    )]
    NotHandledYet {
        /// Request nonce.
        nonce: u64,
        /// Request transaction.
        tx: B256,
        /// How long we followed it.
        waited: Duration,
    },
    /// A transaction of the transfer was sent but not mined in time (it may still be mined).
    #[error(
        "a transaction was sent but not mined within {0:?}; check the source chain before retrying"
    )]
    NotMined(Duration),
    /// The request transaction reverted or vanished.
    #[error("request transaction {0} did not succeed")]
    RequestFailed(B256),
    /// The token's approval of the bridge reverted; nothing was requested.
    #[error(
        "the token refused to approve the bridge (transaction {0} reverted); nothing was requested: check the token's own rules for this sender"
    )]
    ApproveFailed(B256),
}

fn refusal(e: SendError) -> TransferError {
    match e.revert() {
        Some(alloy::transports::RpcError::ErrorResp(p)) => {
            match p.as_decoded_interface_error::<Bridge::BridgeErrors>() {
                Some(decoded) => TransferError::Refused(format!("{decoded:?}")),
                None => TransferError::Refused(p.message.to_string()),
            }
        }
        _ => TransferError::Send(e),
    }
}

async fn mined(
    sender: &mut Sender,
    timeout: Duration,
) -> Result<alloy::rpc::types::TransactionReceipt, TransferError> {
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(Instant::now);
    loop {
        for tracked in sender.poll().await? {
            if let Tracked::Mined { receipt, .. } = tracked {
                return Ok(*receipt);
            }
        }
        if Instant::now() > deadline {
            return Err(TransferError::NotMined(timeout));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Refuse before anything is sent: a token not registered on the source bridge for this kind of
/// transfer, or an ERC-721 id the sender does not hold.
async fn check_asset(
    source: &crate::chain::ChainClient,
    sender: Address,
    asset: TransferAsset,
) -> Result<(), TransferError> {
    let (token, want) = match asset {
        TransferAsset::Native { .. } => return Ok(()),
        TransferAsset::Erc20 { token, .. } => (token, AssetKind::Erc20),
        TransferAsset::Erc721 { token, .. } => (token, AssetKind::Erc721),
    };
    let pair = source
        .bridge_call(
            "tokenPair",
            |b| async move { b.tokenPair(token).call().await },
        )
        .await?;
    if !pair.registered {
        return Err(TransferError::WrongToken(format!(
            "token {token} is not registered on the source bridge"
        )));
    }
    let kind = TokenMode::from_u8(pair.mode).map(TokenMode::kind);
    if kind != Some(want) {
        let hint = match want {
            AssetKind::Erc721 => "it is an ERC-20 pair: give --amount instead of --token-id",
            _ => "it is an ERC-721 pair: give --token-id instead of --amount",
        };
        return Err(TransferError::WrongToken(format!(
            "token {token} is registered for another kind of transfer ({hint})"
        )));
    }
    if let TransferAsset::Erc721 { token, token_id } = asset {
        // ownerOf reverts for an id that does not exist: that is nobody's.
        let holder = source
            .call("ownerOf", |p| async move {
                match IERC721::new(token, p).ownerOf(token_id).call().await {
                    Ok(holder) => Ok(Some(holder)),
                    // A revert (not a failed request) is the collection's answer.
                    Err(e) if e.as_revert_data().is_some() => Ok(None),
                    Err(e) => Err(crate::chain::contract_to_transport(e)),
                }
            })
            .await?
            .unwrap_or(Address::ZERO);
        if holder != sender {
            return Err(TransferError::NotHolder {
                token,
                token_id,
                holder,
                sender,
            });
        }
    }
    Ok(())
}

/// Request the transfer as `user` and follow it until it is handled.
pub async fn transfer(
    config: &Config,
    user: crate::chain::signer::OperatorSigner,
    request: TransferRequest,
    mut progress: impl FnMut(TransferProgress),
) -> Result<TransferOutcome, TransferError> {
    let source_config = config.chains.get(request.lane.source());
    let destination_config = config.chains.get(request.lane.destination());
    let chains = ChainPair::for_command(&config.chains, RetryPolicy::default())?;
    let source = chains.get(request.lane.source()).clone();
    let destination = chains.get(request.lane.destination()).clone();
    let mut sender = Sender::new(source.clone(), user, SenderPolicy::default()).await?;
    let bridge = source_config.bridge;

    let fee_token = request.asset.fee_token();
    let fee = source
        .bridge_call("fee", |b| async move { b.fee(fee_token).call().await })
        .await?;
    check_asset(&source, sender.address(), request.asset).await?;
    // What the bridge pulls is approved first (ERC-20 amount, ERC-721 id); then the request,
    // paying the fee (and, for native coin, the amount).
    let (approve, call, value): (Option<(Address, Bytes)>, Bytes, U256) = match request.asset {
        TransferAsset::Native { amount } => (
            None,
            Bridge::requestNativeTransferCall {
                to: request.to,
                extraData: Bytes::new(),
            }
            .abi_encode()
            .into(),
            amount.saturating_add(fee),
        ),
        TransferAsset::Erc20 { token, amount } => (
            Some((
                token,
                IERC20::approveCall {
                    spender: bridge,
                    amount,
                }
                .abi_encode()
                .into(),
            )),
            Bridge::requestERC20TransferCall {
                token,
                to: request.to,
                amount,
                extraData: Bytes::new(),
            }
            .abi_encode()
            .into(),
            fee,
        ),
        TransferAsset::Erc721 { token, token_id } => (
            Some((
                token,
                IERC721::approveCall {
                    to: bridge,
                    tokenId: token_id,
                }
                .abi_encode()
                .into(),
            )),
            Bridge::requestERC721TransferCall {
                token,
                to: request.to,
                tokenId: token_id,
                extraData: Bytes::new(),
            }
            .abi_encode()
            .into(),
            fee,
        ),
    };
    if let Some((token, data)) = approve {
        sender.send(token, data).await.map_err(refusal)?;
        let approved = mined(&mut sender, Duration::from_secs(60)).await?;
        // The send's estimate ran the approval, but the token's state may change before it is
        // mined; a reverted approval would make the request's own refusal name the allowance.
        if !approved.status() {
            return Err(TransferError::ApproveFailed(approved.transaction_hash));
        }
    }
    sender
        .send_with_value(bridge, call, value)
        .await
        .map_err(refusal)?;
    let receipt = mined(&mut sender, Duration::from_secs(60)).await?;
    if !receipt.status() {
        return Err(TransferError::RequestFailed(receipt.transaction_hash));
    }
    let started = Instant::now();
    let log = receipt
        .inner
        .logs()
        .iter()
        .find(|l| l.topic0() == Some(&Bridge::RequestValueTransfer::SIGNATURE_HASH))
        .ok_or(TransferError::RequestFailed(receipt.transaction_hash))?;
    let observed = request_from_log(log, source.chain_id())
        .map_err(|_| TransferError::RequestFailed(receipt.transaction_hash))?;
    let nonce = observed.nonce;
    progress(TransferProgress::Requested {
        nonce,
        tx: receipt.transaction_hash,
    });

    let domain = VoteDomain {
        src_chain_id: source.chain_id(),
        src_bridge: bridge,
        dst_chain_id: destination.chain_id(),
        dst_bridge: destination_config.bridge,
    };
    let key = domain.vote_key(&observed);
    let threshold = destination.views().threshold().await?;
    let dest_from = destination.head().await?;
    let deadline = started.checked_add(request.timeout).unwrap_or(started);
    let mut last: Option<TransferProgress> = None;
    let mut report = |p: TransferProgress| {
        if last.as_ref() != Some(&p) {
            last = Some(p.clone());
            progress(p);
        }
    };
    loop {
        if destination
            .bridge_call(
                "isHandled",
                |b| async move { b.isHandled(nonce).call().await },
            )
            .await?
        {
            break;
        }
        let head = source.head().await?;
        let safe = source.safe_head(head, source_config.confirmations).await?;
        if safe < observed.srcBlockNumber {
            report(TransferProgress::Confirming {
                have: head.saturating_sub(observed.srcBlockNumber),
                // With `finalized`: how far finality lags the head now.
                need: source_config
                    .confirmations
                    .depth()
                    .unwrap_or_else(|| head.saturating_sub(safe)),
            });
        } else {
            let votes = destination
                .bridge_call(
                    "voteCount",
                    |b| async move { b.voteCount(key).call().await },
                )
                .await?;
            report(TransferProgress::Votes { votes, threshold });
        }
        if Instant::now() > deadline {
            return Err(TransferError::NotHandledYet {
                nonce,
                tx: receipt.transaction_hash,
                waited: request.timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let latency_secs = started.elapsed().as_secs_f64();
    let filter = Filter::new()
        .address(destination_config.bridge)
        .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
        .topic1(B256::from(U256::from(nonce)))
        .from_block(dest_from.saturating_sub(1));
    let handle_tx = destination
        .logs(&filter)
        .await?
        .first()
        .and_then(|l| l.transaction_hash);
    let queued = destination
        .bridge_call("queuedRelease", |b| async move {
            b.queuedRelease(nonce).call().await
        })
        .await?;
    Ok(TransferOutcome {
        lane: request.lane,
        nonce,
        request_tx: receipt.transaction_hash,
        request_block: observed.srcBlockNumber,
        handle_tx,
        latency_secs,
        release_held_until: (queued.releaseAt != 0).then_some(queued.releaseAt),
    })
}

/// `multibridge transfer`.
#[derive(clap::Args)]
pub struct Args {
    /// A relay config file: the chains and bridges to use (its operator key is not used).
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
    /// `main-to-service` or `service-to-main`.
    #[arg(long)]
    lane: multibridge_contracts::Lane,
    /// Recipient on the destination chain.
    #[arg(long)]
    to: alloy::primitives::Address,
    /// Amount in whole units (e.g. 1.5); the token's decimals apply for ERC-20.
    #[arg(
        long,
        required_unless_present = "token_id",
        conflicts_with = "token_id"
    )]
    amount: Option<String>,
    /// Token on the source chain, ERC-20 or ERC-721 as registered on the bridge (default:
    /// native coin).
    #[arg(long)]
    token: Option<alloy::primitives::Address>,
    /// The ERC-721 id to move (with --token naming the collection); the same id arrives.
    #[arg(long, requires = "token")]
    token_id: Option<alloy::primitives::U256>,
    #[command(flatten)]
    key: UserKeyArgs,
    /// Give up following after this many seconds (the transfer stays pending, nothing is lost).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print one JSON object at the end instead of progress lines.
    #[arg(long)]
    json: bool,
    /// On a lane in attested mode, do not wait for the operators to send: fetch their
    /// signatures and send the batch with this key (`multibridge execute`) as soon as they
    /// signed it.
    #[arg(long)]
    self_relay: bool,
}

/// Run `multibridge transfer`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    use crate::commands::transfer::{TransferAsset, TransferProgress, TransferRequest, transfer};

    let config = Config::load(&args.config)?;
    let user = args.key.signer().await?;
    let asset = match (args.token, args.token_id, &args.amount) {
        (Some(token), Some(token_id), _) => TransferAsset::Erc721 { token, token_id },
        (token, _, Some(text)) => {
            let amount = parse_amount(&config, args.lane, token, text).await?;
            match token {
                None => TransferAsset::Native { amount },
                Some(token) => TransferAsset::Erc20 { token, amount },
            }
        }
        (_, _, None) => anyhow::bail!("give --amount, or --token with --token-id for an ERC-721"),
    };
    let json = args.json;
    let (requested, mut nonce_of) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let executor = user.clone();
    let follow = transfer(
        &config,
        user,
        TransferRequest {
            lane: args.lane,
            to: args.to,
            asset,
            timeout: std::time::Duration::from_secs(args.timeout),
        },
        |p| {
            if let TransferProgress::Requested { nonce, .. } = &p {
                let _ = requested.send(*nonce);
            }
            if json {
                return;
            }
            match p {
                TransferProgress::Requested { nonce, tx } => {
                    println!("requested: nonce {nonce}, tx {tx}")
                }
                TransferProgress::Confirming { have, need } => {
                    println!("confirming: {have}/{need} blocks")
                }
                TransferProgress::Votes { votes, threshold } => {
                    println!("votes: {votes}/{threshold}")
                }
            }
        },
    );
    let self_relay = async {
        if !args.self_relay {
            return None;
        }
        let nonce = nonce_of.recv().await?;
        Some(
            crate::commands::execute::execute(
                &config,
                executor,
                args.lane,
                nonce,
                std::time::Duration::from_secs(args.timeout),
            )
            .await,
        )
    };
    let (outcome, executed) = tokio::join!(follow, self_relay);
    let outcome = outcome?;
    match executed {
        Some(Ok(e)) if !json && !e.already_handled => println!(
            "self-relayed: batch of {} sent in tx {} ({} gas)",
            e.batch.len(),
            e.tx.map(|t| t.to_string()).unwrap_or_default(),
            e.gas_used.unwrap_or_default()
        ),
        Some(Err(e)) if !json => {
            println!("self-relay did not send (the transfer was followed anyway): {e:#}")
        }
        _ => {}
    }
    if json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        println!(
            "handled: nonce {} in tx {} after {:.2}s",
            outcome.nonce,
            outcome
                .handle_tx
                .map(|h| h.to_string())
                .unwrap_or_else(|| "?".into()),
            outcome.latency_secs
        );
        if let Some(at) = outcome.release_held_until {
            let wait = at.saturating_sub(crate::store::unix_now());
            println!(
                "release held back by the destination (large amount or above its outflow limit): paid in about {wait}s, at unix {at}; a pauser may cancel it until then"
            );
        }
    }
    Ok(())
}

/// `--amount` in the asset's smallest unit: 18 decimals for native coin, the token's own for an
/// ERC-20.
async fn parse_amount(
    config: &Config,
    lane: multibridge_contracts::Lane,
    token: Option<alloy::primitives::Address>,
    text: &str,
) -> anyhow::Result<alloy::primitives::U256> {
    let decimals = match token {
        None => 18,
        Some(token) => {
            use crate::chain::{ChainPair, RetryPolicy};
            let chains = ChainPair::for_command(&config.chains, RetryPolicy::interactive())?;
            chains
                .get(lane.source())
                .call("decimals", |p| async move {
                    match multibridge_contracts::IERC20::new(token, p)
                        .decimals()
                        .call()
                        .await
                    {
                        Ok(d) => Ok(Some(d)),
                        // The token answered, with a revert: it has no decimals().
                        Err(e) if e.as_revert_data().is_some() => Ok(None),
                        Err(e) => Err(crate::chain::contract_to_transport(e)),
                    }
                })
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "token {token} has no decimals(): if it is an ERC-721, give --token-id instead of --amount; nothing was sent"
                    )
                })?
        }
    };
    Ok(alloy::primitives::utils::parse_units(text, decimals)
        .map_err(|e| anyhow::anyhow!("--amount {text}: {e}"))?
        .get_absolute())
}
