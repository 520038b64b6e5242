// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridgeCore} from "../src/IBridgeCore.sol";
import {BridgeFixture} from "./utils/BridgeFixture.sol";
import {Vm} from "./utils/Vm.sol";
import {Bridge} from "../src/Bridge.sol";
import {IBridge} from "../src/IBridge.sol";
import {TestToken} from "../src/TestToken.sol";
import {FalseReturnToken} from "./mocks/FalseReturnToken.sol";
import {FeeOnTransferToken} from "./mocks/FeeOnTransferToken.sol";
import {NoReturnToken} from "./mocks/NoReturnToken.sol";
import {GasBurner, GasHungryReceiver, ReentrantReceiver, RejectingReceiver} from "./mocks/Receivers.sol";

/// @dev Voting, threshold execution, release and replay protection.
contract BridgeHandleTest is BridgeFixture {
    // ------------------------------------------------------------------ threshold execution

    function test_native_firstVoteRecordsSecondExecutesOnce() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        bytes32 key = bridge.voteKey(r);

        vm.expectEmit(address(bridge));
        emit IBridgeCore.VoteCast(0, op1, key, 1);
        _vote(op1, r);
        assertEq(recipient.balance, 0, "nothing released after one vote");
        assertFalse(bridge.isHandled(0), "open after one vote");
        assertTrue(bridge.hasVoted(0, op1), "op1 voted");
        assertEq(bridge.voteCount(key), 1, "one vote");
        assertEq(bridge.lowerHandleNonce(), 0, "lower unchanged");

        vm.expectEmit(address(bridge));
        emit IBridgeCore.VoteCast(0, op2, key, 2);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.HandleValueTransfer(0, _txHash(0), recipient, 0, address(0), 1 ether, key, 1);
        _vote(op2, r);
        assertEq(recipient.balance, 1 ether, "released");
        assertEq(address(bridge).balance, NATIVE_LIQUIDITY - 1 ether, "bridge paid");
        assertTrue(bridge.isHandled(0), "closed");
        assertEq(bridge.lowerHandleNonce(), 1, "lower");
        assertEq(bridge.upperHandleNonce(), 1, "upper");
        assertEq(bridge.recoveryBlockNumber(), _srcBlock(0), "recovery block");

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _vote(op3, r);
        assertEq(recipient.balance, 1 ether, "released exactly once");
        assertFalse(bridge.hasVoted(0, op3), "refused vote not recorded");
    }

    function test_erc20LockUnlock_executesOnce() public {
        IBridgeCore.Request memory r = _request(0, 1, remoteLock, 5e18);
        bytes32 key = bridge.voteKey(r);

        _vote(op1, r);
        assertEq(lockToken.balanceOf(recipient), 0, "nothing released after one vote");

        vm.expectEmit(address(bridge));
        emit IBridgeCore.HandleValueTransfer(0, _txHash(0), recipient, 1, address(lockToken), 5e18, key, 1);
        _vote(op2, r);
        assertEq(lockToken.balanceOf(recipient), 5e18, "unlocked");
        assertEq(lockToken.balanceOf(address(bridge)), TOKEN_LIQUIDITY - 5e18, "bridge paid");

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _vote(op3, r);
        assertEq(lockToken.balanceOf(recipient), 5e18, "released exactly once");
    }

    function test_erc20BurnMint_executesOnce() public {
        IBridgeCore.Request memory r = _request(0, 1, remoteMint, 7e6);
        bytes32 key = bridge.voteKey(r);

        _vote(op1, r);
        assertEq(mintToken.totalSupply(), 0, "nothing minted after one vote");

        vm.expectEmit(address(bridge));
        emit IBridgeCore.HandleValueTransfer(0, _txHash(0), recipient, 1, address(mintToken), 7e6, key, 1);
        _vote(op2, r);
        assertEq(mintToken.balanceOf(recipient), 7e6, "minted to recipient");
        assertEq(mintToken.totalSupply(), 7e6, "supply grew by the amount");

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _vote(op3, r);
        assertEq(mintToken.totalSupply(), 7e6, "minted exactly once");
    }

    function test_votingStatus_matchesIsHandledAndHasVoted() public {
        // nonce 0: executed (op1 + op2); nonce 1: voted by op1 only; nonce 2: untouched.
        IBridgeCore.Request memory r0 = _native(0, 1 ether);
        _vote(op1, r0);
        _vote(op2, r0);
        _vote(op1, _native(1, 1 ether));
        uint64[] memory nonces = new uint64[](3);
        nonces[0] = 0;
        nonces[1] = 1;
        nonces[2] = 2;
        (bool[] memory handled, bool[] memory voted) = bridge.votingStatus(nonces, op1);
        for (uint256 i = 0; i < 3; ++i) {
            assertEq(handled[i], bridge.isHandled(nonces[i]), "handled as isHandled");
            assertEq(voted[i], bridge.hasVoted(nonces[i], op1), "voted as hasVoted");
        }
        assertTrue(handled[0] && !handled[1] && !handled[2], "only nonce 0 executed");
        assertTrue(voted[0] && voted[1] && !voted[2], "op1 voted 0 and 1");
        (, bool[] memory voted3) = bridge.votingStatus(nonces, op3);
        assertTrue(!voted3[0] && !voted3[1] && !voted3[2], "op3 voted nothing");
    }

    function test_sameOperatorVotesTwice_AlreadyVoted() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        _vote(op1, r);

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyVoted.selector, uint64(0), op1));
        _vote(op1, r);

        // Also for a different payload of the same nonce.
        IBridgeCore.Request memory other = _native(0, 2 ether);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyVoted.selector, uint64(0), op1));
        _vote(op1, other);

        assertEq(bridge.voteCount(bridge.voteKey(r)), 1, "still one vote");
        assertEq(bridge.voteCount(bridge.voteKey(other)), 0, "no vote for the other payload");
        assertFalse(bridge.isHandled(0), "not executed");
        assertEq(recipient.balance, 0, "nothing released");
    }

    function test_divergentPayloads_doNotAddUp() public {
        IBridgeCore.Request memory a = _native(0, 1 ether);
        IBridgeCore.Request memory b = _native(0, 1 ether + 1);
        _vote(op1, a);
        _vote(op2, b);
        assertFalse(bridge.isHandled(0), "threshold-1 votes for A plus one for B execute nothing");
        assertEq(recipient.balance, 0, "nothing released");
        assertEq(bridge.voteCount(bridge.voteKey(a)), 1, "A has one vote");
        assertEq(bridge.voteCount(bridge.voteKey(b)), 1, "B has one vote");

        // op2 cannot switch to A; a second honest vote for A executes A only.
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyVoted.selector, uint64(0), op2));
        _vote(op2, a);
        _vote(op3, a);
        assertEq(recipient.balance, 1 ether, "A released with A's amount");
        assertTrue(bridge.isHandled(0), "closed");
    }

    /// Two payloads differing in any one field never add up.
    function testFuzz_payloadsDifferingInOneField_doNotAddUp(uint256 field, uint32 salt) public {
        field = bound(field, 0, 10);
        if (salt == 0) salt = 1; // every field below is changed by XOR-ing or adding a non-zero salt
        IBridgeCore.Request memory a = _native(3, 1 ether);
        IBridgeCore.Request memory b = _native(3, 1 ether);
        if (field == 0) b.nonce ^= salt % 4000; // inside the vote window
        if (field == 0 && b.nonce == a.nonce) b.nonce += 1;
        if (field == 1) b.kind = 1;
        if (field == 2) b.from = address(uint160(b.from) ^ salt);
        if (field == 3) b.to = address(uint160(b.to) ^ salt);
        if (field == 4) b.token = address(uint160(b.token) ^ salt);
        if (field == 5) b.amount += salt;
        if (field == 6) b.fee += salt;
        if (field == 7) b.extraData = abi.encodePacked(b.extraData, salt);
        if (field == 8) b.srcTxHash ^= bytes32(uint256(salt));
        if (field == 9) b.srcBlockNumber ^= salt;
        if (field == 10) b.srcLogIndex ^= salt;
        assertNotEq(bridge.voteKey(a), bridge.voteKey(b), "keys differ");

        _vote(op1, a);
        _vote(op2, b);
        assertFalse(bridge.isHandled(a.nonce), "A not executed");
        assertFalse(bridge.isHandled(b.nonce), "B not executed");
        assertEq(address(bridge).balance, NATIVE_LIQUIDITY, "nothing released");
        assertEq(bridge.lowerHandleNonce(), 0, "lower unchanged");
    }

    function test_closedNonce_refusesVotes_alsoAfterLowerPassedIt() public {
        _execute(_native(1, 1 ether));
        assertEq(bridge.lowerHandleNonce(), 0, "nonce 0 still open");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(1)));
        _vote(op3, _native(1, 1 ether));

        _execute(_native(0, 1 ether));
        assertEq(bridge.lowerHandleNonce(), 2, "lower passed nonce 1");
        assertTrue(bridge.isHandled(1), "still handled after its record was cleared");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(1)));
        _vote(op3, _native(1, 1 ether));
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _vote(op3, _native(0, 1 ether));
        assertEq(recipient.balance, 2 ether, "each released once");
    }

    function test_nonOperatorCannotVote() public {
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOperator.selector, stranger));
        _vote(stranger, _native(0, 1 ether));

        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](1);
        rs[0] = _native(0, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOperator.selector, stranger));
        _voteBatch(stranger, rs);
        assertFalse(bridge.hasVoted(0, stranger), "no vote recorded");
    }

    // ------------------------------------------------------------------ batches

    function test_batch_skipsHandledAndVotedItems_restExecutes() public {
        _execute(_native(0, 1 ether));
        _vote(op1, _native(1, 1 ether));

        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](4);
        rs[0] = _native(0, 1 ether); // already handled
        rs[1] = _native(1, 1 ether); // already voted by op1
        rs[2] = _native(2, 1 ether);
        rs[3] = _native(3, 1 ether);
        vm.recordLogs();
        assertEq(_voteBatch(op1, rs), 2, "op1 recorded two votes");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_count(logs, IBridgeCore.HandleSkipped.selector), 2, "two skipped");
        assertEq(_skipReasons(logs, 0)[0], IBridgeCore.AlreadyHandled.selector, "nonce 0 skipped as handled");
        assertEq(_skipReasons(logs, 1)[0], IBridgeCore.AlreadyVoted.selector, "nonce 1 skipped as voted");
        assertTrue(bridge.hasVoted(2, op1) && bridge.hasVoted(3, op1), "fresh items voted");

        rs[0] = _native(1, 1 ether);
        rs[1] = _native(2, 1 ether);
        rs[2] = _native(3, 1 ether);
        rs[3] = _native(0, 1 ether); // already handled
        vm.recordLogs();
        assertEq(_voteBatch(op2, rs), 3, "op2 recorded three votes");
        logs = vm.getRecordedLogs();
        assertEq(_count(logs, IBridgeCore.HandleValueTransfer.selector), 3, "three executed");
        assertEq(_skipReasons(logs, 0)[0], IBridgeCore.AlreadyHandled.selector, "nonce 0 skipped as handled");
        assertEq(recipient.balance, 4 ether, "four releases in total");
        assertEq(bridge.lowerHandleNonce(), 4, "lower");
    }

    function test_batch_duplicateNonce_skipped() public {
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](2);
        rs[0] = _native(0, 1 ether);
        rs[1] = _native(0, 1 ether);
        vm.recordLogs();
        assertEq(_voteBatch(op1, rs), 1, "first recorded");
        bytes4[] memory reasons = _skipReasons(vm.getRecordedLogs(), 0);
        assertEq(reasons.length, 1, "one skip");
        assertEq(reasons[0], IBridgeCore.AlreadyVoted.selector, "second skipped as AlreadyVoted");

        // When the first occurrence executes, the second is skipped as handled and nothing is paid twice.
        vm.recordLogs();
        assertEq(_voteBatch(op2, rs), 1, "first recorded and executed");
        reasons = _skipReasons(vm.getRecordedLogs(), 0);
        assertEq(reasons[0], IBridgeCore.AlreadyHandled.selector, "second skipped as AlreadyHandled");
        assertEq(recipient.balance, 1 ether, "released once");
    }

    function test_batch_emptyOrTooLarge_reverts() public {
        vm.expectRevert(IBridgeCore.EmptyBatch.selector);
        _voteBatch(op1, new IBridgeCore.Request[](0));

        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](65);
        for (uint64 i = 0; i < 65; ++i) {
            rs[i] = _native(i, 1);
        }
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.BatchTooLarge.selector, uint256(65), uint256(64)));
        _voteBatch(op1, rs);
    }

    function test_batch_skipsInvalidItems() public {
        IBridgeCore.Request memory wrongSource = _native(0, 1 ether);
        wrongSource.srcBridge = stranger;
        IBridgeCore.Request memory unknownKind = _request(1, 3, address(0), 1 ether);
        IBridgeCore.Request memory unregistered = _request(2, 1, makeAddr("unknown remote token"), 1e18);
        IBridgeCore.Request memory locked = _request(3, 1, remoteLock, 1e18);
        IBridgeCore.Request memory good = _native(4, 1 ether);
        _vote(op1, unregistered); // below the threshold nothing about the token is checked
        _vote(op1, locked);
        vm.prank(owner);
        bridge.setTokenLocked(address(lockToken), true);

        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](5);
        rs[0] = wrongSource;
        rs[1] = unknownKind;
        rs[2] = unregistered;
        rs[3] = locked;
        rs[4] = good;
        vm.recordLogs();
        assertEq(_voteBatch(op2, rs), 1, "only the good item recorded");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_skipReasons(logs, 0)[0], IBridgeCore.WrongSource.selector, "wrong source");
        assertEq(_skipReasons(logs, 1)[0], IBridgeCore.UnknownKind.selector, "unknown kind");
        assertEq(_skipReasons(logs, 2)[0], IBridgeCore.TokenNotRegistered.selector, "unregistered");
        assertEq(_skipReasons(logs, 3)[0], IBridgeCore.TokenIsLocked.selector, "locked");
        for (uint64 n = 0; n < 4; ++n) {
            assertFalse(bridge.hasVoted(n, op2), "skipped item left no vote");
        }
        assertTrue(bridge.hasVoted(4, op2), "good item voted");
    }

    function test_single_invalidItems_revertWithTypedErrors() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        r.srcBridge = stranger;
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.WrongSource.selector, SRC_CHAIN, stranger));
        _vote(op1, r);

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.UnknownKind.selector, uint8(3)));
        _vote(op1, _request(0, 3, address(0), 1 ether));

        address unknownRemote = makeAddr("unknown remote token");
        IBridgeCore.Request memory unregistered = _request(0, 1, unknownRemote, 1e18);
        _vote(op1, unregistered);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenNotRegistered.selector, unknownRemote));
        _vote(op2, unregistered);

        IBridgeCore.Request memory locked = _request(1, 1, remoteLock, 1e18);
        _vote(op1, locked);
        vm.prank(owner);
        bridge.setTokenLocked(address(lockToken), true);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenIsLocked.selector, address(lockToken)));
        _vote(op2, locked);

        vm.prank(owner);
        bridge.setTokenLocked(address(lockToken), false);
        _vote(op2, locked);
        assertEq(lockToken.balanceOf(recipient), 1e18, "executes once unlocked");
    }

    // ------------------------------------------------------------------ liquidity

    function test_insufficientNativeLiquidity_revertsWithoutVote_thenFundExecutes() public {
        IBridgeCore.Request memory r = _native(0, NATIVE_LIQUIDITY + 50 ether);
        bytes32 key = bridge.voteKey(r);
        _vote(op1, r); // below the threshold: recorded, liquidity not checked

        vm.expectRevert(
            abi.encodeWithSelector(
                IBridgeCore.InsufficientLiquidity.selector, address(0), NATIVE_LIQUIDITY, NATIVE_LIQUIDITY + 50 ether
            )
        );
        _vote(op2, r);
        assertFalse(bridge.hasVoted(0, op2), "no vote left behind");
        assertEq(bridge.voteCount(key), 1, "tally unchanged");
        assertFalse(bridge.isHandled(0), "open");

        vm.deal(address(this), 50 ether);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.Funded(address(this), 50 ether);
        bridge.fund{value: 50 ether}();
        _vote(op2, r);
        assertEq(recipient.balance, NATIVE_LIQUIDITY + 50 ether, "released after funding");
        assertEq(address(bridge).balance, 0, "bridge drained exactly");
    }

    function test_insufficientTokenLiquidity_revertsWithoutVote() public {
        IBridgeCore.Request memory r = _request(0, 1, remoteLock, TOKEN_LIQUIDITY + 1);
        _vote(op1, r);
        vm.expectRevert(
            abi.encodeWithSelector(
                IBridgeCore.InsufficientLiquidity.selector, address(lockToken), TOKEN_LIQUIDITY, TOKEN_LIQUIDITY + 1
            )
        );
        _vote(op2, r);
        assertFalse(bridge.hasVoted(0, op2), "no vote left behind");

        lockToken.mint(address(bridge), 1);
        _vote(op2, r);
        assertEq(lockToken.balanceOf(recipient), TOKEN_LIQUIDITY + 1, "released after funding");
    }

    function test_insufficientLiquidity_batchSkipsItem_restExecutes() public {
        IBridgeCore.Request memory big = _native(0, NATIVE_LIQUIDITY + 1);
        IBridgeCore.Request memory small = _native(1, 1 ether);
        _vote(op1, big);
        _vote(op1, small);

        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](2);
        rs[0] = big;
        rs[1] = small;
        vm.recordLogs();
        assertEq(_voteBatch(op2, rs), 1, "only the small item");
        assertEq(_skipReasons(vm.getRecordedLogs(), 0)[0], IBridgeCore.InsufficientLiquidity.selector, "skip reason");
        assertFalse(bridge.hasVoted(0, op2), "no vote left behind");
        assertTrue(bridge.isHandled(1), "small executed");
        assertEq(bridge.upperHandleNonce(), 2, "upper");
        assertEq(bridge.lowerHandleNonce(), 0, "lower waits for nonce 0");

        vm.deal(address(this), 2 ether);
        bridge.fund{value: 2 ether}();
        _vote(op2, big);
        assertEq(recipient.balance, NATIVE_LIQUIDITY + 1 + 1 ether, "both released");
        assertEq(bridge.availableNativeLiquidity(), 1 ether - 1, "the rest of the funding remains");
        assertEq(bridge.lowerHandleNonce(), 2, "lower caught up");
    }

    // ------------------------------------------------------------------ hostile recipients

    function test_rejectingRecipient_doesNotWedgeLane() public {
        RejectingReceiver rejecting = new RejectingReceiver();
        IBridgeCore.Request memory r = _native(0, 2 ether);
        r.to = address(rejecting);

        _vote(op1, r);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.NativeReleaseDeferred(0, address(rejecting), 2 ether);
        _vote(op2, r);
        assertTrue(bridge.isHandled(0), "nonce closed");
        assertEq(bridge.lowerHandleNonce(), 1, "lane advanced");
        assertEq(bridge.pendingWithdrawal(address(rejecting)), 2 ether, "credited");
        assertEq(bridge.totalPendingWithdrawals(), 2 ether, "owed total");
        assertEq(bridge.availableNativeLiquidity(), NATIVE_LIQUIDITY - 2 ether, "owed coin is not liquidity");
        assertEq(address(bridge).balance, NATIVE_LIQUIDITY, "coin still in the bridge");

        _execute(_native(1, 1 ether));
        assertEq(recipient.balance, 1 ether, "next nonce executes");
        assertEq(bridge.lowerHandleNonce(), 2, "lower");

        vm.expectRevert(IBridgeCore.NativeTransferFailed.selector);
        rejecting.withdrawFrom(bridge);

        rejecting.setAccepting(true);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.Withdrawn(address(rejecting), 2 ether);
        rejecting.withdrawFrom(bridge);
        assertEq(address(rejecting).balance, 2 ether, "withdrawn");
        assertEq(bridge.pendingWithdrawal(address(rejecting)), 0, "credit cleared");
        assertEq(bridge.totalPendingWithdrawals(), 0, "owed total cleared");
        assertEq(bridge.availableNativeLiquidity(), address(bridge).balance, "all liquidity available");

        vm.expectRevert(IBridgeCore.NothingToWithdraw.selector);
        rejecting.withdrawFrom(bridge);
    }

    /// A contract recipient's code never runs inside a vote (audit NEW-H1): the coin is credited
    /// at a small, known cost whatever the recipient would do with gas, and anyone may push the
    /// credit to it later in a transaction of their own.
    function test_gasBurningRecipient_isCreditedWithoutRunning() public {
        GasBurner burner = new GasBurner();
        IBridgeCore.Request memory r = _native(0, 1 ether);
        r.to = address(burner);
        _vote(op1, r);

        vm.prank(op2);
        uint256 gasBefore = gasleft();
        bridge.handleValueTransfer(r);
        uint256 used = gasBefore - gasleft();
        assertTrue(used < 130_000, "the recipient ran nothing: the deciding vote costs a credit");
        assertTrue(bridge.isHandled(0), "nonce closed");
        assertEq(bridge.pendingWithdrawal(address(burner)), 1 ether, "credited");

        _execute(_native(1, 1 ether));
        assertEq(recipient.balance, 1 ether, "next nonce executes");
        assertEq(bridge.lowerHandleNonce(), 2, "lower");

        // A delivery runs the recipient with the deliverer's gas: it fails, the credit stays.
        vm.prank(stranger);
        vm.expectRevert(IBridgeCore.NativeTransferFailed.selector);
        bridge.deliver{gas: 1_000_000}(address(0), address(burner), 0);
        assertEq(bridge.pendingWithdrawal(address(burner)), 1 ether, "still credited");
    }

    /// A contract recipient that needs gas to accept coin is credited whatever gas limit the
    /// operator picks (no push to code, so nothing to under-gas), and anyone's `deliver` pays it;
    /// a vote below NATIVE_ITEM_GAS is refused with a named error, never an out-of-gas.
    function test_contractRecipient_creditedThenDeliveredByAnyone() public {
        GasHungryReceiver hungry = new GasHungryReceiver();
        IBridgeCore.Request memory r = _native(0, 1 ether);
        r.to = address(hungry);
        _vote(op1, r);
        bytes memory handle = abi.encodeCall(IBridge.handleValueTransfer, (r));
        uint256 below = bridge.NATIVE_ITEM_GAS() - 20_000;
        vm.prank(op2);
        (bool ok, bytes memory ret) = address(bridge).call{gas: below}(handle);
        assertFalse(ok, "below NATIVE_ITEM_GAS");
        assertEq(bytes4(ret), IBridgeCore.GasBudgetTooLow.selector, "refused by name");
        vm.prank(op2);
        bridge.handleValueTransfer(r);
        assertEq(hungry.received(), 0, "its code did not run in the vote");
        assertEq(bridge.pendingWithdrawal(address(hungry)), 1 ether, "credited");

        vm.expectEmit(address(bridge));
        emit IBridgeCore.Withdrawn(address(hungry), 1 ether);
        vm.prank(stranger);
        bridge.deliver(address(0), address(hungry), 0);
        assertEq(hungry.received(), 1, "paid by a delivery");
        assertEq(address(hungry).balance, 1 ether, "balance");
        assertEq(bridge.pendingWithdrawal(address(hungry)), 0, "credit spent");
        assertEq(bridge.totalPendingWithdrawals(), 0, "owed total");
        vm.expectRevert(IBridgeCore.NothingToWithdraw.selector);
        bridge.deliver(address(0), address(hungry), 0);
    }

    function test_reentrantRecipient_isLockedOut() public {
        ReentrantReceiver reentrant = new ReentrantReceiver(bridge);
        IBridgeCore.Request memory r = _native(0, 1 ether);
        r.to = address(reentrant);
        _execute(r);
        assertEq(bridge.pendingWithdrawal(address(reentrant)), 1 ether, "credited, not called");
        bridge.deliver(address(0), address(reentrant), 0);
        assertEq(address(reentrant).balance, 1 ether, "paid");
        assertEq(reentrant.reentryError(), IBridgeCore.Reentrancy.selector, "re-entry refused");
        assertEq(bridge.pendingWithdrawal(address(reentrant)), 0, "credit spent");
    }

    function test_failingTokenRelease_isDeferredNotReverted() public {
        // A burn-mode token that never granted the bridge the mint role.
        TestToken noMinter = new TestToken("No Minter", "NOM", 18);
        address remote = makeAddr("remote no-minter token");
        _registerPair(address(noMinter), remote, 1);
        IBridgeCore.Request memory r = _request(0, 1, remote, 1e18);
        _vote(op1, r);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.TokenReleaseDeferred(0, address(noMinter), recipient, 1e18);
        _vote(op2, r);
        assertTrue(bridge.isHandled(0), "closed: the nonce never wedges");
        assertEq(bridge.pendingTokenWithdrawal(address(noMinter), recipient), 1e18, "credited");
        vm.prank(recipient);
        vm.expectRevert();
        bridge.withdrawToken(address(noMinter), recipient);
        assertEq(bridge.pendingTokenWithdrawal(address(noMinter), recipient), 1e18, "a failed withdrawal keeps the credit");
        noMinter.setMinter(address(bridge), true);
        vm.prank(recipient);
        bridge.withdrawToken(address(noMinter), recipient);
        assertEq(noMinter.balanceOf(recipient), 1e18, "minted once the token allows it");
        vm.prank(recipient);
        vm.expectRevert(IBridgeCore.NothingToWithdraw.selector);
        bridge.withdrawToken(address(noMinter), recipient);

        // A lock-mode token whose transfer returns false.
        FalseReturnToken falseToken = new FalseReturnToken();
        address remoteFalse = makeAddr("remote false token");
        falseToken.mint(address(bridge), 10e18);
        _registerPair(address(falseToken), remoteFalse, 0);
        IBridgeCore.Request memory r2 = _request(1, 1, remoteFalse, 1e18);
        _vote(op1, r2);
        _vote(op2, r2);
        assertTrue(bridge.isHandled(1), "closed");
        assertEq(bridge.reservedLiquidity(address(falseToken)), 1e18, "held back for the recipient");
    }

    function test_noReturnDataToken_releases() public {
        NoReturnToken token = new NoReturnToken();
        address remote = makeAddr("remote no-return token");
        token.mint(address(bridge), 10e18);
        _registerPair(address(token), remote, 0);
        _execute(_request(0, 1, remote, 4e18));
        assertEq(token.balanceOf(recipient), 4e18, "released");
        assertEq(token.balanceOf(address(bridge)), 6e18, "bridge paid");
    }

    // ------------------------------------------------------------------ operator set changes

    function test_deregisteredOperatorsOpenVote_stopsCounting() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        bytes32 key = bridge.voteKey(r);
        _vote(op1, r);
        vm.prank(owner);
        bridge.deregisterOperator(op1);
        assertEq(bridge.voteCount(key), 0, "op1's vote no longer counts");

        vm.expectEmit(address(bridge));
        emit IBridgeCore.VoteCast(0, op2, key, 1);
        _vote(op2, r);
        assertFalse(bridge.isHandled(0), "one counting vote does not reach threshold 2");
        assertEq(recipient.balance, 0, "nothing released");

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOperator.selector, op1));
        _vote(op1, _native(1, 1 ether));

        // Re-registered (a recovered or rotated key), op1's old vote does NOT count again: its
        // registration takes a fresh bit. It may vote once more, under the new bit.
        vm.prank(owner);
        bridge.registerOperator(op1);
        assertEq(bridge.voteCount(key), 1, "op1's old vote is not revived");
        assertFalse(bridge.hasVoted(0, op1), "the new registration has not voted");
        vm.expectEmit(address(bridge));
        emit IBridgeCore.VoteCast(0, op1, key, 2);
        _vote(op1, r);
        assertEq(recipient.balance, 1 ether, "released with op1's new vote and op2's");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _vote(op3, r);
    }

    function test_aDeregisteredOperatorsBit_isReusedOnlyOnceItsVotesAreHandled() public {
        // op3 votes nonces 0 and 1; then it is deregistered while they are open.
        _vote(op3, _native(0, 1 ether));
        _vote(op3, _native(1, 1 ether));
        address fresh = makeAddr("fresh operator");
        vm.startPrank(owner);
        bridge.deregisterOperator(op3);
        // Fill every other bit so only op3's old one could be taken.
        for (uint160 i = 0; i < 29; ++i) {
            bridge.registerOperator(address(0x3000 + i));
        }
        assertEq(bridge.operatorCount(), 31, "one seat left");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.OperatorBitsBusy.selector, uint64(2)));
        bridge.registerOperator(fresh);
        vm.stopPrank();
        (uint64[32] memory freeAt,) = bridge.operatorBitsFreeAt();
        assertEq(freeAt[2], 2, "op3's bit is free once nonces 0 and 1 are handled");
        // Nonces 0 and 1 execute with the remaining operators' votes.
        _execute(_native(0, 1 ether));
        assertEq(bridge.lowerHandleNonce(), 1, "one handled");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.OperatorBitsBusy.selector, uint64(2)));
        bridge.registerOperator(fresh);
        _execute(_native(1, 1 ether));
        vm.prank(owner);
        bridge.registerOperator(fresh);
        assertTrue(bridge.isOperator(fresh), "registered on the freed bit");
        // The old votes are on handled nonces only: nothing the fresh operator inherits counts.
        assertFalse(bridge.hasVoted(2, fresh), "no vote on an open nonce");
        IBridgeCore.Request memory r = _native(2, 1 ether);
        _vote(fresh, r);
        assertEq(bridge.voteCount(bridge.voteKey(r)), 1, "its own vote only");
    }

    // ------------------------------------------------------------------ replay protection

    function test_replay_fromAnotherSource_WrongSource() public {
        IBridgeCore.Request memory otherBridge = _native(0, 1 ether);
        otherBridge.srcBridge = makeAddr("another bridge");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.WrongSource.selector, SRC_CHAIN, otherBridge.srcBridge));
        _vote(op1, otherBridge);

        IBridgeCore.Request memory otherChain = _native(0, 1 ether);
        otherChain.srcChainId = SRC_CHAIN + 1;
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.WrongSource.selector, SRC_CHAIN + 1, srcBridge));
        _vote(op1, otherChain);
        assertFalse(bridge.hasVoted(0, op1), "no vote recorded");
    }

    function test_replay_onAnotherChainId_WrongChain() public {
        uint256 home = block.chainid;
        IBridgeCore.Request memory r = _native(0, 1 ether);
        bytes32 homeKey = bridge.voteKey(r);
        vm.chainId(home + 1);
        assertNotEq(bridge.voteKey(r), homeKey, "the key binds the chain id");

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.WrongChain.selector, home, home + 1));
        _vote(op1, r);
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](1);
        rs[0] = r;
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.WrongChain.selector, home, home + 1));
        _voteBatch(op1, rs);

        vm.chainId(home);
        _execute(r);
        assertEq(recipient.balance, 1 ether, "executes on the home chain");
    }

    function test_sameRequest_hasDifferentKeysOnTwoBridges() public {
        Bridge twin = _deployBridge();
        vm.deal(address(this), 10 ether);
        twin.fund{value: 10 ether}();
        IBridgeCore.Request memory r = _native(0, 1 ether);
        bytes32 key = bridge.voteKey(r);
        assertNotEq(twin.voteKey(r), key, "keys differ across bridges");

        _vote(op1, r);
        assertEq(twin.voteCount(key), 0, "a vote on one bridge is not a vote on the other");
        assertFalse(twin.hasVoted(0, op1), "not voted on the twin");
        vm.prank(op2);
        twin.handleValueTransfer(r);
        assertFalse(twin.isHandled(0), "one vote on the twin does not execute");
        assertFalse(bridge.isHandled(0), "nor on the original");
        assertEq(recipient.balance, 0, "nothing released");
    }
}

/// @dev lowerHandleNonce / upperHandleNonce / recoveryBlockNumber bookkeeping.
contract BridgeBookkeepingTest is BridgeFixture {
    function test_outOfOrderHandles_2_1_0_3() public {
        assertEq(bridge.recoveryBlockNumber(), START_BLOCK, "recovery starts at the counterpart's start block");

        _execute(_native(2, 1 ether));
        _assertBookkeeping(0, 3, START_BLOCK);
        assertTrue(bridge.isHandled(2) && !bridge.isHandled(1) && !bridge.isHandled(0), "only 2 handled");

        _execute(_native(1, 1 ether));
        _assertBookkeeping(0, 3, START_BLOCK);

        IBridgeCore.Request memory r0 = _native(0, 1 ether);
        bytes32 key0 = bridge.voteKey(r0);
        _vote(op1, r0);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.HandleValueTransfer(0, _txHash(0), recipient, 0, address(0), 1 ether, key0, 3);
        _vote(op2, r0);
        // recoveryBlockNumber is the source block of the last nonce handled in order: a lower
        // bound of every open request's block, which is all recovery needs.
        _assertBookkeeping(3, 3, _srcBlock(0));

        _execute(_native(3, 1 ether));
        _assertBookkeeping(4, 4, _srcBlock(3));
        for (uint64 n = 0; n < 4; ++n) {
            assertTrue(bridge.isHandled(n), "handled");
        }
        assertFalse(bridge.isHandled(4), "nonce 4 open");
        assertEq(recipient.balance, 4 ether, "four releases");
    }

    function test_lowerAdvance_isBoundedAndContinues() public {
        // Execute 1..2100 in batches (op1 votes, op2 executes): more than one call may advance.
        uint64 last = 2100;
        for (uint64 start = 1; start <= last; start += 60) {
            uint64 size = start + 60 > last + 1 ? last + 1 - start : 60;
            IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](size);
            for (uint64 i = 0; i < size; ++i) {
                rs[i] = _native(start + i, 1);
            }
            _voteBatch(op1, rs);
            assertEq(_voteBatch(op2, rs), size, "batch executed");
        }
        _assertBookkeeping(0, last + 1, START_BLOCK);

        IBridgeCore.Request memory r0 = _native(0, 1);
        bytes32 key0 = bridge.voteKey(r0);
        _vote(op1, r0);
        uint64 bounded = uint64(1 + bridge.MAX_LOWER_ADVANCE());
        vm.expectEmit(address(bridge));
        emit IBridgeCore.HandleValueTransfer(0, _txHash(0), recipient, 0, address(0), 1, key0, bounded);
        _vote(op2, r0);
        // Nonce 0 itself plus MAX_LOWER_ADVANCE (2048) already-handled nonces.
        _assertBookkeeping(bounded, last + 1, _srcBlock(0));
        assertTrue(bridge.isHandled(bounded) && bridge.isHandled(last), "the rest still handled");
        assertFalse(bridge.isHandled(last + 1), "the next open");

        // Anyone may move it on over handled nonces, as far as asked and never past a gap.
        vm.prank(stranger);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.LowerHandleNonceAdvanced(bounded, bounded + 10);
        assertEq(bridge.advanceLowerHandleNonce(10), bounded + 10, "10 steps");
        vm.prank(stranger);
        assertEq(bridge.advanceLowerHandleNonce(10_000), last + 1, "stops at the first open nonce");
        _assertBookkeeping(last + 1, last + 1, _srcBlock(0));
        vm.recordLogs();
        vm.prank(stranger);
        assertEq(bridge.advanceLowerHandleNonce(10), last + 1, "nothing to do");
        assertEq(_count(vm.getRecordedLogs(), IBridgeCore.LowerHandleNonceAdvanced.selector), 0, "no event");

        _execute(_native(last + 1, 1));
        _assertBookkeeping(last + 2, last + 2, _srcBlock(last + 1));
        assertEq(recipient.balance, last + 2, "every nonce released once");
    }

    /// A gap of open nonces inside one word and across words: the advance stops exactly at the
    /// first open nonce each time.
    function test_lowerAdvance_stopsAtEachGap() public {
        uint64[6] memory handledFirst = [uint64(1), 2, 3, 255, 256, 300];
        for (uint256 i = 0; i < handledFirst.length; ++i) {
            _execute(_native(handledFirst[i], 1));
        }
        _execute(_native(0, 1));
        _assertBookkeeping(4, 301, _srcBlock(0));
        for (uint64 n = 4; n < 255; ++n) {
            _execute(_native(n, 1));
        }
        // 4..254 in order, then 255 and 256 were already handled: it crosses the word boundary.
        _assertBookkeeping(257, 301, _srcBlock(254));
        assertFalse(bridge.isHandled(257), "257 open");
        assertTrue(bridge.isHandled(300), "300 handled");
    }

    /// Whatever the order, the lower nonce ends at the count and always names the first open
    /// nonce.
    function testFuzz_randomHandleOrder_lowerEndsAtCount(uint256 seed) public {
        uint64 count = uint64(bound(seed, 1, 300));
        uint64[] memory order = new uint64[](count);
        for (uint64 i = 0; i < count; ++i) {
            order[i] = i;
        }
        for (uint256 i = count - 1; i > 0; --i) {
            uint256 j = uint256(keccak256(abi.encode(seed, i))) % (i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }

        bool[] memory done = new bool[](count);
        uint64 expectedLower = 0;
        uint64 expectedUpper = 0;
        for (uint256 i = 0; i < count; ++i) {
            uint64 n = order[i];
            _execute(_native(n, 1));
            done[n] = true;
            while (expectedLower < count && done[expectedLower]) ++expectedLower;
            if (n + 1 > expectedUpper) expectedUpper = n + 1;
            assertEq(bridge.lowerHandleNonce(), expectedLower, "lower is the first open nonce");
            assertEq(bridge.upperHandleNonce(), expectedUpper, "upper is the highest handled + 1");
            // No open request is older than the recovery block.
            assertTrue(bridge.recoveryBlockNumber() <= _srcBlock(expectedLower), "recovery block bounds the open");
        }
        assertEq(bridge.lowerHandleNonce(), count, "all handled");
        assertEq(recipient.balance, count, "each nonce released once");
    }

    function _assertBookkeeping(uint64 lower, uint64 upper, uint64 recovery) private view {
        assertEq(bridge.lowerHandleNonce(), lower, "lowerHandleNonce");
        assertEq(bridge.upperHandleNonce(), upper, "upperHandleNonce");
        assertEq(bridge.recoveryBlockNumber(), recovery, "recoveryBlockNumber");
    }
}

/// @dev The source side: requests, fees, caps and rate limits.
contract BridgeRequestTest is BridgeFixture {
    address internal feeSink = makeAddr("fee receiver");

    function setUp() public override {
        super.setUp();
        vm.deal(user, 1_000 ether);
        lockToken.mint(user, 1_000e18);
        mintToken.mint(user, 1_000e6);
        vm.startPrank(user);
        lockToken.approve(address(bridge), type(uint256).max);
        mintToken.approve(address(bridge), type(uint256).max);
        vm.stopPrank();
    }

    function test_requestNative_emitsDenseNonces() public {
        vm.expectEmit(address(bridge));
        emit IBridgeCore.RequestValueTransfer(0, 0, user, recipient, address(0), 1 ether, 0, hex"aa");
        vm.prank(user);
        assertEq(bridge.requestNativeTransfer{value: 1 ether}(recipient, hex"aa"), 0, "first nonce");

        vm.expectEmit(address(bridge));
        emit IBridgeCore.RequestValueTransfer(1, 0, user, recipient, address(0), 2 ether, 0, "");
        vm.prank(user);
        assertEq(bridge.requestNativeTransfer{value: 2 ether}(recipient, ""), 1, "second nonce");

        assertEq(bridge.requestNonce(), 2, "requestNonce");
        assertEq(address(bridge).balance, NATIVE_LIQUIDITY + 3 ether, "locked in the bridge");
        assertEq(user.balance, 997 ether, "user paid");
    }

    function test_requestNative_rejections() public {
        vm.startPrank(user);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        bridge.requestNativeTransfer{value: 1 ether}(address(0), "");
        vm.expectRevert(IBridgeCore.ZeroAmount.selector);
        bridge.requestNativeTransfer(recipient, "");
        vm.stopPrank();

        _setFee(address(0), 0.1 ether);
        vm.startPrank(user);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.InsufficientFee.selector, 0.1 ether, 0.05 ether));
        bridge.requestNativeTransfer{value: 0.05 ether}(recipient, "");
        vm.expectRevert(IBridgeCore.ZeroAmount.selector);
        bridge.requestNativeTransfer{value: 0.1 ether}(recipient, "");
        vm.stopPrank();
        assertEq(bridge.requestNonce(), 0, "no request created");
    }

    function test_requestNative_feePaidToReceiver() public {
        _setFee(address(0), 0.1 ether);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.RequestValueTransfer(0, 0, user, recipient, address(0), 1 ether, 0.1 ether, "");
        vm.prank(user);
        bridge.requestNativeTransfer{value: 1.1 ether}(recipient, "");
        assertEq(feeSink.balance, 0.1 ether, "fee to the receiver");
        assertEq(address(bridge).balance, NATIVE_LIQUIDITY + 1 ether, "amount locked");
        assertEq(user.balance, 1_000 ether - 1.1 ether, "user paid amount + fee");
    }

    function test_requestERC20_lockUnlock() public {
        vm.expectEmit(address(bridge));
        emit IBridgeCore.RequestValueTransfer(0, 1, user, recipient, address(lockToken), 10e18, 0, hex"01");
        vm.prank(user);
        assertEq(bridge.requestERC20Transfer(address(lockToken), recipient, 10e18, hex"01"), 0, "nonce");
        assertEq(lockToken.balanceOf(address(bridge)), TOKEN_LIQUIDITY + 10e18, "locked");
        assertEq(lockToken.balanceOf(user), 990e18, "user paid");
        assertEq(bridge.requestNonce(), 1, "requestNonce");
    }

    function test_requestERC20_burnMint() public {
        vm.expectEmit(address(bridge));
        emit IBridgeCore.RequestValueTransfer(0, 1, user, recipient, address(mintToken), 200e6, 0, "");
        vm.prank(user);
        bridge.requestERC20Transfer(address(mintToken), recipient, 200e6, "");
        assertEq(mintToken.totalSupply(), 800e6, "burned");
        assertEq(mintToken.balanceOf(address(bridge)), 0, "nothing kept");
        assertEq(mintToken.balanceOf(user), 800e6, "user paid");
    }

    function test_requestERC20_feeInNative_excessRefunded() public {
        _setFee(address(lockToken), 0.01 ether);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.RequestValueTransfer(0, 1, user, recipient, address(lockToken), 1e18, 0.01 ether, "");
        vm.prank(user);
        bridge.requestERC20Transfer{value: 0.05 ether}(address(lockToken), recipient, 1e18, "");
        assertEq(feeSink.balance, 0.01 ether, "fee to the receiver");
        assertEq(user.balance, 1_000 ether - 0.01 ether, "excess refunded");
        assertEq(address(bridge).balance, NATIVE_LIQUIDITY, "bridge keeps no native");

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.InsufficientFee.selector, 0.01 ether, 0.005 ether));
        vm.prank(user);
        bridge.requestERC20Transfer{value: 0.005 ether}(address(lockToken), recipient, 1e18, "");
    }

    function test_requestERC20_rejections() public {
        TestToken unregistered = new TestToken("Unregistered", "UNR", 18);
        vm.startPrank(user);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenNotRegistered.selector, address(unregistered)));
        bridge.requestERC20Transfer(address(unregistered), recipient, 1, "");
        vm.expectRevert(IBridgeCore.ZeroAmount.selector);
        bridge.requestERC20Transfer(address(lockToken), recipient, 0, "");
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        bridge.requestERC20Transfer(address(lockToken), address(0), 1, "");
        vm.stopPrank();

        vm.prank(owner);
        bridge.setTokenLocked(address(lockToken), true);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenIsLocked.selector, address(lockToken)));
        vm.prank(user);
        bridge.requestERC20Transfer(address(lockToken), recipient, 1, "");

        // The token's own revert reason is carried in TokenCallFailed.
        bytes memory reason =
            abi.encodeWithSelector(TestToken.InsufficientAllowance.selector, address(bridge), uint256(0), uint256(1));
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenCallFailed.selector, address(mintToken), reason));
        vm.prank(stranger);
        bridge.requestERC20Transfer(address(mintToken), recipient, 1, "");
        assertEq(bridge.requestNonce(), 0, "no request created");
    }

    function test_feeOnTransferToken_rejected() public {
        FeeOnTransferToken fot = new FeeOnTransferToken();
        vm.prank(owner);
        bridge.registerTokenPair(address(fot), makeAddr("remote fot"), 0);
        fot.mint(user, 100e18);
        vm.startPrank(user);
        fot.approve(address(bridge), 100e18);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TransferAmountMismatch.selector, 100e18, 99e18));
        bridge.requestERC20Transfer(address(fot), recipient, 100e18, "");
        vm.stopPrank();
        assertEq(fot.balanceOf(user), 100e18, "nothing moved");
        assertEq(bridge.requestNonce(), 0, "no request created");
    }

    function test_noReturnDataToken_request() public {
        NoReturnToken token = new NoReturnToken();
        vm.prank(owner);
        bridge.registerTokenPair(address(token), makeAddr("remote no-return token"), 0);
        token.mint(user, 5e18);
        vm.startPrank(user);
        token.approve(address(bridge), 5e18);
        bridge.requestERC20Transfer(address(token), recipient, 5e18, "");
        vm.stopPrank();
        assertEq(token.balanceOf(address(bridge)), 5e18, "locked");
        assertEq(bridge.requestNonce(), 1, "request created");
    }

    function test_transferCap() public {
        vm.startPrank(owner);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.TransferCapChanged(address(0), 1 ether);
        bridge.setTransferCap(address(0), 1 ether);
        bridge.setTransferCap(address(lockToken), 5e18);
        vm.stopPrank();
        assertEq(bridge.transferCap(address(0)), 1 ether, "native cap");

        vm.startPrank(user);
        bridge.requestNativeTransfer{value: 1 ether}(recipient, "");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AmountAboveCap.selector, 1 ether + 1, 1 ether));
        bridge.requestNativeTransfer{value: 1 ether + 1}(recipient, "");
        bridge.requestERC20Transfer(address(lockToken), recipient, 5e18, "");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AmountAboveCap.selector, 5e18 + 1, 5e18));
        bridge.requestERC20Transfer(address(lockToken), recipient, 5e18 + 1, "");
        // Other tokens are not capped.
        bridge.requestERC20Transfer(address(mintToken), recipient, 900e6, "");
        vm.stopPrank();
        assertEq(bridge.requestNonce(), 3, "three accepted");
    }

    function test_rateLimit_tokenBucketRefills() public {
        vm.expectEmit(address(bridge));
        emit IBridgeCore.RateLimitChanged(address(0), 10 ether, 1 ether);
        vm.prank(owner);
        bridge.setRateLimit(address(0), 10 ether, 1 ether);
        _assertAvailable(address(0), 10 ether);

        vm.startPrank(user);
        bridge.requestNativeTransfer{value: 6 ether}(recipient, "");
        _assertAvailable(address(0), 4 ether);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.RateLimited.selector, address(0), 5 ether, 4 ether));
        bridge.requestNativeTransfer{value: 5 ether}(recipient, "");

        vm.warp(block.timestamp + 1);
        _assertAvailable(address(0), 5 ether);
        bridge.requestNativeTransfer{value: 5 ether}(recipient, "");
        _assertAvailable(address(0), 0);

        vm.warp(block.timestamp + 1_000);
        _assertAvailable(address(0), 10 ether); // capped at capacity
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.RateLimited.selector, address(0), 10 ether + 1, 10 ether));
        bridge.requestNativeTransfer{value: 10 ether + 1}(recipient, "");

        // Tokens have their own bucket.
        bridge.requestERC20Transfer(address(lockToken), recipient, 500e18, "");
        vm.stopPrank();

        vm.prank(owner);
        bridge.setRateLimit(address(0), 0, 0);
        _assertAvailable(address(0), type(uint256).max);
        vm.prank(user);
        bridge.requestNativeTransfer{value: 50 ether}(recipient, "");
        assertEq(bridge.requestNonce(), 4, "four accepted");
    }

    function test_requestsAndHandles_refusedUntilCounterpartSet() public {
        Bridge fresh = _newBridge(owner, _operators(), 2);
        vm.expectRevert(IBridgeCore.CounterpartNotSet.selector);
        vm.prank(user);
        fresh.requestNativeTransfer{value: 1 ether}(recipient, "");

        vm.expectRevert(IBridgeCore.CounterpartNotSet.selector);
        vm.prank(op1);
        fresh.handleValueTransfer(_native(0, 1 ether));

        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](1);
        rs[0] = _native(0, 1 ether);
        vm.expectRevert(IBridgeCore.CounterpartNotSet.selector);
        vm.prank(op1);
        fresh.handleValueTransfers(rs);
        assertEq(fresh.requestNonce(), 0, "nothing requested");
    }

    function _setFee(address token, uint256 amount) private {
        vm.startPrank(owner);
        bridge.setFeeReceiver(feeSink);
        bridge.setFee(token, amount);
        vm.stopPrank();
    }

    function _assertAvailable(address token, uint256 expected) private view {
        (,, uint256 available) = bridge.rateLimit(token);
        assertEq(available, expected, "bucket available");
    }
}

/// @dev Construction, administration, roles and pausing.
contract BridgeAdminTest is BridgeFixture {
    address internal pauser = makeAddr("pauser");

    function test_constructor_setsStateAndEmits() public {
        vm.recordLogs();
        bridge = _newBridge(owner, _operators(), 2);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_count(logs, IBridgeCore.OperatorRegistered.selector), 3, "OperatorRegistered per operator");
        assertEq(_count(logs, IBridgeCore.ThresholdChanged.selector), 1, "ThresholdChanged");
        assertEq(bridge.owner(), owner, "owner");
        assertEq(bridge.threshold(), 2, "threshold");
        assertEq(bridge.operatorCount(), 3, "operators");
        assertTrue(bridge.isOperator(op1) && bridge.isOperator(op2) && bridge.isOperator(op3), "registered");
        assertEq(bridge.deployChainId(), block.chainid, "deploy chain id");
        assertEq(uint256(bridge.VERSION()), 1, "version");
        assertEq(bridge.counterpartBridge(), address(0), "no counterpart yet");
        assertFalse(bridge.paused(), "not paused");
    }

    function test_constructor_rejectsBadArguments() public {
        address[] memory ops = _operators();
        vm.expectRevert(IBridgeCore.ZeroThreshold.selector);
        new Bridge(owner, ops, 0);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ThresholdAboveOperators.selector, uint256(4), uint256(3)));
        new Bridge(owner, ops, 4);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        new Bridge(address(0), ops, 2);

        ops[1] = address(0);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        new Bridge(owner, ops, 2);
        ops[1] = op1;
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.OperatorExists.selector, op1));
        new Bridge(owner, ops, 2);

        address[] memory many = new address[](33);
        for (uint256 i = 0; i < many.length; ++i) {
            many[i] = makeAddr(string(abi.encode("operator", i)));
        }
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TooManyOperators.selector, uint256(32)));
        new Bridge(owner, many, 2);
    }

    function test_setCounterpart_onceAndNonZero() public {
        Bridge fresh = _newBridge(owner, _operators(), 2);
        vm.startPrank(owner);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        fresh.setCounterpart(SRC_CHAIN, address(0), 7);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        fresh.setCounterpart(0, srcBridge, 7);

        vm.expectEmit(address(fresh));
        emit IBridgeCore.CounterpartSet(SRC_CHAIN, srcBridge, 7);
        fresh.setCounterpart(SRC_CHAIN, srcBridge, 7);
        assertEq(fresh.recoveryBlockNumber(), 7, "recovery starts at the start block");
        (uint256 srcChainId, address src, uint256 dstChainId, address dst, uint64 version) = fresh.domain();
        assertEq(srcChainId, SRC_CHAIN, "domain src chain");
        assertEq(src, srcBridge, "domain src bridge");
        assertEq(dstChainId, block.chainid, "domain dst chain");
        assertEq(dst, address(fresh), "domain dst bridge");
        assertEq(uint256(version), 1, "domain version");

        vm.expectRevert(IBridgeCore.CounterpartAlreadySet.selector);
        fresh.setCounterpart(SRC_CHAIN + 1, stranger, 8);
        vm.stopPrank();
        assertEq(fresh.counterpartBridge(), srcBridge, "unchanged");
    }

    function test_threshold_setters() public {
        vm.startPrank(owner);
        vm.expectRevert(IBridgeCore.ZeroThreshold.selector);
        bridge.setThreshold(0);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ThresholdAboveOperators.selector, uint256(4), uint256(3)));
        bridge.setThreshold(4);

        vm.expectEmit(address(bridge));
        emit IBridgeCore.ThresholdChanged(3);
        bridge.setThreshold(3);
        assertEq(bridge.threshold(), 3, "threshold");

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ThresholdAboveOperators.selector, uint256(3), uint256(2)));
        bridge.deregisterOperator(op3);
        vm.stopPrank();
        assertTrue(bridge.isOperator(op3), "still registered");
    }

    function test_operator_setters() public {
        vm.startPrank(owner);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        bridge.registerOperator(address(0));
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.OperatorExists.selector, op1));
        bridge.registerOperator(op1);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.OperatorUnknown.selector, stranger));
        bridge.deregisterOperator(stranger);

        vm.expectEmit(address(bridge));
        emit IBridgeCore.OperatorDeregistered(op1);
        bridge.deregisterOperator(op1);
        address[] memory ops = bridge.getOperators();
        assertEq(ops.length, 2, "two left");
        assertTrue(!bridge.isOperator(op1) && bridge.isOperator(op2) && bridge.isOperator(op3), "op1 removed");
        assertTrue(ops[0] == op3 || ops[1] == op3, "op3 listed");

        for (uint160 i = 0; i < 30; ++i) {
            bridge.registerOperator(address(0x2000 + i));
        }
        assertEq(bridge.operatorCount(), 32, "full");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TooManyOperators.selector, uint256(32)));
        bridge.registerOperator(op1);
        vm.stopPrank();
    }

    function test_tokenPair_setters() public {
        TestToken other = new TestToken("Other", "OTH", 18);
        address remoteOther = makeAddr("remote other");
        vm.startPrank(owner);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        bridge.registerTokenPair(address(0), remoteOther, 0);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        bridge.registerTokenPair(address(other), address(0), 0);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotAContract.selector, stranger));
        bridge.registerTokenPair(stranger, remoteOther, 0);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.UnknownMode.selector, uint8(4)));
        bridge.registerTokenPair(address(other), remoteOther, 4);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenPairExists.selector, address(lockToken)));
        bridge.registerTokenPair(address(lockToken), remoteOther, 0);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenPairExists.selector, remoteLock));
        bridge.registerTokenPair(address(other), remoteLock, 0);

        vm.expectEmit(address(bridge));
        emit IBridgeCore.TokenPairRegistered(address(other), remoteOther, 1);
        bridge.registerTokenPair(address(other), remoteOther, 1);
        (address remote, uint8 mode, bool locked, bool registered) = bridge.tokenPair(address(other));
        assertEq(remote, remoteOther, "remote");
        assertEq(uint256(mode), 1, "mode");
        assertFalse(locked, "unlocked");
        assertTrue(registered, "registered");
        assertEq(bridge.localTokenFor(remoteOther), address(other), "reverse lookup");

        vm.expectEmit(address(bridge));
        emit IBridgeCore.TokenLockChanged(address(other), true);
        bridge.setTokenLocked(address(other), true);
        (,, locked,) = bridge.tokenPair(address(other));
        assertTrue(locked, "locked");

        vm.expectEmit(address(bridge));
        emit IBridgeCore.TokenPairDeregistered(address(other), remoteOther);
        bridge.deregisterTokenPair(address(other));
        (,,, registered) = bridge.tokenPair(address(other));
        assertFalse(registered, "deregistered");
        assertEq(bridge.localTokenFor(remoteOther), address(0), "reverse lookup cleared");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenNotRegistered.selector, address(other)));
        bridge.deregisterTokenPair(address(other));
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenNotRegistered.selector, address(other)));
        bridge.setTokenLocked(address(other), false);

        // The remote token is free again.
        bridge.registerTokenPair(address(other), remoteOther, 0);
        vm.stopPrank();
    }

    function test_fee_setters() public {
        vm.startPrank(owner);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        bridge.setFee(address(0), 1);
        bridge.setFee(address(0), 0); // a zero fee needs no receiver
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        bridge.setFeeReceiver(address(0));

        vm.expectEmit(address(bridge));
        emit IBridgeCore.FeeReceiverChanged(stranger);
        bridge.setFeeReceiver(stranger);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.FeeChanged(address(lockToken), 5);
        bridge.setFee(address(lockToken), 5);
        vm.stopPrank();
        assertEq(bridge.fee(address(lockToken)), 5, "fee");
        assertEq(bridge.feeReceiver(), stranger, "receiver");
    }

    function test_pauserRole_and_ownershipTransfer() public {
        vm.startPrank(owner);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        bridge.setPauser(address(0), true);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.PauserChanged(pauser, true);
        bridge.setPauser(pauser, true);
        vm.stopPrank();
        assertTrue(bridge.isPauser(pauser), "pauser");

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotPauser.selector, stranger));
        vm.prank(stranger);
        bridge.pause();
        vm.expectEmit(address(bridge));
        emit IBridgeCore.PausedChanged(true);
        vm.prank(pauser);
        bridge.pause();
        assertTrue(bridge.paused(), "paused by the pauser");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOwner.selector, pauser));
        vm.prank(pauser);
        bridge.unpause();

        address newOwner = makeAddr("new owner");
        vm.startPrank(owner);
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        bridge.transferOwnership(address(0));
        vm.expectEmit(address(bridge));
        emit IBridgeCore.OwnershipTransferred(owner, newOwner);
        bridge.transferOwnership(newOwner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOwner.selector, owner));
        bridge.unpause();
        vm.stopPrank();

        vm.prank(newOwner);
        bridge.unpause();
        assertFalse(bridge.paused(), "unpaused by the new owner");

        vm.prank(newOwner);
        bridge.setPauser(pauser, false);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotPauser.selector, pauser));
        vm.prank(pauser);
        bridge.pause();
    }

    function test_adminFunctions_refuseNonOwner() public {
        // An operator is no more privileged than anyone else.
        address[2] memory callers = [stranger, op1];
        for (uint256 i = 0; i < callers.length; ++i) {
            address caller = callers[i];
            bytes memory notOwner = abi.encodeWithSelector(IBridgeCore.NotOwner.selector, caller);
            vm.startPrank(caller);
            vm.expectRevert(notOwner);
            bridge.setCounterpart(1, caller, 0);
            vm.expectRevert(notOwner);
            bridge.registerOperator(caller);
            vm.expectRevert(notOwner);
            bridge.deregisterOperator(op3);
            vm.expectRevert(notOwner);
            bridge.setThreshold(1);
            vm.expectRevert(notOwner);
            bridge.registerTokenPair(address(lockToken), caller, 0);
            vm.expectRevert(notOwner);
            bridge.deregisterTokenPair(address(lockToken));
            vm.expectRevert(notOwner);
            bridge.setTokenLocked(address(lockToken), true);
            vm.expectRevert(notOwner);
            bridge.setTransferCap(address(0), 1);
            vm.expectRevert(notOwner);
            bridge.setRateLimit(address(0), 1, 1);
            vm.expectRevert(notOwner);
            bridge.setFee(address(0), 1);
            vm.expectRevert(notOwner);
            bridge.setFeeReceiver(caller);
            vm.expectRevert(notOwner);
            bridge.setPauser(caller, true);
            vm.expectRevert(notOwner);
            bridge.unpause();
            vm.expectRevert(notOwner);
            bridge.transferOwnership(caller);
            vm.stopPrank();
        }
        assertEq(bridge.owner(), owner, "owner unchanged");
        assertEq(bridge.threshold(), 2, "threshold unchanged");
        assertEq(bridge.operatorCount(), 3, "operators unchanged");
    }

    function test_pause_stopsRequestsAndHandles_unpauseRestores() public {
        // A deferred credit to show withdraw() stays open while paused.
        RejectingReceiver rejecting = new RejectingReceiver();
        IBridgeCore.Request memory deferred = _native(0, 1 ether);
        deferred.to = address(rejecting);
        _execute(deferred);

        vm.deal(user, 10 ether);
        lockToken.mint(user, 10e18);
        vm.prank(user);
        lockToken.approve(address(bridge), type(uint256).max);
        IBridgeCore.Request memory r = _native(1, 1 ether);
        _vote(op1, r);

        vm.prank(owner);
        bridge.setPauser(pauser, true);
        vm.prank(pauser);
        bridge.pause();

        vm.startPrank(user);
        vm.expectRevert(IBridgeCore.BridgePaused.selector);
        bridge.requestNativeTransfer{value: 1 ether}(recipient, "");
        vm.expectRevert(IBridgeCore.BridgePaused.selector);
        bridge.requestERC20Transfer(address(lockToken), recipient, 1e18, "");
        vm.stopPrank();
        vm.expectRevert(IBridgeCore.BridgePaused.selector);
        _vote(op2, r);
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](1);
        rs[0] = r;
        vm.expectRevert(IBridgeCore.BridgePaused.selector);
        _voteBatch(op2, rs);

        // fund() and withdraw() stay open.
        vm.prank(user);
        bridge.fund{value: 1 ether}();
        rejecting.setAccepting(true);
        rejecting.withdrawFrom(bridge);
        assertEq(address(rejecting).balance, 1 ether, "withdrawn while paused");

        vm.expectEmit(address(bridge));
        emit IBridgeCore.PausedChanged(false);
        vm.prank(owner);
        bridge.unpause();

        assertEq(_voteBatch(op2, rs), 1, "handles resume");
        assertEq(recipient.balance, 1 ether, "released");
        vm.startPrank(user);
        bridge.requestNativeTransfer{value: 1 ether}(recipient, "");
        bridge.requestERC20Transfer(address(lockToken), recipient, 1e18, "");
        vm.stopPrank();
        assertEq(bridge.requestNonce(), 2, "requests resume");
    }

    function test_fund_rejectsZero_and_plainTransfersAreRefused() public {
        vm.expectRevert(IBridgeCore.ZeroAmount.selector);
        bridge.fund();
        vm.deal(address(this), 1 ether);
        (bool ok,) = address(bridge).call{value: 1 ether}("");
        assertFalse(ok, "no receive(): liquidity comes through fund()");
        assertEq(address(bridge).balance, NATIVE_LIQUIDITY, "unchanged");
    }
}
