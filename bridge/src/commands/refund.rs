//! `multibridge refund`: a requester takes its transfer back (issue 53). The request must not be
//! handled on the destination. The command files a refund claim with every operator's lane
//! service; once the request is older than the operators' `refund_after_secs` their relays
//! cancel it on the destination and refund it on the source. Once the destination cancelled it,
//! the command gathers a threshold of the source's operators' refund signatures from the
//! locations they publish and sends the refund with the requester's own key if the operators
//! have not yet — the money never waits for an operator's gas wallet.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes};
use alloy::sol_types::SolCall;
use multibridge_contracts::attestation::pack_signatures;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ClaimData, Lane, Request};
use serde::Serialize;

use super::UserKeyArgs;
use super::claim::{ClaimTarget, FiledClaim, file_claims, nonce_of, services_to_claim};
use crate::chain::lookup::requests_of_tx;
use crate::chain::sender::{Sender, SenderPolicy, Tracked};
use crate::chain::{ChainClient, ChainPair, RetryPolicy};
use crate::config::Config;
use crate::refund::peers::{RefundPeers, RegistryRefundPeers};

/// How a refund ended.
#[derive(Debug, Clone, Serialize)]
pub struct RefundOutcome {
    /// Lane.
    pub lane: Lane,
    /// Request nonce.
    pub nonce: u64,
    /// Refund claims filed.
    pub claims: Vec<FiledClaim>,
    /// Whether the destination cancelled the request.
    pub cancelled: bool,
    /// Whether the source refunded it.
    pub refunded: bool,
    /// The refund transaction this command sent (none: the operators' relays sent it, or it was
    /// refunded before).
    pub refund_tx: Option<B256>,
}

/// Why a refund cannot be had (nothing was sent that could lose anything).
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    /// The config names no service registry.
    #[error(
        "the config has no [registry] section: refund claims and the operators' signatures go through the service registry on the main chain"
    )]
    NoRegistry,
    /// The transaction made no request of the lane's source bridge.
    #[error(
        "transaction {0} emitted no request of this lane's source bridge; check --lane and the hash"
    )]
    NotARequest(B256),
    /// The request was not found on the source.
    #[error("no request with nonce {0} on this lane's source bridge")]
    UnknownNonce(u64),
    /// The key is not the requester's.
    #[error(
        "only the requester may give up its transfer: request {nonce} was made by {requester}, your key is {you}"
    )]
    NotRequester {
        /// Nonce.
        nonce: u64,
        /// Who made the request.
        requester: Address,
        /// The key given.
        you: Address,
    },
    /// Executed on the destination.
    #[error(
        "request {0} was handled on the destination (the transfer went through): there is nothing to refund"
    )]
    Handled(u64),
    /// No operator can be asked.
    #[error(
        "no registered lane service of an operator of this lane: the operators' relays register theirs at start"
    )]
    NoServices,
    /// Not refunded in time; the claim stays filed.
    #[error(
        "not refunded within {waited_secs}s: {state}. The claim stays filed; run the command again later, or `multibridge track --lane {lane} --nonce {nonce}` for what happens next"
    )]
    NotYet {
        /// Lane.
        lane: Lane,
        /// Nonce.
        nonce: u64,
        /// How long it was followed.
        waited_secs: u64,
        /// Where it stands.
        state: String,
    },
    /// A chain could not be read or written.
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    /// A transaction could not be sent.
    #[error(transparent)]
    Send(#[from] crate::chain::sender::SendError),
    /// A claim could not be filed.
    #[error(transparent)]
    Claim(#[from] super::claim::ClaimError),
}

/// The request `target` names on `lane`'s source.
async fn request_of(
    config: &Config,
    source: &ChainClient,
    lane: Lane,
    target: ClaimTarget,
) -> Result<Request, RefundError> {
    let nonce = match target {
        ClaimTarget::SourceTx(tx) => {
            let nonce = nonce_of(source, tx)
                .await
                .map_err(|_| RefundError::NotARequest(tx))?;
            if let Some(found) = requests_of_tx(source, tx)
                .await?
                .and_then(|rs| rs.into_iter().find(|r| r.nonce == nonce))
            {
                return Ok(found);
            }
            nonce
        }
        ClaimTarget::Nonce(nonce) => nonce,
    };
    super::request_at(config, source, lane, nonce)
        .await?
        .ok_or(RefundError::UnknownNonce(nonce))
}

/// Whether the destination handled `nonce`, and whether it cancelled it under `key`, both read
/// at one block (the head read first): a cancel marks the nonce handled in the same
/// transaction, so two reads at "latest" — one answered a block later than the other (a
/// failover, a load-balanced endpoint) — could read "handled" and "not cancelled" and tell the
/// user the transfer went through (seen in the suite with the reads the other way round). Read
/// at one block, "handled and not cancelled" means executed.
async fn handled_then_cancelled(
    destination: &ChainClient,
    nonce: u64,
    key: alloy::primitives::B256,
) -> Result<(bool, bool), RefundError> {
    let at = alloy::eips::BlockId::number(destination.head().await?);
    let handled = destination
        .bridge_call_at_block("isHandled", |b| async move {
            b.isHandled(nonce).block(at).call().await
        })
        .await?;
    let cancelled = destination
        .bridge_call_at_block("cancelledKey", |b| async move {
            b.cancelledKey(nonce).block(at).call().await
        })
        .await?
        == key;
    Ok((handled, cancelled))
}

/// Ask for the refund of `target` as `user` and follow it until refunded or `timeout`.
pub async fn refund(
    config: &Config,
    user: crate::chain::signer::OperatorSigner,
    lane: Lane,
    target: ClaimTarget,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<RefundOutcome, RefundError> {
    let registry = config
        .registry
        .as_ref()
        .ok_or(RefundError::NoRegistry)?
        .address;
    let chains = ChainPair::for_command(&config.chains, RetryPolicy::interactive())?;
    let (source, destination) = (
        chains.get(lane.source()).clone(),
        chains.get(lane.destination()).clone(),
    );
    let started = Instant::now();
    let deadline = started.checked_add(timeout).unwrap_or(started);
    let request = request_of(config, &source, lane, target).await?;
    let nonce = request.nonce;
    let mut outcome = RefundOutcome {
        lane,
        nonce,
        claims: Vec::new(),
        cancelled: false,
        refunded: false,
        refund_tx: None,
    };
    if source.views().is_refunded(nonce).await? {
        progress(&format!("request {nonce} is refunded already"));
        outcome.cancelled = true;
        outcome.refunded = true;
        return Ok(outcome);
    }
    let domain = crate::lane::vote_domain(config, lane);
    let key = domain.vote_key(&request);
    let (handled, cancelled) = handled_then_cancelled(&destination, nonce, key).await?;
    if !cancelled {
        if handled {
            return Err(RefundError::Handled(nonce));
        }
        if request.from != user.address() {
            return Err(RefundError::NotRequester {
                nonce,
                requester: request.from,
                you: user.address(),
            });
        }
        let targets =
            services_to_claim(&chains.main, (&source, &destination), registry, None).await?;
        if targets.is_empty() {
            return Err(RefundError::NoServices);
        }
        let data = ClaimData {
            src_chain_id: source.chain_id(),
            dst_chain_id: destination.chain_id(),
            nonce,
            refund: true,
        };
        outcome.claims = file_claims(
            &chains.main,
            user.clone(),
            registry,
            &targets,
            data,
            deadline,
            &mut progress,
        )
        .await?;
        let made_at = source.block_time(request.srcBlockNumber).await?;
        let after = config.recovery.refund_after_secs;
        progress(&format!(
            "refund asked: the operators cancel request {nonce} on the destination once it is {after}s old (from unix {}) unless it is handled first, then refund it here",
            made_at.saturating_add(after)
        ));
    }
    let peers = RegistryRefundPeers::new(
        crate::attest::collect::RegistryPeers::new(
            chains.main.clone(),
            registry,
            lane,
            domain,
            Duration::from_millis(config.voting.peer_timeout_ms),
            crate::attest::location::LocationPolicy::of(config),
        ),
        domain,
        Duration::from_millis(config.voting.peer_timeout_ms),
        crate::attest::location::LocationPolicy::of(config),
    );
    let mut said_cancelled = false;
    loop {
        if source.views().is_refunded(nonce).await? {
            outcome.cancelled = true;
            outcome.refunded = true;
            progress(&format!("request {nonce} refunded"));
            return Ok(outcome);
        }
        let (handled, cancelled) = handled_then_cancelled(&destination, nonce, key).await?;
        outcome.cancelled = cancelled;
        if cancelled {
            if !said_cancelled {
                progress(&format!(
                    "request {nonce} cancelled on the destination; gathering the operators' refund signatures"
                ));
                said_cancelled = true;
            }
            if let Some(tx) =
                send_refund(&source, &user, &peers, lane, &request, &domain, deadline).await?
            {
                outcome.refund_tx = Some(tx);
                outcome.refunded = true;
                progress(&format!("refund sent with your key: tx {tx}"));
                return Ok(outcome);
            }
        } else if handled {
            return Err(RefundError::Handled(nonce));
        }
        if Instant::now() > deadline {
            return Err(RefundError::NotYet {
                lane,
                nonce,
                waited_secs: timeout.as_secs(),
                state: if cancelled {
                    "cancelled on the destination, the refund waits for a threshold of the operators' signatures".into()
                } else {
                    "not cancelled on the destination yet".into()
                },
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// With a threshold of the source's operators' signatures, send the refund with `user`'s key;
/// `None` while the signatures are short (or the refund would revert: someone else's refund
/// landed first).
async fn send_refund(
    source: &Arc<ChainClient>,
    user: &crate::chain::signer::OperatorSigner,
    peers: &RegistryRefundPeers,
    lane: Lane,
    request: &Request,
    domain: &multibridge_contracts::VoteDomain,
    deadline: Instant,
) -> Result<Option<B256>, RefundError> {
    let views = source.views();
    let operators = views.operators().await?;
    let threshold = usize::try_from(views.threshold().await?).unwrap_or(usize::MAX);
    let digest = domain.refund_digest(domain.vote_key(request));
    let mut signatures = Vec::new();
    for operator in operators {
        if signatures.len() >= threshold {
            break;
        }
        match peers.signature(lane, operator, request.nonce, digest).await {
            Ok(Some(signature)) => signatures.push((operator, signature)),
            Ok(None) => {}
            Err(e) => {
                tracing::info!(%operator, error = %e, "no refund signature from this operator (yet)")
            }
        }
    }
    if signatures.len() < threshold {
        return Ok(None);
    }
    let input: Bytes = Bridge::refundCall {
        r: request.clone(),
        signatures: pack_signatures(&signatures),
    }
    .abi_encode()
    .into();
    let mut sender = Sender::new(source.clone(), user.clone(), SenderPolicy::default()).await?;
    match sender.send(source.bridge(), input).await {
        Ok(_) => {}
        Err(crate::chain::sender::SendError::WouldRevert(why)) => {
            tracing::info!(%why, "the refund would revert now (refunded meanwhile, or waiting for liquidity)");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    loop {
        for tracked in sender.poll().await? {
            if let Tracked::Mined { receipt, .. } = tracked {
                return Ok(receipt.status().then_some(receipt.transaction_hash));
            }
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `multibridge refund`.
#[derive(clap::Args)]
pub struct Args {
    /// A config naming the chains, bridges and registry (a relay config works).
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
    /// Direction of the transfer.
    #[arg(long)]
    lane: Lane,
    /// The request nonce.
    #[arg(long, conflicts_with = "tx", required_unless_present = "tx")]
    nonce: Option<u64>,
    /// The request transaction on the source chain.
    #[arg(long)]
    tx: Option<B256>,
    #[command(flatten)]
    key: UserKeyArgs,
    /// Give up following after this many seconds (the claim stays filed).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print one JSON object at the end instead of progress lines.
    #[arg(long)]
    json: bool,
}

/// Run `multibridge refund`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let user = args.key.signer().await?;
    let target = match (args.nonce, args.tx) {
        (Some(n), _) => ClaimTarget::Nonce(n),
        (None, Some(tx)) => ClaimTarget::SourceTx(tx),
        (None, None) => anyhow::bail!("give --nonce N or --tx HASH"),
    };
    let json = args.json;
    let outcome = refund(
        &config,
        user,
        args.lane,
        target,
        Duration::from_secs(args.timeout),
        |line| {
            if !json {
                println!("{line}");
            }
        },
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        println!(
            "request {} of {} refunded{}",
            outcome.nonce,
            outcome.lane,
            outcome
                .refund_tx
                .map(|t| format!(" by your transaction {t}"))
                .unwrap_or_else(|| " by the operators".into())
        );
    }
    Ok(())
}
