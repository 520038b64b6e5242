//! Service ids in the `ServiceRegistry`: one per (bridge pair, lane, operator), derived so that
//! anyone can compute it from public facts.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;

/// Domain tag of lane service ids; must equal the string in `ServiceRegistry.bridgeServiceId`.
pub const LANE_SERVICE_TAG: &str = "multibridge.lane.v1";

/// First byte of every lane service id: the registry's bridge namespace, which only
/// `registerBridgeService` (bound to the caller's address) can create.
pub const BRIDGE_NAMESPACE: u8 = 0xb5;

/// `keccak256(abi.encode("multibridge.lane.v1", srcChainId, srcBridge, dstChainId, dstBridge,
/// operator))` with its first byte set to [`BRIDGE_NAMESPACE`], the same as
/// `ServiceRegistry.bridgeServiceId`.
pub fn bridge_service_id(
    src_chain_id: u64,
    src_bridge: Address,
    dst_chain_id: u64,
    dst_bridge: Address,
    operator: Address,
) -> B256 {
    let encoded = (
        LANE_SERVICE_TAG.to_owned(),
        U256::from(src_chain_id),
        src_bridge,
        U256::from(dst_chain_id),
        dst_bridge,
        operator,
    )
        .abi_encode_params();
    let mut id = keccak256(encoded);
    id.0[0] = BRIDGE_NAMESPACE;
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_per_lane_and_operator() {
        let (a, b, op1, op2) = (
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
            Address::repeat_byte(4),
        );
        let forward = bridge_service_id(1, a, 2, b, op1);
        assert_eq!(forward, bridge_service_id(1, a, 2, b, op1));
        assert_ne!(forward, bridge_service_id(2, b, 1, a, op1));
        assert_ne!(forward, bridge_service_id(1, a, 2, b, op2));
    }
}
