//! The `[dashboard]` section: whether the relay serves the web page, who may write through it,
//! the key its registry writes are signed with, and which host names it answers to.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Problem, SignerConfig};

/// The Service Registry Dashboard (served by the relay on its HTTP API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSettings {
    /// Serve the page at `/` and its JSON under `/ui/api/` (read-only without an admin token).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Environment variable holding the admin token (at least 16 characters). Without a token
    /// (here or in `admin_token_file`) the page is read-only: every write is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_env: Option<String>,
    /// File holding the admin token (first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// The key the page's registry writes (register, update location) are signed with.
    /// Default: the operator's own key, sent through the main chain's submitter (so only the
    /// replica holding the main chain's nonce sequence writes). Another key is sent by a
    /// submitter of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<SignerConfig>,
    /// First main-chain block of the claims history (default: `chains.main.start_block`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims_from_block: Option<u64>,
    /// How far back from the head (in blocks) the transfer tracker looks for a request's
    /// votes and handle on the destination.
    #[serde(default = "default_tracker_window")]
    pub tracker_window_blocks: u64,
    /// How long a login lasts.
    #[serde(default = "default_session_secs")]
    pub session_secs: u64,
    /// Host names the page answers to besides IP addresses, `localhost` and the host of the
    /// relay's advertised URL (a request under any other name is refused: DNS rebinding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Mark the session cookie `Secure` (default: when the advertised URL is https or a proxy
    /// says the request came over https with `X-Forwarded-Proto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_cookie: Option<bool>,
}

fn yes() -> bool {
    true
}

fn default_tracker_window() -> u64 {
    100_000
}

fn default_session_secs() -> u64 {
    8 * 3600
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            admin_token_env: None,
            admin_token_file: None,
            manager: None,
            claims_from_block: None,
            tracker_window_blocks: default_tracker_window(),
            session_secs: default_session_secs(),
            allowed_hosts: Vec::new(),
            secure_cookie: None,
        }
    }
}

impl DashboardSettings {
    /// Whether the section is all defaults (left out when the config is rendered).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The first problem with these settings, as `(field, problem)`.
    pub fn problem(&self) -> Option<Problem> {
        if self.admin_token_env.is_some() && self.admin_token_file.is_some() {
            return Some((
                "dashboard.admin_token_env",
                "give the admin token in admin_token_env or admin_token_file, not both".into(),
            ));
        }
        if self.tracker_window_blocks == 0 {
            return Some((
                "dashboard.tracker_window_blocks",
                "must be at least 1".into(),
            ));
        }
        if let Some(bad) = self
            .allowed_hosts
            .iter()
            .find(|h| h.trim().is_empty() || h.contains(['/', ' ', ':']))
        {
            return Some((
                "dashboard.allowed_hosts",
                format!(
                    "`{bad}` is not a host name (give names like relay.example.org, no scheme or port)"
                ),
            ));
        }
        if self.session_secs < 60 {
            return Some((
                "dashboard.session_secs",
                format!(
                    "{} is too short for a person to use the page: give at least 60",
                    self.session_secs
                ),
            ));
        }
        None
    }
}
