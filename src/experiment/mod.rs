//! `locus experiment`: detection-power sweeps (relay distance, jitter, probers, samples,
//! inflation, attacker kind) with seeded, resumable trials, ROC curves, plots and a summary.
//!
//! Trials are simulated from the lab's delay model (`sim`) and judged by the verdict engine;
//! sweeping through the full emulation (~35 s per lab run) would take hours. See
//! `docs/experiment.md`.

mod config;
mod plots;
mod report;
mod results;
mod sim;
mod summary;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use config::Experiment;
use results::Row;
use sim::Point;

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

/// Trials judged between two CSV flushes.
const BATCH: usize = 1024;

/// What decides a trial's outcome (besides its point and rep): a results directory made with
/// other values cannot be resumed.
fn fingerprint(e: &Experiment) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "seed": e.seed,
        "duration_s": e.duration_s,
        "claim": e.claim,
        "sites": e.sites,
        "probers": e.probers,
        "anchors": e.anchors,
        "model": e.model,
        "policy": e.policy,
    }))?)
}

pub(crate) fn run(args: ExperimentArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let e = Experiment::load(&args.file)?;
    let plan = summary::points(&e);
    if args.dry_run {
        let trials: u64 = plan.iter().map(|p| p.1).sum();
        print_plan(&e, plan.len(), trials)?;
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let fp_path = args.out.join("fingerprint.json");
    let fp = fingerprint(&e)?;
    match std::fs::read_to_string(&fp_path) {
        Ok(old) if old != fp => bail!(
            "{} holds trials of an experiment with another seed, world, model or policy \
             (see {}): use another --out",
            args.out.display(),
            fp_path.display()
        ),
        Ok(_) => {}
        Err(_) => std::fs::write(&fp_path, &fp)?,
    }
    std::fs::copy(&args.file, args.out.join("experiment.toml"))
        .with_context(|| format!("copying {}", args.file.display()))?;

    let mut rows = results::load(&args.out)?;
    let done = results::done(&rows);
    let mut todo: Vec<(Point, u64)> = Vec::new();
    for (p, reps) in plan {
        let key = p.key();
        for rep in 0..reps {
            if !done.contains(&(key.clone(), rep)) {
                todo.push((p.clone(), rep));
            }
        }
    }
    let skipped = done.len();
    tracing::info!(
        todo = todo.len(),
        skipped,
        "experiment {}: running trials",
        e.name
    );
    let new_trials = todo.len();
    run_trials(&e, &args.out, &todo, &mut rows)?;

    let s = summary::summarize(&e, &rows);
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&s)? + "\n",
    )?;
    let files = plots::draw_all(&args.out, &e, &rows, &s)
        .map_err(|err| anyhow::anyhow!("drawing plots: {err}"))?;
    let wall_s = started.elapsed().as_secs_f64();
    let text = report::markdown(&e, &s, &files, new_trials, skipped, wall_s);
    std::fs::write(args.out.join("report.md"), &text)?;
    print(&s, &text, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn run_trials(
    e: &Experiment,
    out: &std::path::Path,
    todo: &[(Point, u64)],
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(todo.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} experiment [{bar:40}] {pos}/{len} trials ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut writer = results::Writer::open(out)?;
    let worlds: HashMap<usize, locus_analysis::World> =
        e.n_probers.iter().map(|&n| (n, sim::world(e, n))).collect();
    let move_after_s = e.duration_s * e.model.move_at_frac;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    for batch in todo.chunks(BATCH) {
        let per = batch.len().div_ceil(threads);
        let mut parts: Vec<Vec<Row>> = Vec::new();
        std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .chunks(per.max(1))
                .map(|chunk| {
                    let worlds = &worlds;
                    let bar = &bar;
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|(p, rep)| {
                                let r = sim::trial(e, &worlds[&p.probers], p, *rep, move_after_s);
                                bar.inc(1);
                                Row::new(p, *rep, &r)
                            })
                            .collect::<Vec<Row>>()
                    })
                })
                .collect();
            for h in handles {
                parts.push(h.join().unwrap_or_default());
            }
        });
        let batch_rows: Vec<Row> = parts.into_iter().flatten().collect();
        if batch_rows.len() != batch.len() {
            bail!("a trial thread panicked");
        }
        writer.append(&batch_rows)?;
        rows.extend(batch_rows);
    }
    bar.finish_and_clear();
    Ok(())
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
fn print(s: &summary::Summary, text: &str, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else {
        print!("{text}");
    }
    Ok(())
}
