//! `multibridge claim`: a user says a transfer is stuck. The claim goes into the service registry
//! against the lane service of every registered operator that has not voted for the request yet;
//! their relays recover that nonce at once. Then the request is followed to its handle.

use super::UserKeyArgs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolCall, SolEvent};
use multibridge_contracts::bindings::{Bridge, ServiceRegistry};
use multibridge_contracts::{ClaimData, Lane, request_from_log};
use serde::Serialize;

use crate::chain::sender::{SendError, Sender, SenderPolicy, Tracked};
use crate::chain::{ChainClient, ChainError, ChainPair, RetryPolicy};
use crate::config::Config;
use crate::registry::registered_services;

/// Which transfer is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimTarget {
    /// By request nonce.
    Nonce(u64),
    /// By the request transaction on the source chain.
    SourceTx(B256),
}

/// One claim filed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FiledClaim {
    /// The operator whose lane service got it.
    pub operator: Address,
    /// The service id.
    pub service: B256,
    /// The `sendClaim` transaction.
    pub tx: B256,
}

/// How the claim ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimOutcome {
    /// Lane.
    pub lane: Lane,
    /// Request nonce.
    pub nonce: u64,
    /// Claims filed (none when the request was already handled).
    pub claims: Vec<FiledClaim>,
    /// Transaction that executed the request, once seen.
    pub handle_tx: Option<B256>,
    /// Seconds from filing to the handle seen.
    pub waited_secs: f64,
}

/// Why a claim could not be filed or followed. Filing nothing loses nothing.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The config names no service registry.
    #[error(
        "the config has no [registry] section: claims go to the service registry on the main chain"
    )]
    NoRegistry,
    /// The transaction is not a request of this lane's source bridge.
    #[error(
        "transaction {0} emitted no request of this lane's source bridge; check --lane and the hash"
    )]
    NotARequest(B256),
    /// The nonce was never assigned.
    #[error("nonce {nonce} was never requested on this lane (next nonce is {request_nonce})")]
    UnknownNonce {
        /// Claimed nonce.
        nonce: u64,
        /// The source's next nonce.
        request_nonce: u64,
    },
    /// Nobody could act on the claim.
    #[error(
        "no registered lane service of an operator that still has to vote for nonce {0}; the operators' relays register theirs at start"
    )]
    NoServices(u64),
    /// A chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A claim transaction could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// Filed, but not handled in time.
    #[error(
        "claim filed for nonce {nonce}, but it was not handled within {waited:?}; the reason the relays report is on their /metrics (multibridge_stuck_requests) and `multibridge status`"
    )]
    NotHandledYet {
        /// Request nonce.
        nonce: u64,
        /// How long we followed it.
        waited: Duration,
    },
}

/// File the claim as `user` and follow the request until it is handled or `timeout` passes.
pub async fn claim(
    config: &Config,
    user: crate::chain::signer::OperatorSigner,
    lane: Lane,
    target: ClaimTarget,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<ClaimOutcome, ClaimError> {
    let registry = config
        .registry
        .as_ref()
        .ok_or(ClaimError::NoRegistry)?
        .address;
    let chains = ChainPair::for_command(&config.chains, RetryPolicy::default())?;
    let source = chains.get(lane.source()).clone();
    let destination = chains.get(lane.destination()).clone();
    let main = chains.main.clone();

    let nonce = match target {
        ClaimTarget::Nonce(n) => n,
        ClaimTarget::SourceTx(hash) => nonce_of(&source, hash).await?,
    };
    let request_nonce = source.views().request_nonce().await?;
    if nonce >= request_nonce {
        return Err(ClaimError::UnknownNonce {
            nonce,
            request_nonce,
        });
    }
    let started = Instant::now();
    if is_handled(&destination, nonce).await? {
        progress(&format!(
            "nonce {nonce} is already handled; no claim needed"
        ));
        return Ok(ClaimOutcome {
            lane,
            nonce,
            claims: Vec::new(),
            handle_tx: handle_tx(&destination, nonce).await?,
            waited_secs: 0.0,
        });
    }

    let targets = services_to_claim(&main, (&source, &destination), registry, Some(nonce)).await?;
    if targets.is_empty() {
        return Err(ClaimError::NoServices(nonce));
    }
    let data = ClaimData {
        src_chain_id: source.chain_id(),
        dst_chain_id: destination.chain_id(),
        nonce,
        refund: false,
    };
    let deadline = started.checked_add(timeout).unwrap_or(started);
    let claims = file_claims(
        &main,
        user,
        registry,
        &targets,
        data,
        deadline,
        &mut progress,
    )
    .await?;
    let filed_at = Instant::now();
    loop {
        if is_handled(&destination, nonce).await? {
            progress(&format!("nonce {nonce} handled"));
            return Ok(ClaimOutcome {
                lane,
                nonce,
                claims,
                handle_tx: handle_tx(&destination, nonce).await?,
                waited_secs: filed_at.elapsed().as_secs_f64(),
            });
        }
        if Instant::now() > deadline {
            return Err(ClaimError::NotHandledYet {
                nonce,
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// File `data` as `user` with each of `targets` (operator, service id), following the claim
/// transactions until mined or `deadline`; the claims mined.
pub(crate) async fn file_claims(
    main: &Arc<ChainClient>,
    user: crate::chain::signer::OperatorSigner,
    registry: Address,
    targets: &[(Address, B256)],
    data: ClaimData,
    deadline: Instant,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<FiledClaim>, ClaimError> {
    let data: Bytes = data.encode().into();
    let mut sender = Sender::new(main.clone(), user, SenderPolicy::default()).await?;
    let mut pending = std::collections::BTreeMap::new();
    for (operator, service) in targets {
        let input: Bytes = ServiceRegistry::sendClaimCall {
            id: *service,
            data: data.clone(),
        }
        .abi_encode()
        .into();
        let sent = sender.send(registry, input).await?;
        pending.insert(sent.nonce, (*operator, *service));
    }
    let mut claims = Vec::new();
    while !pending.is_empty() && Instant::now() < deadline {
        for tracked in sender.poll().await? {
            if let Tracked::Mined {
                nonce: tx_nonce,
                receipt,
            } = tracked
                && let Some((operator, service)) = pending.remove(&tx_nonce)
            {
                progress(&format!(
                    "claim filed with operator {operator} (tx {})",
                    receipt.transaction_hash
                ));
                claims.push(FiledClaim {
                    operator,
                    service,
                    tx: receipt.transaction_hash,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(claims)
}

pub(crate) async fn nonce_of(source: &ChainClient, hash: B256) -> Result<u64, ClaimError> {
    let receipt = source
        .call("eth_getTransactionReceipt", |p| async move {
            p.get_transaction_receipt(hash).await
        })
        .await?
        .ok_or(ClaimError::NotARequest(hash))?;
    let bridge = source.bridge();
    receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.address() == bridge)
        .find(|l| l.topic0() == Some(&Bridge::RequestValueTransfer::SIGNATURE_HASH))
        .and_then(|l| request_from_log(l, source.chain_id()).ok())
        .map(|r| r.nonce)
        .ok_or(ClaimError::NotARequest(hash))
}

async fn is_handled(destination: &ChainClient, nonce: u64) -> Result<bool, ChainError> {
    destination
        .bridge_call(
            "isHandled",
            |b| async move { b.isHandled(nonce).call().await },
        )
        .await
}

async fn handle_tx(destination: &ChainClient, nonce: u64) -> Result<Option<B256>, ChainError> {
    let filter = Filter::new()
        .address(destination.bridge())
        .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
        .topic1(B256::from(U256::from(nonce)))
        .from_block(0);
    Ok(destination
        .logs(&filter)
        .await?
        .first()
        .and_then(|l| l.transaction_hash))
}

/// The lane services (operator, id) in the registry whose operator is registered on the
/// destination and (with `unvoted`) has not voted for that nonce.
pub(crate) async fn services_to_claim(
    main: &ChainClient,
    (source, destination): (&ChainClient, &ChainClient),
    registry: Address,
    unvoted: Option<u64>,
) -> Result<Vec<(Address, B256)>, ChainError> {
    // The lane's own chain ids (a service-to-main lane's destination is the main chain: its
    // source is not).
    let (src, dst) = (source.chain_id(), destination.chain_id());
    let services = registered_services(main, registry).await?;
    let mut out = Vec::new();
    for service in services
        .into_iter()
        .filter(|s| s.serves(src, dst, destination.bridge()))
    {
        let operator = service.meta.operator;
        let views = destination.views();
        if !views.is_operator(operator).await? {
            continue;
        }
        let voted = match unvoted {
            Some(nonce) => {
                views.voting_status(operator, &[nonce]).await?.first()
                    == Some(&multibridge_contracts::NonceState::VotedByUs)
            }
            None => false,
        };
        if !voted {
            out.push((operator, service.id));
        }
    }
    Ok(out)
}

/// `multibridge claim`.
#[derive(clap::Args)]
pub struct Args {
    /// A config naming the chains, bridges and registry (a relay config works).
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
    /// Direction of the stuck transfer.
    #[arg(long)]
    lane: multibridge_contracts::Lane,
    /// The request nonce.
    #[arg(long, conflicts_with = "tx", required_unless_present = "tx")]
    nonce: Option<u64>,
    /// The request transaction on the source chain.
    #[arg(long)]
    tx: Option<alloy::primitives::B256>,
    #[command(flatten)]
    key: UserKeyArgs,
    /// Give up following after this many seconds (the claim stays filed).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Print one JSON object at the end instead of progress lines.
    #[arg(long)]
    json: bool,
}

/// Run `multibridge claim`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    use crate::commands::claim::{ClaimTarget, claim};

    let config = Config::load(&args.config)?;
    let user = args.key.signer().await?;
    let target = match (args.nonce, args.tx) {
        (Some(n), _) => ClaimTarget::Nonce(n),
        (None, Some(tx)) => ClaimTarget::SourceTx(tx),
        (None, None) => anyhow::bail!("give --nonce N or --tx HASH"),
    };
    let json = args.json;
    let outcome = claim(
        &config,
        user,
        args.lane,
        target,
        std::time::Duration::from_secs(args.timeout),
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
            "nonce {} handled in tx {} ({} claim(s) filed, {:.2}s after filing)",
            outcome.nonce,
            outcome
                .handle_tx
                .map(|h| h.to_string())
                .unwrap_or_else(|| "?".into()),
            outcome.claims.len(),
            outcome.waited_secs
        );
    }
    Ok(())
}
