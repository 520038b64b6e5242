// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @dev A recipient that is cheap while simulated (eth_call, eth_estimateGas and eth_simulateV1
/// without fee fields run with GASPRICE 0) and burns every unit of gas it is given on chain: the
/// recipient of audit NEW-H1.
contract GasPriceGriefer {
    function onERC721Received(address, address, uint256, bytes calldata) external view returns (bytes4) {
        if (tx.gasprice != 0) _burnAll();
        return this.onERC721Received.selector;
    }

    receive() external payable {
        if (tx.gasprice != 0) _burnAll();
    }

    function _burnAll() private pure {
        while (true) {}
    }
}

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
