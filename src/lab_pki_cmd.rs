//! `locus lab pki --out DIR`: a lab TDX signing set for `tdx.backend = "lab"` on any machine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use locus_responder::tdx::lab::{LabTdx, PKI_COLLATERAL, PKI_ROOT};

#[derive(Subcommand)]
pub(crate) enum LabCmd {
    /// Write a lab TDX signing set: DIR/root.pem, the PCK chain and key, DIR/collateral.json
    /// and the lab quoter state the responder's `tdx.backend = "lab"` reads. Verify its quotes
    /// with `locus verify tdx-quote --collateral DIR/collateral.json --root-ca DIR/root.pem`.
    Pki(PkiArgs),
}

#[derive(Args)]
pub(crate) struct PkiArgs {
    /// Directory to write (created if missing; files in it are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Print the files written as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: LabCmd) -> anyhow::Result<ExitCode> {
    let LabCmd::Pki(args) = cmd;
    let lab = LabTdx::generate().context("generating the lab TDX signing set")?;
    let files = lab
        .write_pki(&args.out)
        .with_context(|| format!("writing the lab PKI to {}", args.out.display()))?;
    let (from, until) = lab.validity();
    print(&args, &files, from, until)?;
    Ok(ExitCode::SUCCESS)
}

#[expect(clippy::print_stdout, reason = "the CLI reports what it wrote")]
fn print(args: &PkiArgs, files: &[PathBuf], from: u64, until: u64) -> anyhow::Result<()> {
    if args.json {
        let v = serde_json::json!({
            "dir": args.out,
            "files": files,
            "root_ca": args.out.join(PKI_ROOT),
            "collateral": args.out.join(PKI_COLLATERAL),
            "valid_from": from,
            "valid_until": until,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    println!(
        "lab collateral valid from {from} to {until} (unix s); lab quotes prove nothing about \
         hardware and verify only under {}",
        args.out.join(PKI_ROOT).display()
    );
    Ok(())
}
