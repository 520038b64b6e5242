// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridgeCore} from "../src/IBridgeCore.sol";
import {BridgeFixture} from "./utils/BridgeFixture.sol";
import {Console} from "./utils/Console.sol";
import {Vm} from "./utils/Vm.sol";
import {IBridge} from "../src/IBridge.sol";
import {TestNFT} from "../src/TestNFT.sol";
import {GasPriceGriefer} from "../src/GasPriceGriefer.sol";
import {GasBurnerToken, HugeRevertToken} from "./mocks/Griefers.sol";

/// Audit NEW-H1 and NEW-L4 (2026-11-23): no recipient, token or state change between a relay's
/// estimate and its block can make a vote run out of gas.
///
/// The relay plans a vote as (bridge/src/chain/submitter.rs): the larger simulated gas of its
/// recording and executing paths, plus the margin, plus `ITEM_GAS` (`NATIVE_ITEM_GAS` for a batch of
/// native items only: the worst case of one item, which the bridge checks before every item) and
/// the lowerHandleNonce advance headroom. The
/// simulation runs at GASPRICE 0, as a node's does.
contract BridgeGasBudgetTest is BridgeFixture {
    uint256 internal constant MARGIN_PERCENT = 5;
    uint256 internal constant LOWER_ADVANCE_GAS = 32_000;

    address internal remoteNft = makeAddr("remote nft");
    TestNFT internal nft;

    function setUp() public override {
        super.setUp();
        nft = new TestNFT("Locked NFT", "LNFT");
        _registerPair(address(nft), remoteNft, 2); // ERC-721 lock/unlock
        address holder = makeAddr("nft holder");
        for (uint256 id = 1; id <= 10; ++id) {
            nft.mint(holder, id);
            vm.prank(holder);
            nft.transferFrom(holder, address(bridge), id);
        }
    }

    /// The relay's gas limit for a vote whose simulation used `used` (intrinsic gas included), of
    /// items of any kind: ITEM_GAS of headroom.
    function _relayPlan(uint256 used) internal view returns (uint256) {
        return used + (used * MARGIN_PERCENT) / 100 + bridge.ITEM_GAS() + LOWER_ADVANCE_GAS;
    }

    /// The relay's gas limit for a vote of native items only (multibridge_contracts::item_gas):
    /// NATIVE_ITEM_GAS of headroom.
    function _nativePlan(uint256 used) internal view returns (uint256) {
        return used + (used * MARGIN_PERCENT) / 100 + bridge.NATIVE_ITEM_GAS() + LOWER_ADVANCE_GAS;
    }

    /// 21000 + 4/16 gas per zero/non-zero calldata byte: what a transaction pays before the
    /// bridge's frame starts.
    function _intrinsic(bytes memory data) internal pure returns (uint256 g) {
        g = 21_000;
        for (uint256 i = 0; i < data.length; ++i) {
            g += data[i] == 0 ? 4 : 16;
        }
    }

    /// Gas `data` from `operator` uses as a transaction at GASPRICE 0 (what the relay's simulation
    /// sees), measured without keeping its effects.
    function _simulate(address operator, bytes memory data) internal returns (uint256 used) {
        uint256 snapshot = vm.snapshotState();
        vm.txGasPrice(0);
        vm.prank(operator);
        uint256 before = gasleft();
        (bool ok,) = address(bridge).call(data);
        uint256 after_ = gasleft();
        used = before - after_ + _intrinsic(data);
        require(ok, "the simulation reverted");
        vm.revertToState(snapshot);
    }

    /// Sends `data` from `operator` on chain (GASPRICE 1 gwei) with the relay's plan.
    function _sendPlanned(address operator, bytes memory data, uint256 planned) internal returns (bool ok) {
        vm.txGasPrice(1 gwei);
        vm.prank(operator);
        (ok,) = address(bridge).call{gas: planned - _intrinsic(data)}(data);
        vm.txGasPrice(0);
    }

    function _nftRequest(uint64 nonce, uint256 id, address to) internal view returns (IBridgeCore.Request memory r) {
        r = _request(nonce, 2, remoteNft, id);
        r.to = to;
    }

    /// The audit's ERC-721 scenario, turned around: the deciding vote of a transfer to a
    /// gas-price-aware recipient succeeds at the relay's plan, every time; the id is held for the
    /// recipient, who loses nothing.
    function test_gasPriceAwareNftRecipient_decidingVoteSucceedsAtThePlan() public {
        for (uint64 n = 0; n < 3; ++n) {
            GasPriceGriefer griefer = new GasPriceGriefer();
            IBridgeCore.Request memory r = _nftRequest(n, n + 1, address(griefer));
            _vote(op1, r);
            bytes memory data = abi.encodeCall(IBridge.handleValueTransfer, (r));
            uint256 planned = _relayPlan(_simulate(op2, data));
            assertTrue(_sendPlanned(op2, data, planned), "the deciding vote succeeds on chain");
            assertTrue(bridge.isHandled(n), "handled");
            assertEq(bridge.pendingERC721Withdrawal(address(nft), n + 1), address(griefer), "held for it");
            assertEq(nft.ownerOf(n + 1), address(bridge), "its hook never ran");
        }
    }

    /// The audit's native batch scenario, turned around: a batch of 64 with 3, 8 and 64
    /// gas-price-aware recipients among honest ones executes whole at the relay's plan (a native
    /// batch's: NATIVE_ITEM_GAS of headroom).
    function test_nativeBatchWithGriefers_executesWholeAtThePlan() public {
        uint64 base = 0;
        uint256[3] memory counts = [uint256(3), 8, 64];
        for (uint256 c = 0; c < counts.length; ++c) {
            IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](64);
            for (uint64 i = 0; i < 64; ++i) {
                rs[i] = _native(base + i, 1);
                if (i < counts[c]) rs[i].to = address(new GasPriceGriefer());
                else rs[i].to = address(uint160(0x10000 + base + i)); // fresh honest accounts
            }
            _voteBatch(op1, rs);
            bytes memory data = abi.encodeCall(IBridge.handleValueTransfers, (rs));
            uint256 planned = _nativePlan(_simulate(op2, data));
            vm.recordLogs();
            assertTrue(_sendPlanned(op2, data, planned), "the batch succeeds on chain");
            Vm.Log[] memory logs = vm.getRecordedLogs();
            assertEq(_count(logs, IBridgeCore.HandleValueTransfer.selector), 64, "every request executed");
            assertEq(_count(logs, IBridgeCore.HandleSkipped.selector), 0, "none skipped");
            for (uint64 i = 0; i < 64; ++i) {
                if (i < counts[c]) assertEq(bridge.pendingWithdrawal(rs[i].to), 1, "a griefer is credited");
                else assertEq(rs[i].to.balance, 1, "an honest recipient is paid");
            }
            Console.log("griefers in a batch of 64", counts[c]);
            Console.log("  planned gas limit", planned);
            base += 64;
        }
        assertEq(bridge.lowerHandleNonce(), base, "all handled in order");
    }

    /// The state every slot of a worst item is dearest in (review of 2026-11-28: the earlier
    /// scenario voted nonce 0 at threshold 2 with op2, whose slots were warm, and measured 40-60k
    /// less than this): nonces 1..4096 handled out of order and nonce 0 closed, so lowerHandleNonce
    /// sits at 2049 on a run of handled nonces the next handle advances over by the whole
    /// MAX_LOWER_ADVANCE budget; two operators registered since (op5's voted-up-to slot is fresh)
    /// and threshold 1 (the item's first vote writes its key's voters fresh and executes). The
    /// worst item is then nonce WORST_NONCE: a fresh voter word and a fresh handled-bits word.
    function _dearestState() internal {
        for (uint64 start = 1; start <= 4096; start += 64) {
            IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](64);
            for (uint64 i = 0; i < 64; ++i) {
                rs[i] = _native(start + i, 1);
            }
            _voteBatch(op1, rs);
            _voteBatch(op2, rs);
        }
        _vote(op1, _native(0, 1));
        _vote(op2, _native(0, 1));
        assertEq(bridge.lowerHandleNonce(), 2049, "one advance budget used");
        vm.startPrank(owner);
        bridge.registerOperator(op4);
        bridge.registerOperator(op5);
        bridge.setThreshold(1);
        vm.stopPrank();
    }

    address internal op4 = makeAddr("operator 4");
    address internal op5 = makeAddr("operator 5");
    uint64 internal constant WORST_NONCE = 4396;

    /// The worst case of one item fits ITEM_GAS: every slot its vote writes fresh, the largest
    /// extraData, a fresh handled-bits word with the largest lowerHandleNonce advance, an outflow
    /// bucket update and the dearest release (a token call that burns all TOKEN_RELEASE_GAS, then
    /// both credit writes). At every gas limit around the point where the item is first taken,
    /// the call either skips the item or executes it: it never runs out of gas.
    function test_itemGas_boundsTheWorstItem() public {
        (GasBurnerToken burner, address remoteBurner) = _registerBurner();
        _dearestState();
        IBridgeCore.Request memory worst = _request(WORST_NONCE, 1, remoteBurner, 1e18);
        worst.extraData = new bytes(bridge.MAX_EXTRA_DATA());
        worst.to = makeAddr("fresh recipient");
        IBridgeCore.Request[] memory one = new IBridgeCore.Request[](1);
        one[0] = worst;

        uint256 itemGas = bridge.ITEM_GAS();
        uint256 itemCost = _takenCost(op5, one, itemGas, WORST_NONCE, false);
        assertEq(bridge.lowerHandleNonce(), 4097, "the bound advanced over the whole run behind it");
        assertEq(bridge.pendingTokenWithdrawal(address(burner), worst.to), 1e18, "credited after the burn");
        Console.log("worst item, gas of the call that takes it", itemCost);
        Console.log("ITEM_GAS", itemGas);
        // The call's gas (its own overhead included) is an upper bound of the item's.
        assertTrue(itemCost + 10_000 <= itemGas, "ITEM_GAS covers the worst item with room");
    }

    /// Issue 54: the worst case of one native item fits NATIVE_ITEM_GAS — the dearest record
    /// and close (`_dearestState`), and each native path: a push
    /// to a fresh account, a credit to a contract recipient (a gas-price-aware one), and the
    /// queue's writes (an outflow limit that holds every release), the dearest. At every gas limit
    /// around the point where the item is first taken, the call either skips the item or executes
    /// it: it never runs out of gas.
    function test_nativeItemGas_boundsTheWorstNativeItem() public {
        _dearestState();
        uint256 nativeItemGas = bridge.NATIVE_ITEM_GAS();
        uint256 dearest;
        for (uint256 path = 0; path < 3; ++path) {
            uint256 snapshot = vm.snapshotState();
            IBridgeCore.Request memory worst = _native(WORST_NONCE, 1 ether);
            worst.extraData = new bytes(bridge.MAX_EXTRA_DATA());
            worst.to = path == 1 ? address(new GasPriceGriefer()) : makeAddr("fresh recipient");
            if (path == 2) {
                vm.prank(owner);
                bridge.setOutflowLimit(address(0), 0, 0, 0); // every release waits in the queue
            }
            IBridgeCore.Request[] memory one = new IBridgeCore.Request[](1);
            one[0] = worst;
            uint256 itemCost = _takenCost(op5, one, nativeItemGas, WORST_NONCE, false);
            assertEq(bridge.lowerHandleNonce(), 4097, "the bound advanced over the whole run behind it");
            if (path == 0) assertEq(worst.to.balance, 1 ether, "pushed to the fresh account");
            if (path == 1) assertEq(bridge.pendingWithdrawal(worst.to), 1 ether, "credited");
            if (path == 2) assertEq(bridge.queuedReleaseCount(), 1, "queued");
            Console.log("native path (push, credit, queue)", path);
            Console.log("  gas of the call that takes it", itemCost);
            if (itemCost > dearest) dearest = itemCost;
            vm.revertToState(snapshot);
        }
        Console.log("NATIVE_ITEM_GAS", nativeItemGas);
        // The call's gas (its own overhead included) is an upper bound of the item's.
        assertTrue(dearest + 10_000 <= nativeItemGas, "NATIVE_ITEM_GAS covers the worst native item with room");
    }

    /// Whether `operator`'s one-item batch of `nonce` was taken: recorded (`recordOnly`) or
    /// executed.
    function _taken(address operator, uint64 nonce, bool recordOnly) internal view returns (bool) {
        return recordOnly ? bridge.hasVoted(nonce, operator) : bridge.isHandled(nonce);
    }

    /// The one-item batch `one` of `nonce` sent by `operator` at every gas limit from `bound`
    /// to 40k above it: never out of gas (the item is skipped or taken), and taken within that
    /// range, and skipped just below the point it is first taken. Then sent at the plain limit,
    /// its effects kept; returns the gas of that call: the item's cost with the call's own
    /// overhead (an upper bound of the item's).
    function _takenCost(
        address operator,
        IBridgeCore.Request[] memory one,
        uint256 bound,
        uint64 nonce,
        bool recordOnly
    ) internal returns (uint256) {
        bytes memory data = abi.encodeCall(IBridge.handleValueTransfers, (one));
        uint256 firstTaken;
        for (uint256 limit = bound; limit < bound + 40_000; limit += 250) {
            uint256 snapshot = vm.snapshotState();
            vm.prank(operator);
            (bool ok,) = address(bridge).call{gas: limit}(data);
            assertTrue(ok, "never out of gas: the item is skipped or taken");
            if (_taken(operator, nonce, recordOnly) && firstTaken == 0) firstTaken = limit;
            vm.revertToState(snapshot);
        }
        assertTrue(firstTaken != 0, "the item is taken within 40k gas above its bound");
        uint256 snapshot2 = vm.snapshotState();
        vm.prank(operator);
        (bool skipped,) = address(bridge).call{gas: firstTaken - 250}(data);
        assertTrue(skipped && !_taken(operator, nonce, recordOnly), "skipped just below");
        vm.revertToState(snapshot2);
        vm.prank(operator);
        bridge.handleValueTransfers(one);
        uint256 taking = vm.lastCallGas().gasTotalUsed;
        assertTrue(_taken(operator, nonce, recordOnly), "taken at the plain limit");
        return taking;
    }

    /// The relay's gas limit for a vote it plans to only record (its committee rank is below the
    /// threshold's last: another operator's vote is expected to decide): the recording
    /// simulation plus the margin plus RECORD_GAS.
    function _recordPlan(uint256 used) internal view returns (uint256) {
        return used + (used * MARGIN_PERCENT) / 100 + bridge.RECORD_GAS();
    }

    /// Issue 54: the worst vote that only records fits RECORD_GAS — a first vote of its
    /// operator (a fresh voted-up-to slot), of a nonce in a fresh voter word, with the largest
    /// extraData. At every gas limit around the point where the item is first taken, the call
    /// either skips the item or records it: it never runs out of gas.
    function test_recordGas_boundsTheWorstRecord() public {
        IBridgeCore.Request memory worst = _native(4095, 1);
        worst.extraData = new bytes(bridge.MAX_EXTRA_DATA());
        IBridgeCore.Request[] memory one = new IBridgeCore.Request[](1);
        one[0] = worst;
        uint256 recordGas = bridge.RECORD_GAS();
        uint256 itemCost = _takenCost(op1, one, recordGas, 4095, true);
        assertTrue(bridge.hasVoted(4095, op1) && !bridge.isHandled(4095), "recorded, not executed");
        Console.log("worst record, gas of the call that takes it", itemCost);
        Console.log("RECORD_GAS", recordGas);
        assertTrue(itemCost + 10_000 <= recordGas, "RECORD_GAS covers the worst record with room");
    }

    /// Issue 54: a batch planned to record (the recording simulation plus RECORD_GAS) that lands
    /// after another operator's vote of the same requests — so it decides instead — executes the
    /// items that fit ITEM_GAS and skips the rest (GasBudgetTooLow), never running out of gas;
    /// the skipped ones, voted again at the deciding plan, all execute. Landing as planned, it
    /// records every item.
    function test_aRecordPlanThatLandsDeciding_executesWhatFitsAndSkipsTheRest() public {
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](32);
        for (uint64 i = 0; i < 32; ++i) {
            rs[i] = _native(i, 1);
            rs[i].to = address(uint160(0x20000 + i)); // fresh recipients: the dearest native release
        }
        bytes memory data = abi.encodeCall(IBridge.handleValueTransfers, (rs));
        uint256 recordPlan = _recordPlan(_simulate(op1, data));

        // As planned: op1 lands first and records all 32.
        uint256 snapshot = vm.snapshotState();
        vm.recordLogs();
        assertTrue(_sendPlanned(op1, data, recordPlan), "the recording vote succeeds");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_count(logs, IBridgeCore.VoteCast.selector), 32, "every vote recorded");
        assertEq(_count(logs, IBridgeCore.HandleSkipped.selector), 0, "none skipped");
        vm.revertToState(snapshot);

        // Out of turn: op2's vote lands first, op1's now decides with the recording plan.
        _voteBatch(op2, rs);
        vm.recordLogs();
        assertTrue(_sendPlanned(op1, data, recordPlan), "never out of gas");
        logs = vm.getRecordedLogs();
        uint256 executed = _count(logs, IBridgeCore.HandleValueTransfer.selector);
        uint256 skippedItems = _count(logs, IBridgeCore.HandleSkipped.selector);
        Console.log("recording plan", recordPlan);
        Console.log("  landing as the decider: executed", executed);
        Console.log("  skipped (GasBudgetTooLow)", skippedItems);
        assertEq(executed + skippedItems, 32, "every item executed or skipped");
        assertTrue(executed > 0 && skippedItems > 0, "what fits executes, the rest is skipped");
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] != IBridgeCore.HandleSkipped.selector) continue;
            bytes4 reason = abi.decode(logs[i].data, (bytes4));
            assertEq(reason, IBridgeCore.GasBudgetTooLow.selector, "skipped for gas only");
        }

        // The skipped ones again, at the deciding plan: all execute.
        IBridgeCore.Request[] memory rest = new IBridgeCore.Request[](skippedItems);
        for (uint64 i = 0; i < skippedItems; ++i) {
            rest[i] = rs[executed + i];
        }
        bytes memory again = abi.encodeCall(IBridge.handleValueTransfers, (rest));
        assertTrue(_sendPlanned(op1, again, _nativePlan(_simulate(op1, again))), "the second vote succeeds");
        for (uint64 i = 0; i < 32; ++i) {
            assertTrue(bridge.isHandled(i), "every request handled");
        }
    }

    /// Review of issue 54: a full batch voted after another operator voted its first half — the
    /// first half executes while ITEM_GAS is left, the rest records while RECORD_GAS is left,
    /// every item after the last one taken is skipped — never runs out of gas at any gas limit
    /// from a fifth of its recording plan up: the bridge keeps gas for the skips still to come
    /// (a record taken with RECORD_GAS left may leave under 20k, and 60 skips cost ~130k).
    function test_aHalfRacedBatch_neverRunsOutOfGasOnItsSkippedTail() public {
        for (uint256 extraBytes = 0; extraBytes <= bridge.MAX_EXTRA_DATA(); extraBytes += 1024) {
            uint256 snapshot = vm.snapshotState();
            _halfRacedBatch(extraBytes);
            vm.revertToState(snapshot);
        }
    }

    function _halfRacedBatch(uint256 extraBytes) internal {
        uint256 n = bridge.MAX_BATCH();
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](n);
        for (uint64 i = 0; i < n; ++i) {
            rs[i] = _native(i, 1);
            rs[i].to = address(uint160(0x30000 + i)); // fresh recipients: the dearest native release
            rs[i].extraData = new bytes(extraBytes); // dear records (a requester chooses this)
        }
        bytes memory data = abi.encodeCall(IBridge.handleValueTransfers, (rs));
        uint256 recordPlan = _recordPlan(_simulate(op1, data));
        IBridgeCore.Request[] memory half = new IBridgeCore.Request[](n / 2);
        for (uint64 i = 0; i < n / 2; ++i) {
            half[i] = rs[i];
        }
        _voteBatch(op2, half);
        uint256 step = recordPlan / 50;
        uint256 shortest = type(uint256).max;
        for (uint256 limit = recordPlan / 5; limit <= recordPlan; limit += step) {
            uint256 snapshot = vm.snapshotState();
            vm.recordLogs();
            vm.prank(op1);
            (bool ok,) = address(bridge).call{gas: limit}(data);
            assertTrue(ok, "never out of gas");
            Vm.Log[] memory logs = vm.getRecordedLogs();
            uint256 votes = _count(logs, IBridgeCore.VoteCast.selector);
            uint256 skippedItems = _count(logs, IBridgeCore.HandleSkipped.selector);
            assertEq(votes + skippedItems, n, "every item taken or skipped");
            if (skippedItems > 0 && limit < shortest) shortest = limit;
            vm.revertToState(snapshot);
        }
        Console.log("half-raced batch of 64, extraData bytes", extraBytes);
        Console.log("  recording plan", recordPlan);
    }

    /// A single native vote below NATIVE_ITEM_GAS is refused by name (not out of gas), and so is an execution of
    /// a queued release below RELEASE_GAS: the relay's plan always has both.
    function test_belowTheBudget_isANamedRefusal() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        bytes memory data = abi.encodeCall(IBridge.handleValueTransfer, (r));
        uint256 half = bridge.NATIVE_ITEM_GAS() / 2;
        vm.prank(op1);
        (bool ok, bytes memory ret) = address(bridge).call{gas: half}(data);
        assertFalse(ok, "refused");
        assertEq(bytes4(ret), IBridgeCore.GasBudgetTooLow.selector, "GasBudgetTooLow");

        vm.prank(owner);
        bridge.setOutflowLimit(address(0), 0, 0, 0);
        _execute(r);
        vm.warp(block.timestamp + 1 days);
        half = bridge.RELEASE_GAS() / 2;
        (ok, ret) = address(bridge).call{gas: half}(
            abi.encodeCall(IBridge.executeQueuedRelease, (uint64(0)))
        );
        assertFalse(ok, "refused");
        assertEq(bytes4(ret), IBridgeCore.GasBudgetTooLow.selector, "GasBudgetTooLow");
    }

    /// A queued release to a gas-price-aware recipient executes at the relay's plan for it (its
    /// estimate plus RELEASE_GAS): the coin is credited, the griefer's code never runs.
    function test_queuedReleaseToAGriefer_executesAtThePlan() public {
        vm.prank(owner);
        bridge.setOutflowLimit(address(0), 0, 0, 0);
        GasPriceGriefer griefer = new GasPriceGriefer();
        IBridgeCore.Request memory r = _native(0, 1 ether);
        r.to = address(griefer);
        _execute(r);
        vm.warp(block.timestamp + 1 days);
        bytes memory data = abi.encodeCall(IBridge.executeQueuedRelease, (uint64(0)));
        uint256 snapshot = vm.snapshotState();
        uint256 before = gasleft();
        (bool ok,) = address(bridge).call(data);
        uint256 after_ = gasleft();
        uint256 estimate = before - after_ + _intrinsic(data);
        assertTrue(ok, "simulated");
        vm.revertToState(snapshot);
        vm.txGasPrice(1 gwei);
        uint256 planned = estimate + bridge.RELEASE_GAS();
        (ok,) = address(bridge).call{gas: planned - _intrinsic(data)}(data);
        vm.txGasPrice(0);
        assertTrue(ok, "executed on chain");
        assertEq(bridge.pendingWithdrawal(address(griefer)), 1 ether, "credited");
    }

    /// Audit NEW-L4: a token's revert data is not copied at the vote's cost: a token that reverts
    /// with 100 KB costs the vote what one that reverts with a word costs.
    function test_releaseCopiesAtMostOneWordOfReturnData() public {
        HugeRevertToken small = new HugeRevertToken(32);
        HugeRevertToken huge = new HugeRevertToken(100_000);
        address remoteSmall = makeAddr("remote small");
        address remoteHuge = makeAddr("remote huge");
        _registerPair(address(small), remoteSmall, 0);
        _registerPair(address(huge), remoteHuge, 0);
        IBridgeCore.Request memory a = _request(0, 1, remoteSmall, 1);
        IBridgeCore.Request memory b = _request(1, 1, remoteHuge, 1);
        _vote(op1, a);
        _vote(op1, b);
        _vote(op2, a);
        uint256 gasSmall = vm.lastCallGas().gasTotalUsed;
        _vote(op2, b);
        uint256 gasHuge = vm.lastCallGas().gasTotalUsed;
        assertEq(bridge.pendingTokenWithdrawal(address(huge), recipient), 1, "credited");
        Console.log("deciding vote, token reverting with 32 bytes", gasSmall);
        Console.log("deciding vote, token reverting with 100,000 bytes", gasHuge);
        // The token pays for its own 100 KB of memory (about 28,500 gas, inside its cap); copying
        // them into the bridge's memory would cost the vote as much again.
        assertTrue(gasHuge < gasSmall + 40_000, "the 100 KB are not copied");
    }
}
