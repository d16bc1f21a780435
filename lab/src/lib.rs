//! The lab: a whole world on one machine. Real components (QUIC responders and probers,
//! swtpm vTPMs, lab TDX quotes, TLS anchors, the verifier) at emulated sites, honest nodes and
//! attackers side by side, and each verdict compared with the truth (`locus lab`); and the
//! detection-power experiments that simulate its delay model ([`experiment`], `locus
//! experiment`).
//!
//! Errors are `anyhow` here: the lab drives processes, files and sockets end to end and its
//! callers only report what failed.

mod addr;
mod basemap;
pub mod boot;
mod emulation;
pub mod experiment;
mod geo;
mod index_page;
pub mod judge_input;
mod map;
mod plots;
pub mod poe;
mod relay;
mod report;
mod scenario;
mod serve;
pub mod tdx_files;
mod toml_span;
mod trust;
mod world;

use std::path::Path;

use anyhow::{bail, Context};
use tokio::sync::watch;

pub use emulation::{Outcome, Progress};
pub use report::Report;
pub use scenario::Scenario;
pub use serve::{ServeOptions, Serving};
pub use world::Interrupted;

/// The verification policy a lab run writes into its output directory.
pub const POLICY_FILE: &str = "policy.toml";

/// The verdict policy a lab run writes (and judges with): the defaults, accepting the lab root.
pub const VERDICT_POLICY_FILE: &str = "verdict-policy.toml";

/// Reads the scenario at `path` (default: the built-in one, config/lab.toml) and overrides its
/// probing time with `duration_s` when given.
pub fn load_scenario(path: Option<&Path>, duration_s: Option<f64>) -> anyhow::Result<Scenario> {
    let (text, origin) = match path {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            scenario::BUILT_IN.to_string(),
            "built-in scenario".to_string(),
        ),
    };
    let mut scenario = Scenario::parse(&text, &origin)?;
    if let Some(d) = duration_s {
        if !(1.0..=3600.0).contains(&d) {
            bail!("--duration must be within 1..=3600 seconds");
        }
        if scenario
            .responders
            .iter()
            .any(|r| r.moves.is_some_and(|m| m.1 >= d))
        {
            bail!("--duration {d} ends before a scheduled move: lengthen it");
        }
        if scenario.events.iter().any(|e| e.at_s >= d) {
            bail!("--duration {d} ends before a scheduled route change: lengthen it");
        }
        scenario.duration_s = d;
    }
    Ok(scenario)
}

/// Checks what the lab needs before starting anything.
pub fn preflight() -> anyhow::Result<()> {
    for tool in ["swtpm", "swtpm_setup"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            bail!("`{tool}` is not installed: run scripts/setup.sh (Debian packages swtpm, swtpm-tools)");
        }
    }
    Ok(())
}

/// Runs the scenario to its end (or until `cancel`): emulation, evidence, verdicts. A
/// cancelled run fails with [`Interrupted`] after stopping everything it started.
pub async fn run(
    scenario: Scenario,
    out: &Path,
    progress: Progress,
    cancel: watch::Receiver<bool>,
) -> anyhow::Result<Outcome> {
    let (outcome, _trust) = emulation::run(scenario, out, progress, cancel).await?;
    Ok(outcome)
}

/// Writes a finished run's report, plots and index.html into `out`; returns the report and
/// its table (as `locus lab` prints it).
pub fn write_results(out: &Path, outcome: &Outcome) -> anyhow::Result<(Report, String)> {
    let report = report::write(out, outcome)?;
    let table = report::table(&report);
    let plots = plots::draw_all(out, outcome).map_err(|e| anyhow::anyhow!("drawing plots: {e}"))?;
    index_page::write(out, &report, outcome, &plots).context("writing index.html")?;
    Ok((report, table))
}

/// Builds the world and keeps it running (for `opts.duration`, or until `cancel`), without
/// the lab's own probers: `on_ready` learns the daemon configs and policies to watch it with.
pub async fn serve(
    scenario: &Scenario,
    out: &Path,
    opts: &ServeOptions,
    cancel: watch::Receiver<bool>,
    on_ready: impl FnOnce(&Serving),
) -> anyhow::Result<()> {
    serve::run(scenario, out, opts, cancel, on_ready).await
}
