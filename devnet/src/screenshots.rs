//! `multibridge-devnet screenshots`: a devnet with traffic both ways, a transfer stuck on the
//! destination's liquidity and a user's claim for it, and a PNG of each dashboard page taken in
//! headless Chromium (the pictures docs/dashboard.md shows).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::utils::parse_ether;
use alloy::primitives::{Address, U256};
use multibridge_contracts::{ChainRole, Lane};

use crate::error::DevnetError;
use crate::harness::browser::Browser;
use crate::harness::driver::Driver;
use crate::harness::invariants::wait_all_handled;
use crate::{Devnet, DevnetOptions};

/// Poll `check` every 300 ms until it is true, at most `timeout`.
async fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<bool, DevnetError>,
) -> Result<(), DevnetError> {
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DevnetError::NotReady {
                component: what.to_owned(),
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Run the scenario in `dir` and write `overview.png`, `services.png`, `claims.png` and
/// `tracker.png` to `out`; the files written.
pub async fn take(dir: &Path, out: &Path) -> Result<Vec<PathBuf>, DevnetError> {
    let devnet = Devnet::start(DevnetOptions {
        relays: true,
        replicas: 2,
        ..DevnetOptions::new(dir)
    })
    .await?;
    let driver = Driver::new(devnet.manifest());
    // Transfers one after the other (the timeline shows them arrive), both ways.
    for (lane, user, to, amount, count) in [
        (Lane::MainToService, 0, 0x61, "0.25", 8u64),
        (Lane::ServiceToMain, 1, 0x62, "0.1", 5),
    ] {
        for i in 0..count {
            driver
                .request_native(
                    lane,
                    user,
                    Address::repeat_byte(to),
                    parse_ether(amount).unwrap_or_default() + U256::from(i),
                )
                .await?;
        }
        wait_all_handled(&driver, lane, 0..count, Duration::from_secs(90)).await?;
    }
    let bridge = driver.chain(ChainRole::Service).contracts.bridge;
    let liquidity = driver.native_balance(ChainRole::Service, bridge).await?;
    let stuck = driver
        .request_native(
            Lane::MainToService,
            2,
            Address::repeat_byte(0x63),
            liquidity + parse_ether("1").unwrap_or_default(),
        )
        .await?;
    // The user claims it with the CLI (it stays stuck: following it times out).
    let user_key = format!("0x{}", alloy::hex::encode(driver.user(2)?.to_bytes()));
    let _ = tokio::process::Command::new(crate::harness::tools::relay_binary()?)
        .args(["claim", "--config"])
        .arg(devnet.operator_config_path(0))
        .args(["--lane", "main-to-service", "--nonce"])
        .arg(stuck.nonce.to_string())
        .args(["--key-env", "SCREENSHOT_USER_KEY", "--timeout", "2"])
        .env("SCREENSHOT_USER_KEY", user_key)
        .output()
        .await
        .map_err(|source| DevnetError::Io {
            path: dir.to_owned(),
            source,
        })?;
    // The replica of operator 1 that leads main-to-service: the one whose page knows why the
    // stuck transfer waits (the registry points users there too).
    let mut leading = None;
    wait_for(
        "a leader of main-to-service",
        Duration::from_secs(30),
        async || {
            leading = crate::harness::ha::leading_replica(&devnet, 0, Lane::MainToService).await;
            Ok(leading.is_some())
        },
    )
    .await?;
    let port = leading
        .and_then(|r| devnet.replica_http_ports.first()?.get(r).copied())
        .ok_or_else(|| DevnetError::Invalid("operator 1 has no leading replica".into()))?;
    let base = format!("http://127.0.0.1:{port}");
    let browser = Browser::start(dir, 1400, 1700).await?;
    let mut written = Vec::new();
    // Let the timeline gather a minute of samples.
    browser.goto(&format!("{base}/#/overview")).await?;
    tokio::time::sleep(Duration::from_secs(60)).await;
    wait_for("the overview", Duration::from_secs(60), async || {
        Ok(!browser
            .texts("[data-lane=\"main-to-service\"] tr[data-reason]")
            .await?
            .is_empty())
    })
    .await?;
    for (page, ready) in [
        (
            "overview",
            "[data-lane=\"main-to-service\"] [data-k=\"request_nonce\"]",
        ),
        ("services", "#services-table"),
        ("claims", "#claims-table"),
    ] {
        browser.goto(&format!("{base}/#/{page}")).await?;
        wait_for(page, Duration::from_secs(60), async || {
            Ok(browser.text(ready).await?.is_some())
        })
        .await?;
        let path = out.join(format!("{page}.png"));
        browser.screenshot(&path).await?;
        written.push(path);
    }
    browser
        .goto(&format!("{base}/#/track?q={}", stuck.srcTxHash))
        .await?;
    wait_for("the tracker", Duration::from_secs(60), async || {
        Ok(browser.text(".tracked [data-k=\"state\"]").await?.is_some())
    })
    .await?;
    let path = out.join("tracker.png");
    browser.screenshot(&path).await?;
    written.push(path);
    browser.close().await?;
    Ok(written)
}
