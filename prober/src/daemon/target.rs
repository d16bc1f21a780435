//! One target's probing loop: connect (pinned or learned key), run rounds back to back,
//! request evidence on its interval, store each round and update the metrics; reconnect
//! after a failure, stop when told.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use locus_proto::messages::Include;
use locus_proto::{Nonce, NONCE_LEN};
use rand::{Rng, RngCore};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::config::{ProbeSettings, TargetConfig};
use crate::metrics::{ProberMetrics, TargetLabels};
use crate::requests::request_evidence;
use crate::store::{EvidenceRecord, RoundRecord, SampleRecord, Store};
use crate::{connect, run_round, RoundConfig, RoundReport, SpkiPolicy, Target};

/// Longest wait for an evidence answer (quotes can take a while on real hardware).
const EVIDENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every target task shares.
pub(crate) struct Shared {
    pub(crate) prober_id: String,
    pub(crate) bind: SocketAddr,
    pub(crate) store: Arc<Mutex<Store>>,
    /// Most rounds a target keeps while the database refuses writes; beyond it the oldest go.
    pub(crate) max_pending: usize,
    pub(crate) metrics: ProberMetrics,
}

pub(crate) fn unix_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn labels(prober: &str, t: &TargetConfig) -> TargetLabels {
    TargetLabels {
        prober: prober.to_owned(),
        target: t.name.clone(),
        instance: t.address.to_string(),
        claim: t.claim.clone(),
    }
}

/// Resolves once `stop` is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Rounds waiting to be stored, oldest first.
type Pending = VecDeque<(RoundRecord, Vec<SampleRecord>)>;

/// Runs until `stop` is set. A round in progress when it is set is dropped, not stored; rounds
/// the database refused are retried with each later round and once more before returning.
pub(crate) async fn run(
    shared: Arc<Shared>,
    spec: TargetConfig,
    settings: ProbeSettings,
    stop: watch::Receiver<bool>,
) {
    let mut pending = Pending::new();
    run_rounds(&shared, &spec, &settings, stop, &mut pending).await;
    flush(&shared, &mut pending).await;
    if !pending.is_empty() {
        error!(
            target = %spec.name,
            "{} rounds could not be stored before stopping",
            pending.len()
        );
        shared.metrics.rounds_dropped.inc_by(pending.len() as u64);
    }
}

async fn run_rounds(
    shared: &Arc<Shared>,
    spec: &TargetConfig,
    settings: &ProbeSettings,
    mut stop: watch::Receiver<bool>,
    pending: &mut Pending,
) {
    let shared = shared.clone();
    let spec = spec.clone();
    let labels = labels(&shared.prober_id, &spec);
    let mut last_spki: Option<Vec<u8>> = None;
    let mut next_evidence = Instant::now();
    let round_cfg = RoundConfig {
        rate_hz: settings.rate_hz,
        count: settings.count(),
        window: settings.window,
        timeout: settings.timeout,
        keep_samples: true,
        // 1 Hz monitoring: never spin.
        spin: Duration::ZERO,
    };
    while !*stop.borrow() {
        let policy = match &spec.spki {
            Some(k) => SpkiPolicy::Pinned(k.clone()),
            None => SpkiPolicy::TrustOnFirstUse,
        };
        let started = unix_now_ns();
        let t0 = Instant::now();
        let connect_timeout = settings.timeout.max(Duration::from_secs(2));
        let connected = tokio::select! {
            c = connect(spec.address, shared.bind, policy, connect_timeout) => c,
            _ = stopped(&mut stop) => break,
        };
        let target = match connected {
            Ok(t) => t,
            Err(e) => {
                warn!(target = %spec.name, address = %spec.address, "unreachable: {e}");
                shared.metrics.probe_success.get_or_create(&labels).set(0);
                let rec = failed_round(&shared.prober_id, &spec, started, t0, e.to_string());
                store_round(&shared, pending, rec, Vec::new()).await;
                // Try again after a round's length, as if the round had run.
                let wait = settings.round.saturating_sub(t0.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stopped(&mut stop) => break,
                }
            }
        };
        let spki_hex = hex::encode(&target.spki);
        if spec.spki.is_none() {
            if let Some(old) = &last_spki {
                if *old != target.spki {
                    // A restarted responder has a new session key: not a relocation by itself.
                    warn!(target = %spec.name, "learned a new session key: {spki_hex}");
                    shared
                        .metrics
                        .session_key_changes
                        .get_or_create(&labels)
                        .inc();
                }
            }
            info!(target = %spec.name, "session key learned on first use: {spki_hex}");
        }
        last_spki = Some(target.spki.clone());
        {
            let (shared2, spec2, spki2) = (shared.clone(), spec.clone(), spki_hex.clone());
            let res = tokio::task::spawn_blocking(move || {
                lock(&shared2.store).upsert_target(
                    &shared2.prober_id,
                    &spec2.name,
                    &spec2.address.to_string(),
                    &spec2.claim,
                    Some(&spki2),
                    unix_now_ns(),
                )
            })
            .await;
            if !matches!(res, Ok(Ok(()))) {
                shared.metrics.store_errors.inc();
                warn!(target = %spec.name, "could not store the target's key: {res:?}");
            }
        }
        loop {
            let started = unix_now_ns();
            // Sample timestamps count from the connection's epoch: map them to wall time.
            let epoch_unix = started - nanos(target.epoch().elapsed());
            let report = tokio::select! {
                r = run_round(&target, &round_cfg) => r,
                _ = stopped(&mut stop) => {
                    target.conn.close(0u32.into(), b"prober stopping");
                    return;
                }
            };
            let (rec, samples) = round_record(
                &shared.prober_id,
                &spec,
                &spki_hex,
                started,
                epoch_unix,
                &report,
            );
            update_metrics(&shared.metrics, &labels, &report);
            store_round(&shared, pending, rec, samples).await;
            if let Some(iv) = settings.evidence_interval {
                if Instant::now() >= next_evidence {
                    evidence(&shared, &spec, &labels, &target, settings).await;
                    next_evidence =
                        Instant::now() + iv.mul_f64(rand::thread_rng().gen_range(0.9..1.1));
                }
            }
            if let Some(reason) = target.conn.close_reason() {
                warn!(target = %spec.name, "connection lost: {reason}; reconnecting");
                break;
            }
            if *stop.borrow() {
                target.conn.close(0u32.into(), b"prober stopping");
                return;
            }
        }
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

fn failed_round(
    prober: &str,
    spec: &TargetConfig,
    started: i64,
    t0: Instant,
    error: String,
) -> RoundRecord {
    RoundRecord {
        prober: prober.to_owned(),
        target: spec.name.clone(),
        claim: spec.claim.clone(),
        address: spec.address.to_string(),
        spki: None,
        started_unix_ns: started,
        duration_ns: nanos(t0.elapsed()),
        sent: 0,
        answered: 0,
        lost: 0,
        late: 0,
        out_of_order: 0,
        violations: 0,
        min_rtt_ns: None,
        p50_rtt_ns: None,
        p99_rtt_ns: None,
        min_eff_rtt_ns: None,
        inside_p50_ns: None,
        error: Some(error),
    }
}

fn round_record(
    prober: &str,
    spec: &TargetConfig,
    spki_hex: &str,
    started: i64,
    epoch_unix: i64,
    r: &RoundReport,
) -> (RoundRecord, Vec<SampleRecord>) {
    let ns = |us: f64| (r.rtt.count > 0).then(|| (us * 1_000.0).round() as u64);
    let samples: Vec<SampleRecord> = r
        .samples
        .iter()
        .map(|s| SampleRecord {
            sent_unix_ns: epoch_unix.saturating_add(i64::try_from(s.sent_ns).unwrap_or(0)),
            rtt_ns: s.rtt_ns,
            inside_ns: s.inside_ns,
        })
        .collect();
    let rec = RoundRecord {
        prober: prober.to_owned(),
        target: spec.name.clone(),
        claim: spec.claim.clone(),
        address: spec.address.to_string(),
        spki: Some(spki_hex.to_owned()),
        started_unix_ns: started,
        duration_ns: (r.wall_s * 1e9) as i64,
        sent: r.sent,
        answered: r.answered,
        lost: r.lost,
        late: r.late,
        out_of_order: r.out_of_order,
        violations: r.violations,
        min_rtt_ns: ns(r.rtt.min_us),
        p50_rtt_ns: ns(r.rtt.p50_us),
        p99_rtt_ns: ns(r.rtt.p99_us),
        min_eff_rtt_ns: r
            .samples
            .iter()
            .map(|s| s.rtt_ns.saturating_sub(s.inside_ns))
            .min(),
        inside_p50_ns: ns(r.inside_p50_us),
        error: None,
    };
    (rec, samples)
}

fn update_metrics(m: &ProberMetrics, l: &TargetLabels, r: &RoundReport) {
    m.probe_success
        .get_or_create(l)
        .set(i64::from(r.answered > 0));
    {
        let h = m.rtt_seconds.get_or_create(l);
        for s in &r.samples {
            h.observe(s.rtt_ns as f64 / 1e9);
        }
    }
    if r.rtt.count > 0 {
        m.round_min_rtt_seconds
            .get_or_create(l)
            .set(r.rtt.min_us / 1e6);
    }
    m.sent.get_or_create(l).inc_by(r.sent);
    m.answered.get_or_create(l).inc_by(r.answered);
    m.lost.get_or_create(l).inc_by(r.lost);
    m.late.get_or_create(l).inc_by(r.late);
    m.violations.get_or_create(l).inc_by(r.violations);
    m.rounds.get_or_create(l).inc();
    debug!(target = %l.target, sent = r.sent, answered = r.answered, lost = r.lost, "round done");
}

/// Queues the round and stores every queued round it can, oldest first.
async fn store_round(
    shared: &Arc<Shared>,
    pending: &mut Pending,
    rec: RoundRecord,
    samples: Vec<SampleRecord>,
) {
    if pending.len() >= shared.max_pending {
        pending.pop_front();
        shared.metrics.rounds_dropped.inc();
        error!(
            target = %rec.target,
            "the database refused the last {} rounds (db_max_pending_rounds): dropped the \
             oldest unstored round",
            pending.len()
        );
    }
    pending.push_back((rec, samples));
    flush(shared, pending).await;
}

async fn flush(shared: &Arc<Shared>, pending: &mut Pending) {
    if pending.is_empty() {
        return;
    }
    let s = shared.clone();
    let mut queue = std::mem::take(pending);
    let res = tokio::task::spawn_blocking(move || {
        let mut store = lock(&s.store);
        while let Some((rec, samples)) = queue.front() {
            if let Err(e) = store.insert_round(rec, samples) {
                return (queue, Some(e.to_string()));
            }
            queue.pop_front();
        }
        (queue, None)
    })
    .await;
    match res {
        Ok((rest, err)) => {
            *pending = rest;
            if let Some(e) = err {
                shared.metrics.store_errors.inc();
                warn!("{} rounds wait to be stored: {e}", pending.len());
            }
        }
        // The blocking task panicked: the queue is gone with it.
        Err(e) => {
            shared.metrics.store_errors.inc();
            error!("storing rounds failed: {e}");
        }
    }
}

async fn evidence(
    shared: &Arc<Shared>,
    spec: &TargetConfig,
    labels: &TargetLabels,
    target: &Target,
    settings: &ProbeSettings,
) {
    let mut nonce: Nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    let include = Include {
        tdx: settings.evidence_tdx,
        tpm: settings.evidence_tpm,
        anchors: settings.anchors.clone(),
    };
    let at = unix_now_ns();
    let t0 = Instant::now();
    let result =
        tokio::time::timeout(EVIDENCE_TIMEOUT, request_evidence(target, &nonce, include)).await;
    let rtt = t0.elapsed();
    let (error, bundle) = match result {
        // Stored as received: the monitor verifies it against its policy.
        Ok(Ok(bundle)) => (None, Some(bundle.to_cbor())),
        Ok(Err(e)) => (Some(e.to_string()), None),
        Err(_) => (Some(format!("no answer within {EVIDENCE_TIMEOUT:?}")), None),
    };
    let ok = error.is_none();
    shared
        .metrics
        .evidence_success
        .get_or_create(labels)
        .set(i64::from(ok));
    if ok {
        shared
            .metrics
            .evidence_rtt_seconds
            .get_or_create(labels)
            .set(rtt.as_secs_f64());
        shared
            .metrics
            .evidence_last_success
            .get_or_create(labels)
            .set(unix_now_ns() as f64 / 1e9);
    } else {
        warn!(target = %spec.name, "evidence request failed: {error:?}");
    }
    let rec = EvidenceRecord {
        prober: shared.prober_id.clone(),
        target: spec.name.clone(),
        at_unix_ns: at,
        rtt_ns: ok.then_some(rtt.as_nanos() as u64),
        ok,
        error,
        nonce: Some(nonce.to_vec()),
        bundle,
    };
    let s = shared.clone();
    let res = tokio::task::spawn_blocking(move || lock(&s.store).insert_evidence(&rec)).await;
    if !matches!(res, Ok(Ok(()))) {
        shared.metrics.store_errors.inc();
        warn!(target = %spec.name, "evidence result not stored: {res:?}");
    }
}
