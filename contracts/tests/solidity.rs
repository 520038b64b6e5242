//! The Solidity side of the test suite, run from `cargo test`: the forge tests, and the check
//! that the committed artifacts equal a fresh compile of the sources.
//!
//! Both need the tools `bash .tools/setup.sh` installs (node + solcjs, forge).
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn contracts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let path = contracts_dir()
        .join("../.tools/node_modules/.bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash .tools/setup.sh` first",
        path.display()
    );
    path
}

fn run(mut cmd: Command, what: &str, dir: &Path) -> String {
    let out = cmd
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn artifacts_match_a_fresh_compile() {
    tool("solcjs");
    let mut cmd = Command::new("node");
    cmd.args(["scripts/compile.cjs", "--check"]);
    let out = run(cmd, "node scripts/compile.cjs --check", &contracts_dir());
    assert!(out.contains("artifacts match"), "{out}");
}

#[test]
fn forge_tests_pass() {
    let mut cmd = Command::new(tool("forge"));
    cmd.args(["test", "--color", "never"]);
    let out = run(cmd, "forge test", &contracts_dir());
    // forge prints one summary line; make sure tests actually ran.
    let ran = out
        .lines()
        .filter(|l| l.contains("tests passed") || l.contains("test passed"))
        .count();
    assert!(ran > 0, "forge ran no tests:\n{out}");
    println!("{out}");
}
