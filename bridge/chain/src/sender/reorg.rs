//! After a reorg, or when the node dropped what it was given: the sender's own transactions a
//! reorg un-mined are broadcast again with the same signed bytes, a hole in the nonce sequence
//! none of them can fill is filled with a 0-value transfer to itself, and what the node dropped
//! is broadcast again — each fence-checked like any broadcast.

use super::*;

impl Sender {
    /// Transactions this sender saw mined at nonces the chain has not used any more: a reorg
    /// un-mined them. Broadcast each again as it was (the same signed bytes: the same effect if
    /// it is mined again) and track it until it is.
    pub(super) async fn restore_unmined(
        &mut self,
        mined_count: u64,
        head: &Head,
    ) -> Result<(), SendError> {
        let unmined: Vec<u64> = self.mined.range(mined_count..).map(|(n, _)| *n).collect();
        if unmined.is_empty() {
            return Ok(());
        }
        tracing::warn!(signer = %self.address, chain_nonce = mined_count, count = unmined.len(), first = unmined.first().copied().unwrap_or_default(), "a reorg un-mined transactions of this signer: broadcasting them again");
        self.chain
            .metrics()
            .reorged_transactions
            .inc_by(unmined.len() as u64);
        for nonce in unmined {
            let Some((mut entry, _)) = self.mined.remove(&nonce) else {
                continue;
            };
            match self.broadcast(entry.raw.clone()).await {
                Err(BroadcastError::Fenced(f)) => {
                    // Keep it for the next term's sender to find the hole.
                    self.mined.insert(nonce, (entry, head.number));
                    return Err(SendError::Fenced(f));
                }
                Err(BroadcastError::InsufficientFunds) => {
                    return Err(SendError::InsufficientFunds(self.address));
                }
                _ => {}
            }
            entry.sent_at = Instant::now();
            entry.sent_block = head.number;
            self.in_flight.insert(nonce, entry);
            self.next_nonce = self.next_nonce.max(nonce.saturating_add(1));
        }
        Ok(())
    }

    /// A hole at the chain's nonce that no transaction of this sender fills (this process never
    /// sent it: it restarted after a reorg took it back), while the sequence has gone past it.
    /// After [`HOLE_PATIENCE_BLOCKS`] blocks, fill it — up to the first nonce in flight — with
    /// 0-value transfers to itself: the transactions queued above it run, and whatever the
    /// lost ones were meant to do is found undone on chain (recovery requeues it).
    pub(super) async fn fill_hole(
        &mut self,
        mined_count: u64,
        head: &Head,
    ) -> Result<(), SendError> {
        let first_in_flight = self.in_flight.keys().next().copied();
        let above = first_in_flight.unwrap_or(self.next_nonce);
        if mined_count >= above || first_in_flight == Some(mined_count) {
            self.hole = None;
            return Ok(());
        }
        match self.hole {
            Some((nonce, since)) if nonce == mined_count => {
                if head.number < since.saturating_add(HOLE_PATIENCE_BLOCKS) {
                    return Ok(());
                }
            }
            _ => {
                self.hole = Some((mined_count, head.number));
                return Ok(());
            }
        }
        self.hole = None;
        tracing::warn!(signer = %self.address, from = mined_count, to = above, "a hole in this signer's nonce sequence that none of its transactions fills: filling it with 0-value transfers to itself");
        let (fees, _) = self.market_fees().await?;
        for nonce in mined_count..above {
            self.fill(nonce, fees, head.number).await?;
        }
        self.next_nonce = self.next_nonce.max(above);
        Ok(())
    }

    /// Send a 0-value transfer to itself under `nonce` (a hole no transaction of the sender
    /// fills) and track it.
    pub(super) async fn fill(
        &mut self,
        nonce: u64,
        fees: Fees,
        block: u64,
    ) -> Result<(), SendError> {
        let filler = TransactionRequest::default()
            .with_from(self.address)
            .with_to(self.address)
            .with_value(alloy::primitives::U256::ZERO)
            .with_chain_id(self.chain.chain_id())
            .with_gas_limit(TRANSFER_GAS);
        let (envelope, raw) = self.sign(&filler, nonce, fees).await?;
        let outcome = self.broadcast(raw.clone()).await;
        match outcome {
            Err(BroadcastError::Fenced(f)) => return Err(SendError::Fenced(f)),
            Err(BroadcastError::InsufficientFunds) => {
                return Err(SendError::InsufficientFunds(self.address));
            }
            _ => {}
        }
        // Refused, it is tracked all the same (a transaction of the old sequence holds the
        // nonce after all: it runs or is replaced by escalation like any other), not counted.
        if super::round::taken(&outcome) {
            self.chain.metrics().nonce_holes_filled.inc();
        }
        self.track(nonce, filler, *envelope.tx_hash(), raw, fees, block);
        Ok(())
    }

    /// A node may drop a pending transaction (a full block's leftover, a pool eviction, a
    /// replaced endpoint): every later nonce of the key then waits behind the gap. Once per
    /// block, the next transaction in line and the last one in flight, each if sent a block
    /// ago or more, are looked up; if the node does not know either any more, the next and
    /// everything after it is broadcast again as it was (a node that has a transaction answers
    /// "already known").
    ///
    /// The last one is asked too because a node may keep the next and drop those after it:
    /// anvil, when the next does not fit the rest of a block, finds the ones after it "nonce too
    /// high" and removes them from its pool. Asking only for the next left them missing until it
    /// was mined, a block or more later (bench: blocks 30–60 % full in the middle of a backlog).
    pub(super) async fn restore_dropped(
        &mut self,
        mined_count: u64,
        head: &Head,
    ) -> Result<(), SendError> {
        if head.number <= self.drop_checked {
            return Ok(());
        }
        // Sent a block ago or more: one sent since cannot have been dropped by a block yet.
        let old_enough = |e: &&InFlight| e.sent_block < head.number;
        let next = self.in_flight.get(&mined_count).filter(old_enough);
        let last = self
            .in_flight
            .range(mined_count.saturating_add(1)..)
            .rev()
            .map(|(_, e)| e)
            .find(old_enough);
        let probes: Vec<B256> = next
            .into_iter()
            .chain(last)
            .filter_map(|e| e.hashes.last().copied())
            .collect();
        // Both lookups at once: under a full backlog every key loses its tail at each block, and
        // what is re-sent must be in the pool before the next block is sealed.
        let chain = &self.chain;
        let lookups = probes.into_iter().map(|hash| async move {
            chain
                .call("eth_getTransactionByHash", |p| async move {
                    p.get_transaction_by_hash(hash).await
                })
                .await
                .map(|found| (hash, found.is_some()))
        });
        let mut missing = None;
        for lookup in futures::future::join_all(lookups).await {
            let (hash, known) = lookup.map_err(SendError::Chain)?;
            if !known {
                missing = Some(hash);
                break;
            }
        }
        // Checked at this head only once the lookups answered (a failed one is asked again at
        // the next poll, not a block later).
        self.drop_checked = head.number;
        let Some(hash) = missing else {
            return Ok(());
        };
        let resend: Vec<(u64, Bytes)> = self
            .in_flight
            .range(mined_count..)
            .map(|(n, e)| (*n, e.raw.clone()))
            .collect();
        tracing::warn!(signer = %self.address, nonce = mined_count, %hash, following = resend.len().saturating_sub(1), "the node dropped a transaction in flight: broadcasting the next and those after it again");
        // All at once: the node takes a later nonce into its pool before the ones below it
        // arrive (it waits there until they do), and one at a time on a busy node left much of
        // a key's tail out of the next block.
        let nonces: Vec<u64> = resend.iter().map(|(n, _)| *n).collect();
        let sent_block = self.resent_block(head.number);
        let this = &*self;
        let outcomes =
            futures::future::join_all(resend.into_iter().map(|(_, raw)| this.broadcast(raw))).await;
        // Every outcome is settled before a refusal is reported: the ones a node took are
        // counted and stamped even when a later one was fenced or unfunded.
        let mut refused = None;
        for (nonce, outcome) in nonces.into_iter().zip(outcomes) {
            match outcome {
                Err(BroadcastError::Fenced(f)) => {
                    refused.get_or_insert(SendError::Fenced(f));
                    continue;
                }
                Err(BroadcastError::InsufficientFunds) => {
                    refused.get_or_insert(SendError::InsufficientFunds(self.address));
                    continue;
                }
                // Still in the pool: it was not dropped, and has waited since it was sent (the
                // passed-over rule counts from then; restarting its clock here every block kept
                // a next the node never mined waiting for `stuck_after`).
                Err(BroadcastError::AlreadyKnown) => continue,
                // Taken, or refused (priced out: the replacement rule re-prices it).
                _ => {}
            }
            self.chain.metrics().dropped_resends.inc();
            if let Some(entry) = self.in_flight.get_mut(&nonce) {
                entry.sent_block = sent_block;
            }
        }
        refused.map_or(Ok(()), Err)
    }
}
