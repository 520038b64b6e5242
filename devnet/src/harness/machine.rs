//! Who shares the machine with a devnet. The end-to-end tests are one test binary whose tests
//! run side by side (one per core); most only count, but a few measure seconds — a failover
//! within TTL + 1 s, a handover at once, an etcd election costing under a second — and those
//! figures are the relay's only when no other devnet's chains, etcd and relays compete for the
//! same two cores (on a loaded CI machine they read 1.4-1.8× high and failed).
//!
//! Every devnet of a process holds a [`MachineShare`] for its life: shared by default, alone
//! with [`DevnetOptions::alone`](super::devnet::DevnetOptions::alone). The lock is fair, so a
//! test waiting to run alone is not starved by a stream of shared ones, and the shared tests
//! started after it wait until it is done.

use std::sync::{Arc, LazyLock};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

static MACHINE: LazyLock<Arc<RwLock<()>>> = LazyLock::new(|| Arc::new(RwLock::new(())));

/// A devnet's share of the machine, released when dropped.
#[derive(Debug)]
pub enum MachineShare {
    /// Beside other shared devnets.
    Shared(OwnedRwLockReadGuard<()>),
    /// No other devnet of this process runs meanwhile.
    Alone(OwnedRwLockWriteGuard<()>),
}

impl MachineShare {
    /// Wait for a share: `alone` waits until every other devnet of the process is gone and
    /// keeps new ones waiting until this one is.
    pub async fn take(alone: bool) -> Self {
        let machine = Arc::clone(&MACHINE);
        if alone {
            Self::Alone(machine.write_owned().await)
        } else {
            Self::Shared(machine.read_owned().await)
        }
    }

    /// Whether this share excludes every other devnet.
    pub fn is_alone(&self) -> bool {
        matches!(self, Self::Alone(_))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::MachineShare;

    /// A devnet that asks to run alone waits for the shared one before it, and one asked for
    /// after it waits for it: never two at once with one alone.
    #[tokio::test]
    async fn alone_excludes_shared_both_ways() {
        let shared = MachineShare::take(false).await;
        let alone = tokio::spawn(MachineShare::take(true));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!alone.is_finished(), "alone ran beside a shared devnet");
        let later = tokio::spawn(MachineShare::take(false));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !later.is_finished(),
            "a later shared devnet overtook the waiting one"
        );
        drop(shared);
        let alone = tokio::time::timeout(Duration::from_secs(5), alone)
            .await
            .expect("alone got the machine once the shared devnet left")
            .expect("task");
        assert!(alone.is_alone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !later.is_finished(),
            "a shared devnet ran beside the alone one"
        );
        drop(alone);
        let later = tokio::time::timeout(Duration::from_secs(5), later)
            .await
            .expect("shared again once the alone one left")
            .expect("task");
        assert!(!later.is_alone());
    }
}
