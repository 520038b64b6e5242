//! Several calls sent at once (issue 54): the submitter of a key serves every pair and lane that
//! writes with it on a chain, and on the main chain of a hub that is every pair's votes. Sent one
//! after another, each waited for the node's answer to the one before: at 16 pairs a block's
//! votes queued behind each other long enough to miss the next block (the service → main lanes
//! were 0.3 s slower than the main → service ones).
//!
//! A round is priced once, signed under consecutive nonces and broadcast all at once; a node's
//! pool takes a nonce that arrives before the one under it and runs it in order. What a node
//! refuses is handled as [`Sender::send_call`] handles it, with one difference: a refused
//! transaction under one the node took leaves a hole the key's later transactions queue above,
//! so its nonce is filled at once with a 0-value transfer to itself (counted in
//! `signer_nonce_holes_filled_total`), and the refused call is sent again one by one, at a new
//! nonce, like a call that did not fit the round: "nonce too low" (another process of the key
//! used the nonce: no hole, the sequence is rebuilt from the chain) and an underpriced bid are
//! retried there as a single send retries them.

use futures::future::join_all;

use super::*;

/// One call of a round: the transaction request, its gas limit, and whether it bids the leading
/// tip ([`leading`]).
pub type RoundCall = (TransactionRequest, u64, bool);

/// Whether a broadcast's outcome means the node took (or may have taken) the transaction.
pub(super) fn taken(outcome: &Result<(), BroadcastError>) -> bool {
    matches!(
        outcome,
        Ok(()) | Err(BroadcastError::AlreadyKnown) | Err(BroadcastError::Unknown)
    )
}

impl Sender {
    /// Send `calls` at once, in their order under consecutive nonces; one result per call, in
    /// the same order (module docs).
    pub async fn send_round(&mut self, calls: Vec<RoundCall>) -> Vec<Result<Sent, SendError>> {
        if calls.len() < 2 {
            return self.send_each(calls).await;
        }
        let Ok((fees, sent_block)) = self.market_fees().await else {
            // No price: each call finds out on its own (and reports its own error).
            return self.send_each(calls).await;
        };
        let base = self.next_nonce;
        let requests: Vec<(TransactionRequest, Fees)> = calls
            .iter()
            .map(|(call, gas_limit, lead)| {
                let bid = if *lead {
                    leading(fees, &self.policy.fees)
                } else {
                    fees
                };
                (call.clone().with_gas_limit(*gas_limit), bid)
            })
            .collect();
        let this = &*self;
        let signed = join_all(
            requests
                .iter()
                .zip(base..)
                .map(
                    |((request, bid), nonce)| async move { this.sign(request, nonce, *bid).await },
                ),
        )
        .await;
        // The round is every call up to the first that could not be signed (a nonce is never
        // broadcast above one that was not); that one and the rest go one by one after it.
        let signed: Vec<(TxEnvelope, Bytes)> = signed.into_iter().map_while(Result::ok).collect();
        let outcomes = join_all(signed.iter().map(|(_, raw)| this.broadcast(raw.clone()))).await;
        let top = outcomes.iter().rposition(taken);
        let mut results: Vec<Option<Result<Sent, SendError>>> =
            std::iter::repeat_with(|| None).take(calls.len()).collect();
        let (mut holes, mut again, mut resync) = (Vec::new(), Vec::new(), false);
        let mut underpriced = false;
        for (index, (((envelope, raw), outcome), (request, bid))) in
            signed.into_iter().zip(outcomes).zip(requests).enumerate()
        {
            let nonce = base.saturating_add(index as u64);
            let under_taken = top.is_some_and(|t| index < t);
            let result = match outcome {
                Ok(()) | Err(BroadcastError::AlreadyKnown) | Err(BroadcastError::Unknown) => {
                    Ok(self.track(nonce, request, *envelope.tx_hash(), raw, bid, sent_block))
                }
                // Used by another process of the key, or held by a transaction of an earlier
                // sequence the node has and the round's base missed: no hole (a filler at a
                // raised bid would replace what holds it).
                Err(BroadcastError::NonceTooLow | BroadcastError::Occupied) => {
                    resync = true;
                    again.push(index);
                    continue;
                }
                Err(BroadcastError::Fenced(f)) => Err(SendError::Fenced(f)),
                Err(BroadcastError::Underpriced) => {
                    underpriced = true;
                    holes.extend(under_taken.then_some(nonce));
                    again.push(index);
                    continue;
                }
                Err(BroadcastError::InsufficientFunds) => {
                    holes.extend(under_taken.then_some(nonce));
                    Err(SendError::InsufficientFunds(self.address))
                }
                Err(BroadcastError::Refused(e)) => {
                    holes.extend(under_taken.then_some(nonce));
                    Err(SendError::Chain(e))
                }
            };
            if let Some(slot) = results.get_mut(index) {
                *slot = Some(result);
            }
        }
        if let Some(top) = top {
            self.next_nonce = base.saturating_add(top as u64).saturating_add(1);
        }
        // A filler at the bid the node just refused would be refused too: raised as a single
        // send raises an underpriced bid.
        let fill_fees = if underpriced && !holes.is_empty() {
            self.quote = None;
            match self.market_fees().await {
                Ok((fresh, _)) => escalate(fees, fresh, fees, &self.policy.fees).unwrap_or(fresh),
                Err(_) => fees,
            }
        } else {
            fees
        };
        for nonce in holes {
            tracing::warn!(signer = %self.address, nonce, "a transaction of a round was refused under one the node took: filling its nonce with a 0-value transfer to itself");
            if let Err(e) = self.fill(nonce, fill_fees, sent_block).await {
                // The hole stays for `poll` to fill (after two blocks) or the next term's sender.
                tracing::warn!(signer = %self.address, nonce, error = %e, "cannot fill the nonce now");
            }
        }
        if resync && let Err(e) = self.resync_nonce().await {
            tracing::warn!(signer = %self.address, error = %e, "cannot rebuild the nonce sequence now");
        }
        // One by one: what is sent again, and what did not fit the round.
        let unsigned = results
            .iter()
            .enumerate()
            .filter(|(index, result)| result.is_none() && !again.contains(index))
            .map(|(index, _)| index)
            .collect::<Vec<_>>();
        for index in again.into_iter().chain(unsigned) {
            if let Some((call, gas_limit, lead)) = calls.get(index) {
                let result = self.send_call(call.clone(), *gas_limit, *lead).await;
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(result);
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every call of the round has a result: sent, refused or sent again"))
            .collect()
    }

    /// Send `calls` one after another.
    async fn send_each(&mut self, calls: Vec<RoundCall>) -> Vec<Result<Sent, SendError>> {
        let mut results = Vec::with_capacity(calls.len());
        for (call, gas_limit, lead) in calls {
            results.push(self.send_call(call, gas_limit, lead).await);
        }
        results
    }
}
