//! `locus bench overload`: a responder (`locus responder`, a child process) under attack by N
//! hostile connections while one pinned honest prober probes it and asks for evidence; the
//! honest prober's echo and evidence times under attack are compared with its own idle ones
//! in the same run.
//!
//! Idle and attack phases alternate (idle, attack, idle, attack, ...) for `--repetitions`
//! pairs, so that a scheduler stall of this machine is as likely to hit the baseline as the
//! attack; the samples of all idle phases and of all attack phases are pooled (with 40
//! evidence requests a phase and 5 pairs, the pooled p99 is the third slowest of 200, not the
//! single slowest), and the per-pair ratios' spread is reported beside the pooled ratio. Each
//! attack phase starts a new attack process from source addresses the responder has not seen
//! (penalties earned in one phase do not weaken the next) and kills it after; each idle phase
//! starts once the responder is quiet again.
//!
//! The attack mixes, per hostile connection in turn: request streams that send a frame header
//! and never its body (held open), unsigned evidence-request floods, and echo-challenge floods;
//! plus raw UDP datagrams at the responder's port, paced at `--flood-factor` times the echo
//! capacity measured before the attack (best effort: the attack process has its own CPUs,
//! by default one; the rate reached is reported).
//!
//! The attackers run in their own process ([`attack`]) on CPUs of their own ([`cpus`]): on a
//! real deployment they are other machines, so none of their work runs on the honest
//! prober's runtime, nor on the responder's or the prober's CPUs (on loopback the kernel's
//! receive work for a datagram runs in its sender's context, so the attack process pays most
//! of that too). Idle and loaded phases use the same honest prober, runtime, connection and
//! CPUs.

pub mod attack;
mod cpus;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use locus_prober::identity::ProberIdentity;
use locus_prober::requests::{request_evidence, RequestError};
use locus_prober::stats::RttStats;
use locus_prober::{connect, run_round, RoundConfig, SpkiPolicy, Target};
use locus_proto::messages::Include;
use locus_responder::admission::ShedCounts;
use locus_responder::server::EVIDENCE_TIMING_TARGET;
use locus_responder::tdx::lab::LabTdx;
use serde::Serialize;

#[derive(Args)]
pub struct OverloadArgs {
    /// Hostile connections (each one header-only streams, evidence flood or echo flood, in turn).
    #[arg(long, default_value_t = 96)]
    attack_connections: usize,
    /// Length of each measuring phase (capacity, each idle and each attack phase), in
    /// milliseconds.
    #[arg(long, default_value_t = 3000)]
    phase_ms: u64,
    /// Idle/attack pairs, run interleaved (idle, attack, idle, attack, ...).
    #[arg(long, default_value_t = 5)]
    repetitions: u32,
    /// Honest evidence requests per phase (each idle and each attack phase).
    #[arg(long, default_value_t = 40)]
    evidence_requests: u32,
    /// Raw datagram flood rate as a multiple of the measured echo capacity.
    #[arg(long, default_value_t = 10.0)]
    flood_factor: f64,
    /// Honest echo challenges per second.
    #[arg(long, default_value_t = 1000.0)]
    honest_rate: f64,
    /// CPUs of the attack process (a list as `1`, `2-3`, `0,2`; or `none`). The bench process,
    /// and what it starts (the responder and its children), runs on the other CPUs, in idle and attack
    /// phases alike: the attackers' sending cost is on their own machines, as on a deployment.
    /// Default: the last CPU when there are at least two, else `none` (the attack then shares
    /// the responder's and the honest prober's CPUs, and the model does not hold).
    #[arg(long, value_name = "LIST|none")]
    attacker_cpus: Option<cpus::AttackerCpus>,
    /// Keep the responder's log here, with each evidence request's timing (queue wait, work,
    /// hand-back) at debug.
    #[arg(long, value_name = "FILE")]
    responder_log: Option<std::path::PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Echo and evidence figures are pooled over every idle phase and every attack phase of the
/// run; counts and CPU seconds are summed over the attack phases.
#[derive(Debug, Default, Serialize)]
struct OverloadReport {
    attack_connections: usize,
    /// Idle/attack pairs run, interleaved.
    repetitions: u32,
    /// Honest evidence requests on each side (idle, under attack): repetitions × requests per
    /// phase. Failed ones under attack have no time (`honest_evidence_failed`).
    evidence_samples_per_side: u32,
    /// Hostile connection attempts the responder refused (connection cap, per-IP cap or
    /// handshake rate); each refused or closed attacker connects again.
    attack_connections_refused: u64,
    /// Hostile connections the responder closed (echo or request floods).
    attack_connections_closed: u64,
    honest_echo_p50_us: f64,
    honest_echo_p50_us_idle: f64,
    /// `honest_echo_p50_us / honest_echo_p50_us_idle` (goal ≤ 1.5).
    honest_echo_ratio: f64,
    /// The same ratio in each pair (attack phase over the idle phase before it): smallest,
    /// median and largest. The pooled ratio need not lie between them.
    honest_echo_ratio_min: f64,
    honest_echo_ratio_median: f64,
    honest_echo_ratio_max: f64,
    honest_echo_p99_us: f64,
    honest_echo_p99_us_idle: f64,
    /// Honest echo challenges lost under attack.
    honest_echo_lost: u64,
    honest_evidence_p99_ms: f64,
    honest_evidence_p99_ms_idle: f64,
    /// `honest_evidence_p99_ms / honest_evidence_p99_ms_idle` (goal ≤ 2).
    honest_evidence_ratio: f64,
    /// The evidence p99 ratio in each pair (of `--evidence-requests` each side, so each pair's
    /// p99 is about its slowest request): smallest, median and largest, over the pairs where
    /// a request under attack was answered.
    honest_evidence_p99_ratio_min: f64,
    honest_evidence_p99_ratio_median: f64,
    honest_evidence_p99_ratio_max: f64,
    /// Of those, the time inside the responder (request received to bundle ready, as the
    /// bundle records it): the rest is transport and the prober's side.
    honest_evidence_in_responder_p99_ms: f64,
    honest_evidence_in_responder_p99_ms_idle: f64,
    /// Honest evidence requests that failed under attack (busy, refused, timed out).
    honest_evidence_failed: u32,
    /// Each pair's own figures, in the order run.
    per_repetition: Vec<Repetition>,
    /// Before each idle phase the bench waits until the responder used at most one clock tick
    /// of CPU in [`QUIET_WINDOW`]: the longest such wait (after an attack: its connections
    /// closing, its queued datagrams drained).
    idle_settle_ms_max: f64,
    /// Peak resident set of the responder process (VmHWM; goal ≤ 256 MiB).
    responder_rss_mib_peak: f64,
    /// Echo answers per second the responder gave four flooding connections before the attack.
    echo_capacity_per_s: f64,
    /// Raw datagrams per second aimed at the responder, and reached.
    flood_target_per_s: f64,
    flood_sent_per_s: f64,
    /// Hostile echo challenges answered per second.
    attack_echo_answered_per_s: f64,
    /// Hostile evidence requests answered with a bundle (0 under `pinned` access).
    attack_evidence_answered: u64,
    /// Hostile evidence requests refused as unauthorized.
    attack_unauthorized: u64,
    /// `busy` and `rate-limited` answers to anyone.
    busy_answers: u64,
    /// Header-only request streams the responder let hostile connections open.
    attack_streams_held: u64,
    /// Nice value of the honest prober's threads; the responder and the attack process run
    /// at the bench's own (normally 0). On a deployment the attackers are other machines: here
    /// their CPU must not delay the prober's own code, in the idle phase as under attack.
    honest_prober_nice: i32,
    /// The CPUs the attack process and the bench's responder could run on (read back from each
    /// process): disjoint when pinned (`--attacker-cpus`), the same when not.
    attacker_cpus: BTreeSet<usize>,
    bench_cpus: BTreeSet<usize>,
    /// The responder process was still running after the attack.
    responder_alive: bool,
    /// Seconds of the measured attack phases (summed), and the CPU seconds used in them by the
    /// responder and by the bench (attackers, raw flood and honest prober; same machine): the
    /// sum of the attack process's and the honest prober's process's.
    attack_secs: f64,
    responder_cpu_s_attack: f64,
    bench_cpu_s_attack: f64,
    attacker_cpu_s_attack: f64,
    honest_prober_cpu_s_attack: f64,
    /// What the attackers reached in the measured phases, per second: connection attempts,
    /// hostile echo challenges sent, unsigned evidence requests sent.
    attack_connect_attempts_per_s: f64,
    attack_echo_sent_per_s: f64,
    attack_evidence_requests_per_s: f64,
    /// The machine's 1-minute load average when an attack phase ended (the highest of them).
    load_average: f64,
    /// What the responder shed, by limit, as it logged at shutdown (`null` when it did not).
    responder_shed: Option<ShedCounts>,
}

/// One idle/attack pair.
#[derive(Debug, Default, Serialize)]
struct Repetition {
    honest_echo_p50_us: f64,
    honest_echo_p50_us_idle: f64,
    honest_echo_ratio: f64,
    honest_evidence_p99_ms: f64,
    honest_evidence_p99_ms_idle: f64,
    honest_evidence_ratio: f64,
}

pub fn run(args: OverloadArgs) -> anyhow::Result<String> {
    if args.phase_ms == 0
        || args.repetitions == 0
        || args.evidence_requests == 0
        || args.honest_rate <= 0.0
    {
        bail!("--phase-ms, --repetitions, --evidence-requests and --honest-rate must be positive");
    }
    if args.repetitions > MAX_REPETITIONS {
        bail!(
            "--repetitions is at most {MAX_REPETITIONS} (each attack has its own source addresses)"
        );
    }
    let placement = cpus::Placement::split(&cpus::allowed()?, args.attacker_cpus.as_ref())?;
    if placement.pinned() {
        // Before anything is started: the responder, its children and the runtime's threads
        // inherit it.
        cpus::pin_process(&placement.bench)?;
    } else {
        tracing::warn!(
            "the attack process shares the responder's and the honest prober's CPUs: its cost \
             lands on them, as separate attacking machines' would not"
        );
    }
    let dir = tempfile::tempdir()?;
    let honest = Arc::new(ProberIdentity::from_seed(rand::random()));
    let mut responder = ResponderProcess::spawn(dir.path(), &honest, args.responder_log.is_some())?;
    // From here this thread and the runtime's (created by it, so inheriting) run the honest
    // prober only; the attack process is started at the bench's own priority.
    let base_nice = priority::get()?;
    let honest_nice = match priority::set(HONEST_NICE) {
        Ok(()) => HONEST_NICE,
        Err(e) => {
            tracing::warn!("the honest prober keeps nice {base_nice} (nice {HONEST_NICE}: {e})");
            base_nice
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Every step below has its own timeout; this bound catches what they miss (a hang is a
    // failed run with the responder's log, never a stuck bench).
    let deadline = run_deadline(&args);
    let result = rt.block_on(async {
        tokio::time::timeout(
            deadline,
            measure(
                &args,
                &responder,
                honest,
                dir.path(),
                base_nice,
                &placement.attacker,
            ),
        )
        .await
        .unwrap_or_else(|_| bail!("the run did not finish within {deadline:?}"))
    });
    // Hostile tasks may still be parked on the responder: do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            keep_log(&responder, args.responder_log.as_deref())?;
            bail!("{e:#}\nresponder log:\n{}", responder.log_tail())
        }
    };
    report.honest_prober_nice = honest_nice;
    report.bench_cpus = cpus::of(responder.pid)?;
    report.responder_alive = responder.alive();
    if !report.responder_alive {
        bail!("the responder died under attack:\n{}", responder.log_tail());
    }
    report.responder_rss_mib_peak =
        crate::fleet::status_kib(responder.pid, "VmHWM:")? as f64 / 1024.0;
    report.responder_shed = responder.stop_for_shed_counts();
    keep_log(&responder, args.responder_log.as_deref())?;
    render(&report, args.json)
}

fn keep_log(responder: &ResponderProcess, to: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let Some(to) = to {
        std::fs::copy(&responder.log, to)
            .with_context(|| format!("keeping the responder's log at {}", to.display()))?;
    }
    Ok(())
}

/// The longest a run may take: the capacity phase, then per pair two phases, the attack's
/// ramp, the wait for quiet, every honest evidence request at its timeout, every hostile
/// handshake at its timeout and stopping the attack; and slack for the rest.
fn run_deadline(args: &OverloadArgs) -> Duration {
    let phase = Duration::from_millis(args.phase_ms);
    let per_pair = phase * 3
        + SETTLE_MAX
        + EVIDENCE_TIMEOUT * 2 * args.evidence_requests
        + ATTACK_CONNECT_TIMEOUT * u32::try_from(args.attack_connections).unwrap_or(u32::MAX)
        + attack::STOP_TIMEOUT;
    phase + per_pair * args.repetitions + Duration::from_secs(30)
}

/// The most idle/attack pairs: each attack phase has a source subnet of its own, 127.0.1-254.x.
const MAX_REPETITIONS: u32 = 254;

/// The responder counts as quiet once it used at most one clock tick of CPU in this long.
const QUIET_WINDOW: Duration = Duration::from_millis(200);
/// The longest wait for quiet before an idle phase (then the phase starts anyway, logged).
const SETTLE_MAX: Duration = Duration::from_secs(10);

/// Nice value asked for the honest prober's threads ([`OverloadReport::honest_prober_nice`]).
const HONEST_NICE: i32 = -10;

/// The calling thread's scheduling priority (its nice value).
mod priority {
    /// The calling thread's nice value.
    pub(super) fn get() -> std::io::Result<i32> {
        Ok(rustix::process::getpriority_process(Some(
            rustix::thread::gettid(),
        ))?)
    }

    /// Sets the calling thread's nice value (threads and processes it starts inherit it); a
    /// lower value than the current one needs `CAP_SYS_NICE`.
    pub(super) fn set(nice: i32) -> std::io::Result<()> {
        // With a thread id, PRIO_PROCESS sets that thread's nice value only (Linux).
        Ok(rustix::process::setpriority_process(
            Some(rustix::thread::gettid()),
            nice,
        )?)
    }
}

/// One honest evidence request, and one hostile handshake, at most.
const EVIDENCE_TIMEOUT: Duration = Duration::from_secs(10);
const ATTACK_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a hostile connection the responder refused waits before trying again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// The honest prober's source address; attackers use 127.0.1.x.
const HONEST_BIND: &str = "127.0.0.2:0";

async fn measure(
    args: &OverloadArgs,
    responder: &ResponderProcess,
    honest: Arc<ProberIdentity>,
    dir: &std::path::Path,
    attack_nice: i32,
    attack_cpus: &BTreeSet<usize>,
) -> anyhow::Result<OverloadReport> {
    let addr = responder.addr;
    let pin = SpkiPolicy::Pinned(responder.spki.clone());
    let phase = Duration::from_millis(args.phase_ms);
    let prober = connect(
        addr,
        HONEST_BIND.parse()?,
        pin.clone(),
        Duration::from_secs(5),
    )
    .await?
    .with_signer(honest.clone());
    let mut report = OverloadReport {
        attack_connections: args.attack_connections,
        repetitions: args.repetitions,
        evidence_samples_per_side: args.repetitions * args.evidence_requests,
        load_average: f64::NAN,
        ..OverloadReport::default()
    };
    let busy = Arc::new(AtomicU64::new(0));

    // One request before anything is measured: the responder's first one also starts its
    // quoting thread (1-2 ms more), which would inflate the idle p99 the goal is relative to.
    tokio::time::timeout(
        EVIDENCE_TIMEOUT,
        request_evidence(&prober, &rand::random(), tdx_only()),
    )
    .await
    .context("warm-up evidence request timed out")??;

    // Capacity: four connections flooding echoes (from their own address).
    report.echo_capacity_per_s = capacity(addr, &pin, &honest, phase).await?;
    let flood_target = args.flood_factor * report.echo_capacity_per_s;

    let (mut idle, mut load) = (Phase::default(), Phase::default());
    // Counts of the measured attack phases, and each attack process's final counts, summed.
    let (mut measured, mut total) = (
        attack::AttackSnapshot::default(),
        attack::AttackSnapshot::default(),
    );
    let mut settle_max = Duration::ZERO;
    for rep in 0..args.repetitions {
        settle_max = settle_max.max(settle(responder.pid).await?);
        // Idle: the honest prober alone.
        let idle_rep = honest_phase(&prober, args, phase, &busy).await?;
        if idle_rep.evidence.failed > 0 {
            bail!(
                "{} of {} idle evidence requests failed: {}",
                idle_rep.evidence.failed,
                args.evidence_requests,
                idle_rep.evidence.last_error
            );
        }

        // Attack, from its own process: the honest prober's runtime and process run none of
        // it. Fresh source addresses, so this attack is as strong as the first.
        let subnet = u8::try_from(rep + 1)?;
        let mut attack = attack::AttackProcess::spawn(
            addr,
            &responder.spki,
            args.attack_connections,
            flood_target,
            subnet,
            &dir.join(format!("attack-{rep}.log")),
            attack::Scheduling {
                nice: attack_nice,
                cpus: attack_cpus,
            },
        )?;
        report.attacker_cpus = cpus::of(attack.pid)?;
        // Let the attack reach its stride before measuring.
        tokio::time::sleep(phase / 3).await;
        let attack_started = Instant::now();
        let cpu0 = (
            crate::fleet::cpu_seconds(responder.pid)?,
            crate::fleet::cpu_seconds(std::process::id())?,
            crate::fleet::cpu_seconds(attack.pid)?,
        );
        let before = attack.snapshot()?;
        let load_rep = honest_phase(&prober, args, phase, &busy).await?;
        let during = attack.snapshot()?;
        report.attack_secs += attack_started.elapsed().as_secs_f64();
        report.responder_cpu_s_attack += crate::fleet::cpu_seconds(responder.pid)? - cpu0.0;
        report.honest_prober_cpu_s_attack +=
            crate::fleet::cpu_seconds(std::process::id())? - cpu0.1;
        report.attacker_cpu_s_attack += crate::fleet::cpu_seconds(attack.pid)? - cpu0.2;
        report.load_average = report.load_average.max(load_average().unwrap_or(f64::NAN));
        let last = attack.stop()?;
        measured = measured.plus(&during.since(&before));
        total = total.plus(&last);

        report
            .per_repetition
            .push(Repetition::of(&idle_rep, &load_rep));
        idle.extend(idle_rep);
        load.extend(load_rep);
    }
    report.idle_settle_ms_max = settle_max.as_secs_f64() * 1e3;
    report.bench_cpu_s_attack = report.honest_prober_cpu_s_attack + report.attacker_cpu_s_attack;
    let per_s = |n: u64| n as f64 / report.attack_secs;

    let echo_idle = idle.echo();
    let echo_load = load.echo();
    report.attack_connections_refused = total.refused;
    report.attack_connections_closed = total.closed;
    report.honest_echo_p50_us = echo_load.p50_us;
    report.honest_echo_p50_us_idle = echo_idle.p50_us;
    report.honest_echo_p99_us = echo_load.p99_us;
    report.honest_echo_p99_us_idle = echo_idle.p99_us;
    report.honest_echo_lost = load.echo_lost;
    report.honest_echo_ratio = ratio(echo_load.p50_us, echo_idle.p50_us);
    (
        report.honest_echo_ratio_min,
        report.honest_echo_ratio_median,
        report.honest_echo_ratio_max,
    ) = spread(report.per_repetition.iter().map(|r| r.honest_echo_ratio));
    report.honest_evidence_p99_ms = p99_ms(&load.evidence.times);
    report.honest_evidence_p99_ms_idle = p99_ms(&idle.evidence.times);
    report.honest_evidence_ratio = ratio(
        report.honest_evidence_p99_ms,
        report.honest_evidence_p99_ms_idle,
    );
    (
        report.honest_evidence_p99_ratio_min,
        report.honest_evidence_p99_ratio_median,
        report.honest_evidence_p99_ratio_max,
    ) = spread(
        report
            .per_repetition
            .iter()
            .map(|r| r.honest_evidence_ratio),
    );
    report.honest_evidence_in_responder_p99_ms = p99_ms(&load.evidence.in_responder);
    report.honest_evidence_in_responder_p99_ms_idle = p99_ms(&idle.evidence.in_responder);
    report.honest_evidence_failed = load.evidence.failed;
    report.flood_target_per_s = flood_target;
    report.flood_sent_per_s = per_s(measured.flood_sent);
    report.attack_echo_answered_per_s = per_s(measured.echo_answered);
    report.attack_echo_sent_per_s = per_s(measured.echo_sent);
    report.attack_evidence_requests_per_s = per_s(measured.evidence_sent);
    report.attack_connect_attempts_per_s = per_s(measured.connect_attempts);
    report.attack_evidence_answered = total.evidence_answered;
    report.attack_unauthorized = total.unauthorized;
    report.attack_streams_held = total.streams_held;
    report.busy_answers = busy.load(Ordering::Relaxed) + total.busy;
    prober.conn.close(0u32.into(), b"done");
    Ok(report)
}

/// Waits until the responder is quiet: at most one clock tick of CPU (the resolution of
/// `/proc/PID/stat`) in a [`QUIET_WINDOW`], at most [`SETTLE_MAX`]. Returns how long it took.
async fn settle(pid: u32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let tick =
        1.0 / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("CLK_TCK")? as f64;
    let mut cpu = crate::fleet::cpu_seconds(pid)?;
    loop {
        tokio::time::sleep(QUIET_WINDOW).await;
        let now = crate::fleet::cpu_seconds(pid)?;
        // Half a tick of slack: the difference of two tick counts, as floats.
        if now - cpu < tick * 1.5 {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= SETTLE_MAX {
            tracing::warn!(
                cpu_s = now - cpu,
                "the responder is still busy {SETTLE_MAX:?} after the last phase; measuring anyway"
            );
            return Ok(started.elapsed());
        }
        cpu = now;
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// Smallest, median (the mean of the middle two of an even count) and largest of the finite
/// values; NaN (JSON `null`) when there are none.
fn spread(values: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (v[0], median, v[n - 1])
}

impl Repetition {
    fn of(idle: &Phase, load: &Phase) -> Self {
        let (echo_idle, echo_load) = (idle.echo(), load.echo());
        let (ev_idle, ev_load) = (p99_ms(&idle.evidence.times), p99_ms(&load.evidence.times));
        Self {
            honest_echo_p50_us: echo_load.p50_us,
            honest_echo_p50_us_idle: echo_idle.p50_us,
            honest_echo_ratio: ratio(echo_load.p50_us, echo_idle.p50_us),
            honest_evidence_p99_ms: ev_load,
            honest_evidence_p99_ms_idle: ev_idle,
            honest_evidence_ratio: ratio(ev_load, ev_idle),
        }
    }
}

/// What the honest prober measured in one phase, or in several pooled.
#[derive(Default)]
struct Phase {
    /// Round-trip time of every answered echo.
    echo_ns: Vec<u64>,
    echo_lost: u64,
    evidence: EvidenceTimes,
}

impl Phase {
    fn echo(&self) -> RttStats {
        RttStats::from_ns(self.echo_ns.clone())
    }

    fn extend(&mut self, other: Phase) {
        self.echo_ns.extend(other.echo_ns);
        self.echo_lost += other.echo_lost;
        self.evidence.times.extend(other.evidence.times);
        self.evidence
            .in_responder
            .extend(other.evidence.in_responder);
        self.evidence.failed += other.evidence.failed;
        if !other.evidence.last_error.is_empty() {
            self.evidence.last_error = other.evidence.last_error;
        }
    }
}

/// Evidence request times of one phase.
#[derive(Default)]
struct EvidenceTimes {
    times: Vec<Duration>,
    /// The responder's own time for each (request received to bundle ready, from the bundle).
    in_responder: Vec<Duration>,
    failed: u32,
    last_error: String,
}

/// One honest phase: echoes at `honest_rate` for `phase` while evidence requests follow one
/// another, spread over the same time.
async fn honest_phase(
    prober: &Target,
    args: &OverloadArgs,
    phase: Duration,
    busy: &AtomicU64,
) -> anyhow::Result<Phase> {
    let cfg = RoundConfig {
        rate_hz: args.honest_rate,
        count: (args.honest_rate * phase.as_secs_f64()).max(1.0) as u64,
        window: 64,
        timeout: Duration::from_secs(1),
        // Every round trip, so that phases pool exactly.
        keep_samples: true,
        spin: Duration::ZERO,
    };
    let echo = run_round(prober, &cfg);
    let evidence = async {
        let mut out = EvidenceTimes::default();
        let gap = phase / (args.evidence_requests + 1);
        for _ in 0..args.evidence_requests {
            tokio::time::sleep(gap).await;
            let nonce: [u8; 32] = rand::random();
            let t = Instant::now();
            match tokio::time::timeout(
                EVIDENCE_TIMEOUT,
                request_evidence(prober, &nonce, tdx_only()),
            )
            .await
            {
                Ok(Ok(bundle)) => {
                    out.times.push(t.elapsed());
                    if let Some(ns) = bundle.timings.evidence_ns {
                        out.in_responder.push(Duration::from_nanos(ns));
                    }
                }
                Ok(Err(e)) => {
                    if matches!(e, RequestError::Busy { .. }) {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                    out.failed += 1;
                    out.last_error = e.to_string();
                }
                Err(_) => {
                    out.failed += 1;
                    out.last_error = "timed out".into();
                }
            }
        }
        out
    };
    let (echo, evidence) = tokio::join!(echo, evidence);
    Ok(Phase {
        echo_ns: echo.samples.iter().map(|s| s.rtt_ns).collect(),
        echo_lost: echo.lost,
        evidence,
    })
}

/// What the honest prober asks for (the bench's responder has a lab TDX backend only).
fn tdx_only() -> Include {
    Include {
        tdx: true,
        ..Include::default()
    }
}

fn p99_ms(times: &[Duration]) -> f64 {
    if times.is_empty() {
        return f64::NAN;
    }
    let ns = times.iter().map(|d| d.as_nanos() as u64).collect();
    RttStats::from_ns(ns).p99_us / 1000.0
}

/// Echo answers per second to four connections flooding with 256 challenges in flight. Each
/// first proves the honest key (one signed evidence request), so the responder's total echo
/// budget, meant for unauthenticated peers, does not cap what is measured here.
async fn capacity(
    addr: SocketAddr,
    pin: &SpkiPolicy,
    key: &Arc<ProberIdentity>,
    phase: Duration,
) -> anyhow::Result<f64> {
    let bind: SocketAddr = "127.0.0.3:0".parse()?;
    let mut targets = Vec::new();
    for _ in 0..4 {
        let target = connect(addr, bind, pin.clone(), Duration::from_secs(5))
            .await?
            .with_signer(key.clone());
        tokio::time::timeout(
            EVIDENCE_TIMEOUT,
            request_evidence(&target, &rand::random(), tdx_only()),
        )
        .await
        .context("capacity: signed evidence request timed out")??;
        targets.push(target);
    }
    let mut tasks = Vec::new();
    let started = Instant::now();
    for target in targets {
        let until = started + phase;
        tasks.push(tokio::spawn(async move {
            let mut answered = 0;
            while Instant::now() < until && target.conn.close_reason().is_none() {
                answered += run_round(&target, &flood_round(5_000)).await.answered;
            }
            target.conn.close(0u32.into(), b"done");
            answered
        }));
    }
    let mut answered = 0;
    for t in tasks {
        answered += t.await?;
    }
    Ok(answered as f64 / started.elapsed().as_secs_f64())
}

fn flood_round(count: u64) -> RoundConfig {
    RoundConfig {
        rate_hz: 0.0,
        count,
        window: 256,
        timeout: Duration::from_millis(200),
        keep_samples: false,
        spin: Duration::ZERO,
    }
}

/// The log target of the responder's shed counts at shutdown (`src/responder_cmd.rs`).
const SHED_LOG_TARGET: &str = "locus_shed";

/// The 1-minute load average (`/proc/loadavg`).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `locus responder --config FILE` as a child process: pinned access for the honest key, a
/// lab TDX backend; killed on drop.
struct ResponderProcess {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    spki: Vec<u8>,
    log: std::path::PathBuf,
}

impl ResponderProcess {
    fn spawn(dir: &std::path::Path, honest: &ProberIdentity, timing: bool) -> anyhow::Result<Self> {
        let lab = dir.join("lab-pki");
        LabTdx::generate()?.save(&lab)?;
        let config = dir.join("responder.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\n\n[tdx]\nbackend = \"lab\"\nlab_dir = \"lab-pki\"\n\n\
                 [access]\nevidence = \"pinned\"\nprobers = [\"{}\"]\n",
                honest.public_key()
            ),
        )?;
        let log = dir.join("responder.log");
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("responder")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?);
        if std::env::var_os("RUST_LOG").is_none() {
            let mut filter = format!("warn,{SHED_LOG_TARGET}=info");
            if timing {
                filter.push_str(&format!(",{EVIDENCE_TIMING_TARGET}=debug"));
            }
            cmd.env("RUST_LOG", filter);
        }
        let mut child = cmd.spawn().context("starting `locus responder --config`")?;
        let pid = child.id();
        let stdout = child.stdout.take().context("responder stdout")?;
        // Its first line announces address and key; a responder that prints nothing within
        // the bound is a failed start, not a wait forever.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let announced: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        let addr = announced["listen"].as_str().and_then(|a| a.parse().ok());
        let spki = announced["spki"].as_str().and_then(|s| hex::decode(s).ok());
        let mut p = Self {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            spki: Vec::new(),
            log,
        };
        match (addr, spki) {
            (Some(a), Some(s)) => {
                p.addr = a;
                p.spki = s;
                Ok(p)
            }
            _ => bail!(
                "the responder did not announce its address (got {line:?}):\n{}",
                p.log_tail()
            ),
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the responder (SIGTERM) and reads the shed counts it logs on its way out; `None`
    /// when it did not log them within a few seconds.
    fn stop_for_shed_counts(&mut self) -> Option<ShedCounts> {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        kill(
            Pid::from_raw(i32::try_from(self.pid).ok()?),
            Signal::SIGTERM,
        )
        .ok()?;
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let counts = log
                .lines()
                .filter(|l| l.contains(SHED_LOG_TARGET))
                .find_map(|l| serde_json::from_str(l.split_once("counts=")?.1.trim()).ok());
            if counts.is_some() {
                return counts;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ResponderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn render(r: &OverloadReport, json: bool) -> anyhow::Result<String> {
    crate::render(r, json, true, |out| {
        let _ = writeln!(
            out,
            "attack: {} hostile connections ({} attempts refused, {} closed), raw flood {:.0}/s of {:.0}/s aimed \
             (capacity {:.0} echoes/s)",
            r.attack_connections,
            r.attack_connections_refused,
            r.attack_connections_closed,
            r.flood_sent_per_s,
            r.flood_target_per_s,
            r.echo_capacity_per_s
        );
        let _ = writeln!(
            out,
            "{} idle/attack pairs, interleaved; pooled over {} evidence requests a side \
             (the responder went quiet within {:.0} ms before each idle phase)",
            r.repetitions, r.evidence_samples_per_side, r.idle_settle_ms_max
        );
        let _ = writeln!(
            out,
            "honest echo p50: {:.1} µs under attack, {:.1} µs idle (ratio {:.2}, goal ≤ 1.5; \
             per pair {:.2} / {:.2} / {:.2} min / median / max); lost {}",
            r.honest_echo_p50_us,
            r.honest_echo_p50_us_idle,
            r.honest_echo_ratio,
            r.honest_echo_ratio_min,
            r.honest_echo_ratio_median,
            r.honest_echo_ratio_max,
            r.honest_echo_lost
        );
        let _ = writeln!(
            out,
            "honest evidence p99: {:.2} ms under attack, {:.2} ms idle (ratio {:.2}, goal ≤ 2; \
             per pair {:.2} / {:.2} / {:.2}), in the responder {:.2} / {:.2} ms; failed {}",
            r.honest_evidence_p99_ms,
            r.honest_evidence_p99_ms_idle,
            r.honest_evidence_ratio,
            r.honest_evidence_p99_ratio_min,
            r.honest_evidence_p99_ratio_median,
            r.honest_evidence_p99_ratio_max,
            r.honest_evidence_in_responder_p99_ms,
            r.honest_evidence_in_responder_p99_ms_idle,
            r.honest_evidence_failed
        );
        let _ = writeln!(
            out,
            "responder RSS peak: {:.1} MiB (goal ≤ 256); attack evidence answered {}, \
             unauthorized {}, busy answers {}, header-only streams held {}",
            r.responder_rss_mib_peak,
            r.attack_evidence_answered,
            r.attack_unauthorized,
            r.busy_answers,
            r.attack_streams_held
        );
        let _ = writeln!(
            out,
            "CPUs: attack process {}, responder and honest prober {}",
            cpus::list(&r.attacker_cpus),
            cpus::list(&r.bench_cpus)
        );
        if !r.attacker_cpus.is_disjoint(&r.bench_cpus) {
            let _ = writeln!(
                out,
                "warning: the attack process shares CPUs with the responder and the honest \
                 prober (--attacker-cpus none, or one CPU): its sending cost, and the kernel's \
                 receive work it pays on loopback, land on them; the model of attackers on \
                 machines of their own does not hold"
            );
        }
        let _ = writeln!(
            out,
            "attack phases {:.1} s: responder {:.2} CPU-s, attack process {:.2} CPU-s, honest \
             prober {:.2} CPU-s (nice {}); load average {:.2}",
            r.attack_secs,
            r.responder_cpu_s_attack,
            r.attacker_cpu_s_attack,
            r.honest_prober_cpu_s_attack,
            r.honest_prober_nice,
            r.load_average
        );
        let _ = writeln!(
            out,
            "attack reached: {:.0} connection attempts/s, {:.0} echo challenges/s ({:.0} \
             answered), {:.0} evidence requests/s",
            r.attack_connect_attempts_per_s,
            r.attack_echo_sent_per_s,
            r.attack_echo_answered_per_s,
            r.attack_evidence_requests_per_s
        );
        if let Some(c) = &r.responder_shed {
            let _ = writeln!(
                out,
                "responder shed: connections ignored per IP {}, over the handshake budget {}, \
                 penalized {} ({} penalties), over cap {}; echoes dropped per IP {}, over the \
                 IP's share {}; closed for echo floods {}, request floods {}",
                c.connections_per_ip,
                c.handshakes_over_budget,
                c.connections_penalized,
                c.flood_penalties,
                c.connections_over_cap,
                c.echo_dropped,
                c.echo_over_share,
                c.echo_flood_closed,
                c.request_flood_closed
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_min_median_max_of_the_finite_values() {
        let (lo, mid, hi) = spread([3.0, f64::NAN, 1.0, 2.0].into_iter());
        assert_eq!((lo, mid, hi), (1.0, 2.0, 3.0));
        // An even count: the mean of the middle two.
        let (lo, mid, hi) = spread([4.0, 1.0, 2.0, 8.0, f64::INFINITY].into_iter());
        assert_eq!((lo, mid, hi), (1.0, 3.0, 8.0));
        let (lo, mid, hi) = spread([f64::NAN].into_iter());
        assert!(lo.is_nan() && mid.is_nan() && hi.is_nan());
    }

    #[test]
    fn a_pooled_phase_holds_every_sample_of_its_parts() {
        let phase = |echo: &[u64], evidence_ms: &[u64], failed: u32| Phase {
            echo_ns: echo.to_vec(),
            echo_lost: 1,
            evidence: EvidenceTimes {
                times: evidence_ms
                    .iter()
                    .map(|&ms| Duration::from_millis(ms))
                    .collect(),
                in_responder: Vec::new(),
                failed,
                last_error: if failed > 0 {
                    "busy".into()
                } else {
                    String::new()
                },
            },
        };
        let mut pooled = Phase::default();
        pooled.extend(phase(&[1_000, 2_000, 3_000], &[1, 9], 1));
        pooled.extend(phase(&[4_000, 5_000], &[2], 0));
        assert_eq!(pooled.echo().count, 5);
        assert_eq!(pooled.echo().p50_us, 3.0);
        assert_eq!(pooled.echo_lost, 2);
        assert_eq!(p99_ms(&pooled.evidence.times), 9.0);
        assert_eq!(pooled.evidence.failed, 1);
        assert_eq!(pooled.evidence.last_error, "busy");
    }
}
