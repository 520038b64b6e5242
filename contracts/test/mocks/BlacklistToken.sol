// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestToken} from "../../src/TestToken.sol";

/// @dev A USDC-style token: transfers to or from a blacklisted account revert.
contract BlacklistToken is TestToken {
    error Blacklisted(address account);

    mapping(address => bool) public blacklisted;

    constructor() TestToken("Blacklisting", "BLK", 18) {}

    function setBlacklisted(address account, bool on) external {
        blacklisted[account] = on;
    }

    function _transfer(address from, address to, uint256 amount) internal override {
        if (blacklisted[from]) revert Blacklisted(from);
        if (blacklisted[to]) revert Blacklisted(to);
        super._transfer(from, to, amount);
    }
}
