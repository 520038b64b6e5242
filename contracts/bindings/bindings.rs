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
