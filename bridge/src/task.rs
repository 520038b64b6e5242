//! The loop every long-lived task of a lane runs: call its step, pause as the step asks, pause
//! and retry after a failure that may heal by itself, stop the relay with a named error after
//! one that cannot. The steps stay plain functions, testable one call at a time.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use multibridge_contracts::Lane;

/// A long-lived task of a lane stopped on an error no retry fixes: which task, of which lane,
/// and the error itself (the relay stops and names it).
#[derive(Debug, thiserror::Error)]
#[error("{lane} {task} stopped: {cause}")]
pub struct TaskFailed {
    /// Lane.
    pub lane: Lane,
    /// Task name.
    pub task: &'static str,
    /// Why.
    #[source]
    pub cause: Box<dyn std::error::Error + Send + Sync>,
}

/// Tasks that outlive any one pair of a process serving several (issue 37's shared submitter
/// per (chain, signer) and election per chain): spawned on the runtime, not on a pair's task
/// set, so a pair that fails for good and waits alone (audit A3-L5) takes none of them with it;
/// aborted together when the process stops ([`SharedTasks::abort_all`]).
#[derive(Clone, Default)]
pub struct SharedTasks(std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>);

impl SharedTasks {
    /// Run `task` until [`stop_all`](Self::stop_all).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn_on(None, task);
    }

    /// Run `task` on `runtime` (the caller's runtime when `None`) until
    /// [`stop_all`](Self::stop_all).
    pub fn spawn_on(
        &self,
        runtime: Option<tokio::runtime::Handle>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let handle = match runtime {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        };
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Stop every shared task and wait until each is gone (no submitter among them can
    /// broadcast any more).
    pub async fn stop_all(&self) {
        let handles: Vec<_> = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for handle in &handles {
            handle.abort();
        }
        for handle in handles {
            let _ = handle.await;
        }
    }
}

/// What every task of a replica returns: `Ok` when it ends by itself, [`TaskFailed`] when it
/// stops the relay.
pub type TaskResult = Result<(), TaskFailed>;

/// What the loop does after a successful step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Step again at once (there is more work).
    Now,
    /// Step again after this pause (caught up).
    After(Duration),
}

/// An error that knows whether waiting can fix it.
pub trait Retryable: Display + std::error::Error + Send + Sync + 'static {
    /// Whether the same step may succeed later without a person.
    fn is_retryable(&self) -> bool;
}

impl Retryable for std::convert::Infallible {
    fn is_retryable(&self) -> bool {
        true
    }
}

/// One iteration of a long-lived task, separate from the loop that repeats it.
pub trait Stepper: Send {
    /// What a failed step says.
    type Error: Retryable;
    /// Do one round of work and say when to come back.
    fn step(&mut self) -> impl Future<Output = Result<Next, Self::Error>> + Send;
    /// Wait `pause` after a step that said [`Next::After`] (a stepper may end it sooner when
    /// what it waits for comes). Runs after the step's state is gone: keep it small.
    fn wait(&mut self, pause: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(pause)
    }
}

/// Pause after a retryable failure (short: a node or etcd that answers again is used within
/// it; the calls themselves already retried with back-off).
pub const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Least time between two warnings of the same task (the failures are counted by the metrics
/// of the call that failed; the log only needs to say it goes on).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Run `stepper` until it fails for good; each failure that may heal is logged (at most every
/// [`WARN_EVERY`]) and retried after [`ERROR_PAUSE`].
pub async fn run_stepper<S: Stepper>(lane: Lane, task: &'static str, mut stepper: S) -> TaskResult {
    let mut last_warning: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        // A step's state lives on the heap for the step only: inline it sized every lane task
        // for its largest step (heaptrack: 8-16 KB for each of a lane's four steppers, held
        // while they sleep — 51 KB a lane, 6.5 MB in a relay serving 64 pairs).
        match Box::pin(stepper.step()).await {
            Ok(Next::Now) => {}
            Ok(Next::After(pause)) => stepper.wait(pause).await,
            Err(e) if e.is_retryable() => {
                if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(error = %e, suppressed, "{task} failed; retrying");
                    last_warning = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed = suppressed.saturating_add(1);
                }
                tokio::time::sleep(ERROR_PAUSE).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "{task} stopped");
                return Err(TaskFailed {
                    lane,
                    task,
                    cause: Box::new(e),
                });
            }
        }
    }
}
