//! Devnet accounts, derived from anvil's well-known test mnemonic.
//!
//! DEVNET ONLY: these keys are public knowledge (every anvil and hardhat prints them). They fund
//! and sign on the local chains the devnet starts and must never hold anything of value.

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use alloy_signer_local::MnemonicBuilder;
use alloy_signer_local::coins_bip39::English;

use crate::error::DevnetError;

/// anvil's default mnemonic (public, devnet only).
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// Index of the deployer, which is also the bridges' owner and pauser.
pub const OWNER_INDEX: u32 = 0;

/// The signer at `index` of the dev mnemonic.
pub fn dev_signer(index: u32) -> Result<PrivateKeySigner, DevnetError> {
    MnemonicBuilder::<English>::default()
        .phrase(DEV_MNEMONIC)
        .index(index)
        .and_then(|b| b.build())
        .map_err(|e| DevnetError::Invalid(format!("dev key {index}: {e}")))
}

/// First mnemonic index of the guardian keys (beyond every account anvil funds).
pub const GUARDIAN_FIRST_INDEX: u32 = 1_000;
/// Guardian keys set aside per operator (one per replica).
pub const GUARDIANS_PER_OPERATOR: u32 = 16;

/// The guardian (pauser) key of replica `replica` of operator `index` (0-based): its own, so
/// two replicas' pauses never race for one nonce sequence.
pub fn guardian_signer(index: usize, replica: usize) -> Result<PrivateKeySigner, DevnetError> {
    let (index, replica) = (
        u32::try_from(index).unwrap_or(u32::MAX),
        u32::try_from(replica).unwrap_or(u32::MAX),
    );
    if replica >= GUARDIANS_PER_OPERATOR {
        return Err(DevnetError::Invalid(format!(
            "at most {GUARDIANS_PER_OPERATOR} replicas per operator have a guardian key"
        )));
    }
    dev_signer(
        GUARDIAN_FIRST_INDEX
            .saturating_add(index.saturating_mul(GUARDIANS_PER_OPERATOR))
            .saturating_add(replica),
    )
}

/// Who is who on the devnet.
#[derive(Debug, Clone)]
pub struct DevAccounts {
    /// Deployer, owner and pauser of every contract.
    pub owner: PrivateKeySigner,
    /// One signer per operator.
    pub operators: Vec<PrivateKeySigner>,
    /// Users with native coin on both chains and test tokens on the main chain.
    pub users: Vec<PrivateKeySigner>,
}

impl DevAccounts {
    /// Owner at index 0, operators at 1..=n, users after them.
    pub fn derive(operators: u32, users: u32) -> Result<Self, DevnetError> {
        let first_user = operators.saturating_add(1);
        Ok(Self {
            owner: dev_signer(OWNER_INDEX)?,
            operators: (1..=operators).map(dev_signer).collect::<Result<_, _>>()?,
            users: (first_user..first_user.saturating_add(users))
                .map(dev_signer)
                .collect::<Result<_, _>>()?,
        })
    }

    /// How many accounts anvil must fund.
    pub fn count(&self) -> u32 {
        u32::try_from(self.operators.len() + self.users.len() + 1).unwrap_or(u32::MAX)
    }

    /// Operator addresses.
    pub fn operator_addresses(&self) -> Vec<Address> {
        self.operators.iter().map(|s| s.address()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_dev_key_is_anvils_account_zero() {
        // anvil prints this address as account (0) for the default mnemonic.
        let expected: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            .parse()
            .unwrap();
        assert_eq!(dev_signer(0).unwrap().address(), expected);
    }
}
