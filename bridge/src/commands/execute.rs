//! `multibridge execute`: complete an attested transfer with the user's own key. The operators'
//! signatures of the request's batch are fetched from the locations they publish in the service
//! registry (each checked to recover to that operator over the digest computed here), and the
//! batch is sent in one `executeAttested` paid by the user — a transfer never waits on the
//! operators' gas wallets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::sol_types::SolCall;
use multibridge_contracts::attestation::{
    batch_blocks, batch_run, pack_signatures, recover_signer,
};
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{Lane, Request};
use serde::Serialize;

use super::UserKeyArgs;
use crate::attest::collect::{PeerSource, RegistryPeers};
use crate::chain::sender::{Sender, SenderPolicy, Tracked};
use crate::chain::{ChainClient, ChainPair, RetryPolicy};
use crate::config::Config;

/// `multibridge execute`.
#[derive(clap::Args)]
pub struct Args {
    /// A relay config file: the chains, bridges and registry to use (its operator key is not
    /// used).
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
    /// `main-to-service` or `service-to-main`.
    #[arg(long)]
    lane: Lane,
    /// The request's nonce on the source chain.
    #[arg(long)]
    nonce: u64,
    #[command(flatten)]
    key: UserKeyArgs,
    /// Give up after this many seconds of waiting for signatures or the receipt.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Print one JSON object at the end.
    #[arg(long)]
    json: bool,
}

/// What `execute` did.
#[derive(Debug, Clone, Serialize)]
pub struct Executed {
    /// The nonce asked for.
    pub nonce: u64,
    /// Whether it was handled already (nothing sent).
    pub already_handled: bool,
    /// The batch's nonces.
    pub batch: Vec<u64>,
    /// Who signed what was sent.
    pub signers: Vec<Address>,
    /// The transaction sent.
    pub tx: Option<B256>,
    /// Gas it used.
    pub gas_used: Option<u64>,
}

/// Run `multibridge execute`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let user = args.key.signer().await?;
    let outcome = execute(
        &config,
        user,
        args.lane,
        args.nonce,
        Duration::from_secs(args.timeout),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else if outcome.already_handled {
        println!("nonce {} is handled already: nothing sent", outcome.nonce);
    } else {
        println!(
            "executed: nonce {} in a batch of {} (nonces {}..={}), signed by {}, tx {} ({} gas)",
            outcome.nonce,
            outcome.batch.len(),
            outcome.batch.first().copied().unwrap_or_default(),
            outcome.batch.last().copied().unwrap_or_default(),
            outcome
                .signers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            outcome.tx.map(|t| t.to_string()).unwrap_or_default(),
            outcome.gas_used.unwrap_or_default(),
        );
    }
    Ok(())
}

/// Wait until source block `block` is final (the relays compose batches from final blocks
/// only), at most until `deadline`.
async fn wait_final(
    source: &ChainClient,
    config: &Config,
    lane: Lane,
    block: u64,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let head = source.head().await?;
        let safe = source
            .safe_head(head, config.chains.get(lane.source()).confirmations)
            .await?;
        if safe >= block {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "source block {block} of the batch is not final yet (the {} chain's final head is {safe}); try again in a few blocks",
                lane.source()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The requests of the attested batch of `nonce`: the run ([`batch_run`]) of its source blocks'
/// requests ([`batch_blocks`]: its own block, or its aligned pair) that holds it, once those
/// blocks are final (waiting until `deadline`).
async fn batch_of(
    source: &ChainClient,
    config: &Config,
    lane: Lane,
    nonce: u64,
    deadline: Instant,
) -> anyhow::Result<Vec<Request>> {
    let request = super::request_at(config, source, lane, nonce)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no request with nonce {nonce} on the {} chain's bridge",
                lane.source()
            )
        })?;
    let block = request.srcBlockNumber;
    let pair = block & !1;
    // The relays compose a batch from final blocks only: the request's own block, and the
    // pair's second one when the first is quiet (known once the first is final).
    wait_final(source, config, lane, block, deadline).await?;
    // Read as the relays' indexers read them (`request_logs`: the log quorum), counted as their
    // stores count them (one per nonce, of its own block).
    let mut requests = requests_in(source, pair, deadline).await?;
    let (from, to) = batch_blocks(block, requests.len());
    if to > pair {
        wait_final(source, config, lane, to, deadline).await?;
        requests.extend(requests_in(source, to, deadline).await?);
    }
    requests.retain(|r| (from..=to).contains(&r.srcBlockNumber));
    let (first, last) = match (requests.first(), requests.last()) {
        (Some(f), Some(l)) => (f.nonce, l.nonce),
        _ => (nonce, nonce),
    };
    let (start, end) = batch_run(first, last, nonce);
    requests.retain(|r| r.nonce >= start && r.nonce < end);
    Ok(requests)
}

/// The requests of source block `block` ([`request_logs`](crate::chain::BridgeViews::request_logs)),
/// read again until `deadline` while the failure may pass (`is_retryable`: the endpoints did
/// not agree on the log quorum, or none answered); the relays' indexers read again every step,
/// and a user's `execute` should not fail on one such answer either.
async fn requests_in(
    source: &ChainClient,
    block: u64,
    deadline: Instant,
) -> anyhow::Result<Vec<Request>> {
    loop {
        match source.views().request_logs(block..=block).await {
            Ok(requests) => return Ok(of_block(requests, block)),
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tracing::warn!(block, error = %e, "reading the batch's requests again");
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(left.min(Duration::from_millis(500))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `requests` as the relays' stores hold those of source block `block`: only that block's, one
/// per nonce, in nonce order. A node that answers a log twice, or one outside the block asked,
/// must not change the pair's count (which decides whether the block is batched alone) nor the
/// batch: the relays sign what their stores hold.
fn of_block(mut requests: Vec<Request>, block: u64) -> Vec<Request> {
    requests.retain(|r| r.srcBlockNumber == block);
    requests.sort_by_key(|r| r.nonce);
    requests.dedup_by_key(|r| r.nonce);
    requests
}

/// Fetch the operators' signatures of `nonce`'s batch and send it with `user`'s key.
pub async fn execute(
    config: &Config,
    user: crate::chain::signer::OperatorSigner,
    lane: Lane,
    nonce: u64,
    timeout: Duration,
) -> anyhow::Result<Executed> {
    let registry = config
        .registry
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the config has no [registry]: the operators' signatures are found at the locations they publish there"))?;
    let chains = ChainPair::for_command(&config.chains, RetryPolicy::interactive())?;
    let (source, destination) = (
        chains.get(lane.source()).clone(),
        chains.get(lane.destination()).clone(),
    );
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(Instant::now);
    let handled = |destination: Arc<ChainClient>| async move {
        destination
            .bridge_call(
                "isHandled",
                |b| async move { b.isHandled(nonce).call().await },
            )
            .await
    };
    let mut outcome = Executed {
        nonce,
        already_handled: false,
        batch: Vec::new(),
        signers: Vec::new(),
        tx: None,
        gas_used: None,
    };
    if handled(destination.clone()).await? {
        outcome.already_handled = true;
        return Ok(outcome);
    }
    let batch = batch_of(&source, config, lane, nonce, deadline).await?;
    outcome.batch = batch.iter().map(|r| r.nonce).collect();
    let domain = crate::lane::vote_domain(config, lane);
    let digest = domain.batch_digest(&batch);
    let first = batch.first().map_or(nonce, |r| r.nonce);
    let operators = destination
        .bridge_call(
            "getOperators",
            |b| async move { b.getOperators().call().await },
        )
        .await?;
    let threshold = destination
        .bridge_call("threshold", |b| async move { b.threshold().call().await })
        .await?;
    let threshold = usize::try_from(threshold).unwrap_or(usize::MAX);
    let peers = RegistryPeers::new(
        chains.main.clone(),
        registry.address,
        lane,
        domain,
        Duration::from_millis(config.voting.peer_timeout_ms),
        crate::attest::location::LocationPolicy::of(config),
    );
    let mut signatures: Vec<(Address, [u8; 65])> = Vec::new();
    while signatures.len() < threshold {
        for operator in &operators {
            if signatures.iter().any(|(a, _)| a == operator) {
                continue;
            }
            let page = match peers.fetch(lane, *operator, first).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::info!(%operator, error = %e, "no signatures from this operator (yet)");
                    continue;
                }
            };
            if let Some(att) = page.iter().find(|a| a.first_nonce == first) {
                if att.digest == digest
                    && recover_signer(&digest, &att.signature) == Some(*operator)
                {
                    let mut bytes = [0u8; 65];
                    bytes.copy_from_slice(&att.signature);
                    signatures.push((*operator, bytes));
                } else {
                    tracing::warn!(%operator, "the operator serves a signature that is not its own over this batch: skipped");
                }
            }
        }
        if signatures.len() >= threshold {
            break;
        }
        if handled(destination.clone()).await? {
            outcome.already_handled = true;
            return Ok(outcome);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{} of {threshold} operators' signatures for nonce {nonce} after {}s (the source block may not be confirmed yet, or the operators' APIs are unreachable)",
                signatures.len(),
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    signatures.sort_by_key(|(a, _)| *a);
    signatures.truncate(threshold);
    outcome.signers = signatures.iter().map(|(a, _)| *a).collect();
    let input = Bridge::executeAttestedCall {
        rs: batch,
        signatures: pack_signatures(&signatures),
    }
    .abi_encode();
    let mut sender = Sender::new(destination.clone(), user, SenderPolicy::default()).await?;
    let call = sender.call(
        destination.bridge(),
        input.into(),
        alloy::primitives::U256::ZERO,
    );
    // The worst-case rule of every batch: the estimate, its margin, and one item's worst case
    // (an item that would not fit is skipped by the bridge, never run out of gas).
    let estimate = sender.estimate(&call).await?;
    let gas_limit = estimate
        .saturating_add(estimate / 20)
        .saturating_add(multibridge_contracts::ITEM_GAS)
        .saturating_add(multibridge_contracts::LOWER_ADVANCE_GAS);
    let sent = sender.send_call(call, gas_limit, false).await?;
    outcome.tx = Some(sent.hash);
    loop {
        for tracked in sender.poll().await? {
            if let Tracked::Mined { receipt, .. } = tracked {
                outcome.tx = Some(receipt.transaction_hash);
                outcome.gas_used = Some(receipt.gas_used);
                if !receipt.status() {
                    anyhow::bail!(
                        "the batch transaction {} reverted",
                        receipt.transaction_hash
                    );
                }
                if !handled(destination.clone()).await? {
                    anyhow::bail!(
                        "the batch was mined ({}) but nonce {nonce} is not handled: it cannot be released yet (see the HandleSkipped reason in the receipt)",
                        receipt.transaction_hash
                    );
                }
                return Ok(outcome);
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("the batch transaction {} was not mined in time", sent.hash);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::tests::request;

    #[test]
    fn a_block_is_counted_as_the_relays_store_it() {
        // A log answered twice and one of another block: 7 requests, not 9 (7 pair the block
        // with the next one; 8 or more would batch it alone).
        let mut answered: Vec<Request> = (10..17).map(|n| request(n, 40)).collect();
        answered.insert(3, request(12, 40));
        answered.push(request(17, 41));
        answered.reverse();
        assert_eq!(
            batch_blocks(40, answered.len()),
            (40, 40),
            "as answered: alone"
        );
        let held = of_block(answered, 40);
        assert_eq!(
            held.iter().map(|r| r.nonce).collect::<Vec<_>>(),
            (10..17).collect::<Vec<_>>()
        );
        assert_eq!(batch_blocks(40, held.len()), (40, 41), "as stored: paired");
    }
}
