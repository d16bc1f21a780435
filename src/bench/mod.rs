//! `locus bench`: performance targets, each measured as a ratio to a baseline in the same run.

use std::process::ExitCode;

use clap::Subcommand;

mod tdx;

#[derive(Subcommand)]
pub(crate) enum BenchCmd {
    /// TDX: lab quote generation; locus verify vs bare dcap-qvl verify (target ratio <= 1.2).
    Tdx(tdx::TdxArgs),
}

pub(crate) fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::Tdx(args) => tdx::run(args),
    }
}
