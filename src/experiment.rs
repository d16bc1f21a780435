//! `locus experiment`: detection-power sweeps with seeded, resumable trials, ROC curves, plots
//! and a summary (`locus_lab::experiment`, docs/experiment.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use locus_lab::experiment::{self, Experiment, Progress, Summary};

#[derive(Args)]
pub(crate) struct ExperimentArgs {
    /// Experiment file (TOML), e.g. config/experiments/relay-distance.toml.
    file: PathBuf,
    /// Output directory (created; finished trials found there are kept and skipped).
    #[arg(long)]
    out: PathBuf,
    /// Also print summary.json on stdout.
    #[arg(long)]
    json: bool,
    /// Validate the file and print the number of points and trials; write nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn run(args: ExperimentArgs) -> anyhow::Result<ExitCode> {
    let e = Experiment::load(&args.file)?;
    if args.dry_run {
        let plan = experiment::plan(&e);
        print_plan(&e, plan.points, plan.trials)?;
        return Ok(ExitCode::SUCCESS);
    }
    let bar = indicatif::ProgressBar::hidden();
    let progress = |p: Progress| match p {
        Progress::Planned(n) => {
            bar.set_length(n);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} experiment [{bar:40}] {pos}/{len} trials ({eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        Progress::Trial => bar.inc(1),
        Progress::Finished => bar.finish_and_clear(),
    };
    let done = experiment::run(&args.file, &e, &args.out, &progress)?;
    print(&done.summary, &done.report, args.json)?;
    Ok(ExitCode::SUCCESS)
}

#[expect(clippy::print_stdout, reason = "the CLI prints its plan")]
fn print_plan(e: &Experiment, points: usize, trials: u64) -> anyhow::Result<()> {
    println!(
        "{}: {points} points, {trials} trials (simulation, seed {})",
        e.name, e.seed
    );
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the CLI prints its report")]
fn print(s: &Summary, text: &str, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else {
        print!("{text}");
    }
    Ok(())
}
