//! Chain reads by nonce or transaction (the dashboard's tracker and claims history, `admin
//! settle`): a request by nonce or transaction, an operator's votes and the handle of one nonce
//! (and a window's attested executions), each found by a bounded backward log scan (the nonce is an indexed topic, so a scan returns
//! only the logs asked for).

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use multibridge_contracts::attestation::RECORD_WINDOW;
use multibridge_contracts::{Bridge, Request, request_from_log};

use crate::{ChainClient, ChainError};

/// A block and a transaction in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TxAt {
    /// The transaction.
    pub tx: B256,
    /// Its block.
    pub block: u64,
    /// The block's unix time.
    pub time: u64,
}

/// Where a backward scan may go.
#[derive(Debug, Clone, Copy)]
pub struct ScanBounds {
    /// The lowest block to read.
    pub floor: u64,
    /// The highest block to read.
    pub top: u64,
    /// Blocks per query.
    pub max_range: u64,
    /// Stop below the first block older than this unix time (the event cannot be older).
    pub not_before: Option<u64>,
    /// Most `eth_getLogs` calls the scan makes (what one lookup may cost the operator's RPC).
    pub max_queries: usize,
}

/// The logs of `filter` (address and topics; blocks are set here) from `bounds.top` down,
/// newest range first, stopping after the range in which `enough` logs were found in all.
pub async fn scan_back(
    chain: &ChainClient,
    filter: &Filter,
    bounds: ScanBounds,
    enough: usize,
) -> Result<Vec<Log>, ChainError> {
    let mut out = Vec::new();
    let mut top = bounds.top;
    let span = bounds.max_range.max(1);
    let mut queries = 0usize;
    loop {
        if top < bounds.floor || queries >= bounds.max_queries {
            break;
        }
        queries = queries.saturating_add(1);
        let from = top.saturating_sub(span.saturating_sub(1)).max(bounds.floor);
        let ranged = filter.clone().from_block(from).to_block(top);
        let mut logs = chain.logs(&ranged).await?;
        logs.retain(|l| !l.removed);
        out.extend(logs);
        if out.len() >= enough || from <= bounds.floor || from == 0 {
            break;
        }
        if let Some(not_before) = bounds.not_before
            && chain.block_time(from).await? < not_before
        {
            break;
        }
        top = from.saturating_sub(1);
    }
    Ok(out)
}

/// The request of `nonce` on `chain` (the lane's source), by a scan of its
/// `RequestValueTransfer` logs.
pub async fn find_request(
    chain: &ChainClient,
    nonce: u64,
    bounds: ScanBounds,
) -> Result<Option<Request>, ChainError> {
    let filter = Filter::new()
        .address(chain.bridge())
        .event_signature(Bridge::RequestValueTransfer::SIGNATURE_HASH)
        .topic1(U256::from(nonce));
    let logs = scan_back(chain, &filter, bounds, 1).await?;
    Ok(logs
        .iter()
        .filter(|l| l.address() == chain.bridge())
        .find_map(|l| request_from_log(l, chain.chain_id()).ok())
        .filter(|r| r.nonce == nonce))
}

/// The requests transaction `tx` made on `chain`'s bridge (`None`: no such transaction there).
pub async fn requests_of_tx(
    chain: &ChainClient,
    tx: B256,
) -> Result<Option<Vec<Request>>, ChainError> {
    let receipt = chain
        .call("eth_getTransactionReceipt", |p| async move {
            p.get_transaction_receipt(tx).await
        })
        .await?;
    let Some(receipt) = receipt else {
        return Ok(None);
    };
    Ok(Some(
        receipt
            .inner
            .logs()
            .iter()
            .filter(|l| {
                l.address() == chain.bridge()
                    && l.topic0() == Some(&Bridge::RequestValueTransfer::SIGNATURE_HASH)
            })
            .filter_map(|l| request_from_log(l, chain.chain_id()).ok())
            .collect(),
    ))
}

/// What the destination's logs say of one nonce: each operator's vote and the handle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NonceLogs {
    /// `VoteCast` per operator (the first found, newest scan first).
    pub votes: Vec<(Address, TxAt)>,
    /// `HandleValueTransfer`.
    pub handle: Option<TxAt>,
}

/// The votes and handle of `nonce` on `chain` (a lane's destination). With `handle_only`, the
/// scan stops at the handle.
pub async fn nonce_logs(
    chain: &ChainClient,
    nonce: u64,
    bounds: ScanBounds,
    handle_only: bool,
) -> Result<NonceLogs, ChainError> {
    let signatures = if handle_only {
        vec![Bridge::HandleValueTransfer::SIGNATURE_HASH]
    } else {
        vec![
            Bridge::HandleValueTransfer::SIGNATURE_HASH,
            Bridge::VoteCast::SIGNATURE_HASH,
        ]
    };
    let filter = Filter::new()
        .address(chain.bridge())
        .event_signature(signatures)
        .topic1(U256::from(nonce));
    // A handle and one vote per operator at most (the bridge takes at most 32 operators).
    let enough = if handle_only { 1 } else { usize::MAX };
    let logs = scan_back(chain, &filter, bounds, enough).await?;
    let mut out = NonceLogs::default();
    for log in logs.iter().filter(|l| l.address() == chain.bridge()) {
        let (Some(tx), Some(block)) = (log.transaction_hash, log.block_number) else {
            continue;
        };
        let at = TxAt {
            tx,
            block,
            time: log.block_timestamp.unwrap_or_default(),
        };
        if let Ok(vote) = log.log_decode::<Bridge::VoteCast>() {
            let operator = vote.inner.data.operator;
            if !out.votes.iter().any(|(o, _)| *o == operator) {
                out.votes.push((operator, at));
            }
        } else if log.log_decode::<Bridge::HandleValueTransfer>().is_ok() && out.handle.is_none() {
            out.handle = Some(at);
        }
    }
    // Nodes do not always fill blockTimestamp in logs: read the blocks that lack it.
    if let Some(h) = &mut out.handle
        && h.time == 0
    {
        h.time = chain.block_time(h.block).await?;
    }
    for (_, v) in &mut out.votes {
        if v.time == 0 {
            v.time = chain.block_time(v.block).await?;
        }
    }
    Ok(out)
}

/// The execution of `nonce` on `chain` (a lane's destination): where, and under which vote key
/// (the key of the payload that reached the threshold).
pub async fn handled_key(
    chain: &ChainClient,
    nonce: u64,
    bounds: ScanBounds,
) -> Result<Option<(TxAt, B256)>, ChainError> {
    let filter = Filter::new()
        .address(chain.bridge())
        .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
        .topic1(U256::from(nonce));
    let logs = scan_back(chain, &filter, bounds, 1).await?;
    Ok(logs
        .iter()
        .filter(|l| l.address() == chain.bridge())
        .find_map(|l| {
            let handle = l.log_decode::<Bridge::HandleValueTransfer>().ok()?;
            Some((
                TxAt {
                    tx: l.transaction_hash?,
                    block: l.block_number?,
                    time: l.block_timestamp.unwrap_or_default(),
                },
                handle.inner.data.voteKey,
            ))
        }))
}

/// Every execution by an attested batch in window `window` of `chain`'s bridge (nonces
/// `window * RECORD_WINDOW` on), in execution order: what `settleHandled` takes. An attested
/// batch's executions are the last `executed` handles before its `BatchAttested` in its
/// transaction, so the handles of the window's nonces are found by a log scan and each of their
/// transactions' receipts tells which of them were attested.
pub async fn attested_in_window(
    chain: &ChainClient,
    window: u64,
    bounds: ScanBounds,
) -> Result<Vec<(u64, B256)>, ChainError> {
    let first = window.saturating_mul(RECORD_WINDOW);
    let end = first.saturating_add(RECORD_WINDOW);
    let nonces: Vec<B256> = (first..end).map(|n| B256::from(U256::from(n))).collect();
    let filter = Filter::new()
        .address(chain.bridge())
        .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
        .topic1(nonces);
    let logs = scan_back(chain, &filter, bounds, usize::MAX).await?;
    let mut txs: Vec<B256> = logs
        .iter()
        .filter(|l| l.address() == chain.bridge())
        .filter_map(|l| l.transaction_hash)
        .collect();
    txs.sort_unstable();
    txs.dedup();
    // (block, log index, nonce, key)
    let mut found: Vec<(u64, u64, u64, B256)> = Vec::new();
    for tx in txs {
        let receipt = chain
            .call("eth_getTransactionReceipt", |p| async move {
                p.get_transaction_receipt(tx).await
            })
            .await?;
        let Some(receipt) = receipt else {
            continue;
        };
        let mut handles = Vec::new();
        for log in receipt.inner.logs() {
            if log.address() != chain.bridge() {
                continue;
            }
            let at = (
                log.block_number.unwrap_or_default(),
                log.log_index.unwrap_or_default(),
            );
            if let Ok(h) = log.log_decode::<Bridge::HandleValueTransfer>() {
                handles.push((at.0, at.1, h.inner.data.nonce, h.inner.data.voteKey));
            } else if let Ok(batch) = log.log_decode::<Bridge::BatchAttested>() {
                let executed = usize::try_from(batch.inner.data.executed).unwrap_or(usize::MAX);
                let from = handles.len().saturating_sub(executed);
                found.extend(handles.drain(from..));
                handles.clear();
            }
        }
    }
    found.retain(|&(_, _, nonce, _)| (first..end).contains(&nonce));
    found.sort_unstable();
    found.dedup();
    Ok(found.into_iter().map(|(_, _, n, k)| (n, k)).collect())
}
