//! The relay as it runs on Kubernetes: operator 1's relay from the container image that
//! `deploy/container/build-image.sh` builds from scratch, run by podman with a read-only root
//! filesystem, no capabilities, as user 65532, its config mounted read-only and its store on a
//! volume, beside operators 2 and 3 on the host (threshold 2, one 3-member etcd). Transfers
//! both ways are handled exactly once; with operator 3 stopped, every transfer needs the
//! containerised operator's vote, and gets it; SIGTERM (`podman stop`) ends it cleanly.
//!
//! Needs buildah, podman and runc (`bash .tools/setup.sh` installs them): without them this
//! test fails saying so, it is not skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, utils::parse_ether};
use multibridge_contracts::Lane;
use multibridge_devnet::harness::invariants::{
    assert_exactly_once, votes_per_operator, wait_all_handled,
};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

use crate::{metric_at_least, relay_ready};

/// podman with its own storage (vfs) and runtime state under `dir`, nothing system-wide.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(dir: &Path) -> Self {
        let conf = dir.join("containers.conf");
        // No default ulimits: the defaults of Debian's containers.conf cannot be set inside
        // every CI sandbox.
        std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
        Self {
            dir: dir.to_owned(),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                // crun cannot start containers in some sandboxes; runc can everywhere tested.
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
            ]);
        command
    }
}

/// The relay container, removed (and its storage with it) when dropped.
struct RelayContainer {
    podman: Podman,
    name: String,
    child: Option<Child>,
}

impl RelayContainer {
    /// `podman stop` (SIGTERM, then SIGKILL after `grace`); how long it took and whether the
    /// relay exited by itself with status 0.
    fn stop(&mut self, grace: Duration) -> (Duration, bool) {
        let started = Instant::now();
        let out = self
            .podman
            .command()
            .args(["stop", "--time", &grace.as_secs().to_string(), &self.name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = self.child.take().map(|mut c| c.wait().unwrap());
        (started.elapsed(), status.is_some_and(|s| s.success()))
    }
}

impl Drop for RelayContainer {
    fn drop(&mut self) {
        let _ = self
            .podman
            .command()
            .args(["rm", "--force", "--time", "0", &self.name])
            .output();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self
            .podman
            .command()
            .args(["rmi", "--all", "--force"])
            .output();
    }
}

fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} is not installed: this test runs the relay from its container image; install \
         buildah, podman and runc with `bash .tools/setup.sh`"
    );
}

/// Build the image from `binary` with the repository's script; its id.
fn build_image(podman: &Podman, binary: &Path, tag: &str) -> String {
    let script = multibridge_devnet::harness::tools::workspace_root()
        .join("deploy/container/build-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--binary")
        .arg(binary)
        .args(["--tag", tag, "--root"])
        .arg(&podman.dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed: {stdout}{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{stdout}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("image-id "))
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_from_the_container_image_votes_beside_host_relays() {
    for tool in ["buildah", "podman", "runc"] {
        require(tool);
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::new(dir.path())).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let podman = Podman::new(work.path());
    let binary = multibridge_devnet::harness::tools::relay_binary().unwrap();
    let image = build_image(&podman, &binary, "localhost/multibridge:e2e");

    // Operator 1's config as a ConfigMap would hold it: no file on the host but the mounted
    // config and the store volume. (The devnet's dev-key signer stays in the file; on
    // Kubernetes the key comes from a Secret, see deploy/kubernetes.)
    let mut config = devnet.operator_config(0).unwrap();
    config.store.path = PathBuf::from("/var/lib/multibridge/store.sqlite");
    config.dashboard = Default::default();
    config.backup = None;
    let port = config.http.listen.port();
    let config_dir = work.path().join("config");
    let store_dir = work.path().join("store");
    for d in [&config_dir, &store_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(config_dir.join("relay.toml"), config.to_toml().unwrap()).unwrap();
    // The store volume belongs to the image's user, as fsGroup makes it on Kubernetes.
    std::os::unix::fs::chown(&store_dir, Some(65_532), Some(65_532)).unwrap();

    let log_path = devnet.dir().join("logs/relay-1.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let name = format!("multibridge-e2e-{}", std::process::id());
    let child = podman
        .command()
        .args(["run", "--rm", "--name", &name])
        .args(["--read-only", "--network", "host", "--cap-drop", "ALL"])
        .args(["--security-opt", "no-new-privileges"])
        .arg("--volume")
        .arg(format!(
            "{}:/etc/multibridge/config:ro",
            config_dir.display()
        ))
        .arg("--volume")
        .arg(format!("{}:/var/lib/multibridge", store_dir.display()))
        // Per replica, from the environment (as the StatefulSet sets them).
        .args(["--env", "MULTIBRIDGE__ETCD__REPLICA=operator-1-container"])
        .args(["--env", "MULTIBRIDGE_LOG=info"])
        .arg(&image)
        .args(["run", "--config", "/etc/multibridge/config/relay.toml"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run podman: {e} (install it with bash .tools/setup.sh)")
        });
    let mut container = RelayContainer {
        podman,
        name,
        child: Some(child),
    };
    devnet.start_relay(1).unwrap();
    devnet.start_relay(2).unwrap();
    relay_ready(port, Duration::from_secs(90)).await;
    eprintln!(
        "container relay ready {:.1} s after the test started",
        started.elapsed().as_secs_f64()
    );

    // All three operators up: transfers both ways, exactly once.
    let driver = Driver::new(devnet.manifest());
    let to = Address::repeat_byte(0xc0);
    let amount = parse_ether("0.5").unwrap();
    let mut first = Vec::new();
    for (lane, user) in [(Lane::MainToService, 0), (Lane::ServiceToMain, 1)] {
        let requests = driver
            .request_native_burst(lane, user, to, amount, 4)
            .await
            .unwrap();
        first.push((lane, requests));
    }
    for (lane, requests) in &first {
        let nonces = requests[0].nonce..requests[requests.len() - 1].nonce + 1;
        wait_all_handled(&driver, *lane, nonces.clone(), Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| {
                multibridge_devnet::harness::invariants::dump_relay_logs(devnet.dir(), 3, 20);
                panic!("{e}")
            });
        assert_exactly_once(&driver, *lane, nonces).await.unwrap();
    }

    // Operator 3 stopped: threshold 2 of the 2 left, so every transfer needs the container's
    // vote.
    devnet
        .relay(2)
        .unwrap()
        .stop(Duration::from_secs(10))
        .unwrap();
    let operator_1 = driver.operator(0).unwrap().address();
    for (lane, user) in [(Lane::MainToService, 0), (Lane::ServiceToMain, 1)] {
        let requests = driver
            .request_native_burst(lane, user, to, amount, 3)
            .await
            .unwrap();
        let nonces = requests[0].nonce..requests[requests.len() - 1].nonce + 1;
        wait_all_handled(&driver, lane, nonces.clone(), Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| {
                multibridge_devnet::harness::invariants::dump_relay_logs(devnet.dir(), 3, 20);
                panic!("{e}")
            });
        assert_exactly_once(&driver, lane, nonces.clone())
            .await
            .unwrap();
        let votes = votes_per_operator(&driver, lane).await.unwrap();
        for nonce in nonces {
            assert_eq!(
                votes.get(&(nonce, operator_1)),
                Some(&1),
                "{lane} nonce {nonce}: the containerised operator 1 did not vote exactly once"
            );
        }
    }
    metric_at_least(
        "the container relay counts its votes",
        port,
        "multibridge_votes_sent_total{lane=\"main-to-service\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;

    // SIGTERM: the relay steps down and exits 0 well within a Kubernetes grace period.
    let (took, clean) = container.stop(Duration::from_secs(30));
    assert!(
        clean,
        "the container relay did not exit 0 on SIGTERM (log: {})",
        log_path.display()
    );
    assert!(took < Duration::from_secs(20), "stopping took {took:?}");
    assert!(
        store_dir.join("store.sqlite").is_file(),
        "the store is not on the volume"
    );
    eprintln!(
        "container relay: stopped in {:.1} s; test took {:.1} s",
        took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
