//! The monitor (`locus monitor`): judges every node the probers stored, on a schedule, with
//! the verdict engine (`locus_analysis::judge`); stores each verdict, exports
//! `locus_node_verdict` and `locus_region_radius_km` on `/metrics` (for the rules in
//! `config/alerts.yml`) and posts alerts to Alertmanager.

mod alert;
mod input;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use locus_analysis::{judge, Judgement, Policy};
use tracing::{info, warn};

use crate::daemon::http::{self, Endpoints};
use crate::metrics::{NodeMetrics, Registry};
use crate::store::{Store, StoreError, VerdictRecord};

pub use alert::AlertError;
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
}

/// What [`judge_all`] does besides judging.
pub struct Sinks<'a> {
    pub metrics: Option<&'a NodeMetrics>,
    pub alertmanagers: &'a [String],
    /// A firing alert expires this long after it was last sent.
    pub alert_ttl: Duration,
}

/// Serves `/metrics`, `/-/healthy` and `/-/ready` on `listener` and judges every node each
/// `interval` (alerts expire after three) until `stop` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    judging: Judging,
    interval: Duration,
    alertmanagers: Vec<String>,
    stop: impl Future<Output = ()>,
) {
    let mut registry = Registry::default();
    let metrics = NodeMetrics::new(&mut registry);
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
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let (s, j, m) = (store.clone(), judging.clone(), metrics.clone());
                let ams = alertmanagers.clone();
                let ttl = interval * 3;
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

/// Judges every node with rounds in the window ending at `now_ns`, stores the verdicts,
/// updates the metrics and posts alerts; returns the judgements and the alerts not delivered.
pub fn judge_all(
    store: &mut Store,
    judging: &Judging,
    now_ns: i64,
    sinks: &Sinks<'_>,
) -> Result<(Vec<Judgement>, Vec<AlertError>), MonitorError> {
    let from = now_ns.saturating_sub(ns_of(judging.window));
    let world = input::world(store, from, now_ns)?;
    let problems = world.problems();
    if !problems.is_empty() {
        return Err(MonitorError::InconsistentWorld { problems });
    }
    let bundles = match &judging.evidence {
        Some(e) => Some(input::latest_bundles(store, e, now_ns)?),
        None => None,
    };
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for (node, claim) in store.nodes_between(from, now_ns)? {
        let previous = store.latest_verdict(&node)?;
        let found = match (&judging.evidence, &bundles) {
            (Some(e), Some(bundles)) => {
                let recs = bundles.get(&node).map_or(&[][..], Vec::as_slice);
                input::verify_evidence(store, e, &node, recs, now_ns)?
            }
            _ => None,
        };
        let keys = found
            .as_ref()
            .map_or(&[][..], |f| &f.evidence.session_keys[..]);
        let mut input = input::node_input(
            store,
            &node,
            &claim,
            (from, now_ns),
            judging.baseline_rounds,
            keys,
        )?;
        if let Some(f) = &found {
            f.apply_to(&mut input);
            own_evidence_rtts(
                &mut input,
                bundles.as_ref().and_then(|b| b.get(&node)),
                keys,
            );
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
                    failed.push(e);
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

/// A prober whose own bundle verified is held to the evidence bound on that very request: its
/// round trip is paired with the bundle's in-TD time, not with other requests' round trips.
fn own_evidence_rtts(
    input: &mut locus_analysis::NodeInput,
    recs: Option<&Vec<crate::store::EvidenceRecord>>,
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
