//! The monitor (`locus monitor`): judges every node the probers stored, on a schedule, with
//! the verdict engine (`locus_analysis::judge`); stores each verdict, exports
//! `locus_node_verdict`, the region estimate and each prober's round trip against the expected
//! one on `/metrics` (for the rules in `config/alerts.yml` and the dashboard) and posts alerts
//! to Alertmanager.

mod alert;
pub mod config;
mod input;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use locus_analysis::{judge, Judgement, Policy, Verdict};
use tracing::{info, warn};

use crate::daemon::http::{self, Endpoints};
use crate::integrity::Trust;
use crate::metrics::{NodeMetrics, NodePhysics, ProberPhysics, Registry, RejectLabels};
use crate::store::{Store, StoreError, VerdictRecord};

pub use alert::{AlertError, Alertmanagers, UNREACHABLE_FOR};
pub use config::{MonitorConfig, MonitorConfigError};
pub use input::EvidenceConfig;

/// Why a judgement of all nodes failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// Reading or writing the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The probers recorded sites or probers that contradict each other (fix their configs).
    #[error("the probers' world is inconsistent: {}", problems.join("; "))]
    InconsistentWorld { problems: Vec<String> },
    /// A judgement could not be encoded for storage.
    #[error("encoding a judgement: {0}")]
    Json(#[from] serde_json::Error),
}

/// How [`judge_all`] judges: the verdict policy, the sample window, the baseline and, when
/// configured, the stored evidence.
pub struct Judging {
    pub policy: Policy,
    pub window: Duration,
    pub baseline_rounds: usize,
    pub evidence: Option<EvidenceConfig>,
    /// Whose rows count and what the nodes claim.
    pub fleet: Fleet,
    /// Each node's previous verdicts, as this monitor judged them.
    pub memory: VerdictMemory,
}

/// The verdicts this monitor gave, kept in memory: alerts compare against them (resolving a
/// relocation, naming the old region), so rows a database writer adds to `verdicts` cannot
/// change what is alerted. After a restart the database's latest verdict (not one dated in
/// the future) stands in until the node is judged again.
///
/// After a `relocated` verdict the node's baselines are frozen: later judgements compare with
/// the baselines from before the move and adopt no new history, and the node is not
/// `located`, until the operator re-baselines it (`locus monitor --rebaseline NODE`,
/// [`VerdictMemory::rebaselining`]) once the new place is known to be right (REVIEW6 R5).
#[derive(Debug, Default)]
pub struct VerdictMemory {
    nodes: Mutex<BTreeMap<String, Remembered>>,
    /// Nodes the operator re-baselined: their next recall thaws them.
    rebaseline: Mutex<BTreeSet<String>>,
}

#[derive(Debug, Clone)]
struct Remembered {
    last: VerdictRecord,
    last_located: Option<VerdictRecord>,
    /// When the current verdict began (REVIEW3 D: not read back from the database).
    since_ns: i64,
    /// The node's baselines as remembered (REVIEW3 B, REVIEW4 M1).
    baselined: input::Baselines,
    /// When it was judged `relocated`, its baselines frozen since (REVIEW6 R5).
    frozen_since: Option<i64>,
}

/// What the monitor recalls of a node's previous judgement.
#[derive(Debug, Default)]
struct Recalled {
    previous: Option<VerdictRecord>,
    last_located: Option<VerdictRecord>,
    /// When `previous`'s verdict began, if this monitor knows.
    since_ns: Option<i64>,
    /// See [`input::Before`].
    baselined: Option<input::Baselines>,
    /// When the node was judged `relocated` and not re-baselined since (REVIEW6 R5).
    frozen_since: Option<i64>,
}

impl Recalled {
    fn before(&self) -> input::Before<'_> {
        match (&self.previous, &self.baselined) {
            (None, _) => input::Before::Never,
            (Some(_), None) => input::Before::Restarted,
            (Some(_), Some(b)) if self.frozen_since.is_some() => input::Before::Frozen(b),
            (Some(_), Some(b)) => input::Before::Baselined(b),
        }
    }
}

impl VerdictMemory {
    /// A memory in which `nodes` are re-baselined: a node judged `relocated` (its baselines
    /// frozen since) takes its verified history as its baseline again at its next judgement.
    /// For the new place of a node that was moved on purpose, once the operator knows it.
    pub fn rebaselining(nodes: impl IntoIterator<Item = String>) -> Self {
        Self {
            nodes: Mutex::default(),
            rebaseline: Mutex::new(nodes.into_iter().collect()),
        }
    }

    /// The node's previous verdict, its last `located` one and what else this monitor kept.
    fn recall(&self, store: &Store, node: &str, now_ns: i64) -> Result<Recalled, StoreError> {
        let thaw = (self.rebaseline.lock().unwrap_or_else(|e| e.into_inner())).remove(node);
        let memory = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = memory.get(node) {
            return Ok(Recalled {
                previous: Some(r.last.clone()),
                last_located: r.last_located.clone(),
                since_ns: Some(r.since_ns),
                baselined: Some(r.baselined.clone()),
                frozen_since: r.frozen_since.filter(|_| !thaw),
            });
        }
        let previous = store.latest_verdict_until(node, None, now_ns)?;
        let since_ns = match &previous {
            Some(p) => store.verdict_since(node, &p.verdict, now_ns)?,
            None => None,
        };
        let last_located = store.latest_verdict_until(node, Some("located"), now_ns)?;
        // After a restart the baselines from before a move are gone: a node relocated since
        // it was last located stays frozen (never `located`) until re-baselined. (A verdict
        // stored at this very instant is this judgement's own, looked at again.)
        let relocated = store.latest_verdict_until(node, Some("relocated"), now_ns)?;
        let frozen_since = relocated
            .map(|r| r.at_unix_ns)
            .filter(|at| *at < now_ns)
            .filter(|at| last_located.as_ref().is_none_or(|l| l.at_unix_ns < *at))
            .filter(|_| !thaw);
        Ok(Recalled {
            previous,
            last_located,
            since_ns,
            baselined: None,
            frozen_since,
        })
    }

    fn remember(
        &self,
        v: &VerdictRecord,
        last_located: Option<VerdictRecord>,
        since_ns: i64,
        (baselined, frozen_since): (input::Baselines, Option<i64>),
    ) {
        let located = (v.verdict == Verdict::Located.as_str()).then(|| v.clone());
        let relocated = (v.verdict == Verdict::Relocated.as_str()).then_some(v.at_unix_ns);
        let mut memory = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        memory.insert(
            v.node.clone(),
            Remembered {
                last: v.clone(),
                last_located: located.or(last_located),
                since_ns,
                baselined,
                frozen_since: frozen_since.or(relocated),
            },
        );
    }
}

/// Where the monitor's world (sites, probers, claims) and its trust come from.
pub enum Fleet {
    /// Its own config: only rows of its probers, signed by their keys, are judged; each
    /// configured node with rows in the window is judged, with the claim the config gives it.
    Configured(MonitorConfig),
    /// The database, as the probers recorded it, every row taken unverified (`--allow-unsigned`
    /// without a config): whoever can write the database decides the verdicts.
    Unsigned,
}

/// What [`judge_all`] does besides judging.
pub struct Sinks<'a> {
    pub metrics: Option<&'a NodeMetrics>,
    pub alertmanagers: Option<&'a Alertmanagers>,
    /// A firing alert expires this long after it was last sent.
    pub alert_ttl: Duration,
    /// Store each verdict in the node's history (false: a look that changes nothing, as
    /// `locus monitor --once --dry-run` or a back-dated `--at`).
    pub store: bool,
}

/// Serves `/metrics`, `/-/healthy` and `/-/ready` on `listener` and judges every node each
/// `interval` (alerts expire after three) until `stop` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    judging: Judging,
    interval: Duration,
    alertmanagers: Option<Alertmanagers>,
    stop: impl Future<Output = ()>,
) {
    let mut registry = Registry::default();
    let metrics = NodeMetrics::new(&mut registry);
    crate::self_metrics::register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
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
    let mut tick = tokio::time::interval(interval);
    // A judgement slower than the interval is followed by the next one, not by a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // How long the last judgement took: alerts are re-sent once per max(interval, that).
    let mut last_took = Duration::ZERO;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let (s, j, m) = (store.clone(), judging.clone(), metrics.clone());
                let ams = alertmanagers.clone();
                // Three re-send periods, as the docs say, where a period is the interval or the
                // last judgement's duration, whichever is longer (a large fleet or a loaded
                // host must not let a firing alert lapse between two judgements).
                let ttl = interval.max(last_took) * 3;
                let started = Instant::now();
                let res = tokio::task::spawn_blocking(move || {
                    let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                    let sinks = Sinks {
                        metrics: Some(&m),
                        alertmanagers: ams.as_ref(),
                        alert_ttl: ttl,
                        store: true,
                    };
                    judge_all(&mut s, &j, unix_now_ns(), &sinks)
                })
                .await;
                last_took = started.elapsed();
                match res {
                    Ok(Ok((js, failed))) => {
                        ready.store(true, Ordering::Release);
                        for e in failed {
                            warn!("alert not delivered: {e}");
                        }
                        info!(nodes = js.len(), "judged");
                    }
                    Ok(Err(e)) => warn!("judging failed: {e}"),
                    Err(e) => warn!("judging failed: {e}"),
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    info!("monitor stopped");
}

/// One node judged, before anything is stored, remembered or alerted.
pub struct NodeJudged {
    pub judgement: Judgement,
    claim: String,
    recalled: Recalled,
    /// What to remember of the node's baselines for the next judgement (REVIEW4 M1).
    baselined: input::Baselines,
    /// The node's rows that were not used.
    rejected: input::Rejected,
}

/// Every node judged as of one instant, with nothing stored and nothing sent: what
/// [`judge_all`] records and alerts, and what `locus judge --db` prints.
pub struct Judged {
    pub nodes: Vec<NodeJudged>,
    world: locus_analysis::World,
    from_ns: i64,
    now_ns: i64,
    /// Landmark rounds that were not used.
    landmarks_rejected: input::Rejected,
}

impl Judged {
    /// The judgements, in the order judged.
    pub fn judgements(self) -> Vec<Judgement> {
        self.nodes.into_iter().map(|n| n.judgement).collect()
    }
}

/// Judges every node with rounds in the window ending at `now_ns`, stores the verdicts,
/// updates the metrics and posts alerts; returns the judgements and the alerts not delivered.
pub fn judge_all(
    store: &mut Store,
    judging: &Judging,
    now_ns: i64,
    sinks: &Sinks<'_>,
) -> Result<(Vec<Judgement>, Vec<AlertError>), MonitorError> {
    let judged = judge_nodes(store, judging, now_ns)?;
    record(store, judging, judged, sinks)
}

/// Judges every node with rounds in the window ending at `now_ns` from `store`, which it only
/// reads: the world (the config's, with the window's accepted landmark minima, or the
/// database's), each node's verified rows, baseline and evidence, and its previous verdict
/// (this monitor's memory, else the database's).
pub fn judge_nodes(store: &Store, judging: &Judging, now_ns: i64) -> Result<Judged, MonitorError> {
    let from = now_ns.saturating_sub(ns_of(judging.window));
    let unchecked = Trust::unchecked();
    let mut landmarks_rejected = input::Rejected::default();
    let (world, trust, nodes) = match &judging.fleet {
        Fleet::Configured(c) => {
            let stored = store.nodes_between(from, now_ns)?;
            let strangers: Vec<&str> = stored
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| !c.claims.contains_key(*n))
                .collect();
            if !strangers.is_empty() {
                warn!(
                    nodes = %strangers.join(", "),
                    "rows of nodes not in the monitor's config are not judged"
                );
            }
            // A configured node without any row in the window is not judged (its last verdict
            // goes stale and `LocusVerdictStale` fires), as before keys: judging it
            // `unreachable` would alert for every node whose probers have not started yet.
            let nodes: Vec<(String, String)> = stored
                .iter()
                .filter_map(|(n, _)| Some((n.clone(), c.claims.get(n)?.clone())))
                .collect();
            let mut world = c.world.clone();
            world.landmarks = input::landmarks(
                store,
                &c.trust,
                Some(&c.landmarks),
                (from, now_ns),
                &mut landmarks_rejected,
            )?;
            if !landmarks_rejected.is_empty() {
                warn!(
                    rejected = %landmarks_rejected.describe(),
                    "landmark rounds rejected (not used)"
                );
            }
            (world, &c.trust, nodes)
        }
        Fleet::Unsigned => {
            let world = input::world(store, from, now_ns)?;
            let problems = world.problems();
            if !problems.is_empty() {
                return Err(MonitorError::InconsistentWorld { problems });
            }
            (world, &unchecked, store.nodes_between(from, now_ns)?)
        }
    };
    let mut bundle_rejects = BTreeMap::new();
    let bundles = match &judging.evidence {
        Some(e) => Some(input::bundles(
            store,
            trust,
            e,
            now_ns,
            &mut bundle_rejects,
        )?),
        None => None,
    };
    let mut out = Vec::new();
    for (node, claim) in nodes {
        let recalled = judging.memory.recall(store, &node, now_ns)?;
        let mut rejected = bundle_rejects.remove(&node).unwrap_or_default();
        let mut holds = Vec::new();
        let chosen = bundles.as_ref().and_then(|b| b.get(&node));
        let evidence = match (&judging.evidence, chosen) {
            (Some(e), Some(b)) => {
                holds.extend(b.withheld.iter().map(|w| format!("evidence missing: {w}")));
                let found = input::verify_evidence(store, trust, e, &node, &b.chosen, now_ns)?;
                holds.extend(found.holds.iter().cloned());
                Some(found)
            }
            _ => None,
        };
        let found = evidence.as_ref().and_then(|e| e.found.as_ref());
        let keys = found.map_or(&[][..], |f| &f.evidence.session_keys[..]);
        let gathered = input::node_input(
            store,
            trust,
            &node,
            &claim,
            (from, now_ns),
            judging.baseline_rounds,
            keys,
            recalled.before(),
            &mut rejected,
        )?;
        let (mut input, accepted) = (gathered.input, gathered.accepted);
        if let Some(at) = recalled.frozen_since {
            holds.push(format!(
                "judged relocated at {} and not re-baselined since: compared with its \
                 baselines from before the move, which new history does not replace, until \
                 the operator re-baselines it (`locus monitor --rebaseline {node}`)",
                crate::time::rfc3339(at.div_euclid(1_000_000_000))
            ));
        }
        holds.extend(gathered.baseline_missing);
        holds.extend(gathered.over_cap);
        if let (Some(f), Some(e)) = (found, &evidence) {
            if e.node_level {
                f.apply_to(&mut input);
            }
            own_evidence_rtts(&mut input, chosen.map(|b| &b.chosen[..]), keys);
        }
        let mut j = judge(&world, &input, &judging.policy);
        carried_across_gap(&mut j, &gathered.carried);
        hold(&mut j, holds);
        if !rejected.is_empty() {
            let what = rejected.describe();
            warn!(node, rejected = %what, "rows rejected (not judged)");
            if accepted == 0 {
                // Rounds were stored but none can be believed: say so rather than judge the
                // node unreachable on an absence the database's writer may have caused.
                j.verdict = Verdict::Inconclusive;
                j.reasons = vec![format!(
                    "inconclusive: every stored row of the window was rejected: {what}"
                )];
            } else {
                j.reasons
                    .push(format!("rows rejected (not judged): {what}"));
            }
        }
        out.push(NodeJudged {
            judgement: j,
            claim,
            recalled,
            baselined: gathered.baselined,
            rejected,
        });
    }
    Ok(Judged {
        nodes: out,
        world,
        from_ns: from,
        now_ns,
        landmarks_rejected,
    })
}

/// What [`judge_all`] does with the judgements: stores each verdict (when `sinks.store`),
/// remembers it, posts its alerts and sets its metrics.
fn record(
    store: &mut Store,
    judging: &Judging,
    judged: Judged,
    sinks: &Sinks<'_>,
) -> Result<(Vec<Judgement>, Vec<AlertError>), MonitorError> {
    let Judged {
        nodes,
        world,
        from_ns: from,
        now_ns,
        landmarks_rejected,
    } = judged;
    count_rejected(sinks, &landmarks_rejected);
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for NodeJudged {
        judgement: j,
        claim,
        recalled,
        baselined,
        rejected,
    } in nodes
    {
        count_rejected(sinks, &rejected);
        let node = j.name.clone();
        let (previous, last_located) = (recalled.previous, recalled.last_located);
        let verdict = j.verdict.as_str();
        // When the current verdict began: stable across judgements, so that a re-sent alert
        // keeps its start.
        // Kept in memory (after a restart: the stored verdicts up to now), so that a row dated
        // in the future cannot move it (REVIEW3 D).
        let since_ns = match &previous {
            Some(p) if p.verdict == verdict => recalled.since_ns,
            _ => None,
        }
        .unwrap_or(now_ns);
        let radius_km = j.region.as_ref().and_then(|r| r.radius_km);
        let record = VerdictRecord {
            node: node.clone(),
            claim: claim.clone(),
            at_unix_ns: now_ns,
            window_start_unix_ns: from,
            verdict: verdict.to_owned(),
            reasons: j.reasons.clone(),
            radius_km,
            judgement: serde_json::to_string(&j)?,
        };
        if sinks.store {
            store.insert_verdict(&record)?;
        }
        judging.memory.remember(
            &record,
            last_located.clone(),
            since_ns,
            (baselined, recalled.frozen_since),
        );
        if let Some(ams) = sinks.alertmanagers {
            let last_located = (j.verdict == Verdict::Located)
                .then_some(record)
                .or(last_located);
            let alerts = alert::alerts_for(
                &j,
                &alert::AlertContext {
                    previous: previous.as_ref(),
                    last_located: last_located.as_ref(),
                    since_unix_s: since_ns.div_euclid(1_000_000_000),
                    now_unix_s: now_ns.div_euclid(1_000_000_000),
                    sent_unix_s: unix_now_ns().div_euclid(1_000_000_000),
                    firing_for: sinks.alert_ttl,
                    generator_url: ams.generator_url(),
                },
            );
            failed.extend(ams.post(&alerts));
        }
        if let Some(m) = sinks.metrics {
            m.set_verdict(
                &node,
                &claim,
                j.verdict.as_str(),
                &physics_of(&j, world.site(&claim).map(|s| (s.lat, s.lon))),
                now_ns as f64 / 1e9,
            );
        }
        out.push(j);
    }
    Ok((out, failed))
}

/// Adds rejected rows to `locus_rows_rejected_total{table, reason}`.
fn count_rejected(sinks: &Sinks<'_>, rejected: &input::Rejected) {
    if let Some(m) = sinks.metrics {
        for ((table, why), n) in &rejected.0 {
            m.rows_rejected
                .get_or_create(&RejectLabels {
                    table: (*table).to_owned(),
                    reason: why.as_str().to_owned(),
                })
                .inc_by(*n);
        }
    }
}

/// A node that would be `located` while something it must be judged on is missing or
/// contradicts itself is `inconclusive` with those reasons first; any other verdict stands,
/// with the reasons added.
/// A gap in a prober's newest baseline rounds (a round missing: lost, or deleted by whoever
/// writes the database) keeps the smaller minimum remembered from before it (REVIEW4 M1);
/// say so. A shift from the window's first round against such a minimum cannot be told from
/// a lasting route change the gap hid from adoption (REVIEW5 M5, REVIEW6 R6): it is held
/// `inconclusive`, naming the gap, rather than `relocated`.
fn carried_across_gap(j: &mut Judgement, carried: &[input::Carried]) {
    if carried.is_empty() {
        return;
    }
    let named: Vec<String> = (carried.iter())
        .map(|c| {
            format!(
                "{} ({:.2} ms remembered, {:.2} ms in its history)",
                c.prober,
                c.remembered_ns as f64 / 1e6,
                c.history_ns as f64 / 1e6
            )
        })
        .collect();
    let gap = format!(
        "baseline: a gap in the newest baseline rounds of {}: the minimum remembered from \
         before the gap stands in",
        named.join(", ")
    );
    let reloc = j.relocation.as_ref().filter(|r| r.detected);
    let from_start = reloc.is_some_and(|r| {
        r.onset_round.unwrap_or(0) <= 1
            && (r.shifts.iter())
                .any(|s| s.alarm_round.is_some() && carried.iter().any(|c| c.prober == s.prober))
    });
    if j.verdict == Verdict::Relocated && from_start {
        j.verdict = Verdict::Inconclusive;
        let mut reasons = vec![format!(
            "inconclusive: the shift from the window's first round is judged against minima \
             carried across a gap ({gap}): a move before the window cannot be told from a \
             lasting route change whose rounds are missing"
        )];
        reasons.append(&mut j.reasons);
        j.reasons = reasons;
    } else {
        j.reasons.push(gap);
    }
}

fn hold(j: &mut Judgement, holds: Vec<String>) {
    if holds.is_empty() {
        return;
    }
    if j.verdict == Verdict::Located {
        j.verdict = Verdict::Inconclusive;
        let mut reasons: Vec<String> = holds.iter().map(|h| format!("inconclusive: {h}")).collect();
        reasons.append(&mut j.reasons);
        j.reasons = reasons;
    } else {
        j.reasons.extend(holds);
    }
}

/// The region estimate and each used prober's round trips of a judgement, in base units.
fn physics_of(j: &Judgement, claim: Option<(f64, f64)>) -> NodePhysics {
    let region = j.region.as_ref();
    NodePhysics {
        claim_center: claim,
        region_center: region.and_then(|r| r.estimate).map(|e| (e.lat, e.lon)),
        region_radius_m: region.and_then(|r| r.radius_km).map(|km| km * 1e3),
        probers: j
            .distances
            .iter()
            .filter(|d| d.used)
            .map(|d| ProberPhysics {
                prober: d.prober.clone(),
                min_rtt_s: d.min_eff_rtt_ms.map(|ms| ms / 1e3),
                expected_rtt_s: d.expected_rtt_ms / 1e3,
                excess_s: d.excess_ms.map(|ms| ms / 1e3),
            })
            .collect(),
    }
}

/// A prober whose own bundle verified is held to the evidence bound on that very request: its
/// round trip is paired with the bundle's in-TD time, not with other requests' round trips.
fn own_evidence_rtts(
    input: &mut locus_analysis::NodeInput,
    recs: Option<&[crate::store::EvidenceRecord]>,
    keys: &[locus_analysis::VerifiedKey],
) {
    for s in &mut input.probes {
        let own = keys
            .iter()
            .any(|k| k.prober.as_deref() == Some(s.prober.as_str()));
        let rec = recs.and_then(|r| r.iter().find(|r| r.prober == s.prober));
        if let (true, Some(rtt)) = (own, rec.and_then(|r| r.rtt_ns)) {
            s.evidence_rtt_ns = vec![rtt];
        }
    }
}

fn ns_of(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Unix nanoseconds now.
pub fn unix_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(node: &str, at: i64, verdict: &str) -> VerdictRecord {
        VerdictRecord {
            node: node.into(),
            claim: "fra".into(),
            at_unix_ns: at,
            window_start_unix_ns: at - 600,
            verdict: verdict.into(),
            reasons: Vec::new(),
            radius_km: None,
            judgement: "{}".into(),
        }
    }

    /// REVIEW2 F9: alerts compare against the verdicts this monitor gave, not rows a database
    /// writer adds (a later `located` would resolve a relocation alert and fake the old
    /// region); at start-up a stored verdict dated in the future is ignored too.
    #[test]
    fn previous_verdicts_come_from_memory_not_from_rows_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("v.db")).unwrap();
        let memory = VerdictMemory::default();
        store.insert_verdict(&verdict("n", 100, "located")).unwrap();
        store.insert_verdict(&verdict("n", 900, "located")).unwrap();
        let r = memory.recall(&store, "n", 200).unwrap();
        assert_eq!(r.previous.map(|v| v.at_unix_ns), Some(100));
        assert_eq!(r.last_located.map(|v| v.at_unix_ns), Some(100));
        // REVIEW3 D: the start of the verdict is not moved by the row dated in the future.
        assert_eq!(r.since_ns, Some(100));

        let relocated = verdict("n", 200, "relocated");
        store.insert_verdict(&relocated).unwrap();
        memory.remember(
            &relocated,
            Some(verdict("n", 100, "located")),
            200,
            (input::Baselines::new(), None),
        );
        // A writer's row, newer than the monitor's own.
        store.insert_verdict(&verdict("n", 250, "located")).unwrap();
        let r = memory.recall(&store, "n", 300).unwrap();
        assert_eq!(r.previous.unwrap().verdict, "relocated");
        assert_eq!(r.last_located.map(|v| v.at_unix_ns), Some(100));
        assert_eq!(r.since_ns, Some(200));
    }
}
