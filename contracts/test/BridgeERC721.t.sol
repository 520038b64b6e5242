// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridgeCore} from "../src/IBridgeCore.sol";
import {BridgeFixture} from "./utils/BridgeFixture.sol";
import {Vm} from "./utils/Vm.sol";
import {Bridge} from "../src/Bridge.sol";
import {IBridge} from "../src/IBridge.sol";
import {TestNFT} from "../src/TestNFT.sol";
import {AcceptingHolder, NoHookHolder, ReentrantHolder} from "./mocks/NFTReceivers.sol";

/// @dev ERC-721 requests (approve + request, safeTransferFrom with data) and handles (lock/unlock
/// and burn/mint, the same id arriving, deliveries that fail, queued releases, limits).
contract BridgeERC721Test is BridgeFixture {
    uint8 internal constant KIND_ERC721 = 2;
    uint8 internal constant NFT_LOCK = 2;
    uint8 internal constant NFT_BURN = 3;

    address internal remoteLockNft = makeAddr("remote lock nft");
    address internal remoteMintNft = makeAddr("remote mint nft");
    TestNFT internal lockNft;
    TestNFT internal mintNft;

    function setUp() public override {
        super.setUp();
        lockNft = new TestNFT("Locked NFT", "LNFT");
        mintNft = new TestNFT("Minted NFT", "MNFT");
        mintNft.setMinter(address(bridge), true);
        _registerPair(address(lockNft), remoteLockNft, NFT_LOCK);
        _registerPair(address(mintNft), remoteMintNft, NFT_BURN);
    }

    // ------------------------------------------------------------------ requests

    function test_request_lockMode_holdsTheIdAndEmitsIt() public {
        lockNft.mint(user, 42);
        vm.startPrank(user);
        lockNft.approve(address(bridge), 42);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.RequestValueTransfer(0, KIND_ERC721, user, recipient, address(lockNft), 42, 0, hex"beef");
        uint64 nonce = bridge.requestERC721Transfer(address(lockNft), recipient, 42, hex"beef");
        vm.stopPrank();
        assertEq(nonce, 0, "first nonce");
        assertEq(lockNft.ownerOf(42), address(bridge), "locked in the bridge");
        assertEq(bridge.requestNonce(), 1, "nonce taken");
    }

    function test_request_burnMode_burnsTheId() public {
        vm.prank(address(bridge));
        mintNft.mint(user, 7);
        vm.startPrank(user);
        mintNft.setApprovalForAll(address(bridge), true);
        bridge.requestERC721Transfer(address(mintNft), recipient, 7, "");
        vm.stopPrank();
        assertFalse(mintNft.exists(7), "burned");
        assertEq(mintNft.balanceOf(user), 0, "user holds nothing");
    }

    function test_request_safeTransferWithData_needsNoApproval() public {
        lockNft.mint(user, 5);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.RequestValueTransfer(0, KIND_ERC721, user, recipient, address(lockNft), 5, 0, hex"01");
        vm.prank(user);
        lockNft.safeTransferFrom(user, address(bridge), 5, abi.encode(recipient, hex"01"));
        assertEq(lockNft.ownerOf(5), address(bridge), "locked");

        vm.prank(address(bridge));
        mintNft.mint(user, 6);
        vm.prank(user);
        mintNft.safeTransferFrom(user, address(bridge), 6, abi.encode(recipient, bytes("")));
        assertFalse(mintNft.exists(6), "burn mode burns what arrives");
        assertEq(bridge.requestNonce(), 2, "two requests");
    }

    function test_request_safeTransferRejections_keepTheToken() public {
        lockNft.mint(user, 1);
        vm.startPrank(user);
        // No data: nobody to send it to.
        vm.expectRevert(IBridgeCore.MissingTransferData.selector);
        lockNft.safeTransferFrom(user, address(bridge), 1);
        // A zero recipient.
        vm.expectRevert(IBridgeCore.ZeroAddress.selector);
        lockNft.safeTransferFrom(user, address(bridge), 1, abi.encode(address(0), bytes("")));
        vm.stopPrank();

        // A fee cannot be paid with a safe transfer.
        vm.startPrank(owner);
        bridge.setFeeReceiver(owner);
        bridge.setFee(address(lockNft), 1 gwei);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.InsufficientFee.selector, 1 gwei, 0));
        vm.prank(user);
        lockNft.safeTransferFrom(user, address(bridge), 1, abi.encode(recipient, bytes("")));

        // An unregistered collection.
        TestNFT stray = new TestNFT("Stray", "STR");
        stray.mint(user, 1);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenNotRegistered.selector, address(stray)));
        vm.prank(user);
        stray.safeTransferFrom(user, address(bridge), 1, abi.encode(recipient, bytes("")));

        // Paused.
        vm.prank(owner);
        bridge.setFee(address(lockNft), 0);
        vm.prank(owner);
        bridge.pause();
        vm.expectRevert(IBridgeCore.BridgePaused.selector);
        vm.prank(user);
        lockNft.safeTransferFrom(user, address(bridge), 1, abi.encode(recipient, bytes("")));

        assertEq(lockNft.ownerOf(1), user, "every refusal left the token with its holder");
        assertEq(stray.ownerOf(1), user, "stray token kept");
        assertEq(bridge.requestNonce(), 0, "no request");
    }

    function test_request_kindMismatch_isNamed() public {
        lockNft.mint(user, 3);
        lockToken.mint(user, 10);
        vm.startPrank(user);
        lockNft.approve(address(bridge), 3);
        lockToken.approve(address(bridge), 10);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenKindMismatch.selector, address(lockNft), KIND_ERC721));
        bridge.requestERC20Transfer(address(lockNft), recipient, 3, "");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenKindMismatch.selector, address(lockToken), uint8(1)));
        bridge.requestERC721Transfer(address(lockToken), recipient, 10, "");
        vm.stopPrank();
        assertEq(lockNft.ownerOf(3), user, "nft kept");
        assertEq(lockToken.balanceOf(user), 10, "tokens kept");
    }

    function test_request_feeAndRateLimitCountTokens() public {
        vm.startPrank(owner);
        bridge.setFeeReceiver(owner);
        bridge.setFee(address(lockNft), 1 gwei);
        bridge.setRateLimit(address(lockNft), 2, 0); // two NFTs, whatever their ids
        vm.stopPrank();
        for (uint256 id = 1_000_000; id < 1_000_003; ++id) {
            lockNft.mint(user, id);
        }
        vm.deal(user, 1 ether);
        vm.startPrank(user);
        lockNft.setApprovalForAll(address(bridge), true);
        bridge.requestERC721Transfer{value: 5 gwei}(address(lockNft), recipient, 1_000_000, "");
        bridge.requestERC721Transfer{value: 1 gwei}(address(lockNft), recipient, 1_000_001, "");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.RateLimited.selector, address(lockNft), 1, 0));
        bridge.requestERC721Transfer{value: 1 gwei}(address(lockNft), recipient, 1_000_002, "");
        vm.stopPrank();
        assertEq(owner.balance, 2 gwei, "fee per request");
        assertEq(user.balance, 1 ether - 2 gwei, "excess refunded");
    }

    // ------------------------------------------------------------------ handles

    function test_handle_lockMode_unlocksTheSameIdOnce() public {
        _holdInBridge(99);
        IBridgeCore.Request memory r = _request(0, KIND_ERC721, remoteLockNft, 99);
        bytes32 key = bridge.voteKey(r);
        _vote(op1, r);
        assertEq(lockNft.ownerOf(99), address(bridge), "held after one vote");
        vm.expectEmit(address(bridge));
        emit IBridgeCore.HandleValueTransfer(0, _txHash(0), recipient, KIND_ERC721, address(lockNft), 99, key, 1);
        _vote(op2, r);
        assertEq(lockNft.ownerOf(99), recipient, "unlocked to the recipient");
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.AlreadyHandled.selector, uint64(0)));
        _vote(op3, r);
    }

    function test_handle_burnMode_mintsTheSameId() public {
        IBridgeCore.Request memory r = _request(0, KIND_ERC721, remoteMintNft, 123456789);
        _execute(r);
        assertEq(mintNft.ownerOf(123456789), recipient, "minted with the same id");
        assertEq(mintNft.balanceOf(recipient), 1, "one token");
    }

    function test_handle_idNotHeld_isInsufficientLiquidity() public {
        IBridgeCore.Request memory r = _request(0, KIND_ERC721, remoteLockNft, 8);
        _vote(op1, r);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.InsufficientLiquidity.selector, address(lockNft), 0, 8));
        _vote(op2, r);
        // Someone else holds it: still not releasable.
        lockNft.mint(stranger, 8);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.InsufficientLiquidity.selector, address(lockNft), 0, 8));
        _vote(op2, r);
        // Once the bridge holds it, the next vote executes.
        vm.prank(stranger);
        lockNft.transferFrom(stranger, address(bridge), 8);
        _vote(op2, r);
        assertEq(lockNft.ownerOf(8), recipient, "released once held");
    }

    function test_handle_kindMismatch_isNotRegistered() public {
        _holdInBridge(1);
        // An ERC-20 request naming the NFT's counterpart, and an ERC-721 request naming an
        // ERC-20's counterpart: neither has a pair of its kind here.
        IBridgeCore.Request memory asErc20 = _request(0, 1, remoteLockNft, 1);
        IBridgeCore.Request memory asNft = _request(1, KIND_ERC721, remoteLock, 1);
        _vote(op1, asErc20);
        _vote(op1, asNft);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenNotRegistered.selector, remoteLockNft));
        _vote(op2, asErc20);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.TokenNotRegistered.selector, remoteLock));
        _vote(op2, asNft);
        assertEq(lockNft.ownerOf(1), address(bridge), "nothing left the bridge");
    }

    function test_handle_batchSkipsAnIdNotHeld() public {
        _holdInBridge(1);
        IBridgeCore.Request[] memory rs = new IBridgeCore.Request[](2);
        rs[0] = _request(0, KIND_ERC721, remoteLockNft, 1);
        rs[1] = _request(1, KIND_ERC721, remoteLockNft, 2);
        _voteBatch(op1, rs);
        vm.recordLogs();
        assertEq(_voteBatch(op2, rs), 1, "only the held id executes");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_skipReasons(logs, 1)[0], IBridgeCore.InsufficientLiquidity.selector, "skipped as not held");
        assertEq(lockNft.ownerOf(1), recipient, "held id released");
    }

    function test_handle_recipientWithoutHook_isHeldForWithdrawal() public {
        NoHookHolder holder = new NoHookHolder();
        _holdInBridge(11);
        IBridgeCore.Request memory r = _request(0, KIND_ERC721, remoteLockNft, 11);
        r.to = address(holder);
        _vote(op1, r);
        vm.expectEmit(address(bridge));
        emit IBridgeCore.TokenReleaseDeferred(0, address(lockNft), address(holder), 11);
        _vote(op2, r);
        assertTrue(bridge.isHandled(0), "the nonce is closed");
        assertEq(lockNft.ownerOf(11), address(bridge), "still in the bridge");
        assertEq(bridge.pendingERC721Withdrawal(address(lockNft), 11), address(holder), "held for the recipient");

        // The held id is owed: a second request for it cannot take it.
        IBridgeCore.Request memory again = _request(1, KIND_ERC721, remoteLockNft, 11);
        _vote(op1, again);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.InsufficientLiquidity.selector, address(lockNft), 0, 11));
        _vote(op2, again);

        // Only the recipient withdraws it, to where it chooses.
        vm.expectRevert(IBridgeCore.NothingToWithdraw.selector);
        vm.prank(stranger);
        bridge.withdrawERC721(address(lockNft), 11, stranger);
        holder.withdrawFrom(bridge, address(lockNft), 11, user);
        assertEq(lockNft.ownerOf(11), user, "withdrawn to the chosen address");
        assertEq(bridge.pendingERC721Withdrawal(address(lockNft), 11), address(0), "credit spent");
        vm.expectRevert(IBridgeCore.NothingToWithdraw.selector);
        holder.withdrawFrom(bridge, address(lockNft), 11, user);
    }

    function test_handle_burnModeRecipientWithoutHook_mintsOnWithdrawal() public {
        NoHookHolder holder = new NoHookHolder();
        IBridgeCore.Request memory r = _request(0, KIND_ERC721, remoteMintNft, 12);
        r.to = address(holder);
        _execute(r);
        assertFalse(mintNft.exists(12), "the safe mint to a contract without the hook failed");
        assertEq(bridge.pendingERC721Withdrawal(address(mintNft), 12), address(holder), "held as a credit");
        holder.withdrawFrom(bridge, address(mintNft), 12, user);
        assertEq(mintNft.ownerOf(12), user, "minted on withdrawal");
    }

    /// No recipient hook runs inside a vote (audit NEW-H1): an id for a contract is held for it,
    /// and anyone's `deliver` runs the hook in a transaction of its own.
    function test_handle_acceptingContractRecipient_isHeldThenDelivered() public {
        AcceptingHolder holder = new AcceptingHolder();
        _holdInBridge(13);
        IBridgeCore.Request memory r = _request(0, KIND_ERC721, remoteLockNft, 13);
        r.to = address(holder);
        _execute(r);
        assertEq(holder.received(), 0, "no hook inside the vote");
        assertEq(bridge.pendingERC721Withdrawal(address(lockNft), 13), address(holder), "held for it");
        vm.prank(stranger);
        bridge.deliver(address(lockNft), address(holder), 13);
        assertEq(lockNft.ownerOf(13), address(holder), "delivered through the hook");
        assertEq(holder.received(), 1, "hook ran once");
        assertEq(bridge.pendingERC721Withdrawal(address(lockNft), 13), address(0), "credit spent");
    }

    function test_handle_reentrantRecipient_isHeld_andItsDeliveryRefused() public {
        ReentrantHolder holder = new ReentrantHolder(bridge);
        _holdInBridge(14);
        IBridgeCore.Request memory r = _request(0, KIND_ERC721, remoteLockNft, 14);
        r.to = address(holder);
        _execute(r);
        assertEq(lockNft.ownerOf(14), address(bridge), "held in the bridge");
        assertEq(bridge.pendingERC721Withdrawal(address(lockNft), 14), address(holder), "held for it");
        vm.expectRevert();
        bridge.deliver(address(lockNft), address(holder), 14);
        assertEq(bridge.pendingERC721Withdrawal(address(lockNft), 14), address(holder), "still held");
    }

    function test_handle_queuedRelease_reservesTheIdUntilExecutedOrCancelled() public {
        vm.startPrank(owner);
        bridge.setOutflowLimit(address(lockNft), 0, 0, 0); // every release waits the delay
        bridge.setPauser(stranger, true);
        vm.stopPrank();
        _holdInBridge(21);
        _holdInBridge(22);
        _execute(_request(0, KIND_ERC721, remoteLockNft, 21));
        _execute(_request(1, KIND_ERC721, remoteLockNft, 22));
        assertEq(bridge.queuedReleaseCount(), 2, "both queued");
        (address token,, uint64 releaseAt, uint256 id) = bridge.queuedRelease(0);
        assertEq(token, address(lockNft), "queued token");
        assertEq(id, 21, "queued id");

        // A forged second request for a queued id cannot take it.
        IBridgeCore.Request memory forged = _request(2, KIND_ERC721, remoteLockNft, 21);
        _vote(op1, forged);
        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.InsufficientLiquidity.selector, address(lockNft), 0, 21));
        _vote(op2, forged);

        vm.expectRevert(abi.encodeWithSelector(IBridgeCore.ReleaseNotDue.selector, uint64(0), releaseAt));
        bridge.executeQueuedRelease(0);
        vm.warp(releaseAt);
        bridge.executeQueuedRelease(0);
        assertEq(lockNft.ownerOf(21), recipient, "released after the delay");

        vm.prank(stranger);
        bridge.setQueuedReleaseFrozen(1, true);
        vm.prank(owner);
        bridge.cancelQueuedRelease(1);
        assertEq(lockNft.ownerOf(22), address(bridge), "cancelled: stays in the bridge");
        // Cancelled, the id is free again for a request the operators do recognise.
        vm.prank(owner);
        bridge.setOutflowLimit(address(lockNft), type(uint128).max, 0, 0);
        _execute(_request(3, KIND_ERC721, remoteLockNft, 22));
        assertEq(lockNft.ownerOf(22), recipient, "free id released");
    }

    function test_handle_outflowCountsTokens() public {
        vm.prank(owner);
        bridge.setOutflowLimit(address(mintNft), 1, 0, 0); // one NFT at once, whatever its id
        _execute(_request(0, KIND_ERC721, remoteMintNft, 1e30));
        assertEq(mintNft.ownerOf(1e30), recipient, "first one released at once");
        _execute(_request(1, KIND_ERC721, remoteMintNft, 2));
        assertFalse(mintNft.exists(2), "second one queued");
        assertEq(bridge.queuedReleaseCount(), 1, "queued");
    }

    /// @dev Puts `id` into the bridge as an earlier lock would have (a plain transferFrom: the
    /// safe mint would call the bridge's hook, which only takes requests).
    function _holdInBridge(uint256 id) private {
        address earlier = makeAddr("earlier requester");
        lockNft.mint(earlier, id);
        vm.prank(earlier);
        lockNft.transferFrom(earlier, address(bridge), id);
    }

    // ------------------------------------------------------------------ round trip

    /// @dev An id crosses from a lock-mode chain to a burn-mode chain and back: the same id
    /// exists on exactly one side at every step.
    function testFuzz_roundTrip_sameIdOneSideAtATime(uint256 id) public {
        // `bridge` is the home chain (lock); `wrapped` is a second chain's bridge (burn/mint).
        Bridge wrapped = _newBridge(owner, _operators(), 2);
        TestNFT wrappedNft = new TestNFT("Wrapped", "WNFT");
        wrappedNft.setMinter(address(wrapped), true);
        vm.startPrank(owner);
        wrapped.setCounterpart(block.chainid, address(bridge), 1);
        wrapped.registerTokenPair(address(wrappedNft), address(lockNft), NFT_BURN);
        wrapped.setOutflowLimit(address(wrappedNft), type(uint128).max, 0, 0);
        vm.stopPrank();

        lockNft.mint(user, id);
        vm.startPrank(user);
        lockNft.approve(address(bridge), id);
        bridge.requestERC721Transfer(address(lockNft), user, id, "");
        vm.stopPrank();
        IBridgeCore.Request memory out = _request(0, KIND_ERC721, address(lockNft), id);
        out.srcChainId = block.chainid;
        out.srcBridge = address(bridge);
        out.to = user;
        vm.prank(op1);
        wrapped.handleValueTransfer(out);
        vm.prank(op2);
        wrapped.handleValueTransfer(out);
        assertEq(wrappedNft.ownerOf(id), user, "arrived wrapped with the same id");
        assertEq(lockNft.ownerOf(id), address(bridge), "home copy locked");

        vm.prank(user);
        wrappedNft.safeTransferFrom(user, address(wrapped), id, abi.encode(recipient, bytes("")));
        assertFalse(wrappedNft.exists(id), "wrapped copy burned");
        // Back home: the fixture's counterpart stands in for the wrapped chain's bridge.
        _execute(_request(0, KIND_ERC721, remoteLockNft, id));
        assertEq(lockNft.ownerOf(id), recipient, "home copy unlocked to the recipient");
    }
}
