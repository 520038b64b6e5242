//! The `[registry]` section: the service registry on the main chain.

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

/// The service registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `ServiceRegistry` address on the main chain.
    pub address: Address,
    /// The advertised URLs of this operator's other replicas. A lane leader's URL read from
    /// etcd is published only if it is one of these or this replica's own (audit M-5: whoever
    /// can write to etcd cannot make the operator's key publish another URL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_urls: Vec<String>,
}
