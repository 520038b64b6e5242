//! What the end-to-end tests learn about themselves (issue 51): how long each test's devnets
//! waited for the machine and ran, how long each phase of a devnet's start took, and a deadline
//! per devnet so a hung test fails by name instead of hanging the run.
//!
//! - With `MULTIBRIDGE_TEST_TIMES=<file>` every devnet appends one line when it stops —
//!   `devnet<TAB><test><TAB><waited s><TAB><ran s><TAB><alone>` — and one per start phase —
//!   `phase<TAB><test><TAB><phase><TAB><s>`; `.ci/run` prints them as a table.
//! - Every devnet of a test arms a deadline (`MULTIBRIDGE_TEST_DEADLINE_SECS`, default 600;
//!   the CLI's devnets only when the variable is set): past it the run stops with the test's name, after killing every process the harness started (nothing of
//!   a test outlives the run).

use std::collections::HashSet;
use std::io::Write;
use std::sync::{LazyLock, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Every process the harness started and has not reaped yet (killed when a deadline passes).
static LIVE: LazyLock<Mutex<HashSet<i32>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Note a started process.
pub fn started(pid: i32) {
    LIVE.lock().unwrap_or_else(|p| p.into_inner()).insert(pid);
}

/// Note a reaped process.
pub fn reaped(pid: i32) {
    LIVE.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
}

/// The name of the running test (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}

/// Append `line` to the times file, if one is asked for.
fn record(line: &str) {
    let Ok(path) = std::env::var("MULTIBRIDGE_TEST_TIMES") else {
        return;
    };
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write per line: appends of a few bytes do not interleave.
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

/// The clock of one devnet: when it asked for the machine, got it, and each start phase.
#[derive(Debug)]
pub struct DevnetClock {
    test: String,
    asked: Instant,
    got: Option<Instant>,
    phase_from: Instant,
    alone: bool,
    _deadline: Deadline,
}

impl DevnetClock {
    /// A devnet of the running test asks for the machine now.
    pub fn asking(alone: bool) -> Self {
        let test = test_name();
        // Waiting for the machine is not a hang: a devnet queued behind the tests that run
        // alone may wait minutes on a loaded machine (on CI a soak was killed at its deadline
        // before it had run half of it). The wait has its own, wider bound; the devnet's own
        // deadline starts when it gets the machine.
        let deadline = Deadline::arm(test.clone(), Phase::Waiting);
        let now = Instant::now();
        Self {
            test,
            asked: now,
            got: None,
            phase_from: now,
            alone,
            _deadline: deadline,
        }
    }

    /// It got the machine.
    pub fn got_machine(&mut self) {
        self._deadline = Deadline::arm(self.test.clone(), Phase::Running);
        let now = Instant::now();
        self.got = Some(now);
        self.phase_from = now;
    }

    /// A start phase ended now.
    pub fn phase(&mut self, phase: &str) {
        let now = Instant::now();
        record(&format!(
            "phase\t{}\t{phase}\t{:.2}",
            self.test,
            now.saturating_duration_since(self.phase_from).as_secs_f64()
        ));
        self.phase_from = now;
    }
}

impl Drop for DevnetClock {
    fn drop(&mut self) {
        let got = self.got.unwrap_or(self.asked);
        record(&format!(
            "devnet\t{}\t{:.2}\t{:.2}\t{}",
            self.test,
            got.saturating_duration_since(self.asked).as_secs_f64(),
            got.elapsed().as_secs_f64(),
            self.alone
        ));
    }
}

/// What a devnet's deadline bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its wait for a share of the machine: three deadlines.
    Waiting,
    /// Its life from the moment it got the machine: one deadline.
    Running,
}

/// A devnet's deadline: disarmed when dropped.
#[derive(Debug)]
struct Deadline(Option<mpsc::Sender<()>>);

impl Deadline {
    fn arm(test: String, phase: Phase) -> Self {
        // A test binary (cargo puts them in `deps/`) gets the default; the CLI's benches and
        // experiments run as long as they need (a 10,000-transfer soak takes ~15 min) unless
        // the variable says otherwise.
        let under_test = std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n == "deps")
            })
            .unwrap_or(false);
        let secs = match std::env::var("MULTIBRIDGE_TEST_DEADLINE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(secs) => secs,
            None if under_test => 600u64,
            None => return Self(None),
        };
        let (secs, what) = match phase {
            Phase::Waiting => (secs.saturating_mul(3), "waiting for the machine"),
            Phase::Running => (secs, "running"),
        };
        let (tx, rx) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("deadline of {test}"))
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(Duration::from_secs(secs))
                {
                    eprintln!(
                        "\n*** test {test} passed its deadline of {secs} s {what} \
                         (MULTIBRIDGE_TEST_DEADLINE_SECS): it is hung; every process the \
                         harness started is killed and the run stops ***\n"
                    );
                    let pids: Vec<i32> = LIVE
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .copied()
                        .collect();
                    for pid in pids {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    std::process::exit(124);
                }
            });
        Self(spawned.ok().map(|_| tx))
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}
