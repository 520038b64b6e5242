//! `alloy::sol!` bindings built from the committed artifacts (ABI + bytecode).
//!
//! Regenerate the artifacts with `node contracts/scripts/compile.cjs`; the test suite fails if
//! they drift from the Solidity sources.
#![allow(missing_docs, clippy::too_many_arguments)]

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    Bridge,
    "artifacts/Bridge.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    ServiceRegistry,
    "artifacts/ServiceRegistry.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    TestToken,
    "artifacts/TestToken.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    TestNFT,
    "artifacts/TestNFT.json"
);

alloy::sol!(
    /// A hostile recipient for tests: cheap when simulated, burns its gas on chain.
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    GasPriceGriefer,
    "artifacts/GasPriceGriefer.json"
);

alloy::sol!(
    /// The ERC-721 calls a user-facing command makes on any collection.
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    interface IERC721 {
        function approve(address to, uint256 tokenId) external;
        function ownerOf(uint256 tokenId) external view returns (address);
        function getApproved(uint256 tokenId) external view returns (address);
        function isApprovedForAll(address owner, address operator) external view returns (bool);
    }
);

alloy::sol!(
    /// ERC-165 interface detection (how `admin apply` tells an ERC-721 from an ERC-20).
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    interface IERC165 {
        function supportsInterface(bytes4 interfaceId) external view returns (bool);
    }
);

alloy::sol!(
    /// The ERC-20 calls a user-facing command makes on any token.
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    interface IERC20 {
        function approve(address spender, uint256 amount) external returns (bool);
        function decimals() external view returns (uint8);
        function balanceOf(address account) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
    }
);

/// DEVNET ONLY: the Bridge that fakes a long history for the join benchmark (its own module:
/// its ABI repeats the Bridge's shared types).
pub mod history {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        HistoryBridge,
        "artifacts/HistoryBridge.json"
    );
}
