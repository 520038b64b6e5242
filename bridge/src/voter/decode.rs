//! What the destination said about a vote: the submitter's events, a mined receipt's logs, a
//! `HandleSkipped` reason, a refusal's custom error — each turned into the request's [`Outcome`]
//! and settled.

use std::collections::BTreeMap;
use std::time::Instant;

use alloy::rpc::types::TransactionReceipt;
use alloy::transports::RpcError;
use multibridge_contracts::WaitReason;
use multibridge_contracts::bindings::Bridge::{self, BridgeErrors};
use multibridge_contracts::{RejectReason, Request, bridge_error_name, skip_reason_name};
use multibridge_monitoring::VoteTxOutcome;

use super::DestinationReads;
use super::{
    Entry, MAX_OUT_OF_GAS_REMEMBERED, Outcome, Seen, VoteStep, Voter, VoterError, nonce_ranges,
};
use crate::chain::ChainError;
use crate::chain::submitter::{JobEvent, Submit};

impl<D: DestinationReads, S: Submit> Voter<D, S> {
    /// Apply every event the submitter reported since the last step.
    pub(super) fn track(&mut self, step: &mut VoteStep) -> Result<(), VoterError> {
        while let Ok(event) = self.events.try_recv() {
            match event {
                JobEvent::Mined {
                    nonce,
                    receipt,
                    gas_limit,
                } => {
                    let outcome = if receipt.status() {
                        VoteTxOutcome::Mined
                    } else if receipt.gas_used >= gas_limit {
                        VoteTxOutcome::OutOfGas
                    } else {
                        VoteTxOutcome::Reverted
                    };
                    self.metrics.vote_tx(outcome);
                    self.metrics
                        .spent(receipt.gas_used, receipt.effective_gas_price);
                    if outcome != VoteTxOutcome::Mined {
                        let carried = self.requests_of(nonce);
                        tracing::warn!(
                            lane = %self.metrics.lane,
                            tx = %receipt.transaction_hash,
                            outcome = outcome.as_str(),
                            gas_used = receipt.gas_used,
                            gas_limit,
                            requests = carried.len(),
                            nonce = %nonce_ranges(&carried),
                            "vote transaction reverted; re-checking its requests"
                        );
                    }
                    if outcome == VoteTxOutcome::OutOfGas {
                        self.ran_out_of_gas(nonce, gas_limit, step)?;
                    } else {
                        self.apply_receipt(nonce, &receipt, step)?;
                    }
                }
                JobEvent::Replaced { nonce, hash } => {
                    self.metrics.vote_tx(VoteTxOutcome::Replaced);
                    for request in self.requests_of(nonce) {
                        self.settle(request, Outcome::Replaced(hash), Seen::Tracking, step)?;
                    }
                }
                JobEvent::AtFeeCap { .. } => {
                    // Still in flight (the sender logged the nonce and its bid); counted so an
                    // operator sees the cap binding before the lane stalls.
                    self.metrics.vote_tx(VoteTxOutcome::AtFeeCap);
                }
                JobEvent::Superseded { nonce } | JobEvent::Abandoned { nonce } => {
                    if matches!(event, JobEvent::Superseded { .. }) {
                        self.metrics.vote_tx(VoteTxOutcome::Superseded);
                    }
                    // Unknown outcome: the pre-check of a later step finds out.
                    for request in self.requests_of(nonce) {
                        self.settle(request, Outcome::VoteGone, Seen::Tracking, step)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A vote transaction ran out of gas on chain, which its plan (simulation + the bridge's
    /// worst case per item, checked by the bridge before every item) should make impossible:
    /// what it carried goes alone for a while, each with twice the worst-case headroom; a
    /// request whose vote runs out of gas again is set aside with its reason (an alert names the
    /// nonce), never resent without bound.
    pub(super) fn ran_out_of_gas(
        &mut self,
        tx_nonce: u64,
        gas_limit: u64,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        self.singles_until = Instant::now().checked_add(self.config.retry_after);
        if self.out_of_gas.len() >= MAX_OUT_OF_GAS_REMEMBERED {
            self.out_of_gas.clear();
        }
        for nonce in self.requests_of(tx_nonce) {
            if self.out_of_gas.insert(nonce) {
                self.settle(nonce, Outcome::VoteGone, Seen::Receipt, step)?;
            } else {
                let detail = format!(
                    "its vote ran out of gas twice, the second time alone with {gas_limit} gas"
                );
                self.settle(
                    nonce,
                    Outcome::Rejected(RejectReason::OutOfGas, detail),
                    Seen::Receipt,
                    step,
                )?;
            }
        }
        Ok(())
    }

    /// How the vote transaction with nonce `tx_nonce` was sent.
    pub(super) fn pending_entry(&self, tx_nonce: u64) -> Option<Entry> {
        self.pending
            .values()
            .find(|p| p.tx_nonce == tx_nonce)
            .map(|p| p.entry)
    }

    /// The requests the vote transaction with nonce `tx_nonce` carries.
    pub(super) fn requests_of(&self, tx_nonce: u64) -> Vec<u64> {
        self.pending
            .iter()
            .filter(|(_, p)| p.tx_nonce == tx_nonce)
            .map(|(n, _)| *n)
            .collect()
    }

    /// A vote transaction was mined: its logs say what became of each request it carried.
    pub(super) fn apply_receipt(
        &mut self,
        tx_nonce: u64,
        receipt: &TransactionReceipt,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        let carried = self.requests_of(tx_nonce);
        if !receipt.status() {
            let gone = carried
                .into_iter()
                .map(|n| (n, Outcome::VoteGone))
                .collect();
            return self.settle_all(gone, Seen::Receipt, step);
        }
        let recording = matches!(
            self.pending_entry(tx_nonce),
            Some(Entry::Record | Entry::Tight)
        );
        let mut outcomes: BTreeMap<u64, Outcome> = BTreeMap::new();
        for log in receipt.inner.logs() {
            if let Ok(e) = log.log_decode::<Bridge::HandleValueTransfer>() {
                outcomes.insert(e.inner.data.nonce, Outcome::Handled);
            } else if let Ok(e) = log.log_decode::<Bridge::VoteCast>() {
                if e.inner.data.operator == self.operator {
                    outcomes
                        .entry(e.inner.data.nonce)
                        .or_insert(Outcome::VotedByUs);
                }
            } else if let Ok(e) = log.log_decode::<Bridge::HandleSkipped>() {
                let name = skip_reason_name(e.inner.data.reason.0);
                if recording && name == Some("GasBudgetTooLow") {
                    // Planned to record (or by its simulation in full blocks), it landed after
                    // the threshold: it decides next time.
                    if self.decide_next.len() >= MAX_OUT_OF_GAS_REMEMBERED {
                        self.decide_next.clear();
                    }
                    if self.decide_next.insert(e.inner.data.nonce) {
                        self.metrics.recording_votes_late.inc();
                    }
                }
                outcomes.insert(e.inner.data.nonce, skipped(name, e.inner.data.reason.0));
            }
        }
        // A request the transaction carried but no log mentions: re-check it.
        let settled = carried
            .into_iter()
            .map(|nonce| {
                let outcome = outcomes.remove(&nonce).unwrap_or(Outcome::VoteGone);
                (nonce, outcome)
            })
            .collect();
        self.settle_all(settled, Seen::Receipt, step)
    }

    /// The destination refuses the vote: find out why and act on it.
    pub(super) fn refused(
        &mut self,
        batch: &[Request],
        entry: Entry,
        error: &ChainError,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        if matches!(entry, Entry::Execute | Entry::Attested) {
            // Settled or changed since the read that found them executable: the next re-check
            // looks again.
            tracing::debug!(lane = %self.metrics.lane, error = %error, "execution would revert; re-checking later");
            return Ok(());
        }
        let decoded = match error {
            ChainError::Rejected {
                source: RpcError::ErrorResp(p),
                ..
            } => p.as_decoded_interface_error::<BridgeErrors>(),
            _ => None,
        };
        if let Some(BridgeErrors::NotOperator(_)) = decoded {
            return Err(VoterError::NotOperator(self.operator));
        }
        if batch.len() > 1 {
            // One bad item spoils a batch: go one by one for a while.
            tracing::warn!(lane = %self.metrics.lane, error = %error, "batch vote would revert; sending one by one");
            self.singles_until = Instant::now().checked_add(self.config.retry_after);
            return Ok(());
        }
        let Some(request) = batch.first() else {
            return Ok(());
        };
        let outcome = match &decoded {
            // Settled between the pre-check and the send: still success, not an error.
            Some(BridgeErrors::AlreadyHandled(_)) => Outcome::Handled,
            Some(BridgeErrors::AlreadyVoted(_)) => Outcome::VotedByUs,
            Some(e) => refusal(&bridge_error_name(e), format!("destination refuses: {e:?}")),
            None => Outcome::Waiting(WaitReason::Other, format!("destination refuses: {error}")),
        };
        self.settle(request.nonce, outcome, Seen::Refusal, step)
    }
}

/// What a `HandleSkipped` with the named reason means for the request.
pub(super) fn skipped(name: Option<&str>, selector: [u8; 4]) -> Outcome {
    match name {
        Some("AlreadyHandled") => Outcome::Handled,
        // Our vote is on chain (a vote skipped as already voted, or an execution of a key still
        // below the threshold).
        Some("AlreadyVoted" | "BelowThreshold") => Outcome::VotedByUs,
        // Not taken: the gas left was below the bridge's worst case for one more item (what the
        // items before it did on chain cost more than simulated). Voted again at once.
        Some("GasBudgetTooLow") => Outcome::VoteGone,
        Some(name) => refusal(name, format!("destination skipped the vote: {name}")),
        None => Outcome::Waiting(
            WaitReason::Other,
            format!(
                "destination skipped the vote: 0x{}",
                alloy::hex::encode(selector)
            ),
        ),
    }
}

/// What a refusal by the bridge's custom error `name` means for a request: set aside for good
/// (a [`RejectReason`]), or waiting for a condition to clear (a [`WaitReason`], `other` when it
/// names none).
pub(super) fn refusal(name: &str, detail: String) -> Outcome {
    match (
        WaitReason::from_bridge_error(name),
        RejectReason::from_bridge_error(name),
    ) {
        (_, Some(reject)) => Outcome::Rejected(reject, detail),
        (Some(wait), None) => Outcome::Waiting(wait, detail),
        (None, None) => Outcome::Waiting(WaitReason::Other, detail),
    }
}
