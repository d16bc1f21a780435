//! `locus verify evidence`: verify a stored evidence bundle under a policy, offline.
//!
//! Exit 0 when valid; 1 when invalid, naming every failed check; 2 when the bundle, policy,
//! nonce ledger or a file the policy names cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use locus_analysis::verify::bundle::{EvidenceReport, Outcome};
use locus_fleet::time::{parse_at, unix_now};
use locus_fleet::verifier::{read, BundleVerifier};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The bundle (CBOR, as the responder sends it).
    bundle: PathBuf,
    /// Policy TOML: trust roots, reference values, which checks are required. Paths in it are
    /// relative to the policy file.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// This verifier's nonce ledger: JSON list of {nonce (hex), issuer, issued_at, used}.
    /// Without it the `nonce` check fails as foreign.
    #[arg(long, value_name = "FILE")]
    nonce_ledger: Option<PathBuf>,
    /// The QUIC peer's SubjectPublicKeyInfo (DER) the bundle must have been produced for.
    #[arg(long, value_name = "FILE")]
    peer_spki: Option<PathBuf>,
    /// Verify as of this time: RFC 3339 or unix seconds (default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bundle = read(&args.bundle, "bundle")?;
    // `--nonce-ledger` wins; otherwise the ledger the policy names, relative to it.
    let verifier = BundleVerifier::load(&args.policy, args.nonce_ledger.as_deref())?;
    let now_unix = match &args.at {
        Some(t) => parse_at(t)?,
        None => unix_now()?,
    };
    let peer_spki = match &args.peer_spki {
        None => None,
        Some(p) => Some(read(p, "peer SPKI")?),
    };
    let report = verifier.verify_bytes(&bundle, now_unix, peer_spki);
    print_report(&report, args.json)?;
    Ok(if report.valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[expect(clippy::print_stdout, reason = "the report is the command's output")]
fn print_report(report: &EvidenceReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
        return Ok(());
    }
    for c in &report.checks {
        let (status, detail) = match &c.outcome {
            Outcome::Pass => ("pass", String::new()),
            Outcome::Fail(e) => ("FAIL", format!(": {e}")),
            Outcome::Skipped(r) if c.invalidates() => ("MISSING", format!(": {r}")),
            Outcome::Skipped(r) => ("skip", format!(": {r}")),
        };
        println!("{status:7} {}{detail}", c.check);
    }
    if report.valid() {
        println!("valid evidence bundle");
    } else {
        let failed: Vec<&str> = report.failed().iter().map(|c| c.name()).collect();
        println!("invalid: failed checks: {}", failed.join(", "));
    }
    Ok(())
}
