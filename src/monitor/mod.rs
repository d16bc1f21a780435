//! `locus monitor`: judges every node the probers stored, on a schedule, with the verdict
//! engine (`locus_analysis::judge`); stores each verdict and exports `locus_node_verdict` and
//! `locus_region_radius_km` on `/metrics` (for the rules in `config/alerts.yml`).
//!
//! Exit codes with `--once`: 0 every node `located`; 1 any other verdict (or no node);
//! 2 unreadable input. Running continuously it exits 0 on SIGTERM or SIGINT.

mod alert;
mod input;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use locus_analysis::{judge, Judgement, Policy};
use locus_prober::daemon::http::{self, Endpoints};
use locus_prober::metrics::NodeMetrics;
use locus_prober::metrics::Registry;
use locus_prober::store::{Database, Store, StoreError, VerdictRecord};
use serde::Serialize;
use tracing::{info, warn};

/// How long opening the database and a write wait for the server or another writer's lock.
const DB_WAIT: Duration = Duration::from_secs(5);

/// Opens the database a reader (monitor, export) names; a missing SQLite file is an error.
pub(crate) fn open_store(db: &Database) -> anyhow::Result<Store> {
    Store::connect_existing(db, DB_WAIT).map_err(|e| match e {
        // SQLite's own messages do not say which file; the others name their database.
        StoreError::Sqlite(_) => anyhow::Error::new(e).context(format!("opening {db}")),
        e => e.into(),
    })
}

#[derive(Args)]
pub(crate) struct MonitorArgs {
    /// The database the probers write (`db` in their config): an SQLite file or a
    /// `postgres://user:password@host:port/dbname` URL.
    #[arg(long)]
    db: Database,
    /// Verdict policy (TOML, config/policy.example.toml); defaults when absent. Without
    /// --evidence-policy set `require_evidence = false` to judge on timing alone.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Evidence policy (as for `locus verify evidence --policy`): each node's latest stored
    /// bundle is verified under it and feeds the verdict (evidence, anchors, in-TD timings).
    #[arg(long)]
    evidence_policy: Option<PathBuf>,
    /// Seconds back from the judgement in which a node's latest evidence bundle counts.
    #[arg(long, default_value_t = 900.0)]
    evidence_window_s: f64,
    /// Seconds between two judgements of every node.
    #[arg(long, default_value_t = 60.0)]
    interval_s: f64,
    /// Seconds of samples each judgement looks at (ending now).
    #[arg(long, default_value_t = 600.0)]
    window_s: f64,
    /// Rounds before the window, per prober, whose minima make the node's baseline (median).
    #[arg(long, default_value_t = 60)]
    baseline_rounds: usize,
    /// Address of /metrics, /-/healthy and /-/ready.
    #[arg(long, default_value = "127.0.0.1:9465")]
    listen: SocketAddr,
    /// Judge once, print the judgements and exit (0 all located, 1 otherwise).
    #[arg(long)]
    once: bool,
    /// With --once: judge as of this Unix time (seconds) instead of now.
    #[arg(long, requires = "once")]
    at: Option<f64>,
    /// With --once: print JSON instead of one line per node.
    #[arg(long)]
    json: bool,
    /// Also post alerts for negative verdicts to this Alertmanager (`http://host:port`,
    /// repeatable), named like the rules in config/alerts.yml.
    #[arg(long = "alertmanager")]
    alertmanagers: Vec<String>,
}

/// How [`judge_all`] judges: the verdict policy, the sample window, the baseline and, when
/// configured, the stored evidence.
pub(crate) struct Judging {
    pub(crate) policy: Policy,
    pub(crate) window: Duration,
    pub(crate) baseline_rounds: usize,
    pub(crate) evidence: Option<input::EvidenceConfig>,
}

/// What [`judge_all`] does besides judging.
pub(crate) struct Sinks<'a> {
    metrics: Option<&'a NodeMetrics>,
    alertmanagers: &'a [String],
    /// A firing alert expires this long after it was last sent.
    alert_ttl: Duration,
}

#[derive(Serialize)]
struct Output<'a> {
    all_located: bool,
    nodes: &'a [Judgement],
}

pub(crate) fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    for (name, v) in [
        ("--interval-s", args.interval_s),
        ("--window-s", args.window_s),
        ("--evidence-window-s", args.evidence_window_s),
    ] {
        if !(v.is_finite() && v > 0.0) {
            bail!("{name} must be a finite number > 0, not {v}");
        }
    }
    if args.baseline_rounds == 0 {
        bail!("--baseline-rounds must be at least 1");
    }
    let evidence = match &args.evidence_policy {
        Some(p) => Some(input::EvidenceConfig {
            policy: crate::verify::evidence::load_policy(p)?.1,
            window: Duration::from_secs_f64(args.evidence_window_s),
        }),
        None => None,
    };
    let vtpm_bound = evidence
        .as_ref()
        .and_then(|e| e.policy.max_tpm_cheap_rtt_ns);
    let judging = Judging {
        policy: load_policy(args.policy.as_deref())?.calibrated_vtpm(vtpm_bound),
        window: Duration::from_secs_f64(args.window_s),
        baseline_rounds: args.baseline_rounds,
        evidence,
    };
    let mut store = open_store(&args.db)?;
    if args.once {
        let now = match args.at {
            Some(t) => (t * 1e9) as i64,
            None => unix_now_ns(),
        };
        let sinks = Sinks {
            metrics: None,
            alertmanagers: &args.alertmanagers,
            alert_ttl: Duration::from_secs_f64(args.interval_s * 3.0),
        };
        let (js, failed) = judge_all(&mut store, &judging, now, &sinks)?;
        if let Some(e) = failed.first() {
            bail!("alert not delivered: {e}");
        }
        let all_located = !js.is_empty() && js.iter().all(|j| j.verdict.is_located());
        print_judgements(&js, all_located, args.json)?;
        return Ok(if all_located {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve(args, store, judging))
}

async fn serve(args: MonitorArgs, store: Store, judging: Judging) -> anyhow::Result<ExitCode> {
    let mut registry = Registry::default();
    let metrics = NodeMetrics::new(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    announce(listener.local_addr()?);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(
        listener,
        Endpoints {
            registry: Arc::new(registry),
            ready: ready.clone(),
            reload: None,
        },
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    let store = Arc::new(Mutex::new(store));
    let judging = Arc::new(judging);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.interval_s));
    let stop = crate::responder_cmd::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let (s, j, m) = (store.clone(), judging.clone(), metrics.clone());
                let ams = args.alertmanagers.clone();
                let ttl = Duration::from_secs_f64(args.interval_s * 3.0);
                let res = tokio::task::spawn_blocking(move || {
                    let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                    let sinks = Sinks { metrics: Some(&m), alertmanagers: &ams, alert_ttl: ttl };
                    judge_all(&mut s, &j, unix_now_ns(), &sinks)
                })
                .await;
                match res {
                    Ok(Ok((js, failed))) => {
                        ready.store(true, Ordering::Release);
                        for e in failed {
                            warn!("alert not delivered: {e}");
                        }
                        info!(nodes = js.len(), "judged");
                    }
                    Ok(Err(e)) => warn!("judging failed: {e:#}"),
                    Err(e) => warn!("judging failed: {e}"),
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    info!("monitor stopped");
    Ok(ExitCode::SUCCESS)
}

/// Judges every node with rounds in the window ending at `now_ns`, stores the verdicts,
/// updates the metrics and posts alerts; returns the judgements and the alerts not delivered.
pub(crate) fn judge_all(
    store: &mut Store,
    judging: &Judging,
    now_ns: i64,
    sinks: &Sinks<'_>,
) -> anyhow::Result<(Vec<Judgement>, Vec<String>)> {
    let world = input::world(store)?;
    let problems = world.problems();
    if !problems.is_empty() {
        bail!(
            "the probers' world is inconsistent: {}",
            problems.join("; ")
        );
    }
    let from = now_ns.saturating_sub(ns_of(judging.window));
    let bundles = match &judging.evidence {
        Some(e) => Some(input::latest_bundles(store, e, now_ns)?),
        None => None,
    };
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for (node, claim) in store.nodes_between(from, now_ns)? {
        let previous = store.latest_verdict(&node)?;
        let mut input =
            input::node_input(store, &node, &claim, from, now_ns, judging.baseline_rounds)?;
        if let (Some(e), Some(bundles)) = (&judging.evidence, &bundles) {
            input::attach_evidence(store, e, bundles.get(&node), &mut input, now_ns)?;
        }
        let j = judge(&world, &input, &judging.policy);
        let radius_km = j.region.as_ref().and_then(|r| r.radius_km);
        store.insert_verdict(&VerdictRecord {
            node: node.clone(),
            claim: claim.clone(),
            at_unix_ns: now_ns,
            window_start_unix_ns: from,
            verdict: j.verdict.as_str().to_owned(),
            reasons: j.reasons.clone(),
            radius_km,
            judgement: serde_json::to_string(&j)?,
        })?;
        if !sinks.alertmanagers.is_empty() {
            let last_located = store.latest_verdict_of(&node, Some("located"))?;
            let alerts = alert::alerts_for(
                &j,
                previous.as_ref(),
                last_located.as_ref(),
                now_ns / 1_000_000_000,
                sinks.alert_ttl,
            );
            for url in sinks.alertmanagers {
                if let Err(e) = alert::post(url, &alerts) {
                    failed.push(e.to_string());
                }
            }
        }
        if let Some(m) = sinks.metrics {
            m.set_verdict(
                &node,
                &claim,
                j.verdict.as_str(),
                radius_km,
                now_ns as f64 / 1e9,
            );
        }
        out.push(j);
    }
    Ok((out, failed))
}

fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading policy {}", p.display()))?;
            Policy::from_toml_str(&text).with_context(|| format!("policy {}", p.display()))
        }
        None => Ok(Policy::default()),
    }
}

fn ns_of(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn unix_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[expect(clippy::print_stdout, reason = "the CLI announces its address")]
fn announce(addr: SocketAddr) {
    println!("{}", serde_json::json!({ "listen": addr.to_string() }));
}

#[expect(clippy::print_stdout, reason = "the CLI prints its report")]
fn print_judgements(js: &[Judgement], all_located: bool, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Output {
                all_located,
                nodes: js,
            })?
        );
        return Ok(());
    }
    if js.is_empty() {
        println!("no node has rounds in the window");
    }
    for j in js {
        println!(
            "{:<24} {:<16} claim {}: {}",
            j.name,
            j.verdict.as_str(),
            j.claim,
            j.reasons.join("; ")
        );
    }
    Ok(())
}
