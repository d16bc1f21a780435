//! `locus`: proves where a confidential VM runs.
//!
//! Exit codes (all subcommands): 0 ok / valid; 1 negative verdict or invalid evidence;
//! 2 usage error or unreadable input.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod daemon_cmd;
mod doctor_cmd;
mod endorse;
mod experiment;
mod export_cmd;
mod judge;
mod lab;
mod lab_pki_cmd;
mod logging;
mod monitor;
mod policy_cmd;
mod prober_cmd;
mod responder_cmd;
mod verify;

#[derive(Parser)]
#[command(name = "locus", version, about = "Proves where a confidential VM runs")]
struct Cli {
    /// Log as JSON lines (to stderr).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a responder (inside the confidential VM) until interrupted.
    Responder(responder_cmd::ResponderArgs),
    /// Measure round trips to one or more responders.
    Prober(prober_cmd::ProberArgs),
    /// Run the lab: emulated sites, honest nodes and attackers, verdicts vs truth.
    Lab(lab::LabArgs),
    /// Benchmarks, each against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Verdicts on stored samples and evidence summaries, offline (docs/judge.md).
    Judge(judge::JudgeArgs),
    /// Platform endorsements: issue and verify Intel POEs (docs/poe.md).
    #[command(subcommand)]
    Endorse(endorse::EndorseCmd),
    /// Verify attestation evidence offline (exit 0 valid, 1 invalid, 2 unreadable).
    #[command(subcommand)]
    Verify(verify::VerifyCmd),
    /// Judge every stored node on a schedule; verdicts to the database and /metrics.
    Monitor(monitor::MonitorArgs),
    /// Export stored rounds, samples, evidence requests or verdicts (JSON Lines or CSV).
    Export(export_cmd::ExportArgs),
    /// Evidence policies: capture golden values from a known-good bundle.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCmd),
    /// Detection-power experiments: seeded sweeps, ROC curves, plots (docs/experiment.md).
    Experiment(experiment::ExperimentArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_json);
    let result = match cli.command {
        Command::Responder(args) => responder_cmd::run(args),
        Command::Prober(args) => prober_cmd::run(args),
        Command::Lab(mut args) => match args.command.take() {
            Some(cmd) => lab_pki_cmd::run(cmd),
            None => lab::run(args),
        },
        Command::Bench(cmd) => bench::run(cmd),
        Command::Judge(args) => judge::run(args),
        Command::Verify(cmd) => verify::run(cmd),
        Command::Endorse(cmd) => endorse::run(cmd),
        Command::Monitor(args) => monitor::run(args),
        Command::Export(args) => export_cmd::run(args),
        Command::Experiment(args) => experiment::run(args),
        Command::Policy(cmd) => policy_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln_error(&e);
            ExitCode::from(2)
        }
    }
}

#[expect(
    clippy::print_stderr,
    reason = "the CLI reports fatal errors to the user"
)]
fn eprintln_error(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
}
