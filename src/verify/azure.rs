//! `locus verify az-tdx-vtpm`: verify Azure TDX confidential-VM evidence (TD quote, HCL report,
//! vTPM quote) offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use locus_analysis::verify::cloud::azure;
use locus_analysis::verify::tdx;

use locus_analysis::verify::cloud::CheckOutcome;

use super::cloud_report::{verify_file, Verified};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("the_nonce").required(true).args(["nonce", "nonce_hex"])))]
pub(crate) struct Args {
    /// The evidence JSON (trustee's v1 or legacy v0 encoding).
    evidence: PathBuf,
    /// The nonce as text (its UTF-8 bytes must be the vTPM quote's extraData).
    #[arg(long, value_name = "TEXT")]
    nonce: Option<String>,
    /// The nonce as hex.
    #[arg(long, value_name = "HEX")]
    nonce_hex: Option<String>,
    /// TDX collateral in dcap-qvl's JSON form; without it the TCB status is "Unknown".
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    #[command(flatten)]
    accept: super::tdx::AcceptTcb,
    /// Verify as of this time: RFC 3339 or unix seconds (default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let nonce = match (&args.nonce, &args.nonce_hex) {
        (Some(t), _) => t.as_bytes().to_vec(),
        (None, Some(h)) => hex::decode(h.trim()).context("--nonce-hex is not hex")?,
        (None, None) => anyhow::bail!("--nonce or --nonce-hex is required"),
    };
    let collateral = match &args.collateral {
        Some(p) => {
            let raw =
                std::fs::read(p).with_context(|| format!("reading collateral {}", p.display()))?;
            Some(
                tdx::collateral_from_json(&raw)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    verify_file(
        &args.evidence,
        "evidence",
        args.at.as_deref(),
        args.json,
        |bytes, now| {
            azure::verify_accepting(
                bytes,
                &nonce,
                now,
                collateral.as_ref(),
                &args.accept.accept_tcb,
            )
        },
    )
}

impl Verified for azure::AzureReport {
    const WHAT: &'static str = "Azure TDX vTPM evidence";
    const WIDTH: usize = 18;
    type Error = azure::AzureError;

    fn outcome(
        &self,
    ) -> (
        bool,
        &[locus_analysis::check::AzureCheck],
        &[CheckOutcome<Self::Error>],
    ) {
        (self.valid, &self.failed_checks, self.checks.all())
    }

    #[expect(clippy::print_stdout, reason = "the verdict is the command's output")]
    fn print_details(&self) {
        if let Some(id) = &self.identity {
            if !id.collateral_checked {
                println!("NO COLLATERAL: TCB status, QE identity and revocation not checked");
            }
            println!("tcb_status: {}", id.tcb_status);
            println!("fmspc:      {}", id.fmspc);
            println!("mr_td:      {}", id.mr_td);
            for (i, r) in id.rtmrs.iter().enumerate() {
                println!("rtmr{i}:      {r}");
            }
        }
        for (i, p) in self.pcrs.iter().enumerate() {
            println!("pcr{i:<2}      {p}");
        }
    }
}
