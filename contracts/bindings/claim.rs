//! What the bridge puts in the service registry: a claim's `data` (which lane and request nonce a
//! user says is stuck) and a lane service's `meta` (whose service it is), both ABI-encoded so any
//! client can read and write them.

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolValue;

use crate::service_id::bridge_service_id;

/// Domain tag of claim data.
pub const CLAIM_TAG: &str = "multibridge.claim.v1";
/// Domain tag of a requester's refund claim: "refund my request" (issue 53).
pub const REFUND_TAG: &str = "multibridge.refund.v1";

/// A claim that request `nonce` of the lane `src_chain_id → dst_chain_id` is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimData {
    /// Chain the request was made on.
    pub src_chain_id: u64,
    /// Chain it should be handled on.
    pub dst_chain_id: u64,
    /// The request nonce.
    pub nonce: u64,
    /// The requester asks for its request to be refunded on the source ([`REFUND_TAG`]), not
    /// only re-sent ([`CLAIM_TAG`]).
    pub refund: bool,
}

/// Registry bytes that are not what the bridge writes.
#[derive(Debug, thiserror::Error)]
pub enum RegistryDataError {
    /// Not ABI-decodable as the expected tuple.
    #[error("not multibridge {what}: {source}")]
    Undecodable {
        /// Which kind of data.
        what: &'static str,
        /// Decoder error.
        source: alloy::sol_types::Error,
    },
    /// Decodable, but with another tag or out-of-range numbers.
    #[error("not multibridge {what}: {problem}")]
    Foreign {
        /// Which kind of data.
        what: &'static str,
        /// What is wrong.
        problem: String,
    },
}

fn small(value: U256, what: &'static str, field: &str) -> Result<u64, RegistryDataError> {
    u64::try_from(value).map_err(|_| RegistryDataError::Foreign {
        what,
        problem: format!("{field} {value} does not fit 64 bits"),
    })
}

impl ClaimData {
    /// `abi.encode("multibridge.claim.v1", uint256 srcChainId, uint256 dstChainId, uint64 nonce)`.
    pub fn encode(&self) -> Vec<u8> {
        (
            if self.refund { REFUND_TAG } else { CLAIM_TAG }.to_owned(),
            U256::from(self.src_chain_id),
            U256::from(self.dst_chain_id),
            self.nonce,
        )
            .abi_encode_params()
    }

    /// The inverse of [`encode`](Self::encode); anything else is refused.
    pub fn decode(data: &[u8]) -> Result<Self, RegistryDataError> {
        const WHAT: &str = "claim data";
        let (tag, src, dst, nonce) = <(String, U256, U256, u64)>::abi_decode_params(data)
            .map_err(|source| RegistryDataError::Undecodable { what: WHAT, source })?;
        if tag != CLAIM_TAG && tag != REFUND_TAG {
            return Err(RegistryDataError::Foreign {
                what: WHAT,
                problem: format!("tag {tag:?}"),
            });
        }
        Ok(Self {
            src_chain_id: small(src, WHAT, "srcChainId")?,
            dst_chain_id: small(dst, WHAT, "dstChainId")?,
            nonce,
            refund: tag == REFUND_TAG,
        })
    }
}

/// Whose lane service a registry entry is: the bridge pair, direction and operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneServiceMeta {
    /// Source chain id.
    pub src_chain_id: u64,
    /// Source bridge.
    pub src_bridge: Address,
    /// Destination chain id.
    pub dst_chain_id: u64,
    /// Destination bridge.
    pub dst_bridge: Address,
    /// The operator running the service.
    pub operator: Address,
}

impl LaneServiceMeta {
    /// The service of `operator` on the lane whose votes and attestations `domain` binds.
    pub fn of(domain: &crate::VoteDomain, operator: Address) -> Self {
        Self {
            src_chain_id: domain.src_chain_id,
            src_bridge: domain.src_bridge,
            dst_chain_id: domain.dst_chain_id,
            dst_bridge: domain.dst_bridge,
            operator,
        }
    }

    /// `abi.encode(uint256 srcChainId, address srcBridge, uint256 dstChainId, address dstBridge,
    /// address operator)`.
    pub fn encode(&self) -> Vec<u8> {
        (
            U256::from(self.src_chain_id),
            self.src_bridge,
            U256::from(self.dst_chain_id),
            self.dst_bridge,
            self.operator,
        )
            .abi_encode_params()
    }

    /// The inverse of [`encode`](Self::encode).
    pub fn decode(meta: &[u8]) -> Result<Self, RegistryDataError> {
        const WHAT: &str = "lane service meta";
        let (src, src_bridge, dst, dst_bridge, operator) =
            <(U256, Address, U256, Address, Address)>::abi_decode_params(meta)
                .map_err(|source| RegistryDataError::Undecodable { what: WHAT, source })?;
        Ok(Self {
            src_chain_id: small(src, WHAT, "srcChainId")?,
            src_bridge,
            dst_chain_id: small(dst, WHAT, "dstChainId")?,
            dst_bridge,
            operator,
        })
    }

    /// The service id these facts derive (a registry entry whose id differs is not this
    /// service, whatever its meta says).
    pub fn service_id(&self) -> B256 {
        bridge_service_id(
            self.src_chain_id,
            self.src_bridge,
            self.dst_chain_id,
            self.dst_bridge,
            self.operator,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_data_round_trips_and_foreign_bytes_are_refused() {
        let c = ClaimData {
            src_chain_id: 31337,
            dst_chain_id: 31338,
            nonce: 42,
            refund: false,
        };
        assert_eq!(ClaimData::decode(&c.encode()).unwrap(), c);
        let r = ClaimData { refund: true, ..c };
        assert_eq!(ClaimData::decode(&r.encode()).unwrap(), r);
        assert_ne!(
            r.encode(),
            c.encode(),
            "a refund claim is told apart by its tag"
        );
        assert!(ClaimData::decode(b"please help").is_err());
        let other_tag =
            ("other.v1".to_owned(), U256::from(1), U256::from(2), 3u64).abi_encode_params();
        assert!(matches!(
            ClaimData::decode(&other_tag),
            Err(RegistryDataError::Foreign { .. })
        ));
    }

    #[test]
    fn meta_round_trips_and_derives_the_registry_service_id() {
        let m = LaneServiceMeta {
            src_chain_id: 1,
            src_bridge: Address::repeat_byte(1),
            dst_chain_id: 2,
            dst_bridge: Address::repeat_byte(2),
            operator: Address::repeat_byte(3),
        };
        assert_eq!(LaneServiceMeta::decode(&m.encode()).unwrap(), m);
        assert_eq!(
            m.service_id(),
            bridge_service_id(
                1,
                Address::repeat_byte(1),
                2,
                Address::repeat_byte(2),
                Address::repeat_byte(3)
            )
        );
    }
}
