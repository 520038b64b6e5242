//! `demo`: a devnet, transfers both ways followed to their handles, conservation checked.

use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, utils::format_ether, utils::parse_ether};
use anyhow::{Result, bail};
use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::{Devnet, Driver};

use crate::up::{UpArgs, print_summary, refuse_if_running};

/// Start a devnet with one relay per operator, send transfers both ways and follow each to its
/// handle on the other chain.
pub async fn demo(dir: &Path, args: &UpArgs, transfers: u32) -> Result<()> {
    refuse_if_running(dir)?;
    if args.no_relays {
        bail!("the demo needs the relays; drop --no-relays");
    }
    println!(
        "starting devnet (anvil x{}, etcd x{}, {} relays) ...",
        args.service_chains
            .saturating_add(1)
            .saturating_add(usize::from(args.nested)),
        args.etcd_members,
        args.operators
    );
    let devnet = Devnet::start(args.options(dir.to_owned())).await?;
    let manifest = devnet.manifest();
    print_summary(&manifest);
    // A hub devnet: the same transfers on every pair, each pair's relays in the same processes.
    let pairs = manifest.drivers(&Devnet::first_pair_name());
    let mut latencies = Vec::new();
    for (name, driver) in &pairs {
        if pairs.len() > 1 {
            println!("\npair {name}");
        }
        latencies.extend(demo_pair(driver, dir, transfers).await?);
    }
    latencies.sort_by(f64::total_cmp);
    let median = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    println!(
        "\n{} transfers on {} pair(s), each handled exactly once by the relays; median latency {median:.2}s",
        latencies.len(),
        pairs.len()
    );
    drop(devnet);
    println!("devnet stopped");
    Ok(())
}

/// The demo's transfers on one pair (both lanes, native and token), each waited for and
/// checked handled once; then the pair's token conservation. Returns the latencies.
async fn demo_pair(driver: &Driver, dir: &Path, transfers: u32) -> Result<Vec<f64>> {
    let amount_native = parse_ether("1.5")?;
    // main -> service pays user 0 on the service chain, so it holds wrapped tokens to send back;
    // service -> main pays a fresh address. Less comes back than went out.
    let user0 = driver.user(0)?.address();
    let recipient_of = |lane: Lane| match lane {
        Lane::MainToService => user0,
        Lane::ServiceToMain => Address::repeat_byte(0xd0),
    };
    let amount_token_of = |lane: Lane| match lane {
        Lane::MainToService => parse_ether("250"),
        Lane::ServiceToMain => parse_ether("100"),
    };
    println!(
        "\n{:<16} {:<6} {:>5} {:>8} {:>9}",
        "lane", "asset", "nonce", "amount", "latency"
    );
    let mut latencies = Vec::new();
    for lane in [Lane::MainToService, Lane::ServiceToMain] {
        for _ in 0..transfers {
            for erc20 in [false, true] {
                let request = if erc20 {
                    driver
                        .request_erc20(lane, 0, recipient_of(lane), amount_token_of(lane)?)
                        .await?
                } else {
                    driver
                        .request_native(lane, 0, recipient_of(lane), amount_native)
                        .await?
                };
                // Latency from the request's receipt to the handle seen on the other chain.
                let started = Instant::now();
                let deadline = started + Duration::from_secs(60);
                loop {
                    match driver.handle_count(lane, request.nonce).await? {
                        0 if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                        0 => bail!(
                            "{lane} nonce {} not handled within 60 s; see the relay logs in {}",
                            request.nonce,
                            dir.join("logs").display()
                        ),
                        1 => break,
                        n => bail!("{lane} nonce {} handled {n} times", request.nonce),
                    }
                }
                let latency = started.elapsed().as_secs_f64();
                latencies.push(latency);
                println!(
                    "{:<16} {:<6} {:>5} {:>8} {:>8.2}s",
                    lane.as_str(),
                    if erc20 { "MBT" } else { "native" },
                    request.nonce,
                    ether(request.amount),
                    latency
                );
            }
        }
    }
    let locked = driver
        .token_balance(ChainRole::Main, driver.manifest().main.contracts.bridge)
        .await?;
    let wrapped = driver.token_supply(ChainRole::Service).await?;
    println!(
        "conservation MBT: locked on main {} = minted on service {} -> {}",
        ether(locked),
        ether(wrapped),
        if locked == wrapped { "ok" } else { "BROKEN" }
    );
    if locked != wrapped {
        bail!("conservation broken");
    }
    Ok(latencies)
}

/// `1.5` rather than `1.500000000000000000`.
fn ether(amount: alloy::primitives::U256) -> String {
    let s = format_ether(amount);
    match s.split_once('.') {
        Some((whole, frac)) if frac.trim_end_matches('0').is_empty() => whole.to_owned(),
        Some((whole, frac)) => format!("{whole}.{}", frac.trim_end_matches('0')),
        None => s,
    }
}
