// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title A plain ERC-20 with owner-managed minters, for tests and devnets.
/// @notice Burn-mode bridges need the mint role; holders burn their own balance with `burn`.
/// An allowance of type(uint256).max is never decreased.
contract TestToken {
    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event MinterChanged(address indexed minter, bool enabled);

    error NotOwner(address caller);
    error NotMinter(address caller);
    error ZeroAddress();
    error InsufficientBalance(address account, uint256 balance, uint256 needed);
    error InsufficientAllowance(address spender, uint256 allowance, uint256 needed);

    string public name;
    string public symbol;
    uint8 public immutable decimals;
    /// @notice The deployer; manages minters and may mint.
    address public immutable owner;

    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    mapping(address => bool) public isMinter;

    constructor(string memory name_, string memory symbol_, uint8 decimals_) {
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
        owner = msg.sender;
    }

    /// @notice Moves `amount` from the caller to `to`.
    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    /// @notice Moves `amount` from `from` to `to` using the caller's allowance.
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < amount) revert InsufficientAllowance(msg.sender, allowed, amount);
            allowance[from][msg.sender] = allowed - amount;
        }
        _transfer(from, to, amount);
        return true;
    }

    /// @notice Lets `spender` move up to `amount` of the caller's tokens.
    function approve(address spender, uint256 amount) external returns (bool) {
        if (spender == address(0)) revert ZeroAddress();
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    /// @notice Grants or revokes the mint role. Owner only.
    function setMinter(address minter, bool enabled) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (minter == address(0)) revert ZeroAddress();
        isMinter[minter] = enabled;
        emit MinterChanged(minter, enabled);
    }

    /// @notice Creates `amount` tokens for `to`. Minters and the owner only.
    function mint(address to, uint256 amount) external {
        if (!isMinter[msg.sender] && msg.sender != owner) revert NotMinter(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        totalSupply += amount;
        unchecked {
            balanceOf[to] += amount; // cannot overflow: bounded by totalSupply
        }
        emit Transfer(address(0), to, amount);
    }

    /// @notice Destroys `amount` of the caller's tokens.
    function burn(uint256 amount) external {
        _debit(msg.sender, amount);
        unchecked {
            totalSupply -= amount; // cannot underflow: the balance was part of it
        }
        emit Transfer(msg.sender, address(0), amount);
    }

    /// @dev Moves tokens; overridable so tests can model non-standard tokens.
    function _transfer(address from, address to, uint256 amount) internal virtual {
        if (to == address(0)) revert ZeroAddress();
        _debit(from, amount);
        unchecked {
            balanceOf[to] += amount; // cannot overflow: bounded by totalSupply
        }
        emit Transfer(from, to, amount);
    }

    function _debit(address account, uint256 amount) internal {
        uint256 balance = balanceOf[account];
        if (balance < amount) revert InsufficientBalance(account, balance, amount);
        unchecked {
            balanceOf[account] = balance - amount;
        }
    }
}
