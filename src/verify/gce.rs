//! `locus verify gce-attestation`: verify a GCE vTPM attestation (go-tpm-tools
//! `attest.Attestation` protobuf) offline.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use locus_analysis::verify::cloud::{self, gce};

use super::cloud_report::{print_checks, print_json};

use super::at::parse_at;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The attestation: a serialized `attest.Attestation` protobuf.
    attestation: PathBuf,
    /// The nonce (hex) every quote's extraData must equal.
    #[arg(long, value_name = "HEX", conflicts_with = "allow_no_nonce")]
    nonce: Option<String>,
    /// Trust anchors and intermediates: certificate files (DER or PEM, several per PEM file)
    /// or a built-in set by name (`gce`, `gce-legacy`, `gce-cas`).
    #[arg(long, value_name = "FILE|NAME", required = true, num_args = 1..)]
    roots: Vec<String>,
    /// Accept quotes without a verifier nonce (archived evidence; nothing shows it is fresh).
    #[arg(long)]
    allow_no_nonce: bool,
    /// Verify as of this time: RFC 3339 or unix seconds (default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Reads at most one byte more than the verifiers accept, so an oversized file is reported
/// by the `Oversized` check without being read whole.
pub(super) fn read_capped(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let f =
        std::fs::File::open(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let mut out = Vec::new();
    f.take(cloud::MAX_EVIDENCE_LEN as u64 + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    Ok(out)
}

/// Certificates (DER) from a file: PEM (every CERTIFICATE block) or one DER certificate.
fn certificates(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let raw =
        std::fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    if raw.trim_ascii_start().starts_with(b"-----BEGIN") {
        let blocks = pem::parse_many(&raw).with_context(|| format!("PEM in {}", path.display()))?;
        let certs: Vec<Vec<u8>> = blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(pem::Pem::into_contents)
            .collect();
        if certs.is_empty() {
            bail!("no CERTIFICATE in {}", path.display());
        }
        return Ok(certs);
    }
    Ok(vec![raw])
}

/// `--roots` values: built-in names first, then files.
pub(super) fn roots(values: &[String]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for v in values {
        match cloud::roots::named(v) {
            Some(set) => out.extend(set),
            None if Path::new(v).exists() => out.extend(certificates(Path::new(v))?),
            None => bail!(
                "--roots {v}: neither a file nor a built-in set ({})",
                cloud::roots::NAMES.join(", ")
            ),
        }
    }
    Ok(out)
}

pub(super) fn now(at: Option<&str>) -> anyhow::Result<u64> {
    match at {
        Some(s) => parse_at(s),
        None => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_secs()),
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bytes = read_capped(&args.attestation, "attestation")?;
    let roots = roots(&args.roots)?;
    let nonce = match (&args.nonce, args.allow_no_nonce) {
        (Some(h), _) => Some(hex::decode(h.trim()).context("--nonce is not hex")?),
        (None, true) => None,
        // No nonce and no permission: the verifier reports NonceRequired.
        (None, false) => Some(Vec::new()),
    };
    let now = now(args.at.as_deref())?;
    let report = gce::verify_attestation(&bytes, nonce.as_deref(), &roots, now);
    print_report(&report, args.json, now)?;
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[expect(clippy::print_stdout, reason = "the verdict is the command's output")]
fn print_report(report: &gce::GceReport, json: bool, now: u64) -> anyhow::Result<()> {
    if json {
        return print_json(report, now);
    }
    print_checks(
        "GCE attestation",
        report.valid,
        &report.failed_checks,
        report.checks.all(),
        20,
    );
    if let Some(id) = &report.identity {
        let trust = if report.valid { "" } else { " (UNVERIFIED)" };
        println!("zone:          {}{trust}", id.zone);
        println!("project:       {} ({})", id.project_id, id.project_number);
        println!("instance:      {} ({})", id.instance_name, id.instance_id);
    }
    for b in &report.banks {
        for (i, v) in &b.pcrs {
            println!("pcr{i:<2} {:<7} {v}", b.hash);
        }
    }
    Ok(())
}
