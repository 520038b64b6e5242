//! The voter's step in attested mode: the open requests go to the [`crate::attest::Attestor`],
//! which says which batches to send now; each is estimated and sent as one `executeAttested`
//! through the lane's submitter, its open requests tracked as for a vote.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use alloy::sol_types::SolCall;
use multibridge_contracts::NonceState;
use multibridge_contracts::bindings::Bridge;

use super::batch::Refusal;
use super::{Committee, DestinationReads, Entry, Tried, VoteStep, Voter, VoterError};
use crate::attest::AttestError;
use crate::chain::ChainError;
use crate::chain::sender::SendError;
use crate::chain::submitter::{Submit, SubmitError};

/// How many times the committee's size an attested lane looks ahead, in transactions' worth of
/// open requests per transaction of room. A batch stays in view from its signing through its
/// collection by the operator whose turn it is, its block and the pre-check that finds it
/// handled: three or four steps of every relay. The lane moves at most one look-ahead per that
/// time (measured at 5 of 7: 5,376 requests in view, about 9 s, 600 transfers/s against a
/// capacity of 1,000 with once the committee's size); twice keeps the destination's blocks
/// full.
const ATTESTED_REACH_PER_OPERATOR: usize = 2;
/// The least an attested lane looks ahead, in transactions' worth of open requests per
/// transaction of room.
const ATTESTED_MIN_REACH: usize = 4;
/// The most: past this, a relay's own turns are rare enough that the standby timeout sends the
/// rest, and every batch in view is composed, signed and kept in memory.
const ATTESTED_MAX_REACH: usize = 32;

impl From<AttestError> for VoterError {
    fn from(e: AttestError) -> Self {
        match e {
            AttestError::Store(e) => Self::Store(e),
            // The same pause as a vote the signer would not sign.
            AttestError::Signer(e) => Self::Submit(SubmitError::Send(SendError::Signer(e))),
        }
    }
}

impl<D: DestinationReads, S: Submit> Voter<D, S> {
    /// One attested step: the pre-check of the look-ahead, then its batches planned and sent
    /// (at most `room` transactions).
    pub(super) async fn step_attested(
        &mut self,
        room: usize,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        let prechecking = Instant::now();
        let committee = self.committee_now().await?;
        let nonces = self.ready_attested(&committee, room, step).await?;
        if let Some(attestor) = self.attestor() {
            attestor.precheck_took(prechecking.elapsed());
        }
        let latest = self.destination.latest_block_gas().await?;
        self.gas_limit = Some((latest.limit, Instant::now()));
        let Some(attestor) = self.attestor() else {
            return Ok(());
        };
        attestor
            .set_transaction_budget(latest.limit.saturating_mul(super::MAX_VOTE_BLOCK_SHARE) / 100);
        let sends = attestor.plan(&nonces, &committee, latest.is_full()).await?;
        let by_votes = attestor.by_votes(&nonces);
        let sending = Instant::now();
        let (due, count) = (sends.len(), sends.len().min(room));
        let result = if sends.is_empty() {
            Ok(())
        } else {
            self.send_attested(sends, &nonces, room, step).await
        };
        if let Some(attestor) = self.attestor()
            && due > 0
        {
            attestor.finish_step(sending.elapsed(), count, due);
        }
        result?;
        // Batches too large for one transaction (audit A3-L8): every operator votes their
        // requests, in vote batches sized by gas like any vote.
        let room = room.saturating_sub(count);
        if !by_votes.is_empty() && room > 0 {
            let mut vote = Vec::with_capacity(by_votes.len());
            for nonce in by_votes {
                // Not one this operator voted already (a lane that switched modes).
                if let Some(stored) = self.store.lock().get(self.metrics.lane, nonce)?
                    && stored.status == multibridge_contracts::RequestStatus::Observed
                {
                    vote.push(stored);
                }
            }
            self.send_votes(vote, Vec::new(), room, step).await?;
        }
        Ok(())
    }

    /// A standby replica's attested step: pre-check the look-ahead and sign its batches, so
    /// this operator's signatures are served by every replica and never wait for an election
    /// (issue 52). Sends nothing. `false` when the lane votes instead.
    pub async fn sign_as_standby(&mut self) -> Result<bool, VoterError> {
        if self.attestor().is_none() {
            return Ok(false);
        }
        let committee = self.committee_now().await?;
        let mut step = VoteStep::default();
        let room = self.config.attested_max_in_flight;
        let nonces = self.ready_attested(&committee, room, &mut step).await?;
        if let Some(attestor) = self.attestor() {
            attestor.sign_standby(&nonces, &committee).await?;
        }
        Ok(true)
    }

    /// How many requests an attested step looks at. The batches in view are signed and served
    /// to the other operators whatever this relay's own room, so the full `max_in_flight`
    /// transactions' worth (a relay whose transactions fill its room signed two batches ahead,
    /// and the others' batches waited for its signature); and a batch is sent by the operator
    /// whose turn it is, so of `n` operators' batches about one in `n` is this relay's:
    /// [`ATTESTED_REACH_PER_OPERATOR`] × `n` times as far (at least [`ATTESTED_MIN_REACH`])
    /// keeps its own turns in view however large the committee.
    fn attested_look_ahead(&self, committee: &Committee) -> usize {
        let reach = committee
            .operators
            .len()
            .saturating_mul(ATTESTED_REACH_PER_OPERATOR)
            .clamp(ATTESTED_MIN_REACH, ATTESTED_MAX_REACH);
        self.config
            .batch_size
            .saturating_mul(self.config.max_in_flight.max(1))
            .saturating_mul(reach)
            .max(64)
    }

    /// The open requests of the look-ahead (their nonces, ascending, none in flight), after
    /// the pre-check settled the handled ones. Only nonces are read from the store (an index
    /// alone): the batches read the payloads they need when composed. Requests voted before the
    /// lane switched to attested batches are signed and sent like the others (votes and
    /// signatures never add up).
    async fn ready_attested(
        &mut self,
        committee: &Committee,
        room: usize,
        step: &mut VoteStep,
    ) -> Result<Vec<u64>, VoterError> {
        let lane = self.metrics.lane;
        let limit = self.attested_look_ahead(committee);
        let retry_after = self.config.retry_after.as_secs().max(1);
        let (fresh, voted) = {
            let store = self.store.lock();
            let window = limit.saturating_add(self.pending.len());
            let fresh: Vec<u64> = store
                .needing_vote_nonces(lane, retry_after, window, room)?
                .into_iter()
                .filter(|n| !self.pending.contains_key(n))
                .take(limit)
                .collect();
            let voted: BTreeSet<u64> = store
                .stale_voted(lane, retry_after, limit)?
                .into_iter()
                .map(|r| r.request.nonce)
                .collect();
            (fresh, voted)
        };
        let nonces: Vec<u64> = fresh
            .into_iter()
            .chain(voted.iter().copied())
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        if nonces.is_empty() {
            return Ok(Vec::new());
        }
        let states = self.attested_states(&nonces).await?;
        let mut open = Vec::with_capacity(nonces.len());
        let mut handled = Vec::new();
        for (nonce, state) in nonces.into_iter().zip(states) {
            if state == NonceState::Handled {
                handled.push((nonce, voted.contains(&nonce)));
            } else {
                open.push(nonce);
            }
        }
        self.settle_handled(handled, step).await?;
        Ok(open)
    }

    /// The destination state of `nonces` for an attested lane, where only "handled or not"
    /// matters (nobody's vote counts there): below `lowerHandleNonce` every nonce is handled, at
    /// or above `upperHandleNonce` none is, so only the nonces between are read one by one. A
    /// drain's look-ahead (5,376 requests at 5 of 7) is mostly above `upperHandleNonce`; reading
    /// all of it was 21 `votingStatus` calls per relay per step, on the chain that is also
    /// mining the batches.
    async fn attested_states(&mut self, nonces: &[u64]) -> Result<Vec<NonceState>, VoterError> {
        let (lower, upper) = self.destination.handle_nonces().await?;
        let between: Vec<u64> = nonces
            .iter()
            .copied()
            .filter(|n| (lower..upper).contains(n))
            .collect();
        let mut read: HashMap<u64, NonceState> = if between.is_empty() {
            HashMap::new()
        } else {
            let states = self.destination.voting_status(&between).await?;
            between.into_iter().zip(states).collect()
        };
        let derived = nonces.len().saturating_sub(read.len());
        if let Some(attestor) = self.attestor() {
            attestor.count_precheck(derived, read.len());
        }
        Ok(nonces
            .iter()
            .map(|n| {
                if *n < lower {
                    NonceState::Handled
                } else {
                    read.remove(n).unwrap_or(NonceState::Open)
                }
            })
            .collect())
    }

    /// Estimate and send `sends` (at most `room`), tracking the requests of `nonces` they carry.
    async fn send_attested(
        &mut self,
        sends: Vec<crate::attest::AttestedSend>,
        nonces: &[u64],
        room: usize,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        self.gas_budget().await?;
        let sends: Vec<(crate::attest::AttestedSend, alloy::primitives::Bytes)> = sends
            .into_iter()
            .take(room)
            .map(|send| {
                let input = Bridge::executeAttestedCall {
                    rs: send.requests.clone(),
                    signatures: send.signatures.clone(),
                }
                .abi_encode()
                .into();
                (send, input)
            })
            .collect();
        // Every batch's gas at once (one simulation each, on distinct nonces): one after the
        // other they were most of a step, and the batches due waited for the slowest relay.
        // An attested item needs ITEM_GAS left whatever its kind.
        let estimates = futures::future::join_all(sends.iter().map(|(_, input)| {
            self.estimate(
                input.clone(),
                Entry::Attested,
                multibridge_contracts::ITEM_GAS,
            )
        }))
        .await;
        for ((send, input), estimate) in sends.into_iter().zip(estimates) {
            let carried: Vec<_> = send
                .requests
                .iter()
                .filter(|r| nonces.contains(&r.nonce))
                .cloned()
                .collect();
            // Too large for one transaction was decided when the batch was composed (it is
            // voted instead): no budget here but the block's.
            match self
                .try_send(&carried, Entry::Attested, input, estimate, u64::MAX, step)
                .await?
            {
                Tried::Sent(gas_limit) => {
                    if let Some(attestor) = self.attestor() {
                        attestor.count_sent(send.standby);
                    }
                    tracing::info!(lane = %self.metrics.lane, first = send.first, count = send.requests.len(), open = carried.len(), standby = send.standby, gas_limit, "attested batch sent");
                }
                Tried::Refused(Refusal::Node(e)) => {
                    self.attested_refused(send.first, &carried, &e, step)?;
                }
                Tried::Refused(Refusal::OverBudget(_)) => {}
            }
        }
        Ok(())
    }

    /// The destination would refuse an attested batch. Refused signatures (an operator removed
    /// since they were collected, a bad one slipped through) are collected again; a whole-call
    /// condition (paused, another chain, no counterpart) makes its open requests wait with that
    /// reason, retried after `retry_after` like a vote that waits — not every step.
    fn attested_refused(
        &mut self,
        first: u64,
        carried: &[multibridge_contracts::Request],
        error: &ChainError,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        use multibridge_contracts::bindings::Bridge::BridgeErrors;
        let decoded = match error {
            ChainError::Rejected {
                source: alloy::transports::RpcError::ErrorResp(p),
                ..
            } => p.as_decoded_interface_error::<BridgeErrors>(),
            _ => None,
        };
        let signatures = matches!(
            decoded,
            None | Some(
                BridgeErrors::NotEnoughAttestations(_)
                    | BridgeErrors::SignersNotAscending(_)
                    | BridgeErrors::SignatureNotCanonical(_)
                    | BridgeErrors::SignaturesMalformed(_)
            )
        );
        if signatures {
            tracing::warn!(lane = %self.metrics.lane, first, error = %error, "attested batch would revert: collecting its signatures again");
            if let Some(attestor) = self.attestor() {
                attestor.forget(first);
            }
            return Ok(());
        }
        let name = decoded
            .as_ref()
            .map(multibridge_contracts::bridge_error_name)
            .unwrap_or_default();
        let reason = multibridge_contracts::WaitReason::from_bridge_error(&name)
            .unwrap_or(multibridge_contracts::WaitReason::Other);
        tracing::warn!(lane = %self.metrics.lane, first, error = %error, reason = reason.as_str(), "attested batch would revert: its requests wait");
        for r in carried {
            self.settle(
                r.nonce,
                super::Outcome::Waiting(reason, format!("attested batch refused: {name}")),
                super::Seen::Refusal,
                step,
            )?;
        }
        Ok(())
    }
}
