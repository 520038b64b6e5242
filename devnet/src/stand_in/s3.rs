//! A real S3-compatible server for the backup tests: moto's server (PyPI `moto[server]`,
//! installed into `.tools/python` by setup), started on a free loopback port and killed when
//! dropped. Any access key is accepted; requests are SigV4-signed by the relay all the same.

use std::path::Path;
use std::time::Duration;

use crate::error::DevnetError;
use crate::harness::process::{ManagedProcess, ProcessSpec};

/// The access key id and secret the tests give the relays (moto accepts any).
pub const TEST_CREDENTIALS: (&str, &str) = ("multibridge-test", "multibridge-test-secret");

/// A running S3-compatible server.
pub struct S3Server {
    /// Its endpoint URL.
    pub endpoint: String,
    _process: ManagedProcess,
}

impl S3Server {
    /// Start the server, logging under `dir`, and create `bucket`.
    pub async fn start(dir: &Path, bucket: &str) -> Result<Self, DevnetError> {
        let port = crate::harness::ports::free_port().map_err(|e| DevnetError::io(dir, e))?;
        let python = crate::harness::tools::workspace_root()
            .join(".tools")
            .join("python");
        let process = ManagedProcess::spawn(ProcessSpec {
            name: "s3".into(),
            program: "python3".into(),
            args: vec![
                "-m".into(),
                "moto.server".into(),
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
            envs: vec![("PYTHONPATH".into(), python.display().to_string())],
            log_path: dir.join("logs").join("s3.log"),
        })?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let bucket_url = format!("{endpoint}/{bucket}");
        let client = reqwest::Client::new();
        crate::harness::wait::poll_until(
            "S3 server (moto; run bash .tools/setup.sh)",
            Duration::from_secs(30),
            || {
                let (client, url) = (client.clone(), bucket_url.clone());
                async move {
                    Ok(client
                        .put(url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()))
                }
            },
        )
        .await?;
        Ok(Self {
            endpoint,
            _process: process,
        })
    }
}
