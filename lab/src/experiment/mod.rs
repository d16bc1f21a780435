//! Detection-power sweeps (relay distance, jitter, probers, samples, inflation, attacker
//! kind) with seeded, resumable trials, ROC curves, plots and a summary (`locus experiment`).
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
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};

pub use config::Experiment;
use results::Row;
use sim::Point;
pub use summary::Summary;

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

/// What an experiment file plans: its points and trials in all.
pub struct Plan {
    pub points: usize,
    pub trials: u64,
}

/// Counts the points and trials `e` plans, running nothing.
pub fn plan(e: &Experiment) -> Plan {
    let plan = summary::points(e);
    Plan {
        points: plan.len(),
        trials: plan.iter().map(|p| p.1).sum(),
    }
}

/// How far a run is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// This many trials are to run (the others were found done).
    Planned(u64),
    /// One more trial was judged.
    Trial,
    /// Every trial ran; summary, plots and report follow.
    Finished,
}

/// A finished run: the summary (summary.json) and the report (report.md).
pub struct Finished {
    pub summary: Summary,
    pub report: String,
}

/// Runs the trials of the experiment in `file` not yet found in `out` (created), then writes
/// summary.json, the plots and report.md there. `progress` learns the number of trials to run,
/// then is called once per trial judged (from several threads).
pub fn run(
    file: &Path,
    e: &Experiment,
    out: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> anyhow::Result<Finished> {
    let started = Instant::now();
    let plan = summary::points(e);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let fp_path = out.join("fingerprint.json");
    let fp = fingerprint(e)?;
    match std::fs::read_to_string(&fp_path) {
        Ok(old) if old != fp => bail!(
            "{} holds trials of an experiment with another seed, world, model or policy \
             (see {}): use another --out",
            out.display(),
            fp_path.display()
        ),
        Ok(_) => {}
        Err(_) => std::fs::write(&fp_path, &fp)?,
    }
    std::fs::copy(file, out.join("experiment.toml"))
        .with_context(|| format!("copying {}", file.display()))?;

    let mut rows = results::load(out)?;
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
    progress(Progress::Planned(todo.len() as u64));
    run_trials(e, out, &todo, &mut rows, progress)?;

    let s = summary::summarize(e, &rows);
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&s)? + "\n",
    )?;
    let files = plots::draw_all(out, e, &rows, &s)
        .map_err(|err| anyhow::anyhow!("drawing plots: {err}"))?;
    let wall_s = started.elapsed().as_secs_f64();
    let text = report::markdown(e, &s, &files, new_trials, skipped, wall_s);
    std::fs::write(out.join("report.md"), &text)?;
    Ok(Finished {
        summary: s,
        report: text,
    })
}

fn run_trials(
    e: &Experiment,
    out: &Path,
    todo: &[(Point, u64)],
    rows: &mut Vec<Row>,
    progress: &(dyn Fn(Progress) + Sync),
) -> anyhow::Result<()> {
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
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|(p, rep)| {
                                let r = sim::trial(e, &worlds[&p.probers], p, *rep, move_after_s);
                                progress(Progress::Trial);
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
    progress(Progress::Finished);
    Ok(())
}
