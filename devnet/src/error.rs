//! Everything that can stop the devnet, each with what to do about it.

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::process::ProcessError;
use crate::harness::tools::MissingTool;

/// A devnet failure.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// A required program is not installed.
    #[error(transparent)]
    MissingTool(#[from] MissingTool),
    /// A process could not be started or signalled.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// No free port could be found.
    #[error("cannot find a free loopback port: {0}")]
    Ports(std::io::Error),
    /// A component did not become ready in time.
    #[error("{component} not ready after {waited:?}; see its log in the devnet directory")]
    NotReady {
        /// Component name.
        component: String,
        /// How long we waited.
        waited: Duration,
    },
    /// A component exited while starting.
    #[error("{0} exited during startup; see its log in the devnet directory")]
    Exited(String),
    /// A chain answered with another chain id than configured.
    #[error("{component} reports chain id {actual}, expected {expected}")]
    WrongChainId {
        /// Component name.
        component: String,
        /// Configured id.
        expected: u64,
        /// What it said.
        actual: u64,
    },
    /// A URL did not parse.
    #[error("invalid URL {0}")]
    BadUrl(String),
    /// An HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
    /// A chain call or transaction (deployment, request, vote, read) failed.
    #[error("{step} failed: {reason}")]
    Chain {
        /// What was being done.
        step: String,
        /// Why it failed.
        reason: String,
    },
    /// A file in the devnet directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A state file could not be parsed.
    #[error("{path}: {message}")]
    BadState {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// `up` while a devnet already runs in the same directory.
    #[error(
        "a devnet is already running in {0}; run `multibridge-devnet down` first (or pick another --dir)"
    )]
    AlreadyRunning(PathBuf),
    /// A request for something the devnet does not have.
    #[error("{0}")]
    Invalid(String),
    /// The headless browser (chromedriver + Chromium) failed.
    #[error("browser: {0}")]
    Browser(String),
}

impl DevnetError {
    /// A failed chain step, from anything printable.
    pub fn chain(step: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Chain {
            step: step.into(),
            reason: reason.to_string(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
