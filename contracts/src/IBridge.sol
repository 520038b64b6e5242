// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridgeCore} from "./IBridgeCore.sol";

/// @title The multibridge value-transfer bridge, one per chain per bridge pair.
/// @notice Source side: users request native, ERC-20 or ERC-721 transfers; each request gets a dense
/// nonce and a `RequestValueTransfer` event. Destination side: registered operators vote on a
/// request; the transfer executes exactly once when `threshold` operators voted for the same
/// payload. See DESIGN.md §3.1.
/// Its wire types, events, errors, state and constants are in IBridgeCore.
interface IBridge is IBridgeCore {
    // ---------------------------------------------------------------- requests (source side)

    /// Request a native transfer of `msg.value - fee(address(0))` to `to` on the counterpart chain.
    function requestNativeTransfer(address to, bytes calldata extraData) external payable returns (uint64 nonce);

    /// Request an ERC-20 transfer of `amount` of the registered local `token` to `to`. The bridge
    /// pulls `amount` with transferFrom (lock) or pulls then burns it (burn mode). The fee is paid
    /// in native coin: `msg.value` must cover `fee(token)`; any excess is refunded to the caller.
    function requestERC20Transfer(address token, address to, uint256 amount, bytes calldata extraData)
        external
        payable
        returns (uint64 nonce);

    /// Request an ERC-721 transfer of `tokenId` of the registered local `token` to `to`. The bridge
    /// pulls the id with transferFrom (approve it first) and burns it in burn mode; the fee works
    /// as for ERC-20. The same id arrives on the counterpart chain.
    function requestERC721Transfer(address token, address to, uint256 tokenId, bytes calldata extraData)
        external
        payable
        returns (uint64 nonce);

    /// ERC-721 receiver hook: `token.safeTransferFrom(holder, bridge, tokenId, data)` with
    /// `data = abi.encode(address to, bytes extraData)` requests the transfer in one call (no
    /// approval) when the pair has no fee. Any other safe transfer to the bridge reverts.
    function onERC721Received(address operator, address from, uint256 tokenId, bytes calldata data)
        external
        returns (bytes4);

    // ---------------------------------------------------------------- handles (destination side)

    /// Vote for `r` as the calling operator; executes when the threshold is reached.
    /// Reverts with a named error on any rejection (AlreadyVoted, AlreadyHandled, ...).
    function handleValueTransfer(Request calldata r) external;

    /// Vote for many requests. Items that would revert with AlreadyHandled, AlreadyVoted,
    /// InsufficientLiquidity, TokenIsLocked, TokenNotRegistered or NonceOutsideWindow, and items
    /// started with less than ITEM_GAS (NATIVE_ITEM_GAS for native coin) left (GasBudgetTooLow),
    /// are skipped (HandleSkipped) and the rest proceeds. Returns how many votes were recorded.
    function handleValueTransfers(Request[] calldata rs) external returns (uint256 recorded);

    /// Execute requests whose vote key already holds `threshold` counting votes (a lowered
    /// threshold, a vote that could not fit its execution). Permissionless; skips (HandleSkipped)
    /// handled items, keys below the threshold (BelowThreshold) and what cannot execute yet.
    /// Returns how many executed.
    function executeHandles(Request[] calldata rs) external returns (uint256 executed);

    /// Execute a batch attested by operators' signatures instead of their votes (DESIGN.md §3.1,
    /// attested batches). `signatures` concatenates 65-byte (r, s, v) ECDSA signatures over
    /// `attestationDigest(rs)`, signers ascending and distinct, low-s; only signers registered
    /// now count, and at least `threshold` of them must. Votes and signatures never add up: each
    /// path needs its own threshold. Permissionless (anyone may submit what operators signed).
    /// Items are checked and executed as for `executeHandles` (handled, unknown source or kind,
    /// not executable yet, or not fitting ITEM_GAS, whatever their kind, besides SKIP_GAS for
    /// each item after it: skipped with HandleSkipped), and an item at or above upperHandleNonce + ATTESTED_WINDOW is skipped
    /// (NonceOutsideWindow); then BatchAttested. Returns how many executed.
    function executeAttested(Request[] calldata rs, bytes calldata signatures) external returns (uint256 executed);

    /// Move lowerHandleNonce (and recoveryBlockNumber) over at most `maxSteps` nonces that are
    /// already handled. Permissionless: a handle advances it only a bounded way, so after many
    /// out-of-order handles it can lag behind an idle lane. Returns the new lowerHandleNonce.
    function advanceLowerHandleNonce(uint256 maxSteps) external returns (uint64 lower);

    /// Pull a native amount whose push release failed.
    function withdraw() external;

    /// Pay the caller's native amount whose push release failed to `to`.
    function withdrawTo(address to) external;

    /// Pay the caller's `token` amount whose release failed to `to` (minted in burn mode).
    function withdrawToken(address token, address to) external;

    /// Deliver ERC-721 `tokenId` held for the caller after its release failed to `to`.
    function withdrawERC721(address token, uint256 tokenId, address to) external;

    /// Push what is credited to `account` to `account` itself, in the caller's transaction and at
    /// its gas: native coin (`token` address(0)), ERC-721 `tokenId` held for it, or a `token`
    /// credit. Permissionless (the recipient's own code runs here, never inside a vote).
    function deliver(address token, address account, uint256 tokenId) external;

    /// Execute a queued release once its delay passed (anyone may call; not while paused or
    /// frozen).
    function executeQueuedRelease(uint64 nonce) external;

    /// Freeze a queued release (pausers and the owner) or lift the freeze (the owner only).
    function setQueuedReleaseFrozen(uint64 nonce, bool frozen) external;

    /// Cancel a queued release (the owner); its amount stays in the bridge.
    function cancelQueuedRelease(uint64 nonce) external;


    /// Add native liquidity (no request is created).
    function fund() external payable;
    /// Reverts ConfigVersionChanged unless `configVersion() == expected` (the first call of a
    /// Safe batch planned against that state).
    function requireConfigVersion(uint256 expected) external view;
    /// `isHandled` and `hasVoted(·, operator)` for many nonces in one call (the relay's pre-check).
    function votingStatus(uint64[] calldata nonces, address operator)
        external
        view
        returns (bool[] memory handled, bool[] memory voted);
    /// Votes for `voteKey` from operators that are registered now.
    function voteCount(bytes32 voteKey) external view returns (uint256);
    /// The EIP-712 digest operators sign for an attested batch of `rs`: the typed data
    /// `AttestedBatch(bytes32[] voteKeys)` (the vote key of every item, in order) under the domain
    /// `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32
    /// salt)` = ("multibridge", VERSION in decimal, this chain, this bridge,
    /// keccak256(abi.encode(counterpartChainId, counterpartBridge))): a signature for another
    /// pair, lane, deployment or version is worth nothing here.
    function attestationDigest(Request[] calldata rs) external view returns (bytes32);
    /// The vote bit of a registered operator plus one (0: not registered); BatchAttested's
    /// `attesters` holds these bits.
    function operatorBit(address operator) external view returns (uint256);
    /// (srcChainId, srcBridge, dstChainId, dstBridge, VERSION) for votes on this bridge.
    function domain() external view returns (uint256 srcChainId, address srcBridge, uint256 dstChainId, address dstBridge, uint64 version);
    function threshold() external view returns (uint256);
    function operatorCount() external view returns (uint256);
    function getOperators() external view returns (address[] memory);
    /// Per vote bit, the lowerHandleNonce from which a new registration may take it, and the
    /// bits registered operators hold now.
    function operatorBitsFreeAt() external view returns (uint64[32] memory freeAt, uint32 active);
    /// For a local token: its counterpart, mode, lock flag and whether it is registered.
    function tokenPair(address localToken) external view returns (address remoteToken, uint8 mode, bool locked, bool registered);
    /// Capacity and refill rate of a token's bucket, and what a request could take right now.
    function rateLimit(address token) external view returns (uint256 capacity, uint256 refillPerSecond, uint256 available);
    /// The release-side bucket of a local token, what an execution could release at once now, and
    /// the amount from which a release always waits the delay (0: none).
    function outflowLimit(address token)
        external
        view
        returns (uint256 capacity, uint256 refillPerSecond, uint256 available, uint256 delayAbove);
    /// How many releases are queued.
    function queuedReleaseCount() external view returns (uint256);
    /// Up to `count` queued releases from position `start` (positions change as entries leave).
    function queuedReleasesFrom(uint256 start, uint256 count) external view returns (QueuedView[] memory);
    /// A queued release (releaseAt 0: none); token address(0) is native coin.
    function queuedRelease(uint64 nonce) external view returns (address token, address to, uint64 releaseAt, uint256 amount);

    // ---------------------------------------------------------------- administration

    function setCounterpart(uint256 chainId, address bridge, uint64 startBlock) external;
    function registerOperator(address operator) external;
    function deregisterOperator(address operator) external;
    function setThreshold(uint256 threshold) external;
    function registerTokenPair(address localToken, address remoteToken, uint8 mode) external;
    function deregisterTokenPair(address localToken) external;
    function setTokenLocked(address localToken, bool locked) external;
    function setTransferCap(address token, uint256 cap) external;
    function setRateLimit(address token, uint256 capacity, uint256 refillPerSecond) external;
    /// Release-side limit of a local token: capacity 0 queues every release (the default);
    /// type(uint128).max releases without a bucket; `delayAbove` (0: none) queues any release of
    /// at least that amount.
    function setOutflowLimit(address token, uint128 capacity, uint128 refillPerSecond, uint256 delayAbove) external;
    function setReleaseDelay(uint64 delay) external;
    function setFee(address token, uint256 fee) external;
    function setFeeReceiver(address receiver) external;
    function setPauser(address pauser, bool enabled) external;
    function pause() external;
    function unpause() external;
    function transferOwnership(address newOwner) external;
}
