//! `locus monitor`: judges every node the probers stored, on a schedule, with the verdict
//! engine (`locus_analysis::judge`); stores each verdict and exports `locus_node_verdict` and
//! `locus_region_radius_meters` on `/metrics` (for the rules in `config/alerts.yml`).
//!
//! Exit codes with `--once`: 0 every node `located`; 1 any other verdict (or no node);
//! 2 unreadable input. Running continuously it exits 0 on SIGTERM or SIGINT.
//!
//! Settings that hold secrets come from the environment as well as flags: `LOCUS_DB`,
//! `LOCUS_ALERTMANAGER`, `LOCUS_ALERTMANAGER_BEARER_TOKEN_FILE`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use locus_analysis::Judgement;
use locus_fleet::monitor::{
    judge_all, unix_now_ns, Alertmanagers, EvidenceConfig, Fleet, Judging, MonitorConfig, Sinks,
};
use locus_fleet::store::{Database, Store, StoreError};
use serde::Serialize;
use tracing::info;

/// How long opening the database and a write wait for the server or another writer's lock.
pub(crate) const DB_WAIT: Duration = Duration::from_secs(5);

/// Opens the database a reader (monitor, export) names; a missing SQLite file is an error.
pub(crate) fn open_store(db: &Database) -> anyhow::Result<Store> {
    Store::connect_existing(db, DB_WAIT).map_err(|e| match e {
        // SQLite's own messages do not say which file; the others name their database.
        StoreError::Sqlite(_) => anyhow::Error::new(e).context(format!("opening {db}")),
        e => e.into(),
    })
}

/// `db` with the password of `file`, if any (`--db-password-file`, `db_password_file`).
pub(crate) fn with_password(db: Database, file: Option<&Path>) -> anyhow::Result<Database> {
    Ok(match file {
        Some(f) => db.with_password_file(f)?,
        None => db,
    })
}

#[derive(Args)]
pub(crate) struct MonitorArgs {
    /// The database the probers write (`db` in their config): an SQLite file or a
    /// `postgres://user:password@host:port/dbname` URL. A missing SQLite file is waited for
    /// (a prober creates it), except with --once.
    #[arg(long, env = "LOCUS_DB", hide_env_values = true)]
    db: Database,
    /// A file holding the PostgreSQL password, so that neither --db nor LOCUS_DB carries it
    /// (overrides the config's `db_password_file`).
    #[arg(long, env = "LOCUS_DB_PASSWORD_FILE", value_name = "FILE")]
    db_password_file: Option<PathBuf>,
    #[command(flatten)]
    store: StoreJudging,
    /// Verdict policy (TOML, config/policy.example.toml); defaults when absent. A policy that
    /// needs evidence or anchors is refused without --evidence-policy (every node would be
    /// `inconclusive`): give one, or --timing-only.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Evidence policy (as for `locus verify evidence --policy`): each node's latest stored
    /// bundle is verified under it and feeds the verdict (evidence, anchors, in-TD timings).
    #[arg(long)]
    evidence_policy: Option<PathBuf>,
    /// Seconds between two judgements of every node.
    #[arg(long, default_value_t = 60.0)]
    interval_s: f64,
    /// Address of /metrics, /-/healthy and /-/ready (19465: outside the Prometheus exporter
    /// port range 9100-9999, which is all allocated).
    #[arg(long, default_value = "127.0.0.1:19465")]
    listen: SocketAddr,
    /// Where the monitor is reachable (alerts link to its /metrics); default http://LISTEN.
    #[arg(long)]
    external_url: Option<String>,
    /// Judge once, print the judgements and exit (0 all located, 1 otherwise). The verdicts
    /// are stored and alerted like the running monitor's unless --dry-run.
    #[arg(long)]
    once: bool,
    /// With --once: store no verdict and post no alert (a look that changes nothing the
    /// running monitor and the alerts see).
    #[arg(long, requires = "once")]
    dry_run: bool,
    /// With --once: judge as of this time (RFC 3339 or Unix seconds) instead of now.
    #[arg(long, requires = "once", value_parser = crate::export_cmd::parse_time_ns)]
    at: Option<i64>,
    /// With --once: print JSON instead of one line per node.
    #[arg(long)]
    json: bool,
    /// Also post alerts for negative verdicts to this Alertmanager
    /// (`http(s)://[user:password@]host:port[/prefix]`, repeatable or comma-separated), named
    /// like the rules in config/alerts.yml. Use this OR the Prometheus rules, not both.
    #[arg(
        long = "alertmanager",
        env = "LOCUS_ALERTMANAGER",
        value_delimiter = ',',
        hide_env_values = true
    )]
    alertmanagers: Vec<String>,
    /// A file holding a bearer token for the Alertmanagers whose URL has no user info.
    #[arg(long, env = "LOCUS_ALERTMANAGER_BEARER_TOKEN_FILE")]
    alertmanager_bearer_token_file: Option<PathBuf>,
    /// Re-baseline this node (repeatable or comma-separated): after a `relocated` verdict a
    /// node's baselines stay frozen and it is never `located` again until the operator,
    /// knowing the new place is right, restarts the monitor once with this flag; the node's
    /// verified history is then its baseline again.
    #[arg(long, value_name = "NODE", value_delimiter = ',')]
    rebaseline: Vec<String>,
}

#[derive(Serialize)]
struct Output<'a> {
    all_located: bool,
    nodes: &'a [Judgement],
}

pub(crate) fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    if !(args.interval_s.is_finite() && args.interval_s > 0.0) {
        bail!(
            "--interval-s must be a finite number > 0, not {}",
            args.interval_s
        );
    }
    let mut judging = args
        .store
        .judging(args.policy.as_deref(), args.evidence_policy.as_deref())?;
    judging.memory = locus_fleet::monitor::VerdictMemory::rebaselining(args.rebaseline.clone());
    let db = args
        .store
        .database(&args.db, args.db_password_file.as_deref(), &judging)?;
    let bearer = match &args.alertmanager_bearer_token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let external_url = args
        .external_url
        .clone()
        .or_else(|| (!args.once).then(|| format!("http://{}", args.listen)));
    let alertmanagers = match args.alertmanagers.is_empty() || args.dry_run {
        true => None,
        false => Some(Alertmanagers::new(
            &args.alertmanagers,
            bearer,
            external_url.map(|u| format!("{}/metrics", u.trim_end_matches('/'))),
        )?),
    };
    if args.once {
        let mut store = open_store(&db)?;
        let now = args.at.unwrap_or_else(unix_now_ns);
        let sinks = Sinks {
            metrics: None,
            alertmanagers: alertmanagers.as_ref(),
            alert_ttl: Duration::from_secs_f64(args.interval_s * 3.0),
            store: !args.dry_run,
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
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let stop = crate::responder_cmd::shutdown_signal();
        tokio::pin!(stop);
        // A monitor started next to probers that have not created the database yet waits.
        if let Database::Sqlite(path) = &db {
            if !path.exists() {
                info!(db = %path.display(), "waiting for a prober to create the database");
                let appeared = async {
                    while !path.exists() {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                };
                tokio::select! {
                    _ = &mut stop => return anyhow::Ok(ExitCode::SUCCESS),
                    _ = appeared => {}
                }
            }
        }
        // The synchronous PostgreSQL client runs its own runtime: open it off this one.
        let store = tokio::task::spawn_blocking(move || open_store(&db)).await??;
        announce(listener.local_addr()?);
        locus_fleet::monitor::serve(
            listener,
            store,
            judging,
            Duration::from_secs_f64(args.interval_s),
            alertmanagers,
            stop,
        )
        .await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// How a store is judged: the flags `locus monitor` and `locus judge --db` share (each with
/// `--db`, `--policy` and `--evidence-policy` of its own).
#[derive(Args)]
pub(crate) struct StoreJudging {
    /// The monitor's own view of the fleet (TOML, config/monitor.example.toml): sites, probers
    /// with their public keys, nodes with their claims, landmarks. Only rows those probers
    /// signed are judged. Required unless --allow-unsigned.
    #[arg(long, value_name = "FILE", requires = "db")]
    config: Option<PathBuf>,
    /// Judge unsigned rows: with --config, those of probers listed without a key; without it,
    /// every row, with sites, probers and claims as the database holds them. Anyone who can
    /// write the database (or its link) then decides the verdicts.
    #[arg(long, requires = "db")]
    allow_unsigned: bool,
    /// Judge on timing alone, without evidence (the verdict policy's `require_evidence` and
    /// `min_anchors` are set to false and 0): proxies and Frankenstein nodes go unseen.
    #[arg(long, requires = "db", conflicts_with = "evidence_policy")]
    timing_only: bool,
    /// Seconds back from the judgement in which a node's latest evidence bundle counts.
    #[arg(long, requires = "db", default_value_t = 900.0)]
    evidence_window_s: f64,
    /// Seconds of samples each judgement looks at (ending at the judgement).
    #[arg(long, requires = "db", default_value_t = 600.0)]
    pub(crate) window_s: f64,
    /// Rounds before the window, per prober, whose minima make the node's baseline (median).
    #[arg(long, requires = "db", default_value_t = 60)]
    baseline_rounds: usize,
}

impl StoreJudging {
    /// The monitor's [`Judging`]: its config (or the database's world with --allow-unsigned),
    /// the verdict policy, the evidence policy or timing alone, the windows and the baseline.
    pub(crate) fn judging(
        &self,
        policy: Option<&Path>,
        evidence_policy: Option<&Path>,
    ) -> anyhow::Result<Judging> {
        for (name, v) in [
            ("--window-s", self.window_s),
            ("--evidence-window-s", self.evidence_window_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be a finite number > 0, not {v}");
            }
        }
        if self.baseline_rounds == 0 {
            bail!("--baseline-rounds must be at least 1");
        }
        let evidence = match evidence_policy {
            Some(p) => Some(EvidenceConfig {
                policy: locus_fleet::verifier::load_policy(p)?.1,
                window: Duration::from_secs_f64(self.evidence_window_s),
            }),
            None => None,
        };
        let fleet = match &self.config {
            Some(path) => Fleet::Configured(MonitorConfig::load(path, self.allow_unsigned)?),
            None if self.allow_unsigned => {
                tracing::warn!(
                    "--allow-unsigned without --config: every stored row is judged unverified, with \
                     the sites, probers and claims the database holds"
                );
                Fleet::Unsigned
            }
            None => bail!(
                "the monitor needs --config FILE naming the probers and their public keys \
                 (config/monitor.example.toml) so that it judges only rows they signed; \
                 --allow-unsigned judges every stored row unverified instead"
            ),
        };
        let mut policy = locus_fleet::verifier::load_verdict_policy(policy)?
            .calibrated_vtpm(evidence.as_ref().map(|e| &e.policy));
        if self.timing_only {
            policy.require_evidence = false;
            policy.min_anchors = 0;
        } else if evidence.is_none() && (policy.require_evidence || policy.min_anchors > 0) {
            bail!(
                "the verdict policy requires evidence (require_evidence = {}, min_anchors = {}) \
                 but no --evidence-policy was given: every node would be judged inconclusive. Give \
                 --evidence-policy FILE, or --timing-only to judge on round trips alone",
                policy.require_evidence,
                policy.min_anchors
            );
        }
        Ok(Judging {
            fleet,
            policy,
            window: Duration::from_secs_f64(self.window_s),
            baseline_rounds: self.baseline_rounds,
            evidence,
            memory: Default::default(),
        })
    }

    /// `db` with the password of `password_file` (--db-password-file), else of the config's
    /// `db_password_file`.
    pub(crate) fn database(
        &self,
        db: &Database,
        password_file: Option<&Path>,
        judging: &Judging,
    ) -> anyhow::Result<Database> {
        let password_file = password_file.or(match &judging.fleet {
            Fleet::Configured(c) => c.db_password_file.as_deref(),
            Fleet::Unsigned => None,
        });
        with_password(db.clone(), password_file)
    }
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
