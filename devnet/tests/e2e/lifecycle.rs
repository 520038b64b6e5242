//! `multibridge-devnet up` / `status` / `down` as a user runs them: after `down` no anvil, etcd,
//! relay or Prometheus process of that devnet is left.

use std::path::Path;
use std::process::Command;

use multibridge_config::Config;
use multibridge_devnet::Manifest;
use multibridge_devnet::harness::manifest::load_processes;

fn devnet(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_multibridge-devnet"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Stops whatever `up` left running when the test ends, also when an assertion fails.
struct DownOnDrop<'a>(&'a Path);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        if let Ok(Some(processes)) = load_processes(self.0) {
            for p in processes {
                p.stop(std::time::Duration::from_secs(10));
            }
        }
    }
}

#[test]
fn up_status_down_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let _guard = DownOnDrop(dir.path());
    let out = devnet(dir.path(), &["up", "--block-time", "1"]);
    assert!(out.status.success(), "up failed:\n{}", text(&out));

    let processes = load_processes(dir.path())
        .unwrap()
        .expect("up records its processes");
    let mut names: Vec<&str> = processes.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "anvil-main",
            "anvil-service",
            "etcd-0",
            "etcd-1",
            "etcd-2",
            "prometheus",
            "relay-1",
            "relay-1-r2",
            "relay-2",
            "relay-2-r2",
            "relay-3",
            "relay-3-r2"
        ]
    );
    assert!(
        processes.iter().all(|p| p.is_alive()),
        "everything runs after up"
    );

    // The manifest and every operator's relay config are written and parse.
    let manifest = Manifest::load(dir.path()).unwrap();
    assert_eq!(manifest.operators.len(), 3);
    assert_eq!(manifest.threshold, 2);
    assert_eq!(manifest.etcd_endpoints.len(), 3);
    let prometheus = manifest
        .prometheus_url
        .clone()
        .expect("up starts Prometheus");
    assert!(
        text(&out).contains(&prometheus),
        "up prints the Prometheus URL:\n{}",
        text(&out)
    );
    assert_ne!(
        manifest.main.contracts.chain_id,
        manifest.service.contracts.chain_id
    );
    for op in &manifest.operators {
        let config = Config::load(&op.config).unwrap();
        assert_eq!(config.operator.address, op.account.address);
        assert_eq!(config.chains.main.bridge, manifest.main.contracts.bridge);
    }

    let status = devnet(dir.path(), &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["running"], true);

    // A second `up` in the same directory is refused, naming the fix.
    let again = devnet(dir.path(), &["up"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already running"), "{}", text(&again));

    let out = devnet(dir.path(), &["down"]);
    assert!(out.status.success(), "down failed:\n{}", text(&out));
    for p in &processes {
        assert!(
            !p.is_alive(),
            "{} (pid {}) still running after down",
            p.name,
            p.pid
        );
        assert!(!Path::new(&format!("/proc/{}", p.pid)).exists() || !p.is_alive());
    }
    assert!(
        load_processes(dir.path()).unwrap().is_none(),
        "down forgets the process list"
    );

    let status = devnet(dir.path(), &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["running"], false);
}

#[test]
fn bad_options_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = devnet(dir.path(), &["up", "--operators", "3", "--threshold", "4"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--threshold must be between 1 and"),
        "{}",
        text(&out)
    );
    assert!(
        load_processes(dir.path()).unwrap().is_none(),
        "nothing started"
    );
}
