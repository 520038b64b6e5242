//! A real Prometheus server (Debian's `prometheus`) scraping every relay of the devnet every
//! second, with the project's alert rules (`monitoring/prometheus/alerts.yml`, compiled in so the
//! devnet always evaluates the rules of this build) evaluated every second.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::DevnetError;
use crate::harness::ports::free_port;
use crate::harness::process::{ManagedProcess, ProcessSpec, RecordedProcess};
use crate::harness::tools::find_tool;
use crate::harness::wait::poll_until;

/// The alert rules every relay deployment should load.
pub const ALERT_RULES: &str = include_str!("../../../monitoring/prometheus/alerts.yml");

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One scrape target: a relay's HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// `operator` label (operator number, from 1).
    pub operator: String,
    /// `host:port` of the relay's HTTP API.
    pub address: String,
}

/// One alert as `/api/v1/alerts` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    /// Labels, including `alertname`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
}

impl Alert {
    /// The alert's name.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// A running Prometheus.
#[derive(Debug)]
pub struct PrometheusServer {
    process: ManagedProcess,
    port: u16,
    http: reqwest::Client,
}

/// The scrape configuration for `targets`.
pub fn config_yaml(targets: &[ScrapeTarget]) -> String {
    let mut out = String::from(
        "# Written by multibridge-devnet.\n\
         global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - alerts.yml\n\
         scrape_configs:\n  - job_name: multibridge\n    static_configs:\n",
    );
    for t in targets {
        out.push_str(&format!(
            "      - targets: ['{}']\n        labels:\n          operator: '{}'\n",
            t.address, t.operator
        ));
    }
    out
}

impl PrometheusServer {
    /// Write the config and rules under `dir/prometheus`, start the server on a free loopback
    /// port and wait until it is ready.
    pub async fn start(
        dir: &Path,
        log_dir: &Path,
        targets: &[ScrapeTarget],
    ) -> Result<Self, DevnetError> {
        let program = find_tool("prometheus")?;
        let home = dir.join("prometheus");
        let data = home.join("data");
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).map_err(|e| DevnetError::io(&data, e))?;
        for (name, text) in [
            ("prometheus.yml", config_yaml(targets)),
            ("alerts.yml", ALERT_RULES.to_owned()),
        ] {
            let path = home.join(name);
            std::fs::write(&path, text).map_err(|e| DevnetError::io(&path, e))?;
        }
        let port = free_port().map_err(DevnetError::Ports)?;
        let process = ManagedProcess::spawn(ProcessSpec {
            name: "prometheus".into(),
            program,
            args: vec![
                format!("--config.file={}", home.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", data.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--storage.tsdb.retention.time=1d".into(),
            ],
            envs: Vec::new(),
            log_path: log_dir.join("prometheus.log"),
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| DevnetError::Http(e.to_string()))?;
        let mut server = Self {
            process,
            port,
            http,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<(), DevnetError> {
        let url = format!("{}/-/ready", self.url());
        let http = self.http.clone();
        let process = &mut self.process;
        poll_until("prometheus", READY_TIMEOUT, || {
            let exited = (!process.is_running()).then(|| process.name().to_owned());
            let (http, url) = (http.clone(), url.clone());
            async move {
                if let Some(name) = exited {
                    return Err(DevnetError::Exited(name));
                }
                Ok(http
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()))
            }
        })
        .await
    }

    /// Its web UI and API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: reqwest::Url,
    ) -> Result<T, DevnetError> {
        self.http
            .get(url)
            .send()
            .await
            .map_err(|e| DevnetError::Http(e.to_string()))?
            .json()
            .await
            .map_err(|e| DevnetError::Http(e.to_string()))
    }

    fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<reqwest::Url, DevnetError> {
        reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url()), params)
            .map_err(|e| DevnetError::Http(e.to_string()))
    }

    /// Every pending or firing alert.
    pub async fn alerts(&self) -> Result<Vec<Alert>, DevnetError> {
        #[derive(Deserialize)]
        struct Data {
            alerts: Vec<Alert>,
        }
        #[derive(Deserialize)]
        struct Body {
            data: Data,
        }
        let body: Body = self.get_json(self.api("alerts", &[])?).await?;
        Ok(body.data.alerts)
    }

    /// Instant query; the `result` array of the answer.
    pub async fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, DevnetError> {
        let body: serde_json::Value = self
            .get_json(self.api("query", &[("query", expr)])?)
            .await?;
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Keep running after the handle is dropped (`devnet up`).
    pub fn detach(self) -> Option<RecordedProcess> {
        self.process.detach()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_scrapes_every_target_with_its_operator_label() {
        let yaml = config_yaml(&[
            ScrapeTarget {
                operator: "1".into(),
                address: "127.0.0.1:9001".into(),
            },
            ScrapeTarget {
                operator: "2".into(),
                address: "127.0.0.1:9002".into(),
            },
        ]);
        assert!(yaml.contains("rule_files:\n  - alerts.yml"));
        assert!(
            yaml.contains(
                "- targets: ['127.0.0.1:9002']\n        labels:\n          operator: '2'"
            )
        );
        assert!(ALERT_RULES.contains("MultibridgeLaneStalled"));
    }
}
