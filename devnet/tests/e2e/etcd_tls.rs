//! Audit M-5: the relays' etcd with TLS, client certificates and user/password — a real etcd
//! started by the test with `--client-cert-auth` and `auth enable`, certificates made by the
//! test. Relays with the right material lead their lanes and move a transfer; a relay without
//! a client certificate or with a wrong password gets a named error and never leads.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, Permission, TlsOptions};
use multibridge_config::{EtcdConfig, EtcdTlsConfig};
use multibridge_contracts::Lane;
use multibridge_devnet::harness::invariants::{assert_exactly_once, wait_all_handled};
use multibridge_devnet::harness::ports::free_port;
use multibridge_devnet::harness::process::{ManagedProcess, ProcessSpec};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

use crate::Poll;

/// A CA, a server certificate for 127.0.0.1 and client certificates, as PEM files in `dir`.
fn make_certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "multibridge test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issue = |name: &str, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    };
    issue("server", "etcd");
    issue("root", "root");
    issue("relay", "relay");
}

/// A one-member etcd serving clients over TLS with client-certificate auth; `/health` on a
/// plain metrics port.
async fn start_tls_etcd(dir: &Path) -> (ManagedProcess, String) {
    let tools = multibridge_devnet::harness::tools::Tools::locate().unwrap();
    let (client, peer, metrics) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let file = |name: &str| dir.join(name).display().to_string();
    let process = ManagedProcess::spawn(ProcessSpec {
        name: "etcd-tls".into(),
        program: tools.etcd.clone(),
        args: vec![
            "--name".into(),
            "etcd-tls".into(),
            "--data-dir".into(),
            file("etcd-tls.data"),
            "--listen-client-urls".into(),
            url.clone(),
            "--advertise-client-urls".into(),
            url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("etcd-tls={peer_url}"),
            "--listen-metrics-urls".into(),
            format!("http://127.0.0.1:{metrics}"),
            "--cert-file".into(),
            file("server.pem"),
            "--key-file".into(),
            file("server.key"),
            "--trusted-ca-file".into(),
            file("ca.pem"),
            "--client-cert-auth".into(),
        ],
        envs: vec![],
        log_path: dir.join("etcd-tls.log"),
    })
    .unwrap();
    Poll::new("the TLS etcd never became healthy", Duration::from_secs(20))
        .until(
            async || match reqwest::get(format!("http://127.0.0.1:{metrics}/health")).await {
                Ok(r) if r.status().is_success() => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
    (process, url)
}

/// A client of `url` with client certificate `name` (and a user, if given).
async fn connect(dir: &Path, url: &str, name: &str, user: Option<(&str, &str)>) -> Client {
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(
            read(&format!("{name}.pem")),
            read(&format!("{name}.key")),
        ));
    let mut options = ConnectOptions::new().with_tls(tls);
    if let Some((user, password)) = user {
        options = options.with_user(user, password);
    }
    Client::connect([url], Some(options)).await.unwrap()
}

/// The relay's `[etcd]` for this cluster: client certificate `cert` (if any), user `relay`
/// with the password in `password_file`.
fn relay_etcd(
    dir: &Path,
    url: &str,
    cert: bool,
    password_file: &Path,
    replica: String,
) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![url.to_owned()],
        prefix: "/multibridge".to_owned(),
        lease_ttl_secs: 3,
        replica: Some(replica),
        scope: Default::default(),
        step_down_after_secs: None,
        tls: Some(EtcdTlsConfig {
            ca_file: dir.join("ca.pem"),
            cert_file: cert.then(|| dir.join("relay.pem")),
            key_file: cert.then(|| dir.join("relay.key")),
            domain: None,
        }),
        username: Some("relay".to_owned()),
        password_file: Some(password_file.to_owned()),
        password_env: None,
        elect_by_chain: false,
        keep_history_secs: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_lead_through_an_etcd_with_tls_client_certificates_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certificates(&certs);
    let (_etcd, url) = start_tls_etcd(&certs).await;

    // Users: root (for auth enable) and relay, allowed only under /multibridge.
    let mut admin = connect(&certs, &url, "root", None).await;
    admin.user_add("root", "root-password", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("multibridge").await.unwrap();
    admin
        .role_grant_permission(
            "multibridge",
            Permission::read_write("/multibridge").with_prefix(),
        )
        .await
        .unwrap();
    admin
        .user_add("relay", "relay-password", None)
        .await
        .unwrap();
    admin.user_grant_role("relay", "multibridge").await.unwrap();
    admin.auth_enable().await.unwrap();
    let good = dir.path().join("relay-password");
    std::fs::write(&good, "relay-password\n").unwrap();
    let bad = dir.path().join("wrong-password");
    std::fs::write(&bad, "not-the-password\n").unwrap();

    let mut devnet = Devnet::start(DevnetOptions::chains_only(dir.path().join("devnet")))
        .await
        .unwrap();
    for op in devnet.operators() {
        let mut config = devnet.operator_config(op).unwrap();
        config.etcd = Some(relay_etcd(
            &certs,
            &url,
            true,
            &good,
            format!("operator-{}-r1", op + 1),
        ));
        devnet.write_operator_config(op, &config).unwrap();
        devnet.start_relay(op).unwrap();
    }
    for port in devnet.operator_http_ports.clone() {
        for lane in Lane::ALL {
            let series = format!("multibridge_leader{{lane=\"{}\"}}", lane.as_str());
            crate::metric_at_least(
                "a relay never led its lane through the TLS etcd",
                port,
                &series,
                1.0,
                Duration::from_secs(60),
            )
            .await;
        }
    }
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let r = driver
        .request_native(lane, 0, Address::repeat_byte(0x5e), U256::from(3))
        .await
        .unwrap();
    wait_all_handled(&driver, lane, r.nonce..r.nonce + 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_exactly_once(&driver, lane, r.nonce..r.nonce + 1)
        .await
        .unwrap();
    // The relays' keys are where they should be, written with the relay user.
    let mut relay = connect(&certs, &url, "relay", Some(("relay", "relay-password"))).await;
    let keys = relay
        .get(
            "/multibridge",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .unwrap();
    assert!(
        !keys.kvs().is_empty(),
        "no election keys under /multibridge"
    );

    // Without a client certificate, or with a wrong password: a named error, never a leader.
    let binary = multibridge_devnet::harness::tools::relay_binary().unwrap();
    for (what, cert, password, expect) in [
        (
            "no client certificate",
            false,
            &good,
            "set etcd.tls.cert_file",
        ),
        ("a wrong password", true, &bad, "authentication failed"),
    ] {
        let mut config = devnet.operator_config(0).unwrap();
        config.etcd = Some(relay_etcd(
            &certs,
            &url,
            cert,
            password,
            "operator-1-r9".into(),
        ));
        let path = dir
            .path()
            .join(format!("relay-{}.toml", what.replace(' ', "-")));
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        let output = tokio::process::Command::new(&binary)
            .args(["status", "--json", "--config"])
            .arg(&path)
            .output()
            .await
            .unwrap();
        let statuses: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&output.stderr)));
        let error = statuses[0]["leadership"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        println!("{what}: {error}");
        assert!(
            error.contains(expect),
            "{what}: the etcd error does not name the problem: {statuses}"
        );
    }
}
