//! `locus bench`: performance targets, each measured as a ratio to a baseline in the same run.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum BenchCmd {}

pub(crate) fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {}
}
