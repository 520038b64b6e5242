//! Running totals per asset for the conservation check: how much was requested on a lane's
//! source and released on its destination, each with the next block its scan reads. Totals and
//! the scan position move in one transaction, so a crash never counts a block twice.

use alloy::primitives::{Address, U256};
use multibridge_contracts::Lane;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Store, StoreError, to_i64, to_u64};

/// Which side of a lane a total belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetSide {
    /// Requested on the source (locked or burned there); keyed by the source token.
    Requested,
    /// Released on the destination (unlocked or minted there); keyed by the destination token.
    Released,
}

impl AssetSide {
    fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Released => "released",
        }
    }
}

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS asset_scan (
        lane TEXT NOT NULL,
        side TEXT NOT NULL,
        next_block INTEGER NOT NULL,
        PRIMARY KEY (lane, side));
    CREATE TABLE IF NOT EXISTS asset_totals (
        lane TEXT NOT NULL,
        side TEXT NOT NULL,
        asset BLOB NOT NULL,
        total TEXT NOT NULL,
        PRIMARY KEY (lane, side, asset));";

fn parse_total(text: &str) -> Result<U256, StoreError> {
    text.parse::<U256>()
        .map_err(|e| StoreError::Corrupt(format!("asset total {text:?}: {e}")))
}

impl Store {
    /// The next block the `side` scan of `lane` reads, if it started.
    pub fn asset_scan_next(&self, lane: Lane, side: AssetSide) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT next_block FROM asset_scan WHERE lane = ?1 AND side = ?2",
                params![lane.as_str(), side.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(to_u64))
    }

    /// Add `amounts` to the `side` totals of `lane` and move its scan to `next_block`, in one
    /// transaction.
    pub fn record_asset_range(
        &mut self,
        lane: Lane,
        side: AssetSide,
        next_block: u64,
        amounts: &[(Address, U256)],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (asset, amount) in amounts {
            let current: Option<String> = tx
                .query_row(
                    "SELECT total FROM asset_totals WHERE lane = ?1 AND side = ?2 AND asset = ?3",
                    params![lane.as_str(), side.as_str(), asset.as_slice()],
                    |r| r.get(0),
                )
                .optional()?;
            let current = current.as_deref().map(parse_total).transpose()?;
            let total = current
                .unwrap_or_default()
                .checked_add(*amount)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("{side:?} total of {asset} overflows"))
                })?;
            tx.execute(
                "INSERT INTO asset_totals (lane, side, asset, total) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (lane, side, asset) DO UPDATE SET total = excluded.total",
                params![
                    lane.as_str(),
                    side.as_str(),
                    asset.as_slice(),
                    total.to_string()
                ],
            )?;
        }
        tx.execute(
            "INSERT INTO asset_scan (lane, side, next_block) VALUES (?1, ?2, ?3)
             ON CONFLICT (lane, side) DO UPDATE SET next_block = excluded.next_block",
            params![lane.as_str(), side.as_str(), to_i64(next_block)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every `side` total of `lane`, by asset.
    pub fn asset_totals(
        &self,
        lane: Lane,
        side: AssetSide,
    ) -> Result<Vec<(Address, U256)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT asset, total FROM asset_totals WHERE lane = ?1 AND side = ?2 ORDER BY asset",
        )?;
        let rows = stmt.query_map(params![lane.as_str(), side.as_str()], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (asset, total) = row?;
            let asset = Address::try_from(asset.as_slice())
                .map_err(|_| StoreError::Corrupt("asset address length".into()))?;
            out.push((asset, parse_total(&total)?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_per_side_and_move_with_the_scan() {
        let mut store = Store::open_in_memory("t").unwrap();
        let lane = Lane::MainToService;
        let token = Address::repeat_byte(7);
        assert_eq!(
            store.asset_scan_next(lane, AssetSide::Requested).unwrap(),
            None
        );
        store
            .record_asset_range(
                lane,
                AssetSide::Requested,
                11,
                &[(Address::ZERO, U256::from(5)), (token, U256::from(2))],
            )
            .unwrap();
        store
            .record_asset_range(
                lane,
                AssetSide::Requested,
                21,
                &[(Address::ZERO, U256::from(3))],
            )
            .unwrap();
        store
            .record_asset_range(
                lane,
                AssetSide::Released,
                9,
                &[(Address::ZERO, U256::from(4))],
            )
            .unwrap();
        assert_eq!(
            store.asset_scan_next(lane, AssetSide::Requested).unwrap(),
            Some(21)
        );
        assert_eq!(
            store.asset_scan_next(lane, AssetSide::Released).unwrap(),
            Some(9)
        );
        assert_eq!(
            store.asset_totals(lane, AssetSide::Requested).unwrap(),
            vec![(Address::ZERO, U256::from(8)), (token, U256::from(2))]
        );
        assert_eq!(
            store.asset_totals(lane, AssetSide::Released).unwrap(),
            vec![(Address::ZERO, U256::from(4))]
        );
        assert!(
            store
                .asset_totals(Lane::ServiceToMain, AssetSide::Requested)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_overflowing_total_is_refused_and_nothing_moves() {
        let mut store = Store::open_in_memory("t").unwrap();
        let lane = Lane::ServiceToMain;
        store
            .record_asset_range(lane, AssetSide::Released, 5, &[(Address::ZERO, U256::MAX)])
            .unwrap();
        let err = store
            .record_asset_range(
                lane,
                AssetSide::Released,
                9,
                &[(Address::ZERO, U256::from(1))],
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert_eq!(
            store.asset_scan_next(lane, AssetSide::Released).unwrap(),
            Some(5)
        );
    }
}
