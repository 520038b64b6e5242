//! The leases this replica's campaigns hold, remembered across a restart: per lane the etcd
//! lease id, the leader key and its create revision, and the holder — which process-independent
//! but place-bound identity wrote them ([`crate::store::lock::StoreLock::holder`]). A replica
//! restarted while its lease is still alive takes the term back instead of waiting for the
//! lease to run out; the campaign decides whether it may ([`crate::leadership::campaign`]).

use rusqlite::{OptionalExtension, params};

use super::*;

pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS leases (
    lane TEXT PRIMARY KEY,
    lease INTEGER NOT NULL,
    leader_key TEXT NOT NULL,
    create_revision INTEGER NOT NULL,
    holder TEXT NOT NULL,
    updated_at INTEGER NOT NULL);";

/// A lease a campaign held when it last won a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The etcd lease id.
    pub lease: i64,
    /// The leader key it was bound to.
    pub key: String,
    /// The key's create revision when this replica created it.
    pub create_revision: i64,
    /// Who wrote the record (the store lock's holder identity).
    pub holder: String,
}

impl Store {
    /// Remember that `lane` is led under `record`.
    pub fn remember_lease(&self, lane: Lane, record: &LeaseRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO leases (lane, lease, leader_key, create_revision, holder, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (lane) DO UPDATE SET lease = excluded.lease,
                 leader_key = excluded.leader_key, create_revision = excluded.create_revision,
                 holder = excluded.holder, updated_at = excluded.updated_at",
            params![
                lane.as_str(),
                record.lease,
                record.key,
                record.create_revision,
                record.holder,
                to_i64(unix_now())
            ],
        )?;
        Ok(())
    }

    /// The lease `lane` was last led under, if remembered.
    pub fn remembered_lease(&self, lane: Lane) -> Result<Option<LeaseRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT lease, leader_key, create_revision, holder FROM leases WHERE lane = ?1",
                [lane.as_str()],
                |r| {
                    Ok(LeaseRecord {
                        lease: r.get(0)?,
                        key: r.get(1)?,
                        create_revision: r.get(2)?,
                        holder: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Forget `lane`'s lease (lost, revoked, or not ours to resume).
    pub fn forget_lease(&self, lane: Lane) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM leases WHERE lane = ?1", [lane.as_str()])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_remembered_per_lane_replaced_and_forgotten() {
        let store = Store::open_in_memory("t").unwrap();
        let lane = Lane::MainToService;
        assert_eq!(store.remembered_lease(lane).unwrap(), None);
        let first = LeaseRecord {
            lease: 7,
            key: "/k/leader".into(),
            create_revision: 42,
            holder: "boot:1:2".into(),
        };
        store.remember_lease(lane, &first).unwrap();
        let second = LeaseRecord {
            lease: 9,
            create_revision: 50,
            ..first.clone()
        };
        store.remember_lease(lane, &second).unwrap();
        assert_eq!(store.remembered_lease(lane).unwrap(), Some(second));
        assert_eq!(
            store.remembered_lease(Lane::ServiceToMain).unwrap(),
            None,
            "per lane"
        );
        store.forget_lease(lane).unwrap();
        assert_eq!(store.remembered_lease(lane).unwrap(), None);
    }
}
