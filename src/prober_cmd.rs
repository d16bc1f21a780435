//! `locus prober`: measures one or more responders concurrently and reports round trips.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use locus_prober::once::{probe_once, TargetResult};
use locus_prober::{RoundConfig, SpkiPolicy};

#[derive(Args)]
pub(crate) struct ProberArgs {
    /// Responder address; repeat for several targets (probed concurrently).
    #[arg(long = "target", required_unless_present = "config")]
    targets: Vec<SocketAddr>,
    /// Run continuously from a TOML file (targets, rate, storage, HTTP endpoints; see
    /// `config/prober.example.toml`) instead of measuring once.
    #[arg(long, conflicts_with = "targets")]
    config: Option<std::path::PathBuf>,
    /// Pin the responder's session key (SPKI DER, hex). One for all targets or one per target;
    /// without it the key is learned on first use and the report says so.
    #[arg(long = "pin-spki")]
    pins: Vec<String>,
    /// Challenges per second per target (0: as fast as the window allows).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Challenges per target.
    #[arg(long, default_value_t = 200)]
    count: u64,
    /// Most challenges in flight per target.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Milliseconds after which an unanswered challenge is lost.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Microseconds to keep polling for an answer before sleeping (waking an idle CPU costs tens
    /// of µs; worth it only for sub-millisecond paths).
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// Milliseconds to wait for the QUIC handshake before a target counts as unreachable.
    #[arg(long, default_value_t = 5000)]
    connect_timeout_ms: u64,
    /// Local address to send from.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: ProberArgs) -> anyhow::Result<ExitCode> {
    if let Some(config) = args.config {
        return crate::daemon_cmd::run(config);
    }
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a finite number ≥ 0");
    }
    let pins = pins_for(&args)?;
    let cfg = RoundConfig {
        rate_hz: args.rate,
        count: args.count,
        window: args.window,
        timeout: Duration::from_millis(args.timeout_ms),
        keep_samples: true,
        spin: Duration::from_micros(args.spin_us),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let results = rt.block_on(async {
        let tasks: Vec<_> = args
            .targets
            .iter()
            .zip(pins)
            .map(|(&addr, policy)| {
                let cfg = cfg.clone();
                let bind = args.bind;
                let connect_timeout = Duration::from_millis(args.connect_timeout_ms);
                tokio::spawn(
                    async move { probe_once(addr, bind, policy, connect_timeout, &cfg).await },
                )
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await?);
        }
        anyhow::Ok(out)
    })?;
    let failed = results.iter().any(|r| r.error.is_some());
    print_results(&results, args.json)?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn pins_for(args: &ProberArgs) -> anyhow::Result<Vec<SpkiPolicy>> {
    let parse = |h: &String| -> anyhow::Result<SpkiPolicy> {
        Ok(SpkiPolicy::Pinned(
            hex::decode(h.trim()).with_context(|| format!("--pin-spki {h:?} is not hex"))?,
        ))
    };
    match args.pins.len() {
        0 => Ok(vec![SpkiPolicy::TrustOnFirstUse; args.targets.len()]),
        1 => Ok(vec![parse(&args.pins[0])?; args.targets.len()]),
        n if n == args.targets.len() => args.pins.iter().map(parse).collect(),
        n => bail!(
            "{n} --pin-spki values for {} targets: give one, or one per target",
            args.targets.len()
        ),
    }
}

#[expect(clippy::print_stdout, reason = "the CLI prints its report")]
fn print_results(results: &[TargetResult], json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "targets": results }))?
        );
        return Ok(());
    }
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>5} {:>5} {:>4} {:>10}  key",
        "target", "min µs", "p50", "p90", "p99", "max", "sent", "lost", "ooo", "viol", "transcript"
    );
    for r in results {
        match (&r.round, &r.error) {
            (Some(round), None) => println!(
                "{:<22} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>6} {:>5} {:>5} {:>4} {:>10}  {}",
                r.target.to_string(),
                round.rtt.min_us,
                round.rtt.p50_us,
                round.rtt.p90_us,
                round.rtt.p99_us,
                round.rtt.max_us,
                round.sent,
                round.lost,
                round.out_of_order,
                round.violations,
                match r.transcript_verified {
                    Some(true) => "verified",
                    Some(false) => "MISMATCH",
                    None => "-",
                },
                r.key
            ),
            (_, Some(e)) => println!("{:<22} unreachable: {e}", r.target.to_string()),
            (None, None) => println!("{:<22} no result", r.target.to_string()),
        }
    }
    Ok(())
}
