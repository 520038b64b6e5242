//! One administrative call from the CLI: simulated first (a refusal is decoded into the bridge's
//! named error before anything is sent), then sent and followed to its receipt.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use multibridge_contracts::{Bridge, ChainRole};

use crate::config::ChainConfig;
use crate::signer::OperatorSigner;

/// Why a call did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The bridge refuses it (its named error).
    #[error("the {chain} bridge refuses it from {signer}: {reason}")]
    Refused {
        /// Which chain.
        chain: ChainRole,
        /// Who asked.
        signer: Address,
        /// The decoded error.
        reason: String,
    },
    /// The chain could not be reached, or the transaction failed.
    #[error("the {chain} chain: {message}")]
    Chain {
        /// Which chain.
        chain: ChainRole,
        /// What went wrong (URLs redacted).
        message: String,
    },
}

/// Simulate, send and wait for `data` to `to` on `chain` as `signer`; the transaction.
pub async fn send_call(
    role: ChainRole,
    chain: &ChainConfig,
    signer: &OperatorSigner,
    to: Address,
    data: Bytes,
) -> Result<B256, CallError> {
    send_call_with_value(role, chain, signer, to, data, U256::ZERO).await
}

/// [`send_call`] paying `value` (native coin) with the call.
pub async fn send_call_with_value(
    role: ChainRole,
    chain: &ChainConfig,
    signer: &OperatorSigner,
    to: Address,
    data: Bytes,
    value: U256,
) -> Result<B256, CallError> {
    let fail = |e: &dyn std::fmt::Display| CallError::Chain {
        chain: role,
        message: multibridge_monitoring::redact_urls(&e.to_string()).into_owned(),
    };
    let url = chain
        .rpc_urls
        .first()
        .ok_or_else(|| fail(&"no rpc_urls configured"))?
        .parse()
        .map_err(|_| fail(&"the first rpc_url is not a URL"))?;
    let provider = ProviderBuilder::new()
        .wallet(signer.wallet())
        .connect_http(url);
    let tx = TransactionRequest::default()
        .with_from(signer.address())
        .with_to(to)
        .with_input(data)
        .with_value(value);
    if let Err(e) = provider.call(tx.clone()).await {
        let reason = match &e {
            alloy::transports::RpcError::ErrorResp(p) => p
                .as_decoded_interface_error::<Bridge::BridgeErrors>()
                .map(|d| format!("{d:?}")),
            _ => None,
        };
        return Err(match reason {
            Some(reason) => CallError::Refused {
                chain: role,
                signer: signer.address(),
                reason,
            },
            None => fail(&e),
        });
    }
    let receipt = provider
        .send_transaction(tx)
        .await
        .map_err(|e| fail(&e))?
        .get_receipt()
        .await
        .map_err(|e| fail(&e))?;
    if !receipt.status() {
        return Err(fail(&format!(
            "transaction {} reverted",
            receipt.transaction_hash
        )));
    }
    Ok(receipt.transaction_hash)
}
