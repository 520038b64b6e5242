//! The dashboard's registry writes: register a lane service, update a service's location. Signed
//! by the configured manager key through a submitter (the operator's own key goes through the
//! main chain's submitter, so only the replica holding that chain's nonce sequence writes:
//! never two senders of one key). One write at a time; each waits for its receipt.

use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes};
use alloy::sol_types::SolCall;
use multibridge_contracts::bindings::ServiceRegistry;
use tokio::sync::{Mutex, mpsc, watch};

use crate::chain::submitter::{JobEvent, SubmitClient, SubmitError, send_estimated};

/// How long a write waits for its receipt.
const MINED_WITHIN: Duration = Duration::from_secs(60);
/// Gas estimate margin of a registry write.
const MARGIN_PERCENT: u64 = 25;

/// Why a write did not happen (or did not succeed).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This replica does not hold the manager key's nonce sequence on the main chain.
    #[error(
        "this replica does not send for {0} on the main chain now (another replica leads): write through the leading replica's dashboard"
    )]
    NotSending(Address),
    /// The registry refuses the call (decoded where it is one of its errors).
    #[error("the registry refuses it: {0}")]
    Refused(String),
    /// Sent, but the transaction reverted.
    #[error("transaction {0} reverted")]
    Reverted(B256),
    /// Sent, but not seen mined in time (it may still be mined: check before retrying).
    #[error(
        "transaction {0} was sent but not seen mined within {1:?}; check the registry before retrying"
    )]
    NotMined(B256, Duration),
    /// The send failed (node unreachable, unfunded key, ...).
    #[error("could not send: {0}")]
    Send(String),
}

impl WriteError {
    /// The metric result of the failure.
    pub fn result(&self) -> &'static str {
        match self {
            Self::NotSending(_) | Self::Refused(_) => "refused",
            Self::Reverted(_) => "reverted",
            Self::NotMined(..) | Self::Send(_) => "failed",
        }
    }
}

/// A mined write.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Written {
    /// The transaction.
    pub tx: B256,
    /// Its block.
    pub block: u64,
}

/// What a write asks the registry to do.
#[derive(Debug, Clone)]
pub enum RegistryWrite {
    /// `registerBridgeService(...)`: the signer's lane service of this pair.
    RegisterLane {
        /// Source chain id.
        src_chain_id: u64,
        /// Source bridge.
        src_bridge: Address,
        /// Destination chain id.
        dst_chain_id: u64,
        /// Destination bridge.
        dst_bridge: Address,
        /// Display name.
        name: String,
        /// Location.
        location: String,
    },
    /// `updateLocation(id, location)`.
    UpdateLocation {
        /// Service id.
        id: B256,
        /// New location.
        location: String,
    },
}

impl RegistryWrite {
    fn input(&self) -> Bytes {
        match self {
            Self::RegisterLane {
                src_chain_id,
                src_bridge,
                dst_chain_id,
                dst_bridge,
                name,
                location,
            } => ServiceRegistry::registerBridgeServiceCall {
                srcChainId: alloy::primitives::U256::from(*src_chain_id),
                srcBridge: *src_bridge,
                dstChainId: alloy::primitives::U256::from(*dst_chain_id),
                dstBridge: *dst_bridge,
                name: name.clone(),
                location: location.clone(),
            }
            .abi_encode()
            .into(),
            Self::UpdateLocation { id, location } => ServiceRegistry::updateLocationCall {
                id: *id,
                location: location.clone(),
            }
            .abi_encode()
            .into(),
        }
    }
}

/// The registry writer.
pub struct Writer {
    submit: SubmitClient,
    events: Mutex<mpsc::UnboundedReceiver<JobEvent>>,
    sending: watch::Receiver<bool>,
    from: Address,
    registry: Address,
}

fn refusal(e: SubmitError) -> WriteError {
    if let SubmitError::Send(send) = &e
        && let Some(alloy::transports::RpcError::ErrorResp(p)) = send.revert()
    {
        return WriteError::Refused(
            match p.as_decoded_interface_error::<ServiceRegistry::ServiceRegistryErrors>() {
                Some(decoded) => format!("{decoded:?}"),
                None => p.message.to_string(),
            },
        );
    }
    WriteError::Send(multibridge_monitoring::redact_urls(&e.to_string()).into_owned())
}

impl Writer {
    /// A writer for `registry` through `submit` (whose events arrive on `events`), sending while
    /// `sending` is true, as `from`.
    pub fn new(
        submit: SubmitClient,
        events: mpsc::UnboundedReceiver<JobEvent>,
        sending: watch::Receiver<bool>,
        from: Address,
        registry: Address,
    ) -> Self {
        Self {
            submit,
            events: Mutex::new(events),
            sending,
            from,
            registry,
        }
    }

    /// The manager address.
    pub fn from(&self) -> Address {
        self.from
    }

    /// Whether this replica may write now.
    pub fn can_send(&self) -> bool {
        *self.sending.borrow()
    }

    /// Send `write` and wait for its receipt.
    pub async fn write(&self, write: &RegistryWrite) -> Result<Written, WriteError> {
        // One write at a time: the events of this client are all ours.
        let mut events = self.events.lock().await;
        if !self.can_send() {
            return Err(WriteError::NotSending(self.from));
        }
        while events.try_recv().is_ok() {}
        let sent = send_estimated(&self.submit, self.registry, write.input(), MARGIN_PERCENT)
            .await
            .map_err(refusal)?;
        let mut hash = sent.hash;
        let deadline = tokio::time::Instant::now()
            .checked_add(MINED_WITHIN)
            .unwrap_or_else(tokio::time::Instant::now);
        loop {
            let event = tokio::time::timeout_at(deadline, events.recv()).await;
            match event {
                Ok(Some(JobEvent::Mined { nonce, receipt, .. })) if nonce == sent.nonce => {
                    let tx = receipt.transaction_hash;
                    if !receipt.status() {
                        return Err(WriteError::Reverted(tx));
                    }
                    return Ok(Written {
                        tx,
                        block: receipt.block_number.unwrap_or_default(),
                    });
                }
                Ok(Some(JobEvent::Replaced { nonce, hash: new })) if nonce == sent.nonce => {
                    hash = new;
                }
                Ok(Some(JobEvent::Superseded { nonce } | JobEvent::Abandoned { nonce }))
                    if nonce == sent.nonce =>
                {
                    return Err(WriteError::NotMined(hash, MINED_WITHIN));
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(WriteError::Send(
                        "the main chain's submitter stopped".into(),
                    ));
                }
                Err(_) => return Err(WriteError::NotMined(hash, MINED_WITHIN)),
            }
        }
    }
}
