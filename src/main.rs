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
#[command(
    name = "locus",
    version = locus_fleet::self_metrics::VERSION_LINE,
    about = "Proves where a confidential VM runs"
)]
struct Cli {
    /// Log level or directives (`debug`, `info,locus_fleet=debug`); default `info` for the
    /// daemons (responder, prober, monitor), `warn` otherwise; RUST_LOG when not given.
    #[arg(long, global = true, env = "LOCUS_LOG_LEVEL")]
    log_level: Option<String>,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "LOCUS_LOG_FORMAT"
    )]
    log_format: logging::LogFormat,
    /// Log as JSON lines (same as --log-format json).
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write man pages (locus.1 and one per subcommand) into a directory.
    Man {
        /// Directory to write the pages into (created when missing).
        #[arg(long, default_value = ".")]
        out: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    // With --json anywhere, errors are JSON on stdout too (same exit codes).
    let json = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if json && e.use_stderr() => {
            let text = e.to_string();
            print_json_error("usage", text.strip_prefix("error: ").unwrap_or(&text));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let daemon = matches!(
        cli.command,
        Command::Responder(_) | Command::Prober(_) | Command::Monitor(_)
    );
    let format = if cli.log_json {
        logging::LogFormat::Json
    } else {
        cli.log_format
    };
    if let Err(e) = logging::init(cli.log_level.as_deref(), format, daemon) {
        return fail(&e, json);
    }
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
        Command::Completions { shell } => completions(shell),
        Command::Man { out } => man_pages(&out),
    };
    match result {
        Ok(code) => code,
        Err(e) => fail(&e, json),
    }
}

fn fail(e: &anyhow::Error, json: bool) -> ExitCode {
    if json {
        print_json_error("error", &message(e));
    } else {
        eprintln_error(&message(e));
    }
    ExitCode::from(2)
}

/// The error and its causes, each said once: many errors print their source in their own
/// message (`reading x: No such file or directory (os error 2)`), and anyhow's chain would
/// repeat it.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[expect(
    clippy::print_stdout,
    reason = "with --json the CLI reports errors on stdout"
)]
fn print_json_error(kind: &str, message: &str) {
    println!(
        "{}",
        serde_json::json!({ "error": message.trim_end(), "kind": kind })
    );
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "locus", &mut out);
    // A reader that stops early (`| head`) is no error.
    match std::io::stdout().lock().write_all(&out) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `locus.1`, and `locus-SUB.1` for every subcommand (nested ones joined by `-`).
fn man_pages(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fn write(cmd: clap::Command, name: String, dir: &std::path::Path) -> anyhow::Result<()> {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .title(name.clone())
            .render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            write(sub.clone(), format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command();
    cmd.build();
    write(cmd, "locus".into(), dir)?;
    Ok(ExitCode::SUCCESS)
}

#[expect(
    clippy::print_stderr,
    reason = "the CLI reports fatal errors to the user"
)]
fn eprintln_error(message: &str) {
    eprintln!("error: {message}");
}
