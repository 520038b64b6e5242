//! Why the relay cannot start or had to stop: each variant says what to fix.

use alloy::primitives::Address;
use multibridge_contracts::ChainRole;

use crate::chain::signer::open::KeyError;
use crate::chain::{ChainError, ViewError};
use crate::store::StoreError;

/// Why the relay cannot start or had to stop. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A chain misbehaved.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A chain's bridge could not be read.
    #[error(transparent)]
    View(#[from] ViewError),
    /// No configured endpoint of a chain answered.
    #[error("{chain}: none of rpc_urls answers; check the node and the URLs")]
    Unreachable {
        /// Chain.
        chain: ChainRole,
    },
    /// There is no contract at the configured bridge address.
    #[error("{chain}: no contract code at bridge address {address}; check chains.{chain}.bridge")]
    NoBridgeCode {
        /// Chain.
        chain: ChainRole,
        /// Configured address.
        address: Address,
    },
    /// The operator is not registered in a bridge.
    #[error(
        "{chain}: {operator} is not a registered operator of bridge {bridge}; ask the bridge owner to register it"
    )]
    NotRegistered {
        /// Chain.
        chain: ChainRole,
        /// Operator.
        operator: Address,
        /// Bridge.
        bridge: Address,
    },
    /// The bridges do not name each other as counterparts.
    #[error(
        "{chain}: bridge {bridge} names {actual} as counterpart, expected {expected}; the configured bridges are not a pair"
    )]
    NotAPair {
        /// Chain.
        chain: ChainRole,
        /// Bridge.
        bridge: Address,
        /// Expected counterpart.
        expected: Address,
        /// What it names.
        actual: Address,
    },
    /// The signer cannot pay for votes.
    #[error("{chain}: signer {operator} has no native balance to pay for votes; fund it")]
    Unfunded {
        /// Chain.
        chain: ChainRole,
        /// Operator.
        operator: Address,
    },
    /// The guardian key is not the configured guardian address's.
    #[error("the guardian key is for {actual}, but guardian.address is {expected}")]
    GuardianKey {
        /// Configured.
        expected: Address,
        /// From the key.
        actual: Address,
    },
    /// The guardian key may not pause a bridge.
    #[error(
        "{chain}: guardian {guardian} is not a pauser of bridge {bridge}; ask the bridge owner to call setPauser({guardian}, true), or remove [guardian]"
    )]
    GuardianNotPauser {
        /// Chain.
        chain: ChainRole,
        /// The guardian's address.
        guardian: Address,
        /// Bridge.
        bridge: Address,
    },
    /// The guardian key cannot pay for a pause.
    #[error("{chain}: guardian {guardian} has no native balance to pay for a pause; fund it")]
    GuardianUnfunded {
        /// Chain.
        chain: ChainRole,
        /// The guardian's address.
        guardian: Address,
    },
    /// A lane in attested mode, but its destination bridge computes another attestation digest
    /// than this relay (or has no `executeAttested`: an older deployment).
    #[error(
        "lane {lane}: voting.mode = \"attestations\", but the destination bridge {bridge} {detail}; deploy a bridge with attested batches or set the lane's mode to \"votes\""
    )]
    AttestationsUnsupported {
        /// Lane.
        lane: multibridge_contracts::Lane,
        /// Its destination bridge.
        bridge: Address,
        /// What was found.
        detail: String,
    },
    /// The request store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request store is held by another process (or cannot be locked).
    #[error(transparent)]
    StoreLock(#[from] crate::store::lock::StoreLockError),
    /// The backup storage cannot be opened (directory, bucket settings, S3 credentials).
    #[error("backup storage: {0}")]
    BackupStorage(#[from] crate::storage::StorageError),
    /// `voting.attestation_store` cannot be opened (directory, bucket settings, S3 credentials).
    #[error("voting.attestation_store: {0}")]
    AttestationStore(crate::storage::StorageError),
    /// The backup public key is unusable.
    #[error(transparent)]
    BackupKey(#[from] crate::backup::keys::BackupKeyError),
    /// The dashboard cannot start as configured.
    #[error(transparent)]
    Dashboard(#[from] crate::dashboard::DashboardConfigError),
    /// A relay task panicked (a bug): the relay stops rather than run without it.
    #[error("a relay task panicked: {0}")]
    TaskPanicked(String),
    /// The HTTP API cannot listen where configured.
    #[error("cannot listen on http.listen {listen}: {source}; pick a free address")]
    Listen {
        /// Configured address.
        listen: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics could not be set up (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A lane task stopped on an error no retry fixes.
    #[error(transparent)]
    TaskFailed(#[from] crate::task::TaskFailed),
}

impl RelayError {
    /// The chain whose outage (or unfunded signer) this is, when waiting can fix it: at start a
    /// relay waits for such a chain instead of exiting. Everything else — a malformed config, a
    /// wrong chain id or no bridge code behind an answering URL, a wrong keystore password, an
    /// unregistered operator, bridges that are no pair — needs a person.
    pub fn waitable_chain(&self) -> Option<ChainRole> {
        let unavailable = |e: &ChainError| match e {
            ChainError::Unavailable { chain, .. } => Some(*chain),
            _ => None,
        };
        match self {
            Self::Unreachable { chain } | Self::Unfunded { chain, .. } => Some(*chain),
            Self::Chain(e) | Self::View(ViewError::Chain(e)) => unavailable(e),
            _ => None,
        }
    }
}
