// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {BridgeCore, IBridgeToken} from "./BridgeCore.sol";
import {IBridge} from "./IBridge.sol";
import {BridgeExtension} from "./BridgeExtension.sol";

/// @title Threshold-vote value-transfer bridge (DESIGN.md §3.1).
/// @notice One instance per chain per bridge pair. As a source it numbers user requests with a
/// dense nonce; as a destination it executes a counterpart request once `threshold` registered
/// operators voted for the byte-identical payload.
/// @dev Votes are counted per vote key (domain + full request) as sets of operator vote bits.
/// Only votes of operators that are registered *now* count: deregistering an operator removes its
/// open votes from every tally. A registration always takes a bit that carries no open vote, so
/// re-registering an address (a rotated or recovered key) never revives its old votes.
contract Bridge is BridgeCore, IBridge {
    /// @notice The bridge's extension (IBridgeExtension: cancels, refunds, settlement), deployed
    /// by this constructor; the fallback runs its code in this contract's storage.
    address public immutable extension;


    // ------------------------------------------------------------------ construction

    /// @param owner_ Administrator (meant to be a multisig).
    /// @param operators_ Initial operators: non-zero, unique, at most MAX_OPERATORS.
    /// @param threshold_ Votes needed to execute a request, 1..operators_.length.
    constructor(address owner_, address[] memory operators_, uint256 threshold_) {
        extension = address(new BridgeExtension());
        if (owner_ == address(0)) revert ZeroAddress();
        if (operators_.length > MAX_OPERATORS) revert TooManyOperators(MAX_OPERATORS);
        owner = owner_;
        emit OwnershipTransferred(address(0), owner_);
        for (uint256 i = 0; i < operators_.length; ++i) {
            _addOperator(operators_[i]);
        }
        _setThreshold(threshold_);
    }

    // ------------------------------------------------------------------ requests (source side)

    /// @inheritdoc IBridge
    function requestNativeTransfer(address to, bytes calldata extraData)
        external
        payable
        nonReentrant
        returns (uint64 nonce)
    {
        _checkCanRequest(to, extraData.length);
        uint256 feeAmount = fee[address(0)];
        if (msg.value < feeAmount) revert InsufficientFee(feeAmount, msg.value);
        uint256 amount = msg.value - feeAmount;
        if (amount == 0) revert ZeroAmount();
        _consumeLimits(address(0), amount);
        _payFee(feeAmount);
        nonce = _emitRequest(KIND_NATIVE, msg.sender, to, address(0), amount, feeAmount, extraData);
    }

    /// @inheritdoc IBridge
    /// @dev Rejects tokens that deliver less than `amount` (fee-on-transfer) with TransferAmountMismatch.
    function requestERC20Transfer(address token, address to, uint256 amount, bytes calldata extraData)
        external
        payable
        nonReentrant
        returns (uint64 nonce)
    {
        _checkCanRequest(to, extraData.length);
        if (amount == 0) revert ZeroAmount();
        uint8 mode = _requestablePair(token, KIND_ERC20);
        uint256 feeAmount = fee[token];
        if (msg.value < feeAmount) revert InsufficientFee(feeAmount, msg.value);
        _consumeLimits(token, amount);
        _pullTokens(token, amount, mode);
        _payFee(feeAmount);
        nonce = _emitRequest(KIND_ERC20, msg.sender, to, token, amount, feeAmount, extraData);
        _sendNative(msg.sender, msg.value - feeAmount);
    }

    /// @inheritdoc IBridge
    function requestERC721Transfer(address token, address to, uint256 tokenId, bytes calldata extraData)
        external
        payable
        nonReentrant
        returns (uint64 nonce)
    {
        _checkCanRequest(to, extraData.length);
        uint8 mode = _requestablePair(token, KIND_ERC721);
        uint256 feeAmount = fee[token];
        if (msg.value < feeAmount) revert InsufficientFee(feeAmount, msg.value);
        _consumeLimits(token, 1);
        _callToken(token, abi.encodeCall(IBridgeToken.transferFrom, (msg.sender, address(this), tokenId)));
        _acceptERC721(token, tokenId, mode);
        _payFee(feeAmount);
        nonce = _emitRequest(KIND_ERC721, msg.sender, to, token, tokenId, feeAmount, extraData);
        _sendNative(msg.sender, msg.value - feeAmount);
    }

    /// @inheritdoc IBridge
    /// @dev Called by the token after it moved `tokenId` here; the caller (`msg.sender`) must be a
    /// registered ERC-721 token without a fee. Not while this bridge is in a call of its own.
    function onERC721Received(address, address from, uint256 tokenId, bytes calldata data)
        external
        nonReentrant
        returns (bytes4)
    {
        if (data.length < 64) revert MissingTransferData();
        (address to, bytes memory extraData) = abi.decode(data, (address, bytes));
        _checkCanRequest(to, extraData.length);
        uint8 mode = _requestablePair(msg.sender, KIND_ERC721);
        uint256 feeAmount = fee[msg.sender];
        if (feeAmount != 0) revert InsufficientFee(feeAmount, 0);
        _consumeLimits(msg.sender, 1);
        _acceptERC721(msg.sender, tokenId, mode);
        _emitRequest(KIND_ERC721, from, to, msg.sender, tokenId, 0, extraData);
        return this.onERC721Received.selector;
    }

    // ------------------------------------------------------------------ handles (destination side)

    /// @inheritdoc IBridge
    function handleValueTransfer(Request calldata r) external nonReentrant {
        _checkCanHandle(true);
        uint256 itemGas = _itemGas(r.kind);
        if (gasleft() < itemGas) revert GasBudgetTooLow(itemGas, gasleft());
        (Check check, bytes32 key, uint256 votes, address localToken) = _checkItem(r, msg.sender, 0);
        if (check != Check.Ok) _revertCheck(check, r, localToken);
        _recordVote(r, key, votes, localToken);
    }

    /// @inheritdoc IBridge
    /// @dev Items failing with WrongSource or UnknownKind are skipped as well. A nonce repeated in
    /// one batch is skipped as AlreadyVoted (or AlreadyHandled if the first occurrence executed).
    function handleValueTransfers(Request[] calldata rs) external nonReentrant returns (uint256 recorded) {
        return _eachItem(rs, msg.sender);
    }

    /// @inheritdoc IBridge
    /// @dev Executes keys that already hold `threshold` counting votes (after a lowered
    /// threshold, or an item whose execution a vote could not fit); votes nothing.
    function executeHandles(Request[] calldata rs) external nonReentrant returns (uint256 executed) {
        return _eachItem(rs, address(0));
    }

    /// @inheritdoc IBridge
    /// @dev The signatures are checked before any item (threshold x ~4k gas, bounded by
    /// MAX_OPERATORS); every item then starts only with ITEM_GAS left besides SKIP_GAS for each
    /// item after it, as in a vote batch, so no recipient can make an attested batch run out of
    /// gas either.
    function executeAttested(Request[] calldata rs, bytes calldata signatures)
        external
        nonReentrant
        returns (uint256 executed)
    {
        if (rs.length == 0) revert EmptyBatch();
        if (rs.length > MAX_BATCH) revert BatchTooLarge(rs.length, MAX_BATCH);
        _checkCanHandle(false);
        bytes32[] memory keys = new bytes32[](rs.length);
        for (uint256 i = 0; i < rs.length; ++i) {
            keys[i] = voteKey(rs[i]);
        }
        bytes32 digest = _attestationDigest(keys);
        uint32 attesters = _attesters(digest, signatures);
        for (uint256 i = 0; i < rs.length; ++i) {
            Request calldata r = rs[i];
            Check check = Check.GasBudget;
            address localToken;
            // Gas kept for skipping the items after this one, as in a vote batch (at most
            // MAX_BATCH items: it cannot overflow).
            uint256 need;
            unchecked {
                need = ITEM_GAS + (rs.length - i - 1) * SKIP_GAS;
            }
            if (gasleft() >= need) {
                check = _checkOpen(r);
                if (check == Check.Ok && _outside(r.nonce, ATTESTED_WINDOW)) check = Check.OutsideWindow;
                if (check == Check.Ok) (check, localToken) = _checkRelease(r);
            }
            if (check != Check.Ok) {
                emit HandleSkipped(r.nonce, msg.sender, _selectorOf(check));
            } else {
                // Recorded before the release, as the votes' EXECUTED bit (the word is warm after
                // the batch's first item of the window).
                _attestedRecord[r.nonce >> 8] = _attestedLink(_attestedRecord[r.nonce >> 8], r.nonce, keys[i]);
                _execute(r, keys[i], localToken);
                ++executed;
            }
        }
        emit BatchAttested(digest, attesters, executed);
    }

    /// @inheritdoc IBridge
    function withdraw() external nonReentrant {
        _withdrawNative(msg.sender, msg.sender);
    }

    /// @inheritdoc IBridge
    function withdrawTo(address to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        _withdrawNative(msg.sender, to);
    }

    /// @inheritdoc IBridge
    /// @dev Open while paused. Reverts (keeping the credit) if the token call fails again.
    function withdrawToken(address token, address to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        _withdrawToken(token, msg.sender, to);
    }

    /// @inheritdoc IBridge
    /// @dev Open while paused. Reverts (keeping the credit) if the token call fails again.
    function withdrawERC721(address token, uint256 tokenId, address to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        _withdrawERC721(token, tokenId, msg.sender, to);
    }

    /// @inheritdoc IBridge
    /// @dev Open while paused. The account's own code runs in the caller's transaction, with all
    /// its gas; a failure reverts and keeps the credit.
    function deliver(address token, address account, uint256 tokenId) external nonReentrant {
        if (token == address(0)) {
            _withdrawNative(account, account);
        } else if (pendingERC721Withdrawal[token][tokenId] != address(0)) {
            _withdrawERC721(token, tokenId, account, account);
        } else {
            _withdrawToken(token, account, account);
        }
    }

    /// @inheritdoc IBridge
    function executeQueuedRelease(uint64 nonce) external nonReentrant {
        if (paused) revert BridgePaused();
        if (gasleft() < RELEASE_GAS) revert GasBudgetTooLow(RELEASE_GAS, gasleft());
        if (_queued[nonce].frozen) revert ReleaseFrozen(nonce);
        QueuedRelease memory q = _dequeue(nonce);
        if (block.timestamp < q.releaseAt) revert ReleaseNotDue(nonce, q.releaseAt);
        if (q.token != address(0)) {
            // The token's registration now decides, as for a handle: a locked or deregistered
            // token's release waits (queued) until the owner restores it or a pauser cancels.
            TokenPair memory pair = _tokenPairs[q.token];
            if (!pair.registered) revert TokenNotRegistered(q.token);
            if (pair.locked) revert TokenIsLocked(q.token);
            if (_kindOf(pair.mode) != q.kind) revert TokenKindMismatch(q.token, _kindOf(pair.mode));
        }
        emit QueuedReleaseExecuted(nonce);
        _release(nonce, q.token, q.kind, q.to, q.amount);
    }

    /// @inheritdoc IBridge
    /// @dev A pauser's hold is never final: only the owner cancels, or lifts the freeze.
    function setQueuedReleaseFrozen(uint64 nonce, bool frozen) external {
        if (frozen) {
            if (!isPauser[msg.sender] && msg.sender != owner) revert NotPauser(msg.sender);
        } else {
            _checkOwner();
        }
        QueuedRelease storage q = _queued[nonce];
        if (q.releaseAt == 0) revert NotQueued(nonce);
        q.frozen = frozen;
        emit QueuedReleaseFrozen(nonce, frozen, msg.sender);
    }

    /// @inheritdoc IBridge
    /// @dev Meant for a release nobody requested (a compromised quorum): its amount stays in the
    /// bridge. Owner only: a pauser freezes first.
    function cancelQueuedRelease(uint64 nonce) external onlyOwner {
        _dequeue(nonce);
        emit QueuedReleaseCancelled(nonce, msg.sender);
    }

    /// @inheritdoc IBridge
    function requireConfigVersion(uint256 expected) external view {
        if (configVersion != expected) revert ConfigVersionChanged(expected, configVersion);
    }

    /// @inheritdoc IBridge
    /// @dev Open while paused. Rejects a zero amount.
    function fund() external payable {
        if (msg.value == 0) revert ZeroAmount();
        emit Funded(msg.sender, msg.value);
    }

    /// @inheritdoc IBridge
    function threshold() external view returns (uint256) {
        return _threshold;
    }

    /// @inheritdoc IBridge
    function votingStatus(uint64[] calldata nonces, address operator)
        external
        view
        returns (bool[] memory handled, bool[] memory voted)
    {
        handled = new bool[](nonces.length);
        voted = new bool[](nonces.length);
        for (uint256 i = 0; i < nonces.length; ++i) {
            handled[i] = isHandled(nonces[i]);
            voted[i] = hasVoted(nonces[i], operator);
        }
    }

    /// @inheritdoc IBridge
    function voteCount(bytes32 key) external view returns (uint256) {
        return _countVotes(key);
    }

    /// @inheritdoc IBridge
    function attestationDigest(Request[] calldata rs) external view returns (bytes32) {
        bytes32[] memory keys = new bytes32[](rs.length);
        for (uint256 i = 0; i < rs.length; ++i) {
            keys[i] = voteKey(rs[i]);
        }
        return _attestationDigest(keys);
    }

    /// @inheritdoc IBridge
    function operatorBit(address operator) external view returns (uint256) {
        return _operatorSlot[operator] >> 8;
    }

    /// @inheritdoc IBridge
    function domain()
        external
        view
        returns (uint256 srcChainId, address srcBridge, uint256 dstChainId, address dstBridge, uint64 version)
    {
        return (counterpartChainId, counterpartBridge, block.chainid, address(this), VERSION);
    }

    /// @inheritdoc IBridge
    function operatorBitsFreeAt() external view returns (uint64[32] memory freeAt, uint32 active) {
        return (_bitFreeAt, _activeBits);
    }

    /// @inheritdoc IBridge
    function operatorCount() external view returns (uint256) {
        return _operators.length;
    }

    /// @inheritdoc IBridge
    function getOperators() external view returns (address[] memory) {
        return _operators;
    }

    /// @inheritdoc IBridge
    function tokenPair(address localToken)
        external
        view
        returns (address remoteToken, uint8 mode, bool locked, bool registered)
    {
        TokenPair memory pair = _tokenPairs[localToken];
        return (pair.remoteToken, pair.mode, pair.locked, pair.registered);
    }

    /// @inheritdoc IBridge
    /// @dev `available` is type(uint256).max while the limit is disabled (capacity 0).
    function rateLimit(address token)
        external
        view
        returns (uint256 capacity, uint256 refillPerSecond, uint256 available)
    {
        RateBucket storage bucket = _rateLimits[token];
        return (bucket.capacity, bucket.refillPerSecond, _bucketAvailable(bucket));
    }

    /// @inheritdoc IBridge
    function outflowLimit(address token)
        external
        view
        returns (uint256 capacity, uint256 refillPerSecond, uint256 available, uint256 delayAbove)
    {
        OutflowBucket storage bucket = _outflow[token];
        return (bucket.capacity, bucket.refillPerSecond, _outflowAvailable(bucket), _delayAbove[token]);
    }

    /// @inheritdoc IBridge
    function queuedReleaseCount() external view returns (uint256) {
        return _queuedNonces.length;
    }

    /// @inheritdoc IBridge
    function queuedReleasesFrom(uint256 start, uint256 count) external view returns (QueuedView[] memory page) {
        uint256 total = _queuedNonces.length;
        uint256 end = start < total ? (total - start < count ? total : start + count) : start;
        page = new QueuedView[](end - start);
        for (uint256 i = start; i < end; ++i) {
            uint64 nonce = _queuedNonces[i];
            QueuedRelease storage q = _queued[nonce];
            page[i - start] = QueuedView({
                nonce: nonce,
                token: q.token,
                kind: q.kind,
                frozen: q.frozen,
                to: q.to,
                releaseAt: q.releaseAt,
                amount: q.amount
            });
        }
    }

    /// @inheritdoc IBridge
    function queuedRelease(uint64 nonce)
        external
        view
        returns (address token, address to, uint64 releaseAt, uint256 amount)
    {
        QueuedRelease storage q = _queued[nonce];
        return (q.token, q.to, q.releaseAt, q.amount);
    }

    // ------------------------------------------------------------------ administration

    /// @inheritdoc IBridge
    /// @dev Once only. A zero chain id is refused with ZeroAddress, like a zero bridge address.
    /// `startBlock` (the counterpart's deployment block) seeds `recoveryBlockNumber`.
    function setCounterpart(uint256 chainId, address bridge, uint64 startBlock) external onlyOwner {
        if (counterpartBridge != address(0)) revert CounterpartAlreadySet();
        if (chainId == 0 || bridge == address(0)) revert ZeroAddress();
        counterpartChainId = chainId;
        counterpartBridge = bridge;
        recoveryBlockNumber = startBlock;
        emit CounterpartSet(chainId, bridge, startBlock);
    }

    /// @inheritdoc IBridge
    function registerOperator(address operator) external onlyOwner {
        _addOperator(operator);
    }

    /// @inheritdoc IBridge
    /// @dev The operator's open votes stop counting; they count again if it is re-registered.
    function deregisterOperator(address operator) external onlyOwner {
        uint256 slot = _operatorSlot[operator];
        if (slot == 0) revert OperatorUnknown(operator);
        uint256 remaining = _operators.length - 1;
        if (remaining < _threshold) revert ThresholdAboveOperators(_threshold, remaining);
        uint256 index = (slot & 0xff) - 1;
        uint256 bit = (slot >> 8) - 1;
        address last = _operators[remaining];
        _operators[index] = last;
        _operatorSlot[last] = (_operatorSlot[last] & ~uint256(0xff)) | (index + 1);
        _operators.pop();
        delete _operatorSlot[operator];
        // Its votes stop counting now; its bit is free once every nonce it may have voted is handled.
        _activeBits &= ~_bit32(bit);
        _bitFreeAt[bit] = _bitVotedUpTo[bit];
        emit OperatorDeregistered(operator);
    }

    /// @inheritdoc IBridge
    function setThreshold(uint256 newThreshold) external onlyOwner {
        _setThreshold(newThreshold);
    }

    /// @inheritdoc IBridge
    /// @dev `remoteToken` is the counterpart-chain token that handles name in `Request.token`.
    function registerTokenPair(address localToken, address remoteToken, uint8 mode) external onlyOwner {
        if (localToken == address(0) || remoteToken == address(0)) revert ZeroAddress();
        if (localToken.code.length == 0) revert NotAContract(localToken);
        if (mode > MODE_ERC721_BURN_MINT) revert UnknownMode(mode);
        if (_tokenPairs[localToken].registered) revert TokenPairExists(localToken);
        if (localTokenFor[remoteToken] != address(0)) revert TokenPairExists(remoteToken);
        _tokenPairs[localToken] = TokenPair({remoteToken: remoteToken, mode: mode, locked: false, registered: true});
        localTokenFor[remoteToken] = localToken;
        emit TokenPairRegistered(localToken, remoteToken, mode);
    }

    /// @inheritdoc IBridge
    function deregisterTokenPair(address localToken) external onlyOwner {
        TokenPair storage pair = _registeredPair(localToken);
        address remoteToken = pair.remoteToken;
        delete _tokenPairs[localToken];
        delete localTokenFor[remoteToken];
        emit TokenPairDeregistered(localToken, remoteToken);
    }

    /// @inheritdoc IBridge
    /// @dev A locked token is refused by requests and its handles cannot execute.
    function setTokenLocked(address localToken, bool locked) external onlyOwner {
        _registeredPair(localToken).locked = locked;
        emit TokenLockChanged(localToken, locked);
    }

    /// @inheritdoc IBridge
    /// @dev `token` is a local token, address(0) for native coin; a cap of 0 means no cap.
    function setTransferCap(address token, uint256 cap) external onlyOwner {
        transferCap[token] = cap;
        emit TransferCapChanged(token, cap);
    }

    /// @inheritdoc IBridge
    /// @dev `capacity` 0 disables the limit; otherwise the bucket starts full.
    function setRateLimit(address token, uint256 capacity, uint256 refillPerSecond) external onlyOwner {
        if (capacity == 0) {
            delete _rateLimits[token];
        } else {
            _rateLimits[token] = RateBucket({
                capacity: capacity, refillPerSecond: refillPerSecond, tokens: capacity, updatedAt: block.timestamp
            });
        }
        emit RateLimitChanged(token, capacity, refillPerSecond);
    }

    /// @inheritdoc IBridge
    function setOutflowLimit(address token, uint128 capacity, uint128 refillPerSecond, uint256 delayAbove)
        external
        onlyOwner
    {
        _outflow[token] = OutflowBucket({
            capacity: capacity, refillPerSecond: refillPerSecond, tokens: capacity, updatedAt: uint64(block.timestamp)
        });
        _delayAbove[token] = delayAbove;
        emit OutflowLimitChanged(token, capacity, refillPerSecond, delayAbove);
    }

    /// @inheritdoc IBridge
    function setReleaseDelay(uint64 delay) external onlyOwner {
        if (delay > MAX_RELEASE_DELAY) revert ReleaseDelayTooLong(delay, MAX_RELEASE_DELAY);
        releaseDelay = delay;
        emit ReleaseDelayChanged(delay);
    }

    /// @inheritdoc IBridge
    /// @dev Flat fee in native coin per request of `token` (address(0) for native requests).
    /// A non-zero fee needs a fee receiver.
    function setFee(address token, uint256 newFee) external onlyOwner {
        if (newFee != 0 && feeReceiver == address(0)) revert ZeroAddress();
        fee[token] = newFee;
        emit FeeChanged(token, newFee);
    }

    /// @inheritdoc IBridge
    function setFeeReceiver(address receiver) external onlyOwner {
        if (receiver == address(0)) revert ZeroAddress();
        feeReceiver = receiver;
        emit FeeReceiverChanged(receiver);
    }

    /// @inheritdoc IBridge
    function setPauser(address pauser, bool enabled) external onlyOwner {
        if (pauser == address(0)) revert ZeroAddress();
        isPauser[pauser] = enabled;
        emit PauserChanged(pauser, enabled);
    }

    /// @inheritdoc IBridge
    /// @dev Pausers and the owner may pause; requests and handles stop, fund() and withdraw() stay open.
    function pause() external {
        if (!isPauser[msg.sender] && msg.sender != owner) revert NotPauser(msg.sender);
        paused = true;
        emit PausedChanged(true);
    }

    /// @inheritdoc IBridge
    function unpause() external onlyOwner {
        paused = false;
        emit PausedChanged(false);
    }

    /// @inheritdoc IBridge
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @inheritdoc IBridge
    /// @dev Anyone may call it; it only moves bookkeeping over nonces already handled.
    function advanceLowerHandleNonce(uint256 maxSteps) external nonReentrant returns (uint64 lower) {
        uint64 before = lowerHandleNonce;
        (lower,) = _advance(before, upperHandleNonce, maxSteps);
        if (lower != before) {
            lowerHandleNonce = lower;
            emit LowerHandleNonceAdvanced(before, lower);
        }
    }
    /// @notice Every call of IBridgeExtension: its code runs in this contract's storage
    /// (`delegatecall`); EIP-170 leaves the bridge no room for it. Any other call reverts there.
    fallback() external {
        address target = extension;
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), target, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }
}
