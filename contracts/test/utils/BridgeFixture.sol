// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridgeCore} from "../../src/IBridgeCore.sol";
import {Test} from "./Test.sol";
import {Vm} from "./Vm.sol";
import {Bridge} from "../../src/Bridge.sol";
import {IBridge} from "../../src/IBridge.sol";
import {IBridgeExtension} from "../../src/IBridgeExtension.sol";
import {TestToken} from "../../src/TestToken.sol";
import {GasBurnerToken} from "../mocks/Griefers.sol";

/// @dev A configured destination/source bridge: 3 operators, threshold 2, a counterpart, one
/// lock/unlock token and one burn/mint token, funded with native and lock-token liquidity.
abstract contract BridgeFixture is Test {
    uint256 internal constant SRC_CHAIN = 5;
    uint64 internal constant START_BLOCK = 1_000;
    uint256 internal constant NATIVE_LIQUIDITY = 100 ether;
    uint256 internal constant TOKEN_LIQUIDITY = 1_000e18;

    address internal owner = makeAddr("owner");
    address internal op1 = makeAddr("operator 1");
    address internal op2 = makeAddr("operator 2");
    address internal op3 = makeAddr("operator 3");
    address internal stranger = makeAddr("stranger");
    address internal user = makeAddr("user");
    address internal recipient = makeAddr("recipient");
    address internal srcBridge = makeAddr("counterpart bridge");
    address internal remoteLock = makeAddr("remote lock token");
    address internal remoteMint = makeAddr("remote mint token");

    Bridge internal bridge;
    /// @dev Every execution by an attested batch of `_executeAttested` so far, in order: what
    /// `settleHandled` takes (`_attestedIn`).
    IBridgeCore.AttestedExecution[] internal _attestedSoFar;
    /// @dev The gas of the last `_executeAttested`'s call (`vm.lastCallGas` then reads a view).
    uint256 internal _lastAttestedGas;
    TestToken internal lockToken;
    TestToken internal mintToken;

    function setUp() public virtual {
        bridge = _deployBridge();
        lockToken = new TestToken("Locked", "LCK", 18);
        mintToken = new TestToken("Minted", "MNT", 6);
        mintToken.setMinter(address(bridge), true);

        vm.startPrank(owner);
        bridge.registerTokenPair(address(lockToken), remoteLock, 0);
        bridge.registerTokenPair(address(mintToken), remoteMint, 1);
        // Release-side limits off for the handle tests (their own tests set them).
        bridge.setOutflowLimit(address(0), type(uint128).max, 0, 0);
        bridge.setOutflowLimit(address(lockToken), type(uint128).max, 0, 0);
        bridge.setOutflowLimit(address(mintToken), type(uint128).max, 0, 0);
        vm.stopPrank();

        vm.deal(address(this), NATIVE_LIQUIDITY);
        bridge.fund{value: NATIVE_LIQUIDITY}();
        lockToken.mint(address(bridge), TOKEN_LIQUIDITY);
    }

    /// @dev A bridge with op1..op3, threshold 2 and the counterpart set.
    function _deployBridge() internal returns (Bridge deployed) {
        deployed = _newBridge(owner, _operators(), 2);
        vm.prank(owner);
        deployed.setCounterpart(SRC_CHAIN, srcBridge, START_BLOCK);
    }

    /// @dev A bridge deployed from the committed artifact: the bytecode a deployment uses (the IR
    /// pipeline of scripts/compile.cjs; run it after editing the sources). The tests compile
    /// `Bridge` only for its interface.
    function _newBridge(address owner_, address[] memory ops, uint256 threshold_) internal returns (Bridge deployed) {
        bytes memory code = abi.encodePacked(vm.getCode("artifacts/Bridge.json"), abi.encode(owner_, ops, threshold_));
        assembly ("memory-safe") {
            deployed := create(0, add(code, 32), mload(code))
        }
        require(address(deployed) != address(0), "Bridge artifact did not deploy");
    }

    /// @dev The bridge's extension functions (cancels, refunds, settlement), called at the
    /// bridge's address.
    function _ext() internal view returns (IBridgeExtension) {
        return IBridgeExtension(address(bridge));
    }

    function _operators() internal view returns (address[] memory ops) {
        ops = new address[](3);
        ops[0] = op1;
        ops[1] = op2;
        ops[2] = op3;
    }

    /// @dev Registers a token pair with its release-side limit off.
    function _registerPair(address localToken, address remoteToken, uint8 mode) internal {
        vm.startPrank(owner);
        bridge.registerTokenPair(localToken, remoteToken, mode);
        bridge.setOutflowLimit(localToken, type(uint128).max, 0, 0);
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ requests

    function _request(uint64 nonce, uint8 kind, address token, uint256 amount)
        internal
        view
        returns (IBridgeCore.Request memory)
    {
        return IBridgeCore.Request({
            nonce: nonce,
            kind: kind,
            from: user,
            to: recipient,
            token: token,
            amount: amount,
            fee: 0,
            extraData: hex"c0de",
            srcChainId: SRC_CHAIN,
            srcBridge: srcBridge,
            srcTxHash: _txHash(nonce),
            srcBlockNumber: _srcBlock(nonce),
            srcLogIndex: 1
        });
    }

    /// @dev A registered token whose every call burns all the gas it may (a release through it
    /// is the dearest item there is), with no outflow limit to speak of; returns it and its
    /// remote address.
    function _registerBurner() internal returns (GasBurnerToken burner, address remoteBurner) {
        burner = new GasBurnerToken();
        remoteBurner = makeAddr("remote burner");
        vm.startPrank(owner);
        bridge.registerTokenPair(address(burner), remoteBurner, 0);
        bridge.setOutflowLimit(address(burner), 1e30, 1, 0);
        vm.stopPrank();
    }

    function _native(uint64 nonce, uint256 amount) internal view returns (IBridgeCore.Request memory) {
        return _request(nonce, 0, address(0), amount);
    }

    function _txHash(uint64 nonce) internal pure returns (bytes32) {
        return keccak256(abi.encode("source tx", nonce));
    }

    /// @dev Source block of a request: grows with the nonce, as on a real source chain.
    function _srcBlock(uint64 nonce) internal pure returns (uint64) {
        return START_BLOCK + 10 + 2 * nonce;
    }

    // ------------------------------------------------------------------ voting

    function _vote(address operator, IBridgeCore.Request memory r) internal {
        vm.prank(operator);
        bridge.handleValueTransfer(r);
    }

    /// @dev Votes with op1 and op2: executes `r` at threshold 2.
    function _execute(IBridgeCore.Request memory r) internal {
        _vote(op1, r);
        _vote(op2, r);
    }

    function _voteBatch(address operator, IBridgeCore.Request[] memory rs) internal returns (uint256 recorded) {
        vm.prank(operator);
        recorded = bridge.handleValueTransfers(rs);
    }

    // ------------------------------------------------------------------ attested executions

    /// @dev `executeAttested(rs, sigs)` sent by `sender`, noting each item it executed (a nonce
    /// handled by this call, the first item of it: the bridge executes a nonce once).
    function _executeAttested(address sender, IBridgeCore.Request[] memory rs, bytes memory sigs)
        internal
        returns (uint256 executed)
    {
        bool[] memory handled = new bool[](rs.length);
        for (uint256 i = 0; i < rs.length; ++i) {
            handled[i] = bridge.isHandled(rs[i].nonce);
        }
        vm.prank(sender);
        executed = bridge.executeAttested(rs, sigs);
        _lastAttestedGas = vm.lastCallGas().gasTotalUsed;
        for (uint256 i = 0; i < rs.length; ++i) {
            bool first = true;
            for (uint256 j = 0; j < i; ++j) {
                if (rs[j].nonce == rs[i].nonce) first = false;
            }
            if (first && !handled[i] && bridge.isHandled(rs[i].nonce)) {
                _attestedSoFar.push(IBridgeCore.AttestedExecution(rs[i].nonce, bridge.voteKey(rs[i])));
            }
        }
    }

    /// @dev The attested executions in `nonce`'s window (nonce / 256), in order.
    function _attestedIn(uint64 nonce) internal view returns (IBridgeCore.AttestedExecution[] memory out) {
        out = new IBridgeCore.AttestedExecution[](_attestedSoFar.length);
        uint256 n;
        for (uint256 i = 0; i < _attestedSoFar.length; ++i) {
            if (_attestedSoFar[i].nonce >> 8 == nonce >> 8) out[n++] = _attestedSoFar[i];
        }
        assembly ("memory-safe") {
            mstore(out, n)
        }
    }

    // ------------------------------------------------------------------ logs

    function _count(Vm.Log[] memory logs, bytes32 topic0) internal view returns (uint256 n) {
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter == address(bridge) && logs[i].topics[0] == topic0) ++n;
        }
    }

    /// @dev The `reason` of every HandleSkipped log of `nonce`, in order.
    function _skipReasons(Vm.Log[] memory logs, uint64 nonce) internal view returns (bytes4[] memory reasons) {
        reasons = new bytes4[](logs.length);
        uint256 n;
        for (uint256 i = 0; i < logs.length; ++i) {
            Vm.Log memory log = logs[i];
            if (
                log.emitter == address(bridge) && log.topics[0] == IBridgeCore.HandleSkipped.selector
                    && log.topics[1] == bytes32(uint256(nonce))
            ) {
                reasons[n++] = abi.decode(log.data, (bytes4));
            }
        }
        assembly ("memory-safe") {
            mstore(reasons, n)
        }
    }
}
