//! The committed artifacts as data: a deployed contract's runtime code is checked against them
//! (`multibridge deploy` refuses to go on with code that is not what this repository compiled).

use alloy::primitives::{Bytes, U256};
use serde::Deserialize;

/// A deployable contract of this repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployable {
    /// `Bridge`.
    Bridge,
    /// `ServiceRegistry`.
    ServiceRegistry,
}

impl Deployable {
    /// The contract's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bridge => "Bridge",
            Self::ServiceRegistry => "ServiceRegistry",
        }
    }

    fn artifact(self) -> &'static str {
        match self {
            Self::Bridge => include_str!("../artifacts/Bridge.json"),
            Self::ServiceRegistry => include_str!("../artifacts/ServiceRegistry.json"),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Artifact {
    deployed_bytecode: Bytes,
    #[serde(default)]
    immutable_references: std::collections::BTreeMap<String, Vec<Range>>,
}

#[derive(Deserialize, Clone, Copy)]
struct Range {
    start: usize,
    length: usize,
}

/// Why deployed code is not the artifact's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeMismatch {
    /// No code at the address.
    #[error("no code at the address")]
    NoCode,
    /// Another length.
    #[error("{actual} bytes of runtime code, the artifact has {expected}")]
    Length {
        /// The artifact's.
        expected: usize,
        /// On chain.
        actual: usize,
    },
    /// A byte outside the immutables differs.
    #[error("the runtime code differs from the artifact at byte {0}")]
    Differs(usize),
    /// An immutable holds another value than expected.
    #[error("immutable at byte {at} holds {actual}, expected {expected}")]
    Immutable {
        /// Offset.
        at: usize,
        /// Expected value.
        expected: U256,
        /// Found.
        actual: U256,
    },
    /// The artifact itself does not parse (a build problem).
    #[error("the committed artifact does not parse: {0}")]
    Artifact(String),
}

/// Check `code` (from `eth_getCode`) against the committed artifact of `contract`: equal byte for
/// byte outside the immutables, and every immutable equal to `immutables` (one value for all of
/// them: `Bridge` has one, `deployChainId`; none for `ServiceRegistry`).
pub fn check_runtime(
    contract: Deployable,
    code: &[u8],
    immutables: Option<U256>,
) -> Result<(), CodeMismatch> {
    let artifact: Artifact = serde_json::from_str(contract.artifact())
        .map_err(|e| CodeMismatch::Artifact(e.to_string()))?;
    let expected = artifact.deployed_bytecode.as_ref();
    if code.is_empty() {
        return Err(CodeMismatch::NoCode);
    }
    if code.len() != expected.len() {
        return Err(CodeMismatch::Length {
            expected: expected.len(),
            actual: code.len(),
        });
    }
    let ranges: Vec<Range> = artifact
        .immutable_references
        .values()
        .flatten()
        .copied()
        .collect();
    let masked = |i: usize| {
        ranges
            .iter()
            .any(|r| i >= r.start && i < r.start.saturating_add(r.length))
    };
    if let Some(i) = (0..code.len()).find(|&i| !masked(i) && code.get(i) != expected.get(i)) {
        return Err(CodeMismatch::Differs(i));
    }
    if let Some(want) = immutables {
        for r in &ranges {
            let end = r.start.saturating_add(r.length);
            let Some(slot) = code.get(r.start..end) else {
                return Err(CodeMismatch::Differs(r.start));
            };
            let actual = U256::from_be_slice(slot);
            if actual != want {
                return Err(CodeMismatch::Immutable {
                    at: r.start,
                    expected: want,
                    actual,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bridge_code_for(chain_id: u64) -> Vec<u8> {
        let artifact: Artifact = serde_json::from_str(Deployable::Bridge.artifact()).unwrap();
        let mut code = artifact.deployed_bytecode.to_vec();
        for r in artifact.immutable_references.values().flatten() {
            code[r.start..r.start + r.length]
                .copy_from_slice(&U256::from(chain_id).to_be_bytes::<32>());
        }
        code
    }

    #[test]
    fn deployed_code_is_checked_outside_and_inside_the_immutables() {
        let code = bridge_code_for(31_337);
        assert_eq!(
            check_runtime(Deployable::Bridge, &code, Some(U256::from(31_337))),
            Ok(())
        );
        assert!(matches!(
            check_runtime(Deployable::Bridge, &code, Some(U256::from(1))),
            Err(CodeMismatch::Immutable { .. })
        ));
        let mut tampered = code.clone();
        tampered[100] ^= 1;
        assert_eq!(
            check_runtime(Deployable::Bridge, &tampered, None),
            Err(CodeMismatch::Differs(100))
        );
        assert!(matches!(
            check_runtime(Deployable::Bridge, &code[..code.len() - 1], None),
            Err(CodeMismatch::Length { .. })
        ));
        assert_eq!(
            check_runtime(Deployable::ServiceRegistry, &[], None),
            Err(CodeMismatch::NoCode)
        );
        assert!(matches!(
            check_runtime(Deployable::ServiceRegistry, &code, None),
            Err(CodeMismatch::Length { .. })
        ));
    }

    /// EIP-170: what mainnet and most EVM chains accept as one contract's runtime code. The
    /// Bridge is close to it; a change that crosses it could no longer be deployed on a real
    /// chain (anvil would accept it with a flag, so the devnet alone would not show it).
    #[test]
    fn every_deployable_fits_eip_170() {
        const EIP_170: usize = 24_576;
        for contract in [Deployable::Bridge, Deployable::ServiceRegistry] {
            let artifact: Artifact = serde_json::from_str(contract.artifact()).unwrap();
            let size = artifact.deployed_bytecode.len();
            assert!(
                size <= EIP_170,
                "{} runtime code is {size} bytes, above EIP-170's {EIP_170}",
                contract.name()
            );
        }
    }
}
