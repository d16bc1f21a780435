//! Output shared by the cloud evidence verifiers: the JSON report with its verification time,
//! or a verdict line and one line per check.

use locus_analysis::verify::cloud::{CheckOutcome, Status};
use serde::Serialize;

/// The report as JSON, with the time it was verified at (`at`, unix seconds).
#[expect(clippy::print_stdout, reason = "the verdict is the command's output")]
pub(super) fn print_json<T: Serialize>(report: &T, now: u64) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(report)?;
    v["at"] = now.into();
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// "valid WHAT" or "invalid WHAT: failed checks …", then each check, names padded to `width`.
#[expect(clippy::print_stdout, reason = "the verdict is the command's output")]
pub(super) fn print_checks<E>(
    what: &str,
    valid: bool,
    failed_checks: &[&str],
    checks: &[CheckOutcome<E>],
    width: usize,
) {
    if valid {
        println!("valid {what}");
    } else {
        println!("invalid {what}: failed checks {}", failed_checks.join(", "));
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
