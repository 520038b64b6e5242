// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

// Audit 2026-11-26: executable evidence for the contract findings (report: audit-2026-11-26.md,
// copied from audit-2026-11-26-forge.t.sol). Run: forge test --match-contract Audit20261126Test -vv
// F1 = A3-M1, F2 = A3-L2, F3 = A3-L1, F4 = A3-L8, F5 = A3-I1.
//
// F1, F2 and F3 passed on the audited bridge (b2d13eb) as proofs of the findings; after the
// fixes they are inverted (and renamed; each names the audit's test): the settle of F1's genuine
// request pays the user once, F2's settle is refused, F3's far attested forgery is skipped and the
// vote window still binds. F4 stays a measurement (A3-L8 is open). F5 pins a documented, accepted
// behaviour (A3-I1, SECURITY.md).

import {IBridgeCore} from "../src/IBridgeCore.sol";
import {BridgeFixture} from "./utils/BridgeFixture.sol";
import {Console} from "./utils/Console.sol";
import {Vm} from "./utils/Vm.sol";
import {IBridge} from "../src/IBridge.sol";

library Log2 {
    address private constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

    function addr(string memory label, address v) internal view {
        (bool ok,) = CONSOLE.staticcall(abi.encodeWithSignature("log(string,address)", label, v));
        ok;
    }
}

contract Audit20261126Test is BridgeFixture {
    uint256 internal constant K1 = 0xA11CE;
    uint256 internal constant K2 = 0xB0B;
    uint256 internal constant K3 = 0xCA401;
    uint256 internal constant K4 = 0xD00D;

    address internal attacker = makeAddr("attacker");

    /// The forged request's extraData salt, ground offline so that its vote key has the genuine
    /// request's 32-bit fingerprint (AUDIT-F1): a C keccak over the 672-byte key preimage that
    /// test_F1_printGrindInputs prints, the salt in its last word (one keccak-f per try from a
    /// midstate), 16 cores, 1.3e9 tries, 54 s. It depends on the fixture's addresses (the bridge
    /// at 0x5615dEB798BB3E4dFa0139dFa1b3D433Cc23b72f, chain id 31337).
    uint64 internal constant GROUND_SALT = 1305843651; // ground in 54 s on 16 cores (2^30.3 keccaks)

    function setUp() public override {
        op1 = vm.addr(K1);
        op2 = vm.addr(K2);
        op3 = vm.addr(K3);
        super.setUp();
    }

    // ------------------------------------------------------------------ helpers

    function _sigs(bytes32 digest, uint256 a, uint256 b) internal pure returns (bytes memory) {
        (uint8 va, bytes32 ra, bytes32 sa) = vm.sign(a, digest);
        (uint8 vb, bytes32 rb, bytes32 sb) = vm.sign(b, digest);
        bytes memory x = abi.encodePacked(ra, sa, va);
        bytes memory y = abi.encodePacked(rb, sb, vb);
        return vm.addr(a) < vm.addr(b) ? abi.encodePacked(x, y) : abi.encodePacked(y, x);
    }

    function _attest(IBridgeCore.Request[] memory rs, uint256 a, uint256 b) internal returns (uint256) {
        bytes memory sigs = _sigs(bridge.attestationDigest(rs), a, b);
        return _executeAttested(attacker, rs, sigs);
    }

    function _one(IBridgeCore.Request memory r) internal pure returns (IBridgeCore.Request[] memory rs) {
        rs = new IBridgeCore.Request[](1);
        rs[0] = r;
    }

    /// A native request at any nonce (the fixture's _native derives the block from the nonce).
    function _nativeAt(uint64 nonce) internal view returns (IBridgeCore.Request memory r) {
        r = _native(0, 1);
        r.nonce = nonce;
        r.srcBlockNumber = 5_000;
    }

    function _fp(bytes32 key) internal pure returns (uint256) {
        return (uint256(key) & 0xffffffff) | 1;
    }

    /// The genuine request at nonce 0 (a user's 50-coin transfer, requested on the source and
    /// not yet executed) and the forged twin a compromised quorum executes first.
    function _genuine() internal view returns (IBridgeCore.Request memory r) {
        r = _native(0, 50 ether);
    }

    function _forged(uint64 salt) internal view returns (IBridgeCore.Request memory r) {
        r = _native(0, 50 ether);
        r.to = attacker;
        r.extraData = abi.encodePacked(bytes32(uint256(salt))); // any 32 bytes the forger likes
    }

    /// Prints what the offline grinder needs (run once with -vv): the key preimage of the
    /// forged request with srcLogIndex 0 and the genuine key.
    function test_F1_printGrindInputs() public view {
        IBridgeCore.Request memory f = _forged(0);
        bytes memory pre = abi.encode(SRC_CHAIN, srcBridge, block.chainid, address(bridge), uint64(1), f);
        assertEq(keccak256(pre), bridge.voteKey(f), "preimage is the vote key's");
        Console.log("preimage bytes", pre.length);
        for (uint256 i = 0; i < pre.length / 32; ++i) {
            uint256 w;
            assembly ("memory-safe") {
                w := mload(add(add(pre, 32), mul(i, 32)))
            }
            Console.log("word", w);
        }
        Console.log("forged key (salt 0)", uint256(bridge.voteKey(f)));
        Console.log("genuine key", uint256(bridge.voteKey(_genuine())));
        Log2.addr("bridge", address(bridge));
    }

    // ------------------------------------------------------------------ AUDIT-F1

    /// AUDIT-F1 (Medium, compromised quorum), inverted after the fix (the audit's
    /// test_F1_groundFingerprint_blocksSettlementOfTheGenuineRequest). On the audited bridge the
    /// 32-bit attested-key fingerprint that guards settleHandled against double pay could be
    /// ground offline (~2^31 keccaks): a quorum that forged a known in-flight request's nonce by
    /// attestation with a colliding payload made the owner's settlement of the genuine request
    /// impossible (this test expected AlreadyHandled). The bridge now records 128 bits of the
    /// executed key: the ground payload collides on the old 32 bits only, and the owner's settle
    /// of the genuine request queues it and pays the user once.
    function test_F1_groundFingerprint_noLongerBlocksSettlementOfTheGenuineRequest() public {
        IBridgeCore.Request memory genuine = _genuine();
        IBridgeCore.Request memory forged = _forged(GROUND_SALT);
        bytes32 gk = bridge.voteKey(genuine);
        bytes32 fk = bridge.voteKey(forged);
        assertTrue(gk != fk, "different payloads, different keys");
        assertEq(_fp(fk), _fp(gk), "the old 32-bit fingerprints collide (ground extraData)");
        assertTrue(uint256(fk) >> 128 != uint256(gk) >> 128, "the 128-bit fingerprints do not");

        // A compromised quorum (op1, op2) executes the forged twin at nonce 0 by attestation.
        uint256 before = attacker.balance;
        assertEq(_attest(_one(forged), K1, K2), 1, "forged executed");
        assertEq(attacker.balance - before, 50 ether, "the attacker is paid");

        // The owner settles the genuine request (the documented remedy): queued for the delay.
        vm.prank(owner);
        _ext().settleHandled(genuine, _attestedIn(genuine.nonce));
        assertEq(bridge.queuedReleaseCount(), 1, "the genuine release is queued");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadySettled.selector, uint64(0)));
        _ext().settleHandled(genuine, _attestedIn(genuine.nonce));
        assertEq(recipient.balance, 0, "held for the delay");
        vm.warp(block.timestamp + bridge.releaseDelay());
        bridge.executeQueuedRelease(0);
        assertEq(recipient.balance, 50 ether, "the user is paid once");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotQueued.selector, uint64(0)));
        bridge.executeQueuedRelease(0);
        assertEq(recipient.balance, 50 ether, "and only once");
    }

    /// Control for F1: the same forgery without the ground value is settleable.
    function test_F1_control_nonCollidingForgeryIsSettleable() public {
        IBridgeCore.Request memory genuine = _genuine();
        IBridgeCore.Request memory forged = _forged(GROUND_SALT + 1);
        assertTrue(_fp(bridge.voteKey(forged)) != _fp(bridge.voteKey(genuine)), "no collision");
        _attest(_one(forged), K1, K2);
        vm.prank(owner);
        _ext().settleHandled(genuine, _attestedIn(genuine.nonce));
        assertEq(bridge.queuedReleaseCount(), 1, "genuine queued for the delay");
    }

    // ------------------------------------------------------------------ AUDIT-F2

    /// AUDIT-F2 (Low), inverted after the fix (the audit's
    /// test_F2_settleAfterRotation_paysAGenuineExecutionTwice). On the audited bridge settleHandled refused a
    /// nonce "its genuine payload executed" only while that key still held the threshold of
    /// *current* operators: after an ordinary rotation of one of its voters the owner's settle of
    /// a genuinely executed nonce went through and the user was paid twice (20 instead of 10).
    /// The execution itself is recorded now (the key's executed bit): the settle is refused.
    function test_F2_settleAfterRotation_isRefused_noDoublePay() public {
        IBridgeCore.Request memory r = _native(0, 10 ether);
        _execute(r); // op1 + op2 vote, executes; recipient paid
        assertEq(recipient.balance, 10 ether, "paid once");
        // Rotate op1 out (a new key in, the old one out: the documented KMS rotation).
        vm.startPrank(owner);
        bridge.registerOperator(vm.addr(K4));
        bridge.deregisterOperator(op1);
        vm.stopPrank();
        assertEq(bridge.voteCount(bridge.voteKey(r)), 1, "one counting vote left");
        // The genuine payload executed: the owner's settle is refused, whoever votes now.
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _ext().settleHandled(r, _attestedIn(r.nonce));
        assertEq(bridge.queuedReleaseCount(), 0, "nothing queued");
        vm.warp(block.timestamp + bridge.releaseDelay() + 1);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotQueued.selector, uint64(0)));
        bridge.executeQueuedRelease(0);
        assertEq(recipient.balance, 10 ether, "paid once");
    }

    // ------------------------------------------------------------------ AUDIT-F3

    /// AUDIT-F3 (Low/Medium, compromised quorum), inverted after the fix (the audit's
    /// test_F3_attestedFarForgery_disablesTheVoteWindowForGood). On the audited bridge
    /// executeAttested had no window: one attested forgery at nonce 2^64-2 set upperHandleNonce
    /// to 2^64-1 for good, after which the NEW-M1 window was gone for votes too (a single
    /// operator key voted at any nonce and, once deregistered, its bit was never free again).
    /// Attested items at or above upperHandleNonce + ATTESTED_WINDOW are skipped now: the
    /// forgery executes nothing, upper stays, and the vote window still binds.
    function test_F3_attestedFarForgery_isSkipped_voteWindowStillBinds() public {
        uint64 far = type(uint64).max - 1;
        IBridgeCore.Request memory f = _nativeAt(far);
        f.to = attacker;
        vm.recordLogs();
        assertEq(_attest(_one(f), K1, K2), 0, "the far forgery is skipped, not executed");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes4[] memory reasons = _skipReasons(logs, far);
        assertEq(reasons.length, 1, "one skip");
        assertEq(reasons[0], IBridgeCore.NonceOutsideWindow.selector, "skipped outside the window");
        assertEq(uint256(bridge.upperHandleNonce()), 0, "upper does not move");
        assertFalse(bridge.isHandled(far), "not handled");
        assertEq(attacker.balance, 0, "nothing paid");

        // A single key (op3, say compromised and being rotated out) still cannot vote far ahead:
        IBridgeCore.Request memory junk = _nativeAt(far - 1);
        uint64 limit = bridge.VOTE_WINDOW(); // upper is 0
        vm.prank(op3);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NonceOutsideWindow.selector, far - 1, limit));
        bridge.handleValueTransfer(junk);
        assertFalse(bridge.hasVoted(far - 1, op3), "no far vote recorded");
        vm.startPrank(owner);
        bridge.registerOperator(vm.addr(K4));
        bridge.deregisterOperator(op3);
        vm.stopPrank();
        (uint64[32] memory freeAt,) = bridge.operatorBitsFreeAt();
        uint256 bit = 2; // op3 registered third
        assertEq(uint256(freeAt[bit]), 0, "op3's bit is free at once");
    }

    // ------------------------------------------------------------------ AUDIT-F4

    /// AUDIT-F4 (Low). An attested batch is fixed by (source block, 32-nonce window) and cannot be
    /// split; 32 maximal requests in one block need this much gas in ONE transaction (votes would
    /// split them by gas and bytes; H-1).
    function test_F4_fullWindowOfMaximalRequests_gasOfTheUnsplittableBatch() public {
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](32);
        bytes memory extra = new bytes(1024);
        for (uint256 i = 0; i < 1024; ++i) {
            extra[i] = 0xff;
        }
        for (uint64 i = 0; i < 32; ++i) {
            rs[i] = _native(i, 1);
            rs[i].to = address(uint160(0xF00000 + i));
            rs[i].extraData = extra;
            rs[i].srcBlockNumber = 2000; // one source block
        }
        bytes memory sigs = _sigs(bridge.attestationDigest(rs), K1, K2);
        bytes memory data = abi.encodeCall(IBridge.executeAttested, (rs, sigs));
        (uint256 standard, uint256 floor) = _intrinsic(data);
        vm.prank(attacker);
        uint256 g0 = gasleft();
        (bool ok,) = address(bridge).call(data);
        uint256 used = g0 - gasleft();
        assertTrue(ok, "executes with enough gas");
        Console.log("calldata bytes", data.length);
        Console.log("intrinsic gas (standard)", standard);
        Console.log("EIP-7623 floor", floor);
        Console.log("execution gas", used);
        Console.log("total one transaction needs", standard + used > floor ? standard + used : floor);
    }

    function _intrinsic(bytes memory data) internal pure returns (uint256 standard, uint256 floor) {
        uint256 zeros;
        for (uint256 i = 0; i < data.length; ++i) {
            if (data[i] == 0) ++zeros;
        }
        uint256 nonZero = data.length - zeros;
        standard = 21_000 + zeros * 4 + nonZero * 16;
        floor = 21_000 + 10 * (zeros + 4 * nonZero);
    }

    // ------------------------------------------------------------------ AUDIT-F5 (info, accepted)

    /// AUDIT-F5 (Info): documented, accepted behaviour, pinned so that a change is noticed.
    /// Attestations carry no operator epoch: a signature made by an address before its
    /// deregistration counts again once the same address is registered again (votes do not
    /// revive: audit L-3). Accepted (SECURITY.md): registering an address again is the owner's
    /// decision, and whoever holds that key can sign a fresh attestation anyway. The signed digest
    /// (attestationDigest) is deliberately unchanged.
    function test_F5_accepted_reRegisteredAddress_oldSignatureCountsAgain() public {
        IBridgeCore.Request[] memory rs = _one(_native(0, 1 ether));
        bytes memory sigs = _sigs(bridge.attestationDigest(rs), K1, K2); // signed while op1 registered
        vm.startPrank(owner);
        bridge.registerOperator(vm.addr(K4));
        bridge.deregisterOperator(op1);
        bridge.registerOperator(op1); // the same address back (a recovered key)
        vm.stopPrank();
        vm.prank(attacker);
        assertEq(bridge.executeAttested(rs, sigs), 1, "the pre-deregistration signature counts");
    }
}
