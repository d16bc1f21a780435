//! `locus prober`: measures one or more responders concurrently and reports round trips.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use locus_analysis::verify::bundle::NonceRecord;
use locus_prober::identity::ProberIdentity;
use locus_prober::once::{probe_once_then, EvidenceAsk, FetchedEvidence, TargetResult};
use locus_prober::{RoundConfig, SpkiPolicy};
use locus_proto::messages::Include;
use serde::Serialize;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct ProberArgs {
    /// `locus prober keygen`: make the prober's identity key (instead of measuring).
    #[command(subcommand)]
    command: Option<ProberCmd>,
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
    /// After the round, ask the (single) target for one evidence bundle bound to a fresh nonce,
    /// write it (CBOR) to FILE and the nonce to the ledger FILE.nonces.json (the format
    /// `locus verify evidence --nonce-ledger` reads; records are appended).
    #[arg(long, value_name = "FILE")]
    evidence_out: Option<PathBuf>,
    /// Evidence parts to ask for with --evidence-out.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tdx,tpm",
        requires = "evidence_out"
    )]
    evidence_parts: Vec<EvidencePart>,
    /// The issuer recorded in the nonce ledger and sent with the request; an evidence policy's
    /// `nonce.issuer` must name it.
    #[arg(long, default_value = "locus", requires = "evidence_out")]
    nonce_issuer: String,
    /// Sign the evidence request with this identity key (`locus prober keygen`), as a
    /// responder with `[access] evidence = "pinned"` requires.
    #[arg(long, value_name = "FILE", requires = "evidence_out")]
    key_file: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum ProberCmd {
    /// Write a new Ed25519 identity key (PKCS#8 PEM, mode 0600; never overwrites) and print its
    /// public key (base64 of the raw 32 bytes) for the monitor's and responders' configs.
    Keygen(KeygenArgs),
}

#[derive(Args)]
struct KeygenArgs {
    /// Key file to create (the prober config's `key_file`).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Print `{"key_file", "public_key", "key_id"}` as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EvidencePart {
    Tdx,
    Tpm,
}

/// Where `--evidence-out` went.
#[derive(Serialize)]
struct EvidenceResult {
    file: PathBuf,
    ledger: PathBuf,
    nonce: String,
}

/// One target's line of the report: the probe, and where `--evidence-out` went.
#[derive(Serialize)]
struct Reported {
    #[serde(flatten)]
    probe: TargetResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<EvidenceResult>,
}

pub(crate) fn run(args: ProberArgs) -> anyhow::Result<ExitCode> {
    if let Some(ProberCmd::Keygen(k)) = args.command {
        return keygen(&k);
    }
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
    let ask = match &args.evidence_out {
        None => None,
        Some(_) if args.targets.len() != 1 => bail!("--evidence-out takes exactly one --target"),
        Some(_) => Some(EvidenceAsk {
            include: Include {
                tdx: args.evidence_parts.contains(&EvidencePart::Tdx),
                tpm: args.evidence_parts.contains(&EvidencePart::Tpm),
                anchors: Vec::new(),
            },
            issuer: args.nonce_issuer.clone(),
            signer: match &args.key_file {
                Some(path) => Some(std::sync::Arc::new(ProberIdentity::load(path)?)),
                None => None,
            },
        }),
    };
    let cfg = RoundConfig {
        rate_hz: args.rate,
        count: args.count,
        window: args.window,
        timeout: Duration::from_millis(args.timeout_ms),
        keep_samples: true,
        spin: Duration::from_micros(args.spin_us),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let raw = rt.block_on(async {
        let tasks: Vec<_> = args
            .targets
            .iter()
            .zip(pins)
            .map(|(&addr, policy)| {
                let cfg = cfg.clone();
                let ask = ask.clone();
                let bind = args.bind;
                let connect_timeout = Duration::from_millis(args.connect_timeout_ms);
                tokio::spawn(async move {
                    probe_once_then(addr, bind, policy, connect_timeout, &cfg, ask.as_ref()).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await?);
        }
        anyhow::Ok(out)
    })?;
    let mut results = Vec::new();
    for (mut probe, fetched) in raw {
        let evidence = match (fetched, &args.evidence_out) {
            (Some(Ok(f)), Some(out)) => Some(write_evidence(out, &f, &args.nonce_issuer)?),
            (Some(Err(e)), _) => {
                probe.error = Some(format!("evidence: {e}"));
                None
            }
            _ => None,
        };
        results.push(Reported { probe, evidence });
    }
    let failed = results.iter().any(|r| r.probe.error.is_some());
    print_results(&results, args.json)?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[expect(clippy::print_stdout, reason = "the CLI prints the new public key")]
fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let id = ProberIdentity::generate();
    id.write_new(&args.out)?;
    let key = id.public_key();
    if args.json {
        let out = serde_json::json!({
            "key_file": args.out,
            "public_key": key.to_string(),
            "key_id": key.key_id(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{key}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the bundle (CBOR) to `out` and appends its nonce to `out.nonces.json`.
fn write_evidence(out: &Path, f: &FetchedEvidence, issuer: &str) -> anyhow::Result<EvidenceResult> {
    std::fs::write(out, f.bundle.to_cbor())
        .with_context(|| format!("writing {}", out.display()))?;
    let mut ledger_name = out.as_os_str().to_owned();
    ledger_name.push(".nonces.json");
    let ledger = PathBuf::from(ledger_name);
    let mut records: Vec<NonceRecord> = match std::fs::read(&ledger) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("existing nonce ledger {}", ledger.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", ledger.display())),
    };
    records.push(NonceRecord {
        nonce: f.nonce.to_vec(),
        issuer: issuer.to_string(),
        issued_at: f.issued_at,
        used: false,
    });
    std::fs::write(&ledger, serde_json::to_vec_pretty(&records)?)
        .with_context(|| format!("writing {}", ledger.display()))?;
    Ok(EvidenceResult {
        file: out.to_path_buf(),
        ledger,
        nonce: hex::encode(f.nonce),
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
fn print_results(results: &[Reported], json: bool) -> anyhow::Result<()> {
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
    for Reported { probe: r, evidence } in results {
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
            (Some(_), Some(e)) => println!("{:<22} error: {e}", r.target.to_string()),
            (None, Some(e)) => println!("{:<22} unreachable: {e}", r.target.to_string()),
            (None, None) => println!("{:<22} no result", r.target.to_string()),
        }
        if let Some(e) = evidence {
            println!(
                "{:<22} evidence bundle {} (nonce {} in {})",
                "",
                e.file.display(),
                e.nonce,
                e.ledger.display()
            );
        }
    }
    Ok(())
}
