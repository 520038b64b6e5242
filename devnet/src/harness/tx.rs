//! Sending a transaction and waiting for its successful receipt.

use std::time::Duration;

use alloy::network::{Ethereum, EthereumWallet};
use alloy::providers::{DynProvider, PendingTransactionBuilder, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;

use multibridge_contracts::bindings::Bridge::BridgeErrors;

use crate::error::DevnetError;

/// How long one transaction may take to be mined.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait for a sent transaction's receipt and insist it succeeded.
pub async fn confirm(
    step: &str,
    sent: Result<PendingTransactionBuilder<Ethereum>, alloy::contract::Error>,
) -> Result<TransactionReceipt, DevnetError> {
    let pending = sent.map_err(|e| contract_error(step, e))?;
    let receipt = pending
        .with_timeout(Some(RECEIPT_TIMEOUT))
        .get_receipt()
        .await
        .map_err(|e| DevnetError::chain(step, e))?;
    if !receipt.status() {
        return Err(DevnetError::chain(
            step,
            format!("transaction {} reverted", receipt.transaction_hash),
        ));
    }
    Ok(receipt)
}

/// A contract call error, with the bridge's custom error decoded when it is one.
pub fn contract_error(step: &str, error: alloy::contract::Error) -> DevnetError {
    match error.as_decoded_interface_error::<BridgeErrors>() {
        Some(decoded) => DevnetError::chain(step, format!("reverted with {decoded:?}")),
        None => DevnetError::chain(step, error),
    }
}

/// A provider for `url` that signs as `signer`.
pub fn signing_provider(url: &str, signer: &PrivateKeySigner) -> Result<DynProvider, DevnetError> {
    let parsed = url
        .parse()
        .map_err(|_| DevnetError::BadUrl(url.to_owned()))?;
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer.clone()))
        .connect_client(crate::harness::http::rpc_client(parsed))
        .erased())
}

/// How often a deployment looks for its transaction's receipt: the chains mine a block per
/// transaction while the devnet deploys, so the receipt is there at once, and alloy's default
/// for a local node (250 ms) was most of a deployment's time: a hub of 32 pairs deployed about
/// four transactions a second.
const DEPLOY_POLL: Duration = Duration::from_millis(10);

/// [`signing_provider`] for a deployment on a chain that mines a block per transaction.
pub fn deploying_provider(
    url: &str,
    signer: &PrivateKeySigner,
) -> Result<DynProvider, DevnetError> {
    let parsed = url
        .parse()
        .map_err(|_| DevnetError::BadUrl(url.to_owned()))?;
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer.clone()))
        .connect_client(crate::harness::http::rpc_client(parsed).with_poll_interval(DEPLOY_POLL))
        .erased())
}
