//! The pending/handled timeline per lane: a bounded ring of samples taken from the lane status
//! the watcher publishes (no extra chain reads), for the overview's chart. It lives in memory:
//! a restarted relay starts a new one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use multibridge_contracts::Lane;
use serde::Serialize;

/// One sample of a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Unix seconds.
    pub t: u64,
    /// `requestNonce` on the source.
    pub requests: u64,
    /// `lowerHandleNonce` on the destination (every nonce below is handled).
    pub lower: u64,
    /// `upperHandleNonce` on the destination.
    pub upper: u64,
    /// Requests not handled yet (`requests − lower`).
    pub pending: u64,
}

/// Samples per lane, the oldest dropped past `capacity`.
pub struct Timeline {
    capacity: usize,
    lanes: Mutex<BTreeMap<Lane, VecDeque<Sample>>>,
}

impl Timeline {
    /// A timeline keeping `capacity` samples per lane.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(2),
            lanes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Add a sample of `lane` (a sample not newer than the last one replaces it).
    pub fn push(&self, lane: Lane, sample: Sample) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let ring = lanes.entry(lane).or_default();
        if ring.back().is_some_and(|last| last.t >= sample.t) {
            ring.pop_back();
        }
        ring.push_back(sample);
        while ring.len() > self.capacity {
            ring.pop_front();
        }
    }

    /// The samples of `lane`, oldest first.
    pub fn samples(&self, lane: Lane) -> Vec<Sample> {
        self.lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&lane)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Sample every lane of the `/status` board's `lanes` section at `now`.
    pub fn sample_board(&self, lanes: &serde_json::Value, now: u64) {
        let Some(map) = lanes.as_object() else {
            return;
        };
        for (name, status) in map {
            let Ok(lane) = name.parse::<Lane>() else {
                continue;
            };
            let field = |k: &str| status.get(k).and_then(serde_json::Value::as_u64);
            if let (Some(requests), Some(lower), Some(upper)) = (
                field("request_nonce"),
                field("lower_handle_nonce"),
                field("upper_handle_nonce"),
            ) {
                self.push(
                    lane,
                    Sample {
                        t: now,
                        requests,
                        lower,
                        upper,
                        pending: requests.saturating_sub(lower),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_bounded_ordered_and_read_from_the_board() {
        let t = Timeline::new(3);
        for i in 0..5u64 {
            t.sample_board(
                &serde_json::json!({
                    "main-to-service": {"request_nonce": 10 + i, "lower_handle_nonce": 8, "upper_handle_nonce": 9},
                    "not-a-lane": {"request_nonce": 1},
                }),
                100 + i,
            );
        }
        let s = t.samples(Lane::MainToService);
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.iter().map(|x| x.t).collect::<Vec<_>>(),
            vec![102, 103, 104]
        );
        assert_eq!(s[2].pending, 6);
        assert!(t.samples(Lane::ServiceToMain).is_empty());
        // A sample at the same second replaces the last one.
        t.push(
            Lane::MainToService,
            Sample {
                t: 104,
                requests: 20,
                lower: 20,
                upper: 20,
                pending: 0,
            },
        );
        let s = t.samples(Lane::MainToService);
        assert_eq!(s.len(), 3);
        assert_eq!(s[2].requests, 20);
    }
}
