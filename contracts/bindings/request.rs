//! The request a relay votes on, built from a source `RequestValueTransfer` log, and its vote key.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolValue;
use serde::{Deserialize, Serialize};

use crate::BRIDGE_VERSION;
use crate::bindings::{Bridge, IBridgeCore};

/// The `Request` struct of `IBridge`, as passed to `handleValueTransfer(s)`.
pub type Request = IBridgeCore::Request;

/// One execution by an attested batch (`settleHandled` takes a window's list of them).
pub type AttestedExecution = IBridgeCore::AttestedExecution;

/// Asset kind of a request. The numbers are wire format: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum AssetKind {
    /// The chain's native coin (lock/unlock).
    Native = 0,
    /// A registered ERC-20 token.
    Erc20 = 1,
    /// A registered ERC-721 token; the request's amount is the token id.
    Erc721 = 2,
}

impl TryFrom<u8> for AssetKind {
    type Error = RequestError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(Self::Native),
            1 => Ok(Self::Erc20),
            2 => Ok(Self::Erc721),
            other => Err(RequestError::UnknownKind(other)),
        }
    }
}

/// How a registered token moves through a bridge. The numbers are wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum TokenMode {
    /// Requests lock the token in the bridge; handles unlock it.
    LockUnlock = 0,
    /// Requests burn the token; handles mint it.
    BurnMint = 1,
    /// An ERC-721: requests lock the id in the bridge; handles unlock it (safeTransferFrom).
    Erc721LockUnlock = 2,
    /// An ERC-721: requests burn the id; handles mint the same id.
    Erc721BurnMint = 3,
}

impl TokenMode {
    /// The mode with this wire number.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::LockUnlock),
            1 => Some(Self::BurnMint),
            2 => Some(Self::Erc721LockUnlock),
            3 => Some(Self::Erc721BurnMint),
            _ => None,
        }
    }

    /// The request kind a pair in this mode moves.
    pub fn kind(self) -> AssetKind {
        match self {
            Self::LockUnlock | Self::BurnMint => AssetKind::Erc20,
            Self::Erc721LockUnlock | Self::Erc721BurnMint => AssetKind::Erc721,
        }
    }

    /// How it reads in a table: `lock/unlock`, `burn/mint`, `ERC-721 lock/unlock`, ...
    pub fn describe(self) -> &'static str {
        match self {
            Self::LockUnlock => "lock/unlock",
            Self::BurnMint => "burn/mint",
            Self::Erc721LockUnlock => "ERC-721 lock/unlock",
            Self::Erc721BurnMint => "ERC-721 burn/mint",
        }
    }
}

/// Why a log could not become a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The log is not a well-formed `RequestValueTransfer`.
    #[error("not a RequestValueTransfer log: {0}")]
    Decode(String),
    /// The RPC returned a log without a field only mined logs have.
    #[error("log has no {0} (pending log?)")]
    Missing(&'static str),
    /// The RPC flagged the log as removed by a reorg.
    #[error("log was removed by a reorg")]
    Removed,
    /// The log index does not fit the contract's `uint32`.
    #[error("log index {0} does not fit in u32")]
    LogIndexOverflow(u64),
    /// An asset kind this relay does not know.
    #[error("unknown asset kind {0}")]
    UnknownKind(u8),
}

/// Build the request for a `RequestValueTransfer` log emitted on chain `src_chain_id`.
pub fn request_from_log(log: &Log, src_chain_id: u64) -> Result<Request, RequestError> {
    if log.removed {
        return Err(RequestError::Removed);
    }
    let decoded = log
        .log_decode::<Bridge::RequestValueTransfer>()
        .map_err(|e| RequestError::Decode(e.to_string()))?;
    let event = decoded.inner.data;
    AssetKind::try_from(event.kind)?;
    let log_index = log.log_index.ok_or(RequestError::Missing("logIndex"))?;
    Ok(Request {
        nonce: event.nonce,
        kind: event.kind,
        from: event.from,
        to: event.to,
        token: event.token,
        amount: event.amount,
        fee: event.fee,
        extraData: event.extraData,
        srcChainId: U256::from(src_chain_id),
        srcBridge: log.address(),
        srcTxHash: log
            .transaction_hash
            .ok_or(RequestError::Missing("transactionHash"))?,
        srcBlockNumber: log
            .block_number
            .ok_or(RequestError::Missing("blockNumber"))?,
        srcLogIndex: u32::try_from(log_index)
            .map_err(|_| RequestError::LogIndexOverflow(log_index))?,
    })
}

/// The domain a destination bridge binds votes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteDomain {
    /// Chain the requests come from.
    pub src_chain_id: u64,
    /// Bridge that emits them.
    pub src_bridge: Address,
    /// Chain the votes go to.
    pub dst_chain_id: u64,
    /// Bridge that counts them.
    pub dst_bridge: Address,
}

impl VoteDomain {
    /// `keccak256(abi.encode(srcChainId, srcBridge, dstChainId, dstBridge, VERSION, r))`, the same
    /// as `Bridge.voteKey(r)` on the destination.
    pub fn vote_key(&self, request: &Request) -> B256 {
        let encoded = (
            U256::from(self.src_chain_id),
            self.src_bridge,
            U256::from(self.dst_chain_id),
            self.dst_bridge,
            BRIDGE_VERSION,
            request.clone(),
        )
            .abi_encode_params();
        keccak256(encoded)
    }
}
