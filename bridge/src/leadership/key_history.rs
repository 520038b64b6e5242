//! The leader key's history, read from etcd's watch: how a key a standby followed came to be
//! deleted, and whether a holder that may still be sending lost its key before a key a campaign
//! just created.
//!
//! etcd may delete a live leader's key: a raft leader that was stuck (paused, a slow disk)
//! revokes, when it resumes, every lease it believes expired (etcd-io/etcd#15247, fixed in
//! 3.4.28 and 3.5.11). A standby that was following the key waits out the old holder's
//! heartbeat before it creates the key again ([`super::campaign`]'s `Observed`), for as long as
//! the history from the revision it saw up to the deletion tells ([`deletion_after`]). A
//! campaign that saw no key since it last led, or since it started, has nothing to wait from:
//! it creates the key, then reads the key's history from the last key it held (or from the
//! oldest revision etcd keeps) up to that creation, and leads under it only once every holder
//! whose key was deleted without a release has certainly stopped sending ([`writes_between`]).
//! Both reads replay the key's watch events through one decoder ([`KeyWrite::from_event`]).

use std::time::Duration;

use super::campaign::LeaderInfo;
use super::etcd_pool::{EtcdPool, EtcdUnavailable};

/// One write of the leader key, as its history replays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWrite {
    /// A put under `lease`: a creation, a heartbeat, a takeover or a release.
    Put {
        /// The lease the key was written under.
        lease: i64,
        /// The holder marked it released (its fence closed).
        released: bool,
        /// The heartbeat its holder advertises.
        heartbeat: Option<Duration>,
    },
    /// A deletion (the lease ran out or was revoked).
    Delete,
}

impl KeyWrite {
    /// One event of the key's watch: the revision that wrote it, and what it wrote. A value
    /// that does not parse is a holder's put that is neither released nor advertises a
    /// heartbeat. `None`: an event that carries no key (etcd always sends one).
    fn from_event(event: &etcd_client::Event) -> Option<(i64, Self)> {
        let kv = event.kv()?;
        let write = match event.event_type() {
            etcd_client::EventType::Put => {
                let info = serde_json::from_slice::<LeaderInfo>(kv.value()).ok();
                Self::Put {
                    lease: kv.lease(),
                    released: info.as_ref().is_some_and(|i| i.released),
                    heartbeat: info.and_then(|i| i.heartbeat_ms).map(Duration::from_millis),
                }
            }
            etcd_client::EventType::Delete => Self::Delete,
        };
        Some((kv.mod_revision(), write))
    }
}

/// What the leader key's history says about a deletion a standby saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Its last write before the deletion was its holder's release.
    Released,
    /// Deleted right after the revision the standby saw (no heartbeat it did not see).
    AfterSeen,
    /// Written again after the standby's read, or the history is unreadable (compacted).
    Unproven,
}

impl Deletion {
    /// The deletion that follows `writes`, the puts replayed from right after the revision the
    /// standby saw.
    fn after(writes: &[KeyWrite]) -> Self {
        match writes.last() {
            None => Self::AfterSeen,
            Some(KeyWrite::Put { released: true, .. }) => Self::Released,
            Some(_) => Self::Unproven,
        }
    }
}

/// How the leader key came to be deleted after `revision`, from its history (etcd's watch from
/// the next revision replays it), and the deletion's revision. A compacted or cancelled history
/// is `Unproven`, at no known revision.
pub async fn deletion_after(
    pool: &EtcdPool,
    key: &str,
    revision: i64,
) -> Result<(Deletion, Option<i64>), EtcdUnavailable> {
    let from = revision.saturating_add(1);
    pool.call("leader key history", |mut c| async move {
        let options = etcd_client::WatchOptions::new().with_start_revision(from);
        let mut stream = c.watch(key, Some(options)).await?;
        let mut puts = Vec::new();
        while let Some(resp) = stream.message().await? {
            if resp.canceled() || resp.compact_revision() > 0 {
                return Ok((Deletion::Unproven, None));
            }
            for (at, write) in resp.events().iter().filter_map(KeyWrite::from_event) {
                if write == KeyWrite::Delete {
                    return Ok((Deletion::after(&puts), Some(at)));
                }
                puts.push(write);
            }
        }
        Ok((Deletion::Unproven, None))
    })
    .await
}

/// The longest heartbeat of a holder in `writes` whose key was deleted without a release and
/// whose lease is none of `own` (this process's lease, and its dead predecessor's at this
/// place): until it has run out, that holder may still be sending. `None`: no such holder. A
/// holder the history does not show (a deletion first, the key written before the history
/// starts) or one that advertises no heartbeat counts as one with a heartbeat of `ttl`.
pub fn unreleased_loss(writes: &[KeyWrite], own: &[i64], ttl: Duration) -> Option<Duration> {
    // The last put before each deletion: whether it was a stranger's, and unreleased.
    let mut holder: Option<(bool, bool, Option<Duration>)> = None;
    let mut longest: Option<Duration> = None;
    for write in writes {
        match *write {
            KeyWrite::Put {
                lease,
                released,
                heartbeat,
            } => holder = Some((!own.contains(&lease), released, heartbeat)),
            KeyWrite::Delete => {
                let lost = match holder.take() {
                    Some((true, false, heartbeat)) => Some(heartbeat.unwrap_or(ttl)),
                    Some(_) => None,
                    None => Some(ttl),
                };
                if let Some(wait) = lost {
                    longest = Some(longest.map_or(wait, |l| l.max(wait)));
                }
            }
        }
    }
    longest
}

/// The most revisions a campaign replays (etcd reads every key's writes of a replayed range,
/// not just the leader key's): about a minute of a devnet's history, seconds of a 64-pair hub's.
/// A longer history is read as unreadable, and the campaign waits a TTL instead.
pub const REPLAY_REVISIONS: i64 = 2_000;

/// The least time a watch is given to answer before its silence counts against its connection.
const FAIR_ASK: Duration = Duration::from_millis(100);

/// What one watch replayed.
enum Replay {
    /// Every write from the start up to (not including) the end revision.
    Whole(Vec<KeyWrite>),
    /// The start was compacted; etcd keeps history from this revision.
    Compacted(i64),
    /// Not whole by the deadline.
    TimedOut,
}

/// The writes of `key` from revision `from` up to, not including, `until` — a revision that
/// wrote the key (this campaign's creation), so the watch's replay is known to be whole when it
/// reaches it. A compacted `from` is read from the oldest revision etcd keeps only when
/// `compaction_kept_a_ttl` (this process compacts, keeping at least three lease TTLs,
/// `etcd.keep_history_secs`: what was compacted is older than any holder still sending); a
/// cluster that compacts itself may have compacted a deletion seconds old. `None` when the
/// history cannot be read whole: compacted otherwise, longer than [`REPLAY_REVISIONS`], or
/// unreachable.
pub async fn writes_between(
    pool: &EtcdPool,
    key: &str,
    (from, until): (i64, i64),
    compaction_kept_a_ttl: bool,
    deadline: tokio::time::Instant,
) -> Option<Vec<KeyWrite>> {
    let mut start = from.max(1);
    // `until == start`: the creation came right after where the read starts, an empty
    // history.
    let replayable = |start: i64| until >= start && until.saturating_sub(start) <= REPLAY_REVISIONS;
    if !replayable(start) {
        tracing::info!(
            key,
            from,
            until,
            "leader key history not replayed: too long, or no creation after it"
        );
        return None;
    }
    // A compaction between two attempts moves the start once more at most.
    for _ in 0..3 {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let replay = pool
            .call("leader key history", |mut c| async move {
                // Bounded inside the attempt, which answers: an attempt dropped from outside, or
                // one that errs, is taken for a dead connection.
                // The pool moved on to this endpoint after the deadline (the last one went
                // silent): not asked, not suspect.
                if tokio::time::Instant::now() >= deadline {
                    return Ok(Replay::TimedOut);
                }
                let asked = tokio::time::Instant::now();
                let mut answered = false;
                let replay = tokio::time::timeout_at(deadline, async {
                    let options = etcd_client::WatchOptions::new().with_start_revision(start);
                    let mut stream = c.watch(key, Some(options)).await?;
                    let mut writes = Vec::new();
                    while let Some(resp) = stream.message().await? {
                        answered = true;
                        if resp.compact_revision() > 0 {
                            return Ok(Replay::Compacted(resp.compact_revision()));
                        }
                        if resp.canceled() {
                            break;
                        }
                        for (at, write) in resp.events().iter().filter_map(KeyWrite::from_event) {
                            if at >= until {
                                return Ok(Replay::Whole(writes));
                            }
                            writes.push(write);
                        }
                    }
                    Err(etcd_client::Error::WatchError(
                        "the watch ended before the key's creation".into(),
                    ))
                })
                .await;
                match replay {
                    Ok(replay) => replay,
                    // Replaying, but not whole in time: an answer (the connection lives).
                    Err(_) if answered => Ok(Replay::TimedOut),
                    // Too little of the budget left when asked (a reconnect used it): not
                    // silent.
                    Err(_) if deadline.saturating_duration_since(asked) < FAIR_ASK => {
                        Ok(Replay::TimedOut)
                    }
                    // Nothing came back: as any silent attempt, a suspect connection.
                    Err(_) => Err(etcd_client::Error::WatchError(
                        "the watch did not answer in time".into(),
                    )),
                }
            })
            .await;
        match replay {
            Ok(Replay::Whole(writes)) => return Some(writes),
            Ok(Replay::TimedOut) => break,
            Ok(Replay::Compacted(kept))
                if compaction_kept_a_ttl && kept > start && replayable(kept) =>
            {
                start = kept
            }
            Ok(Replay::Compacted(kept)) if compaction_kept_a_ttl && kept > start => {
                tracing::info!(
                    key,
                    from,
                    kept,
                    until,
                    "leader key history not replayed: what etcd keeps of it is too long"
                );
                return None;
            }
            Ok(Replay::Compacted(kept)) => {
                tracing::info!(
                    key,
                    from,
                    kept,
                    "leader key history compacted past where it is read from"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "leader key history unreadable");
                return None;
            }
        }
    }
    tracing::info!(
        key,
        from,
        until,
        "leader key history not replayed whole in time"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(1);

    fn put(lease: i64) -> KeyWrite {
        KeyWrite::Put {
            lease,
            released: false,
            heartbeat: Some(Duration::from_millis(1_500)),
        }
    }

    fn release(lease: i64) -> KeyWrite {
        KeyWrite::Put {
            lease,
            released: true,
            heartbeat: Some(Duration::from_millis(1_500)),
        }
    }

    #[test]
    fn a_deletion_is_read_from_the_puts_since_the_revision_seen() {
        // Nothing written since the standby's read: deleted right after what it saw.
        assert_eq!(Deletion::after(&[]), Deletion::AfterSeen);
        // The holder released its key last: its fence is closed.
        assert_eq!(Deletion::after(&[put(9), release(9)]), Deletion::Released);
        // A heartbeat the standby did not see came last, or a release was written over.
        assert_eq!(Deletion::after(&[put(9)]), Deletion::Unproven);
        assert_eq!(Deletion::after(&[release(9), put(9)]), Deletion::Unproven);
    }

    #[test]
    fn a_strangers_key_deleted_without_a_release_is_waited_out_and_nothing_else_is() {
        let own = [7, 3];
        let beat = Some(Duration::from_millis(1_500));
        // Nothing since the last key this replica held, or only its own writes: lead at once.
        assert_eq!(unreleased_loss(&[], &own, TTL), None);
        assert_eq!(
            unreleased_loss(&[put(3), put(3), KeyWrite::Delete], &own, TTL),
            None
        );
        // A stranger's key that its holder released, or that a stranger took over and
        // released: at once.
        assert_eq!(
            unreleased_loss(&[put(9), release(9), KeyWrite::Delete], &own, TTL),
            None
        );
        // A stranger's key deleted behind it (a stuck etcd leader revoked its live lease):
        // wait out the heartbeat it advertised, whatever came before or after.
        assert_eq!(
            unreleased_loss(
                &[put(3), KeyWrite::Delete, put(9), KeyWrite::Delete],
                &own,
                TTL
            ),
            beat
        );
        assert_eq!(
            unreleased_loss(
                &[put(9), KeyWrite::Delete, put(7), KeyWrite::Delete],
                &own,
                TTL
            ),
            beat
        );
        // Taken over by this replica, then deleted: its own.
        assert_eq!(
            unreleased_loss(&[put(9), put(7), KeyWrite::Delete], &own, TTL),
            None
        );
        // A holder the history does not show, or one without a heartbeat: the TTL.
        assert_eq!(unreleased_loss(&[KeyWrite::Delete], &own, TTL), Some(TTL));
        let silent = KeyWrite::Put {
            lease: 9,
            released: false,
            heartbeat: None,
        };
        assert_eq!(
            unreleased_loss(&[silent, KeyWrite::Delete], &own, TTL),
            Some(TTL)
        );
    }
}
