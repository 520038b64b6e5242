// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @dev forge prints calls to this address as `console.log` lines (shown with -vv).
library Console {
    address private constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

    function log(string memory label, uint256 value) internal view {
        (bool ok,) = CONSOLE.staticcall(abi.encodeWithSignature("log(string,uint256)", label, value));
        ok; // console calls never fail and return nothing
    }
}
