//! Polling a condition with a deadline (never a bare sleep as synchronisation).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::DevnetError;

/// Interval between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Poll `check` until it returns `Ok(true)`, fails, or `timeout` passes (`NotReady`).
pub async fn poll_until<F, Fut>(what: &str, timeout: Duration, check: F) -> Result<(), DevnetError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, DevnetError>>,
{
    poll_every(what, timeout, POLL_INTERVAL, check).await
}

/// [`poll_until`] at `interval` (a bench that times the moment the condition turns true polls
/// finer than the suite's default).
pub async fn poll_every<F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<(), DevnetError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, DevnetError>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DevnetError::NotReady {
                component: what.to_owned(),
                waited: timeout,
            });
        }
        tokio::time::sleep(interval).await;
    }
}
