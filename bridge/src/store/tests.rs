//! The store on SQLite (in memory or in a temporary file).

use alloy::primitives::{Address, Bytes, U256};

use super::compaction::{Compaction, Restored};
use super::*;

const ID: &str = "pair 1/0x01 -> 2/0x02, operator 0x03";

fn request(nonce: u64, amount: u64) -> Request {
    Request {
        nonce,
        kind: 0,
        from: Address::repeat_byte(1),
        to: Address::repeat_byte(2),
        token: Address::ZERO,
        amount: U256::from(amount),
        fee: U256::ZERO,
        extraData: Bytes::new(),
        srcChainId: U256::from(1),
        srcBridge: Address::repeat_byte(9),
        srcTxHash: B256::repeat_byte(u8::try_from(nonce % 250).unwrap()),
        srcBlockNumber: 100 + nonce,
        srcLogIndex: 0,
    }
}

fn status(store: &Store, lane: Lane, nonce: u64) -> RequestStatus {
    store.get(lane, nonce).unwrap().unwrap().status
}

#[test]
fn the_sql_open_list_is_the_open_statuses() {
    let listed: Vec<String> = RequestStatus::OPEN
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    assert_eq!(OPEN, format!("({})", listed.join(", ")));
}

#[test]
fn requests_and_cursor_are_stored_together_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let lane = Lane::MainToService;
    {
        let mut store = Store::open(&path, ID).unwrap();
        assert_eq!(store.cursor(lane).unwrap(), None);
        let new = store
            .record_range(lane, &[request(0, 5), request(1, 6)], 111)
            .unwrap();
        assert_eq!(new, 2);
        // Re-indexing the same range is harmless.
        assert_eq!(store.record_range(lane, &[request(1, 6)], 111).unwrap(), 0);
    }
    let store = Store::open(&path, ID).unwrap();
    assert_eq!(store.cursor(lane).unwrap(), Some(111));
    assert_eq!(store.cursor(Lane::ServiceToMain).unwrap(), None);
    let open = store.open_requests(lane, 10).unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[1].request, request(1, 6));
    assert_eq!(open[1].status, RequestStatus::Observed);
    assert_eq!(open[1].payload_hash, payload_hash(&request(1, 6)));
}

#[test]
fn the_nonce_floor_is_one_above_the_highest_request_mined_before_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("store.sqlite"), ID).unwrap();
    let lane = Lane::MainToService;
    // Nothing stored: nothing known.
    assert_eq!(store.nonce_floor_from(lane, 500).unwrap(), 0);
    // Nonces 0..=2 mined in blocks 100..=102.
    store
        .record_range(lane, &[request(0, 1), request(1, 1), request(2, 1)], 103)
        .unwrap();
    assert_eq!(store.nonce_floor_from(lane, 103).unwrap(), 3);
    assert_eq!(store.nonce_floor_from(lane, 5_000).unwrap(), 3);
    // A cursor rewound to or below the highest's block: its request may be read again.
    assert_eq!(store.nonce_floor_from(lane, 102).unwrap(), 0);
    assert_eq!(
        store.nonce_floor_from(Lane::ServiceToMain, 5_000).unwrap(),
        0
    );
}

#[test]
fn requeue_reopens_voted_and_handled_stores_unknown_and_leaves_rejected_and_the_cursor_alone() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    store
        .record_range(
            lane,
            &[request(0, 1), request(1, 1), request(2, 1), request(3, 1)],
            50,
        )
        .unwrap();
    store.apply(lane, 0, &Transition::Handled).unwrap();
    store.apply(lane, 1, &Transition::Voted).unwrap();
    let rejected = Transition::Rejected {
        reason: RejectReason::WrongSource,
        detail: "look-alike".into(),
    };
    store.apply(lane, 3, &rejected).unwrap();
    let oversized = Transition::Rejected {
        reason: RejectReason::Oversized,
        detail: "gas required exceeds allowance".into(),
    };
    store.apply(lane, 2, &oversized).unwrap();
    let changed = store
        .requeue(
            lane,
            &[
                request(0, 1),
                request(1, 1),
                request(2, 1),
                request(3, 1),
                request(7, 1),
            ],
        )
        .unwrap();
    assert_eq!(changed, 4, "nonces 0, 1 and 2 reopened, nonce 7 stored");
    // An oversized request is looked at again (its size may not have been the cause).
    assert_eq!(status(&store, lane, 2), RequestStatus::Observed);
    // Audit M-3: the destination says open, so the handle is gone (a reorg): vote again.
    assert_eq!(status(&store, lane, 0), RequestStatus::Observed);
    assert_eq!(status(&store, lane, 1), RequestStatus::Observed);
    assert_eq!(status(&store, lane, 3), RequestStatus::Rejected);
    assert_eq!(status(&store, lane, 7), RequestStatus::Observed);
    assert_eq!(store.cursor(lane).unwrap(), Some(50));
    let err = store
        .requeue(lane, &[request(8, 1), request(2, 99)])
        .unwrap_err();
    assert!(matches!(err, StoreError::PayloadConflict { nonce: 2, .. }));
    assert!(store.get(lane, 8).unwrap().is_none(), "nothing written");
}

#[test]
fn waiting_and_rejected_reasons_are_counted_by_stable_name() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    let requests: Vec<Request> = (0..4).map(|n| request(n, 1)).collect();
    store.record_range(lane, &requests, 50).unwrap();
    let wait = |reason| Transition::Waiting {
        reason,
        detail: "destination refuses".into(),
    };
    store
        .apply(lane, 0, &wait(WaitReason::InsufficientLiquidity))
        .unwrap();
    store
        .apply(lane, 1, &wait(WaitReason::InsufficientLiquidity))
        .unwrap();
    store
        .apply(lane, 2, &wait(WaitReason::TokenLocked))
        .unwrap();
    store.apply(lane, 2, &Transition::Handled).unwrap();
    store
        .apply(
            lane,
            3,
            &Transition::Rejected {
                reason: RejectReason::Oversized,
                detail: "exceeds block gas limit".into(),
            },
        )
        .unwrap();
    assert_eq!(
        store.waiting_reasons(lane).unwrap(),
        vec![ReasonCount {
            reason: WaitReason::InsufficientLiquidity,
            requests: 2,
            detail: Some("destination refuses".into()),
            first_nonce: 0,
        }]
    );
    assert_eq!(
        store.rejected_reasons(lane).unwrap(),
        vec![ReasonCount {
            reason: RejectReason::Oversized,
            requests: 1,
            detail: Some("exceeds block gas limit".into()),
            first_nonce: 3,
        }]
    );
    let row = store.get(lane, 0).unwrap().unwrap();
    assert_eq!(row.waiting, Some(WaitReason::InsufficientLiquidity));
    assert_eq!(row.detail.as_deref(), Some("destination refuses"));
    let handled = store.get(lane, 2).unwrap().unwrap();
    assert_eq!((handled.waiting, handled.detail), (None, None));
}

#[test]
fn a_waiting_request_is_due_again_only_after_the_retry_pause() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    store
        .record_range(lane, &[request(0, 1), request(1, 1)], 50)
        .unwrap();
    store
        .apply(
            lane,
            0,
            &Transition::Waiting {
                reason: WaitReason::Paused,
                detail: String::new(),
            },
        )
        .unwrap();
    let due = |store: &Store, pause| -> Vec<u64> {
        store
            .needing_vote(lane, pause, 10, 10)
            .unwrap()
            .iter()
            .map(|r| r.request.nonce)
            .collect()
    };
    assert_eq!(due(&store, 3600), vec![1], "just refused: not due");
    assert_eq!(due(&store, 0), vec![0, 1], "pause over");
}

#[test]
fn a_different_payload_for_a_stored_nonce_is_refused_and_writes_nothing() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    store.record_range(lane, &[request(0, 5)], 101).unwrap();
    let err = store
        .record_range(lane, &[request(1, 1), request(0, 999)], 200)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::PayloadConflict { nonce: 0, .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(store.cursor(lane).unwrap(), Some(101), "cursor not moved");
    assert!(
        store.get(lane, 1).unwrap().is_none(),
        "nothing of the range written"
    );
}

#[test]
fn a_store_of_another_identity_or_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    Store::open(&path, ID).unwrap();
    let err = Store::open(&path, "someone else").err().unwrap();
    assert!(matches!(err, StoreError::WrongIdentity { .. }), "{err}");
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Store::open(&path, ID).err().unwrap();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn a_version_1_store_is_migrated_with_its_reasons_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let lane = Lane::MainToService;
    {
        // A store as version 1 left it: free-text reasons, no watermark.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('identity', 'pair 1/0x01 -> 2/0x02, operator 0x03'),
                                     ('schema_version', '1');
             CREATE TABLE cursors (lane TEXT PRIMARY KEY, next_block INTEGER NOT NULL,
                                   updated_at INTEGER NOT NULL);
             CREATE TABLE requests (lane TEXT NOT NULL, nonce INTEGER NOT NULL,
                 payload_hash BLOB NOT NULL, payload BLOB NOT NULL, src_block INTEGER NOT NULL,
                 status TEXT NOT NULL, reason TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                 observed_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                 PRIMARY KEY (lane, nonce));",
        )
        .unwrap();
        for (nonce, reason) in [
            (0u64, "destination skipped the vote: InsufficientLiquidity"),
            (1, "destination refuses: something new"),
        ] {
            let r = request(nonce, 1);
            conn.execute(
                "INSERT INTO requests VALUES ('main-to-service', ?1, ?2, ?3, 100, 'observed', ?4, 0, 1, 1)",
                params![nonce as i64, payload_hash(&r).as_slice(), r.abi_encode(), reason],
            )
            .unwrap();
        }
    }
    let store = Store::open(&path, ID).unwrap();
    let row = store.get(lane, 0).unwrap().unwrap();
    assert_eq!(row.waiting, Some(WaitReason::InsufficientLiquidity));
    assert_eq!(
        row.detail.as_deref(),
        Some("destination skipped the vote: InsufficientLiquidity")
    );
    assert_eq!(
        store.get(lane, 1).unwrap().unwrap().waiting,
        Some(WaitReason::Other)
    );
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn transitions_keep_every_tx_hash_and_final_states_stay_final() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::ServiceToMain;
    store.record_range(lane, &[request(7, 1)], 108).unwrap();
    let (a, b) = (B256::repeat_byte(0xaa), B256::repeat_byte(0xbb));
    store.apply(lane, 7, &Transition::Sent { tx: a }).unwrap();
    store
        .apply(lane, 7, &Transition::Replaced { tx: b })
        .unwrap();
    let row = store.get(lane, 7).unwrap().unwrap();
    assert_eq!(row.status, RequestStatus::Voting);
    assert_eq!(row.attempts, 1, "a replacement is the same attempt");
    assert_eq!(store.tx_hashes(lane, 7).unwrap(), vec![a, b]);
    assert_eq!(
        store.last_vote(lane).unwrap().map(|v| (v.0, v.1)),
        Some((7, b))
    );
    store.apply(lane, 7, &Transition::Voted).unwrap();
    store.apply(lane, 7, &Transition::Handled).unwrap();
    for later in [
        Transition::Reopened,
        Transition::Voted,
        Transition::Sent {
            tx: B256::repeat_byte(0xcc),
        },
    ] {
        store.apply(lane, 7, &later).unwrap();
        assert_eq!(status(&store, lane, 7), RequestStatus::Handled, "{later:?}");
    }
    assert!(store.open_requests(lane, 10).unwrap().is_empty());
    store.record_range(lane, &[request(8, 1)], 109).unwrap();
    store
        .apply(
            lane,
            8,
            &Transition::Rejected {
                reason: RejectReason::UnknownKind,
                detail: "kind 7".into(),
            },
        )
        .unwrap();
    store.apply(lane, 8, &Transition::Reopened).unwrap();
    let row = store.get(lane, 8).unwrap().unwrap();
    assert_eq!(row.status, RequestStatus::Rejected);
    assert_eq!(row.rejected, Some(RejectReason::UnknownKind));
    let counts = store.counts(lane).unwrap();
    assert_eq!(
        (
            counts.of(RequestStatus::Handled),
            counts.of(RequestStatus::Rejected),
            counts.of(RequestStatus::Observed)
        ),
        (1, 1, 0)
    );
    assert_eq!(counts.max_nonce, Some(8));
    assert_eq!(counts.oldest_open_observed_at, None);
}

#[test]
fn voted_requests_are_rechecked_round_robin_and_never_block_new_ones() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    let requests: Vec<Request> = (0..6).map(|n| request(n, 1)).collect();
    store.record_range(lane, &requests, 200).unwrap();
    for n in 0..4 {
        store.apply(lane, n, &Transition::Voted).unwrap();
    }
    let need: Vec<u64> = store
        .needing_vote(lane, 5, 2, 2)
        .unwrap()
        .iter()
        .map(|r| r.request.nonce)
        .collect();
    assert_eq!(
        need,
        vec![4, 5],
        "voted rows at the head do not take the window"
    );
    let stale = store.stale_voted(lane, 0, 10).unwrap();
    assert_eq!(stale.len(), 4);
    assert!(
        store.stale_voted(lane, 3600, 10).unwrap().is_empty(),
        "just checked: not stale yet"
    );
}

#[test]
fn gaps_are_found_from_the_first_indexed_nonce_and_the_watermark_moves_on() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    assert!(store.missing_nonces(lane, 10).unwrap().is_empty());
    // The relay started after nonce 40 (its start block is later): nothing below is missing.
    store
        .record_range(
            lane,
            &[
                request(40, 1),
                request(41, 1),
                request(44, 1),
                request(46, 1),
            ],
            120,
        )
        .unwrap();
    assert_eq!(store.missing_nonces(lane, 10).unwrap(), vec![42, 43, 45]);
    assert_eq!(store.missing_nonces(lane, 2).unwrap(), vec![42, 43]);
    assert_eq!(store.contiguous_from(lane).unwrap(), Some(42));
    store
        .record_range(lane, &[request(42, 1), request(43, 1)], 121)
        .unwrap();
    assert_eq!(store.missing_nonces(lane, 10).unwrap(), vec![45]);
    assert_eq!(store.contiguous_from(lane).unwrap(), Some(45));
    store.skip_gap(lane, 45).unwrap();
    assert!(store.missing_nonces(lane, 10).unwrap().is_empty());
    assert_eq!(store.contiguous_from(lane).unwrap(), Some(47));
    store.rewind_cursor(lane, 103).unwrap();
    assert_eq!(store.cursor(lane).unwrap(), Some(103));
    store.rewind_cursor(lane, 500).unwrap();
    assert_eq!(
        store.cursor(lane).unwrap(),
        Some(103),
        "rewind never moves forward"
    );
}

#[test]
fn a_payload_that_no_longer_matches_its_hash_is_corrupt() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    store.record_range(lane, &[request(0, 1)], 50).unwrap();
    store
        .conn
        .execute(
            "UPDATE requests SET payload = ?1 WHERE nonce = 0",
            params![request(0, 2).abi_encode()],
        )
        .unwrap();
    let err = store.get(lane, 0).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[test]
fn compaction_drops_rows_below_the_point_keeps_counts_and_a_lane_restores_from_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let lane = Lane::MainToService;
    let mut store = Store::open(&path, ID).unwrap();
    let requests: Vec<Request> = (0..10).map(|n| request(n, 5)).collect();
    store.record_range(lane, &requests, 200).unwrap();
    for nonce in 0..6 {
        assert!(store.apply(lane, nonce, &Transition::Handled).unwrap());
    }
    store.apply(lane, 7, &Transition::Voted).unwrap();
    assert!(store.missing_nonces(lane, 10).unwrap().is_empty());
    let copy = dir.path().join("copy.sqlite");
    copy_store_file(&path, &copy).unwrap();

    store.begin_compaction(lane, 6, 1).unwrap();
    let mut dropped = 0;
    loop {
        let n = store.compact_step(lane, 4).unwrap();
        assert!(n <= 4, "one step drops at most its limit");
        if n == 0 {
            break;
        }
        dropped += n;
    }
    assert_eq!(dropped, 6);
    assert_eq!(store.row_count(lane).unwrap(), 4);
    assert_eq!(store.get(lane, 5).unwrap(), None);
    let counts = store.counts(lane).unwrap();
    assert_eq!(
        counts.of(RequestStatus::Handled),
        6,
        "dropped rows still count"
    );
    assert_eq!(counts.max_nonce, Some(9));
    assert_eq!(
        store.compaction(lane).unwrap(),
        Compaction {
            below: 6,
            dropped: 6,
            version: 1
        }
    );
    // Re-indexing compacted nonces stores nothing, and the gap check starts above them.
    assert_eq!(store.record_range(lane, &requests[..6], 200).unwrap(), 0);
    assert_eq!(store.row_count(lane).unwrap(), 4);
    assert!(store.missing_nonces(lane, 10).unwrap().is_empty());
    // The point never moves back.
    store.begin_compaction(lane, 2, 1).unwrap();
    assert_eq!(store.compaction(lane).unwrap().below, 6);

    // A new store restores the lane from the copy, below the point dropped.
    let mut fresh = Store::open(&dir.path().join("fresh.sqlite"), ID).unwrap();
    assert!(fresh.lane_is_empty(lane).unwrap());
    let restored = fresh.restore_lane(&copy, lane, 6, 1).unwrap();
    assert_eq!(
        restored,
        Restored {
            rows: 0,
            cursor: Some(106),
            below: 6
        },
        "nothing above the point was handled: the indexer reads the chain again from nonce 6's block"
    );
    assert_eq!(fresh.counts(lane).unwrap().of(RequestStatus::Handled), 6);
    assert_eq!(
        fresh.get(lane, 7).unwrap(),
        None,
        "no open payload from a snapshot"
    );
    // The indexer brings them from the source: observed, this replica sent none of their votes.
    assert_eq!(fresh.record_range(lane, &requests[6..], 200).unwrap(), 4);
    assert_eq!(status(&fresh, lane, 7), RequestStatus::Observed);
    assert!(fresh.tx_hashes(lane, 7).unwrap().is_empty());
    assert!(fresh.lane_is_empty(Lane::ServiceToMain).unwrap());
    // Not twice, and not from another operator's store.
    assert!(fresh.restore_lane(&copy, lane, 6, 1).is_err());
    let mut other = Store::open(&dir.path().join("other.sqlite"), "another operator").unwrap();
    assert!(matches!(
        other.restore_lane(&copy, lane, 6, 1),
        Err(StoreError::WrongIdentity { .. })
    ));
}

#[test]
fn a_store_that_followed_a_backup_before_indexing_replays_without_a_gap_hunt() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    // Followed a backup (point 6) before its indexer stored anything: no watermark yet.
    store.begin_compaction(lane, 6, 1).unwrap();
    assert_eq!(store.contiguous_from(lane).unwrap(), None);
    // A point of 0 (a lane with nothing indexed at backup time) never sets a watermark either.
    store.begin_compaction(Lane::ServiceToMain, 0, 1).unwrap();
    assert_eq!(store.contiguous_from(Lane::ServiceToMain).unwrap(), None);
    // The replay from start_block brings nonces 0..10: those below 6 are not stored, and the
    // gap check starts at the first stored one, so it finds no gap below the point.
    let requests: Vec<Request> = (0..10).map(|n| request(n, 5)).collect();
    assert_eq!(store.record_range(lane, &requests, 300).unwrap(), 4);
    assert_eq!(store.contiguous_from(lane).unwrap(), Some(6));
    assert!(store.missing_nonces(lane, 10).unwrap().is_empty());
    // A real gap above the point is still found.
    store.record_range(lane, &[request(12, 5)], 301).unwrap();
    assert_eq!(store.missing_nonces(lane, 10).unwrap(), vec![10, 11]);
}

/// Audit NEW-L3: a snapshot that marks open requests set aside, or carries a forged open
/// payload, silences or misleads nobody: only handled rows before the first unhandled one come
/// in, and the indexer re-reads the chain from there (the chain's payloads, no conflict).
#[test]
fn a_restore_takes_no_open_or_rejected_row_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let lane = Lane::MainToService;
    let path = dir.path().join("snapshot.sqlite");
    let requests: Vec<Request> = (0..6).map(|n| request(n, 5)).collect();
    {
        let mut snap = Store::open(&path, ID).unwrap();
        let mut forged = requests.clone();
        forged[4] = request(4, 999_999); // a forged open payload
        snap.record_range(lane, &forged, 300).unwrap();
        for nonce in 0..3 {
            snap.apply(lane, nonce, &Transition::Handled).unwrap();
        }
        snap.apply(
            lane,
            3,
            &Transition::Rejected {
                reason: RejectReason::WrongSource,
                detail: "a snapshot that silences the operator".into(),
            },
        )
        .unwrap();
        snap.apply(lane, 5, &Transition::Handled).unwrap();
    }
    let mut fresh = Store::open(&dir.path().join("fresh.sqlite"), ID).unwrap();
    let restored = fresh.restore_lane(&path, lane, 0, 1).unwrap();
    assert_eq!(
        restored.rows, 3,
        "handled 0..3 only (5 lies after the first unhandled)"
    );
    assert_eq!(
        restored.cursor,
        Some(103),
        "re-read from nonce 3's source block"
    );
    assert_eq!(
        fresh.get(lane, 3).unwrap(),
        None,
        "not set aside by the snapshot"
    );
    // The indexer re-reads the chain: the genuine payloads, no conflict, nothing set aside.
    assert_eq!(fresh.record_range(lane, &requests[3..], 300).unwrap(), 3);
    assert_eq!(status(&fresh, lane, 3), RequestStatus::Observed);
    assert_eq!(fresh.get(lane, 4).unwrap().unwrap().request, requests[4]);
    assert_eq!(
        status(&fresh, lane, 5),
        RequestStatus::Observed,
        "re-checked on the chain"
    );
}

/// However many requests wait for a destination condition (a user can make many wait for
/// liquidity), the fresh ones stay in view: the waiting ones due for a retry come at most
/// `waiting_limit` at a time.
#[test]
fn requests_waiting_in_numbers_never_hide_fresh_ones() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    let requests: Vec<Request> = (0..40).map(|n| request(n, 1)).collect();
    store.record_range(lane, &requests, 200).unwrap();
    for n in 0..30 {
        store
            .apply(
                lane,
                n,
                &Transition::Waiting {
                    reason: WaitReason::InsufficientLiquidity,
                    detail: String::new(),
                },
            )
            .unwrap();
    }
    let need: Vec<u64> = store
        .needing_vote(lane, 0, 5, 2)
        .unwrap()
        .iter()
        .map(|r| r.request.nonce)
        .collect();
    assert_eq!(need, vec![0, 1, 30, 31, 32, 33, 34]);
}

#[test]
fn backup_connections_keep_a_small_page_cache_and_the_relays_its_own() {
    // The bound on what grew a backup's memory: each one-pass connection's cache.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let relay = Store::open(&path, ID).unwrap();
    assert_eq!(relay.cache_kib().unwrap(), 2_000);
    let one_pass = Store::open_one_pass(&path, ID).unwrap();
    assert_eq!(
        one_pass.cache_kib().unwrap(),
        super::schema::ONE_PASS_CACHE_KIB
    );
    assert!(super::schema::ONE_PASS_CACHE_KIB < relay.cache_kib().unwrap());
}

#[test]
fn compaction_keeps_the_rows_of_the_attested_batch_its_point_falls_in() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    // Nonces 4..=8 come from one source block: one attested batch (window 0..32).
    let requests: Vec<Request> = (0..10)
        .map(|n| {
            let mut r = request(n, 5);
            if (4..=8).contains(&n) {
                r.srcBlockNumber = 104;
            }
            r
        })
        .collect();
    store.record_range(lane, &requests, 200).unwrap();
    for nonce in 0..6 {
        store.apply(lane, nonce, &Transition::Handled).unwrap();
    }
    store.begin_compaction(lane, 6, 1).unwrap();
    while store.compact_step(lane, 100).unwrap() > 0 {}
    assert_eq!(
        store.get(lane, 3).unwrap(),
        None,
        "below the batch: dropped"
    );
    assert!(
        store.get(lane, 4).unwrap().is_some(),
        "the batch of nonce 6 stays whole"
    );
    let batch: Vec<u64> = store
        .batch_of(lane, 6)
        .unwrap()
        .iter()
        .map(|r| r.nonce)
        .collect();
    assert_eq!(batch, vec![4, 5, 6, 7, 8]);
    assert_eq!(
        store.counts(lane).unwrap().of(RequestStatus::Handled),
        6,
        "counts stay whole"
    );
}

/// The attested look-ahead's nonces are exactly `needing_vote`'s (fresh, waiting and due,
/// deferred, voted and handled ones alike), and the fresh ones come from the `requests_fresh`
/// index alone: no row, no payload.
#[test]
fn the_nonces_needing_a_vote_are_needing_votes_and_read_from_an_index_alone() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    let requests: Vec<Request> = (0..12).map(|n| request(n, 1)).collect();
    store.record_range(lane, &requests, 200).unwrap();
    store.apply(lane, 1, &Transition::Voted).unwrap();
    store.apply(lane, 2, &Transition::Handled).unwrap();
    let waiting = Transition::Waiting {
        reason: WaitReason::Paused,
        detail: String::new(),
    };
    store.apply(lane, 3, &waiting).unwrap();
    let deferred = Transition::Deferred {
        until: unix_now() + 3600,
    };
    store.apply(lane, 4, &deferred).unwrap();
    for (pause, limit, waiting_limit) in [(0, 20, 20), (3600, 20, 20), (0, 3, 1), (0, 20, 0)] {
        let rows: Vec<u64> = store
            .needing_vote(lane, pause, limit, waiting_limit)
            .unwrap()
            .iter()
            .map(|r| r.request.nonce)
            .collect();
        let nonces = store
            .needing_vote_nonces(lane, pause, limit, waiting_limit)
            .unwrap();
        assert_eq!(nonces, rows, "pause {pause} limit {limit}/{waiting_limit}");
    }
    assert_eq!(
        store.needing_vote_nonces(lane, 0, 20, 20).unwrap(),
        vec![0, 3, 5, 6, 7, 8, 9, 10, 11]
    );
    let plan: Vec<String> = {
        let mut stmt = store
            .conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT nonce {}",
                super::FRESH_NEEDING_VOTE
            ))
            .unwrap();
        stmt.query_map(params!["main-to-service", 10, 0], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(
        plan.iter()
            .any(|p| p.contains("USING COVERING INDEX requests_fresh")),
        "{plan:?}"
    );
}

/// Many transitions in one transaction: all of them (a vote sent included: its own savepoint
/// nests), or — when one fails — none.
#[test]
fn transitions_in_one_transaction_commit_together_or_not_at_all() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    let requests: Vec<Request> = (0..4).map(|n| request(n, 1)).collect();
    store.record_range(lane, &requests, 200).unwrap();
    let tx = alloy::primitives::B256::repeat_byte(7);
    store
        .in_transaction(|s| {
            s.apply(lane, 0, &Transition::Handled)?;
            s.apply(lane, 1, &Transition::Sent { tx })?;
            Ok(())
        })
        .unwrap();
    assert_eq!(status(&store, lane, 0), RequestStatus::Handled);
    assert_eq!(status(&store, lane, 1), RequestStatus::Voting);
    let failed = store.in_transaction(|s| {
        s.apply(lane, 2, &Transition::Handled)?;
        Err::<(), _>(StoreError::Corrupt("a failure halfway".into()))
    });
    assert!(failed.is_err());
    assert_eq!(
        status(&store, lane, 2),
        RequestStatus::Observed,
        "rolled back"
    );
    // The connection is usable (not left inside a transaction).
    store.apply(lane, 3, &Transition::Handled).unwrap();
    assert_eq!(status(&store, lane, 3), RequestStatus::Handled);
    assert_eq!(
        store.observed_at(lane, 3).unwrap(),
        store.get(lane, 3).unwrap().map(|r| r.observed_at)
    );
    assert_eq!(store.observed_at(lane, 9).unwrap(), None);
}

/// The counts by status the metrics read every round are kept by triggers, equal to counting
/// the rows through inserts, every transition, a requeue, a new term and compaction; a counts
/// table that says otherwise (an older store, a restored snapshot) is counted afresh at open.
#[test]
fn counts_by_status_follow_every_change_and_are_counted_afresh_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let lane = Lane::MainToService;
    let mut store = Store::open(&path, ID).unwrap();
    let handled = RequestStatus::ALL
        .iter()
        .position(|s| *s == RequestStatus::Handled)
        .unwrap();
    let by_rows = |store: &Store| -> Vec<u64> {
        RequestStatus::ALL
            .iter()
            .map(|s| {
                store
                    .conn
                    .query_row(
                        "SELECT COUNT(*) FROM requests WHERE lane = ?1 AND status = ?2",
                        params![lane.as_str(), s.as_str()],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(to_u64)
                    .unwrap()
            })
            .collect()
    };
    let kept = |store: &Store| -> Vec<u64> {
        let counts = store.counts(lane).unwrap();
        RequestStatus::ALL.iter().map(|s| counts.of(*s)).collect()
    };
    let requests: Vec<Request> = (0..40).map(|n| request(n, 5)).collect();
    store.record_range(lane, &requests, 200).unwrap();
    // Indexed again: nothing counts twice.
    store.record_range(lane, &requests[..10], 200).unwrap();
    assert_eq!(kept(&store), by_rows(&store));
    assert_eq!(kept(&store).iter().sum::<u64>(), 40);
    store
        .in_transaction(|s| {
            for nonce in 0..20 {
                s.apply(lane, nonce, &Transition::Handled)?;
            }
            for nonce in 20..25 {
                s.apply(
                    lane,
                    nonce,
                    &Transition::Sent {
                        tx: B256::repeat_byte(1),
                    },
                )?;
            }
            s.apply(lane, 25, &Transition::Voted)?;
            s.apply(
                lane,
                26,
                &Transition::Rejected {
                    reason: RejectReason::UnknownKind,
                    detail: "kind 7".into(),
                },
            )?;
            Ok(())
        })
        .unwrap();
    assert_eq!(kept(&store), by_rows(&store));
    assert_eq!(kept(&store)[handled], 20);
    store.reopen_in_flight(lane).unwrap();
    store.requeue(lane, &requests[3..5]).unwrap();
    assert_eq!(kept(&store), by_rows(&store));
    store.begin_compaction(lane, 3, 1).unwrap();
    while store.compact_step(lane, 2).unwrap() > 0 {}
    let mut expected = by_rows(&store);
    // The compacted rows still count as handled: nonces 0 and 1 (nonce 2, in the first block of
    // nonce 3's pair, stays with the attested batch the point falls in).
    expected[handled] += 2;
    assert_eq!(kept(&store), expected);
    // A counts table that lies is counted again when the store opens.
    store
        .conn
        .execute("UPDATE request_counts SET n = n + 1000", [])
        .unwrap();
    assert_ne!(kept(&store), expected);
    drop(store);
    let store = Store::open(&path, ID).unwrap();
    assert_eq!(kept(&store), expected);
}

/// What the watcher reads every round reads an index, not every row of the lane: the last vote
/// from the end of `request_txs_sent`, the reasons of rejected requests from
/// `requests_rejected`.
#[test]
fn the_watchers_reads_use_their_indexes() {
    let store = Store::open_in_memory(ID).unwrap();
    let plan = |sql: &str| -> Vec<String> {
        let mut stmt = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        stmt.query_map(params!["main-to-service"], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let last = plan(super::LAST_VOTE);
    assert!(
        last.iter().any(|p| p.contains("INDEX request_txs_sent"))
            && !last.iter().any(|p| p.contains("TEMP B-TREE")),
        "{last:?}"
    );
    let rejected = plan(&super::counts::reason_counts_query(super::counts::REJECTED));
    assert!(
        rejected
            .iter()
            .any(|p| p.contains("INDEX requests_rejected")),
        "{rejected:?}"
    );
}

/// Attested batches span an aligned pair of source blocks when its first block holds 2 to 7
/// requests (`PAIR_FROM`, `PAIR_BELOW`; issue 54), and only once the pair's second block is
/// indexed; a busy first block, a lone request or an empty first block keeps a block alone; a
/// pair across a multiple of 32 stays one batch, and more than 32 are cut from the first.
#[test]
fn attested_batches_span_a_quiet_pair_of_blocks_once_both_are_indexed() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    // (nonce, source block): 200 holds 3, 201 holds 2, 202 holds 9 (busy), 203 holds 1, 204
    // holds 1 (lone), 251 holds 14 (its pair's first block, 250, none); 300 and 301 hold 2 each
    // (nonces 30..=33, across 32); 303 holds 40 (nonces 34..=73).
    let blocks = [200, 200, 200, 201, 201]
        .into_iter()
        .chain([202; 9])
        .chain([203, 204])
        .chain((16..30).map(|_| 251))
        .chain([300, 300, 301, 301])
        .chain([303; 40]);
    let requests: Vec<Request> = blocks
        .enumerate()
        .map(|(nonce, block)| {
            let mut r = request(nonce as u64, 5);
            r.srcBlockNumber = block;
            r
        })
        .collect();
    // Only block 200 indexed: its batch waits for block 201.
    store.record_range(lane, &requests[..3], 201).unwrap();
    assert_eq!(
        batch_nonces(&store, lane, 0),
        Vec::<u64>::new(),
        "block 201 not indexed"
    );
    store.record_range(lane, &requests[3..], 400).unwrap();
    let cases: [(u64, std::ops::Range<u64>, &str); 10] = [
        (0, 0..5, "a quiet pair: one batch"),
        (4, 0..5, "the same from its second block"),
        (5, 5..14, "a busy block alone"),
        (14, 14..15, "after a busy first block: alone"),
        (15, 15..16, "a lone request: alone, without a wait"),
        (16, 16..30, "its first block empty"),
        (31, 30..34, "one batch across 32"),
        (33, 30..34, "one batch across 32"),
        (65, 34..66, "32 from the block's first"),
        (66, 66..74, "and the rest"),
    ];
    for (nonce, expected, why) in cases {
        let expected: Vec<u64> = expected.collect();
        assert_eq!(
            batch_nonces(&store, lane, nonce),
            expected,
            "nonce {nonce}: {why}"
        );
    }
    // A lone request in a pair's first block is composed before the second block is indexed.
    let mut lone = request(74, 5);
    lone.srcBlockNumber = 400;
    store.record_range(lane, &[lone], 401).unwrap();
    assert_eq!(
        batch_nonces(&store, lane, 74),
        vec![74],
        "not held for block 401"
    );
}

/// The requests of block 200 (nonces 0..=3, a quiet block) and 201 (4..=8): one attested batch
/// of nine, the pair's.
fn quiet_pair() -> Vec<Request> {
    (0..9)
        .map(|n| {
            let mut r = request(n, 5);
            r.srcBlockNumber = if n < 4 { 200 } else { 201 };
            r
        })
        .collect()
}

fn batch_nonces(store: &Store, lane: Lane, nonce: u64) -> Vec<u64> {
    store
        .batch_of(lane, nonce)
        .unwrap()
        .iter()
        .map(|r| r.nonce)
        .collect()
}

/// A compaction point at a store's watermark (the first nonce it does not hold) keeps the rows
/// of the block before it when that block pairs with the one still to come: the pair's batch
/// is composed whole once it is indexed (review of issue 54's pairs).
#[test]
fn compaction_at_the_watermark_keeps_a_quiet_block_for_its_pair() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    let requests = quiet_pair();
    store.record_range(lane, &requests[..4], 201).unwrap();
    for nonce in 0..4 {
        store.apply(lane, nonce, &Transition::Handled).unwrap();
    }
    store.begin_compaction(lane, 4, 1).unwrap();
    while store.compact_step(lane, 100).unwrap() > 0 {}
    assert!(store.get(lane, 0).unwrap().is_some(), "block 200 kept");
    store.record_range(lane, &requests[4..], 202).unwrap();
    assert_eq!(batch_nonces(&store, lane, 5), (0..9).collect::<Vec<_>>());
}

/// A restore whose compaction point falls inside a pair records the pair's first row as its
/// point, so the indexer stores again the pair's handled rows the copy does not give (those at
/// or after the first open request's block): the batch is composed whole.
#[test]
fn a_restore_inside_a_pair_reindexes_what_the_copy_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let lane = Lane::MainToService;
    let mut store = Store::open(&path, ID).unwrap();
    let requests = quiet_pair();
    store.record_range(lane, &requests, 202).unwrap();
    for nonce in 0..8 {
        store.apply(lane, nonce, &Transition::Handled).unwrap();
    }
    let copy = dir.path().join("copy.sqlite");
    copy_store_file(&path, &copy).unwrap();
    let mut fresh = Store::open(&dir.path().join("fresh.sqlite"), ID).unwrap();
    let restored = fresh.restore_lane(&copy, lane, 6, 1).unwrap();
    assert_eq!(restored.below, 0, "the pair's first row");
    assert_eq!(restored.cursor, Some(201), "nonce 8's block is read again");
    fresh.record_range(lane, &requests[4..], 202).unwrap();
    assert_eq!(batch_nonces(&fresh, lane, 8), (0..9).collect::<Vec<_>>());
}

/// A row stored ahead of the indexer (recovery's requeue) says nothing of its block's other
/// requests: its batch waits for the indexer.
#[test]
fn a_batch_waits_for_the_indexer_past_its_blocks() {
    let mut store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    let requests = quiet_pair();
    store.record_range(lane, &requests[..4], 201).unwrap();
    store.requeue(lane, &requests[5..6]).unwrap();
    assert_eq!(batch_nonces(&store, lane, 5), Vec::<u64>::new());
    store.record_range(lane, &requests[4..], 202).unwrap();
    assert_eq!(batch_nonces(&store, lane, 5), (0..9).collect::<Vec<_>>());
}

/// This operator's signature of a batch is found by its first nonce, whatever other batch of
/// its own overlaps it (one composed under an earlier rule).
#[test]
fn an_own_attestation_is_found_beside_an_overlapping_one() {
    let store = Store::open_in_memory(ID).unwrap();
    let lane = Lane::MainToService;
    let own = |first: u64, count: u64| super::attestations::OwnAttestation {
        first_nonce: first,
        count,
        digest: B256::repeat_byte(u8::try_from(first).unwrap()),
        signature: vec![7u8; 65].into(),
    };
    store.put_attestation(lane, &own(28, 4)).unwrap();
    store.put_attestation(lane, &own(30, 4)).unwrap();
    assert_eq!(store.attestation(lane, 30).unwrap(), Some(own(30, 4)));
    assert_eq!(store.attestation(lane, 29).unwrap(), None);
}

/// A kept statement runs the plan it was prepared with (issue 54): with SQLite's default, every
/// run of a statement with a `LIMIT ?` or a parameter next to a partial index's condition was
/// parsed and planned again, every step of every lane. Here each of the voter's and the
/// watcher's per-round reads runs with changing parameters and none is prepared a second time.
#[test]
fn kept_statements_are_not_planned_again_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("store.sqlite"), ID).unwrap();
    let lane = Lane::MainToService;
    store
        .record_range(lane, &[request(0, 5), request(1, 6)], 111)
        .unwrap();
    for i in 0..5 {
        store.stale_voted(lane, 30 + i, 64 + i as usize).unwrap();
        store
            .needing_vote(lane, 30 + i, 64 + i as usize, 4)
            .unwrap();
        store.waiting_reasons(lane).unwrap();
        store.rejected_reasons(lane).unwrap();
    }
    let statements = [
        format!(
            "SELECT {ROW} FROM requests WHERE lane = ?1 AND status = 'voted' AND updated_at <= ?2
                 ORDER BY updated_at, nonce LIMIT ?3"
        ),
        format!("SELECT {ROW} {FRESH_NEEDING_VOTE}"),
        counts::reason_counts_query(&format!("status IN {OPEN}")),
        counts::reason_counts_query(counts::REJECTED),
    ];
    for sql in statements {
        let stmt = store.conn.prepare_cached(&sql).unwrap();
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "prepared again: {sql}"
        );
        assert!(
            stmt.get_status(rusqlite::StatementStatus::VmStep) > 0,
            "never ran (the SQL here is not the store's): {sql}"
        );
    }
}
