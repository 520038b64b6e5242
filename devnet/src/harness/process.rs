//! Child processes the devnet owns: spawn with a log file, SIGKILL, SIGSTOP/SIGCONT, graceful
//! stop, restart; always killed when dropped unless explicitly detached (`devnet up`).

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// What went wrong with a managed process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        /// Component name.
        name: String,
        /// Program path.
        program: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The log file could not be opened.
    #[error("cannot open log {path}: {source}")]
    Log {
        /// Log path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A signal could not be delivered.
    #[error("cannot signal {name} (pid {pid}) with {signal}: {errno}")]
    Signal {
        /// Component name.
        name: String,
        /// Its pid.
        pid: i32,
        /// The signal.
        signal: Signal,
        /// Why.
        errno: Errno,
    },
    /// The process is not running.
    #[error("{0} is not running")]
    NotRunning(String),
}

/// How to (re)start one process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Component name, e.g. `anvil-main` or `etcd-1`.
    pub name: String,
    /// Program path.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub envs: Vec<(String, String)>,
    /// stdout and stderr are appended here.
    pub log_path: PathBuf,
}

/// A process the devnet started and still owns.
#[derive(Debug)]
pub struct ManagedProcess {
    spec: ProcessSpec,
    child: Option<Child>,
    detached: bool,
}

/// A process left running by `devnet up`, as recorded for `down` and `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedProcess {
    /// Component name.
    pub name: String,
    /// Its pid.
    pub pid: i32,
    /// The program it runs (checked before signalling, so a reused pid is never hit).
    pub program: PathBuf,
}

impl ManagedProcess {
    /// Start the process described by `spec`.
    pub fn spawn(spec: ProcessSpec) -> Result<Self, ProcessError> {
        let mut process = Self {
            spec,
            child: None,
            detached: false,
        };
        process.start()?;
        Ok(process)
    }

    fn start(&mut self) -> Result<(), ProcessError> {
        let log = open_log(&self.spec.log_path)?;
        let log_err = log.try_clone().map_err(|source| ProcessError::Log {
            path: self.spec.log_path.clone(),
            source,
        })?;
        let child = Command::new(&self.spec.program)
            .args(&self.spec.args)
            .envs(self.spec.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Own process group: a terminal's Ctrl-C aimed at the devnet CLI does not hit the
            // components, which are stopped explicitly.
            .process_group(0)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                name: self.spec.name.clone(),
                program: self.spec.program.clone(),
                source,
            })?;
        if let Ok(pid) = i32::try_from(child.id()) {
            crate::harness::watch::started(pid);
        }
        self.child = Some(child);
        Ok(())
    }

    /// Component name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// How it is started.
    pub fn spec(&self) -> &ProcessSpec {
        &self.spec
    }

    /// Pid of the running process.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// Whether the process is still alive (a stopped process counts as alive).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        let pid = self
            .pid()
            .ok_or_else(|| ProcessError::NotRunning(self.spec.name.clone()))?;
        kill(Pid::from_raw(pid), signal).map_err(|errno| ProcessError::Signal {
            name: self.spec.name.clone(),
            pid,
            signal,
            errno,
        })
    }

    /// SIGKILL and reap. A process that already exited is fine.
    pub fn kill(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
            if let Ok(pid) = i32::try_from(child.id()) {
                crate::harness::watch::reaped(pid);
            }
        }
        Ok(())
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn pause(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGSTOP)
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGCONT)
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns whether it exited within the grace.
    pub fn stop(&mut self, grace: Duration) -> Result<bool, ProcessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(true);
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            crate::harness::watch::reaped(pid);
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return Ok(true);
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            let pid = Pid::from_raw(pid);
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(false)
    }

    /// Kill (if running) and start again with the same spec; the log is appended to.
    pub fn restart(&mut self) -> Result<(), ProcessError> {
        self.kill()?;
        self.start()
    }

    /// Start again after [`kill`](Self::kill) or [`stop`](Self::stop).
    pub fn start_again(&mut self) -> Result<(), ProcessError> {
        if self.is_running() {
            return Ok(());
        }
        self.start()
    }

    /// Leave the process running after this handle is dropped (`devnet up`).
    pub fn detach(mut self) -> Option<RecordedProcess> {
        self.detached = true;
        let pid = self.pid()?;
        crate::harness::watch::reaped(pid);
        Some(RecordedProcess {
            name: self.spec.name.clone(),
            pid,
            program: self.spec.program.clone(),
        })
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if !self.detached {
            let _ = self.kill();
        }
    }
}

fn open_log(path: &Path) -> Result<File, ProcessError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ProcessError::Log {
            path: path.to_owned(),
            source,
        })?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| ProcessError::Log {
            path: path.to_owned(),
            source,
        })
}

impl RecordedProcess {
    /// Whether the recorded pid is alive and still runs the recorded program.
    pub fn is_alive(&self) -> bool {
        let exe = match std::fs::read_link(format!("/proc/{}/exe", self.pid)) {
            Ok(exe) => exe,
            Err(_) => return false,
        };
        if !same_program(&exe, &self.program) {
            return false;
        }
        // A zombie still has /proc/<pid> but no exe link; a stopped process is alive.
        !matches!(proc_state(self.pid), Some('Z') | None)
    }

    /// SIGTERM (after SIGCONT, in case it was paused), wait up to `grace`, then SIGKILL and wait
    /// again. Returns `true` once the process is gone.
    pub fn stop(&self, grace: Duration) -> bool {
        if !self.is_alive() {
            return true;
        }
        let pid = Pid::from_raw(self.pid);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = kill(pid, Signal::SIGTERM);
        if self.wait_gone(grace) {
            return true;
        }
        let _ = kill(pid, Signal::SIGKILL);
        self.wait_gone(Duration::from_secs(5))
    }

    fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        !self.is_alive()
    }
}

fn same_program(exe: &Path, program: &Path) -> bool {
    let program = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_owned());
    let exe = exe
        .to_str()
        .map(|s| s.trim_end_matches(" (deleted)"))
        .map(PathBuf::from)
        .unwrap_or_else(|| exe.to_owned());
    exe == program
}

/// CPU time a process has used so far (user + system), seconds; `None` once it is gone. Linux
/// counts it in clock ticks of 1/100 s (`USER_HZ`, fixed for user space on every architecture
/// Linux runs here).
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    // State is field 3 of the line, utime field 14 and stime field 15.
    let stat = stat_after_comm(pid)?;
    let mut fields = stat.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

fn proc_state(pid: i32) -> Option<char> {
    stat_after_comm(pid)?.trim_start().chars().next()
}

/// `/proc/<pid>/stat` from its third field on (`pid (comm) state …`; comm may contain spaces and
/// parentheses, so the split is after the last `)`).
fn stat_after_comm(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path) -> ProcessSpec {
        ProcessSpec {
            name: "sleeper".into(),
            program: PathBuf::from("/bin/sleep"),
            args: vec!["30".into()],
            envs: vec![],
            log_path: dir.join("sleeper.log"),
        }
    }

    /// This process's CPU time is read from its stat line and grows while it works.
    #[test]
    fn cpu_seconds_reads_a_process_s_user_and_system_time() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let before = cpu_seconds(pid).expect("our own stat line");
        let started = Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let after = cpu_seconds(pid).unwrap();
        assert!(after - before >= 0.1, "{before} -> {after}");
        // The main thread's state (the test harness waits there): any, but read.
        assert!(proc_state(pid).is_some());
        assert_eq!(cpu_seconds(i32::MAX), None);
    }

    /// Signals arrive asynchronously: poll the state with a deadline.
    fn eventually_state(pid: i32, want: impl Fn(Option<char>) -> bool) -> Option<char> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = proc_state(pid);
            if want(state) || Instant::now() >= deadline {
                return state;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn kill_pause_resume_restart_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = ManagedProcess::spawn(sleeper(dir.path())).unwrap();
        let first = p.pid().unwrap();
        assert!(p.is_running());
        p.pause().unwrap();
        assert_eq!(eventually_state(first, |s| s == Some('T')), Some('T'));
        p.resume().unwrap();
        assert_ne!(eventually_state(first, |s| s != Some('T')), Some('T'));
        p.restart().unwrap();
        let second = p.pid().unwrap();
        assert_ne!(first, second);
        assert!(proc_state(first).is_none(), "old process reaped");
        drop(p);
        assert!(
            proc_state(second).is_none(),
            "dropped process killed and reaped"
        );
    }

    #[test]
    fn detached_process_survives_and_stops_by_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = ManagedProcess::spawn(sleeper(dir.path())).unwrap();
        let record = p.detach().unwrap();
        assert!(record.is_alive());
        // A record whose program differs is never treated as ours.
        let impostor = RecordedProcess {
            program: PathBuf::from("/bin/true"),
            ..record.clone()
        };
        assert!(!impostor.is_alive());
        assert!(record.stop(Duration::from_secs(5)));
        // Our own child: reap the zombie so the assertion below sees it gone.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(record.pid), None);
        assert!(!record.is_alive());
    }
}
