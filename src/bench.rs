//! `locus bench`: performance targets, each measured as a ratio to a baseline in the same run.

use std::process::ExitCode;

use clap::Subcommand;
use locus_bench::{evidence, fleet, overload, ping, tdx};

#[derive(Subcommand)]
pub(crate) enum BenchCmd {
    /// Echo round trips and throughput: locus vs a raw UDP echo.
    Ping(ping::PingArgs),
    /// TDX: lab quote generation; locus verify vs bare dcap-qvl verify (target ratio <= 1.2).
    Tdx(tdx::TdxArgs),
    /// Evidence: fresh bundle vs bare TPM2_Quote (target <= 3), bundle verify vs dcap-qvl (<= 4).
    Evidence(evidence::EvidenceArgs),
    /// Fleet: one prober daemon process, many targets at 1 Hz (target ≤ 1 core, ≤ 512 MiB at
    /// 10 000); CPU per probe vs a plain UDP ping loop.
    Fleet(fleet::FleetArgs),
    /// Overload: a responder under attack by N hostile connections while a pinned honest prober
    /// probes and asks for evidence (goals: echo p50 ≤ 1.5 × idle, evidence p99 ≤ 2 × idle,
    /// responder RSS ≤ 256 MiB).
    Overload(overload::OverloadArgs),
    /// The attackers of `bench overload`, in their own process (the bench starts it).
    #[command(hide = true)]
    OverloadAttack(overload::attack::AttackArgs),
}

pub(crate) fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    let report = match cmd {
        BenchCmd::Ping(args) => ping::run(args)?,
        BenchCmd::Tdx(args) => tdx::run(args)?,
        BenchCmd::Evidence(args) => evidence::run(args)?,
        BenchCmd::Fleet(args) => fleet::run(args)?,
        BenchCmd::Overload(args) => overload::run(args)?,
        BenchCmd::OverloadAttack(args) => {
            // Its snapshots go to stdout as the bench asks for them on stdin.
            overload::attack::run(args, std::io::stdin().lock(), std::io::stdout())?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    print(&report);
    Ok(ExitCode::SUCCESS)
}

#[expect(
    clippy::print_stdout,
    reason = "the benchmark report is the command's output"
)]
fn print(report: &str) {
    print!("{report}");
}
