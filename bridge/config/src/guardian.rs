//! The `[guardian]` section: a pauser key this replica acts with when it sees a forged release
//! or broken conservation (never the operator key: a guardian must still act when the
//! operator keys are the ones compromised, and the pause must not spend the votes' nonces).

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

use crate::Problem;
use crate::operator::{SignerConfig, SignerField};

/// The guardian's key and tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardianConfig {
    /// The pauser's address; startup fails if the key is not its key, or if it is not a pauser
    /// of both bridges.
    pub address: Address,
    /// Where the pauser key comes from (any signer kind).
    pub signer: SignerConfig,
    /// A release whose source request this relay cannot find counts as forged only while the
    /// source chain's latest block is at most this old (a source node that fell behind would
    /// otherwise make every fresh release look forged).
    #[serde(default = "default_source_stale_secs")]
    pub source_stale_secs: u64,
    /// Pause the other bridge of the pair too (the same threshold of keys votes there).
    #[serde(default = "default_true")]
    pub pause_both: bool,
}

fn default_source_stale_secs() -> u64 {
    60
}

fn default_true() -> bool {
    true
}

impl GuardianConfig {
    /// The first problem with the section; `operator` is the operator's address.
    pub fn problem(&self, operator: Address) -> Option<Problem> {
        if self.address == operator {
            return Some((
                "guardian.address",
                "the guardian key must not be the operator key: give it a pauser key of its own"
                    .into(),
            ));
        }
        if self.source_stale_secs == 0 {
            return Some(("guardian.source_stale_secs", "must be at least 1".into()));
        }
        self.signer.problem(SignerField::Guardian)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::Secret;

    fn guardian(address: Address) -> GuardianConfig {
        GuardianConfig {
            address,
            signer: SignerConfig::DevKey {
                private_key: Secret::new("0x01"),
            },
            source_stale_secs: 60,
            pause_both: true,
        }
    }

    #[test]
    fn the_operator_key_is_refused_as_the_guardian_key() {
        let operator = Address::repeat_byte(1);
        let (field, why) = guardian(operator).problem(operator).unwrap();
        assert_eq!(field, "guardian.address");
        assert!(why.contains("operator key"), "{why}");
        assert!(
            guardian(Address::repeat_byte(2))
                .problem(operator)
                .is_none()
        );
    }

    #[test]
    fn a_keystore_without_a_password_is_named_under_guardian() {
        let mut g = guardian(Address::repeat_byte(2));
        g.signer = SignerConfig::Keystore {
            path: "k.json".into(),
            password_file: None,
            password_env: None,
        };
        assert_eq!(
            g.problem(Address::repeat_byte(1)).unwrap().0,
            "guardian.signer"
        );
    }

    #[test]
    fn the_section_parses_with_its_defaults() {
        let g: GuardianConfig = toml::from_str(
            "address = \"0x0202020202020202020202020202020202020202\"\n\
             signer = { kind = \"dev-key\", private_key = \"0x01\" }\n",
        )
        .unwrap();
        assert_eq!((g.source_stale_secs, g.pause_both), (60, true));
    }
}
