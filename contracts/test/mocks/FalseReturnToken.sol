// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @dev An ERC-20 whose transfers return false instead of reverting and move nothing.
contract FalseReturnToken {
    mapping(address => uint256) public balanceOf;

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
    }

    function transfer(address, uint256) external pure returns (bool) {
        return false;
    }

    function transferFrom(address, address, uint256) external pure returns (bool) {
        return false;
    }
}
