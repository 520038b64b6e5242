//! `experiment`: the seed papers' experiments on fresh devnets.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;
use multibridge_devnet::harness::tools::workspace_root;

#[derive(Subcommand, Clone)]
pub enum ExperimentCommand {
    /// Table 2 of seed 001: one replica's network (RPCs + etcd) cut for 20 s every 60/30/25 s,
    /// a random replica or the leader, while users send 2 requests/s.
    NetworkCut {
        /// Minutes per row (the paper: 10).
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Cut periods, seconds.
        #[arg(long, value_delimiter = ',', default_value = "60,30,25")]
        periods: Vec<u64>,
        /// Cut length, seconds.
        #[arg(long, default_value_t = 20.0)]
        cut_secs: f64,
        /// Which tests.
        #[arg(long, value_delimiter = ',', default_value = "random,leader")]
        tests: Vec<multibridge_devnet::experiment::network_cut::Target>,
    },
    /// Table 4 of seed 003: the leader paused 15 s at random intervals of 30–120 s while 5 users
    /// send 2 requests/s each.
    LeaderPause {
        /// Length, minutes (the paper: 83).
        #[arg(long, default_value_t = 83.0)]
        minutes: f64,
        /// Downtime bound, seconds.
        #[arg(long, default_value_t = 10.0)]
        bound: f64,
    },
    /// Seed 004's HA test: 4 operators, threshold 1, all relays stopped and started again and
    /// again while value moves both ways.
    KlaytnHa {
        /// Stop/start rounds.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Seconds the relays run between stops.
        #[arg(long, default_value_t = 30.0)]
        up_secs: f64,
        /// Seconds they stay down.
        #[arg(long, default_value_t = 10.0)]
        down_secs: f64,
    },
    /// ≥ 10,000 transfers under continuous mixed faults, verified from the chains.
    Soak {
        /// Transfers to send.
        #[arg(long, default_value_t = 10_000)]
        transfers: usize,
        /// Users sending (about 1.2 requests/s each).
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Downtime bound, seconds.
        #[arg(long, default_value_t = 10.0)]
        bound: f64,
        /// Vote in attested batches instead of votes.
        #[arg(long)]
        attested: bool,
        /// Seconds between one fault's end and the next one's start, `MIN,MAX` (the suite's
        /// short soak: `1,2`).
        #[arg(long, default_value = "10,20", value_parser = parse_gap)]
        gap: (f64, f64),
        /// Scale every fault's length (the suite's short soak: 0.4).
        #[arg(long, default_value_t = 1.0)]
        fault_scale: f64,
    },
}

/// `MIN,MAX` seconds.
fn parse_gap(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("`{s}`: expected MIN,MAX seconds, e.g. 10,20"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("`{v}`: not a number of seconds"))
    };
    let (min, max) = (parse(a)?, parse(b)?);
    if min > max {
        return Err(format!("`{s}`: MIN is above MAX"));
    }
    Ok((min, max))
}

pub async fn experiment(
    dir: &Path,
    seed: Option<u64>,
    out: &Path,
    which: ExperimentCommand,
) -> Result<()> {
    use multibridge_devnet::experiment::{
        Common, build_profile, fresh_seed, klaytn_ha, leader_pause, network_cut, soak,
    };
    let common = Common {
        dir: dir.join("experiment"),
        out: if out.is_absolute() {
            out.to_owned()
        } else {
            workspace_root().join(out)
        },
        seed: seed.unwrap_or_else(fresh_seed),
    };
    eprintln!(
        "seed {} (repeat with --seed {}), {} build{}",
        common.seed,
        common.seed,
        build_profile(),
        if build_profile() == "debug" {
            ": the figures are not the relay's; use cargo run --release"
        } else {
            ""
        }
    );
    let (name, table, files) = match which {
        ExperimentCommand::NetworkCut {
            minutes,
            periods,
            cut_secs,
            tests,
        } => {
            let settings = network_cut::Settings {
                minutes,
                periods,
                cut_secs,
                targets: tests,
                ..Default::default()
            };
            let report = network_cut::run(&common, &settings).await?;
            let pictures = network_cut::pictures(&report);
            let files = common.write("network-cut", &report, &pictures)?;
            ("network-cut", network_cut::render(&report), files)
        }
        ExperimentCommand::LeaderPause { minutes, bound } => {
            let settings = leader_pause::Settings {
                minutes,
                bound,
                ..Default::default()
            };
            let report = leader_pause::run(&common, &settings).await?;
            let svg = report.run.picture(
                format!("leader paused 15 s every 30–120 s (seed {})", report.seed),
                report.bound,
            );
            let files = common.write("leader-pause", &report, &[(String::new(), svg)])?;
            ("leader-pause", leader_pause::render(&report), files)
        }
        ExperimentCommand::KlaytnHa {
            rounds,
            up_secs,
            down_secs,
        } => {
            let settings = klaytn_ha::Settings {
                rounds,
                up_secs,
                down_secs,
                ..Default::default()
            };
            let report = klaytn_ha::run(&common, &settings).await?;
            let svg = report.run.picture(
                format!(
                    "4 operators, threshold 1, all relays restarted (seed {})",
                    report.seed
                ),
                30.0,
            );
            let files = common.write("klaytn-ha", &report, &[(String::new(), svg)])?;
            ("klaytn-ha", klaytn_ha::render(&report), files)
        }
        ExperimentCommand::Soak {
            transfers,
            users,
            bound,
            attested,
            gap,
            fault_scale,
        } => {
            let settings = soak::Settings {
                transfers,
                users,
                bound,
                gap,
                fault_scale,
                mode: if attested {
                    multibridge_config::VotingMode::Attestations
                } else {
                    multibridge_config::VotingMode::Votes
                },
                ..Default::default()
            };
            let report = soak::run(&common, &settings).await?;
            let svg = report.run.picture(
                format!(
                    "soak, {} transfers, mixed faults (seed {})",
                    report.requests, report.seed
                ),
                report.bound,
            );
            let files = common.write("soak", &report, &[(String::new(), svg)])?;
            ("soak", soak::render(&report), files)
        }
    };
    println!("{table}");
    println!("{name}: the report and its timeline, then the pictures:");
    for file in files {
        println!("  {}", file.display());
    }
    Ok(())
}
