// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBridgeCore} from "./IBridgeCore.sol";

/// @dev The calls the bridge makes on registered tokens: ERC-20 plus the mint/burn extension of
/// burn-mode tokens.
interface IBridgeToken {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
    function mint(address to, uint256 amount) external;
    function burn(uint256 amount) external;
    // ERC-721 (mint and burn share the ERC-20 selectors: the id takes the amount's place)
    function ownerOf(uint256 tokenId) external view returns (address);
    function safeTransferFrom(address from, address to, uint256 tokenId) external;
}

/// @title The bridge's storage, constants and internal machinery, shared by the bridge and its
/// extension.
/// @dev Both contracts inherit this one, so the extension, reached by `delegatecall` from the
/// bridge's fallback, reads and writes the bridge's own storage with the same layout. New state
/// goes at the end, never between existing variables.
abstract contract BridgeCore is IBridgeCore {
    // ------------------------------------------------------------------ constants

    /// @inheritdoc IBridgeCore
    uint64 public constant VERSION = 1;
    /// @inheritdoc IBridgeCore
    uint256 public constant MAX_OPERATORS = 32;
    /// @inheritdoc IBridgeCore
    uint256 public constant MAX_BATCH = 64;
    /// @inheritdoc IBridgeCore
    /// @dev Already-handled nonces one call moves lowerHandleNonce over (eight words of
    /// `_handledBits`), so the gas a vote may need beyond its estimate stays small and known:
    /// other operators' votes can handle nonces above ours between our estimate and our block.
    uint256 public constant MAX_LOWER_ADVANCE = 2048;
    /// @notice Gas forwarded to a token's transfer/mint on release; a release that fails (also
    /// for want of gas) is credited for `withdrawToken()` instead of reverting the vote.
    uint256 public constant TOKEN_RELEASE_GAS = 150_000;
    /// @notice Gas a vote gives a registered token's `balanceOf` or `ownerOf` (the liquidity check).
    uint256 public constant TOKEN_VIEW_GAS = 50_000;
    /// @inheritdoc IBridgeCore
    /// @dev The worst case of one batch item from its start: the vote record (every slot it
    /// writes fresh — the voter word, the key's voters at threshold 1, a new operator's
    /// voted-up-to slot — and the largest extraData), the liquidity check (a token view that
    /// burns TOKEN_VIEW_GAS), closing a nonce in a fresh handled-bits word with the largest
    /// lowerHandleNonce advance, and the dearest release path (a token call that burns
    /// TOKEN_RELEASE_GAS, then the credit's writes) or the queue's writes: 365k for the call that
    /// takes it with all of them at once (320k before 2026-11-28 missed the fresh slots). Checked
    /// before every item, so no recipient, token or state change between a relay's estimate and
    /// its block can make a vote run out of gas:
    /// an item that does not fit is skipped (GasBudgetTooLow) and voted again. A forge test
    /// measures the worst case against this bound.
    uint256 public constant ITEM_GAS = 380_000;
    /// @inheritdoc IBridgeCore
    /// @dev The worst case of one native item from its start (issue 54: a vote's headroom is one
    /// item's worst case, and ITEM_GAS's token call and view are far above anything a native
    /// release does): the vote record (every slot it writes fresh, the largest extraData),
    /// closing a nonce in a fresh handled-bits word with the largest lowerHandleNonce advance,
    /// the outflow bucket, and the dearest native path — the queue's writes (a push to a fresh
    /// account or a credit costs less; the recipient's code never runs, audit NEW-H1). A forge
    /// test measures the worst case against this bound. Every other kind needs ITEM_GAS.
    uint256 public constant NATIVE_ITEM_GAS = 270_000;
    /// @inheritdoc IBridgeCore
    /// @dev The worst case of one vote item that only records (the key stays below the
    /// threshold): the checks, the key of the largest extraData, the vote's writes to fresh
    /// slots and its event. A vote item needs this much left at its start; one that would
    /// execute needs ITEM_GAS left before its release check as well, so a vote planned to record
    /// that lands after the threshold was reached executes what fits and skips the rest
    /// (GasBudgetTooLow), never running out of gas. A forge test measures the worst record
    /// against this bound.
    uint256 public constant RECORD_GAS = 100_000;
    /// @dev Gas one batch item skipped after the last one taken may need (its HandleSkipped
    /// and the loop's step, measured about 2.2k): every item is taken only with this much left
    /// for each item after it as well, so a batch whose items stop fitting skips the rest
    /// without running out of gas.
    uint256 internal constant SKIP_GAS = 3_000;
    /// @inheritdoc IBridgeCore
    /// @dev A release from its start (`executeQueuedRelease`, `deliver` of a token credit): the
    /// capped token call and the credit's writes.
    uint256 public constant RELEASE_GAS = 230_000;
    /// @inheritdoc IBridgeCore
    uint64 public constant VOTE_WINDOW = 4096;
    /// @inheritdoc IBridgeCore
    /// @dev Bounds attested items as VOTE_WINDOW bounds votes, far more widely (an attested item
    /// holds no vote bit), so one attested forgery cannot move upperHandleNonce out of reach and
    /// lift the vote window for good (audit A3-L1).
    uint64 public constant ATTESTED_WINDOW = 1_048_576;
    /// @inheritdoc IBridgeCore
    /// @dev Every vote carries the request's extraData; the bound keeps a vote's size and gas
    /// small and known, so no request can make its votes unsendable.
    uint256 public constant MAX_EXTRA_DATA = 1024;
    /// @notice releaseDelay at deployment.
    uint64 public constant DEFAULT_RELEASE_DELAY = 1 days;
    /// @notice Longest releaseDelay (a hold "for ever" is a pause or a cancel, not a delay).
    uint64 public constant MAX_RELEASE_DELAY = 30 days;

    /// @notice Request kind of native coin (wire format, never renumber).
    uint8 public constant KIND_NATIVE = 0;
    /// @notice Request kind of ERC-20 tokens (wire format, never renumber).
    uint8 public constant KIND_ERC20 = 1;
    /// @notice Request kind of ERC-721 tokens; the request's amount is the token id (wire format).
    uint8 public constant KIND_ERC721 = 2;
    /// @notice Token-pair mode: requests lock into the bridge, handles unlock from it.
    uint8 public constant MODE_LOCK_UNLOCK = 0;
    /// @notice Token-pair mode: requests burn, handles mint.
    uint8 public constant MODE_BURN_MINT = 1;
    /// @notice ERC-721 pair mode: requests lock the token id, handles unlock it (safeTransferFrom).
    uint8 public constant MODE_ERC721_LOCK_UNLOCK = 2;
    /// @notice ERC-721 pair mode: requests burn the token id, handles mint the same id.
    uint8 public constant MODE_ERC721_BURN_MINT = 3;

    /// @dev EIP-712 type hashes of attested batches (IBridge.attestationDigest).
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)");
    bytes32 internal constant BATCH_TYPEHASH = keccak256("AttestedBatch(bytes32[] voteKeys)");
    /// @dev The HandleSkipped reasons of Check.WrongSource .. Check.OutsideWindow (32 bits each,
    /// the lowest first), then of Check.GasBudget and Check.BelowThreshold: a table is smaller
    /// code than a chain of ifs (`_selectorOf`).
    uint256 internal constant SKIPS_LOW = uint256(uint32(WrongSource.selector))
        | uint256(uint32(UnknownKind.selector)) << 32 | uint256(uint32(AlreadyHandled.selector)) << 64
        | uint256(uint32(AlreadyVoted.selector)) << 96 | uint256(uint32(TokenNotRegistered.selector)) << 128
        | uint256(uint32(TokenIsLocked.selector)) << 160 | uint256(uint32(InsufficientLiquidity.selector)) << 192
        | uint256(uint32(NonceOutsideWindow.selector)) << 224;
    uint256 internal constant SKIPS_HIGH =
        uint256(uint32(GasBudgetTooLow.selector)) | uint256(uint32(BelowThreshold.selector)) << 32;
    /// @dev The bit of `_keyVoters` a key gets when it executes by votes or executeHandles (vote
    /// bits are 0..31).
    uint256 internal constant EXECUTED = 1 << 255;
    /// @dev secp256k1's group order / 2: an s above it is the malleable twin of a low-s signature.
    uint256 internal constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice Chain id at deployment; handles are refused on any other chain (e.g. after a fork).
    uint256 public immutable deployChainId;

    constructor() {
        deployChainId = block.chainid;
    }

    // ------------------------------------------------------------------ types

    /// @dev Outcome of the per-item checks of a handle, shared by the single and batch paths.
    enum Check {
        Ok,
        WrongSource,
        UnknownKind,
        AlreadyHandled,
        AlreadyVoted,
        TokenNotRegistered,
        TokenIsLocked,
        InsufficientLiquidity,
        OutsideWindow,
        GasBudget,
        BelowThreshold
    }

    struct TokenPair {
        address remoteToken;
        uint8 mode;
        bool locked;
        bool registered;
    }

    /// @dev Token bucket; `capacity == 0` means no limit.
    struct RateBucket {
        uint256 capacity;
        uint256 refillPerSecond;
        uint256 tokens;
        uint256 updatedAt;
    }

    /// @dev Release-side token bucket (packed: the update writes one slot). capacity 0: every
    /// release is queued; type(uint128).max: no bucket.
    struct OutflowBucket {
        uint128 capacity;
        uint128 refillPerSecond;
        uint128 tokens;
        uint64 updatedAt;
    }

    /// @dev Three slots: (token, releaseAt, kind, frozen), (to, position in `_queuedNonces` + 1),
    /// amount.
    struct QueuedRelease {
        address token;
        uint64 releaseAt;
        uint8 kind;
        bool frozen;
        address to;
        uint96 position;
        uint256 amount;
    }

    // ------------------------------------------------------------------ state

    /// @inheritdoc IBridgeCore
    address public owner;
    /// @inheritdoc IBridgeCore
    mapping(address => bool) public isPauser;

    // `counterpartBridge`, `paused`, the registered operators' vote bits and the threshold share
    // a slot: every handle reads them all.
    /// @inheritdoc IBridgeCore
    address public counterpartBridge;
    /// @inheritdoc IBridgeCore
    bool public paused;
    /// @dev Vote bits of the registered operators (bit i set: the operator holding bit i is
    /// registered now).
    uint32 internal _activeBits;
    uint8 internal _threshold;
    /// @inheritdoc IBridgeCore
    uint256 public counterpartChainId;

    address[] internal _operators;
    /// @dev operator => (index in `_operators` + 1) | (vote bit + 1) << 8; 0: not registered.
    mapping(address => uint256) internal _operatorSlot;
    /// @dev Per vote bit: the lowerHandleNonce from which the bit may be given to a new
    /// registration. A deregistered operator's bit can still be set on nonces it voted; once
    /// every such nonce is handled, the bit carries nothing and is free again.
    uint64[32] internal _bitFreeAt;
    /// @dev Per vote bit: the highest nonce it voted, plus one (where its deregistration frees
    /// it; votes are refused beyond the VOTE_WINDOW, so no vote can push this out of reach).
    uint64[32] internal _bitVotedUpTo;

    // The four counters share one storage slot.
    /// @inheritdoc IBridgeCore
    uint64 public requestNonce;
    /// @inheritdoc IBridgeCore
    uint64 public lowerHandleNonce;
    /// @inheritdoc IBridgeCore
    uint64 public upperHandleNonce;
    /// @inheritdoc IBridgeCore
    uint64 public recoveryBlockNumber;
    /// @inheritdoc IBridgeCore
    uint256 public configVersion;

    /// @dev Nonces handled out of order: nonce / 256 => one bit per nonce (nonce % 256). Only
    /// bits at or above lowerHandleNonce mean anything; a handle sets one bit, and moving
    /// lowerHandleNonce over a run of handled nonces reads one word per 256 of them.
    mapping(uint64 => uint256) internal _handledBits;
    /// @dev Who voted on a nonce, whatever key: nonce / 8 => eight 32-bit sets of vote bits
    /// (nonce % 8 picks the set). Consecutive nonces share a slot, so a batch pays for a fresh
    /// slot once per eight requests.
    mapping(uint64 => uint256) internal _voterWords;
    /// @dev vote key => the vote bits of its voters (registered or not any more), and EXECUTED
    /// once that key executed by votes or executeHandles. The key binds the nonce, so the bit is
    /// exact and stays whatever the operators and threshold become (settleHandled: audit A3-L2).
    mapping(bytes32 => uint256) internal _keyVoters;

    mapping(address => TokenPair) internal _tokenPairs;
    /// @inheritdoc IBridgeCore
    mapping(address => address) public localTokenFor;
    /// @inheritdoc IBridgeCore
    mapping(address => uint256) public transferCap;
    mapping(address => RateBucket) internal _rateLimits;
    /// @inheritdoc IBridgeCore
    mapping(address => uint256) public fee;
    /// @inheritdoc IBridgeCore
    address public feeReceiver;

    /// @inheritdoc IBridgeCore
    mapping(address => uint256) public pendingWithdrawal;
    /// @notice Sum of `pendingWithdrawal`; this native coin is not available for releases.
    uint256 public totalPendingWithdrawals;
    /// @inheritdoc IBridgeCore
    mapping(address => mapping(address => uint256)) public pendingTokenWithdrawal;
    /// @inheritdoc IBridgeCore
    mapping(address => uint256) public reservedLiquidity;
    /// @inheritdoc IBridgeCore
    mapping(address => mapping(uint256 => address)) public pendingERC721Withdrawal;
    /// @dev ERC-721 ids held for a queued release (not free to release to anyone else).
    mapping(address => mapping(uint256 => bool)) internal _erc721Queued;

    mapping(address => OutflowBucket) internal _outflow;
    mapping(address => uint256) internal _delayAbove;
    /// @inheritdoc IBridgeCore
    uint64 public releaseDelay = DEFAULT_RELEASE_DELAY;
    mapping(uint64 => QueuedRelease) internal _queued;
    uint64[] internal _queuedNonces;
    /// @dev Nonces whose genuine request the owner settled (nonce / 256 => one bit per nonce).
    mapping(uint64 => uint256) internal _settledBits;
    /// @dev Executions by attested batches: nonce / 256 => the chain of every (nonce, vote key)
    /// an attested batch executed in that window of nonces, in execution order
    /// (`_attestedLink`). No vote records such a key, so settleHandled takes the window's list,
    /// checks it against this record and refuses a nonce its genuine payload executed by
    /// attestation; a list that omits or alters an execution does not match (it takes a keccak
    /// collision). A batch writes one word per window it executes in (issue 54: the 128-bit
    /// fingerprint per nonce before, a fresh slot every two nonces, was a third of an attested
    /// transfer's gas; a 32-bit one before that could be ground: audit A3-M1).
    mapping(uint64 => bytes32) internal _attestedRecord;
    /// @dev Cancel votes (destination side): vote key => the vote bits of the operators that
    /// voted to cancel that exact request.
    mapping(bytes32 => uint256) internal _cancelVoters;
    /// @dev Cancelled nonces (destination side): nonce => the vote key that was cancelled.
    mapping(uint64 => bytes32) internal _cancelledKeys;
    /// @dev Refunded request nonces (source side): nonce / 256 => one bit per nonce.
    mapping(uint64 => uint256) internal _refundedBits;

    // ------------------------------------------------------------------ modifiers

    // Modifier bodies live in functions: inlined into every guarded function they would cost
    // code size the bridge does not have to spare (EIP-170).

    modifier onlyOwner() {
        _checkOwner();
        _;
    }

    /// @dev Reentrancy lock kept in transient storage (cleared at the end of every call, as is
    /// the lowerHandleNonce advance budget of the call).
    modifier nonReentrant() {
        _lock();
        _;
        _unlock();
    }

    /// @dev Every owner call counts as a configuration change (`configVersion`, which a Safe
    /// batch planned against one state checks first with `requireConfigVersion`).
    function _checkOwner() internal {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        ++configVersion;
    }

    function _lock() internal {
        if (_reentrancyLocked()) revert Reentrancy();
        _setReentrancyLock(true);
    }

    function _unlock() internal {
        _setReentrancyLock(false);
        _setAdvanceUsed(0);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IBridgeCore
    /// @dev Nothing at or above upperHandleNonce is handled (`_closeNonce` raises it with every
    /// bit it sets): an in-order handle reads no `_handledBits` word (issue 54: a cold read per
    /// batch).
    function isHandled(uint64 nonce) public view returns (bool) {
        return nonce < lowerHandleNonce
            || (nonce < upperHandleNonce && _handledBits[nonce >> 8] >> (nonce & 255) & 1 != 0);
    }

    /// @inheritdoc IBridgeCore
    function hasVoted(uint64 nonce, address operator) public view returns (bool) {
        uint256 bit = _operatorSlot[operator] >> 8;
        if (bit == 0) return false;
        return _voterWords[nonce >> 3] >> _voterShift(nonce, bit - 1) & 1 != 0;
    }

    /// @inheritdoc IBridgeCore
    function voteKey(Request calldata r) public view returns (bytes32) {
        return keccak256(abi.encode(counterpartChainId, counterpartBridge, block.chainid, address(this), VERSION, r));
    }

    /// @inheritdoc IBridgeCore
    function isOperator(address account) public view returns (bool) {
        return _operatorSlot[account] != 0;
    }

    /// @inheritdoc IBridgeCore
    function availableNativeLiquidity() public view returns (uint256) {
        uint256 balance = address(this).balance;
        uint256 owed = totalPendingWithdrawals + reservedLiquidity[address(0)];
        return balance > owed ? balance - owed : 0;
    }

    // ------------------------------------------------------------------ internal: handles

    /// @dev The EIP-712 digest of a batch with vote keys `keys` (IBridge.attestationDigest).
    function _attestationDigest(bytes32[] memory keys) internal view returns (bytes32) {
        return _typedDigest(keccak256(abi.encode(BATCH_TYPEHASH, keccak256(abi.encodePacked(keys)))));
    }

    /// @dev The EIP-712 digest of typed data with struct hash `structHash` under the bridge's
    /// domain: ("multibridge", VERSION in decimal, this chain, this bridge,
    /// keccak256(abi.encode(counterpartChainId, counterpartBridge))).
    function _typedDigest(bytes32 structHash) internal view returns (bytes32) {
        bytes32 separator = keccak256(
            abi.encode(
                DOMAIN_TYPEHASH,
                keccak256("multibridge"),
                keccak256("1"), // VERSION in decimal
                block.chainid,
                address(this),
                keccak256(abi.encode(counterpartChainId, counterpartBridge))
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", separator, structHash));
    }

    /// @dev The attested record of a window after `record` with (`nonce`, `key`) executed next.
    function _attestedLink(bytes32 record, uint64 nonce, bytes32 key) internal pure returns (bytes32) {
        return keccak256(abi.encode(record, nonce, key));
    }

    /// @dev The vote bits of the registered operators among the signers of `digest`; reverts
    /// unless the signatures are canonical, their signers ascending and at least `threshold` of
    /// them registered now (a deregistered operator's signature counts for nothing).
    function _attesters(bytes32 digest, bytes calldata signatures) internal view returns (uint32 bits) {
        if (signatures.length % 65 != 0) revert SignaturesMalformed(signatures.length);
        uint256 count;
        address last;
        for (uint256 i = 0; i < signatures.length / 65; ++i) {
            bytes32 r = bytes32(signatures[i * 65:i * 65 + 32]);
            bytes32 s = bytes32(signatures[i * 65 + 32:i * 65 + 64]);
            uint8 v = uint8(signatures[i * 65 + 64]);
            if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) revert SignatureNotCanonical(i);
            address signer = ecrecover(digest, v, r, s);
            if (signer <= last) revert SignersNotAscending(i);
            last = signer;
            uint256 slot = _operatorSlot[signer] >> 8;
            if (slot != 0) {
                bits |= _bit32(slot - 1);
                ++count;
            }
        }
        if (count < _threshold) revert NotEnoughAttestations(count, _threshold);
    }

    /// @dev Conditions that reject a whole single or batch call (of an operator's votes, or of
    /// anyone's executions).
    function _checkCanHandle(bool operatorOnly) internal view {
        if (paused) revert BridgePaused();
        if (operatorOnly && !isOperator(msg.sender)) revert NotOperator(msg.sender);
        if (counterpartBridge == address(0)) revert CounterpartNotSet();
        if (block.chainid != deployChainId) revert WrongChain(deployChainId, block.chainid);
    }

    /// @dev The gas an item of `kind` needs left at its start to execute (its worst case):
    /// NATIVE_ITEM_GAS for native coin, ITEM_GAS for every other kind.
    function _itemGas(uint8 kind) internal pure returns (uint256) {
        return kind == KIND_NATIVE ? NATIVE_ITEM_GAS : ITEM_GAS;
    }

    /// @dev A batch of votes by `operator`, or of executions (`operator` address(0)). An item
    /// is taken only with its kind's item gas left (RECORD_GAS for a vote that only records), so nothing any
    /// item does on chain can make the batch run out of gas: the items that do not fit are
    /// skipped (GasBudgetTooLow).
    function _eachItem(Request[] calldata rs, address operator) internal returns (uint256 done) {
        if (rs.length == 0) revert EmptyBatch();
        if (rs.length > MAX_BATCH) revert BatchTooLarge(rs.length, MAX_BATCH);
        _checkCanHandle(operator != address(0));
        for (uint256 i = 0; i < rs.length; ++i) {
            Request calldata r = rs[i];
            Check check = Check.GasBudget;
            bytes32 key;
            uint256 votes;
            address localToken;
            // Gas kept for skipping the items after this one, should they not fit.
            uint256 tail = (rs.length - i - 1) * SKIP_GAS;
            if (gasleft() >= (operator == address(0) ? _itemGas(r.kind) : RECORD_GAS) + tail) {
                (check, key, votes, localToken) = _checkItem(r, operator, tail);
            }
            if (check != Check.Ok) {
                emit HandleSkipped(r.nonce, msg.sender, _selectorOf(check));
            } else {
                if (operator == address(0)) {
                    _keyVoters[key] |= EXECUTED;
                    _execute(r, key, localToken);
                } else {
                    _recordVote(r, key, votes, localToken);
                }
                ++done;
            }
        }
    }

    /// @dev Every per-item check, without writing anything: of a vote by `operator`, or of an
    /// execution (`operator` address(0): the key must already hold `threshold` counting votes).
    /// An item that executes needs its kind's item gas (`_itemGas`) left besides the `tail` kept
    /// for the items after it.
    /// The release is checked only when the item executes. Returns the vote key, the number of
    /// counting votes including this one, and the local token (address(0) for native).
    function _checkItem(Request calldata r, address operator, uint256 tail)
        internal
        view
        returns (Check check, bytes32 key, uint256 votes, address localToken)
    {
        check = _checkOpen(r);
        if (check != Check.Ok) return (check, 0, 0, address(0));
        if (operator != address(0)) {
            // A vote far ahead of what is handled can only be junk (audit NEW-M1).
            if (_outside(r.nonce, VOTE_WINDOW)) return (Check.OutsideWindow, 0, 0, address(0));
            if (hasVoted(r.nonce, operator)) return (Check.AlreadyVoted, 0, 0, address(0));
        }
        key = voteKey(r);
        votes = _countVotes(key);
        // A voting `operator` is registered and has not voted on this nonce: not yet counted.
        if (operator != address(0)) ++votes;
        if (votes >= _threshold) {
            // It executes: its worst case must be left before the release check (which calls
            // a token) and the release (a vote's caller checked only RECORD_GAS).
            if (gasleft() < _itemGas(r.kind) + tail) return (Check.GasBudget, 0, 0, address(0));
            (check, localToken) = _checkRelease(r);
        } else if (operator == address(0)) {
            check = Check.BelowThreshold;
        }
    }

    /// @dev Whether `nonce` is at or above upperHandleNonce + `window` (computed in 256 bits: it
    /// cannot overflow).
    function _outside(uint64 nonce, uint256 window) internal view returns (bool) {
        unchecked {
            return nonce >= uint256(upperHandleNonce) + window;
        }
    }

    /// @dev Whether `r` is a still open request of the counterpart of a known kind.
    function _checkOpen(Request calldata r) internal view returns (Check) {
        if (r.srcChainId != counterpartChainId || r.srcBridge != counterpartBridge) return Check.WrongSource;
        if (r.kind > KIND_ERC721) return Check.UnknownKind;
        if (isHandled(r.nonce)) return Check.AlreadyHandled;
        return Check.Ok;
    }

    /// @dev Whether `r` can be released now; resolves its local token.
    function _checkRelease(Request calldata r) internal view returns (Check, address localToken) {
        if (r.kind == KIND_NATIVE) {
            return (availableNativeLiquidity() < r.amount ? Check.InsufficientLiquidity : Check.Ok, address(0));
        }
        localToken = localTokenFor[r.token];
        if (localToken == address(0)) return (Check.TokenNotRegistered, address(0));
        TokenPair memory pair = _tokenPairs[localToken];
        // A pair of the other kind is no pair for this request.
        if (_kindOf(pair.mode) != r.kind) return (Check.TokenNotRegistered, address(0));
        if (pair.locked) return (Check.TokenIsLocked, localToken);
        if (pair.mode == MODE_LOCK_UNLOCK && _tokenLiquidity(localToken) < r.amount) {
            return (Check.InsufficientLiquidity, localToken);
        }
        if (pair.mode == MODE_ERC721_LOCK_UNLOCK && !_holdsFreeERC721(localToken, r.amount)) {
            return (Check.InsufficientLiquidity, localToken);
        }
        return (Check.Ok, localToken);
    }

    /// @dev Reverts with the typed error (and its arguments) of a failed check.
    function _revertCheck(Check check, Request calldata r, address localToken) internal view {
        if (check == Check.WrongSource) revert WrongSource(r.srcChainId, r.srcBridge);
        if (check == Check.UnknownKind) revert UnknownKind(r.kind);
        if (check == Check.AlreadyHandled) revert AlreadyHandled(r.nonce);
        if (check == Check.AlreadyVoted) revert AlreadyVoted(r.nonce, msg.sender);
        if (check == Check.OutsideWindow) revert NonceOutsideWindow(r.nonce, upperHandleNonce + VOTE_WINDOW);
        if (check == Check.TokenNotRegistered) revert TokenNotRegistered(r.token);
        if (check == Check.TokenIsLocked) revert TokenIsLocked(localToken);
        if (check == Check.GasBudget) revert GasBudgetTooLow(_itemGas(r.kind), gasleft());
        // Check.InsufficientLiquidity; of an ERC-721: the id is not held free (available 0, required the id)
        uint256 available = localToken == address(0)
            ? availableNativeLiquidity()
            : r.kind == KIND_ERC721 ? 0 : _tokenLiquidity(localToken);
        revert InsufficientLiquidity(localToken, available, r.amount);
    }

    /// @dev The selector reported in HandleSkipped for a failed check (never Check.Ok).
    function _selectorOf(Check check) internal pure returns (bytes4) {
        uint256 i = uint256(check) - 1;
        return bytes4(uint32((i < 8 ? SKIPS_LOW : SKIPS_HIGH) >> ((i & 7) << 5)));
    }

    /// @dev Records a checked vote of msg.sender and executes `r` if it reached the threshold
    /// (the deciding vote sets the key's EXECUTED bit in the same write as its vote bit).
    function _recordVote(Request calldata r, bytes32 key, uint256 votes, address localToken) internal {
        uint256 bit = (_operatorSlot[msg.sender] >> 8) - 1;
        uint64 word = r.nonce >> 3;
        bool executes = votes >= _threshold;
        _voterWords[word] |= _mask(_voterShift(r.nonce, bit));
        _keyVoters[key] |= _mask(bit) | (executes ? EXECUTED : 0);
        if (r.nonce >= _bitVotedUpTo[bit]) _bitVotedUpTo[bit] = r.nonce + 1;
        emit VoteCast(r.nonce, msg.sender, key, votes);
        if (executes) _execute(r, key, localToken);
    }

    /// @dev Executes checked request `r` (its key holds `threshold` counting votes, or was
    /// attested): closes the nonce, then releases or queues the asset. The only caller of
    /// `_closeNonce`. Each of its callers records first that `key` executed, for settleHandled:
    /// `_recordVote` and executeHandles (`_eachItem`) the key's EXECUTED bit, executeAttested
    /// the nonce's window's attested record.
    function _execute(Request calldata r, bytes32 key, address localToken) internal {
        uint64 lower = _closeNonce(r.nonce, r.srcBlockNumber);
        emit HandleValueTransfer(r.nonce, r.srcTxHash, r.to, r.kind, localToken, r.amount, key, lower);
        // Limits count an ERC-721 as one unit (its amount is an id).
        if (_takeOutflow(localToken, r.kind == KIND_ERC721 ? 1 : r.amount)) {
            _release(r.nonce, localToken, r.kind, r.to, r.amount);
        } else {
            _enqueue(r.nonce, localToken, r.kind, r.to, r.amount);
        }
    }

    /// @dev Marks `nonce` handled and updates the handle bookkeeping. lowerHandleNonce moves past
    /// `nonce` itself and then over already-handled nonces, at most MAX_LOWER_ADVANCE of those
    /// per call; a later handle or `advanceLowerHandleNonce` continues where it stopped.
    /// recoveryBlockNumber is the source block of the last nonce handled in order: no unhandled
    /// request is older (requests are numbered in source block order). Returns the new
    /// lowerHandleNonce.
    function _closeNonce(uint64 nonce, uint64 srcBlockNumber) internal returns (uint64 lower) {
        lower = lowerHandleNonce;
        uint64 upper = upperHandleNonce;
        if (nonce >= upper) upper = nonce + 1;
        if (nonce == lower) {
            ++lower;
            recoveryBlockNumber = srcBlockNumber;
        } else {
            _handledBits[nonce >> 8] |= _mask(nonce & 255);
        }
        // Every handled nonce is below `upper`: in-order handles skip the scan entirely.
        if (lower < upper) {
            uint256 used = _advanceUsed();
            uint256 steps;
            (lower, steps) = _advance(lower, upper, MAX_LOWER_ADVANCE - used);
            if (steps != 0) _setAdvanceUsed(used + steps);
        }
        lowerHandleNonce = lower;
        upperHandleNonce = upper;
    }

    /// @dev Moves `lower` over handled nonces below `upper`, at most `budget` of them, a word
    /// of `_handledBits` at a time.
    function _advance(uint64 lower, uint64 upper, uint256 budget) internal view returns (uint64, uint256 steps) {
        while (lower < upper && steps < budget) {
            uint256 offset = lower & 255;
            uint256 run = _trailingOnes(_handledBits[lower >> 8] >> offset);
            if (run > 256 - offset) run = 256 - offset; // the shifted-in zeros are not nonces
            if (run > budget - steps) run = budget - steps;
            if (run > upper - lower) run = upper - lower;
            if (run == 0) break;
            // forge-lint: disable-next-line(unsafe-typecast)
            lower += uint64(run); // at most upper - lower
            steps += run;
            if (offset + run < 256) break; // a nonce in this word is still open
        }
        return (lower, steps);
    }

    /// @dev How many of the lowest bits of `x` are set before the first clear one.
    function _trailingOnes(uint256 x) internal pure returns (uint256 n) {
        uint256 y = ~x;
        if (y == 0) return 256;
        unchecked {
            y &= 0 - y; // the lowest clear bit of x, alone
        }
        if (y >= 1 << 128) { n += 128; y >>= 128; }
        if (y >= 1 << 64) { n += 64; y >>= 64; }
        if (y >= 1 << 32) { n += 32; y >>= 32; }
        if (y >= 1 << 16) { n += 16; y >>= 16; }
        if (y >= 1 << 8) { n += 8; y >>= 8; }
        if (y >= 1 << 4) { n += 4; y >>= 4; }
        if (y >= 1 << 2) { n += 2; y >>= 2; }
        if (y >= 1 << 1) { n += 1; }
    }

    // ------------------------------------------------------------------ internal: releases

    /// @dev Pays out an executed request (`localToken` address(0): native). Feasibility was
    /// checked before any state was written. No recipient code runs inside a vote (audit
    /// NEW-H1): native coin and ERC-721 ids for an account with code (a contract, an EIP-7702
    /// delegated account) are credited for it to pull (`withdraw`, `withdrawERC721`, or anyone's
    /// `deliver`), and pushed to accounts without code. An ERC-20 release calls only the
    /// registered token, with TOKEN_RELEASE_GAS and at most 32 bytes of return data copied; a
    /// token that refuses (blacklisted recipient, paused token, out of gas) does not revert the
    /// vote: the amount is credited to the recipient for withdrawToken(), as the others are.
    function _release(uint64 nonce, address localToken, uint8 kind, address to, uint256 amount) internal {
        if (localToken == address(0)) {
            _releaseNative(nonce, to, amount);
            return;
        }
        bool ok = (kind != KIND_ERC721 || to.code.length == 0) && _releaseToken(localToken, to, amount);
        if (!ok) {
            if (kind == KIND_ERC721) {
                pendingERC721Withdrawal[localToken][amount] = to;
            } else {
                pendingTokenWithdrawal[localToken][to] += amount;
                reservedLiquidity[localToken] += amount;
            }
            emit TokenReleaseDeferred(nonce, localToken, to, amount);
        }
    }

    /// @dev The release call of `amount` (an id) of `localToken` to `to` with TOKEN_RELEASE_GAS,
    /// copying at most one word of return data (audit NEW-L4); succeeded as `_tokenCallSucceeded`
    /// says.
    function _releaseToken(address localToken, address to, uint256 amount) internal returns (bool ok) {
        bytes memory data = _releaseCall(localToken, to, amount);
        uint256 size;
        uint256 word;
        assembly ("memory-safe") {
            mstore(0, 0)
            ok := call(TOKEN_RELEASE_GAS, localToken, 0, add(data, 32), mload(data), 0, 32)
            size := returndatasize()
            word := mload(0)
        }
        if (!ok) return false;
        if (size == 0) return localToken.code.length != 0;
        return size >= 32 && word == 1;
    }

    /// @dev The token call that pays `amount` (an ERC-721's id) to `to`: mint in burn modes,
    /// safeTransferFrom for a locked ERC-721 (a contract recipient must accept it), else transfer.
    function _releaseCall(address localToken, address to, uint256 amount) internal view returns (bytes memory) {
        uint8 mode = _tokenPairs[localToken].mode;
        if (mode & 1 == 1) return abi.encodeCall(IBridgeToken.mint, (to, amount));
        if (mode == MODE_ERC721_LOCK_UNLOCK) {
            return abi.encodeCall(IBridgeToken.safeTransferFrom, (address(this), to, amount));
        }
        return abi.encodeCall(IBridgeToken.transfer, (to, amount));
    }

    /// @dev Whether this bridge holds ERC-721 `tokenId` and owes it to nobody yet.
    function _holdsFreeERC721(address localToken, uint256 tokenId) internal view returns (bool) {
        if (_erc721Queued[localToken][tokenId] || pendingERC721Withdrawal[localToken][tokenId] != address(0)) {
            return false;
        }
        // ownerOf reverts for an id that does not exist.
        (bool ok, uint256 holder) = _tokenView(localToken, abi.encodeCall(IBridgeToken.ownerOf, (tokenId)));
        return ok && holder == uint256(uint160(address(this)));
    }

    /// @dev A lock-mode token's balance not held back for queued or deferred releases.
    function _tokenLiquidity(address localToken) internal view returns (uint256) {
        (bool ok, uint256 balance) = _tokenView(localToken, abi.encodeCall(IBridgeToken.balanceOf, (address(this))));
        uint256 reserved = reservedLiquidity[localToken];
        return ok && balance > reserved ? balance - reserved : 0;
    }

    /// @dev A one-word view of a registered token inside a vote, with TOKEN_VIEW_GAS: what a
    /// vote's item may spend on it is bounded (ITEM_GAS counts it). Not ok if it reverts or
    /// answers less than a word.
    function _tokenView(address token, bytes memory data) internal view returns (bool ok, uint256 word) {
        uint256 size;
        assembly ("memory-safe") {
            mstore(0, 0)
            ok := staticcall(TOKEN_VIEW_GAS, token, add(data, 32), mload(data), 0, 32)
            size := returndatasize()
            word := mload(0)
        }
        ok = ok && size >= 32;
    }

    /// @dev Takes `amount` from the asset's outflow bucket if it may be released at once. A
    /// quarter of the bucket is kept for small releases (at most 1/256 of its capacity): a holder
    /// of capital who keeps the bucket drained with large transfers of its own cannot make every
    /// user wait the delay (audit NEW-M3).
    function _takeOutflow(address token, uint256 amount) internal returns (bool) {
        uint256 above = _delayAbove[token];
        if (above != 0 && amount >= above) return false;
        OutflowBucket storage bucket = _outflow[token];
        uint256 capacity = bucket.capacity;
        if (capacity == type(uint128).max) return true;
        uint256 available = _outflowAvailable(bucket);
        uint256 keep = amount > capacity >> 8 ? capacity >> 2 : 0;
        if (amount > available || available - amount < keep) return false;
        // forge-lint: disable-next-line(unsafe-typecast)
        bucket.tokens = uint128(available - amount); // available <= capacity < 2^128
        bucket.updatedAt = uint64(block.timestamp);
        return true;
    }

    /// @dev min(capacity, tokens + elapsed * refillPerSecond), overflow-safe.
    function _outflowAvailable(OutflowBucket storage bucket) internal view returns (uint256) {
        uint256 capacity = bucket.capacity;
        if (capacity == type(uint128).max) return type(uint256).max;
        uint256 tokens = bucket.tokens;
        uint256 rate = bucket.refillPerSecond;
        uint256 elapsed = block.timestamp - bucket.updatedAt;
        if (rate != 0 && elapsed > (capacity - tokens) / rate) return capacity;
        return tokens + elapsed * rate;
    }

    /// @dev Holds an executed request's release back for `releaseDelay`.
    function _enqueue(uint64 nonce, address localToken, uint8 kind, address to, uint256 amount) internal {
        uint64 releaseAt = uint64(block.timestamp) + releaseDelay;
        _queuedNonces.push(nonce);
        _queued[nonce] = QueuedRelease({
            token: localToken,
            releaseAt: releaseAt,
            kind: kind,
            frozen: false,
            to: to,
            // forge-lint: disable-next-line(unsafe-typecast)
            position: uint96(_queuedNonces.length), // at most one entry per nonce: below 2^64
            amount: amount
        });
        if (kind == KIND_ERC721) {
            _erc721Queued[localToken][amount] = true;
        } else {
            reservedLiquidity[localToken] += amount;
        }
        emit ReleaseQueued(nonce, localToken, to, amount, releaseAt);
    }

    /// @dev Removes a queued release (NotQueued if there is none) and frees its reserve.
    function _dequeue(uint64 nonce) internal returns (QueuedRelease memory q) {
        q = _queued[nonce];
        if (q.releaseAt == 0) revert NotQueued(nonce);
        delete _queued[nonce];
        uint64 last = _queuedNonces[_queuedNonces.length - 1];
        _queuedNonces[q.position - 1] = last;
        if (last != nonce) _queued[last].position = q.position;
        _queuedNonces.pop();
        if (q.kind == KIND_ERC721) {
            delete _erc721Queued[q.token][q.amount];
        } else {
            reservedLiquidity[q.token] -= q.amount;
        }
    }

    /// @dev Pays `account`'s credited native amount to `to` (all gas forwarded).
    function _withdrawNative(address account, address to) internal {
        uint256 amount = pendingWithdrawal[account];
        if (amount == 0) revert NothingToWithdraw();
        pendingWithdrawal[account] = 0;
        totalPendingWithdrawals -= amount;
        emit Withdrawn(to, amount);
        _sendNative(to, amount);
    }

    /// @dev Pays `account`'s credited `token` amount to `to` (minted in burn mode).
    function _withdrawToken(address token, address account, address to) internal {
        uint256 amount = pendingTokenWithdrawal[token][account];
        if (amount == 0) revert NothingToWithdraw();
        pendingTokenWithdrawal[token][account] = 0;
        reservedLiquidity[token] -= amount;
        emit TokenWithdrawn(token, account, to, amount);
        _callToken(token, _releaseCall(token, to, amount));
    }

    /// @dev Delivers ERC-721 `tokenId` held for `account` to `to`.
    function _withdrawERC721(address token, uint256 tokenId, address account, address to) internal {
        if (pendingERC721Withdrawal[token][tokenId] != account) revert NothingToWithdraw();
        delete pendingERC721Withdrawal[token][tokenId];
        emit TokenWithdrawn(token, account, to, tokenId);
        _callToken(token, _releaseCall(token, to, tokenId));
    }

    /// @dev Pushes native coin to an account without code with the call stipend only (nothing
    /// runs there, so its cost is known); an account with code is credited for withdraw(), as is
    /// an address that refuses the stipend call (a precompile). The nonce stays closed either way.
    function _releaseNative(uint64 nonce, address to, uint256 amount) internal {
        bool ok;
        if (to.code.length == 0) {
            assembly ("memory-safe") {
                ok := call(0, to, amount, 0, 0, 0, 0)
            }
        }
        if (!ok) {
            pendingWithdrawal[to] += amount;
            totalPendingWithdrawals += amount;
            emit NativeReleaseDeferred(nonce, to, amount);
        }
    }

    /// @dev Counting votes for `key`: voters that are registered operators now.
    function _countVotes(bytes32 key) internal view returns (uint256 votes) {
        uint256 bits = _keyVoters[key] & _activeBits;
        while (bits != 0) {
            bits &= bits - 1;
            ++votes;
        }
    }

    /// @dev The word with only bit `bit` set.
    function _mask(uint256 bit) internal pure returns (uint256) {
        // forge-lint: disable-next-line(incorrect-shift)
        return 1 << bit;
    }

    /// @dev `_mask(bit)` of a vote bit (below 32) as an operator set.
    function _bit32(uint256 bit) internal pure returns (uint32) {
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint32(_mask(bit));
    }

    /// @dev Position of vote bit `bit` of `nonce` within its voter word.
    function _voterShift(uint64 nonce, uint256 bit) internal pure returns (uint256) {
        return uint256(nonce & 7) * 32 + bit;
    }

    // ------------------------------------------------------------------ internal: requests

    /// @dev Conditions shared by every request kind.
    function _checkCanRequest(address to, uint256 extraDataLength) internal view {
        if (paused) revert BridgePaused();
        if (counterpartBridge == address(0)) revert CounterpartNotSet();
        if (to == address(0)) revert ZeroAddress();
        if (extraDataLength > MAX_EXTRA_DATA) revert ExtraDataTooLarge(extraDataLength, MAX_EXTRA_DATA);
    }

    /// @dev Enforces the per-transfer cap and takes `amount` from the token bucket.
    function _consumeLimits(address token, uint256 amount) internal {
        uint256 cap = transferCap[token];
        if (cap != 0 && amount > cap) revert AmountAboveCap(amount, cap);
        RateBucket storage bucket = _rateLimits[token];
        if (bucket.capacity == 0) return;
        uint256 available = _bucketAvailable(bucket);
        if (amount > available) revert RateLimited(token, amount, available);
        bucket.tokens = available - amount;
        bucket.updatedAt = block.timestamp;
    }

    /// @dev min(capacity, tokens + elapsed * refillPerSecond), overflow-safe; unlimited if disabled.
    function _bucketAvailable(RateBucket storage bucket) internal view returns (uint256) {
        uint256 capacity = bucket.capacity;
        if (capacity == 0) return type(uint256).max;
        uint256 tokens = bucket.tokens;
        uint256 rate = bucket.refillPerSecond;
        uint256 elapsed = block.timestamp - bucket.updatedAt;
        if (rate != 0 && elapsed > (capacity - tokens) / rate) return capacity;
        return tokens + elapsed * rate;
    }

    /// @dev The mode of registered, unlocked `token` whose pair moves `kind` (else a named revert).
    function _requestablePair(address token, uint8 kind) internal view returns (uint8) {
        TokenPair memory pair = _tokenPairs[token];
        if (!pair.registered) revert TokenNotRegistered(token);
        if (_kindOf(pair.mode) != kind) revert TokenKindMismatch(token, _kindOf(pair.mode));
        if (pair.locked) revert TokenIsLocked(token);
        return pair.mode;
    }

    /// @dev The request kind a pair mode moves.
    function _kindOf(uint8 mode) internal pure returns (uint8) {
        return mode >= MODE_ERC721_LOCK_UNLOCK ? KIND_ERC721 : KIND_ERC20;
    }

    /// @dev Checks that ERC-721 `tokenId` arrived here, then burns it in burn mode.
    function _acceptERC721(address token, uint256 tokenId, uint8 mode) internal {
        if (IBridgeToken(token).ownerOf(tokenId) != address(this)) revert ERC721NotReceived(token, tokenId);
        if (mode == MODE_ERC721_BURN_MINT) _callToken(token, abi.encodeCall(IBridgeToken.burn, (tokenId)));
    }

    /// @dev Pulls exactly `amount` of `token` from msg.sender, then burns it in burn mode.
    function _pullTokens(address token, uint256 amount, uint8 mode) internal {
        uint256 balanceBefore = IBridgeToken(token).balanceOf(address(this));
        _callToken(token, abi.encodeCall(IBridgeToken.transferFrom, (msg.sender, address(this), amount)));
        uint256 balanceAfter = IBridgeToken(token).balanceOf(address(this));
        uint256 received = balanceAfter > balanceBefore ? balanceAfter - balanceBefore : 0;
        if (received != amount) revert TransferAmountMismatch(amount, received);
        if (mode == MODE_BURN_MINT) _callToken(token, abi.encodeCall(IBridgeToken.burn, (amount)));
    }

    /// @dev Calls `token`, reverting TokenCallFailed unless it succeeded (empty or true return data).
    function _callToken(address token, bytes memory data) internal {
        (bool ok, bytes memory ret) = token.call(data);
        if (!_tokenCallSucceeded(token, ok, ret)) revert TokenCallFailed(token, ok ? bytes("") : ret);
    }

    /// @dev A token call succeeded if it did not revert and returned nothing (from a contract) or true.
    function _tokenCallSucceeded(address token, bool ok, bytes memory ret) internal view returns (bool) {
        if (!ok) return false;
        if (ret.length == 0) return token.code.length != 0;
        return ret.length >= 32 && abi.decode(ret, (uint256)) == 1;
    }

    function _payFee(uint256 feeAmount) internal {
        if (feeAmount != 0) _sendNative(feeReceiver, feeAmount);
    }

    /// @dev Assigns the next request nonce and emits the request.
    function _emitRequest(
        uint8 kind,
        address from,
        address to,
        address token,
        uint256 amount,
        uint256 feeAmount,
        bytes memory extraData
    ) internal returns (uint64 nonce) {
        nonce = requestNonce;
        requestNonce = nonce + 1;
        emit RequestValueTransfer(nonce, kind, from, to, token, amount, feeAmount, extraData);
    }

    /// @dev Sends native coin with all remaining gas; reverts NativeTransferFailed on failure.
    function _sendNative(address to, uint256 amount) internal {
        if (amount == 0) return;
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert NativeTransferFailed();
    }

    // ------------------------------------------------------------------ internal: reentrancy lock

    /// @dev Transient slot 1: lowerHandleNonce steps over earlier handles taken in this call.
    function _advanceUsed() internal view returns (uint256 used) {
        assembly ("memory-safe") {
            used := tload(1)
        }
    }

    function _setAdvanceUsed(uint256 used) internal {
        assembly ("memory-safe") {
            tstore(1, used)
        }
    }

    /// @dev Transient slot 0 holds the lock; slot 1 the advance budget used.
    function _reentrancyLocked() internal view returns (bool locked) {
        assembly ("memory-safe") {
            locked := tload(0)
        }
    }

    function _setReentrancyLock(bool locked) internal {
        assembly ("memory-safe") {
            tstore(0, locked)
        }
    }

    // ------------------------------------------------------------------ internal: administration

    function _addOperator(address operator) internal {
        if (operator == address(0)) revert ZeroAddress();
        if (_operatorSlot[operator] != 0) revert OperatorExists(operator);
        if (_operators.length >= MAX_OPERATORS) revert TooManyOperators(MAX_OPERATORS);
        uint256 bit = _freeBit();
        _operators.push(operator);
        _operatorSlot[operator] = _operators.length | ((bit + 1) << 8);
        _activeBits |= _bit32(bit);
        emit OperatorRegistered(operator);
    }

    /// @dev A vote bit no registered operator holds and no open vote carries.
    function _freeBit() internal view returns (uint256) {
        uint64 lower = lowerHandleNonce;
        uint64 soonest = type(uint64).max;
        uint32 active = _activeBits;
        for (uint256 bit = 0; bit < MAX_OPERATORS; ++bit) {
            if (active & _bit32(bit) != 0) continue;
            uint64 freeAt = _bitFreeAt[bit];
            if (freeAt <= lower) return bit;
            if (freeAt < soonest) soonest = freeAt;
        }
        revert OperatorBitsBusy(soonest);
    }

    function _setThreshold(uint256 newThreshold) internal {
        if (newThreshold == 0) revert ZeroThreshold();
        if (newThreshold > _operators.length) revert ThresholdAboveOperators(newThreshold, _operators.length);
        // forge-lint: disable-next-line(unsafe-typecast)
        _threshold = uint8(newThreshold); // at most the operator count, at most 32
        emit ThresholdChanged(newThreshold);
    }

    /// @dev The pair of a registered local token, else TokenNotRegistered.
    function _registeredPair(address localToken) internal view returns (TokenPair storage pair) {
        pair = _tokenPairs[localToken];
        if (!pair.registered) revert TokenNotRegistered(localToken);
    }
}
