//! The transfer tracker: a user pastes a source transaction hash, an address, or a lane and a
//! nonce, and sees the request, each operator's vote, the handle and the latency; a transfer that
//! does not move shows why (the relay's waiting reason) and the exact `multibridge claim` command.

use alloy::primitives::{Address, B256};
use multibridge_contracts::{AssetKind, Lane, Request};
use serde::{Deserialize, Serialize};

use super::outlook::{Facts, Outlook, claim_command, outlook};
use super::{Dashboard, DashboardError};
use crate::chain::lookup::{ScanBounds, TxAt, find_request, nonce_logs, requests_of_tx};
use crate::chain::{ChainClient, ChainPair};
use crate::config::Config;
use crate::leadership::etcd_pool::EtcdPool;
use crate::store::SharedStore;
use crate::store::claims::ClaimEntry;

/// What the tracker reads: the relay's dashboard (with its store and etcd), or a user's
/// `multibridge track` (the chains alone).
pub struct TrackContext<'a> {
    /// The config (chains, bridges, the tracker window, refund_after_secs).
    pub config: &'a Config,
    /// Both chains.
    pub chains: &'a ChainPair,
    /// The relay's store (why a transfer waits, the claims filed), if this is a relay.
    pub store: Option<&'a SharedStore>,
    /// etcd (who leads the lane), if the relay uses it.
    pub etcd: Option<&'a EtcdPool>,
    /// This replica's name (empty for a user).
    pub replica: &'a str,
}

impl<'a> From<&'a Dashboard> for TrackContext<'a> {
    fn from(d: &'a Dashboard) -> Self {
        Self {
            config: &d.config,
            chains: &d.chains,
            store: Some(&d.store),
            etcd: d.etcd.as_deref(),
            replica: &d.replica,
        }
    }
}
/// Requests listed for an address, per lane.
const PER_ADDRESS: usize = 20;

/// What the user asked (query string).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TrackParams {
    /// A transaction hash or an address.
    #[serde(default)]
    pub q: Option<String>,
    /// A lane (with `nonce`).
    #[serde(default)]
    pub lane: Option<String>,
    /// A request nonce (with `lane`).
    #[serde(default)]
    pub nonce: Option<String>,
}

/// A parsed question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackQuery {
    /// A source transaction.
    Tx(B256),
    /// Every recent request from or to an address.
    Address(Address),
    /// One request.
    Nonce(Lane, u64),
}

/// Why the tracker has no answer.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// The question is malformed (the page shows the message as it is).
    #[error("{0}")]
    BadInput(String),
    /// Nothing matches.
    #[error("{0}")]
    NotFound(String),
    /// A chain or the store could not be read.
    #[error(transparent)]
    Unavailable(#[from] DashboardError),
}

impl From<crate::chain::ChainError> for TrackError {
    fn from(e: crate::chain::ChainError) -> Self {
        Self::Unavailable(e.into())
    }
}

impl From<crate::store::StoreError> for TrackError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Unavailable(e.into())
    }
}

fn is_hex(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Parse the question.
pub fn parse(params: &TrackParams) -> Result<TrackQuery, TrackError> {
    let q = params.q.as_deref().map(str::trim).unwrap_or_default();
    if !q.is_empty() {
        let digits = q
            .strip_prefix("0x")
            .or_else(|| q.strip_prefix("0X"))
            .ok_or_else(|| {
                TrackError::BadInput(format!(
                    "`{q}` is neither a transaction hash nor an address: both start with 0x (a hash has 64 hex digits after it, an address 40)"
                ))
            })?;
        return match (digits.len(), is_hex(digits)) {
            (64, true) => Ok(TrackQuery::Tx(q.parse().map_err(|_| {
                TrackError::BadInput(format!("`{q}` is not a transaction hash"))
            })?)),
            (40, true) => {
                Ok(TrackQuery::Address(q.parse().map_err(|_| {
                    TrackError::BadInput(format!("`{q}` is not an address"))
                })?))
            }
            (_, false) => Err(TrackError::BadInput(format!(
                "`{q}` has characters that are not hex digits (0-9, a-f)"
            ))),
            (n, true) => Err(TrackError::BadInput(format!(
                "`{q}` has {n} hex digits: a transaction hash has 64, an address 40"
            ))),
        };
    }
    let lane = params.lane.as_deref().map(str::trim).unwrap_or_default();
    let nonce = params.nonce.as_deref().map(str::trim).unwrap_or_default();
    if lane.is_empty() && nonce.is_empty() {
        return Err(TrackError::BadInput(
            "give a source transaction hash, an address, or a lane and a nonce".into(),
        ));
    }
    let lane: Lane = lane.parse().map_err(|_| {
        TrackError::BadInput(format!(
            "unknown lane `{lane}`: use main-to-service or service-to-main"
        ))
    })?;
    let nonce: u64 = nonce.parse().map_err(|_| {
        TrackError::BadInput(format!(
            "nonce `{nonce}` is not a whole number (requests are numbered 0, 1, 2, ...)"
        ))
    })?;
    Ok(TrackQuery::Nonce(lane, nonce))
}

/// The request as the source chain recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    /// Source transaction.
    pub tx: B256,
    /// Source block.
    pub block: u64,
    /// The block's unix time.
    pub time: u64,
    /// Requester.
    pub from: Address,
    /// Recipient on the destination.
    pub to: Address,
    /// Source token (zero: native).
    pub token: Address,
    /// `native`, `erc20` or `erc721`.
    pub kind: Option<AssetKind>,
    /// Amount to release (wei / token base units, decimal); of an ERC-721, its id.
    pub amount: String,
    /// Fee taken on the source (decimal).
    pub fee: String,
    /// Blocks still to be mined before the relays act on it (source confirmation depth).
    pub confirmations_left: u64,
}

/// One operator's vote.
#[derive(Debug, Clone, Serialize)]
pub struct VoteView {
    /// Operator.
    pub operator: Address,
    /// Whether its vote is on chain.
    pub voted: bool,
    /// The transaction that carried it (when found).
    pub at: Option<TxAt>,
}

/// A transfer of a lane in attested mode, or one executed by an attested batch.
#[derive(Debug, Clone, Serialize)]
pub struct AttestationView {
    /// Whether the lane runs attested batches in this relay's config.
    pub attested_lane: bool,
    /// The operators whose signatures executed it (from the batch's `BatchAttested`).
    pub signers: Vec<Address>,
    /// Who sent the batch (an operator, or anyone: a user's `multibridge execute`).
    pub sent_by: Option<Address>,
    /// The command that sends its batch with the user's own key.
    pub execute_command: String,
}

/// Why a transfer does not move, as this relay knows it.
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    /// Stable name (`insufficient_liquidity`, ...).
    pub name: String,
    /// What the destination or the node said.
    pub detail: Option<String>,
    /// Whether a person must act (a rejected request) rather than wait.
    pub needs_person: bool,
}

/// A tracked transfer.
#[derive(Debug, Clone, Serialize)]
pub struct Tracked {
    /// Lane.
    pub lane: Lane,
    /// Nonce.
    pub nonce: u64,
    /// The request.
    pub request: RequestView,
    /// Votes needed.
    pub threshold: u64,
    /// Each registered operator's vote.
    pub votes: Vec<VoteView>,
    /// Attested batches: who signed, who sent, how to send it yourself (`None`: a voted lane
    /// and a voted handle).
    pub attestation: Option<AttestationView>,
    /// The handle (the transfer executed).
    pub handle: Option<TxAt>,
    /// Seconds from the request's block to the handle's.
    pub latency_secs: Option<u64>,
    /// Seconds since the request's block.
    pub age_secs: u64,
    /// Its state, what it waits for, what happens next and when, and the command to run.
    #[serde(flatten)]
    pub outlook: Outlook,
    /// Why it waits or was set aside.
    pub reason: Option<Reason>,
    /// Waiting on a destination condition, set aside, or pending for longer than
    /// [`super::outlook::OVERDUE_AFTER_SECS`].
    pub stuck: bool,
    /// The command that files a claim for it.
    pub claim_command: String,
    /// Claims already filed for it.
    pub claims: Vec<ClaimEntry>,
    /// Other requests the same transaction made.
    pub same_tx_nonces: Vec<u64>,
    /// The dashboard of the replica that leads this operator's votes on the lane, when it is
    /// not this one (it knows the waiting reasons; this one may not).
    pub leading_replica_url: Option<String>,
}

/// A request listed for an address.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// Lane.
    pub lane: Lane,
    /// Nonce.
    pub nonce: u64,
    /// Source transaction.
    pub tx: B256,
    /// Source block.
    pub block: u64,
    /// Requester.
    pub from: Address,
    /// Recipient.
    pub to: Address,
    /// `native`, `erc20` or `erc721`.
    pub kind: Option<AssetKind>,
    /// Amount (base units, decimal); of an ERC-721, its id.
    pub amount: String,
    /// Handled on the destination.
    pub handled: bool,
}

/// The tracker's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// One transfer.
    Transfer(Box<Tracked>),
    /// An address's recent transfers.
    Address {
        /// The address.
        address: Address,
        /// Newest first.
        requests: Vec<Listed>,
    },
}

fn bounds(
    d: &TrackContext<'_>,
    chain: &ChainClient,
    head: u64,
    not_before: Option<u64>,
) -> ScanBounds {
    let cfg = d.config.chains.get(chain.role());
    ScanBounds {
        floor: head
            .saturating_sub(d.config.dashboard.tracker_window_blocks)
            .max(cfg.start_block),
        top: head,
        max_range: cfg.max_block_range,
        not_before,
        max_queries: TRACK_QUERIES_PER_SCAN,
    }
}

/// Most `eth_getLogs` calls one scan of a track request makes (a request scans at most two
/// lanes' sources and destinations): visitors cannot make one lookup cost the operator's RPC
/// more than this, whatever the tracker window (audit NEW-L1).
pub const TRACK_QUERIES_PER_SCAN: usize = 32;

/// Answer `query`.
pub async fn track(d: &TrackContext<'_>, query: TrackQuery) -> Result<Answer, TrackError> {
    match query {
        TrackQuery::Nonce(lane, nonce) => Ok(Answer::Transfer(Box::new(
            transfer(d, lane, nonce, None, Vec::new()).await?,
        ))),
        TrackQuery::Tx(tx) => {
            for (role, chain) in d.chains.each() {
                let Some(requests) = requests_of_tx(chain, tx).await? else {
                    continue;
                };
                let Some(first) = requests.first().cloned() else {
                    return Err(TrackError::NotFound(format!(
                        "transaction {tx} on the {role} chain made no bridge request (it is not a transfer through bridge {})",
                        chain.bridge()
                    )));
                };
                let lane = Lane::from_source(role);
                let others = requests.iter().skip(1).map(|r| r.nonce).collect();
                return Ok(Answer::Transfer(Box::new(
                    transfer(d, lane, first.nonce, Some(first), others).await?,
                )));
            }
            Err(TrackError::NotFound(format!(
                "no transaction {tx} on either chain (main {}, service {}): check the hash, or wait until it is mined",
                d.chains.main.chain_id(),
                d.chains.service.chain_id()
            )))
        }
        TrackQuery::Address(address) => address_requests(d, address).await,
    }
}

async fn address_requests(d: &TrackContext<'_>, address: Address) -> Result<Answer, TrackError> {
    use alloy::rpc::types::Filter;
    use alloy::sol_types::SolEvent;
    let mut out = Vec::new();
    for lane in Lane::ALL {
        let src = d.chains.get(lane.source());
        let head = src.head().await?;
        let mut found: Vec<Request> = Vec::new();
        for topic in [2usize, 3] {
            let base = Filter::new().address(src.bridge()).event_signature(
                multibridge_contracts::Bridge::RequestValueTransfer::SIGNATURE_HASH,
            );
            let filter = if topic == 2 {
                base.topic2(address.into_word())
            } else {
                base.topic3(address.into_word())
            };
            let logs = crate::chain::lookup::scan_back(
                src,
                &filter,
                bounds(d, src, head, None),
                PER_ADDRESS,
            )
            .await?;
            found.extend(
                logs.iter()
                    .filter(|l| l.address() == src.bridge())
                    .filter_map(|l| {
                        multibridge_contracts::request_from_log(l, src.chain_id()).ok()
                    }),
            );
        }
        found.sort_by_key(|r| std::cmp::Reverse(r.nonce));
        found.dedup_by_key(|r| r.nonce);
        found.truncate(PER_ADDRESS);
        let nonces: Vec<u64> = found.iter().map(|r| r.nonce).collect();
        let states = d
            .chains
            .get(lane.destination())
            .views()
            .voting_status(Address::ZERO, &nonces)
            .await?;
        for (r, state) in found.iter().zip(states) {
            out.push(Listed {
                lane,
                nonce: r.nonce,
                tx: r.srcTxHash,
                block: r.srcBlockNumber,
                from: r.from,
                to: r.to,
                kind: AssetKind::try_from(r.kind).ok(),
                amount: r.amount.to_string(),
                handled: state == multibridge_contracts::NonceState::Handled,
            });
        }
    }
    if out.is_empty() {
        return Err(TrackError::NotFound(format!(
            "no transfer from or to {address} in the last {} blocks of either chain",
            d.config.dashboard.tracker_window_blocks
        )));
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.block));
    Ok(Answer::Address {
        address,
        requests: out,
    })
}

async fn transfer(
    d: &TrackContext<'_>,
    lane: Lane,
    nonce: u64,
    known: Option<Request>,
    same_tx_nonces: Vec<u64>,
) -> Result<Tracked, TrackError> {
    let src = d.chains.get(lane.source()).clone();
    let dst = d.chains.get(lane.destination()).clone();
    let made = src.views().request_nonce().await?;
    if nonce >= made {
        return Err(TrackError::NotFound(format!(
            "{lane} has no request with nonce {nonce}: its source bridge has made {made} request(s) so far (nonces 0 to {})",
            made.saturating_sub(1)
        )));
    }
    let stored = match d.store {
        Some(store) => store.lock().get(lane, nonce)?,
        None => None,
    };
    let src_head = src.head().await?;
    let request = match (known, &stored) {
        (Some(r), _) => r,
        (None, Some(s)) => s.request.clone(),
        (None, None) => find_request(&src, nonce, bounds(d, &src, src_head, None))
            .await?
            .ok_or_else(|| {
                TrackError::NotFound(format!(
                    "request {nonce} of {lane} is older than the tracker's window ({} blocks): look it up by its transaction hash",
                    d.config.dashboard.tracker_window_blocks
                ))
            })?,
    };
    let time = src.block_time(request.srcBlockNumber).await?;
    let safe = src
        .safe_head(src_head, d.config.chains.get(lane.source()).confirmations)
        .await?;
    let views = dst.views();
    let threshold = views.threshold().await?;
    let operators = views.operators().await?;
    let handled = views.is_handled(nonce).await?;
    let mut voted = Vec::with_capacity(operators.len());
    for operator in &operators {
        let operator = *operator;
        voted.push(
            dst.bridge_call("hasVoted", |b| async move {
                b.hasVoted(nonce, operator).call().await
            })
            .await?,
        );
    }
    let logs = if handled || voted.iter().any(|v| *v) {
        let head = dst.head().await?;
        nonce_logs(
            &dst,
            nonce,
            bounds(d, &dst, head, Some(time.saturating_sub(300))),
            false,
        )
        .await?
    } else {
        crate::chain::lookup::NonceLogs::default()
    };
    let votes = operators
        .iter()
        .zip(&voted)
        .map(|(operator, voted)| VoteView {
            operator: *operator,
            voted: *voted || logs.votes.iter().any(|(o, _)| o == operator),
            at: logs
                .votes
                .iter()
                .find(|(o, _)| o == operator)
                .map(|(_, at)| *at),
        })
        .collect();
    let attestation = attestation_of(d, &dst, lane, nonce, logs.handle.as_ref(), &operators).await;
    let now = crate::store::unix_now();
    let reason = stored.as_ref().and_then(|s| {
        if let Some(w) = s.waiting {
            Some(Reason {
                name: w.as_str().to_owned(),
                detail: s.detail.clone(),
                needs_person: false,
            })
        } else {
            s.rejected.map(|r| Reason {
                name: r.as_str().to_owned(),
                detail: s.detail.clone(),
                needs_person: true,
            })
        }
    });
    // This relay may not know why (its own vote went in first, or it follows): ask the
    // destination what the vote of an operator who has not voted yet would meet.
    let reason = match reason {
        Some(r) => Some(r),
        None if !handled && request.srcBlockNumber <= safe => {
            let unvoted = operators
                .iter()
                .zip(&voted)
                .find(|(_, v)| !**v)
                .map(|(o, _)| *o);
            match unvoted {
                Some(operator) => diagnose(&dst, &request, operator).await,
                None => None,
            }
        }
        None => None,
    };
    let confirmations_left = request.srcBlockNumber.saturating_sub(safe);
    let cancelled = handled && !views.cancelled_key(nonce).await?.is_zero();
    let refunded = cancelled && src.views().is_refunded(nonce).await?;
    let release_at = if handled && !cancelled {
        views.queued_release_at(nonce).await?
    } else {
        None
    };
    let voted_count = u64::try_from(voted.iter().filter(|v| **v).count()).unwrap_or(u64::MAX);
    let source_config = d.config.chains.get(lane.source());
    let destination_config = d.config.chains.get(lane.destination());
    let outlook = outlook(
        lane,
        nonce,
        &Facts {
            now,
            made_at: time,
            confirmations_left,
            source_block_secs: block_secs(&src, src_head).await,
            destination_block_secs: block_secs(&dst, dst.head().await?).await,
            handled,
            cancelled,
            refunded,
            release_at,
            reason: reason.as_ref().map(|r| (r.name.clone(), r.needs_person)),
            votes: voted_count,
            threshold: u64::try_from(threshold).unwrap_or(u64::MAX),
            refund_after: d.config.recovery.refund_after_secs,
            cancel_depth: source_config
                .confirmations
                .depth()
                .unwrap_or(0)
                .max(destination_config.confirmations.depth().unwrap_or(0)),
        },
    );
    let age_secs = now.saturating_sub(time);
    let claims = match d.store {
        Some(store) => store.lock().claims(Some((lane, nonce)), 20, 0)?,
        None => Vec::new(),
    };
    let leading_replica_url = crate::leadership::Elections::of(d.config, d.etcd)
        .leader(lane)
        .await
        .ok()
        .flatten()
        .filter(|l| l.replica != d.replica)
        .map(|l| l.url);
    Ok(Tracked {
        lane,
        nonce,
        threshold: u64::try_from(threshold).unwrap_or(u64::MAX),
        votes,
        attestation,
        latency_secs: logs.handle.map(|h| h.time.saturating_sub(time)),
        handle: logs.handle,
        age_secs,
        // Waiting on a destination condition or set aside is stuck now; otherwise only once
        // it is older than the relays normally need.
        stuck: matches!(outlook.state, "waiting" | "rejected" | "overdue"),
        outlook,
        reason,
        claim_command: claim_command(lane, nonce),
        claims,
        same_tx_nonces,
        leading_replica_url,
        request: RequestView {
            tx: request.srcTxHash,
            block: request.srcBlockNumber,
            time,
            from: request.from,
            to: request.to,
            token: request.token,
            kind: AssetKind::try_from(request.kind).ok(),
            amount: request.amount.to_string(),
            fee: request.fee.to_string(),
            confirmations_left,
        },
    })
}

/// `chain`'s block time over its last 20 blocks below `head`, whole seconds (at least 1; 1 if
/// it cannot be read).
async fn block_secs(chain: &ChainClient, head: u64) -> u64 {
    const SPAN: u64 = 20;
    let Some(from) = head.checked_sub(SPAN) else {
        return 1;
    };
    match (chain.block_time(from).await, chain.block_time(head).await) {
        (Ok(a), Ok(b)) => (b.saturating_sub(a) / SPAN).max(1),
        _ => 1,
    }
}

/// Who signed and sent the attested batch that executed `nonce` (its `handle`), and the command
/// that sends it with the user's key; `None` for a voted lane whose handle came from votes.
async fn attestation_of(
    d: &TrackContext<'_>,
    dst: &ChainClient,
    lane: Lane,
    nonce: u64,
    handle: Option<&TxAt>,
    operators: &[Address],
) -> Option<AttestationView> {
    use alloy::providers::Provider as _;
    let attested_lane = d.config.voting.mode_of(lane) == crate::config::VotingMode::Attestations;
    let mut view = AttestationView {
        attested_lane,
        signers: Vec::new(),
        sent_by: None,
        execute_command: format!(
            "multibridge execute --config <a config naming both chains and the registry, e.g. a relay config> --lane {lane} --nonce {nonce} --key-env <VARIABLE holding your key>"
        ),
    };
    let Some(handle) = handle else {
        return attested_lane.then_some(view);
    };
    let tx = handle.tx;
    let receipt = dst
        .call("eth_getTransactionReceipt", |p| async move {
            p.get_transaction_receipt(tx).await
        })
        .await
        .ok()
        .flatten()?;
    let attesters = receipt.inner.logs().iter().find_map(|l| {
        (l.address() == dst.bridge())
            .then(|| {
                l.log_decode::<multibridge_contracts::Bridge::BatchAttested>()
                    .ok()
            })
            .flatten()
            .map(|e| e.inner.data.attesters)
    });
    let Some(attesters) = attesters else {
        return attested_lane.then_some(view);
    };
    view.sent_by = Some(receipt.from);
    for operator in operators {
        let operator = *operator;
        let bit = dst
            .bridge_call("operatorBit", |b| async move {
                b.operatorBit(operator).call().await
            })
            .await
            .ok()?;
        let bit = u32::try_from(bit).ok()?;
        let mask = bit
            .checked_sub(1)
            .and_then(|b| 1u32.checked_shl(b))
            .unwrap_or(0);
        if attesters & mask != 0 {
            view.signers.push(operator);
        }
    }
    Some(view)
}

/// What the destination answers to `operator`'s vote for `request` (simulated, nothing sent):
/// the waiting reason its refusal stands for, if any.
async fn diagnose(dst: &ChainClient, request: &Request, operator: Address) -> Option<Reason> {
    use alloy::network::TransactionBuilder;
    use alloy::providers::Provider;
    use alloy::sol_types::SolCall;
    let call =
        multibridge_contracts::Bridge::handleValueTransferCall { r: request.clone() }.abi_encode();
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_from(operator)
        .with_to(dst.bridge())
        .with_input(call);
    let error = dst
        .call("eth_call", |p| {
            let tx = tx.clone();
            async move { p.call(tx).await }
        })
        .await
        .err()?;
    let crate::chain::ChainError::Rejected {
        source: alloy::transports::RpcError::ErrorResp(payload),
        ..
    } = &error
    else {
        return None;
    };
    let decoded =
        payload.as_decoded_interface_error::<multibridge_contracts::Bridge::BridgeErrors>()?;
    let name = multibridge_contracts::bridge_error_name(&decoded);
    let wait = multibridge_contracts::WaitReason::from_bridge_error(&name)?;
    Some(Reason {
        name: wait.as_str().to_owned(),
        detail: Some(format!(
            "the destination refuses the next vote: {decoded:?}"
        )),
        needs_person: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Result<TrackQuery, TrackError> {
        parse(&TrackParams {
            q: Some(text.into()),
            ..Default::default()
        })
    }

    #[test]
    fn questions_parse_or_say_what_is_wrong() {
        let hash = format!("0x{}", "ab".repeat(32));
        assert!(matches!(q(&hash), Ok(TrackQuery::Tx(_))));
        let addr = format!("0x{}", "cd".repeat(20));
        assert!(matches!(q(&addr), Ok(TrackQuery::Address(_))));
        let e = q("0x1234").unwrap_err().to_string();
        assert!(e.contains("4 hex digits"), "{e}");
        let e = q(&format!("0x{}", "zz".repeat(20)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not hex digits"), "{e}");
        let e = q("hello").unwrap_err().to_string();
        assert!(e.contains("start with 0x"), "{e}");
        let nonce = |lane: &str, nonce: &str| {
            parse(&TrackParams {
                q: None,
                lane: Some(lane.into()),
                nonce: Some(nonce.into()),
            })
        };
        assert!(matches!(
            nonce("main-to-service", "7"),
            Ok(TrackQuery::Nonce(Lane::MainToService, 7))
        ));
        let e = nonce("sideways", "7").unwrap_err().to_string();
        assert!(e.contains("unknown lane `sideways`"), "{e}");
        let e = nonce("service-to-main", "-1").unwrap_err().to_string();
        assert!(e.contains("not a whole number"), "{e}");
        assert!(matches!(
            parse(&TrackParams::default()),
            Err(TrackError::BadInput(_))
        ));
    }
}
