//! The `[store]` section: where the relay's SQLite request store is.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Local request store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite database file.
    pub path: PathBuf,
}
