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

/// forge keeps one build cache: two forge processes at once (the test threads) spoil it.
static FORGE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(mut cmd: Command, what: &str, dir: &Path) -> String {
    let _one_at_a_time = FORGE.lock().unwrap_or_else(|p| p.into_inner());
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

#[test]
fn the_threshold_slot_the_relay_overrides_is_where_the_compiler_put_it() {
    let mut cmd = Command::new(tool("forge"));
    cmd.args(["inspect", "Bridge", "storageLayout", "--json", "--force"]);
    let out = run(cmd, "forge inspect Bridge storageLayout", &contracts_dir());
    let json_start = out
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in:\n{out}"));
    let layout: serde_json::Value = serde_json::from_str(&out[json_start..])
        .unwrap_or_else(|e| panic!("storage layout JSON: {e}\n{out}"));
    let threshold = layout["storage"]
        .as_array()
        .and_then(|s| s.iter().find(|v| v["label"] == "_threshold"))
        .unwrap_or_else(|| panic!("no _threshold in the layout:\n{out}"));
    assert_eq!(
        threshold["slot"],
        multibridge_contracts::THRESHOLD_SLOT.to_string()
    );
    assert_eq!(threshold["offset"], multibridge_contracts::THRESHOLD_OFFSET);
    assert_eq!(threshold["type"], "t_uint8");
}

#[test]
fn the_bridge_fits_the_eip170_code_size_limit() {
    let artifact: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(contracts_dir().join("artifacts/Bridge.json")).unwrap(),
    )
    .unwrap();
    let code = artifact["deployedBytecode"].as_str().unwrap_or_default();
    let size = code.trim_start_matches("0x").len() / 2;
    println!("Bridge runtime code: {size} bytes of 24576");
    assert!(
        size <= 24_576,
        "Bridge runtime code is {size} bytes, above EIP-170's 24576"
    );
}

/// The value of `name` in `uint… public constant NAME = value;` of BridgeCore.sol (the
/// bridge's constants, shared with its extension).
fn solidity_constant(name: &str) -> u64 {
    let source = std::fs::read_to_string(contracts_dir().join("src/BridgeCore.sol"))
        .unwrap_or_else(|e| panic!("BridgeCore.sol: {e}"));
    let needle = format!(" public constant {name} = ");
    let line = source
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no constant {name} in BridgeCore.sol"));
    let value = line
        .split(&needle)
        .nth(1)
        .and_then(|v| v.strip_suffix(';'))
        .unwrap_or_else(|| panic!("cannot read {line}"));
    value
        .replace('_', "")
        .parse()
        .unwrap_or_else(|e| panic!("{name} = {value}: {e}"))
}

#[test]
fn the_gas_bounds_the_relay_plans_with_are_the_bridges() {
    assert_eq!(
        multibridge_contracts::ITEM_GAS,
        solidity_constant("ITEM_GAS")
    );
    assert_eq!(
        multibridge_contracts::NATIVE_ITEM_GAS,
        solidity_constant("NATIVE_ITEM_GAS")
    );
    assert_eq!(
        multibridge_contracts::RELEASE_GAS,
        solidity_constant("RELEASE_GAS")
    );
    assert_eq!(
        multibridge_contracts::RECORD_GAS,
        solidity_constant("RECORD_GAS")
    );
    assert_eq!(
        multibridge_contracts::VOTE_WINDOW,
        solidity_constant("VOTE_WINDOW")
    );
    assert_eq!(
        multibridge_contracts::MAX_LOWER_ADVANCE,
        solidity_constant("MAX_LOWER_ADVANCE")
    );
}
