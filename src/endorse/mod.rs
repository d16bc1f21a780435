//! `locus endorse`: platform endorsements (docs/poe.md).
//!
//! Exit codes: 0 ok / valid; 1 the endorsement failed a check (each failed check named);
//! 2 usage or unreadable input.

use std::process::ExitCode;

pub(crate) mod poe;

#[derive(clap::Subcommand)]
pub(crate) enum EndorseCmd {
    /// Intel Platform Ownership Endorsements (COSE_Sign1 CoRIM): make a lab issuer, issue one,
    /// verify one.
    #[command(subcommand)]
    Poe(poe::PoeCmd),
}

pub(crate) fn run(cmd: EndorseCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        EndorseCmd::Poe(c) => poe::run(c),
    }
}
