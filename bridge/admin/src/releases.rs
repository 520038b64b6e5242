//! What a pauser and the owner do with held releases (audit NEW-M2, NEW-M4): a pauser freezes a
//! queued release it does not recognise, the owner cancels it or lifts the freeze; and the owner
//! settles a genuine request whose nonce a compromised quorum executed under a forged payload.
//! Every call is simulated first, so a key without the role is named before anything is sent.

use alloy::primitives::B256;
use alloy::sol_types::SolCall;
use multibridge_contracts::attestation::{RECORD_WINDOW, attested_link};
use multibridge_contracts::{AttestedExecution, Bridge, Lane, Request, VoteDomain};

use super::send::{CallError, send_call};
use crate::chain::lookup::{ScanBounds, TxAt, attested_in_window, find_request, handled_key};
use crate::chain::{ChainError, ChainPair};
use crate::config::Config;
use crate::signer::OperatorSigner;

/// What to do with one queued release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseAction {
    /// Hold it (a pauser or the owner): nobody executes it until the owner decides.
    Freeze,
    /// Lift a freeze (the owner): the relays execute it once due.
    Unfreeze,
    /// Cancel it for good (the owner): its amount stays in the bridge.
    Cancel,
}

impl ReleaseAction {
    /// The bridge call.
    fn calldata(self, nonce: u64) -> Vec<u8> {
        match self {
            Self::Freeze => Bridge::setQueuedReleaseFrozenCall {
                nonce,
                frozen: true,
            }
            .abi_encode(),
            Self::Unfreeze => Bridge::setQueuedReleaseFrozenCall {
                nonce,
                frozen: false,
            }
            .abi_encode(),
            Self::Cancel => Bridge::cancelQueuedReleaseCall { nonce }.abi_encode(),
        }
    }
}

/// Apply `action` to the queued release of `nonce` on `lane`'s destination as `signer`.
pub async fn act_on_release(
    config: &Config,
    lane: Lane,
    nonce: u64,
    action: ReleaseAction,
    signer: &OperatorSigner,
) -> Result<B256, CallError> {
    let role = lane.destination();
    let chain = config.chains.get(role);
    send_call(
        role,
        chain,
        signer,
        chain.bridge,
        action.calldata(nonce).into(),
    )
    .await
}

/// Why a settlement was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// A chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The bridge refused the call.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The source has no request with the nonce.
    #[error("{lane}: the source has no request {nonce}; nothing to settle")]
    NoRequest {
        /// Lane.
        lane: Lane,
        /// Nonce.
        nonce: u64,
    },
    /// The attested executions found in the destination's logs for the nonce's window are not
    /// the bridge's record of it (a node missing logs, or a reorg under way): the bridge would
    /// refuse the settlement.
    #[error(
        "{lane}: the {found} attested executions found in the logs of nonces {first}..{end} do not match the destination's attested record; read the logs from another node (or after a reorg) and try again; if batches keep executing there, pause the destination first"
    )]
    AttestedRecord {
        /// Lane.
        lane: Lane,
        /// How many were found.
        found: usize,
        /// The window's first nonce.
        first: u64,
        /// Past its last nonce.
        end: u64,
    },
    /// The destination did not execute the nonce: the relays will vote the genuine request.
    #[error("{lane}: nonce {nonce} is not executed on the destination; the relays vote it")]
    NotHandled {
        /// Lane.
        lane: Lane,
        /// Nonce.
        nonce: u64,
    },
    /// The destination executed the genuine payload: settling would pay it twice.
    #[error(
        "{lane}: nonce {nonce} was executed with the genuine payload (transaction {tx}); nothing to settle"
    )]
    Genuine {
        /// Lane.
        lane: Lane,
        /// Nonce.
        nonce: u64,
        /// The execution.
        tx: B256,
    },
}

/// What a settlement found and sent.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The genuine request, from the source.
    pub request: Request,
    /// The execution under the forged payload (when its log was found).
    pub forged: Option<TxAt>,
    /// The settlement transaction.
    pub tx: B256,
}

/// Settle the genuine request of `nonce` on `lane` as the owner: the request is read from the
/// source, the destination must have executed the nonce under another vote key (read from its
/// log; the bridge itself refuses a nonce its genuine key executed, on its record of the key
/// each nonce executed under), then `settleHandled` queues the genuine release for the
/// destination's delay.
pub async fn settle(
    config: &Config,
    chains: &ChainPair,
    lane: Lane,
    nonce: u64,
    signer: &OperatorSigner,
) -> Result<Settled, SettleError> {
    let source = chains.get(lane.source());
    let destination = chains.get(lane.destination());
    let everything = |start_block: u64, head: u64| ScanBounds {
        floor: start_block,
        top: head,
        max_range: 10_000,
        not_before: None,
        max_queries: usize::MAX,
    };
    let source_head = source.head().await?;
    let request = find_request(
        source,
        nonce,
        everything(config.chains.get(lane.source()).start_block, source_head),
    )
    .await?
    .ok_or(SettleError::NoRequest { lane, nonce })?;
    if !destination.views().is_handled(nonce).await? {
        return Err(SettleError::NotHandled { lane, nonce });
    }
    let domain = VoteDomain {
        src_chain_id: source.chain_id(),
        src_bridge: source.bridge(),
        dst_chain_id: destination.chain_id(),
        dst_bridge: destination.bridge(),
    };
    let genuine = domain.vote_key(&request);
    let destination_history = everything(
        config.chains.get(lane.destination()).start_block,
        destination.head().await?,
    );
    let forged = handled_key(destination, nonce, destination_history).await?;
    if let Some((at, key)) = forged
        && key == genuine
    {
        return Err(SettleError::Genuine {
            lane,
            nonce,
            tx: at.tx,
        });
    }
    // The bridge refuses a nonce its genuine payload executed by attestation on its record of
    // the window's attested executions, which the call must carry.
    let window = nonce / RECORD_WINDOW;
    let attested = attested_in_window(destination, window, destination_history).await?;
    let record = destination
        .bridge_call("attestedRecord", |b| async move {
            b.attestedRecord(window).call().await
        })
        .await?;
    let chained = attested
        .iter()
        .fold(B256::ZERO, |r, &(n, k)| attested_link(r, n, k));
    if chained != record {
        return Err(SettleError::AttestedRecord {
            lane,
            found: attested.len(),
            first: window.saturating_mul(RECORD_WINDOW),
            end: window.saturating_add(1).saturating_mul(RECORD_WINDOW),
        });
    }
    let role = lane.destination();
    let chain = config.chains.get(role);
    let call = Bridge::settleHandledCall {
        r: request.clone(),
        attested: attested
            .into_iter()
            .map(|(nonce, key)| AttestedExecution {
                nonce,
                voteKey: key,
            })
            .collect(),
    };
    let tx = send_call(role, chain, signer, chain.bridge, call.abi_encode().into()).await?;
    Ok(Settled {
        request,
        forged: forged.map(|(at, _)| at),
        tx,
    })
}

/// The unix time a settled (or any queued) release of `nonce` becomes due on `lane`'s
/// destination (`None`: not queued).
pub async fn due_at(chains: &ChainPair, lane: Lane, nonce: u64) -> Result<Option<u64>, ChainError> {
    let q = chains
        .get(lane.destination())
        .bridge_call("queuedRelease", |b| async move {
            b.queuedRelease(nonce).call().await
        })
        .await?;
    Ok((q.releaseAt != 0).then_some(q.releaseAt))
}
