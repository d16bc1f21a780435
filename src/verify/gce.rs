//! `locus verify gce-attestation`: verify a GCE vTPM attestation (go-tpm-tools
//! `attest.Attestation` protobuf) offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use locus_analysis::verify::cloud::{self, gce};

use locus_lab::poe::read_certificates;

use locus_analysis::verify::cloud::CheckOutcome;

use super::cloud_report::{verify_file, Verified};

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

/// `--roots` values: built-in names first, then files.
fn roots(values: &[String]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for v in values {
        match cloud::roots::named(v) {
            Some(set) => out.extend(set),
            None if Path::new(v).exists() => out.extend(read_certificates(Path::new(v))?),
            None => bail!(
                "--roots {v}: neither a file nor a built-in set ({})",
                cloud::roots::NAMES.join(", ")
            ),
        }
    }
    Ok(out)
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let roots = roots(&args.roots)?;
    let nonce = match (&args.nonce, args.allow_no_nonce) {
        (Some(h), _) => Some(hex::decode(h.trim()).context("--nonce is not hex")?),
        (None, true) => None,
        // No nonce and no permission: the verifier reports NonceRequired.
        (None, false) => Some(Vec::new()),
    };
    verify_file(
        &args.attestation,
        "attestation",
        args.at.as_deref(),
        args.json,
        |bytes, now| gce::verify_attestation(bytes, nonce.as_deref(), &roots, now),
    )
}

impl Verified for gce::GceReport {
    const WHAT: &'static str = "GCE attestation";
    const WIDTH: usize = 20;
    type Error = gce::GceError;

    fn outcome(
        &self,
    ) -> (
        bool,
        &[locus_analysis::check::GceCheck],
        &[CheckOutcome<Self::Error>],
    ) {
        (self.valid, &self.failed_checks, self.checks.all())
    }

    #[expect(clippy::print_stdout, reason = "the verdict is the command's output")]
    fn print_details(&self) {
        if let Some(id) = &self.identity {
            let trust = if self.valid { "" } else { " (UNVERIFIED)" };
            println!("zone:          {}{trust}", id.zone);
            println!("project:       {} ({})", id.project_id, id.project_number);
            println!("instance:      {} ({})", id.instance_name, id.instance_id);
        }
        for b in &self.banks {
            for (i, v) in &b.pcrs {
                println!("pcr{i:<2} {:<7} {v}", b.hash);
            }
        }
    }
}
