// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {BridgeFixture} from "./utils/BridgeFixture.sol";
import {Console} from "./utils/Console.sol";
import {IBridge} from "../src/IBridge.sol";

/// @dev Gas of the common handle paths, printed with `forge test --match-contract BridgeGasTest -vv`
/// (add `--isolate` to run every call as its own transaction: cold storage, intrinsic gas included).
contract BridgeGasTest is BridgeFixture {
    uint256 internal constant BATCH = 20;

    function test_gas_singleVotes() public {
        _measurePair("native", _native(0, 1 ether));
        _measurePair("erc20 lock/unlock", _request(1, 1, remoteLock, 1e18));
        _measurePair("erc20 burn/mint", _request(2, 1, remoteMint, 1e6));
        assertEq(bridge.lowerHandleNonce(), 3, "all executed");
    }

    function test_gas_batchOfTwentyNative() public {
        IBridge.Request[] memory rs = new IBridge.Request[](BATCH);
        for (uint64 i = 0; i < BATCH; ++i) {
            rs[i] = _native(i, 1 ether);
        }
        _voteBatch(op1, rs);
        uint256 recording = vm.lastCallGas().gasTotalUsed;
        assertEq(_voteBatch(op2, rs), BATCH, "all recorded");
        uint256 executing = vm.lastCallGas().gasTotalUsed;
        assertEq(bridge.lowerHandleNonce(), BATCH, "all executed");
        Console.log("batch of 20, non-executing votes, per item", recording / BATCH);
        Console.log("batch of 20, executing votes, per item", executing / BATCH);
    }

    function _measurePair(string memory label, IBridge.Request memory r) private {
        _vote(op1, r);
        Console.log(string.concat(label, ": non-executing vote"), vm.lastCallGas().gasTotalUsed);
        _vote(op2, r);
        Console.log(string.concat(label, ": executing vote"), vm.lastCallGas().gasTotalUsed);
        assertTrue(bridge.isHandled(r.nonce), "executed");
    }
}
