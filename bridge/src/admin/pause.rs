//! `multibridge admin pause` / `unpause`: the emergency stop of one or both bridges with a
//! pauser's key. The call is simulated first, so a key that is no pauser is named before any
//! transaction is sent.

use alloy::network::EthereumWallet;
use alloy::network::TransactionBuilder;
use alloy::primitives::B256;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use multibridge_contracts::{Bridge, ChainRole};

use crate::config::ChainConfig;

/// Why the bridge was not paused (or unpaused).
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// The bridge refuses the call (e.g. `NotPauser`, `NotOwner`).
    #[error("the {chain} bridge refuses {action} from {signer}: {reason}")]
    Refused {
        /// Which chain.
        chain: ChainRole,
        /// pause / unpause.
        action: &'static str,
        /// Who asked.
        signer: alloy::primitives::Address,
        /// The decoded error.
        reason: String,
    },
    /// The chain could not be reached, or the transaction failed.
    #[error("the {chain} bridge, {action}: {message}")]
    Chain {
        /// Which chain.
        chain: ChainRole,
        /// pause / unpause.
        action: &'static str,
        /// What went wrong (URLs redacted).
        message: String,
    },
}

/// Pause (`pause = true`) or unpause the bridge of `chain` as `signer`; the transaction.
pub async fn set_paused(
    role: ChainRole,
    chain: &ChainConfig,
    signer: &PrivateKeySigner,
    pause: bool,
) -> Result<B256, PauseError> {
    let action = if pause { "pause" } else { "unpause" };
    let fail = |e: &dyn std::fmt::Display| PauseError::Chain {
        chain: role,
        action,
        message: multibridge_monitoring::redact_urls(&e.to_string()).into_owned(),
    };
    let url = chain
        .rpc_urls
        .first()
        .ok_or_else(|| fail(&"no rpc_urls configured"))?
        .parse()
        .map_err(|_| fail(&"the first rpc_url is not a URL"))?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer.clone()))
        .connect_http(url);
    let input: Vec<u8> = if pause {
        Bridge::pauseCall {}.abi_encode()
    } else {
        Bridge::unpauseCall {}.abi_encode()
    };
    let tx = TransactionRequest::default()
        .with_from(signer.address())
        .with_to(chain.bridge)
        .with_input(input);
    if let Err(e) = provider.call(tx.clone()).await {
        let reason = match &e {
            alloy::transports::RpcError::ErrorResp(p) => p
                .as_decoded_interface_error::<Bridge::BridgeErrors>()
                .map(|d| format!("{d:?}")),
            _ => None,
        };
        let Some(reason) = reason else {
            return Err(fail(&e));
        };
        return Err(PauseError::Refused {
            chain: role,
            action,
            signer: signer.address(),
            reason,
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
