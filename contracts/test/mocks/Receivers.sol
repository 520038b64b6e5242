// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridge} from "../../src/IBridge.sol";

/// @dev Refuses native coin until told to accept it; can then pull its credit from a bridge.
contract RejectingReceiver {
    bool public accepting;

    function setAccepting(bool accepting_) external {
        accepting = accepting_;
    }

    function withdrawFrom(IBridge bridge) external {
        bridge.withdraw();
    }

    receive() external payable {
        require(accepting, "RejectingReceiver: not accepting");
    }
}

/// @dev Burns every unit of gas it is given when receiving native coin.
contract GasBurner {
    receive() external payable {
        while (true) {}
    }
}

/// @dev Tries to re-enter the bridge while being paid, accepts the coin, and records the error.
contract ReentrantReceiver {
    IBridge public immutable bridge;
    bytes4 public reentryError;

    constructor(IBridge bridge_) {
        bridge = bridge_;
    }

    receive() external payable {
        try bridge.withdraw() {}
        catch (bytes memory reason) {
            // forge-lint: disable-next-line(unsafe-typecast)
            reentryError = bytes4(reason); // keeps the selector, the intended truncation
        }
    }
}

/// @dev Needs about 45,000 gas to accept native coin (two fresh storage writes): more than a
/// 2,300 stipend, less than the bridge's NATIVE_RELEASE_GAS.
contract GasHungryReceiver {
    uint256 public received;
    uint256 public lastAmount;

    receive() external payable {
        received += 1;
        lastAmount = msg.value;
    }
}
