// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {BridgeCore} from "./BridgeCore.sol";
import {IBridgeExtension} from "./IBridgeExtension.sol";

/// @title The bridge's extension: cancels (destination side), refunds (source side) and the
/// owner's settlement.
/// @notice Deployed by the bridge's constructor and reached only through the bridge's fallback
/// (`delegatecall`): its code runs in the bridge's storage, whose layout it shares by inheriting
/// BridgeCore. Called directly it refuses everything (NotDelegated).
/// @dev A cancel is a handle that releases nothing: it closes the nonce through the same
/// `_closeNonce` (lowerHandleNonce, upperHandleNonce and recoveryBlockNumber move as for an
/// execution), so a cancelled nonce can never execute and an executed one never be cancelled. A
/// refund trusts the threshold exactly as a release does (the counterpart's cancel is what the
/// operators sign), and goes out through the same outflow limit, queue and credits.
contract BridgeExtension is BridgeCore, IBridgeExtension {
    /// @dev EIP-712 type of a cancel batch.
    bytes32 private constant CANCEL_TYPEHASH = keccak256("CancelBatch(bytes32[] voteKeys)");
    /// @dev EIP-712 type of a refund: the counterpart cancelled the request with this vote key.
    bytes32 private constant REFUND_TYPEHASH = keccak256("CancelledRequest(bytes32 voteKey)");
    /// @dev A queued refund's key in the release queue: the request nonce with this bit.
    uint64 private constant REFUND_QUEUE_BIT = 1 << 63;

    /// @dev This contract's own address: code running at it (not through a bridge) refuses.
    address private immutable _self = address(this);

    modifier delegated() {
        _checkDelegated();
        _;
    }

    function _checkDelegated() private view {
        if (address(this) == _self) revert NotDelegated();
    }

    // ------------------------------------------------------------------ cancels (destination side)

    /// @dev What a cancel needs: `_checkCanHandle` without the pause. A cancel releases nothing
    /// here, and a pause stops value leaving, so a request held by a paused destination (one
    /// being retired, or stopped for good) can still end: cancelled here, refunded on its source,
    /// whose own pause stops the refund.
    function _checkCanCancel(bool operatorOnly) private view {
        if (operatorOnly && !isOperator(msg.sender)) revert NotOperator(msg.sender);
        if (counterpartBridge == address(0)) revert CounterpartNotSet();
        if (block.chainid != deployChainId) revert WrongChain(deployChainId, block.chainid);
    }

    /// @inheritdoc IBridgeExtension
    function cancelValueTransfers(Request[] calldata rs) external delegated nonReentrant returns (uint256 recorded) {
        if (rs.length == 0) revert EmptyBatch();
        if (rs.length > MAX_BATCH) revert BatchTooLarge(rs.length, MAX_BATCH);
        _checkCanCancel(true);
        uint256 bit = (_operatorSlot[msg.sender] >> 8) - 1;
        for (uint256 i = 0; i < rs.length; ++i) {
            Request calldata r = rs[i];
            Check check = gasleft() < ITEM_GAS ? Check.GasBudget : _checkOpen(r);
            if (check == Check.Ok && _outside(r.nonce, VOTE_WINDOW)) check = Check.OutsideWindow;
            bytes32 key;
            uint256 voters;
            if (check == Check.Ok) {
                key = voteKey(r);
                voters = _cancelVoters[key];
                if (voters & _mask(bit) != 0) check = Check.AlreadyVoted;
            }
            if (check != Check.Ok) {
                emit HandleSkipped(r.nonce, msg.sender, _selectorOf(check));
                continue;
            }
            voters |= _mask(bit);
            _cancelVoters[key] = voters;
            // The bit carries an open vote up to here: not given to a new registration before.
            if (r.nonce >= _bitVotedUpTo[bit]) _bitVotedUpTo[bit] = r.nonce + 1;
            uint256 votes = _popcount(voters & _activeBits);
            emit CancelVoteCast(r.nonce, msg.sender, key, votes);
            // forge-lint: disable-next-line(unsafe-typecast)
            if (votes >= _threshold) _cancel(r, key, uint32(voters & _activeBits));
            ++recorded;
        }
    }

    /// @inheritdoc IBridgeExtension
    function executeCancels(Request[] calldata rs) external delegated nonReentrant returns (uint256 cancelled) {
        if (rs.length == 0) revert EmptyBatch();
        if (rs.length > MAX_BATCH) revert BatchTooLarge(rs.length, MAX_BATCH);
        _checkCanCancel(false);
        for (uint256 i = 0; i < rs.length; ++i) {
            Request calldata r = rs[i];
            Check check = gasleft() < ITEM_GAS ? Check.GasBudget : _checkOpen(r);
            bytes32 key;
            uint256 voters;
            if (check == Check.Ok) {
                key = voteKey(r);
                voters = _cancelVoters[key] & _activeBits;
                if (_popcount(voters) < _threshold) check = Check.BelowThreshold;
            }
            if (check != Check.Ok) {
                emit HandleSkipped(r.nonce, msg.sender, _selectorOf(check));
                continue;
            }
            // forge-lint: disable-next-line(unsafe-typecast)
            _cancel(r, key, uint32(voters));
            ++cancelled;
        }
    }

    /// @inheritdoc IBridgeExtension
    function cancelAttested(Request[] calldata rs, bytes calldata signatures)
        external
        delegated
        nonReentrant
        returns (uint256 cancelled)
    {
        if (rs.length == 0) revert EmptyBatch();
        if (rs.length > MAX_BATCH) revert BatchTooLarge(rs.length, MAX_BATCH);
        _checkCanCancel(false);
        bytes32[] memory keys = _voteKeys(rs);
        uint32 attesters = _attesters(_cancelDigest(keys), signatures);
        for (uint256 i = 0; i < rs.length; ++i) {
            Request calldata r = rs[i];
            Check check = gasleft() < ITEM_GAS ? Check.GasBudget : _checkOpen(r);
            if (check == Check.Ok && _outside(r.nonce, ATTESTED_WINDOW)) check = Check.OutsideWindow;
            if (check != Check.Ok) {
                emit HandleSkipped(r.nonce, msg.sender, _selectorOf(check));
                continue;
            }
            _cancel(r, keys[i], attesters);
            ++cancelled;
        }
    }

    /// @inheritdoc IBridgeExtension
    function cancelDigest(Request[] calldata rs) external view delegated returns (bytes32) {
        return _cancelDigest(_voteKeys(rs));
    }

    /// @inheritdoc IBridgeExtension
    function cancelledKey(uint64 nonce) external view delegated returns (bytes32) {
        return _cancelledKeys[nonce];
    }

    /// @inheritdoc IBridgeExtension
    function cancelVoteCount(bytes32 key) external view delegated returns (uint256) {
        return _popcount(_cancelVoters[key] & _activeBits);
    }

    /// @dev Closes open request `r` (vote key `key`) as cancelled: handled, nothing released.
    function _cancel(Request calldata r, bytes32 key, uint32 attesters) private {
        _cancelledKeys[r.nonce] = key;
        uint64 lower = _closeNonce(r.nonce, r.srcBlockNumber);
        emit HandleCancelled(r.nonce, r.srcTxHash, r.from, key, attesters, lower);
    }

    function _cancelDigest(bytes32[] memory keys) private view returns (bytes32) {
        return _typedDigest(keccak256(abi.encode(CANCEL_TYPEHASH, keccak256(abi.encodePacked(keys)))));
    }

    function _voteKeys(Request[] calldata rs) private view returns (bytes32[] memory keys) {
        keys = new bytes32[](rs.length);
        for (uint256 i = 0; i < rs.length; ++i) {
            keys[i] = voteKey(rs[i]);
        }
    }

    function _popcount(uint256 bits) private pure returns (uint256 n) {
        while (bits != 0) {
            bits &= bits - 1;
            ++n;
        }
    }

    // ------------------------------------------------------------------ refunds (source side)

    /// @inheritdoc IBridgeExtension
    function refund(Request calldata r, bytes calldata signatures) external delegated nonReentrant {
        if (paused) revert BridgePaused();
        if (counterpartBridge == address(0)) revert CounterpartNotSet();
        if (block.chainid != deployChainId) revert WrongChain(deployChainId, block.chainid);
        if (r.srcChainId != block.chainid || r.srcBridge != address(this) || r.nonce >= requestNonce) {
            revert NotRequested(r.nonce);
        }
        uint256 word = _refundedBits[r.nonce >> 8];
        uint256 bit = _mask(r.nonce & 255);
        if (word & bit != 0) revert AlreadyRefunded(r.nonce);
        bytes32 key = _counterpartKey(r);
        uint32 attesters = _attesters(_refundDigest(key), signatures);
        _refundedBits[r.nonce >> 8] = word | bit;
        address token = _refundable(r);
        emit Refunded(r.nonce, r.from, r.kind, token, r.amount, key, attesters);
        // Limits count an ERC-721 as one unit (its amount is an id).
        // Its queue entry and deferred credits carry the refund's queue key, never a handle's nonce.
        uint64 queueKey = r.nonce | REFUND_QUEUE_BIT;
        if (_takeOutflow(token, r.kind == KIND_ERC721 ? 1 : r.amount)) {
            _release(queueKey, token, r.kind, r.from, r.amount);
        } else {
            _enqueue(queueKey, token, r.kind, r.from, r.amount);
        }
    }

    /// @inheritdoc IBridgeExtension
    function refundDigest(Request calldata r) external view delegated returns (bytes32) {
        return _refundDigest(_counterpartKey(r));
    }

    /// @inheritdoc IBridgeExtension
    function isRefunded(uint64 nonce) external view delegated returns (bool) {
        return _refundedBits[nonce >> 8] & _mask(nonce & 255) != 0;
    }

    /// @inheritdoc IBridgeExtension
    function refundQueueKey(uint64 nonce) external pure returns (uint64) {
        return nonce | REFUND_QUEUE_BIT;
    }

    /// @dev The vote key the counterpart computes for this bridge's request `r`.
    function _counterpartKey(Request calldata r) private view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), counterpartChainId, counterpartBridge, VERSION, r));
    }

    function _refundDigest(bytes32 key) private view returns (bytes32) {
        return _typedDigest(keccak256(abi.encode(REFUND_TYPEHASH, key)));
    }

    /// @dev The local token of refund `r` (address(0): native) once it can be paid now: a
    /// registered pair of its kind, not locked, and the bridge holds what goes back (what a
    /// burn-mode pair burned is minted again).
    function _refundable(Request calldata r) private view returns (address token) {
        if (r.kind == KIND_NATIVE) {
            uint256 available = availableNativeLiquidity();
            if (available < r.amount) revert InsufficientLiquidity(address(0), available, r.amount);
            return address(0);
        }
        token = r.token;
        TokenPair memory pair = _tokenPairs[token];
        if (!pair.registered || r.kind > KIND_ERC721 || _kindOf(pair.mode) != r.kind) revert TokenNotRegistered(token);
        if (pair.locked) revert TokenIsLocked(token);
        if (pair.mode == MODE_LOCK_UNLOCK) {
            uint256 available = _tokenLiquidity(token);
            if (available < r.amount) revert InsufficientLiquidity(token, available, r.amount);
        } else if (pair.mode == MODE_ERC721_LOCK_UNLOCK && !_holdsFreeERC721(token, r.amount)) {
            revert InsufficientLiquidity(token, 0, r.amount);
        }
    }

    // ------------------------------------------------------------------ settlement (the owner)

    /// @inheritdoc IBridgeExtension
    /// @dev For a nonce a compromised quorum executed with a forged payload before the genuine
    /// request arrived: the genuine release is queued for releaseDelay (pausers can freeze it)
    /// like any held release. Once per nonce; refused if the genuine payload itself executed, by
    /// votes or executeHandles (its key's EXECUTED bit) or by an attested batch (the window's
    /// attested record, which `attested` must match), or was cancelled (its source refunds it),
    /// whatever the operators and threshold are now (audit A3-L2). A key that holds `threshold` votes but never executed is
    /// no refusal. The owner (a multisig) checks the source first: `multibridge admin settle`
    /// compares the handled vote key with the source's request.
    function settleHandled(Request calldata r, AttestedExecution[] calldata attested)
        external
        delegated
        onlyOwner
        nonReentrant
    {
        if (r.srcChainId != counterpartChainId || r.srcBridge != counterpartBridge) {
            revert WrongSource(r.srcChainId, r.srcBridge);
        }
        if (!isHandled(r.nonce)) revert NotHandled(r.nonce);
        bytes32 key = voteKey(r);
        // Its key executed by votes or executeHandles, or by attestation, or it was cancelled.
        if (
            _keyVoters[key] & EXECUTED != 0
                || _attestedKeyOf(r.nonce, attested) == key
                || _cancelledKeys[r.nonce] == key
        ) revert AlreadyHandled(r.nonce);
        uint256 word = _settledBits[r.nonce >> 8];
        uint256 bit = _mask(r.nonce & 255);
        if (word & bit != 0) revert AlreadySettled(r.nonce);
        _settledBits[r.nonce >> 8] = word | bit;
        (Check check, address localToken) = _checkRelease(r);
        if (check != Check.Ok) _revertCheck(check, r, localToken);
        emit HandleSettled(r.nonce, key);
        _enqueue(r.nonce, localToken, r.kind, r.to, r.amount);
    }

    /// @inheritdoc IBridgeExtension
    function attestedRecord(uint64 window) external view returns (bytes32) {
        return _attestedRecord[window];
    }

    /// @dev The vote key an attested batch executed `nonce` under (0: none did), from
    /// `attested`, every attested execution in its window in order; reverts
    /// (AttestedRecordMismatch) unless they chain to the bridge's record of the window.
    function _attestedKeyOf(uint64 nonce, AttestedExecution[] calldata attested)
        internal
        view
        returns (bytes32 executed)
    {
        bytes32 record;
        for (uint256 i = 0; i < attested.length; ++i) {
            record = _attestedLink(record, attested[i].nonce, attested[i].voteKey);
            if (attested[i].nonce == nonce) executed = attested[i].voteKey;
        }
        if (record != _attestedRecord[nonce >> 8]) revert AttestedRecordMismatch(nonce >> 8);
    }
}
