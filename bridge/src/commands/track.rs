//! `multibridge track`: where a transfer stands, read from both chains — its state, why it
//! waits, what happens next and when, and the one command its user can run (issue 53). The same
//! answer as the dashboard's tracker (`GET /ui/api/track`), without a relay's store: the reasons
//! the relays noted are theirs; this reads what the destination answers.

use std::path::PathBuf;

use crate::chain::{ChainPair, RetryPolicy};
use crate::config::Config;
use crate::dashboard::tracker::{Answer, TrackContext, TrackParams, Tracked, parse, track};

/// `multibridge track`.
#[derive(clap::Args)]
pub struct Args {
    /// A config naming both chains and bridges (a relay config works).
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
    /// A source transaction hash, an address (its recent transfers), or `lane:nonce`
    /// (`main-to-service:4`).
    target: String,
    /// Print the answer as JSON (the dashboard's `/api/track` answer).
    #[arg(long)]
    json: bool,
}

/// The tracker's question for `target`.
fn params(target: &str) -> TrackParams {
    match target.split_once(':') {
        Some((lane, nonce)) => TrackParams {
            q: None,
            lane: Some(lane.to_owned()),
            nonce: Some(nonce.to_owned()),
        },
        None => TrackParams {
            q: Some(target.to_owned()),
            ..TrackParams::default()
        },
    }
}

/// Run `multibridge track`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let query = parse(&params(&args.target))?;
    let chains = ChainPair::for_command(&config.chains, RetryPolicy::interactive())?;
    let context = TrackContext {
        config: &config,
        chains: &chains,
        store: None,
        etcd: None,
        replica: "",
    };
    let answer = track(&context, query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    match answer {
        Answer::Transfer(t) => print!("{}", human(&t, crate::store::unix_now())),
        Answer::Address { address, requests } => {
            println!("recent transfers from or to {address}:");
            for r in requests {
                println!(
                    "  {}:{}  {}  {} → {}  {}",
                    r.lane,
                    r.nonce,
                    if r.handled { "closed " } else { "pending" },
                    r.from,
                    r.to,
                    r.amount
                );
            }
        }
    }
    Ok(())
}

/// `t` for a person.
fn human(t: &Tracked, now: u64) -> String {
    use std::fmt::Write as _;
    let r = &t.request;
    let kind = match r.kind {
        Some(multibridge_contracts::AssetKind::Native) => "native",
        Some(multibridge_contracts::AssetKind::Erc20) => "erc20",
        Some(multibridge_contracts::AssetKind::Erc721) => "erc721",
        None => "?",
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}:{} — {}", t.lane, t.nonce, t.outlook.state);
    let _ = writeln!(
        out,
        "  {} {kind}{} from {} to {} · source tx {} (block {}, {} s ago)",
        r.amount,
        if r.token.is_zero() {
            String::new()
        } else {
            format!(" {}", r.token)
        },
        r.from,
        r.to,
        r.tx,
        r.block,
        t.age_secs
    );
    let voted = t.votes.iter().filter(|v| v.voted).count();
    let _ = writeln!(out, "  votes: {voted} of {} needed", t.threshold);
    if let Some(reason) = &t.reason {
        let _ = writeln!(
            out,
            "  why: {}{}",
            reason.name,
            reason
                .detail
                .as_ref()
                .map(|d| format!(" — {d}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "  next: {}", t.outlook.next);
    if let Some(eta) = t.outlook.eta {
        let _ = writeln!(
            out,
            "  expected: unix {eta} (in {} s)",
            eta.saturating_sub(now)
        );
    }
    if let Some(command) = &t.outlook.command {
        let _ = writeln!(out, "  run: {command}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_lane_and_nonce_or_a_hash_or_an_address() {
        let p = params("main-to-service:4");
        assert_eq!(
            (p.lane.as_deref(), p.nonce.as_deref(), p.q),
            (Some("main-to-service"), Some("4"), None)
        );
        let p = params("0xabc");
        assert_eq!(p.q.as_deref(), Some("0xabc"));
        assert!(parse(&params("sideways:4")).is_err());
    }
}
