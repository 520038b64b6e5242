//! What a pause rests on (audit A3-M3, DESIGN §9.10): the guardian acts only on evidence that one
//! lying or lagging endpoint cannot produce. Before any pause, each part of a finding is read
//! again from every configured endpoint of its chain, and it must hold on at least
//! [`quorum`] of them (two where two are configured, or `log_quorum` if higher):
//!
//! - the execution: the destination transaction's receipt holds the `HandleValueTransfer` of
//!   the nonce under the executed vote key;
//! - the source's side, either the request the source made at that nonce (its transaction's
//!   receipt holds it, under another vote key), or that the source never assigned the nonce —
//!   which an endpoint can tell only once it is **past** the request: its head is at or beyond
//!   the source block the executed payload names (read from the destination transaction's
//!   input, bound by the vote key), or else its head's time is past the destination block's
//!   time by [`SourceClock::margin`]. An endpoint that is merely behind is not past yet: it
//!   neither confirms nor disputes, it is asked again next round.
//!
//! An endpoint that answers the opposite (the receipt without the log, the request under the
//! executed key, a `requestNonce` beyond the nonce) **disputes** the finding: it is named in the
//! log and counted in `guardian_disputes_total{chain, endpoint}`.

use std::time::{Duration, Instant};

use alloy::consensus::Transaction as _;
use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{B256, Bytes};
use alloy::providers::Provider;
use alloy::sol_types::{SolCall, SolEvent};
use multibridge_contracts::{Bridge, Request, VoteDomain, request_from_log};

use crate::chain::{ChainClient, contract_to_transport};
use crate::store::unix_now;

/// What the source's side of a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceClaim {
    /// The source's request at the nonce has vote key `key` (not the executed one); it was
    /// made in transaction `tx`.
    Request {
        /// Its vote key.
        key: B256,
        /// The source transaction.
        tx: B256,
    },
    /// The source never assigned the nonce.
    NotRequested,
}

/// One execution the guardian can show on the chains: the finding a pause rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// The executed nonce.
    pub nonce: u64,
    /// The vote key it executed under.
    pub executed_key: B256,
    /// The destination transaction.
    pub handle_tx: B256,
    /// Its destination block.
    pub handle_block: u64,
    /// The source's side.
    pub source: SourceClaim,
}

/// How many endpoints of `chain` must agree: two where two are configured (or the chain's
/// `log_quorum` if higher), one where only one is.
pub fn quorum(chain: &ChainClient) -> usize {
    if chain.endpoint_count() >= 2 {
        chain.log_quorum().max(2)
    } else {
        1
    }
}

/// The outcome of reading a finding again on every endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// It holds on a quorum of each chain's endpoints: act. The endpoints that answered the
    /// opposite are named.
    Confirmed {
        /// Endpoints that contradicted the finding.
        contradicted_by: Vec<Voice>,
    },
    /// Not yet shown on enough endpoints, and none says otherwise (some have not reached it):
    /// ask again next round.
    NotYet(String),
    /// On one chain, every endpoint that could tell says otherwise: the suspicion was wrong
    /// (a view that lagged, a request this relay had not indexed yet).
    Refuted(String),
    /// The endpoints of a chain disagree and the finding holds on too few: it is not acted on,
    /// and the endpoints that back it are named (of two that disagree, the one a pause would
    /// have trusted).
    Disputed {
        /// Endpoints that back the finding against another endpoint of their chain.
        backers: Vec<Voice>,
        /// What every endpoint said.
        summary: String,
    },
}

/// One endpoint's position on a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voice {
    /// Index of the endpoint in its chain's `rpc_urls`.
    pub endpoint: usize,
    /// Its label (`#i host:port`).
    pub label: String,
    /// Whether it is a destination endpoint (else a source one).
    pub destination: bool,
    /// What it said.
    pub said: String,
}

/// A chain's block time as the guardian measures it, for the margin a "never requested" needs.
#[derive(Debug, Default)]
pub struct SourceClock {
    secs: Option<(u64, Instant)>,
}

/// How long a measured block time is used.
const CLOCK_FRESH_FOR: Duration = Duration::from_secs(600);
/// Blocks the block time is measured over.
const CLOCK_BLOCKS: u64 = 20;

impl SourceClock {
    /// The margin past the destination block's time a source endpoint's head must be before it
    /// can tell that the source never requested a nonce: one source block time (at least 1 s),
    /// measured over the last [`CLOCK_BLOCKS`] blocks.
    pub async fn margin(&mut self, source: &ChainClient) -> u64 {
        if let Some((secs, at)) = self.secs
            && at.elapsed() < CLOCK_FRESH_FOR
        {
            return secs;
        }
        self.measure(source).await
    }

    /// Measure again if the last measurement would be too old within `ahead` (the guardian
    /// calls this between alarms, so an alarm finds the margin measured).
    pub async fn refresh(&mut self, source: &ChainClient, ahead: Duration) {
        let due = self
            .secs
            .is_none_or(|(_, at)| at.elapsed().saturating_add(ahead) >= CLOCK_FRESH_FOR);
        if due {
            self.measure(source).await;
        }
    }

    async fn measure(&mut self, source: &ChainClient) -> u64 {
        let measured = async {
            let head = source.head().await.ok()?;
            let from = head.checked_sub(CLOCK_BLOCKS)?;
            let (t1, t0) = tokio::join!(source.block_time(head), source.block_time(from));
            let (t1, t0) = (t1.ok()?, t0.ok()?);
            Some(t1.saturating_sub(t0).div_ceil(CLOCK_BLOCKS))
        }
        .await;
        let secs = measured.unwrap_or(2).max(1);
        self.secs = Some((secs, Instant::now()));
        secs
    }
}

/// The source block the executed payload names (the request with the executed nonce and key in
/// the destination transaction's input: any of the bridge's execution calls). `None` when the
/// input is not a direct call of the bridge (a contract called it) or not found.
pub async fn claimed_source_block(
    destination: &ChainClient,
    domain: &VoteDomain,
    evidence: &Evidence,
) -> Option<u64> {
    let tx = evidence.handle_tx;
    let transaction = destination
        .call("eth_getTransactionByHash", |p| async move {
            p.get_transaction_by_hash(tx).await
        })
        .await
        .ok()??;
    if transaction.to() != Some(destination.bridge()) {
        return None;
    }
    requests_in_input(transaction.input())
        .into_iter()
        .find(|r| r.nonce == evidence.nonce && domain.vote_key(r) == evidence.executed_key)
        .map(|r| r.srcBlockNumber)
}

/// The requests an execution call of the bridge carries.
fn requests_in_input(input: &Bytes) -> Vec<Request> {
    if let Ok(call) = Bridge::handleValueTransferCall::abi_decode(input) {
        return vec![call.r];
    }
    if let Ok(call) = Bridge::handleValueTransfersCall::abi_decode(input) {
        return call.rs;
    }
    if let Ok(call) = Bridge::executeHandlesCall::abi_decode(input) {
        return call.rs;
    }
    if let Ok(call) = Bridge::executeAttestedCall::abi_decode(input) {
        return call.rs;
    }
    Vec::new()
}

/// What one endpoint said of one part of a finding.
enum Said {
    Confirms,
    NotYet(String),
    Disputes(String),
}

/// When a source endpoint is past a request, for a "never requested".
#[derive(Debug, Clone, Copy)]
pub struct PastRule {
    /// The source block the executed payload names.
    pub claimed_block: Option<u64>,
    /// The destination block's unix time.
    pub anchor: u64,
    /// See [`SourceClock::margin`].
    pub margin: u64,
    /// A source head older than this cannot tell anything.
    pub stale_secs: u64,
}

/// Read `evidence` again on every endpoint of `destination` and `source`.
pub async fn confirm(
    destination: &ChainClient,
    source: &ChainClient,
    domain: &VoteDomain,
    evidence: &Evidence,
    past: PastRule,
) -> Confirmation {
    let PastRule {
        claimed_block,
        anchor,
        margin,
        stale_secs,
    } = past;
    let executed = evidence.executed_key;
    let nonce = evidence.nonce;
    let handle_tx = evidence.handle_tx;
    let dst_bridge = destination.bridge();
    let handle_block = evidence.handle_block;
    // The destination's and the source's endpoints are asked at once.
    let dst_said = async {
        destination
        .on_each_endpoint("eth_getTransactionReceipt", |p| async move {
            let receipt = p.get_transaction_receipt(handle_tx).await?;
            let head = match receipt {
                Some(_) => None,
                None => Some(p.get_block_number().await?),
            };
            Ok((receipt, head))
        })
        .await
        .into_iter()
        .map(|(label, answer)| {
            let said = match answer {
                Err(e) => Said::NotYet(format!("no answer: {e}")),
                Ok((None, Some(head))) if head >= handle_block => Said::Disputes(format!(
                    "its head {head} is past block {handle_block}, and it has no transaction {handle_tx}"
                )),
                Ok((None, _)) => Said::NotYet("does not have the transaction yet".into()),
                Ok((Some(receipt), _)) => {
                    let holds = receipt.status()
                        && receipt.inner.logs().iter().any(|l| {
                            l.address() == dst_bridge
                                && l.topic0() == Some(&Bridge::HandleValueTransfer::SIGNATURE_HASH)
                                && l.log_decode::<Bridge::HandleValueTransfer>().is_ok_and(|h| {
                                    h.inner.nonce == nonce && h.inner.voteKey == executed
                                })
                        });
                    if holds {
                        Said::Confirms
                    } else {
                        Said::Disputes(format!(
                            "its receipt of {handle_tx} holds no execution of nonce {nonce} under {executed}"
                        ))
                    }
                }
            };
            (label, said)
        })
        .collect::<Vec<_>>()
    };
    let src_said = async {
        match evidence.source {
            SourceClaim::Request { key, tx } => {
                let src_bridge = source.bridge();
                let chain_id = source.chain_id();
                source
                    .on_each_endpoint("eth_getTransactionReceipt", |p| async move {
                        p.get_transaction_receipt(tx).await
                    })
                    .await
                    .into_iter()
                    .map(|(label, answer)| {
                        let said = match answer {
                            Err(e) => Said::NotYet(format!("no answer: {e}")),
                            Ok(None) => {
                                Said::NotYet("does not have the request's transaction".into())
                            }
                            Ok(Some(receipt)) => {
                                let request = receipt
                                    .inner
                                    .logs()
                                    .iter()
                                    .filter(|l| l.address() == src_bridge)
                                    .filter_map(|l| request_from_log(l, chain_id).ok())
                                    .find(|r| r.nonce == nonce);
                                match request.map(|r| domain.vote_key(&r)) {
                                    Some(k) if k == key && k != executed => Said::Confirms,
                                    Some(k) if k == executed => Said::Disputes(format!(
                                        "the source's request {nonce} is the executed payload ({k})"
                                    )),
                                    Some(k) => Said::Disputes(format!(
                                        "the source's request {nonce} has key {k}, not {key}"
                                    )),
                                    None => Said::Disputes(format!(
                                        "transaction {tx} made no request {nonce}"
                                    )),
                                }
                            }
                        };
                        (label, said)
                    })
                    .collect::<Vec<_>>()
            }
            SourceClaim::NotRequested => {
                let src_bridge = source.bridge();
                source
                .on_each_endpoint("eth_call", |p| async move {
                    let head = p
                        .get_block_by_number(BlockNumberOrTag::Latest)
                        .await?
                        .ok_or_else(|| {
                            alloy::transports::TransportErrorKind::custom_str("no latest block")
                        })?;
                    let number = head.header.number;
                    let request_nonce = Bridge::new(src_bridge, p)
                        .requestNonce()
                        .block(BlockId::number(number))
                        .call()
                        .await
                        .map_err(contract_to_transport)?;
                    Ok((number, head.header.timestamp, request_nonce))
                })
                .await
                .into_iter()
                .map(|(label, answer)| {
                    let said = match answer {
                        Err(e) => Said::NotYet(format!("no answer: {e}")),
                        Ok((_, _, request_nonce)) if request_nonce > nonce => {
                            Said::Disputes(format!(
                                "the source assigned nonce {nonce} (its requestNonce is {request_nonce})"
                            ))
                        }
                        Ok((head, time, _)) if unix_now().saturating_sub(time) > stale_secs => {
                            Said::NotYet(format!(
                                "its head {head} is {} s old",
                                unix_now().saturating_sub(time)
                            ))
                        }
                        Ok((head, time, request_nonce)) => {
                            let past_block = claimed_block.is_some_and(|b| head >= b);
                            let past_time = time >= anchor.saturating_add(margin);
                            if past_block || past_time {
                                Said::Confirms
                            } else {
                                Said::NotYet(format!(
                                    "requestNonce {request_nonce} at head {head} (time {time}), not yet past the request (source block {claimed_block:?}, destination time {anchor} + {margin} s)"
                                ))
                            }
                        }
                    };
                    (label, said)
                })
                .collect::<Vec<_>>()
            }
        }
    };
    let (dst_said, src_said) = tokio::join!(dst_said, src_said);
    judge_answers(&dst_said, quorum(destination), &src_said, quorum(source))
}

/// The finding holds when at least `dst_needed` destination and `src_needed` source endpoints
/// confirm it; see [`Confirmation`] for the rest.
fn judge_answers(
    dst: &[(String, Said)],
    dst_needed: usize,
    src: &[(String, Said)],
    src_needed: usize,
) -> Confirmation {
    let mut notes = Vec::new();
    let mut contradicted_by = Vec::new();
    let mut backers = Vec::new();
    let mut refuted = false;
    let mut confirmed = true;
    for (destination, answers, needed) in [(true, dst, dst_needed), (false, src, src_needed)] {
        let voice = |index: usize, label: &String, said: &str| Voice {
            endpoint: index,
            label: label.clone(),
            destination,
            said: said.to_owned(),
        };
        let confirms: Vec<Voice> = answers
            .iter()
            .enumerate()
            .filter(|(_, (_, s))| matches!(s, Said::Confirms))
            .map(|(i, (label, _))| voice(i, label, "confirms"))
            .collect();
        let disputes: Vec<Voice> = answers
            .iter()
            .enumerate()
            .filter_map(|(i, (label, s))| match s {
                Said::Disputes(what) => Some(voice(i, label, what)),
                _ => None,
            })
            .collect();
        for (label, said) in answers {
            match said {
                Said::Confirms => notes.push(format!("{label}: confirms")),
                Said::NotYet(why) | Said::Disputes(why) => notes.push(format!("{label}: {why}")),
            }
        }
        confirmed &= confirms.len() >= needed;
        refuted |= !disputes.is_empty() && confirms.is_empty();
        if !disputes.is_empty() {
            backers.extend(confirms);
        }
        contradicted_by.extend(disputes);
    }
    let summary = notes.join("; ");
    if confirmed {
        Confirmation::Confirmed { contradicted_by }
    } else if refuted {
        Confirmation::Refuted(summary)
    } else if contradicted_by.is_empty() {
        Confirmation::NotYet(summary)
    } else {
        Confirmation::Disputed { backers, summary }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(said: Vec<Said>) -> Vec<(String, Said)> {
        said.into_iter()
            .enumerate()
            .map(|(i, s)| (format!("#{i} host"), s))
            .collect()
    }

    #[test]
    fn a_finding_holds_only_on_a_quorum_of_each_chain() {
        let ok = || answers(vec![Said::Confirms, Said::Confirms]);
        assert_eq!(
            judge_answers(&ok(), 2, &ok(), 2),
            Confirmation::Confirmed {
                contradicted_by: vec![]
            }
        );
        // One endpoint alone (the one that served the finding) is not enough where two exist.
        let one = answers(vec![Said::Confirms, Said::NotYet("behind".into())]);
        assert!(matches!(
            judge_answers(&one, 2, &ok(), 2),
            Confirmation::NotYet(_)
        ));
        assert!(matches!(
            judge_answers(&ok(), 2, &one, 2),
            Confirmation::NotYet(_)
        ));
        // A lone endpoint is the quorum of a chain configured with one.
        let lone = answers(vec![Said::Confirms]);
        assert!(matches!(
            judge_answers(&lone, 1, &lone, 1),
            Confirmation::Confirmed { .. }
        ));
        // Three endpoints, one of them contradicting: confirmed by two, the third named.
        let three = answers(vec![
            Said::Confirms,
            Said::Disputes("no".into()),
            Said::Confirms,
        ]);
        let Confirmation::Confirmed { contradicted_by } = judge_answers(&three, 2, &lone, 1) else {
            panic!("two of three hold");
        };
        assert_eq!(contradicted_by.len(), 1);
        assert_eq!(contradicted_by[0].endpoint, 1);
    }

    /// Of two endpoints that disagree, the one backing the finding is named: a pause would
    /// have rested on its word alone (a fabricated log).
    #[test]
    fn of_two_that_disagree_the_backer_is_named_and_nothing_is_confirmed() {
        let dst = answers(vec![
            Said::Confirms,
            Said::Disputes("no such transaction".into()),
        ]);
        let src = answers(vec![Said::Confirms]);
        let Confirmation::Disputed { backers, summary } = judge_answers(&dst, 2, &src, 1) else {
            panic!("disputed");
        };
        assert_eq!(backers.len(), 1);
        assert_eq!(backers[0].endpoint, 0);
        assert!(backers[0].destination);
        assert!(
            summary.contains("#1 host: no such transaction"),
            "{summary}"
        );
    }

    /// A source endpoint that was behind and now holds the request refutes the suspicion: it is
    /// dropped, nobody is named.
    #[test]
    fn a_suspicion_every_endpoint_contradicts_is_refuted() {
        let dst = answers(vec![Said::Confirms]);
        let src = answers(vec![Said::Disputes("the source assigned nonce 5".into())]);
        assert!(matches!(
            judge_answers(&dst, 1, &src, 1),
            Confirmation::Refuted(_)
        ));
    }
}
