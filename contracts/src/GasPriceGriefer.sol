// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title A hostile recipient for tests (audit NEW-H1 of 2026-11-23). Not for deployment.
/// @notice Cheap while simulated (eth_call, eth_estimateGas and eth_simulateV1 without fee
/// fields run with GASPRICE 0) and burns every unit of gas it is given on chain: in a native
/// release (`receive`) or an ERC-721 delivery (`onERC721Received`). A relay that planned a
/// vote's gas from a simulation of this recipient would run out of gas.
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
