// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @dev The receiver hook of ERC-721 `safeTransferFrom` and safe mints.
interface IERC721Receiver {
    function onERC721Received(address operator, address from, uint256 tokenId, bytes calldata data)
        external
        returns (bytes4);
}

/// @title A plain ERC-721 with owner-managed minters, for tests and devnets.
/// @notice Burn-mode bridges need the mint role. `mint` is safe: a contract recipient must accept
/// the token (`onERC721Received`), as with `safeTransferFrom`. Holders (or whoever they approved)
/// burn with `burn`.
contract TestNFT {
    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
    event Approval(address indexed owner, address indexed approved, uint256 indexed tokenId);
    event ApprovalForAll(address indexed owner, address indexed operator, bool approved);
    event MinterChanged(address indexed minter, bool enabled);

    error NotOwner(address caller);
    error NotMinter(address caller);
    error ZeroAddress();
    error NonexistentToken(uint256 tokenId);
    error TokenExists(uint256 tokenId);
    error NotAuthorized(address caller, uint256 tokenId);
    error WrongFrom(address from, address owner);
    error UnsafeRecipient(address to);

    string public name;
    string public symbol;
    /// @notice The deployer; manages minters and may mint.
    address public immutable owner;

    mapping(address => bool) public isMinter;
    mapping(address => uint256) public balanceOf;
    mapping(uint256 => address) private _owners;
    mapping(uint256 => address) public getApproved;
    mapping(address => mapping(address => bool)) public isApprovedForAll;

    constructor(string memory name_, string memory symbol_) {
        name = name_;
        symbol = symbol_;
        owner = msg.sender;
    }

    /// @notice ERC-165: ERC-165 itself, ERC-721 and ERC-721 Metadata.
    function supportsInterface(bytes4 id) external pure returns (bool) {
        return id == 0x01ffc9a7 || id == 0x80ac58cd || id == 0x5b5e139f;
    }

    /// @notice The holder of `tokenId`; reverts for a token that does not exist.
    function ownerOf(uint256 tokenId) public view returns (address holder) {
        holder = _owners[tokenId];
        if (holder == address(0)) revert NonexistentToken(tokenId);
    }

    /// @notice Whether `tokenId` exists (minted and not burned).
    function exists(uint256 tokenId) external view returns (bool) {
        return _owners[tokenId] != address(0);
    }

    function approve(address to, uint256 tokenId) external {
        address holder = ownerOf(tokenId);
        if (msg.sender != holder && !isApprovedForAll[holder][msg.sender]) revert NotAuthorized(msg.sender, tokenId);
        getApproved[tokenId] = to;
        emit Approval(holder, to, tokenId);
    }

    function setApprovalForAll(address operator, bool approved) external {
        isApprovedForAll[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    function transferFrom(address from, address to, uint256 tokenId) public {
        address holder = ownerOf(tokenId);
        if (holder != from) revert WrongFrom(from, holder);
        if (to == address(0)) revert ZeroAddress();
        if (!_authorized(holder, msg.sender, tokenId)) revert NotAuthorized(msg.sender, tokenId);
        delete getApproved[tokenId];
        unchecked {
            balanceOf[from] -= 1; // from holds tokenId
            balanceOf[to] += 1; // bounded by the number of tokens
        }
        _owners[tokenId] = to;
        emit Transfer(from, to, tokenId);
    }

    function safeTransferFrom(address from, address to, uint256 tokenId) external {
        safeTransferFrom(from, to, tokenId, "");
    }

    function safeTransferFrom(address from, address to, uint256 tokenId, bytes memory data) public {
        transferFrom(from, to, tokenId);
        _checkReceiver(from, to, tokenId, data);
    }

    /// @notice Grants or revokes the mint role. Owner only.
    function setMinter(address minter, bool enabled) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (minter == address(0)) revert ZeroAddress();
        isMinter[minter] = enabled;
        emit MinterChanged(minter, enabled);
    }

    /// @notice Creates `tokenId` for `to` (a contract must accept it). Minters and the owner only.
    function mint(address to, uint256 tokenId) external {
        if (!isMinter[msg.sender] && msg.sender != owner) revert NotMinter(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        if (_owners[tokenId] != address(0)) revert TokenExists(tokenId);
        _owners[tokenId] = to;
        unchecked {
            balanceOf[to] += 1; // bounded by the number of tokens
        }
        emit Transfer(address(0), to, tokenId);
        _checkReceiver(address(0), to, tokenId, "");
    }

    /// @notice Destroys `tokenId`; its holder or an approved operator only.
    function burn(uint256 tokenId) external {
        address holder = ownerOf(tokenId);
        if (!_authorized(holder, msg.sender, tokenId)) revert NotAuthorized(msg.sender, tokenId);
        delete getApproved[tokenId];
        delete _owners[tokenId];
        unchecked {
            balanceOf[holder] -= 1; // holder held tokenId
        }
        emit Transfer(holder, address(0), tokenId);
    }

    function _authorized(address holder, address spender, uint256 tokenId) private view returns (bool) {
        return spender == holder || isApprovedForAll[holder][spender] || getApproved[tokenId] == spender;
    }

    /// @dev A contract recipient must answer the ERC-721 receiver hook with its selector.
    function _checkReceiver(address from, address to, uint256 tokenId, bytes memory data) private {
        if (to.code.length == 0) return;
        try IERC721Receiver(to).onERC721Received(msg.sender, from, tokenId, data) returns (bytes4 answer) {
            if (answer != IERC721Receiver.onERC721Received.selector) revert UnsafeRecipient(to);
        } catch (bytes memory reason) {
            if (reason.length == 0) revert UnsafeRecipient(to);
            assembly ("memory-safe") {
                revert(add(reason, 32), mload(reason))
            }
        }
    }
}
