// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Where a service runs, and a place for its users to ask for help (DESIGN.md §3.2).
/// @notice From the seed papers: services register a location that their active replica keeps
/// current (`NewLocation`); users file claims (`Claim`) even when the service's nodes are down;
/// managers store encrypted state-backup logs.
interface IServiceRegistry {
    event ServiceRegistered(bytes32 indexed id, address indexed provider, string name, string location);
    event NewLocation(bytes32 indexed id, string location);
    event ManagerAdded(bytes32 indexed id, address indexed manager);
    event ManagerRemoved(bytes32 indexed id, address indexed manager);
    event Claim(bytes32 indexed id, address indexed claimant, string location, bytes data);
    event BackupLogStored(bytes32 indexed id, uint64 indexed version, bytes32 digest);

    error ZeroId();
    error ZeroAddress();
    error ServiceExists(bytes32 id);
    error ServiceUnknown(bytes32 id);
    error NotManager(bytes32 id, address caller);
    error ManagerExists(bytes32 id, address manager);
    error ManagerUnknown(bytes32 id, address manager);
    error LastManager(bytes32 id);
    /// A backup log's version must be the stored one plus one (audit NEW-L3: no manager can jump
    /// to a version nobody can follow).
    error StaleBackupVersion(uint64 latest, uint64 given);
    error EmptyClaim();
    error ClaimTooLarge(uint256 size, uint256 max);
    /// Ids whose first byte is BRIDGE_NAMESPACE belong to bridge operators: only
    /// registerBridgeService creates them, for the caller's own operator address.
    error ReservedId(bytes32 id);
    /// The provider stays a manager of its service.
    error ProviderNotRemovable(bytes32 id);

    function MAX_CLAIM_BYTES() external view returns (uint256);
    function BRIDGE_NAMESPACE() external view returns (bytes1);

    /// Register a service; the caller becomes its provider and first manager. Ids in the bridge
    /// namespace are refused (ReservedId).
    function register(bytes32 id, string calldata name, string calldata location, bytes calldata meta) external;
    /// Register the caller's lane service of a bridge pair: the id is bridgeServiceId(..., caller)
    /// and the meta abi.encode(srcChainId, srcBridge, dstChainId, dstBridge, caller), so nobody
    /// can register (squat) an operator's service but the operator itself.
    function registerBridgeService(
        uint256 srcChainId,
        address srcBridge,
        uint256 dstChainId,
        address dstBridge,
        string calldata name,
        string calldata location
    ) external returns (bytes32 id);
    function updateLocation(bytes32 id, string calldata location) external;
    function addManager(bytes32 id, address manager) external;
    function removeManager(bytes32 id, address manager) external;

    function getServiceLocation(bytes32 id) external view returns (string memory);
    function getService(bytes32 id)
        external
        view
        returns (string memory name, string memory location, bytes memory meta, address provider, uint64 updatedAt, uint256 managerCount);
    function exists(bytes32 id) external view returns (bool);
    function isManager(bytes32 id, address account) external view returns (bool);
    function serviceCount() external view returns (uint256);
    function serviceIdAt(uint256 index) external view returns (bytes32);

    /// Anyone may file a claim (e.g. a stuck transfer: the bridge encodes lane and nonce in `data`).
    function sendClaim(bytes32 id, bytes calldata data) external;

    /// Managers store the newest encrypted state-backup log; versions only grow.
    function storeBackupLog(bytes32 id, uint64 version, bytes calldata encryptedLog) external;
    function latestBackupLog(bytes32 id) external view returns (uint64 version, bytes memory encryptedLog, uint64 storedAt);

    /// The service id of one operator on one lane of a bridge pair:
    /// keccak256(abi.encode("multibridge.lane.v1", srcChainId, srcBridge, dstChainId, dstBridge,
    /// operator)) with its first byte set to BRIDGE_NAMESPACE.
    function bridgeServiceId(uint256 srcChainId, address srcBridge, uint256 dstChainId, address dstBridge, address operator)
        external
        pure
        returns (bytes32);
}
