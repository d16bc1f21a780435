//! One target's probing loop: connect (pinned or learned key), run rounds back to back,
//! request evidence on its interval, store each round and update the metrics; reconnect
//! after a failure, stop when told.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locus_prober::identity::ProberIdentity;
use locus_proto::messages::Include;
use locus_proto::{Nonce, NONCE_LEN};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rand::{Rng, RngCore};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::clock::WallClock;
use super::config::{EchoTransport, ProbeSettings, TargetConfig};
use super::writer::{KeySeen, Write};
use crate::metrics::{LandmarkLabels, ProberMetrics, ResolvedLabels, TargetLabels};
use crate::store::{EvidenceRecord, LandmarkRoundRecord, RoundRecord, SampleRecord, Store};
use locus_prober::requests::{prove_key, request_evidence_sealed_timed, RequestError};
use locus_prober::udp_echo::{request_udp_echo, run_udp_round_from, UdpEchoSocket, UdpTarget};
use locus_prober::{connect_on, run_round_from, RoundConfig, RoundReport, SpkiPolicy, Target};
use locus_proto::messages::codes;

/// Longest wait for an evidence answer (quotes can take a while on real hardware).
const EVIDENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every target task shares.
pub(crate) struct Shared {
    pub(crate) prober_id: String,
    /// One QUIC endpoint (one socket) for every target.
    pub(crate) endpoint: quinn::Endpoint,
    /// Where the UDP echo socket binds (`bind`).
    pub(crate) bind: std::net::SocketAddr,
    /// One UDP socket for every target probed with `echo = "udp"`, bound at the first.
    pub(crate) udp: tokio::sync::OnceCell<UdpEchoSocket>,
    /// Handshakes in progress at once: thousands of targets start together, and a handshake
    /// that waits for the CPU behind all the others would time out.
    pub(crate) handshakes: tokio::sync::Semaphore,
    pub(crate) store: Arc<Mutex<Store>>,
    /// Finished rounds and learned keys go to the writer (see `writer.rs`).
    pub(crate) writer: tokio::sync::mpsc::UnboundedSender<Write>,
    pub(crate) metrics: ProberMetrics,
    pub(crate) clock: Arc<dyn WallClock>,
    /// Signs every round and evidence record stored, and every evidence request sent; None:
    /// stored and sent unsigned.
    pub(crate) identity: Option<Arc<ProberIdentity>>,
}

impl Shared {
    pub(crate) fn unix_now_ns(&self) -> i64 {
        self.clock.unix_now_ns()
    }
}

/// Counts a connection in `locus_targets_connected` while it lives.
struct Connected<'a>(&'a ProberMetrics);

impl<'a> Connected<'a> {
    fn new(m: &'a ProberMetrics) -> Self {
        m.targets_connected.inc();
        Self(m)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.targets_connected.dec();
    }
}

/// What a probed peer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    /// A node: rounds and samples stored for the monitor, evidence requested.
    Node,
    /// A landmark at a known site (`TargetConfig::claim` holds the site): each round's minimum
    /// is stored for calibration; no samples, no evidence.
    Landmark,
}

pub(crate) fn landmark_labels(prober: &str, t: &TargetConfig) -> LandmarkLabels {
    LandmarkLabels {
        prober: prober.into(),
        landmark: t.name.clone(),
        site: t.claim.clone(),
    }
}

/// The address a target's name last resolved to, exported as
/// `locus_target_resolved_info{..., ip}`; the series goes when the target stops.
#[derive(Default)]
struct Resolved(Option<(Family<ResolvedLabels, Gauge>, ResolvedLabels)>);

impl Resolved {
    fn set(&mut self, m: &ProberMetrics, target: &TargetLabels, addr: std::net::SocketAddr) {
        let l = ResolvedLabels {
            target: target.clone(),
            ip: addr.ip().to_string(),
        };
        if self.0.as_ref().is_some_and(|(_, old)| *old == l) {
            return;
        }
        self.clear();
        m.resolved.get_or_create(&l).set(1);
        self.0 = Some((m.resolved.clone(), l));
    }

    fn clear(&mut self) {
        if let Some((family, l)) = self.0.take() {
            family.remove(&l);
        }
    }
}

impl Drop for Resolved {
    fn drop(&mut self) {
        self.clear();
    }
}

pub(crate) fn labels(prober: &str, t: &TargetConfig) -> TargetLabels {
    TargetLabels::new(prober, &t.name, &t.address.to_string(), &t.claim)
}

/// Resolves once `stop` is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Proves the prober's key on a fresh connection before its first round, not at its first
/// evidence request (up to a round later, or never without evidence): a pinned responder at
/// its connection cap evicts connections that proved no key (REVIEW3 A). One round trip,
/// bounded by `timeout`; a failure only delays the proof to the first signed request.
async fn prove_key_first(spec: &TargetConfig, target: &Target, timeout: Duration) {
    match tokio::time::timeout(timeout, prove_key(target)).await {
        Ok(Ok(())) => {}
        Ok(Err(e @ locus_prober::requests::RequestError::Unauthorized { .. })) => {
            warn!(target = %spec.name, "the responder refused this prober's key: {e}");
        }
        // E.g. a responder that predates the hello: the first signed request proves it.
        Ok(Err(e)) => debug!(target = %spec.name, "key not proved after the handshake: {e}"),
        Err(_) => debug!(target = %spec.name, "key not proved within {timeout:?}"),
    }
}

/// Challenges in a row (whole rounds without an answer) after which a UDP echo session is
/// given up and a new one asked for: the responder may have restarted, evicted or expired it.
/// Counted in challenges, not rounds, so that a fleet's short first rounds (a random length to
/// spread them) do not renew sessions for a datagram or two lost while thousands connect; 30
/// (30 s at 1 Hz, QUIC's idle timeout) so that a responder that drops most answers under load
/// is not handed a handshake per target on top (10 renewed 47 000 of 50 000 sessions in the
/// bench's overloaded responders).
const UDP_SILENT_CHALLENGES: u64 = 30;

/// A session is renewed when less than this beyond a round is left of its lifetime.
const UDP_RENEW_MARGIN: Duration = Duration::from_secs(30);

/// The path a target's echoes take once connected.
enum Echo {
    /// QUIC datagrams on the connection.
    Quic(Target),
    /// A UDP echo session (the connection that granted it is closed); `quic` is the address
    /// evidence requests connect to.
    Udp {
        session: Box<UdpTarget>,
        quic: std::net::SocketAddr,
        /// Challenges sent since the last round with an answer.
        silent: u64,
    },
}

impl Echo {
    fn epoch(&self) -> Instant {
        match self {
            Echo::Quic(t) => t.epoch(),
            Echo::Udp { session, .. } => session.epoch(),
        }
    }

    fn spki(&self) -> &[u8] {
        match self {
            Echo::Quic(t) => &t.spki,
            Echo::Udp { session, .. } => &session.spki,
        }
    }

    async fn round(&self, cfg: &RoundConfig, schedule: Instant) -> RoundReport {
        match self {
            Echo::Quic(t) => run_round_from(t, cfg, schedule).await,
            Echo::Udp { session, .. } => run_udp_round_from(session, cfg, schedule).await,
        }
    }

    fn close(&self) {
        if let Echo::Quic(t) = self {
            t.conn.close(0u32.into(), b"prober stopping");
        }
    }

    /// Why the next round cannot run on this path (then the target reconnects), after a round
    /// that ended with `report` and with rounds of `round` length.
    fn lost(&mut self, report: &RoundReport, round: Duration) -> Option<String> {
        match self {
            Echo::Quic(t) => t
                .conn
                .close_reason()
                .map(|r| format!("connection lost: {r}")),
            Echo::Udp {
                session, silent, ..
            } => {
                *silent = if report.answered == 0 {
                    *silent + report.sent
                } else {
                    0
                };
                if *silent >= UDP_SILENT_CHALLENGES {
                    Some(format!(
                        "no UDP echo answer to {silent} challenges: asking for a new session"
                    ))
                } else if Instant::now() + round + UDP_RENEW_MARGIN >= session.expires {
                    Some("the UDP echo session expires: renewing it".into())
                } else {
                    None
                }
            }
        }
    }
}

/// Why a target got no UDP echo session.
enum NoUdp {
    /// The responder answers no UDP echo (or the socket cannot be bound): echo over QUIC.
    Unavailable(String),
    /// No grant this time (a busy responder, a lost connection): connect again later; falling
    /// back to QUIC would keep a connection per target, what a fleet on UDP cannot afford.
    Failed(String),
}

/// Asks `target`'s responder for a UDP echo session and closes the connection once it is
/// granted.
async fn open_udp(
    shared: &Shared,
    target: &Target,
    settings: &ProbeSettings,
    timeout: Duration,
) -> Result<Echo, NoUdp> {
    let socket = shared
        .udp
        .get_or_try_init(|| async { UdpEchoSocket::bind(shared.bind) })
        .await
        .map_err(|e| {
            NoUdp::Unavailable(format!(
                "cannot bind the UDP echo socket to {}: {e}",
                shared.bind
            ))
        })?;
    let grant = match tokio::time::timeout(timeout, request_udp_echo(target)).await {
        Ok(Ok(g)) => g,
        Ok(Err(e @ RequestError::Refused { code, .. })) if code == codes::UNAVAILABLE => {
            return Err(NoUdp::Unavailable(e.to_string()))
        }
        Ok(Err(e)) => return Err(NoUdp::Failed(e.to_string())),
        Err(_) => {
            return Err(NoUdp::Failed(format!(
                "no UDP echo session within {timeout:?}"
            )))
        }
    };
    let session = (socket.open(grant, target.spki.clone(), settings.timeout))
        .map_err(|e| NoUdp::Failed(e.to_string()))?;
    target.conn.close(0u32.into(), b"UDP echo session granted");
    Ok(Echo::Udp {
        session: Box::new(session),
        quic: target.addr,
        silent: 0,
    })
}

/// Runs until `stop` is set. A round in progress when it is set is dropped, not stored.
///
/// Thousands of these tasks live at once: the connect, round and evidence futures are boxed
/// so that the task itself stays small while it waits.
pub(crate) async fn run(
    shared: Arc<Shared>,
    spec: TargetConfig,
    role: Role,
    settings: ProbeSettings,
    mut stop: watch::Receiver<bool>,
) {
    let labels = labels(&shared.prober_id, &spec);
    let landmark = (role == Role::Landmark).then(|| landmark_labels(&shared.prober_id, &spec));
    let mut last_spki: Option<Vec<u8>> = None;
    let mut next_evidence = Instant::now();
    let mut evidence_task = EvidenceTask(None);
    let mut resolved = Resolved::default();
    let interval = Duration::from_secs_f64(1.0 / settings.rate_hz);
    let round_cfg = RoundConfig {
        rate_hz: settings.rate_hz,
        count: settings.count(),
        window: settings.window,
        timeout: settings.timeout,
        keep_samples: true,
        // 1 Hz monitoring: never spin.
        spin: Duration::ZERO,
    };
    'rounds: while !*stop.borrow() {
        let connect_timeout = settings.timeout.max(Duration::from_secs(2));
        // The round's start is the first attempt's: a failed round spans its retries.
        let mut first: Option<(i64, Instant)> = None;
        let (started, t0, connected) = loop {
            let policy = match &spec.spki {
                Some(k) => SpkiPolicy::Pinned(k.clone()),
                None => SpkiPolicy::TrustOnFirstUse,
            };
            let connected = tokio::select! {
                c = async {
                    // Closed only when the daemon is dropped; then give up like a stop.
                    let _permit = shared.handshakes.acquire().await.ok()?;
                    let (started, t0) = (shared.unix_now_ns(), Instant::now());
                    // Resolved at every connect: a reconnect follows a changed DNS record.
                    let ipv4 = shared.endpoint.local_addr().map_or(true, |a| a.is_ipv4());
                    let connected = match spec.address.resolve(ipv4).await {
                        Ok(addr) => {
                            // Landmarks have no per-target series.
                            if role == Role::Node {
                                resolved.set(&shared.metrics, &labels, addr);
                            }
                            Box::pin(connect_on(&shared.endpoint, addr, policy, connect_timeout))
                                .await
                                .map_err(|e| e.to_string())
                        }
                        Err(e) => Err(format!("resolving {}: {e}", spec.address)),
                    };
                    Some((started, t0, connected))
                } => c,
                _ = stopped(&mut stop) => break 'rounds,
            };
            let Some((started, t0, connected)) = connected else {
                break 'rounds;
            };
            let (started, t0) = *first.get_or_insert((started, t0));
            // Ignored attempts (a responder's handshake budget spent, e.g. while a fleet
            // reconnects after its restart) are tried again a few seconds later, jittered so
            // that the fleet spreads out, while the round has room: an unreachable round is
            // recorded only then (REVIEW4 R4).
            let retry = Duration::from_secs_f64(rand::thread_rng().gen_range(1.0..=5.0));
            match connected {
                Err(e) if t0.elapsed() + retry + connect_timeout < settings.round => {
                    debug!(target = %spec.name, ?retry, "connect failed, retrying: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => continue,
                        _ = stopped(&mut stop) => break 'rounds,
                    }
                }
                connected => break (started, t0, connected),
            }
        };
        let target = match connected {
            // The identity that signs the rows also signs evidence requests, so a responder
            // with `[access] evidence = "pinned"` answers this prober.
            Ok(t) => match &shared.identity {
                Some(id) => t.with_signer(id.clone()),
                None => t,
            },
            Err(e) => {
                warn!(target = %spec.name, address = %spec.address, ?role, "unreachable: {e}");
                match &landmark {
                    None => {
                        shared.metrics.probe_success.get_or_create(&labels).set(0);
                        let rec = failed_round(&shared.prober_id, &spec, started, t0, e.clone());
                        store_round(&shared, rec, Vec::new());
                    }
                    Some(l) => {
                        shared.metrics.landmark_success.get_or_create(l).set(0);
                        let rec = LandmarkRoundRecord {
                            error: Some(e.clone()),
                            ..landmark_record(&shared.prober_id, &spec, None, started, None)
                        };
                        Box::pin(store_landmark_round(&shared, rec)).await;
                    }
                }
                // Try again after a round's length, as if the round had run.
                let wait = settings.round.saturating_sub(t0.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stopped(&mut stop) => break 'rounds,
                }
            }
        };
        if shared.identity.is_some() {
            Box::pin(prove_key_first(&spec, &target, connect_timeout)).await;
        }
        let mut echo = match spec.echo.unwrap_or(settings.echo) {
            EchoTransport::Quic => Echo::Quic(target),
            EchoTransport::Udp => {
                match Box::pin(open_udp(&shared, &target, &settings, connect_timeout)).await {
                    // The last handle of the closed connection: quinn frees its state (most of
                    // a QUIC target's memory) only once every handle is gone.
                    Ok(udp) => {
                        drop(target);
                        udp
                    }
                    Err(NoUdp::Unavailable(e)) => {
                        warn!(target = %spec.name, "no UDP echo session, echoing over QUIC: {e}");
                        Echo::Quic(target)
                    }
                    Err(NoUdp::Failed(e)) => {
                        target.conn.close(0u32.into(), b"no UDP echo session");
                        let retry =
                            Duration::from_secs_f64(rand::thread_rng().gen_range(1.0..=5.0));
                        warn!(target = %spec.name, ?retry, "no UDP echo session, connecting again: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(retry) => continue 'rounds,
                            _ = stopped(&mut stop) => break 'rounds,
                        }
                    }
                }
            }
        };
        let spki_hex = hex::encode(echo.spki());
        if spec.spki.is_none() {
            if let Some(old) = &last_spki {
                if old.as_slice() != echo.spki() && role == Role::Node {
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
        last_spki = Some(echo.spki().to_vec());
        let _connected = Connected::new(&shared.metrics);
        if role == Role::Node {
            let _ = send(
                &shared,
                Write::Key(KeySeen {
                    prober: shared.prober_id.clone(),
                    target: spec.name.clone(),
                    address: spec.address.to_string(),
                    claim: spec.claim.clone(),
                    spki: spki_hex.clone(),
                    at_unix_ns: shared.unix_now_ns(),
                }),
            );
        }
        // Spread the targets' challenges over the probe interval and their round ends over
        // the round: a random phase, then a first round of random length.
        let (mut schedule, mut count) = {
            let mut rng = rand::thread_rng();
            (
                Instant::now() + interval.mul_f64(rng.gen_range(0.0..1.0)),
                rng.gen_range(1..=round_cfg.count),
            )
        };
        loop {
            // Each round continues the previous one's schedule; after a stall (a slow
            // database, an evidence request) missed slots are skipped, not sent in a burst.
            let behind = Instant::now().saturating_duration_since(schedule);
            if behind > interval {
                shared
                    .metrics
                    .lateness_seconds
                    .observe(behind.as_secs_f64());
                schedule = Instant::now();
            }
            let cfg = RoundConfig {
                count,
                ..round_cfg.clone()
            };
            let started = shared.unix_now_ns();
            // Sample timestamps count from the connection's epoch: map them to wall time.
            let epoch_unix = started - nanos(echo.epoch().elapsed());
            let report = tokio::select! {
                r = Box::pin(echo.round(&cfg, schedule)) => r,
                _ = stopped(&mut stop) => {
                    echo.close();
                    return;
                }
            };
            schedule += interval.mul_f64(count as f64);
            count = round_cfg.count;
            match &landmark {
                Some(l) => {
                    let rec = landmark_record(
                        &shared.prober_id,
                        &spec,
                        Some(&spki_hex),
                        started,
                        Some(&report),
                    );
                    update_landmark_metrics(&shared.metrics, l, &rec);
                    Box::pin(store_landmark_round(&shared, rec)).await;
                }
                None => {
                    let (rec, samples) = round_record(
                        &shared.prober_id,
                        &spec,
                        &spki_hex,
                        started,
                        epoch_unix,
                        &report,
                    );
                    update_metrics(&shared.metrics, &labels, &report);
                    store_round(&shared, rec, samples);
                    if let Some(iv) = settings.evidence_interval {
                        let idle = match &evidence_task.0 {
                            Some(t) => t.is_finished(),
                            None => true,
                        };
                        if idle && Instant::now() >= next_evidence {
                            // On a task of its own, one at a time: a slow quote (tens of ms on a
                            // cloud TD) must not hold back this target's next challenges.
                            let (shared, spec) = (shared.clone(), spec.clone());
                            let (labels, settings) = (labels.clone(), settings.clone());
                            let task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> =
                                match &echo {
                                    Echo::Quic(target) => {
                                        let target = target.clone();
                                        Box::pin(async move {
                                            evidence(&shared, &spec, &labels, &target, &settings)
                                                .await
                                        })
                                    }
                                    // The session's connection is closed: a new one, pinned
                                    // to the key that keyed the session.
                                    Echo::Udp { quic, .. } => {
                                        let (quic, spki) = (*quic, echo.spki().to_vec());
                                        Box::pin(async move {
                                            evidence_connecting(
                                                &shared, &spec, &labels, quic, spki, &settings,
                                            )
                                            .await
                                        })
                                    }
                                };
                            evidence_task.0 = Some(tokio::spawn(task));
                            next_evidence =
                                Instant::now() + iv.mul_f64(rand::thread_rng().gen_range(0.9..1.1));
                        }
                    }
                }
            }
            if let Some(reason) = echo.lost(&report, settings.round) {
                match &echo {
                    Echo::Quic(_) => warn!(target = %spec.name, ?role, "{reason}; reconnecting"),
                    Echo::Udp { .. } if report.answered == 0 => {
                        warn!(target = %spec.name, ?role, "{reason}")
                    }
                    Echo::Udp { .. } => debug!(target = %spec.name, ?role, "{reason}"),
                }
                break;
            }
            if *stop.borrow() {
                echo.close();
                return;
            }
        }
    }
}

/// The target's evidence request in flight, if any; aborted when the target stops.
struct EvidenceTask(Option<tokio::task::JoinHandle<()>>);

impl Drop for EvidenceTask {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
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
        seal: None,
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
        seal: None,
    };
    (rec, samples)
}

/// A landmark round's record: its minima when it ran (`report`), nothing more.
fn landmark_record(
    prober: &str,
    spec: &TargetConfig,
    spki_hex: Option<&str>,
    started: i64,
    report: Option<&RoundReport>,
) -> LandmarkRoundRecord {
    let samples = report.map_or(&[][..], |r| &r.samples[..]);
    LandmarkRoundRecord {
        prober: prober.to_owned(),
        landmark: spec.name.clone(),
        site: spec.claim.clone(),
        address: spec.address.to_string(),
        spki: spki_hex.map(str::to_owned),
        started_unix_ns: started,
        sent: report.map_or(0, |r| r.sent),
        answered: report.map_or(0, |r| r.answered),
        min_rtt_ns: samples.iter().map(|s| s.rtt_ns).min(),
        min_eff_rtt_ns: samples
            .iter()
            .map(|s| s.rtt_ns.saturating_sub(s.inside_ns))
            .min(),
        error: None,
        seal: None,
    }
}

fn update_landmark_metrics(m: &ProberMetrics, l: &LandmarkLabels, rec: &LandmarkRoundRecord) {
    m.landmark_success
        .get_or_create(l)
        .set(i64::from(rec.answered > 0));
    if let Some(min) = rec.min_eff_rtt_ns {
        m.landmark_rtt_seconds
            .get_or_create(l)
            .set(min as f64 / 1e9);
    }
}

/// Stores a landmark round at once: a few landmarks per prober, one commit each per round.
async fn store_landmark_round(shared: &Arc<Shared>, rec: LandmarkRoundRecord) {
    let s = shared.clone();
    let name = rec.landmark.clone();
    let res = tokio::task::spawn_blocking(move || {
        let mut rec = rec;
        if let Some(id) = &s.identity {
            crate::integrity::seal_landmark(id, &mut rec);
        }
        lock(&s.store).insert_landmark_round(&rec)
    })
    .await;
    if !matches!(res, Ok(Ok(()))) {
        shared.metrics.store_errors.inc();
        warn!(landmark = %name, "landmark round not stored: {res:?}");
    }
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
    // Counted by the writer once stored.
    let _ = m.rounds.get_or_create(l);
    for ns in &r.lateness_ns {
        m.lateness_seconds.observe(*ns as f64 / 1e9);
    }
    debug!(target = %l.target, sent = r.sent, answered = r.answered, lost = r.lost, "round done");
}

/// Hands the round to the writer; probing goes on while it is stored.
fn store_round(shared: &Shared, rec: RoundRecord, samples: Vec<SampleRecord>) {
    if !send(shared, Write::Round((rec, samples))) {
        shared.metrics.rounds_dropped.inc();
    }
}

fn send(shared: &Shared, w: Write) -> bool {
    let sent = shared.writer.send(w).is_ok();
    if !sent {
        // Cannot happen while targets run: the writer finishes after every target stopped.
        error!("the writer has stopped: a round or key was not stored");
    }
    sent
}

/// [`evidence`] on a connection of its own (a UDP echo target has none open), pinned to
/// `spki`, closed afterwards; a failed connect is stored as a failed request.
async fn evidence_connecting(
    shared: &Arc<Shared>,
    spec: &TargetConfig,
    labels: &TargetLabels,
    addr: std::net::SocketAddr,
    spki: Vec<u8>,
    settings: &ProbeSettings,
) {
    let timeout = settings.timeout.max(Duration::from_secs(2));
    let connected = {
        let _permit = shared.handshakes.acquire().await;
        Box::pin(connect_on(
            &shared.endpoint,
            addr,
            SpkiPolicy::Pinned(spki.clone()),
            timeout,
        ))
        .await
    };
    match connected {
        Ok(t) => {
            let t = match &shared.identity {
                Some(id) => t.with_signer(id.clone()),
                None => t,
            };
            evidence(shared, spec, labels, &t, settings).await;
            t.conn.close(0u32.into(), b"evidence done");
        }
        Err(e) => {
            let error = format!("connecting for evidence: {e}");
            warn!(target = %spec.name, "evidence request failed: {error}");
            shared.metrics.evidence_success.get_or_create(labels).set(0);
            let rec = EvidenceRecord {
                prober: shared.prober_id.clone(),
                target: spec.name.clone(),
                at_unix_ns: shared.unix_now_ns(),
                rtt_ns: None,
                ok: false,
                error: Some(error),
                nonce: None,
                bundle: None,
                peer_spki: Some(hex::encode(&spki)),
                seal: None,
            };
            store_evidence(shared, spec, rec).await;
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
    let at = shared.unix_now_ns();
    let result = tokio::time::timeout(
        EVIDENCE_TIMEOUT,
        request_evidence_sealed_timed(target, &nonce, include, None),
    )
    .await;
    // The evidence request's own round trip (not the keys request and sealing before it): the
    // monitor holds it against the TD's evidence time.
    let (error, bundle, rtt) = match result {
        // Stored as received: the monitor verifies it against its policy.
        Ok(Ok((bundle, rtt))) => (None, Some(bundle.to_cbor()), rtt),
        Ok(Err(e)) => (Some(e.to_string()), None, Duration::ZERO),
        Err(_) => (
            Some(format!("no answer within {EVIDENCE_TIMEOUT:?}")),
            None,
            Duration::ZERO,
        ),
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
            .set(shared.unix_now_ns() as f64 / 1e9);
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
        peer_spki: Some(hex::encode(&target.spki)),
        seal: None,
    };
    store_evidence(shared, spec, rec).await;
}

async fn store_evidence(shared: &Arc<Shared>, spec: &TargetConfig, rec: EvidenceRecord) {
    let s = shared.clone();
    let res = tokio::task::spawn_blocking(move || {
        let mut rec = rec;
        if let Some(id) = &s.identity {
            crate::integrity::seal_evidence(id, &mut rec);
        }
        lock(&s.store).insert_evidence(&rec)
    })
    .await;
    if !matches!(res, Ok(Ok(()))) {
        shared.metrics.store_errors.inc();
        warn!(target = %spec.name, "evidence result not stored: {res:?}");
    }
}
