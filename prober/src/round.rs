//! One probing round against one target: paced challenges with a bounded in-flight window,
//! answers matched by the sans-I/O tracker, round trips into a histogram.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use locus_net::read_datagram_spinning;
use locus_proto::prober::{AnswerOutcome, Counters, Sample};
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use tokio::sync::Notify;
use tracing::debug;

use crate::client::{ProbeState, Target};
use crate::stats::{new_histogram, RttStats};

/// How many violations are kept verbatim in a report (all are counted).
const VIOLATIONS_KEPT: usize = 32;

/// Settings of one round.
#[derive(Debug, Clone)]
pub struct RoundConfig {
    /// Challenges per second; 0 sends as fast as the window allows.
    pub rate_hz: f64,
    pub count: u64,
    /// Most challenges in flight at once.
    pub window: usize,
    /// After this long without an answer a challenge counts as lost.
    pub timeout: Duration,
    /// Keep every sample in the report (for storage and transcript checks).
    pub keep_samples: bool,
    /// Poll for answers this long before letting the thread sleep (waking an idle vCPU costs
    /// tens of µs); zero never spins. For precise sequential echoes, not for long paths.
    pub spin: Duration,
}

impl Default for RoundConfig {
    fn default() -> Self {
        Self {
            rate_hz: 100.0,
            count: 100,
            window: 32,
            timeout: Duration::from_secs(1),
            keep_samples: false,
            spin: Duration::ZERO,
        }
    }
}

/// What one round measured.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    pub target: SocketAddr,
    pub rtt: RttStats,
    /// Responder-reported processing time, p50, in microseconds.
    pub inside_p50_us: f64,
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    pub late: u64,
    pub out_of_order: u64,
    pub violations: u64,
    pub violation_examples: Vec<String>,
    pub wall_s: f64,
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// How late each paced challenge left after its scheduled time, in ns (empty when
    /// `rate_hz` is 0): the scheduler's lateness, including waits for window room.
    #[serde(skip)]
    pub lateness_ns: Vec<u64>,
}

/// Runs one round against `target`, paced from now. Rounds on one target should not overlap.
pub async fn run_round(target: &Target, cfg: &RoundConfig) -> RoundReport {
    run_round_from(target, cfg, Instant::now()).await
}

/// Runs one round whose challenge `i` is due at `schedule + i / rate_hz`: a caller that
/// continues a schedule across rounds passes the previous round's end of schedule, so rounds
/// follow each other at the configured rate without a gap or a double probe.
pub async fn run_round_from(target: &Target, cfg: &RoundConfig, schedule: Instant) -> RoundReport {
    let started = Instant::now();
    let state = target.probe.clone();
    let before = {
        let mut s = lock(&state);
        s.tracker.set_timeout(cfg.timeout.as_nanos() as u64);
        s.sending_done = cfg.count == 0;
        s.tracker.counters()
    };
    let epoch = lock(&state).epoch;
    let room = Arc::new(Notify::new());
    let done = Arc::new(Notify::new());
    let receiver = tokio::spawn(receive(
        target.conn.clone(),
        state.clone(),
        room.clone(),
        done.clone(),
        cfg.timeout,
        cfg.keep_samples,
        cfg.spin,
    ));

    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut pacer = Pacer::new(cfg, schedule);
    for i in 0..cfg.count {
        let due = pacer.until(i).await;
        loop {
            let waiting = room.notified();
            if lock(&state).tracker.in_flight() < cfg.window {
                break;
            }
            waiting.await;
        }
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let datagram = {
            let mut s = lock(&state);
            let now = epoch.elapsed().as_nanos() as u64;
            s.tracker.issue(now, nonce)
        };
        pacer.left(due);
        if let Err(e) = target.conn.send_datagram(datagram.to_vec().into()) {
            debug!(target = %target.addr, "challenge not sent: {e}");
            break;
        }
    }
    lock(&state).sending_done = true;
    // A permit is stored if the receiver is not waiting yet: it cannot miss the end.
    done.notify_one();
    let (rtt, inside_p50_us, samples, examples) = receiver.await.unwrap_or_else(|e| {
        debug!("receiver task failed: {e}");
        (RttStats::default(), 0.0, Vec::new(), Vec::new())
    });
    let after = lock(&state).tracker.counters();
    RoundReport {
        target: target.addr,
        rtt,
        inside_p50_us,
        violation_examples: examples,
        wall_s: started.elapsed().as_secs_f64(),
        samples,
        lateness_ns: pacer.lateness_ns,
        ..RoundReport::counted(before, after)
    }
}

impl RoundReport {
    /// A report holding what the counters moved by between `before` and `after`, the rest
    /// empty.
    pub(crate) fn counted(before: Counters, after: Counters) -> Self {
        let d = |f: fn(&Counters) -> u64| f(&after) - f(&before);
        Self {
            target: SocketAddr::from(([0, 0, 0, 0], 0)),
            rtt: RttStats::default(),
            inside_p50_us: 0.0,
            sent: d(|c| c.sent),
            answered: d(|c| c.answered),
            lost: d(|c| c.lost),
            late: d(|c| c.late),
            out_of_order: d(|c| c.out_of_order),
            violations: d(|c| c.violations),
            violation_examples: Vec::new(),
            wall_s: 0.0,
            samples: Vec::new(),
            lateness_ns: Vec::new(),
        }
    }
}

/// Paces a round: challenge `i` is due at `schedule + i / rate_hz` (at once when `rate_hz` is
/// 0), and how late each left is recorded.
pub(crate) struct Pacer {
    schedule: Instant,
    interval: Option<Duration>,
    pub(crate) lateness_ns: Vec<u64>,
}

impl Pacer {
    pub(crate) fn new(cfg: &RoundConfig, schedule: Instant) -> Self {
        let interval = (cfg.rate_hz > 0.0).then(|| Duration::from_secs_f64(1.0 / cfg.rate_hz));
        let cap = if interval.is_some() {
            cfg.count.min(1 << 16) as usize
        } else {
            0
        };
        Self {
            schedule,
            interval,
            lateness_ns: Vec::with_capacity(cap),
        }
    }

    /// Sleeps until challenge `i` is due; returns when that was (None: unpaced).
    pub(crate) async fn until(&self, i: u64) -> Option<Instant> {
        let due = self.interval.map(|iv| self.schedule + iv.mul_f64(i as f64));
        if let Some(due) = due {
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        due
    }

    /// The challenge due at `due` left now.
    pub(crate) fn left(&mut self, due: Option<Instant>) {
        if let Some(due) = due {
            self.lateness_ns
                .push(Instant::now().saturating_duration_since(due).as_nanos() as u64);
        }
    }
}

/// Round-trip statistics, the responder's processing time p50 (µs), kept samples, violations.
type Received = (RttStats, f64, Vec<Sample>, Vec<String>);

/// Matches answers until sending is done and nothing is in flight. Sleeps until the next
/// datagram, the oldest challenge's expiry or the end of sending: no periodic wake-ups, which
/// matter when thousands of targets are probed at 1 Hz.
async fn receive(
    conn: quinn::Connection,
    state: Arc<Mutex<ProbeState>>,
    room: Arc<Notify>,
    done: Arc<Notify>,
    timeout: Duration,
    keep: bool,
    spin: Duration,
) -> Received {
    let epoch = lock(&state).epoch;
    // Kept samples give exact statistics at the end. A 3-digit histogram over 1 ns - 60 s
    // fills ~220 KiB: with thousands of targets at 1 Hz, their memory would dominate.
    let (mut hist, mut inside) = if keep {
        (None, None)
    } else {
        (Some(new_histogram()), Some(new_histogram()))
    };
    let mut samples = Vec::new();
    let mut examples = Vec::new();
    loop {
        let next_expiry = {
            let mut s = lock(&state);
            let now = epoch.elapsed().as_nanos() as u64;
            if s.tracker.expire(now) > 0 {
                room.notify_one();
            }
            if s.sending_done && s.tracker.in_flight() == 0 {
                break;
            }
            s.tracker.next_expiry_ns()
        };
        // Nothing pending: a challenge issued from now on expires no earlier than a timeout
        // from now, so waking then is early enough.
        let wake = match next_expiry {
            Some(ns) => epoch + Duration::from_nanos(ns),
            None => Instant::now() + timeout,
        };
        let datagram = tokio::select! {
            r = read_datagram_spinning(&conn, spin) => match r {
                Ok(d) => d,
                Err(e) => {
                    debug!("connection closed during round: {e}");
                    lock(&state).tracker.expire_all();
                    // The sender may be waiting for room in a full window: wake it, or the
                    // round never ends (its next send fails on the closed connection).
                    room.notify_one();
                    break;
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => continue,
            _ = done.notified() => continue,
        };
        let now = epoch.elapsed().as_nanos() as u64;
        let outcome = lock(&state).tracker.on_answer(now, &datagram);
        match outcome {
            AnswerOutcome::Sample(s) => {
                if let (Some(h), Some(i)) = (hist.as_mut(), inside.as_mut()) {
                    let _ = h.record(s.rtt_ns.max(1));
                    let _ = i.record(s.inside_ns.max(1));
                } else {
                    samples.push(s);
                }
                room.notify_one();
            }
            AnswerOutcome::Late { .. } => {}
            AnswerOutcome::Violation(v) => {
                if examples.len() < VIOLATIONS_KEPT {
                    examples.push(v.to_string());
                }
            }
        }
    }
    let (rtt, inside_p50_us) = match (hist, inside) {
        (Some(h), Some(i)) => (
            RttStats::from_histogram(&h),
            RttStats::from_histogram(&i).p50_us,
        ),
        _ => (
            RttStats::from_ns(samples.iter().map(|s| s.rtt_ns).collect()),
            RttStats::from_ns(samples.iter().map(|s| s.inside_ns).collect()).p50_us,
        ),
    };
    (rtt, inside_p50_us, samples, examples)
}

fn lock(state: &Mutex<ProbeState>) -> MutexGuard<'_, ProbeState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}
