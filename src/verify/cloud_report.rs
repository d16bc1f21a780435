//! The path both cloud evidence verifiers (GCE, Azure) take: read the evidence (capped), verify
//! it at `--at` or now, print the JSON report with its verification time or a verdict line and
//! one line per check, and exit 0 when valid, 1 when not.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use locus_analysis::verify::cloud::{self, CheckOutcome, NamedCheck, Status};
use locus_fleet::time::{parse_at, unix_now};
use serde::Serialize;

/// A cloud verifier's report, as the shared path prints and judges it.
pub(super) trait Verified: Serialize {
    /// What was verified, as the verdict line names it.
    const WHAT: &'static str;
    /// Width the check names are padded to.
    const WIDTH: usize;
    /// The error a failed check carries.
    type Error: NamedCheck;
    /// Whether it is valid, the failed checks and every check.
    #[expect(
        clippy::type_complexity,
        reason = "the three parts the report is printed from"
    )]
    fn outcome(
        &self,
    ) -> (
        bool,
        &[<Self::Error as NamedCheck>::Id],
        &[CheckOutcome<Self::Error>],
    );
    /// What the report identifies (platform, instance, registers), printed after the checks.
    fn print_details(&self);
}

/// Reads `path` (`what` names it in errors), verifies its bytes with `verify` at `at` (RFC 3339
/// or unix seconds; default now), prints the report and maps validity to the exit code.
pub(super) fn verify_file<R: Verified>(
    path: &Path,
    what: &str,
    at: Option<&str>,
    json: bool,
    verify: impl FnOnce(&[u8], u64) -> R,
) -> anyhow::Result<ExitCode> {
    let bytes = read_capped(path, what)?;
    let now = match at {
        Some(s) => parse_at(s)?,
        None => unix_now()?,
    };
    let report = verify(&bytes, now);
    let (valid, failed, checks) = report.outcome();
    if json {
        print_json(&report, now)?;
    } else {
        print_checks(R::WHAT, valid, failed, checks, R::WIDTH);
        report.print_details();
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads at most one byte more than the verifiers accept, so an oversized file is reported
/// by the `Oversized` check without being read whole.
fn read_capped(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let f =
        std::fs::File::open(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let mut out = Vec::new();
    f.take(cloud::MAX_EVIDENCE_LEN as u64 + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    Ok(out)
}

/// The report as JSON, with the time it was verified at (`at`, unix seconds).
#[expect(clippy::print_stdout, reason = "the verdict is the command's output")]
fn print_json<T: Serialize>(report: &T, now: u64) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(report)?;
    v["at"] = now.into();
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// "valid WHAT" or "invalid WHAT: failed checks …", then each check, names padded to `width`.
#[expect(clippy::print_stdout, reason = "the verdict is the command's output")]
fn print_checks<E: NamedCheck>(
    what: &str,
    valid: bool,
    failed_checks: &[E::Id],
    checks: &[CheckOutcome<E>],
    width: usize,
) {
    if valid {
        println!("valid {what}");
    } else {
        let names: Vec<String> = failed_checks.iter().map(|c| c.to_string()).collect();
        println!("invalid {what}: failed checks {}", names.join(", "));
    }
    for c in checks {
        println!(
            "  {:4}  {:<width$} {}",
            status_word(c.status),
            c.check,
            c.detail
        );
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "FAIL",
        Status::Skip => "skip",
    }
}
