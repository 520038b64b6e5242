//! The pre-check: which stored requests need this operator's vote now (standing by for the
//! ones another operator is first for), settled by one `votingStatus` read — handled (at the
//! destination's confirmation depth) or already voted needs no transaction — and which voted
//! ones can be executed without more votes.

use std::time::Instant;

use multibridge_contracts::{NonceState, Request, RequestStatus};

use super::DestinationReads;
use super::{
    EXECUTE_CHECK_AFTER_SECS, MAX_EXECUTE_BATCH, NOT_FINAL_RECHECK_SECS, Outcome, Ready, Seen,
    VoteStep, Voter, VoterError, WINDOW_RECHECK, nonce_ranges,
};
use crate::chain::submitter::Submit;
use crate::store::{StoredRequest, Transition, unix_now};

/// How many times `standby_after` a standby waits while the destination's blocks are full (as
/// an attested standby does).
const FULL_STANDBY_FACTOR: u32 = 2;

/// Where the destination's vote window ends for `upperHandleNonce` = `upper`.
fn window_end(upper: u64) -> u64 {
    upper.saturating_add(multibridge_contracts::VOTE_WINDOW)
}

impl<D: DestinationReads, S: Submit> Voter<D, S> {
    /// `candidates` (ascending by nonce) the destination takes votes for: below
    /// `upperHandleNonce + VOTE_WINDOW` (read again only when a candidate is at or above the
    /// last limit read; it only grows). The rest wait, noted as waiting for the window, without
    /// a simulation or a line each: a backlog far larger than the window costs one store write
    /// per request per `retry_after`, not an RPC.
    async fn within_vote_window(
        &mut self,
        candidates: Vec<StoredRequest>,
        retry_after: u64,
    ) -> Result<Vec<StoredRequest>, VoterError> {
        let Some(last) = candidates.last().map(|r| r.request.nonce) else {
            return Ok(candidates);
        };
        if self
            .upper_seen
            .is_some_and(|upper| last < window_end(upper))
        {
            return Ok(candidates);
        }
        let upper = self.destination.upper_handle_nonce().await?;
        self.upper_seen = Some(upper);
        let end = window_end(upper);
        let (inside, outside): (Vec<StoredRequest>, Vec<StoredRequest>) =
            candidates.into_iter().partition(|r| r.request.nonce < end);
        if let Some(first) = outside.first() {
            self.window_waits = Some(Instant::now());
            let lane = self.metrics.lane;
            let detail = format!("nonce at or above upperHandleNonce + VOTE_WINDOW = {end}");
            let mut store = self.store.lock();
            for r in &outside {
                store.apply(
                    lane,
                    r.request.nonce,
                    &Transition::Waiting {
                        reason: multibridge_contracts::WaitReason::VoteWindow,
                        detail: detail.clone(),
                    },
                )?;
            }
            drop(store);
            self.metrics
                .above_vote_window
                .set(i64::try_from(outside.len()).unwrap_or(i64::MAX));
            tracing::info!(%lane, count = outside.len(), first = first.request.nonce, window_end = end, retry_after_secs = retry_after, "requests above the destination's vote window wait for it to move");
        } else {
            self.metrics.above_vote_window.set(0);
        }
        Ok(inside)
    }

    /// While requests wait for the vote window, read it again every [`WINDOW_RECHECK`] and open
    /// the ones it moved past for a vote at once. Before, they came back only after
    /// `retry_after`, and then one transaction each through the single entry point (as if they
    /// waited for a condition): a backlog of 20,000 turned into thousands of single votes, most
    /// reverting (handled by the others meanwhile), and the lane crawled.
    async fn release_window_waits(&mut self) -> Result<(), VoterError> {
        if self
            .window_waits
            .is_none_or(|read| read.elapsed() < WINDOW_RECHECK)
        {
            return Ok(());
        }
        let upper = self.destination.upper_handle_nonce().await?;
        self.window_waits = Some(Instant::now());
        if self.upper_seen.is_some_and(|seen| upper <= seen) {
            return Ok(());
        }
        self.upper_seen = Some(upper);
        let lane = self.metrics.lane;
        let released = self
            .store
            .lock()
            .release_window_waits(lane, window_end(upper))?;
        if released == 0 {
            self.window_waits = None;
            self.metrics.above_vote_window.set(0);
        } else {
            tracing::debug!(%lane, released, window_end = window_end(upper), "the vote window moved: requests that waited for it are open for a vote");
        }
        Ok(())
    }

    /// Settle the requests the destination handled (`(nonce, voted by us)`): final at the
    /// destination's confirmation depth, or looked at again later.
    pub(super) async fn settle_handled(
        &mut self,
        handled: Vec<(u64, bool)>,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        if handled.is_empty() {
            return Ok(());
        }
        let lane = self.metrics.lane;
        let nonces: Vec<u64> = handled.iter().map(|(n, _)| *n).collect();
        // A node that cannot serve state that deep (not an archive node, or a safe block
        // before the bridge existed) must not stop voting: the handle counts as seen at the
        // head, and recovery reopens it should the destination later say it is open.
        let finals = match self.destination.handled_final(&nonces).await {
            Ok(finals) => finals,
            Err(e) => {
                tracing::warn!(lane = %lane, error = %e, "cannot read handles at the destination's confirmation depth; taking them as seen at the head");
                vec![true; nonces.len()]
            }
        };
        let recheck_at = unix_now().saturating_add(NOT_FINAL_RECHECK_SECS);
        let mut finished = Vec::new();
        let mut later = Vec::new();
        for ((nonce, voted), is_final) in handled.into_iter().zip(finals) {
            if is_final {
                finished.push((nonce, Outcome::Handled));
            } else if voted {
                // Back of the re-check queue, so newer work is not starved.
                later.push((nonce, Transition::Touched));
            } else {
                later.push((nonce, Transition::Deferred { until: recheck_at }));
            }
        }
        if !later.is_empty() {
            self.store.lock().in_transaction(|store| {
                later
                    .iter()
                    .try_for_each(|(nonce, t)| store.apply(lane, *nonce, t).map(drop))
            })?;
        }
        self.settle_all(finished, Seen::PreCheck, step)
    }

    /// What a standby goes by, and how old a request must be before it looks at the lane.
    ///
    /// While the destination's blocks are full the primaries' votes queue for room (issue 54):
    /// `upperHandleNonce` runs ahead with the votes that landed first, and the requests it
    /// passed by are most often ones whose votes are on their way — a standby's vote would
    /// compete for the same room and land after them (in a 20,000-request backlog the standbys
    /// found ~7,000 requests each passed by for 5 s and still open). What a missing primary
    /// leaves is a lane whose `lowerHandleNonce` stops where its first request is. So there a
    /// standby waits [`FULL_STANDBY_FACTOR`] times `standby_after`, and counts requests as
    /// passed by, or the limit as reached, only while `lowerHandleNonce` stood still for a
    /// `standby_after` (up to [`crate::turns::STANDBY_CAP`]). A node that lags or stops
    /// answering can only make it vote sooner: a lane seen standing still, or not seen long
    /// enough, is taken as stalled.
    async fn standby_view(
        &mut self,
        standby_after: std::time::Duration,
    ) -> Result<(crate::turns::LaneHandles, std::time::Duration), VoterError> {
        let (lower, upper) = self.destination.handle_nonces().await?;
        let at = tokio::time::Instant::now();
        self.lower_seen.note(lower, at);
        if !self.full_within(standby_after).await? {
            return Ok((crate::turns::LaneHandles::now(upper), standby_after));
        }
        let stalled = !self
            .lower_seen
            .moved_within(standby_after, at)
            .unwrap_or(false);
        tracing::debug!(lane = %self.metrics.lane, lower, upper, stalled, "a standby looks at a lane whose blocks are full");
        let handles = crate::turns::LaneHandles {
            passed: if stalled { upper } else { 0 },
            stalled,
        };
        Ok((handles, standby_after.saturating_mul(FULL_STANDBY_FACTOR)))
    }

    /// The requests to vote now (enough to fill `room` transactions), after the pre-check
    /// settled the rest, and the voted ones that can be executed without more votes.
    pub(super) async fn ready(
        &mut self,
        room: usize,
        step: &mut VoteStep,
    ) -> Result<Ready, VoterError> {
        let lane = self.metrics.lane;
        let committee = self.committee().await?;
        let limit = self.config.batch_size.saturating_mul(room.max(1)).max(64);
        let retry_after = self.config.retry_after.as_secs().max(1);
        self.release_window_waits().await?;
        let (me, standby_after, now) = (self.operator, self.config.standby_after, unix_now());
        // Requests that need our vote, skipping those in flight; requests we already voted are
        // re-checked separately (least recently checked first), so neither kind can hold up the
        // other however many there are.
        let (candidates, recheck) = {
            let store = self.store.lock();
            let window = limit.saturating_add(self.pending.len());
            let candidates: Vec<StoredRequest> = store
                .needing_vote(lane, retry_after, window, room)?
                .into_iter()
                .filter(|r| !self.pending.contains_key(&r.request.nonce))
                .take(limit)
                .collect();
            let recheck = store.stale_voted(lane, retry_after, limit)?;
            (candidates, recheck)
        };
        let candidates = self.within_vote_window(candidates, retry_after).await?;
        // A request another operator is first for waits (deferred in the store, so it stays out
        // of the window until it is due); when due it is voted only if the lane moved past it.
        // What the standby goes by, read once per step when a request it stands by for is due.
        let mut view: Option<(crate::turns::LaneHandles, std::time::Duration)> = None;
        let mut open = Vec::with_capacity(candidates.len().saturating_add(recheck.len()));
        for r in candidates {
            let nonce = r.request.nonce;
            if committee.as_ref().is_none_or(|c| c.is_primary(nonce, me)) {
                open.push(r);
                continue;
            }
            // Younger than `standby_after`, it waits whatever the lane does: nothing to read. An
            // older one goes by the lane however it came here (a backlog's requests are old when
            // they first reach the window: by age alone each would pass the limit at once).
            let young = now < r.observed_at.saturating_add(standby_after.as_secs());
            let (handles, after) = match view {
                Some(view) => view,
                None if young => (crate::turns::LaneHandles::now(0), standby_after),
                None => *view.insert(self.standby_view(standby_after).await?),
            };
            match crate::turns::standby(nonce, r.observed_at, now, handles, after) {
                crate::turns::Standby::Vote(rule) => {
                    self.metrics.standby_voted(rule);
                    open.push(r);
                }
                crate::turns::Standby::Until(until) => {
                    self.store
                        .lock()
                        .apply(lane, nonce, &Transition::Deferred { until })?;
                }
            }
        }
        open.extend(recheck);
        if open.is_empty() {
            return Ok(Ready::default());
        }
        let nonces: Vec<u64> = open.iter().map(|r| r.request.nonce).collect();
        // What the plan and the send will read, read beside the pre-check: where a request may
        // be voted (not only votes of ours re-checked). Plans made before the requests were
        // final leave only what the send reads.
        {
            let to_vote: Vec<&Request> = open
                .iter()
                .filter(|r| r.status != RequestStatus::Voted)
                .map(|r| &r.request)
                .collect();
            if !to_vote.is_empty() {
                let planned = to_vote.iter().all(|r| self.prepared.covers(r));
                self.destination.warm_vote_plan(planned);
            }
        }
        let states = self.destination.voting_status(&nonces).await?;
        let mut ready = Vec::new();
        let mut long_voted = Vec::new();
        let mut handled: Vec<(u64, bool)> = Vec::new();
        let mut settled = Vec::new();
        for (stored, state) in open.into_iter().zip(states) {
            let nonce = stored.request.nonce;
            let voted = stored.status == RequestStatus::Voted;
            let outcome = match state {
                // Final only at the destination's confirmation depth (audit M-3): another
                // operator's handle may still be reorged away; until then it is left as it is.
                NonceState::Handled => {
                    handled.push((nonce, voted));
                    continue;
                }
                NonceState::VotedByUs if voted => {
                    if now.saturating_sub(stored.observed_at) >= EXECUTE_CHECK_AFTER_SECS
                        && long_voted.len() < MAX_EXECUTE_BATCH
                    {
                        long_voted.push(stored.request.clone());
                    }
                    Outcome::StillVoted
                }
                NonceState::VotedByUs => Outcome::VotedByUs,
                // Our vote is gone (a reorg on the destination): vote again.
                NonceState::Open if voted => Outcome::VoteGone,
                NonceState::Open => {
                    ready.push(stored);
                    continue;
                }
            };
            settled.push((nonce, outcome));
        }
        self.settle_all(settled, Seen::PreCheck, step)?;
        self.settle_handled(handled, step).await?;
        // Voted long ago and still open: if the keys already hold the threshold (a lowered
        // threshold), nobody's vote will execute them — an execution will (one read finds out).
        let execute = if long_voted.is_empty() {
            Vec::new()
        } else {
            match self.destination.executable(&long_voted).await {
                Ok(0) => Vec::new(),
                Ok(n) => {
                    tracing::info!(lane = %lane, executable = n, nonce = %nonce_ranges(&long_voted.iter().map(|r| r.nonce).collect::<Vec<_>>()), "requests hold the threshold without being executed: executing them");
                    long_voted
                }
                Err(e) => {
                    tracing::debug!(lane = %lane, error = %e, "cannot check whether voted requests are executable");
                    Vec::new()
                }
            }
        };
        Ok(Ready {
            vote: ready,
            execute,
        })
    }
}
