// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {IServiceRegistry} from "../src/IServiceRegistry.sol";
import {ServiceRegistry} from "../src/ServiceRegistry.sol";

contract ServiceRegistryTest is Test {
    ServiceRegistry internal registry;

    bytes32 internal constant ID = keccak256("service");
    address internal provider = makeAddr("provider");
    address internal manager2 = makeAddr("second manager");
    address internal stranger = makeAddr("stranger");

    function setUp() public {
        registry = new ServiceRegistry();
        vm.warp(1_000);
        vm.prank(provider);
        registry.register(ID, "relay", "http://10.0.0.1:8080", hex"01");
    }

    // ------------------------------------------------------------------ registration

    function test_register_storesAndEmits() public {
        bytes32 id = keccak256("another");
        vm.warp(2_000);
        vm.expectEmit(address(registry));
        emit IServiceRegistry.ServiceRegistered(id, stranger, "name", "loc");
        vm.expectEmit(address(registry));
        emit IServiceRegistry.ManagerAdded(id, stranger);
        vm.expectEmit(address(registry));
        emit IServiceRegistry.NewLocation(id, "loc");
        vm.prank(stranger);
        registry.register(id, "name", "loc", hex"beef");

        (
            string memory name,
            string memory location,
            bytes memory meta,
            address prov,
            uint64 updatedAt,
            uint256 managers
        ) = registry.getService(id);
        assertEq(name, "name", "name");
        assertEq(location, "loc", "location");
        assertEq(meta, hex"beef", "meta");
        assertEq(prov, stranger, "provider");
        assertEq(uint256(updatedAt), 2_000, "updatedAt");
        assertEq(managers, 1, "one manager");
        assertTrue(registry.isManager(id, stranger), "the registrant manages it");
        assertTrue(registry.exists(id), "exists");
        assertEq(registry.getServiceLocation(id), "loc", "getServiceLocation");
    }

    function test_register_rejectsZeroAndDuplicateIds() public {
        vm.expectRevert(IServiceRegistry.ZeroId.selector);
        registry.register(bytes32(0), "n", "l", "");
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.ServiceExists.selector, ID));
        vm.prank(stranger);
        registry.register(ID, "hijack", "http://evil", "");
        assertEq(registry.getServiceLocation(ID), "http://10.0.0.1:8080", "unchanged");
        assertEq(registry.serviceCount(), 1, "one service");
    }

    function test_enumeration_inRegistrationOrder() public {
        bytes32 second = keccak256("second");
        bytes32 third = keccak256("third");
        registry.register(second, "", "", "");
        registry.register(third, "", "", "");
        assertEq(registry.serviceCount(), 3, "count");
        assertEq(registry.serviceIdAt(0), ID, "first");
        assertEq(registry.serviceIdAt(1), second, "second");
        assertEq(registry.serviceIdAt(2), third, "third");
        assertFalse(registry.exists(keccak256("nope")), "unknown");
        vm.expectRevert();
        registry.serviceIdAt(3);
    }

    function test_unknownService_reverts() public {
        bytes32 unknown = keccak256("unknown");
        bytes memory err = abi.encodeWithSelector(IServiceRegistry.ServiceUnknown.selector, unknown);
        vm.expectRevert(err);
        registry.getServiceLocation(unknown);
        vm.expectRevert(err);
        registry.getService(unknown);
        vm.expectRevert(err);
        registry.updateLocation(unknown, "x");
        vm.expectRevert(err);
        registry.sendClaim(unknown, hex"01");
        vm.expectRevert(err);
        registry.latestBackupLog(unknown);
    }

    // ------------------------------------------------------------------ managers and location

    function test_updateLocation_managersOnly() public {
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.NotManager.selector, ID, stranger));
        vm.prank(stranger);
        registry.updateLocation(ID, "http://evil");

        vm.warp(5_000);
        vm.expectEmit(address(registry));
        emit IServiceRegistry.NewLocation(ID, "http://10.0.0.2:8080");
        vm.prank(provider);
        registry.updateLocation(ID, "http://10.0.0.2:8080");
        assertEq(registry.getServiceLocation(ID), "http://10.0.0.2:8080", "moved");
        (,,,, uint64 updatedAt,) = registry.getService(ID);
        assertEq(uint256(updatedAt), 5_000, "updatedAt");
    }

    function test_managers_addAndRemove() public {
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.NotManager.selector, ID, stranger));
        vm.prank(stranger);
        registry.addManager(ID, stranger);

        vm.startPrank(provider);
        vm.expectRevert(IServiceRegistry.ZeroAddress.selector);
        registry.addManager(ID, address(0));
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.ManagerExists.selector, ID, provider));
        registry.addManager(ID, provider);
        vm.expectEmit(address(registry));
        emit IServiceRegistry.ManagerAdded(ID, manager2);
        registry.addManager(ID, manager2);
        vm.stopPrank();
        assertTrue(registry.isManager(ID, manager2), "added");

        // The new manager can act, but not remove the provider (audit L-11).
        vm.startPrank(manager2);
        registry.updateLocation(ID, "http://10.0.0.3");
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.ManagerUnknown.selector, ID, stranger));
        registry.removeManager(ID, stranger);
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.ProviderNotRemovable.selector, ID));
        registry.removeManager(ID, provider);
        vm.stopPrank();
        // The provider can remove the other manager; the last one stays.
        vm.startPrank(provider);
        vm.expectEmit(address(registry));
        emit IServiceRegistry.ManagerRemoved(ID, manager2);
        registry.removeManager(ID, manager2);
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.ProviderNotRemovable.selector, ID));
        registry.removeManager(ID, provider);
        vm.stopPrank();

        (,,,,, uint256 managers) = registry.getService(ID);
        assertEq(managers, 1, "one manager left");
        assertTrue(registry.isManager(ID, provider), "provider stays");
        assertFalse(registry.isManager(ID, manager2), "second manager removed");
    }

    // ------------------------------------------------------------------ claims

    function test_sendClaim_byAnyone_carriesCurrentLocation() public {
        bytes memory data = abi.encode("main->service", uint64(42));
        vm.expectEmit(address(registry));
        emit IServiceRegistry.Claim(ID, stranger, "http://10.0.0.1:8080", data);
        vm.prank(stranger);
        registry.sendClaim(ID, data);

        vm.prank(provider);
        registry.updateLocation(ID, "http://moved");
        vm.expectEmit(address(registry));
        emit IServiceRegistry.Claim(ID, stranger, "http://moved", data);
        vm.prank(stranger);
        registry.sendClaim(ID, data);
    }

    function test_sendClaim_validatesSize() public {
        vm.expectRevert(IServiceRegistry.EmptyClaim.selector);
        registry.sendClaim(ID, "");
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.ClaimTooLarge.selector, uint256(1025), uint256(1024)));
        registry.sendClaim(ID, new bytes(1025));

        bytes memory max = new bytes(1024);
        vm.expectEmit(address(registry));
        emit IServiceRegistry.Claim(ID, address(this), "http://10.0.0.1:8080", max);
        registry.sendClaim(ID, max);
        assertEq(registry.MAX_CLAIM_BYTES(), 1024, "max");
    }

    // ------------------------------------------------------------------ backup logs

    function test_backupLog_managersOnly_versionsGrow() public {
        (uint64 version, bytes memory log, uint64 storedAt) = registry.latestBackupLog(ID);
        assertEq(uint256(version), 0, "none yet");
        assertEq(log, "", "empty");
        assertEq(uint256(storedAt), 0, "never stored");

        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.NotManager.selector, ID, stranger));
        vm.prank(stranger);
        registry.storeBackupLog(ID, 1, hex"aa");

        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.StaleBackupVersion.selector, uint64(0), uint64(0)));
        registry.storeBackupLog(ID, 0, hex"aa");

        // Audit NEW-L3: a manager cannot jump ahead (to 2^64-1, say) where nobody can follow.
        vm.expectRevert(
            abi.encodeWithSelector(IServiceRegistry.StaleBackupVersion.selector, uint64(0), type(uint64).max)
        );
        registry.storeBackupLog(ID, type(uint64).max, hex"aa");
        for (uint64 v = 1; v < 5; ++v) {
            registry.storeBackupLog(ID, v, hex"aa");
        }
        vm.warp(3_000);
        vm.expectEmit(address(registry));
        emit IServiceRegistry.BackupLogStored(ID, 5, keccak256(hex"aabb"));
        registry.storeBackupLog(ID, 5, hex"aabb");

        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.StaleBackupVersion.selector, uint64(5), uint64(5)));
        registry.storeBackupLog(ID, 5, hex"cc");
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.StaleBackupVersion.selector, uint64(5), uint64(4)));
        registry.storeBackupLog(ID, 4, hex"cc");
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.StaleBackupVersion.selector, uint64(5), uint64(7)));
        registry.storeBackupLog(ID, 7, hex"cc");
        vm.stopPrank();

        (version, log, storedAt) = registry.latestBackupLog(ID);
        assertEq(uint256(version), 5, "version");
        assertEq(log, hex"aabb", "log");
        assertEq(uint256(storedAt), 3_000, "storedAt");

        vm.prank(provider);
        registry.storeBackupLog(ID, 6, hex"dd");
        (version, log,) = registry.latestBackupLog(ID);
        assertEq(uint256(version), 6, "newer version stored");
        assertEq(log, hex"dd", "newer log");
    }

    // ------------------------------------------------------------------ service ids

    function test_bridgeServiceId_isDeterministicPerLaneAndOperator() public view {
        address a = makeAddr("bridge a");
        address b = makeAddr("bridge b");
        address op = makeAddr("operator");
        bytes32 id = registry.bridgeServiceId(1, a, 2, b, op);
        bytes32 hash = keccak256(abi.encode("multibridge.lane.v1", uint256(1), a, uint256(2), b, op));
        assertEq(id, (hash & ~bytes32(uint256(0xff) << 248)) | bytes32(bytes1(0xb5)), "formula");
        assertNotEq(id, registry.bridgeServiceId(2, b, 1, a, op), "the other lane differs");
        assertNotEq(id, registry.bridgeServiceId(1, a, 2, b, stranger), "another operator differs");
    }

    /// Audit M-4: an operator's lane service id can only be registered by that operator.
    function test_bridgeServices_cannotBeSquatted() public {
        address a = makeAddr("bridge a");
        address b = makeAddr("bridge b");
        address op = makeAddr("operator");
        bytes32 id = registry.bridgeServiceId(1, a, 2, b, op);
        // A stranger cannot take the operator's id through the generic entry point ...
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.ReservedId.selector, id));
        vm.prank(stranger);
        registry.register(id, "multibridge", "http://evil", abi.encode(uint256(1), a, uint256(2), b, op));
        // ... and the bridge entry point binds the id to the caller.
        vm.prank(stranger);
        bytes32 strangers = registry.registerBridgeService(1, a, 2, b, "multibridge", "http://evil");
        assertNotEq(strangers, id, "the stranger got its own id, not the operator's");
        assertFalse(registry.exists(id), "the operator's id is still free");

        vm.prank(op);
        assertEq(registry.registerBridgeService(1, a, 2, b, "multibridge", "http://relay"), id, "derived id");
        (,, bytes memory meta, address registeredBy,,) = registry.getService(id);
        assertEq(registeredBy, op, "provider is the operator");
        assertEq(meta, abi.encode(uint256(1), a, uint256(2), b, op), "meta names the operator");
        vm.expectRevert(abi.encodeWithSelector(IServiceRegistry.ServiceExists.selector, id));
        vm.prank(op);
        registry.registerBridgeService(1, a, 2, b, "again", "http://relay");
    }
}
