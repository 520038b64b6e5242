// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @dev An ERC-20 whose transfer and mint burn all the gas they are given (the dearest release
/// path of a vote), and whose balanceOf burns nearly all it is given before claiming a large
/// balance (so the liquidity check passes at its dearest).
contract GasBurnerToken {
    function balanceOf(address) external view returns (uint256) {
        while (gasleft() > 1_000) {}
        return type(uint128).max;
    }

    function transfer(address, uint256) external pure returns (bool) {
        while (true) {}
        return true;
    }

    function mint(address, uint256) external pure {
        while (true) {}
    }
}

/// @dev An ERC-20 whose transfer reverts with `size` bytes of revert data (audit NEW-L4: the
/// bridge must not copy them at the vote's cost).
contract HugeRevertToken {
    uint256 public immutable size;

    constructor(uint256 size_) {
        size = size_;
    }

    function balanceOf(address) external pure returns (uint256) {
        return type(uint128).max;
    }

    function transfer(address, uint256) external view returns (bool) {
        uint256 n = size;
        assembly ("memory-safe") {
            revert(0, n)
        }
    }
}
