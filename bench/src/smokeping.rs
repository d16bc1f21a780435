//! The fleet benchmark's peer: Prometheus smokeping_prober (Debian's
//! `prometheus-smokeping-prober`) pinging as many loopback hosts (127.1.x.y) at the same rate,
//! in the same run: its CPU per probe, memory and achieved probe rate beside the daemon's.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::fleet::{cpu_seconds, scrape, status_kib};

/// The Debian package's binary.
const BINARY: &str = "prometheus-smokeping-prober";
/// How long its first pings may take to show in `/metrics`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What smokeping_prober did in its window.
#[derive(Debug, Serialize)]
pub(crate) struct PeerReport {
    pub(crate) peer: &'static str,
    pub(crate) peer_hosts: usize,
    pub(crate) peer_probes_per_s: f64,
    pub(crate) peer_answered_ratio: f64,
    pub(crate) peer_cpu_cores: f64,
    pub(crate) peer_cpu_us_per_probe: f64,
    pub(crate) peer_rss_mib: f64,
}

/// The peer's process; killed on drop.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs smokeping_prober against `hosts` loopback addresses at `rate_hz` for `duration` (after
/// a warm-up of `warm_up`); fails when it is not installed.
pub(crate) fn run(
    hosts: usize,
    rate_hz: f64,
    warm_up: Duration,
    duration: Duration,
) -> anyhow::Result<PeerReport> {
    if hosts > 250 * 256 {
        bail!("smokeping peer: at most {} loopback hosts", 250 * 256);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let interval_ms = (1000.0 / rate_hz).round().max(1.0) as u64;
    let child = Command::new(BINARY)
        // Raw ICMP sockets (we run as root), as the package's service does.
        .arg("--privileged")
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--ping.interval={interval_ms}ms"))
        .args((0..hosts).map(|i| format!("127.1.{}.{}", i / 250, i % 250 + 1)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!("starting {BINARY} (apt-get install prometheus-smokeping-prober)")
        })?;
    let peer = Peer(child);
    let pid = peer.0.id();
    let t = Instant::now();
    while scrape(addr).map_or(0.0, |m| m.sum("smokeping_requests_total")) <= 0.0 {
        if t.elapsed() > START_TIMEOUT {
            bail!("{BINARY} sent no ping within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(warm_up);
    let before = scrape(addr)?;
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    std::thread::sleep(duration);
    let (cpu1, wall) = (cpu_seconds(pid)?, t0.elapsed().as_secs_f64());
    let after = scrape(addr)?;
    let rss = status_kib(pid, "VmRSS:")? as f64 / 1024.0;
    drop(peer);
    let delta = |name: &str| after.sum(name) - before.sum(name);
    let sent = delta("smokeping_requests_total");
    let answered = delta("smokeping_response_duration_seconds_count");
    let cpu = cpu1 - cpu0;
    Ok(PeerReport {
        peer: "smokeping",
        peer_hosts: hosts,
        peer_probes_per_s: sent / wall,
        peer_answered_ratio: if sent > 0.0 { answered / sent } else { 0.0 },
        peer_cpu_cores: cpu / wall,
        peer_cpu_us_per_probe: cpu * 1e6 / sent.max(1.0),
        peer_rss_mib: rss,
    })
}
