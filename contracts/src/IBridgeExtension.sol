// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridgeCore} from "./IBridgeCore.sol";

/// @title The bridge's extension: cancels, refunds and the owner's settlement.
/// @notice Called at the bridge's own address (its fallback runs the extension's code in the
/// bridge's storage; EIP-170 leaves the bridge no room for it). A request ends in exactly one of
/// two ways: handled on the destination, or cancelled there by the same threshold of the same
/// operators and then refunded on the source, once, on their signatures. Cancels go on while
/// the destination is paused (a pause stops value leaving; a cancel releases nothing), so a
/// request held by a paused destination can still end; the refund obeys the source's pause.
interface IBridgeExtension is IBridgeCore {
    // ---------------------------------------------------------------- cancels (destination side)

    /// Votes of msg.sender (a registered operator) to cancel the open requests `rs`, each for its
    /// exact payload (its vote key). The vote that brings a key to `threshold` votes of
    /// registered operators closes the nonce as handled without releasing anything
    /// (HandleCancelled); it can never execute afterwards, and an executed nonce can never be
    /// cancelled (AlreadyHandled). An operator may vote to cancel a request it voted to handle.
    /// Items that cannot be voted are skipped with HandleSkipped, as in handleValueTransfers;
    /// returns how many votes were recorded.
    function cancelValueTransfers(Request[] calldata rs) external returns (uint256 recorded);

    /// Close as cancelled the open requests `rs` whose vote keys already hold `threshold` cancel
    /// votes of registered operators (after the threshold was lowered; the vote that reaches it
    /// closes the nonce itself). Anyone may call it; votes nothing. Items below the threshold or
    /// no longer open are skipped with HandleSkipped; returns how many were cancelled.
    function executeCancels(Request[] calldata rs) external returns (uint256 cancelled);

    /// Cancel the open requests `rs` on the signatures of at least `threshold` registered
    /// operators over `cancelDigest(rs)` (canonical 65-byte signatures, signers ascending; the
    /// same rules as executeAttested). Anyone may submit it. Items that cannot be cancelled
    /// (already handled, another source, outside the attested window) are skipped with
    /// HandleSkipped; returns how many were cancelled.
    function cancelAttested(Request[] calldata rs, bytes calldata signatures) external returns (uint256 cancelled);

    /// The EIP-712 digest operators sign to cancel `rs`: the typed data
    /// `CancelBatch(bytes32[] voteKeys)` under the domain of `attestationDigest` (this chain,
    /// this bridge, the counterpart, VERSION). A handle attestation is no cancel and the other
    /// way round.
    function cancelDigest(Request[] calldata rs) external view returns (bytes32);

    /// The vote key cancelled at `nonce` (zero: not cancelled).
    function cancelledKey(uint64 nonce) external view returns (bytes32);

    /// Cancel votes for the request with vote key `key` from operators that are registered now.
    function cancelVoteCount(bytes32 key) external view returns (uint256);

    // ---------------------------------------------------------------- refunds (source side)

    /// Refund this bridge's request `r` to its requester `r.from` on the signatures of at least
    /// `threshold` of this bridge's registered operators over `refundDigest(r)`: their word that
    /// the counterpart cancelled `r` at a block at least this chain's confirmation depth deep.
    /// Anyone may submit it; once per nonce (AlreadyRefunded). The asset goes back as a release
    /// would go out: native coin and ERC-721 ids to an account with code are credited for it to
    /// withdraw, tokens are unlocked or minted; within the outflow limit at once, above it
    /// queued for `releaseDelay` under `refundQueueKey(r.nonce)`. The fee is not refunded (it paid
    /// for the attempt). Refused while paused, for a token whose pair is not registered here
    /// now, or without the liquidity (it waits and may be submitted again).
    function refund(Request calldata r, bytes calldata signatures) external;

    /// The EIP-712 digest operators sign for a refund of `r`: the typed data
    /// `CancelledRequest(bytes32 voteKey)`, with the counterpart's vote key of `r`
    /// (keccak256(abi.encode(this chain, this bridge, counterpart chain, counterpart bridge,
    /// VERSION, r))), under the domain of `attestationDigest` on this bridge.
    function refundDigest(Request calldata r) external view returns (bytes32);

    /// Whether request `nonce` of this bridge was refunded.
    function isRefunded(uint64 nonce) external view returns (bool);

    /// The release-queue key of a queued refund of request `nonce` (`nonce` with the top bit set:
    /// no handle nonce reaches it).
    function refundQueueKey(uint64 nonce) external pure returns (uint64);

    // ---------------------------------------------------------------- settlement (the owner)

    /// Queue the release of genuine request `r` whose nonce was handled under another vote key
    /// (the owner, once per nonce; the release waits `releaseDelay`). Refused (AlreadyHandled)
    /// if `r` itself executed, by votes, executeHandles or an attested batch, or was cancelled,
    /// whatever the operators and threshold are now. `attested`: every execution by an attested
    /// batch in `r.nonce`'s window of 256 nonces (`r.nonce / 256`), in the order they executed
    /// (their HandleValueTransfer logs, each in a transaction whose BatchAttested counts it);
    /// refused (AttestedRecordMismatch) unless it is the bridge's record of that window.
    function settleHandled(Request calldata r, AttestedExecution[] calldata attested) external;

    /// The bridge's record of the attested executions in window `window` (nonces `window * 256`
    /// up to `window * 256 + 255`): 0 while none executed there, else the chain
    /// keccak256(abi.encode(record, nonce, voteKey)) over each of them in execution order,
    /// from 0.
    function attestedRecord(uint64 window) external view returns (bytes32);
}
