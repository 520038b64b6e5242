// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {TestNFT} from "../src/TestNFT.sol";
import {AcceptingHolder, NoHookHolder} from "./mocks/NFTReceivers.sol";

/// @dev The devnet/test ERC-721: authorisation, safe transfers and mints, burns, minters.
contract TestNFTTest is Test {
    TestNFT internal nft;
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");

    function setUp() public {
        nft = new TestNFT("Test", "TNFT");
    }

    function test_transferNeedsHolderOrApproval() public {
        nft.mint(alice, 1);
        vm.expectRevert(abi.encodeWithSelector(TestNFT.NotAuthorized.selector, bob, 1));
        vm.prank(bob);
        nft.transferFrom(alice, bob, 1);
        vm.prank(alice);
        nft.approve(bob, 1);
        vm.prank(bob);
        nft.transferFrom(alice, bob, 1);
        assertEq(nft.ownerOf(1), bob, "moved by the approved spender");
        assertEq(nft.getApproved(1), address(0), "approval cleared by the transfer");
        assertEq(nft.balanceOf(alice), 0, "alice");
        assertEq(nft.balanceOf(bob), 1, "bob");
        vm.expectRevert(abi.encodeWithSelector(TestNFT.WrongFrom.selector, alice, bob));
        vm.prank(bob);
        nft.transferFrom(alice, bob, 1);
    }

    function test_safeTransferAndMint_checkTheReceiver() public {
        NoHookHolder noHook = new NoHookHolder();
        AcceptingHolder accepting = new AcceptingHolder();
        vm.expectRevert(abi.encodeWithSelector(TestNFT.UnsafeRecipient.selector, address(noHook)));
        nft.mint(address(noHook), 1);
        nft.mint(address(accepting), 1);
        assertEq(accepting.received(), 1, "hook ran on the mint");
        nft.mint(alice, 2);
        vm.expectRevert(abi.encodeWithSelector(TestNFT.UnsafeRecipient.selector, address(noHook)));
        vm.prank(alice);
        nft.safeTransferFrom(alice, address(noHook), 2);
        vm.prank(alice);
        nft.safeTransferFrom(alice, address(accepting), 2);
        assertEq(nft.ownerOf(2), address(accepting), "safe transfer to an accepting contract");
    }

    function test_mintAndBurnRights() public {
        vm.expectRevert(abi.encodeWithSelector(TestNFT.NotMinter.selector, alice));
        vm.prank(alice);
        nft.mint(alice, 1);
        nft.setMinter(alice, true);
        vm.prank(alice);
        nft.mint(alice, 1);
        vm.expectRevert(abi.encodeWithSelector(TestNFT.TokenExists.selector, 1));
        nft.mint(bob, 1);
        vm.expectRevert(abi.encodeWithSelector(TestNFT.NotAuthorized.selector, bob, 1));
        vm.prank(bob);
        nft.burn(1);
        vm.prank(alice);
        nft.burn(1);
        assertFalse(nft.exists(1), "burned");
        vm.expectRevert(abi.encodeWithSelector(TestNFT.NonexistentToken.selector, 1));
        nft.ownerOf(1);
        assertTrue(nft.supportsInterface(0x80ac58cd), "ERC-721 interface");
    }
}
