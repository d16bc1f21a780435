//! `locus lab`: a whole world on one machine. Real components (QUIC responders and probers,
//! swtpm vTPMs, lab TDX quotes, TLS anchors, the verifier) at emulated sites, honest nodes and
//! attackers side by side, and each verdict compared with the truth.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use locus_lab::{Interrupted, Report, Scenario, ServeOptions, Serving};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct LabArgs {
    /// `locus lab pki`: a lab TDX signing set (instead of running the lab).
    #[command(subcommand)]
    pub(crate) command: Option<crate::lab_pki_cmd::LabCmd>,
    /// Scenario file (TOML); default: the built-in scenario (config/lab.toml).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Output directory; default: a fresh `lab-out-<time>` in the current directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Override the scenario's probing time (seconds).
    #[arg(long)]
    duration: Option<f64>,
    /// Keep the world running without the lab's own probers (until interrupted, or for
    /// --duration), and write one `locus prober --config` file per prober site, the database,
    /// prometheus.yml and alertmanager.yml (OUT/fleet/) for real daemons and `locus monitor`
    /// to watch it (docs/monitoring.md). Prints one JSON line once all of it exists.
    #[arg(long, conflicts_with = "json")]
    serve: bool,
    /// With --serve: the port of every prober daemon's /metrics (each prober has its own
    /// loopback address); 0 picks free ports.
    #[arg(long, requires = "serve", default_value_t = locus_fleet::daemon::config::DEFAULT_PROBER_PORT)]
    prober_port: u16,
}

pub(crate) fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    let scenario = locus_lab::load_scenario(args.scenario.as_deref(), args.duration)?;
    locus_lab::preflight()?;
    // The TSS C library logs to stderr on its own; the lab reports errors itself.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+none");
    }
    let out = match args.out {
        Some(p) => p,
        None => PathBuf::from(format!(
            "lab-out-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        )),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    rt.spawn(async move {
        crate::responder_cmd::shutdown_signal().await;
        let _ = cancel_tx.send(true);
    });
    if args.serve {
        let opts = ServeOptions {
            duration: args.duration.map(Duration::from_secs_f64),
            prober_port: args.prober_port,
            ..ServeOptions::default()
        };
        return serve_world(&rt, &scenario, &out, &opts, cancel_rx);
    }
    let (progress_tx, progress_rx) = tokio::sync::watch::channel((0u64, 1u64));
    let bar = progress_bar(progress_rx, &rt);
    // The run stops itself between steps when cancelled, so every emulator it started is
    // owned by it and killed when its handle drops.
    let result = rt.block_on(locus_lab::run(scenario, &out, progress_tx, cancel_rx));
    bar.finish_and_clear();
    rt.shutdown_timeout(Duration::from_secs(2));
    let outcome = match result {
        Ok(r) => r,
        Err(e) if e.is::<Interrupted>() => {
            bail!("interrupted: the lab stopped and cleaned up")
        }
        Err(e) => return Err(e),
    };

    let (report, table) = locus_lab::write_results(&out, &outcome)?;
    print(&table, &report, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// `--serve`: runs the world until a signal comes (or `--duration` ends).
fn serve_world(
    rt: &tokio::runtime::Runtime,
    scenario: &Scenario,
    out: &std::path::Path,
    opts: &ServeOptions,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ExitCode> {
    let result = rt.block_on(locus_lab::serve(
        scenario,
        out,
        opts,
        cancel,
        announce_serving,
    ));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.is::<Interrupted>() => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI announces what it serves and how to watch it"
)]
fn announce_serving(s: &Serving) {
    if let Ok(line) = serde_json::to_string(s) {
        println!("{line}");
    }
    match s.duration_s {
        Some(d) => eprintln!("lab world running for {d:.0} s; watch it with:"),
        None => eprintln!("lab world running until interrupted; watch it with:"),
    }
    eprintln!(
        "  prometheus-alertmanager --config.file={} --storage.path=am-data \
         --web.listen-address=127.0.0.1:9093 --cluster.listen-address= &",
        s.alertmanager_config.display()
    );
    for c in &s.configs {
        eprintln!("  locus prober --config {} &", c.display());
    }
    eprintln!(
        "  locus monitor --db {} --config {} --policy {} --evidence-policy {} --interval-s 1 \
         --window-s 5 --baseline-rounds 5 --alertmanager http://127.0.0.1:9093 &",
        s.db.display(),
        s.monitor_config.display(),
        s.policy.display(),
        s.evidence_policy.display()
    );
    eprintln!(
        "  prometheus --config.file={} --storage.tsdb.path=prom-data   # optional: dashboards",
        s.prometheus_config.display()
    );
}

fn progress_bar(
    mut rx: tokio::sync::watch::Receiver<(u64, u64)>,
    rt: &tokio::runtime::Runtime,
) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} lab [{bar:40}] {pos}/{len} rounds {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("setting up");
    let b = bar.clone();
    rt.spawn(async move {
        while rx.changed().await.is_ok() {
            let (done, total) = *rx.borrow();
            b.set_length(total);
            b.set_position(done);
            b.set_message(if done + 1 >= total {
                "collecting evidence"
            } else {
                "probing"
            });
        }
    });
    bar
}

#[expect(clippy::print_stdout, reason = "the CLI prints its report")]
fn print(table: &str, report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{table}");
    }
    Ok(())
}
