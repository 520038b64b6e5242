//! The vocabulary of a request's life in a relay, shared by the store (stored names), the
//! metrics (label values), the recovery worker and the CLI. Every name here is part of the
//! operator interface — database rows, metric labels, alert rules, JSON — so a name is never
//! renamed or reused once released; new variants may be added.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A request's state on the destination bridge, from one operator's point of view (what
/// `votingStatus(nonces, operator)` answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NonceState {
    /// Executed.
    Handled,
    /// Not executed; this operator's vote is on chain.
    VotedByUs,
    /// Neither: this operator's vote is needed.
    Open,
}

impl NonceState {
    /// From the two flags `votingStatus` returns for a nonce.
    pub fn from_flags(handled: bool, voted: bool) -> Self {
        match (handled, voted) {
            (true, _) => Self::Handled,
            (false, true) => Self::VotedByUs,
            (false, false) => Self::Open,
        }
    }
}

/// Where a request stands in one relay's store (DESIGN §4):
/// `observed → voting → voted → handled`, or `rejected` with a reason. A request that waits for a
/// destination condition stays open (`observed`) with a [`WaitReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Indexed from a final source block; this operator's vote is not on its way.
    Observed,
    /// A vote transaction was sent and awaits its receipt.
    Voting,
    /// This operator's vote is on chain; the threshold is not reached yet.
    Voted,
    /// Executed on the destination (by anyone's votes).
    Handled,
    /// Set aside for good: this operator will not vote it (a [`RejectReason`] says why).
    Rejected,
}

impl RequestStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Observed,
        Self::Voting,
        Self::Voted,
        Self::Handled,
        Self::Rejected,
    ];
    /// The statuses of a request that still needs work from this relay.
    pub const OPEN: [Self; 3] = [Self::Observed, Self::Voting, Self::Voted];

    /// Stable stored name and metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Observed => "observed",
            Self::Voting => "voting",
            Self::Voted => "voted",
            Self::Handled => "handled",
            Self::Rejected => "rejected",
        }
    }

    /// Whether the request still needs work from this relay.
    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

/// Why a request waits: the destination cannot execute it yet. It proceeds by itself once the
/// condition clears (funds arrive, the token is unlocked, the bridge unpaused, the bucket
/// refills, the delay passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitReason {
    /// The destination lacks the native coin or tokens to release.
    InsufficientLiquidity,
    /// The token pair is locked on the destination.
    TokenLocked,
    /// The destination knows no local token for the request's token.
    TokenNotRegistered,
    /// The destination bridge is paused.
    Paused,
    /// The destination's outflow limit for the asset is used up for now.
    RateLimited,
    /// The destination holds the release back for its large-transfer delay.
    Delayed,
    /// Anything else the destination refused with (the detail is kept beside it).
    Other,
    /// The nonce is beyond the destination's vote window (`upperHandleNonce + VOTE_WINDOW`):
    /// earlier requests must be handled first.
    VoteWindow,
}

impl WaitReason {
    /// Every reason, for label initialisation.
    pub const ALL: [Self; 8] = [
        Self::InsufficientLiquidity,
        Self::TokenLocked,
        Self::TokenNotRegistered,
        Self::Paused,
        Self::RateLimited,
        Self::Delayed,
        Self::Other,
        Self::VoteWindow,
    ];

    /// Stable stored name and metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientLiquidity => "insufficient_liquidity",
            Self::TokenLocked => "token_locked",
            Self::TokenNotRegistered => "token_not_registered",
            Self::Paused => "paused",
            Self::RateLimited => "rate_limited",
            Self::Delayed => "delayed",
            Self::Other => "other",
            Self::VoteWindow => "vote_window",
        }
    }

    /// The reason the bridge's custom error (by name) stands for, if it is a waiting condition.
    pub fn from_bridge_error(name: &str) -> Option<Self> {
        Some(match name {
            "InsufficientLiquidity" => Self::InsufficientLiquidity,
            "TokenIsLocked" => Self::TokenLocked,
            "TokenNotRegistered" => Self::TokenNotRegistered,
            "BridgePaused" => Self::Paused,
            "RateLimited" | "OutflowLimited" => Self::RateLimited,
            "ReleaseDelayed" => Self::Delayed,
            "NonceOutsideWindow" => Self::VoteWindow,
            _ => return None,
        })
    }
}

/// Why a request was set aside for good: no vote of this operator can ever count for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The destination says the request comes from another chain or bridge than its
    /// counterpart (a look-alike log or a lying RPC).
    WrongSource,
    /// The destination does not know the request's asset kind.
    UnknownKind,
    /// A vote for it alone does not fit the destination's block gas limit or the node's
    /// transaction size limit.
    Oversized,
    /// Its vote, sent alone with the worst-case gas, still ran out of gas on chain: something
    /// the relay cannot budget for (an alert names the nonce; a person must look).
    OutOfGas,
}

impl RejectReason {
    /// Every reason, for label initialisation.
    pub const ALL: [Self; 4] = [
        Self::WrongSource,
        Self::UnknownKind,
        Self::Oversized,
        Self::OutOfGas,
    ];

    /// Stable stored name and metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WrongSource => "wrong_source",
            Self::UnknownKind => "unknown_kind",
            Self::Oversized => "oversized",
            Self::OutOfGas => "out_of_gas",
        }
    }

    /// The reason the bridge's custom error (by name) stands for, if it can never pass.
    pub fn from_bridge_error(name: &str) -> Option<Self> {
        Some(match name {
            "WrongSource" => Self::WrongSource,
            "UnknownKind" => Self::UnknownKind,
            "ExtraDataTooLarge" => Self::Oversized,
            _ => return None,
        })
    }
}

/// A stored name that is not a known value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct UnknownName {
    /// What was parsed.
    pub kind: &'static str,
    /// The name found.
    pub name: String,
}

macro_rules! named {
    ($ty:ty, $kind:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownName {
                        kind: $kind,
                        name: s.to_owned(),
                    })
            }
        }
    };
}

named!(RequestStatus, "request status");
named!(WaitReason, "wait reason");
named!(RejectReason, "reject reason");

/// The name of a `Bridge` custom error (`InsufficientLiquidity`, ...), from its decoded value.
pub fn bridge_error_name(error: &crate::bindings::Bridge::BridgeErrors) -> String {
    // The derived `Debug` of the error enum starts with the variant's name, which is the
    // Solidity error's name.
    let debug = format!("{error:?}");
    debug
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The name of the custom error whose selector a batch reported in `HandleSkipped`, for the
/// errors a batch item can be skipped with.
pub fn skip_reason_name(selector: [u8; 4]) -> Option<&'static str> {
    use alloy::sol_types::SolError;

    use crate::bindings::Bridge;
    fn name<E: SolError>() -> ([u8; 4], &'static str) {
        let signature = E::SIGNATURE;
        (
            E::SELECTOR,
            signature.split('(').next().unwrap_or(signature),
        )
    }
    [
        name::<Bridge::WrongSource>(),
        name::<Bridge::UnknownKind>(),
        name::<Bridge::AlreadyHandled>(),
        name::<Bridge::AlreadyVoted>(),
        name::<Bridge::TokenNotRegistered>(),
        name::<Bridge::TokenIsLocked>(),
        name::<Bridge::InsufficientLiquidity>(),
        name::<Bridge::NonceOutsideWindow>(),
        name::<Bridge::GasBudgetTooLow>(),
        name::<Bridge::BelowThreshold>(),
    ]
    .into_iter()
    .find(|(s, _)| *s == selector)
    .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        fn check<T: Copy + PartialEq + fmt::Debug + FromStr + fmt::Display>(all: &[T]) {
            let mut names: Vec<String> = all.iter().map(ToString::to_string).collect();
            for v in all {
                assert_eq!(v.to_string().parse::<T>().ok(), Some(*v));
            }
            names.sort();
            names.dedup();
            assert_eq!(names.len(), all.len());
        }
        check(&RequestStatus::ALL);
        check(&WaitReason::ALL);
        check(&RejectReason::ALL);
        assert!("pending".parse::<RequestStatus>().is_err());
    }

    #[test]
    fn released_names_never_change() {
        // Stored in databases and used in alert rules: these exact strings are an interface.
        let statuses: Vec<&str> = RequestStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            statuses,
            ["observed", "voting", "voted", "handled", "rejected"]
        );
        let waits: Vec<&str> = WaitReason::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            waits,
            [
                "insufficient_liquidity",
                "token_locked",
                "token_not_registered",
                "paused",
                "rate_limited",
                "delayed",
                "other",
                "vote_window"
            ]
        );
        let rejects: Vec<&str> = RejectReason::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            rejects,
            ["wrong_source", "unknown_kind", "oversized", "out_of_gas"]
        );
    }

    #[test]
    fn bridge_errors_map_to_waits_or_rejections_but_never_both() {
        for name in [
            "InsufficientLiquidity",
            "TokenIsLocked",
            "TokenNotRegistered",
            "BridgePaused",
            "RateLimited",
            "WrongSource",
            "UnknownKind",
            "NonceOutsideWindow",
        ] {
            let wait = WaitReason::from_bridge_error(name);
            let reject = RejectReason::from_bridge_error(name);
            assert!(wait.is_some() != reject.is_some(), "{name}");
        }
        assert_eq!(WaitReason::from_bridge_error("AlreadyHandled"), None);
        assert_eq!(NonceState::from_flags(true, true), NonceState::Handled);
        assert_eq!(NonceState::from_flags(false, true), NonceState::VotedByUs);
        assert_eq!(NonceState::from_flags(false, false), NonceState::Open);
    }

    #[test]
    fn bridge_errors_are_named_by_their_solidity_names() {
        use alloy::primitives::{Address, U256};
        use alloy::sol_types::SolError;

        use crate::bindings::Bridge;
        let e = Bridge::BridgeErrors::InsufficientLiquidity(Bridge::InsufficientLiquidity {
            token: Address::ZERO,
            available: U256::from(1),
            required: U256::from(2),
        });
        assert_eq!(bridge_error_name(&e), "InsufficientLiquidity");
        assert_eq!(
            bridge_error_name(&Bridge::BridgeErrors::BridgePaused(Bridge::BridgePaused {})),
            "BridgePaused"
        );
        assert_eq!(
            skip_reason_name(Bridge::TokenIsLocked::SELECTOR),
            Some("TokenIsLocked")
        );
        assert_eq!(skip_reason_name([0xde, 0xad, 0xbe, 0xef]), None);
    }
}
