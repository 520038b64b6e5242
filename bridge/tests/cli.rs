//! Bad input to the `multibridge` binary gets a named, actionable error and a non-zero exit.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn multibridge(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_multibridge"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn malformed_and_missing_configs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[operator]\naddress = 12\n").unwrap();
    let (ok, text) = multibridge(&["config", "validate", "--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.contains("invalid config") && text.contains("bad.toml"),
        "{text}"
    );

    let (ok, text) = multibridge(&[
        "run",
        "--config",
        dir.path().join("absent.toml").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(text.contains("cannot read config"), "{text}");
}
