// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IServiceRegistry} from "./IServiceRegistry.sol";

/// @title Service locations, user claims and state-backup logs (DESIGN.md §3.2).
/// @notice A service is registered once under an id; its managers keep its location current and
/// store its encrypted backup logs. Anyone can file a claim against a registered service.
contract ServiceRegistry is IServiceRegistry {
    /// @inheritdoc IServiceRegistry
    uint256 public constant MAX_CLAIM_BYTES = 1024;
    /// @inheritdoc IServiceRegistry
    bytes1 public constant BRIDGE_NAMESPACE = 0xb5;

    struct Service {
        address provider;
        uint64 updatedAt;
        uint32 managerCount;
        string name;
        string location;
        bytes meta;
        mapping(address => bool) managers;
    }

    struct BackupLog {
        uint64 version;
        uint64 storedAt;
        bytes encryptedLog;
    }

    mapping(bytes32 => Service) private _services;
    mapping(bytes32 => BackupLog) private _backups;
    /// @dev Every registered id, in registration order (a registered service has a provider).
    bytes32[] private _ids;

    modifier onlyManager(bytes32 id) {
        Service storage service = _existing(id);
        if (!service.managers[msg.sender]) revert NotManager(id, msg.sender);
        _;
    }

    // ------------------------------------------------------------------ services

    /// @inheritdoc IServiceRegistry
    function register(bytes32 id, string calldata name, string calldata location, bytes calldata meta) external {
        if (id == bytes32(0)) revert ZeroId();
        if (id[0] == BRIDGE_NAMESPACE) revert ReservedId(id);
        _register(id, name, location, meta);
    }

    /// @inheritdoc IServiceRegistry
    function registerBridgeService(
        uint256 srcChainId,
        address srcBridge,
        uint256 dstChainId,
        address dstBridge,
        string calldata name,
        string calldata location
    ) external returns (bytes32 id) {
        id = bridgeServiceId(srcChainId, srcBridge, dstChainId, dstBridge, msg.sender);
        _register(id, name, location, abi.encode(srcChainId, srcBridge, dstChainId, dstBridge, msg.sender));
    }

    function _register(bytes32 id, string calldata name, string calldata location, bytes memory meta) private {
        Service storage service = _services[id];
        if (service.provider != address(0)) revert ServiceExists(id);
        service.provider = msg.sender;
        service.updatedAt = uint64(block.timestamp);
        service.managerCount = 1;
        service.name = name;
        service.location = location;
        service.meta = meta;
        service.managers[msg.sender] = true;
        _ids.push(id);
        emit ServiceRegistered(id, msg.sender, name, location);
        emit ManagerAdded(id, msg.sender);
        emit NewLocation(id, location);
    }

    /// @inheritdoc IServiceRegistry
    function updateLocation(bytes32 id, string calldata location) external onlyManager(id) {
        Service storage service = _services[id];
        service.location = location;
        service.updatedAt = uint64(block.timestamp);
        emit NewLocation(id, location);
    }

    /// @inheritdoc IServiceRegistry
    function addManager(bytes32 id, address manager) external onlyManager(id) {
        if (manager == address(0)) revert ZeroAddress();
        Service storage service = _services[id];
        if (service.managers[manager]) revert ManagerExists(id, manager);
        service.managers[manager] = true;
        ++service.managerCount;
        emit ManagerAdded(id, manager);
    }

    /// @inheritdoc IServiceRegistry
    /// @dev A manager may remove itself, except the last one.
    function removeManager(bytes32 id, address manager) external onlyManager(id) {
        Service storage service = _services[id];
        if (!service.managers[manager]) revert ManagerUnknown(id, manager);
        if (manager == service.provider) revert ProviderNotRemovable(id);
        if (service.managerCount == 1) revert LastManager(id);
        service.managers[manager] = false;
        --service.managerCount;
        emit ManagerRemoved(id, manager);
    }

    // ------------------------------------------------------------------ claims and backups

    /// @inheritdoc IServiceRegistry
    /// @dev `data` must be 1..MAX_CLAIM_BYTES bytes; the event carries the service's current location.
    function sendClaim(bytes32 id, bytes calldata data) external {
        Service storage service = _existing(id);
        if (data.length == 0) revert EmptyClaim();
        if (data.length > MAX_CLAIM_BYTES) revert ClaimTooLarge(data.length, MAX_CLAIM_BYTES);
        emit Claim(id, msg.sender, service.location, data);
    }

    /// @inheritdoc IServiceRegistry
    /// @dev `version` must exceed the stored one (so the first stored version is at least 1).
    function storeBackupLog(bytes32 id, uint64 version, bytes calldata encryptedLog) external onlyManager(id) {
        BackupLog storage backup = _backups[id];
        if (version != backup.version + 1) revert StaleBackupVersion(backup.version, version);
        backup.version = version;
        backup.storedAt = uint64(block.timestamp);
        backup.encryptedLog = encryptedLog;
        emit BackupLogStored(id, version, keccak256(encryptedLog));
    }

    /// @inheritdoc IServiceRegistry
    /// @dev All zero/empty if no log was stored; reverts ServiceUnknown for an unknown id.
    function latestBackupLog(bytes32 id)
        external
        view
        returns (uint64 version, bytes memory encryptedLog, uint64 storedAt)
    {
        _existing(id);
        BackupLog storage backup = _backups[id];
        return (backup.version, backup.encryptedLog, backup.storedAt);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IServiceRegistry
    function getServiceLocation(bytes32 id) external view returns (string memory) {
        return _existing(id).location;
    }

    /// @inheritdoc IServiceRegistry
    function getService(bytes32 id)
        external
        view
        returns (
            string memory name,
            string memory location,
            bytes memory meta,
            address provider,
            uint64 updatedAt,
            uint256 managerCount
        )
    {
        Service storage service = _existing(id);
        return (service.name, service.location, service.meta, service.provider, service.updatedAt, service.managerCount);
    }

    /// @inheritdoc IServiceRegistry
    function exists(bytes32 id) external view returns (bool) {
        return _services[id].provider != address(0);
    }

    /// @inheritdoc IServiceRegistry
    function isManager(bytes32 id, address account) external view returns (bool) {
        return _services[id].managers[account];
    }

    /// @inheritdoc IServiceRegistry
    function serviceCount() external view returns (uint256) {
        return _ids.length;
    }

    /// @inheritdoc IServiceRegistry
    /// @dev Registration order; reverts (array bounds) for index >= serviceCount().
    function serviceIdAt(uint256 index) external view returns (bytes32) {
        return _ids[index];
    }

    /// @inheritdoc IServiceRegistry
    function bridgeServiceId(
        uint256 srcChainId,
        address srcBridge,
        uint256 dstChainId,
        address dstBridge,
        address operator
    ) public pure returns (bytes32) {
        bytes32 hash = keccak256(abi.encode("multibridge.lane.v1", srcChainId, srcBridge, dstChainId, dstBridge, operator));
        return (hash & ~bytes32(uint256(0xff) << 248)) | bytes32(BRIDGE_NAMESPACE);
    }

    // ------------------------------------------------------------------ internal

    /// @dev The registered service `id`, else ServiceUnknown.
    function _existing(bytes32 id) private view returns (Service storage service) {
        service = _services[id];
        if (service.provider == address(0)) revert ServiceUnknown(id);
    }
}
