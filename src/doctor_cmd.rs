//! `locus responder doctor --config FILE [--policy FILE] [--json]`: prints the rows of
//! `locus_responder::doctor`. Exit 0 only when every configured backend works and (with a
//! policy) the bundle is valid under it; 1 names the failing checks; 2 when the config or
//! policy cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use locus_responder::config::ResponderConfig;
use locus_responder::doctor::{self, Rows, Status};

#[derive(Args)]
pub(crate) struct DoctorArgs {
    /// The responder configuration to check (as for `locus responder --config`).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Evidence policy the bundle must satisfy (as for `locus verify evidence --policy`).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Print the rows as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let cfg = ResponderConfig::load(&args.config)?;
    let policy = match &args.policy {
        Some(p) => Some((
            locus_fleet::verifier::load_policy(p)?.1,
            p.display().to_string(),
        )),
        None => None,
    };
    let rows = doctor::run(
        &cfg,
        policy.as_ref().map(|(p, name)| (p, name.as_str())),
        locus_fleet::time::unix_now()?,
    )?;
    print_rows(&rows, args.json)?;
    Ok(if rows.failed().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[expect(clippy::print_stdout, reason = "the rows are the command's output")]
fn print_rows(rows: &Rows, json: bool) -> anyhow::Result<()> {
    let failed = rows.failed();
    if json {
        let v = serde_json::json!({ "ok": failed.is_empty(), "failed": failed, "checks": rows.0 });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for r in &rows.0 {
        let s = match r.status {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        println!("{s:5} {:<22} {}", r.check, r.detail);
    }
    if failed.is_empty() {
        println!("ready: a bundle can be produced");
    } else {
        println!("not ready: failed {}", failed.join(", "));
    }
    Ok(())
}
