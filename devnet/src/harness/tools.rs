//! Finding the external programs the devnet runs (anvil from `.tools/`, etcd from apt).

use std::path::{Path, PathBuf};

/// The command that installs every tool.
pub const SETUP_COMMAND: &str = "bash .tools/setup.sh";

/// A program the devnet needs is not installed.
#[derive(Debug, thiserror::Error)]
#[error("{tool} not found (looked in {looked_in}); install the tools with: {SETUP_COMMAND}")]
pub struct MissingTool {
    /// The program's name.
    pub tool: &'static str,
    /// Where it was looked for.
    pub looked_in: String,
}

/// Paths of the programs the devnet starts.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `anvil` (npm `@foundry-rs/anvil-linux-amd64`, in `.tools/`).
    pub anvil: PathBuf,
    /// `etcd` (Debian `etcd-server`).
    pub etcd: PathBuf,
}

impl Tools {
    /// Locate every tool, or name the first missing one and the setup command.
    pub fn locate() -> Result<Self, MissingTool> {
        Ok(Self {
            anvil: find_tool("anvil")?,
            etcd: find_tool("etcd")?,
        })
    }
}

/// The workspace root: the nearest ancestor of the current directory with `.tools/package.json`,
/// else the workspace this crate was built in.
pub fn workspace_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if dir.join(".tools").join("package.json").is_file() {
                return dir.to_path_buf();
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Find `tool`: `$MULTIBRIDGE_TOOLS_BIN/<tool>`, then `<workspace>/.tools/node_modules/.bin`, then
/// `$PATH`.
pub fn find_tool(tool: &'static str) -> Result<PathBuf, MissingTool> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("MULTIBRIDGE_TOOLS_BIN") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(workspace_root().join(".tools/node_modules/.bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for dir in &dirs {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(MissingTool {
        tool,
        looked_in: dirs
            .iter()
            .take(2)
            .map(|d| d.display().to_string())
            .chain(std::iter::once("$PATH".to_owned()))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Whether the relay binary beside this executable is newer than every source file of the
/// crates it is built from (`bridge/`, `contracts/`, `monitoring/`, `recovery/`, the workspace
/// manifests).
fn relay_is_newer_than_its_sources() -> bool {
    fn newest(dir: &std::path::Path, newest_seen: &mut std::time::SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path
                    .file_name()
                    .is_some_and(|n| n == "target" || n == "node_modules")
                {
                    continue;
                }
                newest(&path, newest_seen);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                *newest_seen = (*newest_seen).max(modified);
            }
        }
    }
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let Some(binary) = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("multibridge"))
        .find(|c| c.is_file())
    else {
        return false;
    };
    let Ok(built) = std::fs::metadata(&binary).and_then(|m| m.modified()) else {
        return false;
    };
    let root = workspace_root();
    let mut newest_seen = std::time::UNIX_EPOCH;
    for dir in ["bridge", "contracts", "monitoring", "recovery"] {
        newest(&root.join(dir), &mut newest_seen);
    }
    for file in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(modified) = std::fs::metadata(root.join(file)).and_then(|m| m.modified()) {
            newest_seen = newest_seen.max(modified);
        }
    }
    newest_seen < built
}

/// The `multibridge` relay binary: `$MULTIBRIDGE_BIN`, else beside this executable (cargo puts
/// test binaries one level below, in `deps/`).
///
/// Under `cargo test` (which sets `$CARGO`) the workspace is built once per test process first:
/// `cargo test -p multibridge-devnet` alone would not rebuild another package's binary, and a
/// stale relay would be tested.
pub fn relay_binary() -> Result<PathBuf, MissingTool> {
    if let Some(path) = std::env::var_os("MULTIBRIDGE_BIN") {
        return Ok(PathBuf::from(path));
    }
    static FRESH: std::sync::Once = std::sync::Once::new();
    if let Some(cargo) = std::env::var_os("CARGO") {
        FRESH.call_once(|| {
            // Under `cargo test --workspace` the relay is built already: no source of the
            // crates it is built from is newer than it (the check costs milliseconds; the
            // build's own no-op check after `cargo test` took 46 s on 2 cores).
            if relay_is_newer_than_its_sources() {
                return;
            }
            let exe = std::env::current_exe().unwrap_or_default();
            let release = exe.components().any(|c| c.as_os_str() == "release");
            // Test binaries live in `deps/`: there, the target selection of `cargo test
            // --workspace` (features resolve the same way, so this is a no-op; building
            // `-p multibridge` alone relinks it differently). Under `cargo run` (the demo, `up`,
            // the benchmarks) the binaries are enough: no test target is compiled for them.
            let under_test = exe
                .parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == "deps");
            let targets = if under_test {
                "--all-targets"
            } else {
                "--bins"
            };
            let mut command = std::process::Command::new(cargo);
            command.args(["build", "--quiet", "--workspace", targets]);
            if release {
                command.arg("--release");
            }
            let status = command.current_dir(workspace_root()).status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!(
                    "warning: could not rebuild the multibridge binary; testing the one on disk"
                );
            }
        });
    }
    let mut looked = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("multibridge");
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked.push(dir.display().to_string());
        }
    }
    Err(MissingTool {
        tool: "multibridge (build it with: cargo build -p multibridge)",
        looked_in: looked.join(", "),
    })
}
