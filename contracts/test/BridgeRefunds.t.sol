// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridgeCore} from "../src/IBridgeCore.sol";
import {IBridgeExtension} from "../src/IBridgeExtension.sol";
import {BridgeExtension} from "../src/BridgeExtension.sol";
import {BridgeFixture} from "./utils/BridgeFixture.sol";
import {Vm} from "./utils/Vm.sol";
import {Bridge} from "../src/Bridge.sol";
import {TestNFT} from "../src/TestNFT.sol";
import {RejectingReceiver} from "./mocks/Receivers.sol";
import {AcceptingHolder} from "./mocks/NFTReceivers.sol";

/// @dev Issue 53: a request ends handled on the destination, or cancelled there by a threshold
/// and then refunded on the source, exactly once — never both.
contract BridgeRefundsTest is BridgeFixture {
    uint256 internal constant K1 = 0xA11CE;
    uint256 internal constant K2 = 0xB0B;
    uint256 internal constant K3 = 0xCA401;
    uint256 internal constant K_STRANGER = 0x5757;
    /// The chain and bridge of the destination, as seen by the source bridge under test.
    uint256 internal constant DST_CHAIN = 5;

    TestNFT internal lockNft;
    TestNFT internal mintNft;

    function setUp() public override {
        op1 = vm.addr(K1);
        op2 = vm.addr(K2);
        op3 = vm.addr(K3);
        super.setUp();
        lockNft = new TestNFT("Locked NFT", "LNFT");
        mintNft = new TestNFT("Minted NFT", "MNFT");
        mintNft.setMinter(address(bridge), true);
        _registerPair(address(lockNft), makeAddr("remote lock nft"), 2);
        _registerPair(address(mintNft), makeAddr("remote mint nft"), 3);
    }

    // ------------------------------------------------------------------ helpers

    function _ks(uint256 a, uint256 b) internal pure returns (uint256[] memory keys) {
        keys = new uint256[](2);
        keys[0] = a;
        keys[1] = b;
    }

    /// @dev Signatures of `keys` over `digest`, ascending by signer.
    function _sign(bytes32 digest, uint256[] memory keys) internal pure returns (bytes memory) {
        return _signFor(digest, digest, keys);
    }

    /// @dev Signatures of `keys` over `signed`, ordered by the address each recovers to under
    /// `verified` (the digest the bridge computes): only the digest can make them fail.
    function _signFor(bytes32 signed, bytes32 verified, uint256[] memory keys) internal pure returns (bytes memory out) {
        bytes[] memory sigs = new bytes[](keys.length);
        address[] memory who = new address[](keys.length);
        for (uint256 i = 0; i < keys.length; ++i) {
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(keys[i], signed);
            sigs[i] = abi.encodePacked(r, s, v);
            who[i] = ecrecover(verified, v, r, s);
        }
        for (uint256 i = 0; i < keys.length; ++i) {
            for (uint256 j = i + 1; j < keys.length; ++j) {
                if (who[j] < who[i]) {
                    (who[i], who[j]) = (who[j], who[i]);
                    (sigs[i], sigs[j]) = (sigs[j], sigs[i]);
                }
            }
        }
        for (uint256 i = 0; i < keys.length; ++i) {
            out = abi.encodePacked(out, sigs[i]);
        }
    }

    function _one(IBridgeCore.Request memory r) internal pure returns (IBridgeCore.Request[] memory rs) {
        rs = new IBridgeCore.Request[](1);
        rs[0] = r;
    }

    function _cancelVote(address operator, IBridgeCore.Request memory r) internal returns (uint256 recorded) {
        vm.prank(operator);
        recorded = _ext().cancelValueTransfers(_one(r));
    }

    /// @dev Cancels `r` on the bridge under test (as destination) by op1 and op2's signatures.
    function _cancelAttested(IBridgeCore.Request memory r) internal returns (uint256) {
        IBridgeCore.Request[] memory rs = _one(r);
        return _ext().cancelAttested(rs, _sign(_ext().cancelDigest(rs), _ks(K1, K2)));
    }

    /// @dev This bridge's own request `nonce` (the bridge under test as the source).
    function _own(uint64 nonce, uint8 kind, address from, address token, uint256 amount)
        internal
        view
        returns (IBridgeCore.Request memory r)
    {
        r = _request(nonce, kind, token, amount);
        r.from = from;
        r.srcChainId = block.chainid;
        r.srcBridge = address(bridge);
    }

    function _refundSigs(IBridgeCore.Request memory r) internal view returns (bytes memory) {
        return _sign(_ext().refundDigest(r), _ks(K1, K2));
    }

    function _requestNative(address from, uint256 amount) internal returns (IBridgeCore.Request memory) {
        vm.deal(from, amount);
        vm.prank(from);
        uint64 nonce = bridge.requestNativeTransfer{value: amount}(recipient, "");
        return _own(nonce, 0, from, address(0), amount);
    }

    // ------------------------------------------------------------------ cancels (destination side)

    function test_cancelVotes_atThreshold_closeTheNonceWithoutReleasing() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        bytes32 key = bridge.voteKey(r);
        assertEq(_cancelVote(op1, r), 1, "first cancel vote recorded");
        assertFalse(bridge.isHandled(0), "one vote closes nothing");
        assertEq(_ext().cancelVoteCount(key), 1, "one cancel vote");
        vm.recordLogs();
        _cancelVote(op2, r);
        assertTrue(bridge.isHandled(0), "closed at the threshold");
        assertEq(bridge.lowerHandleNonce(), 1, "lowerHandleNonce moved as for a handle");
        assertEq(_ext().cancelledKey(0), key, "the cancelled key is recorded");
        assertEq(recipient.balance, 0, "nothing released");
        assertEq(_count(vm.getRecordedLogs(), IBridgeCore.HandleCancelled.selector), 1, "one HandleCancelled");
    }

    function test_cancelledNonce_neverExecutes_byVotesOrAttestation() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        _vote(op1, r); // a handle vote before the cancel
        _cancelVote(op2, r);
        _cancelVote(op1, r); // an operator that voted to handle may vote to cancel
        assertEq(_ext().cancelledKey(0), bridge.voteKey(r), "cancelled");
        vm.prank(op3);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        bridge.handleValueTransfer(r);
        assertEq(bridge.executeHandles(_one(r)), 0, "executeHandles executes nothing");
        assertEq(recipient.balance, 0, "nothing released");
    }

    function test_executedNonce_neverCancels() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        _execute(r);
        assertEq(recipient.balance, 1 ether, "released");
        vm.recordLogs();
        assertEq(_cancelVote(op3, r), 0, "a cancel vote on a handled nonce is skipped");
        bytes4[] memory reasons = _skipReasons(vm.getRecordedLogs(), 0);
        assertEq(reasons.length, 1, "one skip");
        assertEq(reasons[0], IBridgeCore.AlreadyHandled.selector, "skipped as handled");
        assertEq(_cancelAttested(r), 0, "an attested cancel of a handled nonce cancels nothing");
        assertEq(_ext().cancelledKey(0), bytes32(0), "not cancelled");
    }

    function test_attestedCancel_thenAttestedExecution_isSkipped() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        assertEq(_cancelAttested(r), 1, "cancelled by attestation");
        IBridgeCore.Request[] memory rs = _one(r);
        uint256 executed = bridge.executeAttested(rs, _sign(bridge.attestationDigest(rs), _ks(K1, K2)));
        assertEq(executed, 0, "an attested execution of a cancelled nonce executes nothing");
        assertEq(recipient.balance, 0, "nothing released");
    }

    function test_handleAttestation_isNoCancel_andCancelIsNoHandle() public {
        IBridgeCore.Request[] memory rs = _one(_native(0, 1 ether));
        bytes memory handleSigs = _signFor(bridge.attestationDigest(rs), _ext().cancelDigest(rs), _ks(K1, K2));
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotEnoughAttestations.selector, 0, 2));
        _ext().cancelAttested(rs, handleSigs);
        bytes memory cancelSigs = _signFor(_ext().cancelDigest(rs), bridge.attestationDigest(rs), _ks(K1, K2));
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotEnoughAttestations.selector, 0, 2));
        bridge.executeAttested(rs, cancelSigs);
    }

    function test_cancelVotes_ofAnotherPayload_doNotCount() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        IBridgeCore.Request memory other = _native(0, 2 ether);
        _cancelVote(op1, r);
        _cancelVote(op2, other);
        assertFalse(bridge.isHandled(0), "votes for different payloads are different keys");
    }

    function test_cancelVote_twice_isSkipped_andAStrangerCannotVote() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        _cancelVote(op1, r);
        assertEq(_cancelVote(op1, r), 0, "a second cancel vote of one operator is skipped");
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotOperator.selector, stranger));
        _ext().cancelValueTransfers(_one(r));
    }

    function test_deregisteredOperatorsCancelVote_countsForNothing() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        _cancelVote(op3, r);
        vm.prank(owner);
        bridge.deregisterOperator(op3);
        _cancelVote(op1, r);
        assertFalse(bridge.isHandled(0), "op3's vote left with op3");
        _cancelVote(op2, r);
        assertTrue(bridge.isHandled(0), "two registered operators cancel");
    }

    function test_cancelVotes_atALoweredThreshold_areClosedByAnyone() public {
        vm.prank(owner);
        bridge.setThreshold(3);
        IBridgeCore.Request memory r = _native(0, 1 ether);
        _cancelVote(op1, r);
        _cancelVote(op2, r);
        assertFalse(bridge.isHandled(0), "two of three is below the threshold");
        vm.recordLogs();
        assertEq(_ext().executeCancels(_one(r)), 0, "nothing to close yet");
        assertEq(_skipReasons(vm.getRecordedLogs(), 0)[0], IBridgeCore.BelowThreshold.selector, "below");
        vm.prank(owner);
        bridge.setThreshold(2);
        vm.prank(stranger);
        assertEq(_ext().executeCancels(_one(r)), 1, "closed by anyone once the key holds the threshold");
        assertEq(_ext().cancelledKey(0), bridge.voteKey(r), "cancelled");
        assertEq(_ext().executeCancels(_one(r)), 0, "once");
        assertEq(recipient.balance, 0, "nothing released");
    }

    function test_cancel_goesOnWhilePaused_theRefundWaitsForTheSourcesOwnPause() public {
        vm.prank(owner);
        bridge.pause();
        IBridgeCore.Request memory r = _native(0, 1 ether);
        vm.prank(op1);
        assertEq(_ext().cancelValueTransfers(_one(r)), 1, "a pause stops value leaving, not a cancel");
        vm.prank(op2);
        _ext().cancelValueTransfers(_one(r));
        assertEq(_ext().cancelledKey(0), bridge.voteKey(r), "cancelled while paused");
        assertEq(recipient.balance, 0, "nothing released");
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.BridgePaused.selector));
        bridge.executeHandles(_one(r));
    }

    function test_settleHandled_refusesACancelledGenuineRequest() public {
        IBridgeCore.Request memory r = _native(0, 1 ether);
        _cancelAttested(r);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _ext().settleHandled(r, _attestedIn(r.nonce));
    }

    function test_extension_calledDirectly_refuses() public {
        IBridgeExtension direct = IBridgeExtension(bridge.extension());
        vm.prank(op1);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotDelegated.selector));
        direct.cancelValueTransfers(_one(_native(0, 1 ether)));
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotDelegated.selector));
        direct.refund(_own(0, 0, user, address(0), 1), "");
    }

    function test_unknownSelector_reverts() public {
        (bool ok,) = address(bridge).call(abi.encodeWithSignature("noSuchFunction()"));
        assertFalse(ok, "an unknown call reverts");
        (ok,) = address(bridge).call{value: 1}("");
        assertFalse(ok, "plain coin is refused (fund() takes it)");
    }

    // ------------------------------------------------------------------ refunds (source side)

    function test_refund_native_paysTheRequesterOnce_keepingTheFee() public {
        vm.startPrank(owner);
        bridge.setFeeReceiver(makeAddr("fee receiver"));
        bridge.setFee(address(0), 0.1 ether);
        vm.stopPrank();
        vm.deal(user, 1.1 ether);
        vm.prank(user);
        uint64 nonce = bridge.requestNativeTransfer{value: 1.1 ether}(recipient, "");
        IBridgeCore.Request memory r = _own(nonce, 0, user, address(0), 1 ether);
        r.fee = 0.1 ether;
        bytes memory sigs = _refundSigs(r);
        vm.recordLogs();
        vm.prank(stranger); // anyone may submit it
        _ext().refund(r, sigs);
        assertEq(user.balance, 1 ether, "the amount is back; the fee is not");
        assertTrue(_ext().isRefunded(nonce), "marked refunded");
        assertEq(_count(vm.getRecordedLogs(), IBridgeCore.Refunded.selector), 1, "one Refunded");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyRefunded.selector, nonce));
        _ext().refund(r, sigs);
    }

    function test_refund_withoutSignatures_orWithTooFew_isRefused() public {
        IBridgeCore.Request memory r = _requestNative(user, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotEnoughAttestations.selector, 0, 2));
        _ext().refund(r, "");
        uint256[] memory one = new uint256[](1);
        one[0] = K1;
        bytes memory sigs = _sign(_ext().refundDigest(r), one);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotEnoughAttestations.selector, 1, 2));
        _ext().refund(r, sigs);
        assertEq(user.balance, 0, "nothing refunded");
    }

    function test_refund_ofANonceNeverRequested_orAnotherSource_isRefused() public {
        IBridgeCore.Request memory r = _own(0, 0, user, address(0), 1 ether);
        bytes memory sigs = _refundSigs(r);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotRequested.selector, uint64(0)));
        _ext().refund(r, sigs);
        IBridgeCore.Request memory req = _requestNative(user, 1 ether);
        req.srcBridge = srcBridge;
        sigs = _refundSigs(req);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotRequested.selector, uint64(0)));
        _ext().refund(req, sigs);
    }

    function test_refund_signaturesOfAnotherDomain_laneOrVersion_areWorthless() public {
        IBridgeCore.Request memory r = _requestNative(user, 1 ether);
        bytes32 key = keccak256(abi.encode(block.chainid, address(bridge), DST_CHAIN, srcBridge, uint64(1), r));
        // The same typed data under another domain: another version, the counterpart's chain
        // and bridge (the other lane's domain), another deployment.
        bytes32[3] memory wrong = [
            _refundDigestOf("2", block.chainid, address(bridge), DST_CHAIN, srcBridge, key),
            _refundDigestOf("1", DST_CHAIN, srcBridge, block.chainid, address(bridge), key),
            _refundDigestOf("1", block.chainid, makeAddr("another bridge"), DST_CHAIN, srcBridge, key)
        ];
        for (uint256 i = 0; i < wrong.length; ++i) {
            bytes memory sigs = _signFor(wrong[i], _ext().refundDigest(r), _ks(K1, K2));
            vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotEnoughAttestations.selector, 0, 2));
            _ext().refund(r, sigs);
        }
        // The formula pinned: the right domain is what the bridge computes.
        assertEq(
            _refundDigestOf("1", block.chainid, address(bridge), DST_CHAIN, srcBridge, key),
            _ext().refundDigest(r),
            "refundDigest formula"
        );
        // A cancel attestation or a handle attestation of the same request is no refund.
        bytes memory cancelSigs = _signFor(_ext().cancelDigest(_one(r)), _ext().refundDigest(r), _ks(K1, K2));
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotEnoughAttestations.selector, 0, 2));
        _ext().refund(r, cancelSigs);
        _ext().refund(r, _refundSigs(r));
        assertEq(user.balance, 1 ether, "the right signatures refund");
    }

    function _refundDigestOf(
        string memory version,
        uint256 chainId,
        address verifying,
        uint256 counterpartChain,
        address counterpartBridge_,
        bytes32 key
    ) internal pure returns (bytes32) {
        bytes32 separator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)"),
                keccak256("multibridge"),
                keccak256(bytes(version)),
                chainId,
                verifying,
                keccak256(abi.encode(counterpartChain, counterpartBridge_))
            )
        );
        bytes32 message = keccak256(abi.encode(keccak256("CancelledRequest(bytes32 voteKey)"), key));
        return keccak256(abi.encodePacked("\x19\x01", separator, message));
    }

    function test_refund_aRemovedOperatorsSignature_isWorthless() public {
        IBridgeCore.Request memory r = _requestNative(user, 1 ether);
        vm.prank(owner);
        bridge.deregisterOperator(op2);
        bytes memory sigs = _refundSigs(r); // K1 and K2: op2 is no operator now
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.NotEnoughAttestations.selector, 1, 2));
        _ext().refund(r, sigs);
        _ext().refund(r, _sign(_ext().refundDigest(r), _ks(K1, K3)));
        assertEq(user.balance, 1 ether, "two current operators refund");
    }

    function test_refund_isRefusedWhilePaused() public {
        IBridgeCore.Request memory r = _requestNative(user, 1 ether);
        bytes memory sigs = _refundSigs(r);
        vm.prank(owner);
        bridge.pause();
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.BridgePaused.selector));
        _ext().refund(r, sigs);
    }

    function test_refund_erc20Lock_unlocksToTheRequester() public {
        lockToken.mint(user, 5e18);
        vm.startPrank(user);
        lockToken.approve(address(bridge), 5e18);
        uint64 nonce = bridge.requestERC20Transfer(address(lockToken), recipient, 5e18, "");
        vm.stopPrank();
        IBridgeCore.Request memory r = _own(nonce, 1, user, address(lockToken), 5e18);
        _ext().refund(r, _refundSigs(r));
        assertEq(lockToken.balanceOf(user), 5e18, "unlocked back");
    }

    function test_refund_erc20Burn_mintsToTheRequester() public {
        mintToken.mint(user, 7e6);
        vm.startPrank(user);
        mintToken.approve(address(bridge), 7e6);
        uint64 nonce = bridge.requestERC20Transfer(address(mintToken), recipient, 7e6, "");
        vm.stopPrank();
        assertEq(mintToken.balanceOf(user), 0, "burned on request");
        IBridgeCore.Request memory r = _own(nonce, 1, user, address(mintToken), 7e6);
        _ext().refund(r, _refundSigs(r));
        assertEq(mintToken.balanceOf(user), 7e6, "minted back");
    }

    function test_refund_erc721Lock_and_burn_giveTheIdBack() public {
        lockNft.mint(user, 42);
        vm.prank(address(bridge));
        mintNft.mint(user, 7);
        vm.startPrank(user);
        lockNft.approve(address(bridge), 42);
        uint64 a = bridge.requestERC721Transfer(address(lockNft), recipient, 42, "");
        mintNft.approve(address(bridge), 7);
        uint64 b = bridge.requestERC721Transfer(address(mintNft), recipient, 7, "");
        vm.stopPrank();
        IBridgeCore.Request memory ra = _own(a, 2, user, address(lockNft), 42);
        IBridgeCore.Request memory rb = _own(b, 2, user, address(mintNft), 7);
        _ext().refund(ra, _refundSigs(ra));
        _ext().refund(rb, _refundSigs(rb));
        assertEq(lockNft.ownerOf(42), user, "locked id back");
        assertEq(mintNft.ownerOf(7), user, "burned id minted back");
    }

    function test_refund_toAContractRequester_isACredit_notACall() public {
        RejectingReceiver requester = new RejectingReceiver();
        IBridgeCore.Request memory r = _requestNative(address(requester), 1 ether);
        _ext().refund(r, _refundSigs(r));
        assertEq(address(requester).balance, 0, "no call into the requester");
        assertEq(bridge.pendingWithdrawal(address(requester)), 1 ether, "credited to withdraw");

        // A contract that accepts ERC-721 safe transfers is credited all the same: no code of
        // the requester runs in a refund.
        AcceptingHolder holder = new AcceptingHolder();
        lockNft.mint(address(holder), 9);
        vm.startPrank(address(holder));
        lockNft.approve(address(bridge), 9);
        uint64 nonce = bridge.requestERC721Transfer(address(lockNft), recipient, 9, "");
        vm.stopPrank();
        IBridgeCore.Request memory rn = _own(nonce, 2, address(holder), address(lockNft), 9);
        _ext().refund(rn, _refundSigs(rn));
        assertEq(holder.received(), 1, "its hook ran for the mint only");
        assertEq(bridge.pendingERC721Withdrawal(address(lockNft), 9), address(holder), "id credited");
    }

    function test_refund_aboveTheOutflowLimit_waitsInTheQueue() public {
        IBridgeCore.Request memory r = _requestNative(user, 1 ether);
        vm.prank(owner);
        bridge.setOutflowLimit(address(0), type(uint128).max, 0, 0.5 ether); // 1 ether always waits
        _ext().refund(r, _refundSigs(r));
        assertEq(user.balance, 0, "held");
        uint64 key = _ext().refundQueueKey(r.nonce);
        assertEq(key, uint64(1) << 63, "the refund's queue key");
        (,, uint64 releaseAt,) = bridge.queuedRelease(key);
        assertTrue(releaseAt != 0, "queued");
        vm.warp(releaseAt);
        bridge.executeQueuedRelease(key);
        assertEq(user.balance, 1 ether, "paid after the delay");
    }

    function test_refund_ofAPairDeregisteredOnTheSource_waitsForItsRegistration() public {
        lockToken.mint(user, 1e18);
        vm.startPrank(user);
        lockToken.approve(address(bridge), 1e18);
        uint64 nonce = bridge.requestERC20Transfer(address(lockToken), recipient, 1e18, "");
        vm.stopPrank();
        IBridgeCore.Request memory r = _own(nonce, 1, user, address(lockToken), 1e18);
        bytes memory sigs = _refundSigs(r);
        vm.prank(owner);
        bridge.deregisterTokenPair(address(lockToken));
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenNotRegistered.selector, address(lockToken)));
        _ext().refund(r, sigs);
        assertFalse(_ext().isRefunded(nonce), "a refused refund is not spent");
        _registerPair(address(lockToken), remoteLock, 0);
        _ext().refund(r, sigs);
        assertEq(lockToken.balanceOf(user), 1e18, "refunded once the pair is back");
    }

    /// @dev The two halves together: bridge A is the source, bridge B the destination of the lane.
    function test_endToEnd_cancelOnTheDestination_thenRefundOnTheSource_exactlyOnce() public {
        Bridge src = _newBridge(owner, _operators(), 2);
        Bridge dst = _newBridge(owner, _operators(), 2);
        vm.startPrank(owner);
        src.setCounterpart(block.chainid, address(dst), 0);
        dst.setCounterpart(block.chainid, address(src), 0);
        src.setOutflowLimit(address(0), type(uint128).max, 0, 0);
        vm.stopPrank();
        bridge = src; // the helpers act on the source
        IBridgeCore.Request memory r = _requestNative(user, 1 ether);
        assertEq(dst.voteKey(r), keccak256(abi.encode(block.chainid, address(bridge), block.chainid, address(dst), uint64(1), r)), "key");
        IBridgeExtension dstExt = IBridgeExtension(address(dst));
        vm.prank(op1);
        dstExt.cancelValueTransfers(_one(r));
        vm.prank(op2);
        dstExt.cancelValueTransfers(_one(r));
        assertEq(dstExt.cancelledKey(r.nonce), dst.voteKey(r), "cancelled on the destination");
        // The operators sign the refund of exactly the key the destination cancelled.
        _ext().refund(r, _refundSigs(r));
        assertEq(user.balance, 1 ether, "refunded on the source");
        vm.prank(op3);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, r.nonce));
        dst.handleValueTransfer(r);
    }
}
