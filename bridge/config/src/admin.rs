//! The `[admin]` section: how the relay watches the bridges' configuration — continuously
//! against a desired-state file (the one `multibridge admin plan` reads), or, without one, by
//! alerting on every owner call seen in the bridges' events.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Problem;

/// The configuration watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminWatchConfig {
    /// The desired-state file (`admin plan`'s format), compared with both bridges every
    /// `check_every_secs`; read again at every check, so edits take effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<PathBuf>,
    /// Seconds between comparisons with the desired file.
    #[serde(default = "default_check_every_secs")]
    pub check_every_secs: u64,
}

fn default_check_every_secs() -> u64 {
    300
}

impl Default for AdminWatchConfig {
    fn default() -> Self {
        Self {
            desired: None,
            check_every_secs: default_check_every_secs(),
        }
    }
}

impl AdminWatchConfig {
    /// Whether the section says nothing (not written out).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The first problem with the section.
    pub fn problem(&self) -> Option<Problem> {
        if self.check_every_secs == 0 {
            return Some(("admin.check_every_secs", "must be at least 1".into()));
        }
        None
    }
}
