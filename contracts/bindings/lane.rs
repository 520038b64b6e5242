//! Lanes: the two directions of a bridge pair.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which chain of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChainRole {
    /// The parent chain (EN side).
    Main,
    /// The child chain (SEN side).
    Service,
}

impl ChainRole {
    /// The other chain of the pair.
    pub fn other(self) -> Self {
        match self {
            Self::Main => Self::Service,
            Self::Service => Self::Main,
        }
    }

    /// Stable lower-case name, used in configs, metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Service => "service",
        }
    }
}

impl fmt::Display for ChainRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One direction of a bridge pair. Names are stable: they appear in configs, metrics, etcd keys
/// and claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lane {
    /// main → service, served by sub-bridges (they write to the service chain).
    #[serde(rename = "main-to-service")]
    MainToService,
    /// service → main, served by main-bridges (they write to the main chain).
    #[serde(rename = "service-to-main")]
    ServiceToMain,
}

impl Lane {
    /// Both lanes, in a fixed order.
    pub const ALL: [Lane; 2] = [Lane::MainToService, Lane::ServiceToMain];

    /// The chain requests are read from.
    pub fn source(self) -> ChainRole {
        match self {
            Self::MainToService => ChainRole::Main,
            Self::ServiceToMain => ChainRole::Service,
        }
    }

    /// The chain votes are written to.
    pub fn destination(self) -> ChainRole {
        self.source().other()
    }

    /// The lane from `source`.
    pub fn from_source(source: ChainRole) -> Self {
        match source {
            ChainRole::Main => Self::MainToService,
            ChainRole::Service => Self::ServiceToMain,
        }
    }

    /// Stable name (`main-to-service` / `service-to-main`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MainToService => "main-to-service",
            Self::ServiceToMain => "service-to-main",
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lane name that is not one of the two.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lane {0:?}: expected \"main-to-service\" or \"service-to-main\"")]
pub struct UnknownLane(pub String);

impl FromStr for Lane {
    type Err = UnknownLane;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "main-to-service" => Ok(Self::MainToService),
            "service-to-main" => Ok(Self::ServiceToMain),
            other => Err(UnknownLane(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_point_opposite_ways() {
        for lane in Lane::ALL {
            assert_ne!(lane.source(), lane.destination());
            assert_eq!(Lane::from_source(lane.source()), lane);
            assert_eq!(lane.as_str().parse::<Lane>(), Ok(lane));
        }
        assert!("main->service".parse::<Lane>().is_err());
    }
}
