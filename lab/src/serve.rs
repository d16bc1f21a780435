//! `locus lab --serve`: the scenario's world (responders, anchors, delay relay, moves on
//! schedule) without the lab's own probers, kept running so that the operators' tools watch
//! it: one `locus prober --config` daemon per prober site and `locus monitor` on their
//! database. Writes `OUT/fleet/prober-<id>.toml` (one per prober, every path through the
//! relay, the scenario's landmarks as `[[landmark]]`), `OUT/fleet/verdict-policy.toml`, and the lab's trust files and evidence policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use locus_analysis::verify::bundle::nonce::NonceLedger;
use serde::Serialize;
use tokio::sync::watch;

use crate::addr;
use crate::emulation::{prober_id, NONCE_ISSUER};
use crate::relay::Relay;
use crate::scenario::Scenario;
use crate::world::{self, World};

/// Directory (under the output) with the daemons' configs, their database and the policy.
pub(crate) const FLEET_DIR: &str = "fleet";
/// Length of a daemon round: as the lab's own rounds, so the relocation policy fits both.
const ROUND_S: f64 = 1.0;
/// The daemons ask for evidence this often (the lab's in-TD timings and bundles).
const EVIDENCE_INTERVAL_S: f64 = 10.0;

/// What `--serve` announces on stdout once the world runs (one JSON line).
#[derive(Serialize)]
pub struct Serving {
    /// Prober daemon configs, one per prober site.
    pub configs: Vec<PathBuf>,
    /// The database those configs write to.
    pub db: PathBuf,
    /// Verdict policy for `locus monitor --policy`.
    pub policy: PathBuf,
    /// Evidence policy (the lab's trust roots) for `locus monitor --evidence-policy`.
    pub evidence_policy: PathBuf,
    /// Seconds the world keeps running.
    pub duration_s: f64,
}

/// Builds and runs the world for `s.duration_s` seconds (or until cancelled); `on_ready` is
/// called once the configs are written and the relay's clock (and so every move) started.
pub(crate) async fn run(
    s: &Scenario,
    out: &Path,
    cancel: watch::Receiver<bool>,
    on_ready: impl FnOnce(&Serving),
) -> anyhow::Result<()> {
    let relay = Relay::start(s.seed);
    let result = match world::build(s, out, &relay, &cancel).await {
        Ok(w) => {
            let r = serve(s, out, &relay, cancel, &w, on_ready).await;
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
                spki: hex::encode(lm.server.session_key().spki_der()),
            });
        }
        let id = prober_id(s, i, s.probers[i]);
        let path = fleet.join(format!("prober-{id}.toml"));
        let text = daemon_config(s, i, &id, targets, landmarks)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        configs.push(path);
    }
    let policy = fleet.join("verdict-policy.toml");
    std::fs::write(&policy, VERDICT_POLICY)
        .with_context(|| format!("writing {}", policy.display()))?;

    relay.start_clock();
    let started = Instant::now();
    on_ready(&Serving {
        configs,
        db: fleet.join("locus.db"),
        policy,
        evidence_policy: out.join(crate::trust::POLICY),
        duration_s: s.duration_s,
    });
    let until = Duration::from_secs_f64(s.duration_s);
    tokio::select! {
        () = tokio::time::sleep(until.saturating_sub(started.elapsed())) => Ok(()),
        _ = cancel.wait_for(|c| *c) => Err(world::Interrupted.into()),
    }
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
max_evidence_excess_ms = 30.0
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
}

#[derive(Serialize)]
struct ProberEntry<'a> {
    id: &'a str,
    site: &'a str,
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
    spki: String,
}

/// A `locus prober --config` file for prober `i`: probes leave from the prober's own host and
/// its HTTP endpoints listen there on a free port.
fn daemon_config(
    s: &Scenario,
    i: usize,
    id: &str,
    targets: Vec<TargetEntry>,
    landmark: Vec<LandmarkEntry>,
) -> anyhow::Result<String> {
    let host = addr::prober(i).ip();
    let config = DaemonConfig {
        db: "locus.db",
        listen: format!("{host}:0"),
        bind: format!("{host}:0"),
        prober: ProberEntry {
            id,
            site: &s.sites[s.probers[i]].name,
        },
        probe: ProbeEntry {
            rate_hz: s.rate_hz,
            round_s: ROUND_S,
            evidence_interval_s: EVIDENCE_INTERVAL_S,
            anchors: (0..s.anchors.len())
                .map(|k| world::anchor_name(s, k, s.anchors[k]))
                .collect(),
        },
        sites: s
            .sites
            .iter()
            .map(|x| SiteEntry {
                name: &x.name,
                lat: x.lat,
                lon: x.lon,
            })
            .collect(),
        targets,
        landmark,
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
