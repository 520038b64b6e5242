//! The label values of the relay's metrics: one enum per label with its stable names, and the
//! full sets every series is initialised with.

use multibridge_contracts::{RequestStatus, WaitReason};

/// Outcome of one vote transaction (label `outcome` of `vote_transactions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteTxOutcome {
    /// Mined and succeeded.
    Mined,
    /// Mined and reverted (other than out of gas).
    Reverted,
    /// Mined and reverted having used its whole gas limit.
    OutOfGas,
    /// Re-sent with higher fees under a new hash.
    Replaced,
    /// Stuck with its bid at the cap (`max_fee_gwei`, or four times its first bid): re-broadcast
    /// as it was, not raised.
    AtFeeCap,
    /// Its nonce was consumed by a transaction this relay does not know.
    Superseded,
}

impl VoteTxOutcome {
    /// Every outcome.
    pub const ALL: [Self; 6] = [
        Self::Mined,
        Self::Reverted,
        Self::OutOfGas,
        Self::Replaced,
        Self::AtFeeCap,
        Self::Superseded,
    ];

    /// Stable label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mined => "mined",
            Self::Reverted => "reverted",
            Self::OutOfGas => "out_of_gas",
            Self::Replaced => "replaced",
            Self::AtFeeCap => "at_fee_cap",
            Self::Superseded => "superseded",
        }
    }
}

/// Why a request needed no vote from this relay (label `reason` of `votes_skipped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Already executed on the destination.
    AlreadyHandled,
    /// This operator's vote is already on chain.
    AlreadyVoted,
}

impl SkipReason {
    /// Every reason.
    pub const ALL: [Self; 2] = [Self::AlreadyHandled, Self::AlreadyVoted];

    /// Stable label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyHandled => "already_handled",
            Self::AlreadyVoted => "already_voted",
        }
    }
}

/// Which rule had a standby vote a request another operator is first for (label `rule` of
/// `standby_votes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyRule {
    /// The lane's handles passed it by: a primary is missing.
    Passed,
    /// Old enough, and the lane's handles stand still.
    Stalled,
    /// Old enough to vote whatever the lane does.
    Cap,
}

impl StandbyRule {
    /// Every rule.
    pub const ALL: [Self; 3] = [Self::Passed, Self::Stalled, Self::Cap];

    /// Stable label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Stalled => "stalled",
            Self::Cap => "cap",
        }
    }
}

/// Why a lane's sending is paused while the relay keeps indexing and serving (label `reason`
/// of `sending_paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendingPause {
    /// The signer cannot pay for gas on the destination.
    InsufficientFunds,
    /// The signer (HSM, KMS) fails or hangs.
    SignerUnavailable,
}

impl SendingPause {
    /// Every reason.
    pub const ALL: [Self; 2] = [Self::InsufficientFunds, Self::SignerUnavailable];

    /// Stable label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientFunds => "insufficient_funds",
            Self::SignerUnavailable => "signer_unavailable",
        }
    }
}

/// Outcome of one RPC attempt (label `outcome` of `rpc_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcOutcome {
    /// Answered.
    Ok,
    /// A transient failure of the endpoint or the network.
    Retryable,
    /// The endpoint asked to slow down.
    RateLimited,
    /// The request itself was refused (reverts, invalid params).
    Fatal,
}

impl RpcOutcome {
    /// Every outcome.
    pub const ALL: [Self; 4] = [Self::Ok, Self::Retryable, Self::RateLimited, Self::Fatal];

    /// Stable label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retryable => "retryable",
            Self::RateLimited => "rate_limited",
            Self::Fatal => "fatal",
        }
    }
}

/// Outcome of one etcd attempt (label `outcome` of `etcd_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdOutcome {
    /// Answered.
    Ok,
    /// Failed.
    Error,
    /// No answer in time.
    Timeout,
    /// Still unanswered, past the configured bound, when the call it belonged to ended (a race
    /// answered elsewhere or out of time): its connection is made again before the next attempt.
    Abandoned,
}

impl EtcdOutcome {
    /// Every outcome.
    pub const ALL: [Self; 4] = [Self::Ok, Self::Error, Self::Timeout, Self::Abandoned];

    /// Stable label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Abandoned => "abandoned",
        }
    }
}

/// Outcome of a service-registry write (label `outcome` of `registry_updates_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryUpdate {
    /// Mined and succeeded.
    Updated,
    /// Reverted, refused or timed out.
    Failed,
    /// Not sent: the leader's URL in etcd is none of the operator's configured replica URLs.
    RefusedUrl,
}

impl RegistryUpdate {
    /// Every outcome.
    pub const ALL: [Self; 3] = [Self::Updated, Self::Failed, Self::RefusedUrl];

    /// Stable label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Failed => "failed",
            Self::RefusedUrl => "refused_url",
        }
    }
}

/// Stable outcome labels of vote transactions.
pub const VOTE_TX_OUTCOMES: [&str; VoteTxOutcome::ALL.len()] = [
    VoteTxOutcome::Mined.as_str(),
    VoteTxOutcome::Reverted.as_str(),
    VoteTxOutcome::OutOfGas.as_str(),
    VoteTxOutcome::Replaced.as_str(),
    VoteTxOutcome::AtFeeCap.as_str(),
    VoteTxOutcome::Superseded.as_str(),
];
/// Stable steps of the refund path (`refund_steps_total{step}`).
pub const REFUND_STEPS: [&str; 7] = [
    "asked",
    "ask_refused",
    "cancel_voted",
    "cancelled",
    "signed",
    "refund_sent",
    "refunded",
];
/// Stable reasons a request was not voted by this relay (it needed no vote).
pub const VOTE_SKIP_REASONS: [&str; 2] = [
    SkipReason::AlreadyHandled.as_str(),
    SkipReason::AlreadyVoted.as_str(),
];
/// Stable reasons a lane leader handed its lane over: its destination or its source chain did
/// not answer, or its signer failed, for longer than `[etcd] step_down_after_secs`.
pub const HANDOVER_REASONS: [&str; 3] = ["destination_rpc", "source_rpc", "signer"];
/// Stable RPC outcome labels.
pub const RPC_OUTCOMES: [&str; 4] = [
    RpcOutcome::Ok.as_str(),
    RpcOutcome::Retryable.as_str(),
    RpcOutcome::RateLimited.as_str(),
    RpcOutcome::Fatal.as_str(),
];
/// Why a request waits, as the destination tells (the store's stable names).
pub const STUCK_REASONS: [&str; 8] = [
    WaitReason::InsufficientLiquidity.as_str(),
    WaitReason::TokenLocked.as_str(),
    WaitReason::TokenNotRegistered.as_str(),
    WaitReason::Paused.as_str(),
    WaitReason::RateLimited.as_str(),
    WaitReason::Delayed.as_str(),
    WaitReason::Other.as_str(),
    WaitReason::VoteWindow.as_str(),
];
/// The `asset` label of the native coin (tokens are labelled with their source address).
pub const NATIVE_ASSET: &str = "native";
/// Outcomes of one etcd attempt.
pub const ETCD_OUTCOMES: [&str; 4] = [
    EtcdOutcome::Ok.as_str(),
    EtcdOutcome::Error.as_str(),
    EtcdOutcome::Timeout.as_str(),
    EtcdOutcome::Abandoned.as_str(),
];
/// The etcd call a leader makes every third of its lease TTL (its series exist from the start).
pub const ETCD_KEEP_ALIVE: &str = "lease keep-alive";
/// The read of every leader key a process's standbys follow (one transaction; its series exist
/// from the start).
pub const ETCD_LEADER_KEYS: &str = "read leader keys";
/// The read of every lane leader key the process's registry syncs publish (one transaction a
/// round for every pair).
pub const ETCD_REGISTRY_LEADER_KEYS: &str = "read leader keys for the registry";
/// The transaction that rewrites the leader keys of a process's lane leaders (their heartbeats).
pub const ETCD_HEARTBEAT: &str = "heartbeat";
/// Outcomes of one leader-key heartbeat: rewritten, lost (the key no longer names the leader
/// under its lease), failed (etcd did not answer).
pub const ETCD_HEARTBEAT_OUTCOMES: [&str; 3] = ["rewritten", "lost", "failed"];
/// What a chain's head subscription did (`rpc_head_feed_total{event}`): made, a block pushed,
/// lost (ended, failed to connect or subscribe, or dropped as behind), found behind the reads.
pub const HEAD_FEED_EVENTS: [&str; 4] = ["connected", "header", "lost", "behind"];
/// The transaction that writes the lane progress records of a process.
pub const ETCD_PROGRESS: &str = "write progress";
/// Outcomes of one progress record: written, failed (etcd did not answer).
pub const ETCD_PROGRESS_OUTCOMES: [&str; 2] = ["written", "failed"];
/// The etcd call that reads every member's revision and database size.
pub const ETCD_STATUS: &str = "status";
/// The etcd call that compacts the cluster's key history.
pub const ETCD_COMPACT: &str = "compact history";
/// Outcomes of one history compaction: compacted, already (another process compacted at least
/// as far), failed (etcd did not answer, or refused it).
pub const ETCD_COMPACTION_OUTCOMES: [&str; 3] = ["compacted", "already", "failed"];

/// The relay's etcd pools, by name (`etcd_connects_total{pool}`): the elections' and the
/// background work's.
pub const ETCD_POOLS: [&str; 2] = ["elections", "background"];
/// Stored request statuses (the store's stable names).
pub const REQUEST_STATUSES: [&str; 5] = [
    RequestStatus::Observed.as_str(),
    RequestStatus::Voting.as_str(),
    RequestStatus::Voted.as_str(),
    RequestStatus::Handled.as_str(),
    RequestStatus::Rejected.as_str(),
];

/// Outcomes of one signature (label `outcome` of `signer_signatures_total`).
pub const SIGNATURE_OUTCOMES: [&str; 4] = ["ok", "failed", "timeout", "wrong_key"];

/// States of `conservation_nonces`.
pub const CONSERVATION_STATES: [&str; 3] = ["open", "held", "forged"];
