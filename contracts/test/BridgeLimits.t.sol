// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridgeCore} from "../src/IBridgeCore.sol";
import {BridgeFixture} from "./utils/BridgeFixture.sol";
import {Bridge} from "../src/Bridge.sol";
import {IBridge} from "../src/IBridge.sol";
import {TestToken} from "../src/TestToken.sol";
import {BlacklistToken} from "./mocks/BlacklistToken.sol";
import {RejectingReceiver} from "./mocks/Receivers.sol";

/// @dev What bounds users (extraData) and what bounds operators (release-side bucket, delay,
/// cancel), and the way out for a release a token refuses (audit H-1, H-2, M-6, L-6).
contract BridgeLimitsTest is BridgeFixture {
    address internal pauser = makeAddr("pauser");

    function setUp() public override {
        super.setUp();
        vm.prank(owner);
        bridge.setPauser(pauser, true);
    }

    // ------------------------------------------------------------------ H-1: extraData bound

    function test_extraDataAboveBound_refusedWithNamedError() public {
        uint256 max = bridge.MAX_EXTRA_DATA();
        assertEq(max, 1024, "bound");
        vm.deal(user, 10 ether);
        vm.prank(user);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ExtraDataTooLarge.selector, max + 1, max));
        bridge.requestNativeTransfer{value: 1 ether}(recipient, new bytes(max + 1));
        vm.prank(user);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ExtraDataTooLarge.selector, 100 * 1024, max));
        bridge.requestNativeTransfer{value: 1 ether}(recipient, new bytes(100 * 1024));
        vm.prank(user);
        assertEq(bridge.requestNativeTransfer{value: 1 ether}(recipient, new bytes(max)), 0, "at the bound: accepted");

        lockToken.mint(user, 1e18);
        vm.startPrank(user);
        lockToken.approve(address(bridge), 1e18);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ExtraDataTooLarge.selector, max + 1, max));
        bridge.requestERC20Transfer(address(lockToken), recipient, 1e18, new bytes(max + 1));
        vm.stopPrank();
        assertEq(bridge.requestNonce(), 1, "refused requests take no nonce");
    }

    // ------------------------------------------------------------------ H-2: defaults

    function test_defaults_everyReleaseWaitsTheDelayUntilALimitIsSet() public {
        Bridge fresh = _deployBridge();
        assertEq(fresh.releaseDelay(), 1 days, "default delay");
        (uint256 capacity,, uint256 available, uint256 delayAbove) = fresh.outflowLimit(address(0));
        assertEq(capacity, 0, "no bucket configured");
        assertEq(available, 0, "nothing releases at once");
        assertEq(delayAbove, 0, "no large-release bound");

        // The fixture's bridge with a token registered but no outflow limit.
        TestToken plain = new TestToken("Plain", "PLN", 18);
        address remote = makeAddr("remote plain");
        plain.mint(address(bridge), 10e18);
        vm.prank(owner);
        bridge.registerTokenPair(address(plain), remote, 0);
        IBridgeCore.Request memory r = _request(0, 1, remote, 1e18);
        uint64 releaseAt = uint64(block.timestamp + 1 days);
        _vote(op1, r);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.ReleaseQueued(0, address(plain), recipient, 1e18, releaseAt);
        _vote(op2, r);
        assertTrue(bridge.isHandled(0), "handled: no more votes, recovery does not re-send it");
        assertEq(plain.balanceOf(recipient), 0, "not paid yet");
        IBridgeCore.QueuedView[] memory queued = bridge.queuedReleasesFrom(0, 10);
        assertEq(queued.length, 1, "one queued");
        assertEq(queued[0].nonce, 0, "nonce 0 queued");
        assertEq(queued[0].kind, 1, "kind");
        assertFalse(queued[0].frozen, "not frozen");
        (address token, address to, uint64 at, uint256 amount) = bridge.queuedRelease(0);
        assertTrue(token == address(plain) && to == recipient && at == releaseAt && amount == 1e18, "queued record");

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ReleaseNotDue.selector, uint64(0), releaseAt));
        bridge.executeQueuedRelease(0);
        vm.warp(releaseAt);
        vm.prank(stranger);
        bridge.executeQueuedRelease(0);
        assertEq(plain.balanceOf(recipient), 1e18, "paid after the delay, by anyone");
        assertEq(bridge.queuedReleaseCount(), 0, "queue empty");
        assertEq(bridge.reservedLiquidity(address(plain)), 0, "reserve freed");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotQueued.selector, uint64(0)));
        bridge.executeQueuedRelease(0);
        assertEq(plain.balanceOf(recipient), 1e18, "paid exactly once");
    }

    // ------------------------------------------------------------------ H-2: the bucket

    function test_outflowBucket_limitsImmediateReleases_andRefills() public {
        vm.prank(owner);
        bridge.setOutflowLimit(address(0), 10 ether, 1 ether, 0);
        _execute(_native(0, 6 ether));
        assertEq(recipient.balance, 6 ether, "within the bucket: paid at once");
        (,, uint256 available,) = bridge.outflowLimit(address(0));
        assertEq(available, 4 ether, "bucket took it");

        _execute(_native(1, 6 ether));
        assertEq(recipient.balance, 6 ether, "above what is left: queued");
        assertTrue(bridge.isHandled(1), "closed");
        assertEq(bridge.availableNativeLiquidity(), NATIVE_LIQUIDITY - 12 ether, "queued amount reserved");

        vm.warp(block.timestamp + 5);
        (,, available,) = bridge.outflowLimit(address(0));
        assertEq(available, 9 ether, "refilled by 1 ether/s");
        _execute(_native(2, 6 ether));
        assertEq(recipient.balance, 12 ether, "refilled bucket pays at once");
        vm.warp(block.timestamp + 1 days);
        (,, available,) = bridge.outflowLimit(address(0));
        assertEq(available, 10 ether, "refill stops at capacity");
    }

    function test_reservedLiquidity_isNotSpentByLaterReleases() public {
        vm.prank(owner);
        bridge.setOutflowLimit(address(0), type(uint128).max, 0, 50 ether);
        _execute(_native(0, 60 ether));
        assertEq(bridge.availableNativeLiquidity(), 40 ether, "60 held back for the queued release");
        IBridgeCore.Request memory r = _native(1, 50 ether);
        _vote(op1, r);
        vm.expectRevert(
            abi.encodeWithSelector(IBridgeCore.InsufficientLiquidity.selector, address(0), 40 ether, 50 ether)
        );
        _vote(op2, r);
        vm.warp(block.timestamp + 1 days);
        bridge.executeQueuedRelease(0);
        assertEq(recipient.balance, 60 ether, "the queued release is still paid in full");
    }

    /// Audit NEW-M3: a large release may not take the last quarter of the bucket, which stays for
    /// small ones (at most 1/256 of the capacity), so a capital holder draining the bucket with
    /// transfers of its own cannot make every user wait the delay.
    function test_outflowBucket_keepsAQuarterForSmallReleases() public {
        vm.prank(owner);
        bridge.setOutflowLimit(address(0), 25.6 ether, 0, 0);
        _execute(_native(0, 19 ether));
        assertEq(recipient.balance, 19 ether, "a large release takes the bucket down to its quarter");
        _execute(_native(1, 1 ether));
        assertEq(recipient.balance, 19 ether, "another large one would dip into the quarter: queued");
        for (uint64 i = 2; i < 66; ++i) {
            _execute(_native(i, 0.1 ether));
        }
        assertEq(recipient.balance, 19 ether + 6.4 ether, "64 small releases (1/256 each) paid at once");
        assertEq(bridge.queuedReleaseCount(), 1, "only the large one waits");
        (,, uint256 available,) = bridge.outflowLimit(address(0));
        assertEq(available, 0.2 ether, "the small ones used the kept quarter");
    }

    // ------------------------------------------------------------------ H-2: delay and cancel

    /// Audit NEW-M4: a pauser freezes, only the owner cancels or lifts the freeze; a frozen
    /// release cannot be executed by anyone.
    function test_largeRelease_waitsTheDelay_pauserFreezes_ownerDecides() public {
        vm.startPrank(owner);
        bridge.setOutflowLimit(address(lockToken), type(uint128).max, 0, 100e18);
        bridge.setReleaseDelay(1 hours);
        vm.stopPrank();
        _execute(_request(0, 1, remoteLock, 100e18));
        _execute(_request(1, 1, remoteLock, 100e18));

        vm.prank(pauser);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOwner.selector, pauser));
        bridge.cancelQueuedRelease(0);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotPauser.selector, stranger));
        bridge.setQueuedReleaseFrozen(0, true);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.QueuedReleaseFrozen(0, true, pauser);
        vm.prank(pauser);
        bridge.setQueuedReleaseFrozen(0, true);
        vm.prank(pauser);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOwner.selector, pauser));
        bridge.setQueuedReleaseFrozen(0, false);
        vm.warp(block.timestamp + 2 hours);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ReleaseFrozen.selector, uint64(0)));
        bridge.executeQueuedRelease(0);
        bridge.executeQueuedRelease(1);
        assertEq(lockToken.balanceOf(recipient), 100e18, "the unfrozen one is paid");

        // The owner finds the frozen one genuine: lifted, anyone executes it.
        vm.prank(owner);
        bridge.setQueuedReleaseFrozen(0, false);
        vm.prank(stranger);
        bridge.executeQueuedRelease(0);
        assertEq(lockToken.balanceOf(recipient), 200e18, "a pauser's hold was not final");
    }

    function test_largeRelease_waitsTheDelay_ownerCancels() public {
        vm.startPrank(owner);
        bridge.setOutflowLimit(address(lockToken), type(uint128).max, 0, 100e18);
        bridge.setReleaseDelay(1 hours);
        vm.stopPrank();
        _execute(_request(0, 1, remoteLock, 99e18));
        assertEq(lockToken.balanceOf(recipient), 99e18, "below the bound: at once");
        _execute(_request(1, 1, remoteLock, 100e18));
        assertEq(lockToken.balanceOf(recipient), 99e18, "at the bound: queued");

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOwner.selector, stranger));
        bridge.cancelQueuedRelease(1);
        vm.warp(block.timestamp + 30 minutes);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.QueuedReleaseCancelled(1, owner);
        vm.prank(owner);
        bridge.cancelQueuedRelease(1);
        vm.warp(block.timestamp + 1 hours);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotQueued.selector, uint64(1)));
        bridge.executeQueuedRelease(1);
        assertEq(lockToken.balanceOf(recipient), 99e18, "cancelled: never paid");
        assertEq(bridge.reservedLiquidity(address(lockToken)), 0, "reserve freed");
        assertEq(lockToken.balanceOf(address(bridge)), TOKEN_LIQUIDITY - 99e18, "the amount stays in the bridge");
    }

    function test_queuedRelease_isHeldWhilePaused() public {
        vm.prank(owner);
        bridge.setOutflowLimit(address(0), type(uint128).max, 0, 1 ether);
        _execute(_native(0, 5 ether));
        vm.warp(block.timestamp + 1 days);
        vm.prank(pauser);
        bridge.pause();
        vm.expectRevert(IBridgeCore.BridgePaused.selector);
        bridge.executeQueuedRelease(0);
        vm.prank(owner);
        bridge.unpause();
        bridge.executeQueuedRelease(0);
        assertEq(recipient.balance, 5 ether, "released after unpause");
    }

    /// A compromised quorum (op1 + op2) forges 20 requests of 5 ether: what leaves at once is
    /// bounded by the bucket (less its kept quarter); the rest waits where a pauser freezes it and
    /// the owner cancels it.
    function test_compromisedQuorum_drainIsBounded() public {
        vm.prank(owner);
        bridge.setOutflowLimit(address(0), 10 ether, uint128(10 ether) / 3600, 20 ether);
        address thief = makeAddr("thief");
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](20);
        for (uint64 i = 0; i < 20; ++i) {
            rs[i] = _native(i, 5 ether);
            rs[i].to = thief;
        }
        _voteBatch(op1, rs);
        _voteBatch(op2, rs);
        assertEq(thief.balance, 5 ether, "only what the bucket allows left at once");
        IBridgeCore.QueuedView[] memory queued = bridge.queuedReleasesFrom(0, 64);
        assertEq(queued.length, 19, "the rest queued");
        vm.startPrank(pauser);
        bridge.pause();
        for (uint256 i = 0; i < queued.length; ++i) {
            bridge.setQueuedReleaseFrozen(queued[i].nonce, true);
        }
        vm.stopPrank();
        vm.startPrank(owner);
        for (uint256 i = 0; i < queued.length; ++i) {
            bridge.cancelQueuedRelease(queued[i].nonce);
        }
        vm.stopPrank();
        vm.warp(block.timestamp + 2 days);
        assertEq(bridge.queuedReleaseCount(), 0, "all cancelled");
        assertEq(thief.balance, 5 ether, "loss bounded by the bucket");
        assertEq(address(bridge).balance, NATIVE_LIQUIDITY - 5 ether, "the rest stays");
    }

    // ------------------------------------------------------------------ M-6 and L-6

    function test_blacklistedRecipient_inABatch_isDeferred_restExecutes() public {
        BlacklistToken token = new BlacklistToken();
        address remote = makeAddr("remote blacklist token");
        token.mint(address(bridge), 100e18);
        _registerPair(address(token), remote, 0);
        address blocked = makeAddr("blacklisted recipient");
        token.setBlacklisted(blocked, true);
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](3);
        for (uint64 i = 0; i < 3; ++i) {
            rs[i] = _request(i, 1, remote, 1e18);
        }
        rs[1].to = blocked;
        _voteBatch(op1, rs);
        vm.recordLogs();
        assertEq(_voteBatch(op2, rs), 3, "the whole batch executes");
        assertEq(_count(vm.getRecordedLogs(), IBridgeCore.TokenReleaseDeferred.selector), 1, "one deferral");
        assertEq(bridge.lowerHandleNonce(), 3, "no nonce wedged");
        assertEq(token.balanceOf(recipient), 2e18, "the others paid");
        assertEq(bridge.pendingTokenWithdrawal(address(token), blocked), 1e18, "credited");

        address fresh = makeAddr("recipient's new address");
        vm.prank(blocked);
        bridge.withdrawToken(address(token), fresh);
        assertEq(token.balanceOf(fresh), 1e18, "withdrawn to another address");
        assertEq(bridge.reservedLiquidity(address(token)), 0, "reserve freed");
    }

    function test_withdrawTo_paysAnotherAddress() public {
        RejectingReceiver receiver = new RejectingReceiver();
        IBridgeCore.Request memory r = _native(0, 1 ether);
        r.to = address(receiver);
        _execute(r);
        assertEq(bridge.pendingWithdrawal(address(receiver)), 1 ether, "deferred");
        address elsewhere = makeAddr("elsewhere");
        vm.prank(address(receiver));
        bridge.withdrawTo(elsewhere);
        assertEq(elsewhere.balance, 1 ether, "paid to the named address");
        assertEq(bridge.totalPendingWithdrawals(), 0, "nothing owed");
    }

    /// Review F4: a delay so long that releaseAt would overflow is refused, not a lane halt.
    function test_releaseDelay_isBounded() public {
        uint64 max = bridge.MAX_RELEASE_DELAY();
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ReleaseDelayTooLong.selector, type(uint64).max, max));
        bridge.setReleaseDelay(type(uint64).max);
        vm.prank(owner);
        bridge.setReleaseDelay(max);
        assertEq(bridge.releaseDelay(), max, "the bound itself is accepted");
    }

    /// Review F5: a queued token release respects the token's registration when executed.
    function test_queuedTokenRelease_waitsWhileItsTokenIsLocked() public {
        vm.prank(owner);
        bridge.setOutflowLimit(address(lockToken), type(uint128).max, 0, 10e18);
        _execute(_request(0, 1, remoteLock, 10e18));
        vm.warp(block.timestamp + 1 days);
        vm.prank(owner);
        bridge.setTokenLocked(address(lockToken), true);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenIsLocked.selector, address(lockToken)));
        bridge.executeQueuedRelease(0);
        assertEq(bridge.queuedReleaseCount(), 1, "still queued");
        vm.prank(owner);
        bridge.setTokenLocked(address(lockToken), false);
        bridge.executeQueuedRelease(0);
        assertEq(lockToken.balanceOf(recipient), 10e18, "paid once unlocked");
    }
}
