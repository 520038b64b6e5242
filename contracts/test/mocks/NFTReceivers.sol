// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridge} from "../../src/IBridge.sol";

/// @dev A contract without the ERC-721 receiver hook: safe transfers and safe mints to it fail.
/// It can still pull an id the bridge holds for it.
contract NoHookHolder {
    function withdrawFrom(IBridge bridge, address token, uint256 tokenId, address to) external {
        bridge.withdrawERC721(token, tokenId, to);
    }
}

/// @dev Accepts ERC-721 tokens and counts them.
contract AcceptingHolder {
    uint256 public received;

    function onERC721Received(address, address, uint256, bytes calldata) external returns (bytes4) {
        received += 1;
        return this.onERC721Received.selector;
    }
}

/// @dev Tries to re-enter the bridge from the receiver hook; the bridge's lock refuses, so the
/// hook reverts and the delivery fails.
contract ReentrantHolder {
    IBridge public immutable bridge;

    constructor(IBridge bridge_) {
        bridge = bridge_;
    }

    function onERC721Received(address, address, uint256 tokenId, bytes calldata) external returns (bytes4) {
        bridge.withdrawERC721(msg.sender, tokenId, address(this));
        return this.onERC721Received.selector;
    }
}
