//! `multibridge admin pause` / `unpause`: the emergency stop of one or both bridges with a
//! pauser's (or the owner's) key. The call is simulated first, so a key that may not pause is
//! named (`NotPauser`) before any transaction is sent. And `admin fund`: native liquidity for
//! the releases of a bridge (anyone may add it; no request is created).

use alloy::primitives::{B256, U256};
use alloy::sol_types::SolCall;
use multibridge_contracts::{Bridge, ChainRole};

use super::send::{CallError, send_call, send_call_with_value};
use crate::config::ChainConfig;
use crate::signer::OperatorSigner;

/// Pause (`pause = true`) or unpause the bridge of `chain` as `signer`; the transaction.
pub async fn set_paused(
    role: ChainRole,
    chain: &ChainConfig,
    signer: &OperatorSigner,
    pause: bool,
) -> Result<B256, CallError> {
    let data: Vec<u8> = if pause {
        Bridge::pauseCall {}.abi_encode()
    } else {
        Bridge::unpauseCall {}.abi_encode()
    };
    send_call(role, chain, signer, chain.bridge, data.into()).await
}

/// Add `amount` of native coin to the bridge of `chain` (`Bridge.fund()`), paid by `signer`.
pub async fn fund(
    role: ChainRole,
    chain: &ChainConfig,
    signer: &OperatorSigner,
    amount: U256,
) -> Result<B256, CallError> {
    let data = Bridge::fundCall {}.abi_encode();
    send_call_with_value(role, chain, signer, chain.bridge, data.into(), amount).await
}
