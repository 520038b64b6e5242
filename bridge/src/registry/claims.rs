//! Watches the registry for `Claim`s against this operator's lane services and hands each
//! claimed nonce to its lane's recovery worker. Claims are read from the head the watcher first
//! sees: recovery's first tick after start scans everything pending anyway. A main chain that
//! does not answer is waited out, never fatal.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::bindings::ServiceRegistry;
use multibridge_contracts::{ClaimData, Lane};
use tokio::sync::mpsc;

use super::LaneService;
use crate::chain::ChainClient;
use crate::refund::RefundAsk;
use crate::task::{Next, Stepper};

/// The claims watcher of one replica.
pub struct ClaimsWatch {
    main: Arc<ChainClient>,
    registry: Address,
    by_id: HashMap<B256, LaneService>,
    lanes: HashMap<Lane, mpsc::Sender<u64>>,
    refunds: HashMap<Lane, mpsc::Sender<RefundAsk>>,
    poll: Duration,
    max_range: u64,
    /// The next block to read (`None` until the head was first read).
    next: Option<u64>,
}

impl ClaimsWatch {
    /// Watch `registry` on `main` for claims against `services`, sending each claimed nonce to
    /// its lane's channel in `lanes` (a requester's refund claim to its lane's channel in
    /// `refunds`), polling every `poll` in ranges of at most `max_range`.
    pub fn new(
        main: Arc<ChainClient>,
        registry: Address,
        services: &[LaneService],
        lanes: HashMap<Lane, mpsc::Sender<u64>>,
        refunds: HashMap<Lane, mpsc::Sender<RefundAsk>>,
        poll: Duration,
        max_range: u64,
    ) -> Self {
        Self {
            main,
            registry,
            by_id: services.iter().map(|s| (s.id, *s)).collect(),
            lanes,
            refunds,
            poll,
            max_range: max_range.max(1),
            next: None,
        }
    }

    /// Read the claims of the blocks mined since the last step.
    pub async fn round(&mut self) -> Result<Next, Infallible> {
        // Claims are read a confirmation deep where the main chain counts blocks: a claim that
        // a shallow reorg removes is never acted on, and every pair's claims reader of the
        // process is answered from one read of the block (issue 54).
        let tip = match self.main.head().await {
            Ok(head) => head.saturating_sub(self.main.shared_log_depth().unwrap_or(0)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the main chain head; retrying");
                return Ok(Next::After(self.poll));
            }
        };
        let next = *self.next.get_or_insert(tip.saturating_add(1));
        if tip < next {
            return Ok(Next::After(self.poll));
        }
        let to = next
            .saturating_add(self.max_range.saturating_sub(1))
            .min(tip);
        let filter = Filter::new()
            .address(self.registry)
            .event_signature(ServiceRegistry::Claim::SIGNATURE_HASH)
            .topic1(self.by_id.keys().copied().collect::<Vec<B256>>())
            .from_block(next)
            .to_block(to);
        match self.main.logs(&filter).await {
            Ok(logs) => {
                for log in logs.iter().filter(|l| !l.removed) {
                    self.dispatch(log).await;
                }
                self.next = Some(to.saturating_add(1));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read claims; retrying"),
        }
        Ok(if to < tip {
            Next::Now
        } else {
            Next::After(self.poll)
        })
    }

    async fn dispatch(&self, log: &alloy::rpc::types::Log) {
        let Ok(claim) = log.log_decode::<ServiceRegistry::Claim>() else {
            tracing::warn!(tx = ?log.transaction_hash, "undecodable Claim event; ignored");
            return;
        };
        let claim = claim.inner.data;
        let Some(service) = self.by_id.get(&claim.id) else {
            return;
        };
        let data = match ClaimData::decode(&claim.data) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(claimant = %claim.claimant, error = %e, "claim with unreadable data; ignored");
                return;
            }
        };
        if data.src_chain_id != service.meta.src_chain_id
            || data.dst_chain_id != service.meta.dst_chain_id
        {
            tracing::warn!(claimant = %claim.claimant, lane = %service.lane, ?data, "claim names another lane than its service; ignored");
            return;
        }
        if data.refund {
            tracing::info!(lane = %service.lane, nonce = data.nonce, claimant = %claim.claimant, "refund claim filed");
            let ask = RefundAsk {
                nonce: data.nonce,
                claimant: claim.claimant,
            };
            if let Some(tx) = self.refunds.get(&service.lane)
                && tx.send(ask).await.is_err()
            {
                tracing::warn!(lane = %service.lane, "refund desk gone; refund claim dropped");
            }
            return;
        }
        tracing::info!(lane = %service.lane, nonce = data.nonce, claimant = %claim.claimant, "claim filed");
        if let Some(tx) = self.lanes.get(&service.lane)
            && tx.send(data.nonce).await.is_err()
        {
            tracing::warn!(lane = %service.lane, "recovery worker gone; claim dropped");
        }
    }
}

impl Stepper for ClaimsWatch {
    type Error = Infallible;

    fn step(&mut self) -> impl Future<Output = Result<Next, Infallible>> + Send {
        self.round()
    }
}
