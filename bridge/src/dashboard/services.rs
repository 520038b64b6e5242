//! The services page's data: every lane service of this bridge pair in the registry, with its
//! managers (folded from `ManagerAdded`/`ManagerRemoved`), the leader its operator's etcd
//! election names, and whether the registry lags that leader; and what the page may write.

use std::collections::{BTreeSet, HashMap};

use alloy::primitives::{Address, B256};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::Lane;
use multibridge_contracts::bindings::ServiceRegistry;
use serde::Serialize;

use super::{Dashboard, DashboardError, PairLanes};
use crate::chain::ChainClient;
use crate::leadership::campaign::LeaderInfo;

/// Log queries one refresh of the managers may make (the rest waits for the next refresh).
const MANAGER_QUERIES_PER_REFRESH: usize = 64;

/// Every service's managers, folded from the registry's events up to `next_block`.
#[derive(Debug, Default)]
pub struct ManagersIndex {
    next_block: Option<u64>,
    managers: HashMap<B256, BTreeSet<Address>>,
}

impl ManagersIndex {
    /// Fold one event in.
    pub fn apply(&mut self, id: B256, manager: Address, added: bool) {
        let set = self.managers.entry(id).or_default();
        if added {
            set.insert(manager);
        } else {
            set.remove(&manager);
        }
    }

    /// The managers of `id` known so far.
    pub fn of(&self, id: &B256) -> Vec<Address> {
        self.managers
            .get(id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Read the events from where the index stands (`from` at first) up to `head`; returns
    /// whether it reached the head.
    pub async fn refresh(
        &mut self,
        main: &ChainClient,
        registry: Address,
        from: u64,
        head: u64,
        max_range: u64,
    ) -> Result<bool, DashboardError> {
        for _ in 0..MANAGER_QUERIES_PER_REFRESH {
            let next = *self.next_block.get_or_insert(from);
            if next > head {
                return Ok(true);
            }
            let to = next
                .saturating_add(max_range.max(1).saturating_sub(1))
                .min(head);
            let filter = Filter::new()
                .address(registry)
                .event_signature(vec![
                    ServiceRegistry::ManagerAdded::SIGNATURE_HASH,
                    ServiceRegistry::ManagerRemoved::SIGNATURE_HASH,
                ])
                .from_block(next)
                .to_block(to);
            let logs = main.logs(&filter).await?;
            for log in logs
                .iter()
                .filter(|l| !l.removed && l.address() == registry)
            {
                if let Ok(e) = log.log_decode::<ServiceRegistry::ManagerAdded>() {
                    self.apply(e.inner.data.id, e.inner.data.manager, true);
                } else if let Ok(e) = log.log_decode::<ServiceRegistry::ManagerRemoved>() {
                    self.apply(e.inner.data.id, e.inner.data.manager, false);
                }
            }
            self.next_block = Some(to.saturating_add(1));
        }
        Ok(self.next_block.is_some_and(|n| n > head))
    }
}

/// One service row.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceRow {
    /// Registry id.
    pub id: B256,
    /// The lane it serves.
    pub lane: Lane,
    /// Its operator (provider).
    pub operator: Address,
    /// Display name.
    pub name: String,
    /// Where the registry says it is served.
    pub location: String,
    /// Unix time of its last update.
    pub updated_at: u64,
    /// Its managers.
    pub managers: Vec<Address>,
    /// The leader its operator's election names (with `[etcd]`, when readable).
    pub leader: Option<LeaderInfo>,
    /// The registry's location is not the leader's URL (the registry lags the leader).
    pub lagging: bool,
    /// The dashboard's manager key may update it.
    pub manageable: bool,
    /// This relay's operator's service.
    pub own: bool,
    /// Its operator is registered on the lane's destination bridge (a service of anyone else
    /// serves nobody: claims against it reach no relay that votes).
    pub bridge_operator: bool,
}

/// The services page.
#[derive(Debug, Clone, Serialize)]
pub struct ServicesView {
    /// The registry.
    pub registry: Option<Address>,
    /// Its services of this pair.
    pub services: Vec<ServiceRow>,
    /// This operator's configured lanes that have no service in the registry.
    pub unregistered_lanes: Vec<Lane>,
    /// The manager address the page writes as (absent: no registry).
    pub manager: Option<Address>,
    /// Whether this replica may write now (holds the manager key's nonce sequence).
    pub can_send: bool,
    /// Whether the managers list reached the head.
    pub managers_complete: bool,
}

/// Read the services page.
pub async fn services(d: &Dashboard) -> Result<ServicesView, DashboardError> {
    let Some(registry) = d.config.registry.as_ref().map(|r| r.address) else {
        return Ok(ServicesView {
            registry: None,
            services: Vec::new(),
            unregistered_lanes: Vec::new(),
            manager: None,
            can_send: false,
            managers_complete: true,
        });
    };
    let main = &d.chains.main;
    let pair = PairLanes::of(&d.config);
    let registered = crate::registry::registered_services(main, registry).await?;
    let head = main.head().await?;
    let from = d
        .config
        .dashboard
        .claims_from_block
        .unwrap_or(d.config.chains.main.start_block);
    let mut managers = d.managers.lock().await;
    let complete = managers
        .refresh(
            main,
            registry,
            from,
            head,
            d.config.chains.main.max_block_range,
        )
        .await?;
    let manager = d.writer.as_ref().map(super::writer::Writer::from);
    let own = d.config.operator.address;
    let mut operators: std::collections::HashMap<Lane, Vec<Address>> =
        std::collections::HashMap::new();
    for lane in Lane::ALL {
        operators.insert(
            lane,
            d.chains.get(lane.destination()).views().operators().await?,
        );
    }
    let mut rows = Vec::new();
    for s in registered {
        let Some(lane) = pair.lane_of(&s.meta) else {
            continue;
        };
        let leader = crate::leadership::Elections::of(&d.config, d.etcd.as_deref())
            .leader_of(lane, s.meta.operator)
            .await
            .ok()
            .flatten();
        let list = managers.of(&s.id);
        rows.push(ServiceRow {
            id: s.id,
            lane,
            operator: s.meta.operator,
            lagging: leader.as_ref().is_some_and(|l| l.url != s.location),
            manageable: manager.is_some_and(|m| list.contains(&m)),
            own: s.meta.operator == own,
            bridge_operator: operators
                .get(&lane)
                .is_some_and(|ops| ops.contains(&s.meta.operator)),
            name: s.name,
            location: s.location,
            updated_at: s.updated_at,
            managers: list,
            leader,
        });
    }
    let unregistered_lanes = d
        .config
        .lanes
        .iter()
        .copied()
        .filter(|lane| !rows.iter().any(|r| r.own && r.lane == *lane))
        .collect();
    Ok(ServicesView {
        registry: Some(registry),
        services: rows,
        unregistered_lanes,
        manager,
        can_send: d
            .writer
            .as_ref()
            .is_some_and(super::writer::Writer::can_send),
        managers_complete: complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managers_fold_added_and_removed() {
        let mut index = ManagersIndex::default();
        let id = B256::repeat_byte(1);
        index.apply(id, Address::repeat_byte(2), true);
        index.apply(id, Address::repeat_byte(3), true);
        index.apply(id, Address::repeat_byte(2), false);
        assert_eq!(index.of(&id), vec![Address::repeat_byte(3)]);
        assert!(index.of(&B256::ZERO).is_empty());
    }
}
