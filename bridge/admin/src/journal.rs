//! The deployment journal: every transaction of `multibridge deploy`, recorded *before* it is
//! broadcast (signed bytes and hash) and again once mined. A deploy killed at any point resumes
//! from it: a step already mined is skipped, a step sent is looked up (and its same signed bytes
//! re-broadcast if the node lost them), so nothing is ever deployed twice.

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256, Bytes};
use multibridge_contracts::ChainRole;
use serde::{Deserialize, Serialize};

/// Format version of `deployment.json`.
pub const JOURNAL_VERSION: u32 = 1;

/// Where one step stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StepState {
    /// Not sent yet.
    Planned,
    /// Signed and (maybe) broadcast; not seen mined yet.
    Sent {
        /// The owner's nonce it uses.
        nonce: u64,
        /// Its hash.
        tx: B256,
        /// The signed transaction (re-broadcast as it is on resume).
        raw: Bytes,
    },
    /// Mined and successful.
    Done {
        /// The transaction.
        tx: B256,
        /// Its block.
        block: u64,
        /// The contract it created, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contract: Option<Address>,
    },
}

/// One transaction of the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What it does (`deploy Bridge`, `setCounterpart`, ...).
    pub name: String,
    /// The chain it goes to.
    pub chain: ChainRole,
    /// Where it stands.
    #[serde(flatten)]
    pub state: StepState,
}

/// One chain's part of the deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainDeployment {
    /// Chain id.
    pub chain_id: u64,
    /// The bridge.
    pub bridge: Option<Address>,
    /// The block the bridge was deployed in (where relays start indexing).
    pub bridge_block: Option<u64>,
    /// The service registry (main chain only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<Address>,
}

/// `deployment.json`: what was asked, what was done, and the resulting addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentJournal {
    /// Format version.
    pub version: u32,
    /// The deployer and first owner of every contract.
    pub owner: Address,
    /// Operators registered at deployment.
    pub operators: Vec<Address>,
    /// Votes needed.
    pub threshold: u64,
    /// Main chain.
    pub main: ChainDeployment,
    /// Service chain.
    pub service: ChainDeployment,
    /// Every transaction, in order.
    pub steps: Vec<Step>,
    /// Every step done and every check passed.
    pub complete: bool,
}

/// Why the journal cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file problem.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a journal this version reads.
    #[error("{path} is not a deployment journal this version reads: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
}

impl DeploymentJournal {
    /// The journal file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("deployment.json")
    }

    /// Read the journal in `dir` (`None`: no deployment started there).
    pub fn load(dir: &Path) -> Result<Option<Self>, JournalError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(JournalError::Io { path, source }),
        };
        let journal: Self = serde_json::from_str(&text).map_err(|e| JournalError::Format {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if journal.version != JOURNAL_VERSION {
            return Err(JournalError::Format {
                path,
                message: format!(
                    "version {} (this one reads {JOURNAL_VERSION})",
                    journal.version
                ),
            });
        }
        Ok(Some(journal))
    }

    /// Write the journal to `dir` atomically (a temporary file synced, then renamed): a crash
    /// leaves the old or the new journal, never half of one.
    pub fn save(&self, dir: &Path) -> Result<(), JournalError> {
        use std::io::Write;
        let path = Self::path(dir);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = dir.join(".deployment.json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| JournalError::Format {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_round_trips_and_a_foreign_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DeploymentJournal::load(dir.path()).unwrap().is_none());
        let journal = DeploymentJournal {
            version: JOURNAL_VERSION,
            owner: Address::repeat_byte(1),
            operators: vec![Address::repeat_byte(2)],
            threshold: 1,
            main: ChainDeployment {
                chain_id: 1,
                ..Default::default()
            },
            service: ChainDeployment::default(),
            steps: vec![
                Step {
                    name: "deploy Bridge".into(),
                    chain: ChainRole::Main,
                    state: StepState::Sent {
                        nonce: 7,
                        tx: B256::repeat_byte(3),
                        raw: Bytes::from(vec![1, 2, 3]),
                    },
                },
                Step {
                    name: "deploy Bridge".into(),
                    chain: ChainRole::Service,
                    state: StepState::Planned,
                },
            ],
            complete: false,
        };
        journal.save(dir.path()).unwrap();
        assert_eq!(DeploymentJournal::load(dir.path()).unwrap(), Some(journal));
        std::fs::write(DeploymentJournal::path(dir.path()), "{}").unwrap();
        let e = DeploymentJournal::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a deployment journal"), "{e}");
    }
}
