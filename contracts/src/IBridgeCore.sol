// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title What the bridge and its extension share: the wire types, events and errors, and the
/// state and constants both read (BridgeCore implements these).
interface IBridgeCore {
    // ---------------------------------------------------------------- types

    /// Asset kind of a request. Values are part of the wire format: never renumber.
    /// 0 = native coin, 1 = ERC-20, 2 = ERC-721 (the request's `amount` is the token id).
    // (solidity enums in external ABIs are uint8)

    /// How a registered token moves through this bridge.
    /// 0 = LockUnlock (requests lock into the bridge, handles unlock from it),
    /// 1 = BurnMint (requests burn, handles mint),
    /// 2 = ERC-721 LockUnlock (the id is locked; handles unlock it with safeTransferFrom),
    /// 3 = ERC-721 BurnMint (the id is burned; handles mint the same id).
    /// Caps, rate and outflow limits of an ERC-721 count tokens: one per transfer.

    /// One request as observed on the source chain: every field of the source event plus where
    /// it was observed. Operators must vote on byte-identical requests for their votes to add up.
    struct Request {
        uint64 nonce;          // source requestNonce
        uint8 kind;            // 0 native, 1 ERC-20, 2 ERC-721
        address from;          // requester on the source chain
        address to;            // recipient on this chain
        address token;         // source-chain token (address(0) for native)
        uint256 amount;        // amount to release (fee already taken on the source); ERC-721: the id
        uint256 fee;           // fee paid on the source (informational, part of the vote)
        bytes extraData;       // opaque, passed through
        uint256 srcChainId;    // chain id the request was emitted on (must be the counterpart chain)
        address srcBridge;     // bridge that emitted it (must be the counterpart bridge)
        bytes32 srcTxHash;     // source transaction hash
        uint64 srcBlockNumber; // source block number
        uint32 srcLogIndex;    // log index within the source block
    }

    /// One execution by an attested batch, as the bridge's attested record of its nonce's window
    /// chains them (`attestedRecord`; `settleHandled` takes a window's list).
    struct AttestedExecution {
        uint64 nonce;
        bytes32 voteKey;
    }

    /// A queued release as `queuedReleasesFrom` returns it.
    struct QueuedView {
        uint64 nonce;
        address token;         // local token, address(0) for native coin
        uint8 kind;            // 0 native, 1 ERC-20, 2 ERC-721 (amount is the id)
        bool frozen;           // held by a pauser until the owner decides
        address to;
        uint64 releaseAt;
        uint256 amount;
    }

    // ---------------------------------------------------------------- events

    /// A user requested a transfer on this (source) bridge.
    event RequestValueTransfer(
        uint64 indexed nonce,
        uint8 kind,
        address indexed from,
        address indexed to,
        address token,
        uint256 amount,
        uint256 fee,
        bytes extraData
    );

    /// An operator's vote was recorded (below or at the threshold).
    event VoteCast(uint64 indexed nonce, address indexed operator, bytes32 indexed voteKey, uint256 votes);

    /// A request reached the threshold and executed (exactly once per nonce).
    event HandleValueTransfer(
        uint64 indexed nonce,
        bytes32 indexed srcTxHash,
        address indexed to,
        uint8 kind,
        address token,          // the local token released (address(0) for native)
        uint256 amount,
        bytes32 voteKey,
        uint64 lowerHandleNonce // lowerHandleNonce after this handle
    );

    /// An attested batch was accepted: `attesters` holds the vote bit of every registered operator
    /// whose signature it carried (see `operatorBit`); `executed` of its items executed (the rest
    /// were skipped, each with a HandleSkipped). `digest` is the EIP-712 digest they signed.
    event BatchAttested(bytes32 indexed digest, uint32 attesters, uint256 executed);

    /// A batch item was skipped; `reason` is the selector of the custom error a single handle
    /// would have reverted with (e.g. AlreadyHandled, AlreadyVoted, InsufficientLiquidity).
    event HandleSkipped(uint64 indexed nonce, address indexed operator, bytes4 reason);

    /// lowerHandleNonce moved over already-handled nonces outside a handle.
    event LowerHandleNonceAdvanced(uint64 from, uint64 to);

    /// Native coin for `to` is credited for `withdraw()` (or anyone's `deliver`): `to` has code
    /// (no recipient code runs inside a vote), or refused the push.
    event NativeReleaseDeferred(uint64 indexed nonce, address indexed to, uint256 amount);
    event Withdrawn(address indexed to, uint256 amount);
    /// Releasing a token to `to` failed (blacklisted recipient, paused token, out of gas); the
    /// amount is credited for `withdrawToken()` and the nonce stays closed. Of an ERC-721
    /// (`amount` is its id): the id is held for `withdrawERC721()` (or anyone's `deliver`), always
    /// so for a recipient with code (no recipient code runs inside a vote).
    event TokenReleaseDeferred(uint64 indexed nonce, address indexed token, address indexed to, uint256 amount);
    event TokenWithdrawn(address indexed token, address indexed account, address to, uint256 amount);
    /// An executed request's release waits `releaseDelay` (large, above the outflow bucket, or an
    /// asset without an outflow limit); a pauser can freeze it until it is executed.
    event ReleaseQueued(uint64 indexed nonce, address indexed token, address indexed to, uint256 amount, uint64 releaseAt);
    event QueuedReleaseExecuted(uint64 indexed nonce);
    /// The owner cancelled a queued release: its amount stays in the bridge.
    event QueuedReleaseCancelled(uint64 indexed nonce, address indexed by);
    /// A pauser (or the owner) froze a queued release, or the owner lifted the freeze.
    event QueuedReleaseFrozen(uint64 indexed nonce, bool frozen, address indexed by);
    /// The owner queued the genuine request of a nonce that was handled under another vote key.
    event HandleSettled(uint64 indexed nonce, bytes32 voteKey);

    /// An operator voted to cancel the request with vote key `key` (destination side);
    /// `votes` counts the registered operators that voted so, this one included.
    event CancelVoteCast(uint64 indexed nonce, address indexed operator, bytes32 key, uint256 votes);
    /// A threshold of operators cancelled the counterpart's request `nonce` (vote key `key`):
    /// the nonce is closed as handled and releases nothing; the source may refund it. `attesters`
    /// holds the vote bits of the operators that voted or signed for it (see `operatorBit`).
    event HandleCancelled(
        uint64 indexed nonce, bytes32 srcTxHash, address indexed from, bytes32 key, uint32 attesters, uint64 lowerHandleNonce
    );
    /// This (source) bridge refunded its request `nonce` to its requester, on the signatures of
    /// `attesters` that the counterpart cancelled it. A refund above the outflow limit waits in
    /// the release queue under `refundQueueKey(nonce)`; the fee is not refunded.
    event Refunded(uint64 indexed nonce, address indexed to, uint8 kind, address token, uint256 amount, bytes32 key, uint32 attesters);
    event Funded(address indexed from, uint256 amount);

    event OperatorRegistered(address indexed operator);
    event OperatorDeregistered(address indexed operator);
    event ThresholdChanged(uint256 threshold);
    event CounterpartSet(uint256 chainId, address bridge, uint64 startBlock);
    event TokenPairRegistered(address indexed localToken, address indexed remoteToken, uint8 mode);
    event TokenPairDeregistered(address indexed localToken, address indexed remoteToken);
    event TokenLockChanged(address indexed localToken, bool locked);
    event TransferCapChanged(address indexed token, uint256 cap);
    event RateLimitChanged(address indexed token, uint256 capacity, uint256 refillPerSecond);
    event OutflowLimitChanged(address indexed token, uint256 capacity, uint256 refillPerSecond, uint256 delayAbove);
    event ReleaseDelayChanged(uint64 delay);
    event FeeChanged(address indexed token, uint256 fee);
    event FeeReceiverChanged(address indexed receiver);
    event PauserChanged(address indexed pauser, bool enabled);
    event PausedChanged(bool paused);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    // ---------------------------------------------------------------- errors (every rejection is named)

    error NotOwner(address caller);
    error NotPauser(address caller);
    error NotOperator(address caller);
    error BridgePaused();
    error ZeroAddress();
    error ZeroAmount();
    error ZeroThreshold();
    error ThresholdAboveOperators(uint256 threshold, uint256 operators);
    error TooManyOperators(uint256 max);
    error OperatorExists(address operator);
    error OperatorUnknown(address operator);
    error CounterpartNotSet();
    error CounterpartAlreadySet();
    error WrongSource(uint256 srcChainId, address srcBridge);
    error WrongChain(uint256 expected, uint256 actual);
    error UnknownKind(uint8 kind);
    error NotAContract(address token);
    error TokenNotRegistered(address token);
    error TokenPairExists(address token);
    error TokenIsLocked(address token);
    /// A token-pair mode other than 0..3 (see the modes above).
    error UnknownMode(uint8 mode);
    /// `token` is registered for the other kind of request (`kind` is the kind its pair moves):
    /// an ERC-20 pair takes requestERC20Transfer, an ERC-721 pair requestERC721Transfer.
    error TokenKindMismatch(address token, uint8 kind);
    /// The bridge does not hold ERC-721 `tokenId` after the token said it moved it here.
    error ERC721NotReceived(address token, uint256 tokenId);
    /// A safeTransferFrom to the bridge needs `data = abi.encode(address to, bytes extraData)`.
    error MissingTransferData();
    /// A request's `transferFrom` or `burn` on `token` reverted or returned false; `reason` is the
    /// token's revert data (empty if it returned false or reverted without data).
    error TokenCallFailed(address token, bytes reason);
    error AmountAboveCap(uint256 amount, uint256 cap);
    error RateLimited(address token, uint256 requested, uint256 available);
    error InsufficientFee(uint256 required, uint256 paid);
    error TransferAmountMismatch(uint256 expected, uint256 received);
    error AlreadyVoted(uint64 nonce, address operator);
    error AlreadyHandled(uint64 nonce);
    error InsufficientLiquidity(address token, uint256 available, uint256 required);
    error ReleaseFailed(address token);
    error EmptyBatch();
    error BatchTooLarge(uint256 size, uint256 max);
    error NothingToWithdraw();
    error NativeTransferFailed();
    error Reentrancy();
    error ExtraDataTooLarge(uint256 length, uint256 max);
    error NotQueued(uint64 nonce);
    error ReleaseNotDue(uint64 nonce, uint64 releaseAt);
    error ReleaseDelayTooLong(uint64 delay, uint64 max);
    /// Every free vote bit still carries open votes of a deregistered operator: registration is
    /// possible once lowerHandleNonce reaches `freeAtLowerNonce`.
    error OperatorBitsBusy(uint64 freeAtLowerNonce);
    /// Less gas is left than one item (ITEM_GAS, NATIVE_ITEM_GAS for native coin) or one release
    /// (RELEASE_GAS) may need at worst: a single call reverts, a batch skips the items that do not
    /// fit.
    error GasBudgetTooLow(uint256 required, uint256 left);
    /// A vote for a nonce at or above upperHandleNonce + VOTE_WINDOW (`limit`). Also the skip
    /// reason (HandleSkipped) of an attested item at or above upperHandleNonce + ATTESTED_WINDOW.
    error NonceOutsideWindow(uint64 nonce, uint64 limit);
    /// An execution of a key without `threshold` counting votes (the skip reason of executeHandles).
    error BelowThreshold();
    error ReleaseFrozen(uint64 nonce);
    error NotHandled(uint64 nonce);
    error AlreadySettled(uint64 nonce);
    /// The attested executions given for `window` (nonces window * 256 ..) are not the ones the
    /// bridge recorded there: every one, in the order they executed, is needed.
    error AttestedRecordMismatch(uint64 window);
    /// A refund of a nonce already refunded.
    error AlreadyRefunded(uint64 nonce);
    /// A refund of a request this bridge never numbered (another source, or a nonce not yet
    /// requested).
    error NotRequested(uint64 nonce);
    /// The extension's code runs only in the bridge's storage (through the bridge's fallback).
    error NotDelegated();
    /// The signatures of an attested batch are not whole 65-byte (r, s, v) triples.
    error SignaturesMalformed(uint256 length);
    /// Signature `index` has a high s (only the low-s form is accepted) or a v other than 27/28.
    error SignatureNotCanonical(uint256 index);
    /// Signature `index` recovers to no address, or to one not above the previous signer's
    /// (signers must be sorted ascending and distinct).
    error SignersNotAscending(uint256 index);
    /// Fewer registered operators signed an attested batch than the threshold.
    error NotEnoughAttestations(uint256 attesters, uint256 threshold);
    /// A batch planned against configuration version `expected` meets another.
    error ConfigVersionChanged(uint256 expected, uint256 actual);

    // ---------------------------------------------------------------- state and constants


    function VERSION() external view returns (uint64);
    function MAX_OPERATORS() external view returns (uint256);
    function MAX_BATCH() external view returns (uint256);
    function MAX_LOWER_ADVANCE() external view returns (uint256);
    function MAX_EXTRA_DATA() external view returns (uint256);
    /// Gas a batch item needs left at its start (its worst case); a native item needs
    /// NATIVE_ITEM_GAS.
    function ITEM_GAS() external view returns (uint256);
    /// Gas a native batch item needs left at its start (its worst case: no token call or view).
    function NATIVE_ITEM_GAS() external view returns (uint256);
    /// Gas a vote item that only records (its key stays below the threshold) needs left at its
    /// start (its worst case); an item that executes needs ITEM_GAS.
    function RECORD_GAS() external view returns (uint256);
    /// Gas `executeQueuedRelease` needs left at its start (its worst case).
    function RELEASE_GAS() external view returns (uint256);
    /// Votes are taken for nonces below upperHandleNonce + VOTE_WINDOW.
    function VOTE_WINDOW() external view returns (uint64);
    /// Attested items execute only for nonces below upperHandleNonce + ATTESTED_WINDOW (2^20);
    /// those at or above it are skipped (HandleSkipped, NonceOutsideWindow). The bound keeps one
    /// attested forgery far ahead from lifting the vote window for good (audit A3-L1), and is far
    /// above any honest lane's look-ahead.
    function ATTESTED_WINDOW() external view returns (uint64);
    /// Counts owner calls; `requireConfigVersion` checks it.
    function configVersion() external view returns (uint256);
    function owner() external view returns (address);
    function paused() external view returns (bool);
    function isPauser(address account) external view returns (bool);
    function requestNonce() external view returns (uint64);
    function lowerHandleNonce() external view returns (uint64);
    function upperHandleNonce() external view returns (uint64);
    function recoveryBlockNumber() external view returns (uint64);
    function isHandled(uint64 nonce) external view returns (bool);
    function hasVoted(uint64 nonce, address operator) external view returns (bool);
    /// keccak256(abi.encode(domain(), r)).
    function voteKey(Request calldata r) external view returns (bytes32);
    function counterpartChainId() external view returns (uint256);
    function counterpartBridge() external view returns (address);
    function isOperator(address account) external view returns (bool);
    /// The local token paired with a counterpart-chain token (address(0) if none).
    function localTokenFor(address remoteToken) external view returns (address);
    function transferCap(address token) external view returns (uint256);
    function fee(address token) external view returns (uint256);
    function feeReceiver() external view returns (address);
    /// Native liquidity free to release (balance minus what is owed to withdraw()).
    function availableNativeLiquidity() external view returns (uint256);
    function pendingWithdrawal(address account) external view returns (uint256);
    function pendingTokenWithdrawal(address token, address account) external view returns (uint256);
    /// Who may withdraw ERC-721 `tokenId` of `token` after its release failed (address(0): nobody).
    function pendingERC721Withdrawal(address token, uint256 tokenId) external view returns (address);
    /// Per local token (address(0) native): held back for queued releases and deferred token releases.
    function reservedLiquidity(address token) external view returns (uint256);
    /// How long a queued release waits (seconds).
    function releaseDelay() external view returns (uint64);
}
