//! What the voter reads on the destination ([`DestinationReads`]), behind a trait so every
//! decision is unit-tested with a fake; [`BridgeReads`] is the real one.

use std::future::Future;
use std::sync::Arc;

use alloy::primitives::{Address, U256};
use multibridge_contracts::{NonceState, Request};

use super::Committee;
use crate::chain::{ChainClient, ChainError};

/// The destination reads the voter needs.
pub trait DestinationReads: Send + Sync {
    /// The destination state of each nonce for this operator, in order.
    fn voting_status(
        &self,
        nonces: &[u64],
    ) -> impl Future<Output = Result<Vec<NonceState>, ChainError>> + Send;
    /// The registered operators and the threshold.
    fn committee(&self) -> impl Future<Output = Result<Committee, ChainError>> + Send;
    /// (`lowerHandleNonce`, `upperHandleNonce`): every nonce below the first is handled, none at
    /// or above the second.
    fn handle_nonces(&self) -> impl Future<Output = Result<(u64, u64), ChainError>> + Send;
    /// `upperHandleNonce`: the highest handled nonce + 1.
    fn upper_handle_nonce(&self) -> impl Future<Output = Result<u64, ChainError>> + Send {
        async { Ok(self.handle_nonces().await?.1) }
    }
    /// The gas used and the gas limit of the destination's latest block.
    fn latest_block_gas(&self) -> impl Future<Output = Result<BlockGas, ChainError>> + Send;
    /// Which of `nonces` are handled at the destination's confirmation depth (a handle above it
    /// may still be reorged away).
    fn handled_final(
        &self,
        nonces: &[u64],
    ) -> impl Future<Output = Result<Vec<bool>, ChainError>> + Send;
    /// The operator's native balance on the destination (what pays for its votes).
    fn signer_balance(&self) -> impl Future<Output = Result<U256, ChainError>> + Send;
    /// `NATIVE_ITEM_GAS()`: what a native item needs left at its start on this bridge. A bridge
    /// deployed before the getter refuses the call and needs `ITEM_GAS` for every item: that is
    /// the answer then (and the default of a fake).
    fn native_item_gas(&self) -> impl Future<Output = Result<u64, ChainError>> + Send {
        async { Ok(multibridge_contracts::ITEM_GAS) }
    }
    /// Start reading, in the background, what planning and sending a vote will read (the
    /// destination's latest block, its tip, the bridge's threshold slot), while the voter
    /// pre-checks: the plan then finds them read (issue 54). `planned`: every request to vote
    /// has its plan made already ([`super::prepared`]), so only what the send reads (the
    /// latest block, the tip). Nothing for a fake.
    fn warm_vote_plan(&self, _planned: bool) {}
    /// How many of `requests` an `executeHandles` would execute now (their vote keys hold the
    /// threshold: a lowered threshold, or an operator set that changed under open votes).
    fn executable(
        &self,
        requests: &[Request],
    ) -> impl Future<Output = Result<u64, ChainError>> + Send;
}

/// The gas of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockGas {
    /// Gas its transactions used.
    pub used: u64,
    /// Its gas limit.
    pub limit: u64,
}

impl BlockGas {
    /// Used to [`FULL_PERCENT`] of its limit or more: the chain has no room to spare, and a
    /// transaction sent now waits for one.
    pub fn is_full(&self) -> bool {
        self.limit > 0
            && u128::from(self.used).saturating_mul(100)
                >= u128::from(self.limit).saturating_mul(u128::from(FULL_PERCENT))
    }
}

/// The share of its gas limit a block uses to count as full (a backlog's blocks run at 96-99 %
/// when each transaction is about a thirtieth of the block).
pub const FULL_PERCENT: u64 = 85;

/// The destination bridge as one operator sees it.
pub struct BridgeReads {
    /// The destination chain.
    pub chain: Arc<ChainClient>,
    /// The operator.
    pub operator: Address,
    /// The destination chain's confirmation depth (or its finalized block).
    pub confirmations: crate::config::Confirmations,
    /// Whether a [`warm_vote_plan`](DestinationReads::warm_vote_plan) is under way.
    pub warming: Arc<std::sync::atomic::AtomicBool>,
}

impl DestinationReads for BridgeReads {
    async fn voting_status(&self, nonces: &[u64]) -> Result<Vec<NonceState>, ChainError> {
        self.chain
            .views()
            .voting_status(self.operator, nonces)
            .await
    }

    async fn committee(&self) -> Result<Committee, ChainError> {
        let views = self.chain.views();
        // Both at once: a lane's first vote after its committee went stale (10 s) waited for
        // two round trips here, one after the other.
        let (threshold, operators) = tokio::try_join!(views.threshold(), views.operators())?;
        Ok(Committee {
            operators,
            threshold: usize::try_from(threshold).unwrap_or(usize::MAX),
        })
    }

    async fn handle_nonces(&self) -> Result<(u64, u64), ChainError> {
        self.chain.views().handle_nonces().await
    }

    async fn handled_final(&self, nonces: &[u64]) -> Result<Vec<bool>, ChainError> {
        if self.confirmations == crate::config::Confirmations::Depth(0) {
            return Ok(vec![true; nonces.len()]);
        }
        let head = self.chain.head().await?;
        let block = self.chain.safe_head(head, self.confirmations).await?;
        self.chain.views().handled_at(nonces, block).await
    }

    async fn signer_balance(&self) -> Result<U256, ChainError> {
        use alloy::providers::Provider;
        let operator = self.operator;
        self.chain
            .call("eth_getBalance", |p| async move {
                p.get_balance(operator).await
            })
            .await
    }

    async fn native_item_gas(&self) -> Result<u64, ChainError> {
        match self
            .chain
            .bridge_call("NATIVE_ITEM_GAS", |b| async move {
                b.NATIVE_ITEM_GAS().call().await
            })
            .await
        {
            Ok(gas) => Ok(u64::try_from(gas).unwrap_or(u64::MAX)),
            // No such getter: a bridge from before it, whose every item needs ITEM_GAS.
            Err(ChainError::Rejected { .. }) => Ok(multibridge_contracts::ITEM_GAS),
            Err(e) => Err(e),
        }
    }

    async fn executable(&self, requests: &[Request]) -> Result<u64, ChainError> {
        let (rs, from) = (requests.to_vec(), self.operator);
        let executed = self
            .chain
            .bridge_call("executeHandles", |b| {
                let rs = rs.clone();
                async move { b.executeHandles(rs).from(from).call().await }
            })
            .await?;
        Ok(u64::try_from(executed).unwrap_or(u64::MAX))
    }

    fn warm_vote_plan(&self, planned: bool) {
        // One at a time: a destination that does not answer gets no pile of them.
        if self.warming.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let (chain, warming) = (self.chain.clone(), self.warming.clone());
        let bridge = chain.bridge();
        tokio::spawn(async move {
            if planned {
                chain.warm_fee_reads().await;
            } else {
                chain.warm_vote_reads(bridge).await;
            }
            warming.store(false, std::sync::atomic::Ordering::Release);
        });
    }

    async fn latest_block_gas(&self) -> Result<BlockGas, ChainError> {
        let block = self.chain.latest_block().await?;
        Ok(BlockGas {
            used: block.gas_used,
            limit: block.gas_limit,
        })
    }
}
