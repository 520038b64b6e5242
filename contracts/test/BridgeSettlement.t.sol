// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridgeCore} from "../src/IBridgeCore.sol";
import {BridgeFixture} from "./utils/BridgeFixture.sol";
import {Console} from "./utils/Console.sol";
import {Vm} from "./utils/Vm.sol";
import {IBridge} from "../src/IBridge.sol";

/// The audit of 2026-11-23, medium and low findings on the destination's bookkeeping: the vote
/// window and vote bits (NEW-M1), settling a genuine request after a forged execution (NEW-M2),
/// the paginated queue (NEW-M3), executing a key that holds enough votes (L-2), and the
/// configuration version a Safe batch checks first (NEW-L5).
contract BridgeSettlementTest is BridgeFixture {
    address internal pauser = makeAddr("pauser");

    function setUp() public override {
        super.setUp();
        vm.prank(owner);
        bridge.setPauser(pauser, true);
    }

    // ------------------------------------------------------------------ NEW-M1

    function test_voteFarAhead_isRefused_singleAndBatch() public {
        IBridgeCore.Request memory far = _native(0, 1);
        far.nonce = type(uint64).max - 1;
        uint64 limit = bridge.upperHandleNonce() + bridge.VOTE_WINDOW();
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NonceOutsideWindow.selector, far.nonce, limit));
        _vote(op3, far);
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](2);
        rs[0] = far;
        rs[1] = _native(limit - 1, 1); // the last nonce inside the window
        vm.recordLogs();
        assertEq(_voteBatch(op3, rs), 1, "only the one inside the window is recorded");
        assertEq(_skipReasons(vm.getRecordedLogs(), far.nonce)[0], IBridgeCore.NonceOutsideWindow.selector, "skip");
        assertFalse(bridge.hasVoted(far.nonce, op3), "no far vote");
        // The window follows what is handled.
        _execute(_native(100, 1));
        assertEq(bridge.upperHandleNonce(), 101, "upper");
        _vote(op3, _native(100 + bridge.VOTE_WINDOW(), 1));
    }

    /// The audit's scenario turned around: the compromised key cannot vote far ahead, and a bit is
    /// freed by what that bit voted, not by a global high-water mark: every rotation gets a seat.
    function test_operatorBits_areFreedByTheirOwnVotes() public {
        IBridgeCore.Request memory far = _native(0, 1);
        far.nonce = type(uint64).max - 1;
        vm.expectRevert();
        _vote(op3, far);
        _vote(op3, _native(3, 1)); // its last vote: nonce 3
        for (uint64 i = 0; i < 5; ++i) {
            if (i == 3) _vote(op1, _native(i, 1)); // op3's vote and op1's execute it
            else _execute(_native(i, 1));
        }
        vm.startPrank(owner);
        bridge.deregisterOperator(op3);
        (uint64[32] memory freeAt,) = bridge.operatorBitsFreeAt();
        assertEq(freeAt[2], 4, "op3's bit is free once nonce 3 is handled (it is)");
        address honest = makeAddr("honest rotated out");
        bridge.registerOperator(honest); // takes a free bit at once
        bridge.deregisterOperator(honest);
        (freeAt,) = bridge.operatorBitsFreeAt();
        for (uint256 bit = 0; bit < 32; ++bit) {
            assertTrue(freeAt[bit] <= bridge.lowerHandleNonce(), "no bit frozen");
        }
        for (uint160 i = 0; i < 29; ++i) {
            bridge.registerOperator(address(0x4000 + i));
        }
        assertEq(bridge.operatorCount(), 31, "31 seats");
        bridge.registerOperator(makeAddr("replacement"));
        assertEq(bridge.operatorCount(), 32, "the last seat too: no bit was lost");
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ NEW-M2

    /// A compromised quorum executes forged 1-wei requests for nonces the source has not issued
    /// yet (inside the window and the bucket). The genuine request that later gets one of them is
    /// refused AlreadyHandled; the owner settles it: queued for the delay (a pauser may freeze
    /// it), then paid once.
    function test_forgedFutureNonce_ownerSettlesTheGenuineRequest() public {
        vm.prank(owner);
        bridge.setOutflowLimit(address(0), 10 ether, 0, 1 ether);
        address thief = makeAddr("thief");
        IBridgeCore.Request[] memory forged = new IBridgeCore.Request[](8);
        for (uint64 i = 0; i < 8; ++i) {
            forged[i] = _native(i, 1);
            forged[i].to = thief;
        }
        _voteBatch(op1, forged);
        _voteBatch(op2, forged);
        assertEq(thief.balance, 8, "8 wei taken");

        IBridgeCore.Request memory genuine = _native(7, 5 ether);
        vm.prank(op3);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(7)));
        bridge.handleValueTransfer(genuine);

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOwner.selector, stranger));
        _ext().settleHandled(genuine, _attestedIn(genuine.nonce));
        uint64 releaseAt = uint64(block.timestamp) + bridge.releaseDelay();
        vm.expectEmit(address(bridge));
        emit IBridgeCore.HandleSettled(7, bridge.voteKey(genuine));
        vm.expectEmit(address(bridge));
        emit IBridgeCore.ReleaseQueued(7, address(0), recipient, 5 ether, releaseAt);
        vm.prank(owner);
        _ext().settleHandled(genuine, _attestedIn(genuine.nonce));
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadySettled.selector, uint64(7)));
        _ext().settleHandled(genuine, _attestedIn(genuine.nonce));

        vm.warp(releaseAt);
        bridge.executeQueuedRelease(7);
        assertEq(recipient.balance, 5 ether, "the genuine user is paid once");
    }

    function test_settle_refusesWhatIsNotForged() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotHandled.selector, uint64(0)));
        _ext().settleHandled(r, _attestedIn(r.nonce));
        vm.stopPrank();
        _execute(r);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _ext().settleHandled(r, _attestedIn(r.nonce)); // its own key reached the threshold: it executed, nothing to settle
        IBridgeCore.Request memory other = _native(0, 1 ether);
        other.srcBridge = makeAddr("elsewhere");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.WrongSource.selector, SRC_CHAIN, other.srcBridge));
        _ext().settleHandled(other, _attestedIn(other.nonce));
    }

    // ------------------------------------------------------------------ A3-L2, A3-M1

    /// A genuine payload executed by votes (single votes here) cannot be settled, and so paid a
    /// second time, after one of its voters is rotated out: the execution is recorded on its key,
    /// not recounted from the operators registered now (audit A3-L2).
    function test_settle_refusesAGenuineVoteExecution_afterItsVoterIsDeregistered() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        _execute(r); // op1 + op2, single votes
        vm.startPrank(owner);
        bridge.registerOperator(makeAddr("operator 4"));
        bridge.deregisterOperator(op1);
        vm.stopPrank();
        assertEq(bridge.voteCount(bridge.voteKey(r)), 1, "below the threshold now");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _ext().settleHandled(r, _attestedIn(r.nonce));
        assertEq(bridge.queuedReleaseCount(), 0, "nothing queued");
        assertEq(recipient.balance, 1 ether, "paid once");
    }

    /// The same after a raised threshold, for payloads executed by batches of votes.
    function test_settle_refusesAGenuineBatchVoteExecution_afterTheThresholdIsRaised() public {
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](3);
        for (uint64 i = 0; i < 3; ++i) {
            rs[i] = _native(i, 1 ether);
        }
        _voteBatch(op1, rs);
        assertEq(_voteBatch(op2, rs), 3, "executed");
        vm.prank(owner);
        bridge.setThreshold(3);
        for (uint64 i = 0; i < 3; ++i) {
            assertEq(bridge.voteCount(bridge.voteKey(rs[i])), 2, "below the threshold now");
            vm.prank(owner);
            vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, i));
            _ext().settleHandled(rs[i], _attestedIn(rs[i].nonce));
        }
        assertEq(bridge.queuedReleaseCount(), 0, "nothing queued");
        assertEq(recipient.balance, 3 ether, "each paid once");
    }

    /// The same for a payload executed by anyone's executeHandles (after a lowered threshold),
    /// once the threshold is raised again and a voter is rotated out.
    function test_settle_refusesAGenuineExecuteHandlesExecution_afterRotation() public {
        vm.prank(owner);
        bridge.setThreshold(3);
        IBridgeCore.Request memory r = _native(0, 1 ether);
        _vote(op1, r);
        _vote(op2, r);
        vm.prank(owner);
        bridge.setThreshold(2);
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](1);
        rs[0] = r;
        vm.prank(stranger);
        assertEq(bridge.executeHandles(rs), 1, "executed by executeHandles");
        vm.startPrank(owner);
        bridge.registerOperator(makeAddr("operator 4"));
        bridge.deregisterOperator(op1);
        bridge.setThreshold(3);
        vm.stopPrank();
        assertEq(bridge.voteCount(bridge.voteKey(r)), 1, "below the threshold now");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _ext().settleHandled(r, _attestedIn(r.nonce));
        assertEq(recipient.balance, 1 ether, "paid once");
    }

    /// A genuine key that holds the threshold of votes but never executed (its votes were cast
    /// under a higher threshold, which was then lowered; nobody called executeHandles) is no
    /// reason to refuse its settlement once a forgery closed the nonce: it was never paid. (A
    /// vote skipped for gas or liquidity records nothing, so lowering the threshold is how a key
    /// comes to hold the threshold unexecuted.)
    function test_settle_allowsAGenuineKeyThatHeldTheThresholdButNeverExecuted() public {
        vm.prank(owner);
        bridge.setThreshold(3);
        IBridgeCore.Request memory genuine = _native(0, 1 ether);
        _vote(op1, genuine);
        _vote(op2, genuine);
        address op4 = makeAddr("operator 4");
        vm.startPrank(owner);
        bridge.setThreshold(2);
        bridge.registerOperator(op4);
        vm.stopPrank();
        assertEq(bridge.voteCount(bridge.voteKey(genuine)), 2, "the genuine key holds the threshold");
        assertFalse(bridge.isHandled(0), "but did not execute");

        // A compromised quorum (op3, op4) executes a forged payload at the nonce.
        address thief = makeAddr("thief");
        IBridgeCore.Request memory forged = _native(0, 1 ether);
        forged.to = thief;
        _vote(op3, forged);
        _vote(op4, forged);
        assertEq(thief.balance, 1 ether, "forged executed");

        vm.prank(owner);
        _ext().settleHandled(genuine, _attestedIn(genuine.nonce));
        assertEq(bridge.queuedReleaseCount(), 1, "the genuine release is queued");
        vm.warp(block.timestamp + bridge.releaseDelay());
        bridge.executeQueuedRelease(0);
        assertEq(recipient.balance, 1 ether, "the user is paid once");
        // The forged payload is no genuine request of this nonce, whatever its votes: the owner
        // may not settle it (AlreadySettled: once per nonce), nor could it pay it again.
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadySettled.selector, uint64(0)));
        _ext().settleHandled(genuine, _attestedIn(genuine.nonce));
    }

    /// A forged payload executed by votes is itself refused by settle after the rotation that
    /// follows the compromise (its key executed), while the genuine one is settled.
    function test_settle_refusesTheForgedKeyAfterItsVotersAreRotatedOut() public {
        address thief = makeAddr("thief");
        IBridgeCore.Request memory forged = _native(0, 1 ether);
        forged.to = thief;
        _execute(forged); // op1 + op2, compromised
        vm.startPrank(owner);
        bridge.registerOperator(makeAddr("operator 4"));
        bridge.registerOperator(makeAddr("operator 5"));
        bridge.deregisterOperator(op1);
        bridge.deregisterOperator(op2);
        vm.stopPrank();
        assertEq(bridge.voteCount(bridge.voteKey(forged)), 0, "no counting vote left");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _ext().settleHandled(forged, _attestedIn(forged.nonce));
        vm.prank(owner);
        _ext().settleHandled(_native(0, 1 ether), _attestedIn(_native(0, 1 ether).nonce));
        assertEq(bridge.queuedReleaseCount(), 1, "the genuine release is queued");
    }

    // ------------------------------------------------------------------ L-2

    /// The audit's wedge turned around: after the threshold is lowered, a key that already holds
    /// enough votes is executed by anyone's executeHandles; a key below it is skipped by name.
    function test_thresholdLowered_keyWithEnoughVotes_isExecutable() public {
        vm.prank(owner);
        bridge.setThreshold(3);
        IBridgeCore.Request memory r = _native(0, 1 ether);
        IBridgeCore.Request memory below = _native(1, 1 ether);
        _vote(op1, r);
        _vote(op2, r);
        _vote(op1, below);
        vm.startPrank(owner);
        bridge.setThreshold(2);
        bridge.deregisterOperator(op3);
        vm.stopPrank();

        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](2);
        rs[0] = r;
        rs[1] = below;
        vm.recordLogs();
        vm.prank(stranger);
        assertEq(bridge.executeHandles(rs), 1, "the key with two votes executes");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_skipReasons(logs, 1)[0], IBridgeCore.BelowThreshold.selector, "one vote: skipped");
        assertTrue(bridge.isHandled(0), "handled");
        assertEq(recipient.balance, 1 ether, "paid once");
        vm.prank(stranger);
        assertEq(bridge.executeHandles(rs), 0, "nothing twice");
        assertEq(recipient.balance, 1 ether, "still once");
    }

    function test_executeHandles_isClosedWhilePaused_andNeedsABatch() public {
        IBridgeCore.Request[] memory none = new IBridgeCore.Request[](0);
        vm.expectRevert(IBridgeCore.EmptyBatch.selector);
        bridge.executeHandles(none);
        vm.prank(pauser);
        bridge.pause();
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](1);
        rs[0] = _native(0, 1);
        vm.expectRevert(IBridgeCore.BridgePaused.selector);
        bridge.executeHandles(rs);
    }

    // ------------------------------------------------------------------ NEW-M3

    /// 2,048 queued releases read page by page: a page costs the same whatever the queue's size,
    /// and every entry is seen exactly once.
    function test_queuePages_costTheSameAtAnySize() public {
        vm.prank(owner);
        bridge.setOutflowLimit(address(0), 0, 0, 0); // every release queued
        uint64 nonce = 0;
        uint256 firstPageGas;
        for (uint256 b = 0; b < 32; ++b) {
            IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](64);
            for (uint256 i = 0; i < 64; ++i) {
                rs[i] = _native(nonce++, 1);
            }
            _voteBatch(op1, rs);
            _voteBatch(op2, rs);
            if (b == 0) {
                bridge.queuedReleasesFrom(0, 64);
                firstPageGas = vm.lastCallGas().gasTotalUsed;
            }
        }
        assertEq(bridge.queuedReleaseCount(), 2048, "queued");
        bridge.queuedReleasesFrom(1984, 64);
        uint256 lastPageGas = vm.lastCallGas().gasTotalUsed;
        Console.log("a page of 64 with 64 queued", firstPageGas);
        Console.log("a page of 64 with 2048 queued", lastPageGas);
        assertTrue(lastPageGas < firstPageGas + firstPageGas / 10, "a page's cost does not grow with the queue");
        bool[] memory seen = new bool[](2048);
        for (uint256 start = 0; start < 2048; start += 256) {
            IBridgeCore.QueuedView[] memory page = bridge.queuedReleasesFrom(start, 256);
            assertEq(page.length, 256, "a full page");
            for (uint256 i = 0; i < page.length; ++i) {
                assertFalse(seen[page[i].nonce], "once");
                seen[page[i].nonce] = true;
            }
        }
        assertEq(bridge.queuedReleasesFrom(2048, 10).length, 0, "past the end: empty");
        assertEq(bridge.queuedReleasesFrom(2040, 100).length, 8, "a short last page");
    }

    // ------------------------------------------------------------------ NEW-L5

    /// Every owner call moves configVersion; a Safe batch planned against one version fails as a
    /// whole (its first call) once anything changed.
    function test_configVersion_movesWithEveryOwnerCall() public {
        uint256 v = bridge.configVersion();
        bridge.requireConfigVersion(v);
        vm.prank(owner);
        bridge.setFee(address(0), 0);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ConfigVersionChanged.selector, v, v + 1));
        bridge.requireConfigVersion(v);
        bridge.requireConfigVersion(v + 1);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOwner.selector, stranger));
        bridge.setFee(address(0), 0);
        assertEq(bridge.configVersion(), v + 1, "a refused call changes nothing");
    }
}
