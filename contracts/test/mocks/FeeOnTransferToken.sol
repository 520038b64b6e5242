// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestToken} from "../../src/TestToken.sol";

/// @dev Burns 1% of every transfer, so the receiver gets less than the amount sent.
contract FeeOnTransferToken is TestToken {
    constructor() TestToken("Fee On Transfer", "FOT", 18) {}

    function _transfer(address from, address to, uint256 amount) internal override {
        uint256 cut = amount / 100;
        super._transfer(from, to, amount - cut);
        if (cut != 0) {
            _debit(from, cut);
            totalSupply -= cut;
            emit Transfer(from, address(0), cut);
        }
    }
}
