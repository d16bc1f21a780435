//! `locus bench fleet`: the prober daemon (`locus prober --config`, its own process: its CPU
//! and memory are its own) probing many targets at 1 Hz, against responders in this process;
//! then a plain UDP ping loop at the same probe rate in the same run, for CPU per probe.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use locus_prober::stats::new_histogram;
use locus_responder::admission::Limits;
use locus_responder::config::TdxSection;
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;
use locus_responder::tdx::lab::{LabOptions, LabTdx, PacedQuoter};
use locus_responder::tdx::TdxQuoter;
use locus_responder::udp_echo::UdpEchoConfig;
use serde::Serialize;

#[derive(Args)]
pub struct FleetArgs {
    /// Targets the prober probes, one QUIC connection each.
    #[arg(long, default_value_t = 10_000)]
    targets: usize,
    /// Echo challenges per second per target.
    #[arg(long, default_value_t = 1.0)]
    rate_hz: f64,
    /// Seconds measured once every target is connected and has run a round (the UDP loop runs
    /// up to 10 s).
    #[arg(long, default_value_t = 20.0)]
    duration_s: f64,
    /// The daemon's round length (one stored aggregate per target and round).
    #[arg(long, default_value_t = 10.0)]
    round_s: f64,
    /// Responder endpoints (127.0.1.1, 127.0.1.2, ...); targets are spread over them.
    #[arg(long, default_value_t = 4)]
    responders: usize,
    /// `/metrics` is scraped this often while measuring, as Prometheus would.
    #[arg(long, default_value_t = 15.0)]
    scrape_interval_s: f64,
    /// Each target asks for a TDX evidence bundle this often (lab quotes, `--quote-delay-ms`
    /// each, serialized per responder and coalesced as on a real TD); 0: never. Shows whether
    /// evidence requests delay other targets' echoes (`lateness_*`).
    #[arg(long, default_value_t = 0.0)]
    evidence_interval_s: f64,
    /// With `--evidence-interval-s`: the lab quoter's latency per quote, ms.
    #[arg(long, default_value_t = 40)]
    quote_delay_ms: u64,
    /// Seconds allowed until every target is connected.
    #[arg(long, default_value_t = 180.0)]
    connect_timeout_s: f64,
    /// Also run this peer on as many loopback hosts at the same rate, in the same run
    /// (`smokeping`: Debian's prometheus-smokeping-prober, which must be installed).
    #[arg(long, value_enum)]
    peer: Option<PeerKind>,
    /// How the daemon's echoes travel: `quic` (a connection per target) or `udp` (the
    /// responders' UDP echo: one session per target keyed from a QUIC connection closed once
    /// granted, one socket for all).
    #[arg(long, value_enum, default_value_t = EchoKind::Quic)]
    echo: EchoKind,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// `--echo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EchoKind {
    Quic,
    Udp,
}

/// A monitoring tool run beside the daemon for comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerKind {
    Smokeping,
}

#[derive(Serialize)]
struct FleetReport {
    targets: usize,
    /// `--echo`: `quic` or `udp`.
    echo_transport: EchoKind,
    rate_hz: f64,
    /// Seconds until every target was connected (from the prober's start).
    connect_s: f64,
    /// Seconds measured.
    duration_s: f64,
    /// Challenges sent per second in the measured window (all targets).
    probes_per_s: f64,
    expected_probes_per_s: f64,
    /// Answered / sent in the window.
    answered_ratio: f64,
    /// CPU time of the prober process per second of wall time (utime + stime).
    prober_cpu_cores: f64,
    /// Peak resident set of the prober process (VmHWM), set-up included.
    prober_rss_mib: f64,
    /// Resident set at the end of the window (VmRSS).
    prober_rss_end_mib: f64,
    /// `prober_rss_end_mib` per target, KiB (the daemon's fixed share included).
    prober_kib_per_target: f64,
    /// Lateness of challenges after their scheduled time, all targets (from the daemon's
    /// `locus_probe_lateness_seconds` histogram, interpolated within its bucket).
    lateness_p50_ms: f64,
    lateness_p99_ms: f64,
    prober_cpu_us_per_probe: f64,
    udp_loop_probes_per_s: f64,
    udp_loop_cpu_us_per_probe: f64,
    /// `prober_cpu_us_per_probe / udp_loop_cpu_us_per_probe`.
    cpu_ratio_vs_udp_loop: f64,
    /// With `--evidence-interval-s`: the evidence figures (`evidence_*` keys).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    evidence: Option<EvidenceFigures>,
    /// With `--peer`: the peer's figures (`peer_*` keys).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    peer: Option<crate::smokeping::PeerReport>,
}

/// Evidence requests while measuring (`--evidence-interval-s`), from the daemon's gauges.
#[derive(Serialize)]
struct EvidenceFigures {
    evidence_interval_s: f64,
    quote_delay_ms: u64,
    /// Targets that have asked for evidence by the end of the window.
    evidence_targets_asked: f64,
    /// Of those, targets whose latest request succeeded.
    evidence_targets_ok: f64,
    /// Targets whose latest success falls in the measured window.
    evidence_ok_in_window: f64,
}

/// The UDP loop runs at most this long: its CPU per probe settles within seconds.
const UDP_LOOP_MAX: Duration = Duration::from_secs(10);

/// Runs the benchmark; returns its report as text, or as JSON with `--json`.
pub fn run(args: FleetArgs) -> anyhow::Result<String> {
    if args.targets == 0 {
        bail!("--targets must be at least 1");
    }
    if !(1..=250).contains(&args.responders) {
        bail!("--responders must be 1 to 250 (one loopback address each)");
    }
    for (name, v) in [
        ("--rate-hz", args.rate_hz),
        ("--duration-s", args.duration_s),
        ("--round-s", args.round_s),
        ("--scrape-interval-s", args.scrape_interval_s),
        ("--connect-timeout-s", args.connect_timeout_s),
    ] {
        if !(v.is_finite() && v > 0.0) {
            bail!("{name} must be a finite number > 0");
        }
    }
    if !(args.evidence_interval_s.is_finite() && args.evidence_interval_s >= 0.0) {
        bail!("--evidence-interval-s must be a finite number >= 0");
    }
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let quote_delay =
        (args.evidence_interval_s > 0.0).then(|| Duration::from_millis(args.quote_delay_ms));
    let servers = rt.block_on(start_responders(
        args.responders,
        quote_delay,
        args.echo == EchoKind::Udp,
    ))?;
    let config = dir.path().join("fleet.toml");
    let addrs = servers
        .iter()
        .map(Server::local_addr)
        .collect::<std::io::Result<Vec<_>>>()?;
    std::fs::write(
        &config,
        prober_config(&args, &addrs, servers[0].session_key().spki_der()),
    )?;

    let started = Instant::now();
    let prober = ProberProcess::spawn(&config, dir.path())?;
    let measured = measure(&args, &prober, started);
    let stderr_tail = prober.stop();
    rt.block_on(async {
        for s in &servers {
            s.shutdown().await;
        }
    });
    drop(rt);
    let mut report = measured.map_err(|e| anyhow::anyhow!("{e:#}\nprober log:\n{stderr_tail}"))?;

    let pps = args.targets as f64 * args.rate_hz;
    let udp = udp_loop(
        pps,
        Duration::from_secs_f64(args.duration_s).min(UDP_LOOP_MAX),
    )?;
    report.udp_loop_probes_per_s = udp.answered as f64 / udp.wall_s;
    report.udp_loop_cpu_us_per_probe = udp.cpu_s * 1e6 / udp.answered.max(1) as f64;
    report.cpu_ratio_vs_udp_loop =
        report.prober_cpu_us_per_probe / report.udp_loop_cpu_us_per_probe;
    if args.peer == Some(PeerKind::Smokeping) {
        report.peer = Some(crate::smokeping::run(
            args.targets,
            args.rate_hz,
            Duration::from_secs(2),
            Duration::from_secs_f64(args.duration_s).min(UDP_LOOP_MAX),
        )?);
    }
    render(&report, args.json)
}

/// `n` responders; with `quote_delay`, each has a lab TDX quoter that takes that long per
/// quote, serialized and coalesced as a real TD's.
async fn start_responders(
    n: usize,
    quote_delay: Option<Duration>,
    udp_echo: bool,
) -> anyhow::Result<Vec<Server>> {
    let key = SessionKey::generate()?;
    let lab = match quote_delay {
        Some(_) => {
            let now = locus_fleet::time::unix_now()?;
            Some(
                tokio::task::spawn_blocking(move || LabTdx::generate_with(&LabOptions::at(now)))
                    .await??,
            )
        }
        None => None,
    };
    (0..n)
        .map(|i| {
            let ip = [127, 0, 1, i as u8 + 1];
            let mut cfg = ServerConfig::new(SocketAddr::from((ip, 0)));
            cfg.udp_echo = udp_echo.then(|| UdpEchoConfig {
                listen: SocketAddr::from((ip, 0)),
                lifetime: Duration::from_secs(3600),
            });
            // A 1 Hz monitor gains nothing from spinning; it would only burn the CPU the
            // prober is measured on.
            cfg.spin_after_answer = Duration::ZERO;
            // One prober (one IP) holds every connection: the defaults' caps, sized for
            // strangers on the internet, would refuse all but the first 64 and answer at most
            // 10 000 echoes a second in all.
            cfg.limits = Limits {
                max_connections: usize::MAX,
                max_connections_per_ip: usize::MAX,
                connections_per_ip_per_sec: 1e9,
                handshakes_per_sec: 1e9,
                echo_per_ip_per_sec: None,
                echo_per_sec: None,
                requests_per_ip_per_sec: 1e9,
                // Every target may ask at once: coalescing answers them in batches.
                evidence_queue: 1 << 20,
                udp_echo_sessions: usize::MAX,
                udp_echo_sessions_per_ip: usize::MAX,
                ..Limits::default()
            };
            let source = match (&lab, quote_delay) {
                (Some(lab), Some(delay)) => {
                    // One quoting service per responder, as one per machine.
                    let paced: Arc<dyn TdxQuoter> = Arc::new(PacedQuoter::new(lab.quoter(), delay));
                    EvidenceSource::new(Some(paced), None)
                        .with_coalescing(TdxSection::default().coalesce_max_batch)
                }
                _ => EvidenceSource::default(),
            };
            Ok(Server::start(cfg, key.clone(), source)?)
        })
        .collect()
}

/// The daemon's configuration: `args.targets` targets spread over the responders at `addrs`,
/// all pinned to `spki_der`.
fn prober_config(args: &FleetArgs, addrs: &[SocketAddr], spki_der: &[u8]) -> String {
    let spki = hex::encode(spki_der);
    let mut s = format!(
        "db = \"fleet.db\"\nlisten = \"127.0.0.1:0\"\nbind = \"127.0.0.1:0\"\n\
         [prober]\nid = \"bench\"\nsite = \"lab\"\n\
         [probe]\nrate_hz = {}\nround_s = {}\nwindow = 4\ntimeout_ms = 1000\n\
         evidence_interval_s = {}\nevidence_tpm = false\necho = \"{}\"\n\
         [[sites]]\nname = \"lab\"\nlat = 0.0\nlon = 0.0\n",
        args.rate_hz,
        args.round_s,
        args.evidence_interval_s,
        match args.echo {
            EchoKind::Quic => "quic",
            EchoKind::Udp => "udp",
        }
    );
    for i in 0..args.targets {
        let addr = addrs[i % addrs.len()];
        s.push_str(&format!(
            "[[targets]]\nname = \"t{i:05}\"\naddress = \"{addr}\"\nclaim = \"lab\"\nspki = \"{spki}\"\n"
        ));
    }
    s
}

/// `locus prober --config FILE` as a child process; killed on drop.
struct ProberProcess {
    child: Child,
    pid: u32,
    http: SocketAddr,
    stderr: PathBuf,
}

impl ProberProcess {
    fn spawn(config: &Path, dir: &Path) -> anyhow::Result<Self> {
        let stderr = dir.join("prober.log");
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("prober")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd.spawn().context("starting `locus prober --config`")?;
        let pid = child.id();
        let stdout = child.stdout.take().context("prober stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let mut p = Self {
            child,
            pid,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
        };
        let listen = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["listen"].as_str()?.parse().ok());
        match listen {
            Some(a) => p.http = a,
            None => bail!(
                "the prober did not announce its address (got {line:?}):\n{}",
                p.stop()
            ),
        }
        Ok(p)
    }

    /// Kills the prober; returns the end of its log.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ProberProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bar(len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn measure(
    args: &FleetArgs,
    prober: &ProberProcess,
    started: Instant,
) -> anyhow::Result<FleetReport> {
    let n = args.targets as f64;
    let connecting = bar(
        args.targets as u64,
        "{spinner} fleet: connecting [{bar:40}] {pos}/{len} targets {elapsed}",
    );
    loop {
        let m = scrape(prober.http)?;
        let connected = m.sum("locus_targets_connected");
        connecting.set_position(connected as u64);
        if connected >= n {
            break;
        }
        if started.elapsed().as_secs_f64() > args.connect_timeout_s {
            bail!(
                "only {connected} of {} targets connected within {} s",
                args.targets,
                args.connect_timeout_s
            );
        }
        // Each scrape renders every target's series (~8 KiB, ~22 µs of the daemon's CPU per
        // target): at 50 000 targets a poll every 500 ms would take the daemon's whole CPU.
        std::thread::sleep(Duration::from_secs_f64((n / 5000.0).clamp(0.5, 10.0)));
    }
    connecting.finish_and_clear();
    let connect_s = started.elapsed().as_secs_f64();

    // Counters move when rounds end, and first rounds have random lengths (the daemon spreads
    // round ends): measure once every target has ended a round.
    let warm_up = Duration::from_secs_f64(args.round_s);
    let warming = bar(
        warm_up.as_secs(),
        "{spinner} fleet: warming up [{bar:40}] {pos}/{len} s",
    );
    let w0 = Instant::now();
    while w0.elapsed() < warm_up {
        std::thread::sleep(Duration::from_millis(250).min(warm_up.saturating_sub(w0.elapsed())));
        warming.set_position(w0.elapsed().as_secs());
    }
    warming.finish_and_clear();

    let duration = Duration::from_secs_f64(args.duration_s);
    let measuring = bar(
        duration.as_secs(),
        "{spinner} fleet: measuring [{bar:40}] {pos}/{len} s {msg}",
    );
    let before = scrape(prober.http)?;
    let scraped_before = Instant::now();
    let window_start_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let cpu0 = cpu_seconds(prober.pid)?;
    let t0 = Instant::now();
    let scrape_every = Duration::from_secs_f64(args.scrape_interval_s);
    let mut next_scrape = t0 + scrape_every;
    while t0.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1).min(duration.saturating_sub(t0.elapsed())));
        if Instant::now() >= next_scrape && t0.elapsed() < duration {
            // Like Prometheus: the cost of encoding every target's series counts.
            scrape(prober.http)?;
            next_scrape += scrape_every;
        }
        let rss = status_kib(prober.pid, "VmRSS:")? as f64 / 1024.0;
        measuring.set_position(t0.elapsed().as_secs());
        measuring.set_message(format!("RSS {rss:.0} MiB"));
    }
    let cpu1 = cpu_seconds(prober.pid)?;
    let wall = t0.elapsed().as_secs_f64();
    let hwm = status_kib(prober.pid, "VmHWM:")? as f64 / 1024.0;
    let rss_end = status_kib(prober.pid, "VmRSS:")? as f64 / 1024.0;
    let after = scrape(prober.http)?;
    let scraped_wall = scraped_before.elapsed().as_secs_f64();
    measuring.finish_and_clear();

    let delta = |name: &str| after.sum(name) - before.sum(name);
    let sent = delta("locus_challenges_sent_total");
    if sent <= 0.0 {
        bail!("no challenge was sent in the window: is --duration-s shorter than --round-s?");
    }
    let lateness = after.histogram_delta("locus_probe_lateness_seconds", &before);
    let cpu = cpu1 - cpu0;
    Ok(FleetReport {
        targets: args.targets,
        echo_transport: args.echo,
        rate_hz: args.rate_hz,
        connect_s,
        duration_s: wall,
        probes_per_s: sent / scraped_wall,
        expected_probes_per_s: n * args.rate_hz,
        answered_ratio: delta("locus_answers_total") / sent,
        prober_cpu_cores: cpu / wall,
        prober_rss_mib: hwm,
        prober_rss_end_mib: rss_end,
        prober_kib_per_target: rss_end * 1024.0 / n,
        lateness_p50_ms: quantile(&lateness, 0.50) * 1e3,
        lateness_p99_ms: quantile(&lateness, 0.99) * 1e3,
        prober_cpu_us_per_probe: cpu * 1e6 / (sent * wall / scraped_wall),
        // Filled in once the UDP loop has run.
        udp_loop_probes_per_s: 0.0,
        udp_loop_cpu_us_per_probe: 0.0,
        cpu_ratio_vs_udp_loop: 0.0,
        evidence: (args.evidence_interval_s > 0.0).then(|| EvidenceFigures {
            evidence_interval_s: args.evidence_interval_s,
            quote_delay_ms: args.quote_delay_ms,
            evidence_targets_asked: after.count("locus_evidence_request_success"),
            evidence_targets_ok: after.sum("locus_evidence_request_success"),
            evidence_ok_in_window: after.count_above(
                "locus_evidence_last_success_timestamp_seconds",
                window_start_unix,
            ),
        }),
        peer: None,
    })
}

/// CPU seconds (user + system) the process has used: fields 14 and 15 of /proc/PID/stat.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat: has the prober exited?"))?;
    // The command name (field 2) may contain spaces: count fields after its closing paren.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .with_context(|| format!("short /proc/{pid}/stat"))?
            .parse::<f64>()?)
    };
    let hz =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("CLK_TCK unknown")? as f64;
    // Fields after the name start at 3 (state): utime is field 14, stime 15.
    Ok((ticks(11)? + ticks(12)?) / hz)
}

/// A `kB` line of /proc/PID/status, e.g. `VmHWM:`.
pub(crate) fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// One `/metrics` scrape: series values summed per name; histogram buckets by `le`.
pub(crate) struct Scrape {
    lines: Vec<(String, String, f64)>,
}

impl Scrape {
    /// Parses the Prometheus text format (comments skipped, unparsable lines ignored).
    fn parse(text: &str) -> Self {
        let lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (name, labels) = series.split_once('{').unwrap_or((series, ""));
                Some((name.to_owned(), labels.to_owned(), value.parse().ok()?))
            })
            .collect();
        Self { lines }
    }

    pub(crate) fn sum(&self, name: &str) -> f64 {
        self.lines
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Series of `name`.
    fn count(&self, name: &str) -> f64 {
        self.lines.iter().filter(|(n, _, _)| n == name).count() as f64
    }

    /// Series of `name` whose value exceeds `min`.
    fn count_above(&self, name: &str, min: f64) -> f64 {
        self.lines
            .iter()
            .filter(|(n, _, v)| n == name && *v > min)
            .count() as f64
    }

    /// `(le, count in this scrape minus count in `before`)`, cumulative, ascending.
    fn histogram_delta(&self, name: &str, before: &Scrape) -> Vec<(f64, f64)> {
        let buckets = |s: &Scrape| -> Vec<(f64, f64)> {
            let series = format!("{name}_bucket");
            let mut b: Vec<(f64, f64)> = s
                .lines
                .iter()
                .filter(|(n, _, _)| *n == series)
                .filter_map(|(_, labels, v)| {
                    let le = labels.split("le=\"").nth(1)?.split('"').next()?;
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    };
                    Some((le, *v))
                })
                .collect();
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            b
        };
        let (now, then) = (buckets(self), buckets(before));
        now.iter()
            .map(|(le, v)| {
                let old = then.iter().find(|(l, _)| l == le).map_or(0.0, |(_, v)| *v);
                (*le, v - old)
            })
            .collect()
    }
}

/// The `q` quantile of cumulative buckets, interpolated linearly within its bucket (as
/// PromQL's `histogram_quantile`); in the `+Inf` bucket, the largest finite bound.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0.0;
    };
    if total <= 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return lower;
            }
            let inside = count - below;
            return if inside > 0.0 {
                lower + (le - lower) * (rank - below) / inside
            } else {
                le
            };
        }
        (lower, below) = (le, count);
    }
    lower
}

pub(crate) fn scrape(addr: SocketAddr) -> anyhow::Result<Scrape> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to /metrics at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        // HTTP/1.0: the answer comes unchunked, closed at its end.
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let Some((head, body)) = out.split_once("\r\n\r\n") else {
        bail!("malformed answer from /metrics: {out:.200}");
    };
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("/metrics answered {head:.200}");
    }
    Ok(Scrape::parse(body))
}

struct UdpLoop {
    answered: u64,
    wall_s: f64,
    cpu_s: f64,
}

/// A plain tokio UDP ping loop on one thread: every millisecond it sends the probes due at
/// `pps`, stamped with their send time, and takes the echoes of a plain UDP echo thread.
/// Its CPU is the loop thread's own (`getrusage(RUSAGE_THREAD)`); the echo's is not counted,
/// as the responders' are not counted for the prober.
fn udp_loop(pps: f64, duration: Duration) -> anyhow::Result<UdpLoop> {
    let echo = std::net::UdpSocket::bind("127.0.0.1:0")?;
    echo.set_read_timeout(Some(Duration::from_millis(100)))?;
    let echo_addr = echo.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let echo_thread = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], from);
                }
            }
        }
    });
    let result = std::thread::spawn(move || -> anyhow::Result<UdpLoop> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            sock.connect(echo_addr).await?;
            let usage0 = thread_cpu_seconds()?;
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let (mut sent, mut answered) = (0u64, 0u64);
            let mut rtts = new_histogram();
            let mut payload = [0u8; locus_proto::EchoChallenge::LEN];
            let mut buf = [0u8; 1500];
            let end = start + duration;
            // Answers still on their way when sending stops get a short grace period.
            while Instant::now() < end + Duration::from_millis(100) {
                tokio::select! {
                    _ = tick.tick() => {
                        if Instant::now() >= end {
                            continue;
                        }
                        let due = (start.elapsed().as_secs_f64() * pps) as u64;
                        while sent < due {
                            let ns = start.elapsed().as_nanos() as u64;
                            payload[..8].copy_from_slice(&ns.to_le_bytes());
                            sock.send(&payload).await?;
                            sent += 1;
                        }
                    }
                    r = sock.recv(&mut buf) => {
                        let n = r?;
                        if n >= 8 {
                            let mut ns = [0u8; 8];
                            ns.copy_from_slice(&buf[..8]);
                            let rtt = (start.elapsed().as_nanos() as u64)
                                .saturating_sub(u64::from_le_bytes(ns));
                            let _ = rtts.record(rtt.max(1));
                            answered += 1;
                        }
                    }
                }
            }
            let cpu_s = thread_cpu_seconds()? - usage0;
            anyhow::Ok(UdpLoop {
                answered,
                wall_s: duration.as_secs_f64(),
                cpu_s,
            })
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the UDP loop thread panicked"))?;
    stop.store(true, Ordering::Relaxed);
    let _ = echo_thread.join();
    let r = result?;
    if r.answered == 0 {
        bail!("the plain UDP loop got no answer");
    }
    Ok(r)
}

fn thread_cpu_seconds() -> anyhow::Result<f64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_THREAD)?;
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(s(u.user_time()) + s(u.system_time()))
}

/// The report as the command prints it.
fn render(r: &FleetReport, json: bool) -> anyhow::Result<String> {
    crate::render(r, json, false, |out| {
        _ = writeln!(
            out,
            "{} targets at {} Hz over {:?} echo: connected in {:.1} s; measured {:.1} s",
            r.targets, r.rate_hz, r.echo_transport, r.connect_s, r.duration_s
        );
        _ = writeln!(
            out,
            "probes/s {:.0} (expected {:.0}), answered {:.2} %",
            r.probes_per_s,
            r.expected_probes_per_s,
            r.answered_ratio * 100.0
        );
        _ = writeln!(
            out,
            "prober CPU {:.3} cores (goal ≤ 0.25 at 10 000, ≤ 1 at 50 000), RSS peak {:.0} MiB, \
             at end {:.0} MiB = {:.1} KiB per target (goal ≤ 256 MiB at 10 000, ≤ 1 GiB at 50 000)",
            r.prober_cpu_cores, r.prober_rss_mib, r.prober_rss_end_mib, r.prober_kib_per_target
        );
        _ = writeln!(
            out,
            "lateness p50 {:.2} ms, p99 {:.2} ms",
            r.lateness_p50_ms, r.lateness_p99_ms
        );
        _ = writeln!(
            out,
            "CPU per probe: prober {:.1} µs, plain UDP loop {:.1} µs ({:.0} probes/s): ratio {:.1}",
            r.prober_cpu_us_per_probe,
            r.udp_loop_cpu_us_per_probe,
            r.udp_loop_probes_per_s,
            r.cpu_ratio_vs_udp_loop
        );
        if let Some(e) = &r.evidence {
            _ = writeln!(
                out,
                "evidence every {} s per target ({} ms quotes): {:.0} targets asked, latest \
                 request ok for {:.0}, {:.0} succeeded in the window",
                e.evidence_interval_s,
                e.quote_delay_ms,
                e.evidence_targets_asked,
                e.evidence_targets_ok,
                e.evidence_ok_in_window
            );
        }
        if let Some(p) = &r.peer {
            _ = writeln!(
                out,
                "{} ({} hosts): {:.0} probes/s, answered {:.2} %, CPU {:.3} cores = {:.1} µs per \
                 probe ({:.1}x locus), RSS {:.0} MiB",
                p.peer,
                p.peer_hosts,
                p.peer_probes_per_s,
                p.peer_answered_ratio * 100.0,
                p.peer_cpu_cores,
                p.peer_cpu_us_per_probe,
                p.peer_cpu_us_per_probe / r.prober_cpu_us_per_probe,
                p.peer_rss_mib
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        // 100 observations: 50 ≤ 1 ms, 49 in (1, 2] ms, 1 above 4 ms.
        let b = [
            (0.001, 50.0),
            (0.002, 99.0),
            (0.004, 99.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((quantile(&b, 0.5) - 0.001).abs() < 1e-9);
        assert!((quantile(&b, 0.99) - 0.002).abs() < 1e-9);
        assert!((quantile(&b, 0.745) - 0.0015).abs() < 1e-9);
        assert_eq!(quantile(&b, 1.0), 0.004);
        assert_eq!(quantile(&[], 0.99), 0.0);
    }

    #[test]
    fn the_daemon_loads_the_config_and_asks_for_evidence_only_when_told() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            fleet: FleetArgs,
        }
        let addrs: Vec<SocketAddr> = vec![
            "127.0.1.1:4433".parse().unwrap(),
            "127.0.1.2:4433".parse().unwrap(),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (flags, interval) in [
            (&["x", "--targets", "5"][..], None),
            (
                &["x", "--targets", "5", "--evidence-interval-s", "30"][..],
                Some(Duration::from_secs(30)),
            ),
        ] {
            let args = Cli::parse_from(flags).fleet;
            let path = dir.path().join("fleet.toml");
            std::fs::write(&path, prober_config(&args, &addrs, &[1, 2, 3])).unwrap();
            let c = locus_fleet::daemon::config::Config::load(&path).unwrap();
            assert_eq!(c.targets.len(), 5);
            assert_eq!(c.targets[1].address.to_string(), "127.0.1.2:4433");
            assert_eq!(c.probe.evidence_interval, interval);
            assert!(c.probe.evidence_tdx && !c.probe.evidence_tpm);
        }
    }

    #[test]
    fn scrapes_count_series_above_a_value() {
        let s = Scrape::parse("g{t=\"a\"} 1\ng{t=\"b\"} 0\ng{t=\"c\"} 5\nh 9");
        assert_eq!(s.count("g"), 3.0);
        assert_eq!(s.count_above("g", 0.5), 2.0);
        assert_eq!(s.count("none"), 0.0);
    }

    #[test]
    fn scrapes_sum_series_and_difference_buckets() {
        let before = Scrape::parse(
            "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nc_total{t=\"a\"} 5",
        );
        let after = Scrape::parse(
            "h_bucket{le=\"0.1\"} 4\nh_bucket{le=\"+Inf\"} 6\nc_total{t=\"a\"} 7\nc_total{t=\"b\"} 1",
        );
        assert_eq!(after.sum("c_total") - before.sum("c_total"), 3.0);
        assert_eq!(
            after.histogram_delta("h", &before),
            vec![(0.1, 3.0), (f64::INFINITY, 4.0)]
        );
    }
}
