// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Vm} from "./Vm.sol";

/// @dev Minimal test base: the cheatcode handle and assertions that revert with a readable message.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    function assertTrue(bool condition, string memory message) internal pure {
        if (!condition) revert(message);
    }

    function assertFalse(bool condition, string memory message) internal pure {
        if (condition) revert(message);
    }

    function assertEq(uint256 actual, uint256 expected, string memory message) internal pure {
        if (actual != expected) revert(_mismatch(message, _toString(actual), _toString(expected)));
    }

    function assertEq(address actual, address expected, string memory message) internal pure {
        if (actual != expected) {
            revert(_mismatch(message, _toHex(abi.encodePacked(actual)), _toHex(abi.encodePacked(expected))));
        }
    }

    function assertEq(bytes32 actual, bytes32 expected, string memory message) internal pure {
        if (actual != expected) {
            revert(_mismatch(message, _toHex(abi.encodePacked(actual)), _toHex(abi.encodePacked(expected))));
        }
    }

    function assertEq(bool actual, bool expected, string memory message) internal pure {
        if (actual != expected) revert(_mismatch(message, actual ? "true" : "false", expected ? "true" : "false"));
    }

    function assertEq(bytes memory actual, bytes memory expected, string memory message) internal pure {
        if (keccak256(actual) != keccak256(expected)) revert(_mismatch(message, _toHex(actual), _toHex(expected)));
    }

    function assertEq(string memory actual, string memory expected, string memory message) internal pure {
        if (keccak256(bytes(actual)) != keccak256(bytes(expected))) revert(_mismatch(message, actual, expected));
    }

    function assertNotEq(bytes32 a, bytes32 b, string memory message) internal pure {
        if (a == b) revert(message);
    }

    /// @dev Maps `x` into [min, max] (inclusive) for fuzz inputs.
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        uint256 size = max - min;
        if (size == type(uint256).max) return x;
        return min + x % (size + 1);
    }

    /// @dev A deterministic address for a label.
    function makeAddr(string memory label) internal pure returns (address) {
        return address(uint160(uint256(keccak256(bytes(label)))));
    }

    function _mismatch(string memory message, string memory actual, string memory expected)
        private
        pure
        returns (string memory)
    {
        return string.concat(message, ": got ", actual, ", want ", expected);
    }

    function _toString(uint256 value) private pure returns (string memory) {
        if (value == 0) return "0";
        uint256 digits;
        for (uint256 v = value; v != 0; v /= 10) {
            ++digits;
        }
        bytes memory out = new bytes(digits);
        for (; value != 0; value /= 10) {
            // forge-lint: disable-next-line(unsafe-typecast)
            out[--digits] = bytes1(uint8(48 + value % 10)); // a single digit
        }
        return string(out);
    }

    function _toHex(bytes memory data) private pure returns (string memory) {
        bytes memory alphabet = "0123456789abcdef";
        bytes memory out = new bytes(2 + data.length * 2);
        out[0] = "0";
        out[1] = "x";
        for (uint256 i = 0; i < data.length; ++i) {
            out[2 + 2 * i] = alphabet[uint8(data[i]) >> 4];
            out[3 + 2 * i] = alphabet[uint8(data[i]) & 0x0f];
        }
        return string(out);
    }
}
