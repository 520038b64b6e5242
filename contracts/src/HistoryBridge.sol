// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Bridge} from "./Bridge.sol";

/// @title DEVNET ONLY: a Bridge that can fake a long history, for the join benchmark.
/// @notice `emitHistory` emits many real `RequestValueTransfer` events (and moves requestNonce)
/// in one transaction without moving value; `markHandledBelow` moves lowerHandleNonce as if
/// every earlier request had been executed. Both are owner-only and exist so
/// `multibridge-devnet bench-join` can put 100k or 1M requests on a chain in minutes. Never
/// deploy this contract for real funds: it breaks the bridge's accounting by design.
contract HistoryBridge is Bridge {
    constructor(address owner_, address[] memory operators_, uint256 threshold_)
        Bridge(owner_, operators_, threshold_)
    {}

    /// Emit `n` request events of 1 wei each to `to` (no value moves).
    function emitHistory(uint256 n, address to) external onlyOwner {
        uint64 nonce = requestNonce;
        for (uint256 i = 0; i < n; ++i) {
            emit RequestValueTransfer(nonce + uint64(i), KIND_NATIVE, msg.sender, to, address(0), 1, 0, "");
        }
        requestNonce = nonce + uint64(n);
    }

    /// Mark every nonce below `n` handled.
    function markHandledBelow(uint64 n) external onlyOwner {
        if (n > lowerHandleNonce) lowerHandleNonce = n;
    }
}
