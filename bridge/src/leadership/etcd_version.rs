//! Which etcd the relay leans on. etcd before 3.4.28 (and 3.5 before 3.5.11) has a raft leader
//! that was stuck — paused, or blocked on a slow disk — revoke, when it resumes, every lease it
//! believes expired, although the new leader kept them alive (etcd-io/etcd#15247): a live
//! leader's key disappears while its fence is open. The campaign guards against it (a standby
//! that sees a key deleted without its holder's release waits until the holder's heartbeat has
//! certainly run out, see [`super::campaign`]); this check tells the operator to upgrade,
//! once per endpoint at start, in the log and in `multibridge_etcd_member_revokes_live_leases`.

use multibridge_monitoring::EtcdMetrics;

use super::etcd_pool::EtcdPool;

/// Whether etcd `version` ("3.4.23") may revoke live leases after a stuck leader resumes
/// (`None`: not a version this check can read).
pub fn revokes_live_leases(version: &str) -> Option<bool> {
    let mut parts = version
        .trim()
        .trim_start_matches('v')
        .split(['.', '-', '+']);
    let mut next = || parts.next()?.parse::<u32>().ok();
    let (major, minor, patch) = (next()?, next()?, next()?);
    Some(match (major, minor) {
        (0..=2, _) => true,
        (3, 0..=3) => true,
        (3, 4) => patch < 28,
        (3, 5) => patch < 11,
        _ => false,
    })
}

/// Ask every endpoint's member for its version; warn about and count each one with the defect.
pub async fn check(pool: &EtcdPool, metrics: &EtcdMetrics) {
    let answers = pool
        .each("status", |mut c| async move {
            Ok(c.status().await?.version().to_owned())
        })
        .await;
    for (endpoint, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(version) => match revokes_live_leases(&version) {
                Some(defective) => {
                    metrics.member_revokes_live_leases(endpoint, defective);
                    if defective {
                        tracing::warn!(
                            endpoint,
                            %version,
                            "this etcd member's version lets a raft leader that was stuck revoke live leases when it resumes (etcd-io/etcd#15247, fixed in 3.4.28 and 3.5.11): a lane then changes leader for nothing (the relay waits out the old leader's fence, so it never has two); upgrade etcd"
                        );
                    }
                }
                None => tracing::info!(endpoint, %version, "etcd version not recognised"),
            },
            Err(e) => tracing::debug!(endpoint, error = %e, "etcd version unread"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_before_the_fix_are_flagged_and_later_ones_are_not() {
        for defective in ["3.4.23", "v3.4.27", "3.5.0", "3.5.10", "3.3.27", "2.3.8"] {
            assert_eq!(revokes_live_leases(defective), Some(true), "{defective}");
        }
        for fixed in [
            "3.4.28",
            "3.4.30",
            "3.5.11",
            "3.5.17",
            "3.6.0",
            "3.6.5-rc.0",
        ] {
            assert_eq!(revokes_live_leases(fixed), Some(false), "{fixed}");
        }
        assert_eq!(revokes_live_leases("unknown"), None);
    }
}
