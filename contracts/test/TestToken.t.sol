// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {TestToken} from "../src/TestToken.sol";

contract TestTokenTest is Test {
    TestToken internal token;
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");
    address internal minter = makeAddr("minter");

    function setUp() public {
        token = new TestToken("Test", "TST", 6);
        token.mint(alice, 100);
    }

    function test_metadata() public view {
        assertEq(token.name(), "Test", "name");
        assertEq(token.symbol(), "TST", "symbol");
        assertEq(uint256(token.decimals()), 6, "decimals");
        assertEq(token.owner(), address(this), "owner is the deployer");
        assertEq(token.totalSupply(), 100, "supply");
    }

    function test_transfer() public {
        vm.expectEmit(address(token));
        emit TestToken.Transfer(alice, bob, 40);
        vm.prank(alice);
        assertTrue(token.transfer(bob, 40), "returns true");
        assertEq(token.balanceOf(alice), 60, "alice");
        assertEq(token.balanceOf(bob), 40, "bob");

        vm.expectRevert(abi.encodeWithSelector(TestToken.InsufficientBalance.selector, alice, uint256(60), uint256(61)));
        vm.prank(alice);
        // forge-lint: disable-next-line(erc20-unchecked-transfer)
        token.transfer(bob, 61);
        vm.expectRevert(TestToken.ZeroAddress.selector);
        vm.prank(alice);
        // forge-lint: disable-next-line(erc20-unchecked-transfer)
        token.transfer(address(0), 1);
    }

    function test_transferFrom_usesAllowance_infiniteIsKept() public {
        vm.expectEmit(address(token));
        emit TestToken.Approval(alice, bob, 30);
        vm.prank(alice);
        token.approve(bob, 30);

        vm.prank(bob);
        assertTrue(token.transferFrom(alice, bob, 20), "returns true");
        assertEq(token.allowance(alice, bob), 10, "allowance decreased");
        vm.expectRevert(abi.encodeWithSelector(TestToken.InsufficientAllowance.selector, bob, uint256(10), uint256(11)));
        vm.prank(bob);
        // forge-lint: disable-next-line(erc20-unchecked-transfer)
        token.transferFrom(alice, bob, 11);

        vm.prank(alice);
        token.approve(bob, type(uint256).max);
        vm.prank(bob);
        assertTrue(token.transferFrom(alice, bob, 50), "returns true");
        assertEq(token.allowance(alice, bob), type(uint256).max, "infinite allowance kept");
        assertEq(token.balanceOf(bob), 70, "bob");
    }

    function test_mintRoles_and_burn() public {
        vm.expectRevert(abi.encodeWithSelector(TestToken.NotMinter.selector, minter));
        vm.prank(minter);
        token.mint(bob, 1);
        vm.expectRevert(abi.encodeWithSelector(TestToken.NotOwner.selector, alice));
        vm.prank(alice);
        token.setMinter(minter, true);

        token.setMinter(minter, true);
        vm.prank(minter);
        token.mint(bob, 5);
        assertEq(token.balanceOf(bob), 5, "minted");
        token.setMinter(minter, false);
        vm.expectRevert(abi.encodeWithSelector(TestToken.NotMinter.selector, minter));
        vm.prank(minter);
        token.mint(bob, 1);

        vm.expectEmit(address(token));
        emit TestToken.Transfer(alice, address(0), 30);
        vm.prank(alice);
        token.burn(30);
        assertEq(token.balanceOf(alice), 70, "burned");
        assertEq(token.totalSupply(), 75, "supply");
    }
}
