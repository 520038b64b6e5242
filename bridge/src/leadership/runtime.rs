//! The leadership runtime: every campaign (lease renewals, heartbeats, the standby's watch of
//! its leader) runs on one thread of its own with its own etcd connections, so the relay's own
//! load — a flood of its HTTP API, a drain's signatures, a long store read — never delays a
//! heartbeat past its TTL. At a 1 s lease that would cost the lane its leader (a standby takes
//! over once the heartbeat is a TTL late) however healthy the replica.

use std::sync::OnceLock;

use tokio::runtime::Handle;

/// The leadership runtime's handle, started at the first call (`None`: the thread could not be
/// started; campaigns then run on the caller's runtime).
pub fn handle() -> Option<Handle> {
    static HANDLE: OnceLock<Option<Handle>> = OnceLock::new();
    HANDLE.get_or_init(start).clone()
}

fn start() -> Option<Handle> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("leadership".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "the leadership runtime could not start");
                    let _ = tx.send(None);
                    return;
                }
            };
            let _ = tx.send(Some(runtime.handle().clone()));
            // Runs until the process exits: its tasks are aborted by their owners.
            runtime.block_on(std::future::pending::<()>());
        });
    match spawned {
        Ok(_) => rx.recv().ok().flatten(),
        Err(e) => {
            tracing::error!(error = %e, "the leadership thread could not start");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tasks_on_the_leadership_runtime_run_on_its_own_thread() {
        let handle = super::handle().expect("the leadership runtime starts");
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _ = tx.send(std::thread::current().name().map(str::to_owned));
        });
        let name = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the task ran");
        assert_eq!(name.as_deref(), Some("leadership"));
    }
}
