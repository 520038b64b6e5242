//! Who shares the machine with a devnet. The end-to-end tests are one test binary whose tests
//! run side by side; most only count, but a few measure seconds — a failover within TTL + 1 s,
//! an etcd election costing under a second, a step-down — and those figures are the relay's only
//! when no other devnet's chains, etcd and relays compete for the same two cores (on a loaded CI
//! machine they read 1.4-1.8× high and failed).
//!
//! Every devnet of a process holds a [`MachineShare`] for its life: a weight of the machine's
//! [`CAPACITY`] by default — what its chains, etcd members and relay processes cost — or all of
//! it with [`DevnetOptions::alone`](super::devnet::DevnetOptions::alone). The test binary runs
//! more tests at once than there are cores (they mostly wait for blocks: half the CPU stood idle
//! with two at a time, and a standalone devnet uses a quarter of a core), and the weights keep
//! the devnets alive at once within what two cores carry. The semaphore is fair, so a test waiting to run alone is not starved by a stream of
//! shared ones, and the shared tests started after it wait until it is done.

use std::sync::{Arc, LazyLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The machine, in weight units: about a tenth of a core each (measured in whole tests' CPU
/// time: a standalone devnet of three relays 0.26 of a core, the HA devnet of six relays and
/// three etcd members 0.95, the hub of four chains 0.7), so 1.8 of the two cores in all.
pub const CAPACITY: u32 = 18;

static MACHINE: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(CAPACITY as usize)));

/// A devnet's share of the machine, released when dropped.
#[derive(Debug)]
pub struct MachineShare {
    _permit: OwnedSemaphorePermit,
    weight: u32,
}

impl MachineShare {
    /// Wait for a share of `weight` units (at most [`CAPACITY`]); `alone` waits until every
    /// other devnet of the process is gone and keeps new ones waiting until this one is.
    pub async fn take(alone: bool, weight: u32) -> Self {
        let weight = if alone {
            CAPACITY
        } else {
            weight.clamp(1, CAPACITY)
        };
        let permit = Arc::clone(&MACHINE)
            .acquire_many_owned(weight)
            .await
            .expect("the machine's semaphore is never closed");
        Self {
            _permit: permit,
            weight,
        }
    }

    /// Whether this share excludes every other devnet.
    pub fn is_alone(&self) -> bool {
        self.weight == CAPACITY
    }
}

/// What a devnet costs the machine: its relay processes (the most of it, half a unit each),
/// its chains beyond the first pair's and an etcd cluster.
pub fn weight_of(
    operators: u32,
    replicas: usize,
    service_chains: usize,
    etcd_members: usize,
) -> u32 {
    let relays = operators.saturating_mul(u32::try_from(replicas.max(1)).unwrap_or(u32::MAX));
    relays
        .div_ceil(2)
        .saturating_add(u32::try_from(service_chains.saturating_sub(1)).unwrap_or(u32::MAX))
        .saturating_add(u32::from(etcd_members > 0))
        .max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::MachineShare;

    /// A devnet that asks to run alone waits for the shared one before it, and one asked for
    /// after it waits for it: never two at once with one alone.
    #[tokio::test]
    async fn alone_excludes_shared_both_ways() {
        let shared = MachineShare::take(false, 1).await;
        let alone = tokio::spawn(MachineShare::take(true, 1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!alone.is_finished(), "alone ran beside a shared devnet");
        let later = tokio::spawn(MachineShare::take(false, 1));
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
