//! `locus lab --serve`: the scenario's world (responders, anchors, delay relay, moves on
//! schedule) without the lab's own probers, kept running (until interrupted, unless a duration
//! is given) so that the operators' tools watch it: one `locus prober --config` daemon per
//! prober site and `locus monitor` on their database. Before it announces itself it writes
//! `OUT/fleet/prober-<id>.toml` (one per prober, every path through the relay, the scenario's
//! landmarks and every other prober's echo as `[[landmark]]`s, each daemon on its prober's own
//! loopback address and a fixed port, answering its peers' echoes there on [`ECHO_PORT`]) with
//! its identity key `OUT/fleet/prober-<id>.key`, `OUT/fleet/monitor.toml` (sites, the probers'
//! public keys, the nodes' claims, every landmark), `OUT/fleet/verdict-policy.toml`, the database
//! (`OUT/fleet/locus.db`, empty), `OUT/fleet/prometheus.yml` (scraping those addresses and the
//! monitor's default one, with config/alerts.yml as `alerts.yml`), `OUT/fleet/alertmanager.yml`,
//! and the lab's trust files and evidence policy.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use locus_analysis::verify::bundle::nonce::NonceLedger;
use serde::Serialize;
use tokio::sync::watch;

use locus_prober::identity::ProberIdentity;

use crate::addr;
use crate::emulation::{prober_id, NONCE_ISSUER};
use crate::relay::Relay;
use crate::scenario::Scenario;
use crate::world::{self, World};

/// Directory (under the output) with the daemons' configs, their database and the policy.
pub(crate) const FLEET_DIR: &str = "fleet";
/// Length of a daemon round: as the lab's own rounds, so the relocation policy fits both.
const ROUND_S: f64 = 1.0;
/// The UDP port each daemon answers its peers' echoes on (`[echo] listen`, on the prober's own
/// loopback address); they reach it through the relay, at the path's delay.
const ECHO_PORT: u16 = 4433;
/// The daemons ask for evidence this often (the lab's in-TD timings and bundles).
const EVIDENCE_INTERVAL_S: f64 = 10.0;

/// How `--serve` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeOptions {
    /// Stop after this long; None: run until cancelled.
    pub duration: Option<Duration>,
    /// The port every prober daemon's HTTP endpoints listen on (each prober has its own
    /// loopback address); 0: a free port each (the generated prometheus.yml then cannot name
    /// them).
    pub prober_port: u16,
    /// Where the generated prometheus.yml expects the monitor.
    pub monitor_listen: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            duration: None,
            prober_port: locus_fleet::daemon::config::DEFAULT_PROBER_PORT,
            monitor_listen: format!(
                "127.0.0.1:{}",
                locus_fleet::daemon::config::DEFAULT_MONITOR_PORT
            ),
        }
    }
}

/// The rules the generated prometheus.yml loads.
const ALERT_RULES: &str = include_str!("../../config/alerts.yml");
/// A single-node Alertmanager configuration for the walk-through.
const ALERTMANAGER_CONFIG: &str = include_str!("../../config/prometheus/alertmanager.yml");

/// What `--serve` announces on stdout once the world runs (one JSON line).
#[derive(Serialize)]
pub struct Serving {
    /// Prober daemon configs, one per prober site.
    pub configs: Vec<PathBuf>,
    /// The database those configs write to.
    pub db: PathBuf,
    /// Verdict policy for `locus monitor --policy`.
    pub policy: PathBuf,
    /// The monitor's config (`locus monitor --config`): sites, probers with their keys, claims.
    pub monitor_config: PathBuf,
    /// Evidence policy (the lab's trust roots) for `locus monitor --evidence-policy`.
    pub evidence_policy: PathBuf,
    /// Prometheus configuration scraping the daemons and the monitor.
    pub prometheus_config: PathBuf,
    /// Alertmanager configuration (one receiver, no notifications).
    pub alertmanager_config: PathBuf,
    /// Each prober daemon's `/metrics` address (`host:port`; port 0 when not fixed).
    pub prober_metrics: Vec<String>,
    /// Seconds the world keeps running; null: until interrupted.
    pub duration_s: Option<f64>,
}

/// Builds and runs the world for `s.duration_s` seconds (or until cancelled); `on_ready` is
/// called once the configs are written and the relay's clock (and so every move) started.
pub(crate) async fn run(
    s: &Scenario,
    out: &Path,
    opts: &ServeOptions,
    cancel: watch::Receiver<bool>,
    on_ready: impl FnOnce(&Serving),
) -> anyhow::Result<()> {
    let relay = Relay::start(s.seed);
    let result = match world::build(s, out, &relay, &cancel).await {
        Ok(w) => {
            let r = serve(s, out, opts, &relay, cancel, &w, on_ready).await;
            w.shutdown().await;
            r
        }
        Err(e) => Err(e),
    };
    relay.stop();
    result
}

async fn serve(
    s: &Scenario,
    out: &Path,
    opts: &ServeOptions,
    relay: &Arc<Relay>,
    mut cancel: watch::Receiver<bool>,
    w: &World,
    on_ready: impl FnOnce(&Serving),
) -> anyhow::Result<()> {
    // Evidence the daemons collect is checked against the lab's trust roots; nonces are the
    // daemons' own, so the lab's ledger stays empty.
    crate::trust::write(out, s, &w.trust, &NonceLedger::new(NONCE_ISSUER))?;
    let fleet = out.join(FLEET_DIR);
    std::fs::create_dir_all(&fleet).with_context(|| format!("creating {}", fleet.display()))?;
    let mut configs = Vec::new();
    let mut probers = Vec::new();
    let mut prober_metrics = Vec::new();
    for i in 0..s.probers.len() {
        let mut targets = Vec::new();
        for (j, node) in w.nodes.iter().enumerate() {
            let plan = world::prober_plan(s, i, j);
            let link = relay.udp_link(addr::prober_link(i, j), node.server.local_addr()?, &plan)?;
            targets.push(TargetEntry {
                name: node.name.clone(),
                address: link.to_string(),
                claim: s.sites[node.claim].name.clone(),
                spki: hex::encode(node.server.session_key().spki_der()),
            });
        }
        let mut landmarks = Vec::new();
        for (l, lm) in w.landmarks.iter().enumerate() {
            let plan = world::landmark_plan(s, i, l);
            let link = relay.udp_link(addr::landmark_link(i, l), lm.server.local_addr()?, &plan)?;
            landmarks.push(LandmarkEntry {
                name: lm.name.clone(),
                site: s.sites[lm.site].name.clone(),
                address: link.to_string(),
                spki: Some(hex::encode(lm.server.session_key().spki_der())),
            });
        }
        // Probers measure each other: every other daemon's echo, through the relay, is a
        // landmark at that prober's site (its key is new each start: learned, not pinned).
        for k in (0..s.probers.len()).filter(|k| *k != i) {
            let plan = world::peer_plan(s, i, k);
            let echo = SocketAddr::new(addr::prober(k).ip(), ECHO_PORT);
            let link = relay.udp_link(addr::peer_link(i, k), echo, &plan)?;
            landmarks.push(LandmarkEntry {
                name: prober_id(s, k, s.probers[k]),
                site: s.sites[s.probers[k]].name.clone(),
                address: link.to_string(),
                spki: None,
            });
        }
        let id = prober_id(s, i, s.probers[i]);
        let key_file = fleet.join(format!("prober-{id}.key"));
        // A world served again into the same directory keeps its probers' keys.
        let identity = if key_file.exists() {
            ProberIdentity::load(&key_file)?
        } else {
            let identity = ProberIdentity::generate();
            identity.write_new(&key_file)?;
            identity
        };
        probers.push(MonitorProber {
            id: id.clone(),
            site: s.sites[s.probers[i]].name.clone(),
            public_key: identity.public_key().to_string(),
        });
        let path = fleet.join(format!("prober-{id}.toml"));
        let listen = format!("{}:{}", addr::prober(i).ip(), opts.prober_port);
        let text = daemon_config(s, i, &id, &key_file, &listen, targets, landmarks)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        configs.push(path);
        prober_metrics.push(listen);
    }
    let write = |name: &str, text: &str| {
        let path = fleet.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        anyhow::Ok(path)
    };
    let monitor_config = write("monitor.toml", &monitor_config_text(s, w, probers)?)?;
    let policy = write("verdict-policy.toml", VERDICT_POLICY)?;
    write("alerts.yml", ALERT_RULES)?;
    let prometheus_config = write(
        "prometheus.yml",
        &prometheus_yml(&prober_metrics, &opts.monitor_listen),
    )?;
    let alertmanager_config = write("alertmanager.yml", ALERTMANAGER_CONFIG)?;
    // The database exists before the daemons and the monitor start, so they cannot race.
    let db = fleet.join("locus.db");
    locus_fleet::store::Store::open(&db).with_context(|| format!("creating {}", db.display()))?;

    relay.start_clock();
    let started = Instant::now();
    on_ready(&Serving {
        configs,
        db,
        policy,
        monitor_config,
        evidence_policy: out.join(crate::trust::POLICY),
        prometheus_config,
        alertmanager_config,
        prober_metrics,
        duration_s: opts.duration.map(|d| d.as_secs_f64()),
    });
    let until = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d.saturating_sub(started.elapsed())).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = until => Ok(()),
        _ = cancel.wait_for(|c| *c) => Err(world::Interrupted.into()),
    }
}

/// Scrapes every prober daemon and the monitor, evaluates the rules (written next to it as
/// alerts.yml) and sends to no Alertmanager: in the walk-through the monitor posts its alerts
/// itself, and one path per alert is the rule (docs/monitoring.md).
fn prometheus_yml(probers: &[String], monitor: &str) -> String {
    let quoted = |v: &[String]| {
        v.iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "# Prometheus for a served lab: prometheus --config.file=THIS_FILE\n\
         # The rules' alerts show at http://127.0.0.1:9090/alerts; to send them to Alertmanager\n\
         # instead of `locus monitor --alertmanager`, add:\n\
         #   alerting: {{ alertmanagers: [{{ static_configs: [{{ targets: [\"127.0.0.1:9093\"] }}] }}] }}\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         rule_files: [alerts.yml]\n\
         scrape_configs:\n\
         \x20 - job_name: locus-prober\n\
         \x20   static_configs: [{{ targets: [{}] }}]\n\
         \x20 - job_name: locus-monitor\n\
         \x20   static_configs: [{{ targets: [{}] }}]\n",
        quoted(probers),
        quoted(&[monitor.to_owned()]),
    )
}

/// The defaults: evidence (verified by the monitor from the daemons' stored bundles) and an
/// anchor report are required, as in the lab's own run; the lab root is accepted, and the
/// evidence round trip gets `Policy::lab()`'s allowance (a test checks they agree).
const VERDICT_POLICY: &str = "\
# Verdict policy for `locus monitor` on a served lab: the defaults of config/policy.example.toml
# (evidence and anchors required; the monitor verifies the daemons' bundles with
# --evidence-policy ../policy.toml), except that the lab's own TDX root is accepted and evidence
# round trips may exceed echo round trips by what the lab's relay adds to a large answer.
accept_lab_root = true
max_evidence_excess_ms = 100.0
";

#[derive(Serialize)]
struct DaemonConfig<'a> {
    db: &'a str,
    listen: String,
    bind: String,
    prober: ProberEntry<'a>,
    probe: ProbeEntry,
    sites: Vec<SiteEntry<'a>>,
    targets: Vec<TargetEntry>,
    landmark: Vec<LandmarkEntry>,
    echo: EchoEntry,
}

#[derive(Serialize)]
struct ProberEntry<'a> {
    id: &'a str,
    site: &'a str,
    key_file: &'a Path,
}

#[derive(Serialize)]
struct MonitorConfig<'a> {
    sites: Vec<SiteEntry<'a>>,
    probers: Vec<MonitorProber>,
    nodes: Vec<NodeEntry>,
    landmark: Vec<MonitorLandmark>,
}

#[derive(Serialize)]
struct MonitorLandmark {
    name: String,
    site: String,
}

#[derive(Serialize)]
struct MonitorProber {
    id: String,
    site: String,
    public_key: String,
}

#[derive(Serialize)]
struct NodeEntry {
    name: String,
    claim: String,
}

fn site_entries(s: &Scenario) -> Vec<SiteEntry<'_>> {
    s.sites
        .iter()
        .map(|x| SiteEntry {
            name: &x.name,
            lat: x.lat,
            lon: x.lon,
        })
        .collect()
}

/// The `locus monitor --config` file: the scenario's sites, the daemons' keys, every node's
/// claim, every landmark's site.
fn monitor_config_text(
    s: &Scenario,
    w: &World,
    probers: Vec<MonitorProber>,
) -> anyhow::Result<String> {
    let config = MonitorConfig {
        sites: site_entries(s),
        probers,
        nodes: w
            .nodes
            .iter()
            .map(|n| NodeEntry {
                name: n.name.clone(),
                claim: s.sites[n.claim].name.clone(),
            })
            .collect(),
        landmark: (w.landmarks.iter())
            .map(|l| MonitorLandmark {
                name: l.name.clone(),
                site: s.sites[l.site].name.clone(),
            })
            // every prober's echo, as its peers name it
            .chain((0..s.probers.len()).map(|k| MonitorLandmark {
                name: prober_id(s, k, s.probers[k]),
                site: s.sites[s.probers[k]].name.clone(),
            }))
            .collect(),
    };
    Ok(format!(
        "# Monitor for a served lab: `locus monitor --config THIS_FILE`.\n{}",
        toml::to_string(&config)?
    ))
}

#[derive(Serialize)]
struct ProbeEntry {
    rate_hz: f64,
    round_s: f64,
    evidence_interval_s: f64,
    anchors: Vec<String>,
}

#[derive(Serialize)]
struct SiteEntry<'a> {
    name: &'a str,
    lat: f64,
    lon: f64,
}

#[derive(Serialize)]
struct TargetEntry {
    name: String,
    address: String,
    claim: String,
    spki: String,
}

#[derive(Serialize)]
struct LandmarkEntry {
    name: String,
    site: String,
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    spki: Option<String>,
}

#[derive(Serialize)]
struct EchoEntry {
    listen: String,
}

/// A `locus prober --config` file for prober `i`: probes leave from the prober's own host and
/// its HTTP endpoints listen there on `listen`.
fn daemon_config(
    s: &Scenario,
    i: usize,
    id: &str,
    key_file: &Path,
    listen: &str,
    targets: Vec<TargetEntry>,
    landmark: Vec<LandmarkEntry>,
) -> anyhow::Result<String> {
    let host = addr::prober(i).ip();
    let config = DaemonConfig {
        db: "locus.db",
        listen: listen.to_owned(),
        bind: format!("{host}:0"),
        prober: ProberEntry {
            id,
            site: &s.sites[s.probers[i]].name,
            key_file,
        },
        probe: ProbeEntry {
            rate_hz: s.rate_hz,
            round_s: ROUND_S,
            evidence_interval_s: EVIDENCE_INTERVAL_S,
            anchors: (0..s.anchors.len())
                .map(|k| world::anchor_name(s, k, s.anchors[k]))
                .collect(),
        },
        sites: site_entries(s),
        targets,
        landmark,
        echo: EchoEntry {
            listen: format!("{host}:{ECHO_PORT}"),
        },
    };
    Ok(format!(
        "# Prober daemon for a served lab: `locus prober --config THIS_FILE`.\n{}",
        toml::to_string(&config)?
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_served_verdict_policy_is_the_labs() {
        let p = locus_analysis::Policy::from_toml_str(super::VERDICT_POLICY).unwrap();
        assert_eq!(p, locus_analysis::Policy::lab());
    }
}
