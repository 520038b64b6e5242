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
    /// `BridgeExtension`: deployed by the bridge's constructor (its first `CREATE`, so at
    /// `bridge.create(1)`), run by the bridge's fallback.
    BridgeExtension,
}

impl Deployable {
    /// The contract's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bridge => "Bridge",
            Self::ServiceRegistry => "ServiceRegistry",
            Self::BridgeExtension => "BridgeExtension",
        }
    }

    fn artifact(self) -> &'static str {
        match self {
            Self::Bridge => include_str!("../artifacts/Bridge.json"),
            Self::ServiceRegistry => include_str!("../artifacts/ServiceRegistry.json"),
            Self::BridgeExtension => include_str!("../artifacts/BridgeExtension.json"),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Artifact {
    deployed_bytecode: Bytes,
    #[serde(default)]
    immutable_references: std::collections::BTreeMap<String, Vec<Range>>,
    /// AST id -> name of each immutable.
    #[serde(default)]
    immutable_names: std::collections::BTreeMap<String, String>,
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
    /// An immutable the check was given no value for (a build problem: the artifact has an
    /// immutable the caller does not know).
    #[error("no expected value for the immutable `{0}`")]
    UnknownImmutable(String),
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
/// byte outside the immutables, and with `immutables`, every immutable equal to the value given
/// for its name (`Bridge`: `deployChainId` and `extension`; `BridgeExtension`: `deployChainId`
/// and `_self`, its own address; none for `ServiceRegistry`). `None` checks the code only.
pub fn check_runtime(
    contract: Deployable,
    code: &[u8],
    immutables: Option<&[(&str, U256)]>,
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
    // Every range with the value expected for its immutable.
    let mut expected_values: Vec<(Range, U256)> = Vec::new();
    if let Some(want) = immutables {
        for (id, refs) in &artifact.immutable_references {
            let name = artifact
                .immutable_names
                .get(id)
                .map_or(id.as_str(), String::as_str);
            let value = want
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| CodeMismatch::UnknownImmutable(name.to_owned()))?;
            expected_values.extend(refs.iter().map(|r| (*r, value)));
        }
    }
    let masked = |i: usize| {
        ranges
            .iter()
            .any(|r| i >= r.start && i < r.start.saturating_add(r.length))
    };
    if let Some(i) = (0..code.len()).find(|&i| !masked(i) && code.get(i) != expected.get(i)) {
        return Err(CodeMismatch::Differs(i));
    }
    {
        for (r, want) in &expected_values {
            let want = *want;
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

    const EXTENSION: U256 = U256::from_limbs([0xe7, 0, 0, 0]);

    /// The bridge's runtime code as deployed on `chain_id` with its extension at `EXTENSION`.
    fn bridge_code_for(chain_id: u64) -> Vec<u8> {
        let artifact: Artifact = serde_json::from_str(Deployable::Bridge.artifact()).unwrap();
        let mut code = artifact.deployed_bytecode.to_vec();
        for (id, refs) in &artifact.immutable_references {
            let value = match artifact.immutable_names[id].as_str() {
                "deployChainId" => U256::from(chain_id),
                "extension" => EXTENSION,
                other => panic!("unknown immutable {other}"),
            };
            for r in refs {
                code[r.start..r.start + r.length].copy_from_slice(&value.to_be_bytes::<32>());
            }
        }
        code
    }

    #[test]
    fn deployed_code_is_checked_outside_and_inside_the_immutables() {
        let code = bridge_code_for(31_337);
        let right = [
            ("deployChainId", U256::from(31_337)),
            ("extension", EXTENSION),
        ];
        assert_eq!(
            check_runtime(Deployable::Bridge, &code, Some(&right)),
            Ok(())
        );
        assert!(matches!(
            check_runtime(
                Deployable::Bridge,
                &code,
                Some(&[("deployChainId", U256::from(1)), ("extension", EXTENSION)])
            ),
            Err(CodeMismatch::Immutable { .. })
        ));
        // Another extension than the one the bridge's constructor made.
        assert!(matches!(
            check_runtime(
                Deployable::Bridge,
                &code,
                Some(&[
                    ("deployChainId", U256::from(31_337)),
                    ("extension", U256::from(1))
                ])
            ),
            Err(CodeMismatch::Immutable { .. })
        ));
        assert_eq!(
            check_runtime(
                Deployable::Bridge,
                &code,
                Some(&[("deployChainId", U256::from(31_337))])
            ),
            Err(CodeMismatch::UnknownImmutable("extension".into()))
        );
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
        for contract in [
            Deployable::Bridge,
            Deployable::BridgeExtension,
            Deployable::ServiceRegistry,
        ] {
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
