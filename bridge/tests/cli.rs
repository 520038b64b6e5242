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

#[test]
fn environment_overrides_any_field_and_is_validated_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        r#"
        [operator]
        address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        signer = { kind = "dev-key", private_key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d" }
        [chains.main]
        chain_id = 31337
        rpc_urls = ["http://127.0.0.1:1"]
        bridge = "0x0000000000000000000000000000000000000001"
        max_block_range = 0
        [chains.service]
        chain_id = 31338
        rpc_urls = ["http://127.0.0.1:2"]
        bridge = "0x0000000000000000000000000000000000000002"
        [store]
        path = "store.sqlite"
        [http]
        listen = "127.0.0.1:0"
        "#,
    )
    .unwrap();
    let validate = |envs: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_multibridge"))
            .args(["config", "validate", "--config", path.to_str().unwrap()])
            .envs(envs.iter().copied())
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
    };
    let (ok, text) = validate(&[]);
    assert!(
        !ok && text.contains("max_block_range must be at least 1"),
        "{text}"
    );
    let (ok, text) = validate(&[("MULTIBRIDGE__CHAINS__MAIN__MAX_BLOCK_RANGE", "500")]);
    assert!(ok, "the override fixes the file: {text}");
    let (ok, text) = validate(&[
        ("MULTIBRIDGE__CHAINS__MAIN__MAX_BLOCK_RANGE", "500"),
        ("MULTIBRIDGE__LANES", "[\"service-to-main\"]"),
    ]);
    assert!(ok && text.contains("lanes service-to-main"), "{text}");
    let (ok, text) = validate(&[
        ("MULTIBRIDGE__CHAINS__MAIN__MAX_BLOCK_RANGE", "500"),
        ("MULTIBRIDGE__CHAINS__SERVICE__CHAIN_ID", "31337"),
    ]);
    assert!(
        !ok && text.contains("same chain id"),
        "an override is validated like the file: {text}"
    );
}
