//! A real headless browser for the dashboard's tests and screenshots: Debian's Chromium driven
//! through chromedriver (WebDriver) with fantoccini. Started on a free loopback port with a
//! fresh profile, stopped on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::error::DevnetError;
use crate::harness::process::{ManagedProcess, ProcessSpec};
use crate::harness::tools::find_tool;

/// Chromium flags for a sandboxed, offline, root-run headless browser (background networking
/// off: this machine's closed network refuses Chromium's own connections).
const CHROMIUM_ARGS: [&str; 10] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
];

fn browser_error(e: impl std::fmt::Display) -> DevnetError {
    DevnetError::Browser(e.to_string())
}

/// The Chromium binary: `$MULTIBRIDGE_CHROMIUM`, else `chromium` on the tools path.
pub fn chromium() -> Result<PathBuf, DevnetError> {
    if let Some(path) = std::env::var_os("MULTIBRIDGE_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    Ok(find_tool("chromium")?)
}

/// A headless Chromium session.
pub struct Browser {
    client: Client,
    _driver: ManagedProcess,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver and a Chromium session of `width`×`height`, logging into `log_dir`.
    pub async fn start(log_dir: &Path, width: u32, height: u32) -> Result<Self, DevnetError> {
        let driver_bin = find_tool("chromedriver")?;
        let chromium = chromium()?;
        let port = crate::harness::ports::free_port().map_err(DevnetError::Ports)?;
        let driver = ManagedProcess::spawn(ProcessSpec {
            name: "chromedriver".into(),
            program: driver_bin,
            args: vec![format!("--port={port}"), "--allowed-ips=127.0.0.1".into()],
            envs: Vec::new(),
            log_path: log_dir.join("chromedriver.log"),
        })?;
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(format!("{url}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(DevnetError::NotReady {
                    component: "chromedriver".into(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().map_err(|source| DevnetError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--window-size={width},{height}"));
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .map_err(browser_error)?;
        Ok(Self {
            client,
            _driver: driver,
            _profile: profile,
        })
    }

    /// The WebDriver client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Open `url`.
    pub async fn goto(&self, url: &str) -> Result<(), DevnetError> {
        self.client.goto(url).await.map_err(browser_error)
    }

    /// The text of the first element matching `css` (`None`: no such element now).
    pub async fn text(&self, css: &str) -> Result<Option<String>, DevnetError> {
        Ok(self.texts(css).await?.into_iter().next())
    }

    /// The rendered texts of every element matching `css`, read in one script (the page
    /// redraws itself: element handles would go stale between two WebDriver calls).
    pub async fn texts(&self, css: &str) -> Result<Vec<String>, DevnetError> {
        let value = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim());",
                vec![serde_json::Value::from(css)],
            )
            .await
            .map_err(browser_error)?;
        Ok(value
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Replace the value of the input matching `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) -> Result<(), DevnetError> {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .map_err(browser_error)?;
        element.clear().await.map_err(browser_error)?;
        element.send_keys(text).await.map_err(browser_error)
    }

    /// Choose `value` in the select matching `css`.
    pub async fn select(&self, css: &str, value: &str) -> Result<(), DevnetError> {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .map_err(browser_error)?;
        element.select_by_value(value).await.map_err(browser_error)
    }

    /// Click the element matching `css`.
    pub async fn click(&self, css: &str) -> Result<(), DevnetError> {
        self.client
            .find(Locator::Css(css))
            .await
            .map_err(browser_error)?
            .click()
            .await
            .map_err(browser_error)
    }

    /// Run `script` (an async function body calling `arguments[arguments.length - 1]` with its
    /// result) in the page.
    pub async fn run_async(
        &self,
        script: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<serde_json::Value, DevnetError> {
        self.client
            .execute_async(script, args)
            .await
            .map_err(browser_error)
    }

    /// Save a PNG of the page to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<(), DevnetError> {
        let png = self.client.screenshot().await.map_err(browser_error)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| DevnetError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(path, png).map_err(|source| DevnetError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// End the session (the driver stops on drop).
    pub async fn close(self) -> Result<(), DevnetError> {
        self.client.close().await.map_err(browser_error)
    }
}
