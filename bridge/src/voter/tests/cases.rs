//! The voter's decisions, one test each (fakes and harness in `mod.rs`).

use super::*;

#[tokio::test]
async fn the_receipt_path_settles_each_carried_request_by_its_log() {
    let mut h = Harness::new(4, 64);
    let step = h.step().await;
    assert_eq!(step.sent, 4);
    assert_eq!(h.jobs(), vec![(false, vec![0, 1, 2, 3])]);
    for n in 0..4 {
        assert_eq!(h.status(n), RequestStatus::Voting);
    }
    assert_eq!(h.voter.in_flight(), 1);
    // Nonce 0 recorded our vote, 1 executed with it, 2 skipped for liquidity, 3 not mentioned.
    h.mined(
        0,
        true,
        300_000,
        vec![
            vote_cast(0, ME),
            vote_cast(1, ME),
            handled(1),
            skipped(2, Bridge::InsufficientLiquidity::SELECTOR),
        ],
    );
    let step = h.step().await;
    assert_eq!((step.handled, step.waiting), (1, 1));
    assert_eq!(h.status(0), RequestStatus::Voted);
    assert_eq!(h.status(1), RequestStatus::Handled);
    assert_eq!(h.row(2).waiting, Some(WaitReason::InsufficientLiquidity));
    // Nonce 3 went back to be pre-checked, found open, and voted again.
    assert_eq!(h.jobs(), vec![(false, vec![3])]);
    assert_eq!(h.status(3), RequestStatus::Voting);
    assert_eq!(
        h.metric("multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"mined\"}"),
        1.0
    );
    assert_eq!(
        h.metric("multibridge_handled_total{lane=\"main-to-service\"}"),
        1.0
    );
    assert_eq!(
        h.metric("multibridge_handle_latency_seconds_count{lane=\"main-to-service\"}"),
        1.0
    );
}

#[tokio::test]
async fn a_reverted_vote_reopens_what_it_carried() {
    let mut h = Harness::new(2, 64);
    h.step().await;
    h.jobs();
    h.mined(0, false, 90_000, vec![]);
    h.step().await;
    assert_eq!(
        h.metric(
            "multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"reverted\"}"
        ),
        1.0
    );
    assert_eq!(
        h.jobs(),
        vec![(false, vec![0, 1])],
        "re-checked and re-sent"
    );
    h.mined(1, false, 90_000, vec![]);
    h.destination.set(0, NonceState::Handled);
    h.destination.set(1, NonceState::VotedByUs);
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(h.status(1), RequestStatus::Voted);
    assert!(h.jobs().is_empty());
}

/// Audit NEW-H1: a vote mined out of gas (its whole gas limit used) is not re-sent as it was:
/// what it carried goes alone, each with the worst case added once more; a request whose single
/// vote runs out of gas again is set aside with its reason and nonce (alert), while the others
/// are voted and the lane goes on.
#[tokio::test]
async fn a_mined_out_of_gas_goes_to_singles_at_worst_case_gas_and_a_repeat_is_set_aside() {
    let mut h = Harness::new(3, 64);
    h.step().await;
    assert_eq!(h.jobs(), vec![(false, vec![0, 1, 2])]);
    h.mined(0, false, 1_000_000, vec![]);
    h.step().await;
    assert_eq!(
        h.metric(
            "multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"out_of_gas\"}"
        ),
        1.0
    );
    assert_eq!(
        h.jobs(),
        vec![(false, vec![0]), (false, vec![1]), (false, vec![2])],
        "one by one"
    );
    let limits: Vec<u64> = std::mem::take(&mut *h.submit.gas_limits.lock().unwrap());
    assert_eq!(
        &limits[1..],
        &[1_000_000 + multibridge_contracts::ITEM_GAS; 3],
        "each with the worst case added once more"
    );
    // Nonce 1's single runs out of gas again; 0 and 2 execute.
    h.mined(1, true, 90_000, vec![vote_cast(0, ME), handled(0)]);
    h.mined(
        2,
        false,
        1_000_000 + multibridge_contracts::ITEM_GAS,
        vec![],
    );
    h.mined(3, true, 90_000, vec![vote_cast(2, ME), handled(2)]);
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(h.status(2), RequestStatus::Handled);
    let row = h.row(1);
    assert_eq!(row.status, RequestStatus::Rejected, "set aside, not resent");
    assert_eq!(row.rejected, Some(RejectReason::OutOfGas));
    assert!(h.jobs().is_empty(), "no vote for it any more");
    crate::observe::status::publish_store_stats(&h.store.lock(), &h.metrics.lane(LANE)).unwrap();
    assert_eq!(
        h.metric("multibridge_rejected_requests{lane=\"main-to-service\",reason=\"out_of_gas\"}"),
        1.0
    );
    assert_eq!(
        h.metric(
            "multibridge_rejected_first_nonce{lane=\"main-to-service\",reason=\"out_of_gas\"}"
        ),
        1.0,
        "the metric names the nonce"
    );
}

/// An item the bridge did not take for want of gas is voted again; one beyond the vote window
/// waits with its reason.
#[tokio::test]
async fn an_item_skipped_for_gas_is_revoted_and_one_beyond_the_window_waits() {
    let mut h = Harness::new(2, 64);
    h.step().await;
    h.jobs();
    h.mined(
        0,
        true,
        900_000,
        vec![
            skipped(0, Bridge::GasBudgetTooLow::SELECTOR),
            skipped(1, Bridge::NonceOutsideWindow::SELECTOR),
        ],
    );
    h.step().await;
    assert_eq!(h.jobs(), vec![(false, vec![0])], "voted again at once");
    assert_eq!(h.row(1).waiting, Some(WaitReason::VoteWindow));
}

/// Issue 54: a vote ranked before the deciding one is planned to record and sent leading; the
/// items such a vote skipped for gas (it landed after the threshold, with a recording vote's
/// gas) are voted again at once as a deciding vote, not led, while the executed ones are done.
#[tokio::test]
async fn a_recording_vote_skipped_for_gas_is_voted_again_as_deciding() {
    let mut h = Harness::new(60, 64);
    let committee = two_of_three();
    let first: Vec<u64> = (0..60)
        .filter(|n| committee.rank(*n, ME) == Some(0))
        .collect();
    assert!(
        first.len() >= 8,
        "enough first-ranked among 60 for a batch of their own"
    );
    *h.destination.committee.lock().unwrap() = Some(committee);
    h.step().await;
    let jobs = h.jobs();
    let leads = std::mem::take(&mut *h.submit.leads.lock().unwrap());
    let record_tx = jobs
        .iter()
        .position(|(_, nonces)| *nonces == first)
        .expect("the first-ranked go in a batch of their own");
    assert!(leads[record_tx], "sent leading");
    assert_eq!(leads.iter().filter(|l| **l).count(), 1, "only it");
    assert_eq!(*h.submit.record_plans.lock().unwrap(), vec![first.clone()]);
    h.submit.record_plans.lock().unwrap().clear();

    // It landed after the other operators' votes: half executed, half skipped for gas.
    let (executed, short) = h.mined_half_short_of_gas(record_tx as u64, &first);
    h.step().await;
    assert_eq!(
        h.metric("multibridge_recording_votes_late_total{lane=\"main-to-service\"}"),
        short.len() as f64,
        "each skipped item noted to decide next"
    );
    assert!(
        short.len() >= MIN_RECORD_BATCH,
        "enough to fill a recording batch: only decide_next keeps them out of one"
    );
    assert_eq!(
        h.jobs(),
        vec![(false, short.to_vec())],
        "voted again at once"
    );
    assert!(
        h.submit.record_plans.lock().unwrap().is_empty(),
        "planned as a deciding vote"
    );
    assert_eq!(*h.submit.leads.lock().unwrap(), vec![false], "not leading");
    for n in executed {
        assert_eq!(h.status(*n), RequestStatus::Handled);
    }
}

/// Issue 54: while the destination's blocks are full, a deciding vote is planned by what its
/// simulation does now (the recording plan) and sent at the market's tip; the items it skipped
/// for gas (it landed after the votes ranked before it) are voted again as deciding, full
/// blocks or not. With room in the blocks, deciding votes are planned to execute.
#[tokio::test]
async fn in_full_blocks_a_deciding_vote_is_planned_by_its_simulation() {
    let mut h = Harness::new(60, 64);
    let committee = two_of_three();
    let first: Vec<u64> = (0..60)
        .filter(|n| committee.rank(*n, ME) == Some(0))
        .collect();
    *h.destination.committee.lock().unwrap() = Some(committee);
    *h.destination.block_used.lock().unwrap() = Some(29_000_000);
    h.step().await;
    let jobs = h.jobs();
    let leads = std::mem::take(&mut *h.submit.leads.lock().unwrap());
    let record_tx = jobs
        .iter()
        .position(|(_, nonces)| *nonces == first)
        .expect("the first-ranked go in a batch of their own");
    let (tight_tx, (_, tight)) = jobs
        .iter()
        .enumerate()
        .find(|(i, _)| *i != record_tx)
        .expect("a deciding batch");
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        *h.submit.record_plans.lock().unwrap(),
        vec![first.clone(), tight.clone()],
        "both planned by their simulation"
    );
    h.submit.record_plans.lock().unwrap().clear();
    assert!(leads[record_tx], "the recording vote leads");
    assert!(!leads[tight_tx], "the deciding one does not");
    assert_eq!(
        h.metric("multibridge_votes_tight_total{lane=\"main-to-service\"}"),
        tight.len() as f64
    );

    // It landed after the votes ranked before it: half executed, half skipped for gas.
    let (executed, short) = h.mined_half_short_of_gas(tight_tx as u64, tight);
    h.step().await;
    assert_eq!(
        h.jobs(),
        vec![(false, short.to_vec())],
        "voted again at once"
    );
    assert!(
        h.submit.record_plans.lock().unwrap().is_empty(),
        "planned as a deciding vote, though the blocks are still full"
    );
    for n in executed {
        assert_eq!(h.status(*n), RequestStatus::Handled);
    }

    // With room in the blocks, the same committee's deciding votes are planned to execute.
    let mut roomy = Harness::new(60, 64);
    *roomy.destination.committee.lock().unwrap() = Some(two_of_three());
    roomy.step().await;
    assert_eq!(roomy.jobs().len(), 2);
    assert_eq!(
        *roomy.submit.record_plans.lock().unwrap(),
        vec![first],
        "only the recording vote planned to record"
    );
}

/// Audit L-2: a request this operator voted long ago whose key holds the threshold (the threshold
/// was lowered) is executed with `executeHandles`; an execution that skips it as below the
/// threshold leaves it voted.
#[tokio::test]
async fn a_voted_request_holding_the_threshold_is_executed() {
    let mut h = Harness::new(2, 64);
    h.destination.set(0, NonceState::VotedByUs);
    h.destination.set(1, NonceState::VotedByUs);
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Voted);
    h.destination.executable.lock().unwrap().push(0);
    // Time passes: both are stale for the re-check and were indexed long ago.
    h.store.lock().age_rows(LANE, 3_600).unwrap();
    h.step().await;
    assert_eq!(
        std::mem::take(&mut *h.submit.executions.lock().unwrap()),
        vec![vec![0, 1]],
        "one executeHandles for the long-voted requests"
    );
    assert!(h.jobs().is_empty(), "no vote");
    assert_eq!(h.status(0), RequestStatus::Voting);
    h.mined(
        0,
        true,
        200_000,
        vec![handled(0), skipped(1, Bridge::BelowThreshold::SELECTOR)],
    );
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(
        h.status(1),
        RequestStatus::Voted,
        "still below the threshold"
    );
}

#[tokio::test]
async fn the_pre_check_settles_what_needs_no_vote_and_sends_the_rest() {
    let mut h = Harness::new(4, 64);
    h.destination.set(0, NonceState::Handled);
    h.destination.set(1, NonceState::VotedByUs);
    let step = h.step().await;
    assert_eq!((step.skipped, step.handled, step.sent), (2, 1, 2));
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(h.status(1), RequestStatus::Voted);
    assert_eq!(h.jobs(), vec![(false, vec![2, 3])]);
    assert_eq!(
        h.metric(
            "multibridge_votes_skipped_total{lane=\"main-to-service\",reason=\"already_handled\"}"
        ),
        1.0
    );
    assert_eq!(
        h.metric(
            "multibridge_votes_skipped_total{lane=\"main-to-service\",reason=\"already_voted\"}"
        ),
        1.0
    );
    // A voted request is re-checked once it is stale: handled now.
    h.store.lock().age_rows(LANE, 60).unwrap();
    h.destination.set(1, NonceState::Handled);
    h.step().await;
    assert_eq!(h.status(1), RequestStatus::Handled);
    // A voted request whose vote disappeared (destination reorg) is voted again.
    let mut h = Harness::new(1, 64);
    h.store.lock().apply(LANE, 0, &Transition::Voted).unwrap();
    h.store.lock().age_rows(LANE, 60).unwrap();
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Observed, "vote gone: reopened");
    h.step().await;
    assert_eq!(h.jobs(), vec![(false, vec![0])]);
}

#[tokio::test]
async fn a_refused_single_is_settled_by_the_destination_error() {
    let mut h = Harness::new(4, 1);
    h.submit.answers.lock().unwrap().extend([
        (
            0,
            Answer::Revert(BridgeErrors::AlreadyHandled(Bridge::AlreadyHandled {
                nonce: 0,
            })),
        ),
        (1, Answer::Revert(liquidity())),
        (
            2,
            Answer::Revert(BridgeErrors::WrongSource(Bridge::WrongSource {
                srcChainId: U256::from(5),
                srcBridge: Address::ZERO,
            })),
        ),
        (3, Answer::Take),
    ]);
    let step = h.step().await;
    assert_eq!(step.sent, 1);
    assert_eq!(h.status(0), RequestStatus::Handled);
    let waiting = h.row(1);
    assert_eq!(waiting.status, RequestStatus::Observed);
    assert_eq!(waiting.waiting, Some(WaitReason::InsufficientLiquidity));
    assert!(waiting.detail.unwrap().contains("InsufficientLiquidity"));
    let rejected = h.row(2);
    assert_eq!(rejected.status, RequestStatus::Rejected);
    assert_eq!(rejected.rejected, Some(RejectReason::WrongSource));
    assert_eq!(h.jobs(), vec![(false, vec![3])]);
    // A key that is not an operator stops the lane with a named error.
    h.submit.answers.lock().unwrap().insert(
        3,
        Answer::Revert(BridgeErrors::NotOperator(Bridge::NotOperator {
            caller: ME,
        })),
    );
    h.events.send(JobEvent::Abandoned { nonce: 0 }).unwrap();
    let err = h.voter.step().await.unwrap_err();
    assert!(
        matches!(err, VoterError::NotOperator(a) if a == ME),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_batch_that_would_revert_falls_back_to_singles_that_find_the_culprit() {
    let mut h = Harness::new(4, 64);
    h.submit
        .answers
        .lock()
        .unwrap()
        .insert(2, Answer::Revert(liquidity()));
    let step = h.step().await;
    assert_eq!(step.sent, 0, "the batch would revert: nothing sent");
    let step = h.step().await;
    assert_eq!(step.sent, 3);
    assert_eq!(
        h.jobs(),
        vec![(false, vec![0]), (false, vec![1]), (false, vec![3])]
    );
    assert_eq!(h.row(2).waiting, Some(WaitReason::InsufficientLiquidity));
}

#[tokio::test]
async fn a_waiting_request_is_retried_alone_after_the_pause_and_proceeds_once_it_clears() {
    let mut h = Harness::new(1, 64);
    h.submit
        .answers
        .lock()
        .unwrap()
        .insert(0, Answer::Revert(liquidity()));
    h.step().await;
    assert_eq!(h.row(0).waiting, Some(WaitReason::InsufficientLiquidity));
    // Within the pause nothing is tried, not even simulated.
    let reads = h.destination.reads.lock().unwrap().len();
    for _ in 0..3 {
        assert_eq!(h.step().await.sent, 0);
    }
    assert_eq!(h.destination.reads.lock().unwrap().len(), reads);
    assert_eq!(
        h.metric("multibridge_waiting_total{lane=\"main-to-service\"}"),
        1.0
    );
    // After the pause it is simulated alone through the single entry point: still short.
    h.store.lock().age_rows(LANE, 6).unwrap();
    h.step().await;
    assert_eq!(
        h.metric("multibridge_waiting_total{lane=\"main-to-service\"}"),
        2.0
    );
    assert!(h.jobs().is_empty());
    // Funds arrive: the next attempt is sent, alone.
    h.submit.answers.lock().unwrap().clear();
    h.store.lock().age_rows(LANE, 6).unwrap();
    assert_eq!(h.step().await.sent, 1);
    assert_eq!(h.jobs(), vec![(true, vec![0])]);
    h.mined(0, true, 90_000, vec![vote_cast(0, ME), handled(0)]);
    h.step().await;
    let row = h.row(0);
    assert_eq!((row.status, row.waiting), (RequestStatus::Handled, None));
}

#[tokio::test]
async fn a_request_settled_by_other_operators_while_our_vote_flies_counts_as_handled() {
    let mut h = Harness::new(3, 64);
    h.step().await;
    h.jobs();
    // The others executed nonces 0 and 1 first; our batch skipped them and recorded 2.
    h.mined(
        0,
        true,
        120_000,
        vec![
            skipped(0, Bridge::AlreadyHandled::SELECTOR),
            skipped(1, Bridge::AlreadyHandled::SELECTOR),
            vote_cast(2, ME),
        ],
    );
    let step = h.step().await;
    assert_eq!(step.handled, 2);
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(h.status(1), RequestStatus::Handled);
    assert_eq!(h.status(2), RequestStatus::Voted);
    // A transaction superseded (its nonce used by something we do not know): the pre-check
    // finds the request handled by the others, and nothing is sent again.
    let mut h = Harness::new(1, 64);
    h.step().await;
    h.jobs();
    h.destination.set(0, NonceState::Handled);
    h.events.send(JobEvent::Superseded { nonce: 0 }).unwrap();
    let step = h.step().await;
    assert_eq!((step.handled, step.sent), (1, 0));
    assert!(h.jobs().is_empty());
    assert_eq!(
        h.metric(
            "multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"superseded\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn replacements_keep_every_hash_and_a_new_term_rechecks_what_was_in_flight() {
    let mut h = Harness::new(2, 64);
    h.step().await;
    let replacement = B256::repeat_byte(0xee);
    h.events
        .send(JobEvent::Replaced {
            nonce: 0,
            hash: replacement,
        })
        .unwrap();
    h.step().await;
    let hashes = h.store.lock().tx_hashes(LANE, 1).unwrap();
    assert_eq!(hashes, vec![B256::from(U256::from(1000)), replacement]);
    assert_eq!(h.voter.in_flight(), 1);
    // Leadership moves away and back: the old term's votes are re-checked, not forgotten.
    assert_eq!(h.voter.start_term().unwrap(), 2);
    assert_eq!(h.voter.in_flight(), 0);
    assert_eq!(h.status(0), RequestStatus::Observed);
    h.destination.set(0, NonceState::VotedByUs);
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Voted);
    assert_eq!(h.jobs().last(), Some(&(false, vec![1])));
}

#[tokio::test]
async fn a_vote_stuck_at_the_fee_cap_is_counted_and_stays_in_flight() {
    let mut h = Harness::new(2, 64);
    h.step().await;
    assert_eq!(h.jobs(), vec![(false, vec![0, 1])]);
    for _ in 0..2 {
        h.events
            .send(JobEvent::AtFeeCap {
                nonce: 0,
                max_fee_per_gas: 1_000_000_000_000,
            })
            .unwrap();
    }
    let step = h.step().await;
    assert_eq!(
        step.sent, 0,
        "nothing sent again: the transaction is still out"
    );
    assert!(h.jobs().is_empty());
    assert_eq!(h.voter.in_flight(), 1);
    assert_eq!(h.status(0), RequestStatus::Voting);
    assert_eq!(h.status(1), RequestStatus::Voting);
    assert_eq!(
        h.metric(
            "multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"at_fee_cap\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn a_standby_operator_votes_only_what_the_lane_passed_by_and_nothing_others_handled() {
    let mut h = Harness::new(30, 64);
    let committee = two_of_three();
    let primary: Vec<u64> = (0..30).filter(|n| committee.is_primary(*n, ME)).collect();
    let standby: Vec<u64> = (0..30).filter(|n| !committee.is_primary(*n, ME)).collect();
    assert!(
        !primary.is_empty() && standby.len() >= 4,
        "both kinds among 30"
    );
    *h.destination.committee.lock().unwrap() = Some(committee.clone());
    h.step().await;
    // The primaries only, in one batch: too few of them rank first to fill a recording batch
    // of their own (MIN_RECORD_BATCH), so they ride in the deciding one.
    let first = primary
        .iter()
        .filter(|n| committee.rank(**n, ME) == Some(0))
        .count();
    assert!(first < MIN_RECORD_BATCH, "{first} first-ranked among 30");
    assert_eq!(h.jobs(), vec![(false, primary.clone())], "primaries only");
    assert!(h.submit.record_plans.lock().unwrap().is_empty());
    for n in &standby {
        assert_eq!(h.status(*n), RequestStatus::Observed);
    }
    // 5 s later nothing was handled (a backlog the primaries have not reached): still waiting.
    h.store.lock().age_rows(LANE, 5).unwrap();
    h.step().await;
    assert!(h.jobs().is_empty(), "the lane has not passed them: no vote");
    // The others handled some standby requests and moved the lane past all of them; the rest
    // is voted (a primary is missing for them), the handled ones are not.
    let (handled, still_open) = standby.split_at(standby.len() / 2);
    for n in handled {
        h.destination.set(*n, NonceState::Handled);
    }
    h.destination.set(29, NonceState::Handled);
    h.store.lock().age_rows(LANE, 1).unwrap();
    h.step().await;
    let open: Vec<u64> = still_open.iter().copied().filter(|n| *n != 29).collect();
    assert_eq!(h.jobs(), vec![(false, open)]);
    for n in handled {
        assert_eq!(h.status(*n), RequestStatus::Handled, "no vote sent for {n}");
    }
}

#[tokio::test]
async fn a_standby_operator_votes_anyway_once_a_request_is_three_pauses_old() {
    let mut h = Harness::new(30, 64);
    let committee = two_of_three();
    let standby: Vec<u64> = (0..30).filter(|n| !committee.is_primary(*n, ME)).collect();
    *h.destination.committee.lock().unwrap() = Some(committee);
    h.step().await;
    h.jobs();
    // 13 s, not 14: the clock may pass a second boundary during the test (the ages are whole
    // seconds of the wall clock), and 14 + 1 would already be the limit.
    h.store.lock().age_rows(LANE, 13).unwrap();
    h.step().await;
    assert!(
        h.jobs().is_empty(),
        "13 s, nothing handled: still standing by"
    );
    h.store.lock().age_rows(LANE, 2).unwrap();
    h.step().await;
    assert_eq!(
        h.jobs(),
        vec![(false, standby)],
        "at 15 s every standby request is voted"
    );
}

/// Issue 54: while the destination's blocks are full a standby waits twice `standby_after`
/// before it votes what the lane passed by: the primaries' votes queue for room then, and a
/// standby's vote would land after them.
#[tokio::test]
async fn in_full_blocks_a_standby_waits_twice_as_long() {
    let mut h = Harness::new(30, 64);
    let committee = two_of_three();
    let standby: Vec<u64> = (0..29).filter(|n| !committee.is_primary(*n, ME)).collect();
    *h.destination.committee.lock().unwrap() = Some(committee);
    *h.destination.block_used.lock().unwrap() = Some(29_000_000);
    h.step().await;
    h.jobs();
    // The lane passed every request by.
    h.destination.set(29, NonceState::Handled);
    h.store.lock().age_rows(LANE, 6).unwrap();
    h.step().await;
    assert!(h.jobs().is_empty(), "6 s in full blocks: still standing by");
    h.store.lock().age_rows(LANE, 4).unwrap();
    h.step().await;
    assert_eq!(h.jobs(), vec![(false, standby)], "at 10 s they are voted");
}

#[test]
fn nonce_ranges_name_every_nonce_compactly() {
    assert_eq!(nonce_ranges(&[]), "");
    assert_eq!(nonce_ranges(&[4]), "4");
    assert_eq!(nonce_ranges(&[7, 3, 4, 5, 9, 9]), "3-5,7,9");
    assert_eq!(
        nonce_ranges(&[u64::MAX - 1, u64::MAX]),
        format!("{}-{}", u64::MAX - 1, u64::MAX)
    );
}

/// Audit H-1: a batch needing more gas than a vote may use of the destination's block is split
/// until it fits, instead of failing the step forever.
#[tokio::test]
async fn a_batch_over_the_gas_budget_is_split_and_every_request_is_voted() {
    let mut h = Harness::new(12, 64);
    *h.destination.gas_limit.lock().unwrap() = Some(10_000_000);
    *h.submit.per_request_gas.lock().unwrap() = Some(1_000_000);
    let step = h.step().await;
    assert_eq!(step.sent, 12, "every request voted");
    let jobs = h.jobs();
    assert!(
        jobs.iter().all(|(_, n)| n.len() <= 5),
        "each within 5M gas: {jobs:?}"
    );
    let mut voted: Vec<u64> = jobs.into_iter().flat_map(|(_, n)| n).collect();
    voted.sort_unstable();
    assert_eq!(voted, (0..12).collect::<Vec<_>>(), "each once");
}

/// Audit H-1: one request whose vote no node accepts is set aside with a named reason; the
/// requests around it are voted in the same step.
#[tokio::test]
async fn a_request_whose_vote_alone_is_too_large_is_set_aside_and_the_rest_go() {
    let mut h = Harness::new(8, 64);
    h.submit.too_large.lock().unwrap().push(3);
    let step = h.step().await;
    assert_eq!(step.sent, 7, "the others voted");
    assert_eq!(h.status(3), RequestStatus::Rejected);
    assert_eq!(h.row(3).rejected, Some(RejectReason::Oversized));
    let voted: Vec<u64> = h.jobs().into_iter().flat_map(|(_, n)| n).collect();
    assert!(!voted.contains(&3));
    // Set aside for good: later steps do not try it again.
    let step = h.step().await;
    assert_eq!(step.sent, 0);
    assert!(h.jobs().is_empty());
}

#[test]
fn batches_are_cut_by_count_and_by_calldata_bytes() {
    let mut rs: Vec<Request> = (0..10).map(request).collect();
    for r in rs.iter_mut() {
        r.extraData = Bytes::from(vec![0u8; 1024]);
    }
    // (15 + 32 words) * 32 = 1504 bytes each.
    let cut = batches(&rs, 64, 4 * 1504);
    assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
    let cut = batches(&rs, 3, MAX_VOTE_BYTES);
    assert_eq!(
        cut.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 1]
    );
    // One request above the byte budget still gets a batch of its own.
    let cut = batches(&rs, 64, 100);
    assert_eq!(cut.len(), 10);
}

/// Audit M-3: a handle seen by the pre-check counts only once it is at the destination's
/// confirmation depth; until then the request is neither voted nor settled.
#[tokio::test]
async fn a_handle_above_the_confirmation_depth_is_not_final_yet() {
    let mut h = Harness::new(2, 64);
    h.destination.set(0, NonceState::Handled);
    h.destination.set(1, NonceState::Handled);
    h.destination.not_final.lock().unwrap().push(1);
    let step = h.step().await;
    assert_eq!(step.sent, 0, "nothing voted: both are handled at the head");
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(h.status(1), RequestStatus::Observed, "not final yet");
    assert!(
        h.row(1).not_before.is_some_and(|t| t > unix_now()),
        "deferred, so it does not crowd newer requests out of the window"
    );
    h.destination.not_final.lock().unwrap().clear();
    // Time passes: the deferral is over.
    h.store
        .lock()
        .apply(LANE, 1, &Transition::Deferred { until: 0 })
        .unwrap();
    h.step().await;
    assert_eq!(h.status(1), RequestStatus::Handled, "final at depth");
    assert!(h.jobs().is_empty());
}

/// A backlog beyond the destination's vote window is not simulated or sent: it waits, noted
/// with its reason and counted, while the requests inside the window are voted.
#[tokio::test]
async fn requests_beyond_the_vote_window_wait_without_a_vote() {
    use multibridge_contracts::VOTE_WINDOW;
    let mut h = Harness::new(2, 64);
    let far: Vec<Request> = (VOTE_WINDOW..VOTE_WINDOW + 3).map(request).collect();
    h.store.lock().record_range(LANE, &far, 1_001).unwrap();
    h.step().await;
    assert_eq!(
        h.jobs(),
        vec![(false, vec![0, 1])],
        "only the nonces inside the window are voted"
    );
    for nonce in VOTE_WINDOW..VOTE_WINDOW + 3 {
        assert_eq!(h.status(nonce), RequestStatus::Observed);
        assert_eq!(h.row(nonce).waiting, Some(WaitReason::VoteWindow));
    }
    assert_eq!(
        h.metric("multibridge_requests_above_vote_window{lane=\"main-to-service\"}"),
        3.0
    );
    // Waiting, they stay out of the next steps until `retry_after`.
    h.step().await;
    assert_eq!(h.jobs(), Vec::<(bool, Vec<u64>)>::new());
}

/// A voter in attested mode as the only operator (threshold 1), with no peers.
fn attested(h: &mut Harness) {
    struct NoPeers;
    impl crate::attest::collect::PeerSource for NoPeers {
        fn fetch(
            &self,
            _: multibridge_contracts::Lane,
            _: Address,
            _: u64,
        ) -> futures::future::BoxFuture<
            '_,
            Result<
                Vec<crate::store::attestations::OwnAttestation>,
                crate::attest::collect::PeerError,
            >,
        > {
            Box::pin(async { Ok(Vec::new()) })
        }
    }
    let key = alloy::signers::local::PrivateKeySigner::random();
    *h.destination.committee.lock().unwrap() = Some(Committee {
        operators: vec![key.address()],
        threshold: 1,
    });
    let domain = multibridge_contracts::VoteDomain {
        src_chain_id: 1,
        src_bridge: Address::repeat_byte(9),
        dst_chain_id: 2,
        dst_bridge: BRIDGE,
    };
    h.voter.attest_with(crate::attest::Attestor::new(
        LANE,
        domain,
        key.address(),
        crate::chain::signer::OperatorSigner::local(key),
        h.store.clone(),
        Arc::new(NoPeers),
        Duration::from_secs(5),
        h.metrics.attest.clone(),
    ));
}

/// Attested mode: a relay whose transactions fill its room still signs (and so serves to the
/// other operators) the batches of its full look-ahead — with the look-ahead sized by its room,
/// it signed two batches' worth ahead and the others' batches waited for its signature.
#[tokio::test]
async fn an_attested_relay_with_no_room_still_signs_its_whole_look_ahead() {
    let mut h = Harness::new(80, 32);
    attested(&mut h);
    h.step().await;
    let room = VoterConfig::default().attested_max_in_flight;
    let sent = h.submit.executions.lock().unwrap().len();
    assert_eq!(sent, room, "the first step fills the room");
    let more: Vec<Request> = (80..380).map(request).collect();
    h.store.lock().record_range(LANE, &more, 1_001).unwrap();
    h.step().await;
    assert_eq!(
        h.submit.executions.lock().unwrap().len(),
        room,
        "no room: nothing more sent"
    );
    assert_eq!(
        h.metric("multibridge_attestations_signed_total{lane=\"main-to-service\"}"),
        380.0,
        "every batch in view signed (one request per source block: one batch each)"
    );
}

/// The room is the mode's: attested batches may have `attested_max_in_flight` transactions
/// unmined (one operator alone sends the last turns of a backlog and must fill blocks with
/// them), votes `max_in_flight`.
#[tokio::test]
async fn each_mode_keeps_its_own_room() {
    let config = VoterConfig::default();
    assert!(config.attested_max_in_flight > config.max_in_flight);
    // Votes: one request per transaction, more requests than either room.
    let mut votes = Harness::new(100, 1);
    votes.step().await;
    assert_eq!(votes.jobs().len(), config.max_in_flight);
    let mut attested_lane = Harness::new(100, 32);
    attested(&mut attested_lane);
    attested_lane.step().await;
    assert_eq!(
        attested_lane.submit.executions.lock().unwrap().len(),
        config.attested_max_in_flight
    );
    // The next step shows the lane at its limit (nothing mined meanwhile).
    attested_lane.step().await;
    for (name, expected) in [
        ("transactions_in_flight", config.attested_max_in_flight),
        (
            "transactions_in_flight_limit",
            config.attested_max_in_flight,
        ),
    ] {
        assert_eq!(
            attested_lane.metric(&format!("multibridge_{name}{{lane=\"main-to-service\"}}")),
            expected as f64
        );
    }
}

/// Attested mode: the vote window bounds votes only (an `executeAttested` carries a threshold
/// of signatures and executes at any nonce), so a backlog far above it is sent in attested
/// batches at once instead of waiting for the lane to reach it.
#[tokio::test]
async fn attested_batches_are_not_held_to_the_vote_window() {
    use multibridge_contracts::VOTE_WINDOW;
    let mut h = Harness::new(2, 64);
    let far: Vec<Request> = (VOTE_WINDOW..VOTE_WINDOW + 3).map(request).collect();
    // The indexer past their blocks (a batch is composed from blocks read whole).
    let past = far.last().map_or(0, |r| r.srcBlockNumber + 1);
    h.store.lock().record_range(LANE, &far, past).unwrap();
    attested(&mut h);
    h.step().await;
    let sent: Vec<u64> = std::mem::take(&mut *h.submit.executions.lock().unwrap())
        .into_iter()
        .flatten()
        .collect();
    for nonce in (0..2).chain(VOTE_WINDOW..VOTE_WINDOW + 3) {
        assert!(sent.contains(&nonce), "nonce {nonce} not sent: {sent:?}");
        assert_eq!(h.row(nonce).waiting, None);
    }
    assert_eq!(
        h.metric("multibridge_requests_above_vote_window{lane=\"main-to-service\"}"),
        0.0
    );
}

/// When the window moves past requests that waited for it, they are voted at the next step,
/// together in one batch — not after `retry_after`, and not one single vote each (which turned
/// a backlog of 20,000 into thousands of single votes, most reverting).
#[tokio::test]
async fn requests_the_vote_window_moved_past_are_voted_at_once_in_a_batch() {
    use multibridge_contracts::VOTE_WINDOW;
    let mut h = Harness::new(2, 64);
    let far: Vec<Request> = (VOTE_WINDOW..VOTE_WINDOW + 3).map(request).collect();
    h.store.lock().record_range(LANE, &far, 1_001).unwrap();
    h.step().await;
    assert_eq!(h.jobs(), vec![(false, vec![0, 1])]);
    // Not moved yet: the window is read again, nothing is released.
    h.voter.window_waits = Instant::now().checked_sub(Duration::from_secs(2));
    h.step().await;
    assert_eq!(h.jobs(), Vec::<(bool, Vec<u64>)>::new());
    assert_eq!(h.row(VOTE_WINDOW).waiting, Some(WaitReason::VoteWindow));
    // Nonces up to 3 handled: the window now ends at 4 + VOTE_WINDOW.
    h.destination.set(3, NonceState::Handled);
    h.voter.window_waits = Instant::now().checked_sub(Duration::from_secs(2));
    h.step().await;
    assert_eq!(
        h.jobs(),
        vec![(false, (VOTE_WINDOW..VOTE_WINDOW + 3).collect::<Vec<u64>>())]
    );
    for nonce in VOTE_WINDOW..VOTE_WINDOW + 3 {
        assert_eq!(h.status(nonce), RequestStatus::Voting);
        assert_eq!(h.row(nonce).waiting, None);
    }
}

/// Attested mode: the pre-check derives "handled" below `lowerHandleNonce` and "open" at or
/// above `upperHandleNonce` and reads only the nonces between (reading the whole look-ahead was
/// 21 `votingStatus` calls per relay per step at 5 of 7, on the chain mining the batches). A
/// handled nonce is settled either way; only the open ones are sent.
#[tokio::test]
async fn an_attested_precheck_reads_only_the_nonces_between_the_handle_nonces() {
    let mut h = Harness::new(100, 32);
    for nonce in (0..10).chain([15]) {
        h.destination.set(nonce, NonceState::Handled);
    }
    attested(&mut h);
    h.step().await;
    assert_eq!(
        *h.destination.reads.lock().unwrap(),
        vec![(10..16).collect::<Vec<u64>>()],
        "one read, of the nonces between lowerHandleNonce 10 and upperHandleNonce 16"
    );
    for nonce in (0..10).chain([15]) {
        assert_eq!(h.status(nonce), RequestStatus::Handled, "nonce {nonce}");
    }
    let sent: Vec<u64> = std::mem::take(&mut *h.submit.executions.lock().unwrap())
        .into_iter()
        .flatten()
        .collect();
    // One batch per source block: the room's worth of them, the handled ones left out.
    let open: Vec<u64> = (10..100).filter(|n| *n != 15).collect();
    assert_eq!(sent, open[..VoterConfig::default().attested_max_in_flight]);
    assert_eq!(
        h.metric(
            "multibridge_attestation_precheck_nonces_total{how=\"derived\",lane=\"main-to-service\"}"
        ),
        94.0
    );
    assert_eq!(
        h.metric(
            "multibridge_attestation_precheck_nonces_total{how=\"read\",lane=\"main-to-service\"}"
        ),
        6.0
    );
}

/// Audit A3-L8: an attested batch cannot be split, and a window of 32 requests with 1 KiB of
/// extraData needs ~2.5M gas in one transaction. On a destination whose block gas limit leaves
/// a vote less than its worst case, the batch is not signed: its requests are voted, in vote
/// batches sized by gas like any vote — every relay decides alike from the batch alone.
#[tokio::test]
async fn an_attested_batch_too_large_for_one_transaction_is_voted_instead() {
    let mut h = Harness::new(0, 64);
    let maximal: Vec<Request> = (0..32)
        .map(|n| {
            let mut r = request(n);
            r.srcBlockNumber = 100;
            r.extraData = Bytes::from(vec![0xab; 1024]);
            r
        })
        .collect();
    h.store.lock().record_range(LANE, &maximal, 1_000).unwrap();
    attested(&mut h);
    *h.destination.gas_limit.lock().unwrap() = Some(3_000_000);
    h.step().await;
    assert!(
        h.submit.executions.lock().unwrap().is_empty(),
        "no executeAttested of a batch that cannot fit"
    );
    let voted: Vec<u64> = h.jobs().into_iter().flat_map(|(_, n)| n).collect();
    assert_eq!(voted, (0..32).collect::<Vec<u64>>(), "every request voted");
    // The same batch on a destination with room for it goes attested.
    let mut h = Harness::new(0, 64);
    h.store.lock().record_range(LANE, &maximal, 1_000).unwrap();
    attested(&mut h);
    h.step().await;
    assert!(h.jobs().is_empty());
    let executed: Vec<u64> = std::mem::take(&mut *h.submit.executions.lock().unwrap())
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(executed, (0..32).collect::<Vec<u64>>());
}

/// Us and two other operators, threshold 2: every request has two primaries and a standby.
fn two_of_three() -> Committee {
    Committee {
        operators: vec![ME, Address::repeat_byte(0x0a), Address::repeat_byte(0x0b)],
        threshold: 2,
    }
}

/// Issue 54: a batch of native items only is planned with the bridge's `NATIVE_ITEM_GAS` as its
/// one-item headroom; a batch holding another kind, or any batch on a bridge from before the
/// getter (whose every item needs ITEM_GAS), with `ITEM_GAS`. The bridge is read once.
#[tokio::test]
async fn a_native_batch_is_planned_with_the_native_item_bound_any_other_with_the_full_one() {
    use multibridge_contracts::{ITEM_GAS, NATIVE_ITEM_GAS};
    let plans = |h: &Harness| std::mem::take(&mut *h.submit.item_gas_plans.lock().unwrap());

    let mut old_bridge = Harness::new(3, 64);
    old_bridge.step().await;
    assert_eq!(
        plans(&old_bridge),
        vec![ITEM_GAS],
        "a bridge without the getter"
    );

    let mut native = Harness::new(3, 64);
    *native.destination.native_item_gas.lock().unwrap() = Some(NATIVE_ITEM_GAS);
    native.step().await;
    assert_eq!(native.jobs(), vec![(false, vec![0, 1, 2])]);
    assert_eq!(plans(&native), vec![NATIVE_ITEM_GAS], "native items only");
    native.step().await;
    assert_eq!(
        *native.destination.native_item_gas_reads.lock().unwrap(),
        1,
        "read once"
    );

    let mut mixed = Harness::new(3, 64);
    *mixed.destination.native_item_gas.lock().unwrap() = Some(NATIVE_ITEM_GAS);
    let mut token = request(3);
    token.kind = multibridge_contracts::AssetKind::Erc20 as u8;
    token.token = Address::repeat_byte(5);
    mixed
        .store
        .lock()
        .record_range(LANE, &[token], 1_000)
        .unwrap();
    mixed.step().await;
    assert_eq!(mixed.jobs(), vec![(false, vec![0, 1, 2, 3])]);
    assert_eq!(plans(&mixed), vec![ITEM_GAS], "an ERC-20 item in the batch");

    // An answer outside RECORD_GAS..=ITEM_GAS (one endpoint's) is kept within it.
    let mut liar = Harness::new(1, 64);
    *liar.destination.native_item_gas.lock().unwrap() = Some(1);
    liar.step().await;
    assert_eq!(plans(&liar), vec![multibridge_contracts::RECORD_GAS]);
}

/// A standby's harness while the destination's blocks are full: `requests` stored, two of
/// three operators, the lane's (`lowerHandleNonce`, `upperHandleNonce`) at (0, 0) until a test
/// moves them; its clock is the paused tokio clock.
fn standby_in_full_blocks(requests: u64) -> (Harness, Committee) {
    let h = Harness::new(requests, 64);
    let committee = two_of_three();
    *h.destination.committee.lock().unwrap() = Some(committee.clone());
    *h.destination.block_used.lock().unwrap() = Some(29_000_000);
    *h.destination.handles.lock().unwrap() = Some((0, 0));
    (h, committee)
}

/// `secs` later (the stored requests `age` seconds older), a step; the requests it voted.
async fn step_later(h: &mut Harness, secs: u64, age: u64) -> Vec<(bool, Vec<u64>)> {
    tokio::time::advance(std::time::Duration::from_secs(secs)).await;
    h.store.lock().age_rows(LANE, age).unwrap();
    h.step().await;
    h.jobs()
}

/// Issue 54: while the destination's blocks are full, a request the lane passed by is voted by
/// a standby only once `lowerHandleNonce` stands still (its primaries' votes are most often
/// queued behind the ones that passed it; a missing primary stops the lane's lower end).
#[tokio::test(start_paused = true)]
async fn in_full_blocks_a_standby_votes_what_the_lane_passed_once_its_lower_end_stops() {
    let (mut h, committee) = standby_in_full_blocks(30);
    let standby: Vec<u64> = (0..30).filter(|n| !committee.is_primary(*n, ME)).collect();
    h.step().await;
    h.jobs();
    // Old enough to be looked at: the lane is read.
    assert!(step_later(&mut h, 0, 6).await.is_empty());
    // The lane's handles passed every request by, and its lower end moves (a backlog drains);
    // the requests are looked at again in half a wait (5 s).
    for (lower, age) in [(1, 4), (2, 5)] {
        *h.destination.handles.lock().unwrap() = Some((lower, 30));
        assert!(
            step_later(&mut h, 2, age).await.is_empty(),
            "the lower end moves: the votes are on their way"
        );
    }
    // The lower end stands still for a `standby_after` (and the requests, looked at again in
    // half a wait, are due): a primary is missing.
    assert_eq!(
        step_later(&mut h, 6, 5).await,
        vec![(false, standby)],
        "the lane stopped: voted"
    );
}

/// The limit in full blocks: a standby does not vote what the lane has not reached while its
/// lower end moves (a backlog drains), and votes once it stands still.
#[tokio::test(start_paused = true)]
async fn in_full_blocks_the_limit_waits_while_the_lane_moves() {
    let (mut h, committee) = standby_in_full_blocks(30);
    let standby: Vec<u64> = (0..30).filter(|n| !committee.is_primary(*n, ME)).collect();
    h.step().await;
    h.jobs();
    step_later(&mut h, 0, 6).await;
    // The lane moves (a read every 2 s) while the requests pass the limit (30 s in full
    // blocks): 31 s old, nothing voted.
    for (nonce, age) in [(1, 10), (2, 10), (3, 5)] {
        *h.destination.handles.lock().unwrap() = Some((nonce, nonce));
        assert!(
            step_later(&mut h, 2, age).await.is_empty(),
            "the lane moves: the limit waits"
        );
    }
    // Still for 3 s only: looked at again, still waiting.
    assert!(
        step_later(&mut h, 3, 5).await.is_empty(),
        "still for less than standby_after"
    );
    // Still for 6 s: every standby request is voted when next looked at.
    assert_eq!(
        step_later(&mut h, 3, 5).await,
        vec![(false, standby)],
        "stalled: the limit applies"
    );
}

/// A backlog's requests reach a standby's window old: in full blocks, while the lane moves, one
/// that arrives past the limit is not voted at once on its age alone.
#[tokio::test(start_paused = true)]
async fn in_full_blocks_a_request_that_reaches_the_window_old_waits_for_the_lane_too() {
    let (mut h, committee) = standby_in_full_blocks(0);
    // Requests the standby looks at (the lane is read), then the lane moves.
    let early: Vec<Request> = (100..130).map(request).collect();
    h.store.lock().record_range(LANE, &early, 1_000).unwrap();
    step_later(&mut h, 0, 6).await;
    *h.destination.handles.lock().unwrap() = Some((1, 1));
    // Requests of the backlog reach the window 40 s old (past the limit of 30), first in nonce
    // order.
    let late: Vec<Request> = (2..32).map(request).collect();
    h.store.lock().record_range(LANE, &late, 1_001).unwrap();
    let voted: Vec<u64> = step_later(&mut h, 4, 40)
        .await
        .into_iter()
        .flat_map(|(_, n)| n)
        .collect();
    let (primaries, standby): (Vec<u64>, Vec<u64>) =
        (2..32).partition(|n| committee.is_primary(*n, ME));
    let mut late_voted: Vec<u64> = voted.into_iter().filter(|n| *n < 100).collect();
    late_voted.sort_unstable();
    assert_eq!(late_voted, primaries, "only the primary ones");
    // Once the lane stands still they are voted too.
    let voted: Vec<u64> = step_later(&mut h, 6, 5)
        .await
        .into_iter()
        .flat_map(|(_, n)| n)
        .collect();
    assert!(
        !standby.is_empty(),
        "some requests are another's to vote first"
    );
    assert!(
        standby.iter().all(|n| voted.contains(n)),
        "the lane stopped: {voted:?}"
    );
}

#[tokio::test]
async fn a_pre_check_with_requests_to_vote_starts_the_plans_reads_beside_it() {
    let mut h = Harness::new(4, 64);
    let step = h.step().await;
    assert_eq!(step.sent, 4);
    assert_eq!(
        *h.destination.warmed.lock().unwrap(),
        1,
        "one pre-check, one warm-up"
    );
    // Everything in flight: nothing to pre-check, nothing read ahead.
    h.jobs();
    h.step().await;
    assert_eq!(
        *h.destination.warmed.lock().unwrap(),
        1,
        "an idle step reads nothing ahead"
    );
}

#[tokio::test]
async fn a_vote_planned_before_its_block_is_final_is_sent_without_an_estimate_at_the_block() {
    let mut h = Harness::new(0, 64);
    let upcoming = prepared::Upcoming::default();
    h.voter.preparing(upcoming.clone());
    let estimates = |h: &Harness| *h.submit.estimates.lock().unwrap();
    // Nonce 0 as the indexer reads it above the depth; nonce 1 as a block that a reorg
    // replaced had it (another amount).
    let mut replaced = request(1);
    replaced.amount = U256::from(7);
    upcoming.publish(5, vec![request(0)], Instant::now() + Duration::from_secs(2));
    h.step().await;
    assert_eq!(estimates(&h), 0, "not in the instant the block came");
    tokio::time::sleep(prepared::PREPARE_AFTER).await;
    let step = h.step().await;
    assert_eq!((step.sent, estimates(&h)), (0, 1), "planned, nothing sent");
    assert_eq!(h.metric("multibridge_vote_plans_prepared_total"), 1.0);
    h.step().await;
    assert_eq!(estimates(&h), 1, "one plan per publication");
    // Final and stored: sent with the plan, and the warm-up reads only what the send reads.
    h.store.lock().record_range(LANE, &[request(0)], 6).unwrap();
    let step = h.step().await;
    assert_eq!(step.sent, 1);
    assert_eq!(h.jobs(), vec![(false, vec![0])]);
    assert_eq!(estimates(&h), 1, "no estimate at the block");
    assert_eq!(*h.destination.warmed_planned.lock().unwrap(), 1);
    assert_eq!(h.metric("multibridge_vote_plans_prepared_used_total"), 1.0);
    // A plan of calldata that differs from what is stored serves nothing.
    upcoming.publish(6, vec![replaced], Instant::now() + Duration::from_secs(2));
    tokio::time::sleep(prepared::PREPARE_AFTER).await;
    h.step().await;
    assert_eq!(estimates(&h), 2);
    h.store.lock().record_range(LANE, &[request(1)], 7).unwrap();
    let step = h.step().await;
    assert_eq!(step.sent, 1);
    assert_eq!(h.jobs(), vec![(false, vec![1])]);
    assert_eq!(
        estimates(&h),
        3,
        "estimated at the block: the plan was of another payload"
    );
    assert_eq!(*h.destination.warmed_planned.lock().unwrap(), 1);
    assert_eq!(h.metric("multibridge_vote_plans_prepared_used_total"), 1.0);
}
