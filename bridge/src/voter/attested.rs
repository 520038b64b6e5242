//! The voter's step in attested mode: the open requests go to the [`crate::attest::Attestor`],
//! which says which batches to send now; each is estimated and sent as one `executeAttested`
//! through the lane's submitter, its open requests tracked as for a vote.

use std::time::{Duration, Instant};

use alloy::sol_types::SolCall;
use multibridge_contracts::bindings::Bridge;

use super::{Committee, DestinationReads, Entry, VoteStep, Voter, VoterError};
use crate::attest::AttestError;
use crate::chain::ChainError;
use crate::chain::sender::SendError;
use crate::chain::submitter::{Submit, SubmitError};
use crate::store::StoredRequest;

/// How long the committee read for attested batches is used.
const COMMITTEE_FRESH_FOR: Duration = Duration::from_secs(10);

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
    async fn attest_committee(&mut self) -> Result<Committee, VoterError> {
        if let Some((committee, at)) = &self.attest_committee
            && at.elapsed() < COMMITTEE_FRESH_FOR
        {
            return Ok(committee.clone());
        }
        let committee = self.destination.committee().await?;
        self.attest_committee = Some((committee.clone(), Instant::now()));
        Ok(committee)
    }

    /// Plan and send the attested batches of the open requests `open`, at most `room`
    /// transactions.
    pub(super) async fn step_attested(
        &mut self,
        open: Vec<StoredRequest>,
        room: usize,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        let nonces: Vec<u64> = open.iter().map(|r| r.request.nonce).collect();
        let committee = self.attest_committee().await?;
        let latest = self.destination.latest_block_gas().await?;
        self.gas_limit = Some((latest.limit, Instant::now()));
        let Some(attestor) = self.attestor.as_mut() else {
            return Ok(());
        };
        let sends = attestor.plan(&nonces, &committee, latest.is_full()).await?;
        if sends.is_empty() {
            return Ok(());
        }
        let sending = Instant::now();
        let count = sends.len().min(room);
        let result = self.send_attested(sends, &nonces, room, step).await;
        if let Some(attestor) = &self.attestor {
            attestor.finish_step(sending.elapsed(), count);
        }
        result
    }

    /// Estimate and send `sends` (at most `room`), tracking the requests of `nonces` they carry.
    async fn send_attested(
        &mut self,
        sends: Vec<crate::attest::AttestedSend>,
        nonces: &[u64],
        room: usize,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        let (_, block_gas) = self.gas_budget().await?;
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
        let estimates =
            futures::future::join_all(sends.iter().map(|(_, input)| self.estimate(input.clone())))
                .await;
        for ((send, input), estimate) in sends.into_iter().zip(estimates) {
            let carried: Vec<_> = send
                .requests
                .iter()
                .filter(|r| nonces.contains(&r.nonce))
                .cloned()
                .collect();
            match estimate {
                Ok(gas_limit) => {
                    let gas_limit = gas_limit.min(block_gas);
                    match self
                        .send(&carried, Entry::Attested, input, gas_limit, step)
                        .await
                    {
                        Ok(()) => {
                            if let Some(attestor) = &self.attestor {
                                attestor.count_sent(send.standby);
                            }
                            tracing::info!(lane = %self.metrics.lane, first = send.first, count = send.requests.len(), open = carried.len(), gas_limit, standby = send.standby, "attested batch sent");
                        }
                        Err(VoterError::Submit(SubmitError::Send(SendError::Chain(
                            e @ ChainError::Rejected { .. },
                        )))) => self.attested_refused(send.first, &carried, &e, step)?,
                        Err(other) => return Err(other),
                    }
                }
                Err(SubmitError::Send(SendError::WouldRevert(e)))
                    if super::batch::is_unfunded_refusal(&e) =>
                {
                    // Sending waits until the key is funded; signing and serving go on (a user
                    // can send the batch meanwhile: `multibridge execute`).
                    return Err(
                        SubmitError::Send(SendError::InsufficientFunds(self.operator)).into(),
                    );
                }
                Err(SubmitError::Send(SendError::WouldRevert(e))) => {
                    self.attested_refused(send.first, &carried, &e, step)?;
                }
                Err(other) => return Err(other.into()),
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
            if let Some(attestor) = self.attestor.as_mut() {
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
