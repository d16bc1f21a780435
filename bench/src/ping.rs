//! `locus bench ping`: the locus echo path against a raw tokio UDP echo, in one process and run;
//! then the precision mode (busy-polling drivers over quinn-proto) against a busy-polled raw
//! UDP echo, where neither side waits for a wake-up.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use locus_prober::busy::BusyTarget;
use locus_prober::stats::new_histogram;
use locus_prober::{connect, run_round, RoundConfig, RttStats, SpkiPolicy};
use locus_responder::busy::serve_busy;
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;
use serde::Serialize;
use tokio::net::UdpSocket;

#[derive(Args)]
pub struct PingArgs {
    /// Sequential round trips measured per path (after a warm-up).
    #[arg(long, default_value_t = 5000)]
    samples: u64,
    /// Challenges sent in the throughput run (256 in flight).
    #[arg(long, default_value_t = 300_000)]
    throughput_count: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PingReport {
    samples: u64,
    baseline_min_us: f64,
    baseline_p50_us: f64,
    baseline_p99_us: f64,
    locus_min_us: f64,
    locus_p50_us: f64,
    locus_p99_us: f64,
    ratio_p50: f64,
    ratio_min: f64,
    throughput_per_s: f64,
    p99_at_256_us: f64,
    lost_at_256: u64,
    /// Busy-polled raw UDP echo (both sides spin on non-blocking std sockets).
    busy_udp_min_us: f64,
    busy_udp_p50_us: f64,
    busy_udp_p99_us: f64,
    /// Precision mode: busy-polling QUIC drivers on both sides, same echo protocol.
    precision_min_us: f64,
    precision_p50_us: f64,
    precision_p99_us: f64,
    /// `precision_min_us - busy_udp_min_us` (target ≤ 15 µs).
    precision_min_gap_us: f64,
    precision_p50_gap_us: f64,
}

/// Measured samples follow this many unrecorded warm-up round trips.
const WARM_UP: u64 = 500;
/// An echo that takes longer than this is lost and fails the run.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);

const LOOPBACK: &str = "127.0.0.1:0";

/// Both ends run as they would in two processes: the answering side (UDP echo or locus
/// responder) on its own single-threaded runtime and thread, the measuring side on another.
/// Runs the benchmark; returns its report as text, or as JSON with `--json`.
pub fn run(args: PingArgs) -> anyhow::Result<String> {
    let server_rt = ServerThread::start()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = rt.block_on(measure(&args, &server_rt))?;
    drop(server_rt);
    // The spinning runs come last, on threads of their own, with the runtimes idle or gone.
    let busy_udp = busy_udp_baseline(args.samples)?;
    let precision = precision(args.samples)?;
    report.busy_udp_min_us = busy_udp.min_us;
    report.busy_udp_p50_us = busy_udp.p50_us;
    report.busy_udp_p99_us = busy_udp.p99_us;
    report.precision_min_us = precision.min_us;
    report.precision_p50_us = precision.p50_us;
    report.precision_p99_us = precision.p99_us;
    report.precision_min_gap_us = precision.min_us - busy_udp.min_us;
    report.precision_p50_gap_us = precision.p50_us - busy_udp.p50_us;
    render(&report, args.json)
}

/// A runtime on its own thread for the answering side, stopped on drop.
struct ServerThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    fn start() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = rt.block_on(stopped);
        });
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn measure(args: &PingArgs, server_rt: &ServerThread) -> anyhow::Result<PingReport> {
    let baseline = udp_baseline(args.samples, server_rt).await?;

    let server = server_rt
        .handle
        .spawn(async {
            let mut config = ServerConfig::new(LOOPBACK.parse()?);
            // Throughput of the echo path itself: no per-IP echo rate limit.
            config.limits.echo_per_ip_per_sec = None;
            Server::start(config, SessionKey::generate()?, EvidenceSource::default())
                .map_err(anyhow::Error::from)
        })
        .await??;
    let addr = server.local_addr()?;
    let pin = SpkiPolicy::Pinned(server.session_key().spki_der().to_vec());
    let target = connect(addr, LOOPBACK.parse()?, pin, Duration::from_secs(5)).await?;
    let sequential = RoundConfig {
        rate_hz: 0.0,
        count: args.samples,
        window: 1,
        timeout: Duration::from_secs(1),
        keep_samples: false,
        // Spin as the responder does: measure QUIC, not vCPU wake-ups.
        spin: Duration::from_micros(200),
    };
    // Warm-up: connection state, allocator, caches.
    run_round(
        &target,
        &RoundConfig {
            count: 500,
            ..sequential.clone()
        },
    )
    .await;
    let locus = run_round(&target, &sequential).await.rtt;
    let busy = run_round(
        &target,
        &RoundConfig {
            count: args.throughput_count,
            window: 256,
            ..sequential
        },
    )
    .await;
    target.conn.close(0u32.into(), b"done");
    server_rt
        .handle
        .spawn(async move { server.shutdown().await })
        .await?;

    Ok(PingReport {
        samples: args.samples,
        baseline_min_us: baseline.min_us,
        baseline_p50_us: baseline.p50_us,
        baseline_p99_us: baseline.p99_us,
        locus_min_us: locus.min_us,
        locus_p50_us: locus.p50_us,
        locus_p99_us: locus.p99_us,
        ratio_p50: locus.p50_us / baseline.p50_us,
        ratio_min: locus.min_us / baseline.min_us,
        throughput_per_s: busy.answered as f64 / busy.wall_s,
        p99_at_256_us: busy.rtt.p99_us,
        lost_at_256: busy.lost,
        // Filled in by `run` once the spinning runs are done.
        busy_udp_min_us: 0.0,
        busy_udp_p50_us: 0.0,
        busy_udp_p99_us: 0.0,
        precision_min_us: 0.0,
        precision_p50_us: 0.0,
        precision_p99_us: 0.0,
        precision_min_gap_us: 0.0,
        precision_p50_gap_us: 0.0,
    })
}

/// Raw UDP echo over loopback with tokio, the same payload size as a challenge.
async fn udp_baseline(samples: u64, server_rt: &ServerThread) -> anyhow::Result<RttStats> {
    let server = server_rt
        .handle
        .spawn(async { UdpSocket::bind(LOOPBACK).await })
        .await??;
    let server_addr: SocketAddr = server.local_addr()?;
    let server = Arc::new(server);
    let echo = server_rt.handle.spawn({
        let server = server.clone();
        async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let _ = server.send_to(&buf[..n], from).await;
            }
        }
    });
    let client = UdpSocket::bind(LOOPBACK).await?;
    client.connect(server_addr).await?;
    let payload = [7u8; locus_proto::EchoChallenge::LEN];
    let mut buf = [0u8; 1500];
    let mut hist = new_histogram();
    for i in 0..samples + 500 {
        let start = Instant::now();
        client.send(&payload).await?;
        tokio::time::timeout(Duration::from_secs(1), client.recv(&mut buf)).await??;
        if i >= 500 {
            hist.record(start.elapsed().as_nanos().max(1) as u64)?;
        }
    }
    echo.abort();
    Ok(RttStats::from_histogram(&hist))
}

/// A thread spinning on a non-blocking socket until its flag is set; stops and joins on drop.
struct Spinner<T> {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<T>>,
}

impl<T: Send + 'static> Spinner<T> {
    fn spawn(f: impl FnOnce(&AtomicBool) -> T + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || f(&stop)
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> anyhow::Result<T> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("joined only here or on drop");
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("spinning thread panicked"))
    }
}

impl<T> Drop for Spinner<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Raw UDP echo over loopback, both sides spinning on non-blocking std sockets: the floor that
/// the precision mode is compared with.
fn busy_udp_baseline(samples: u64) -> anyhow::Result<RttStats> {
    let server = std::net::UdpSocket::bind(LOOPBACK)?;
    server.set_nonblocking(true)?;
    let server_addr = server.local_addr()?;
    let echo = Spinner::spawn(move |stop| {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            match server.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let _ = server.send_to(&buf[..n], from);
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
    });
    let client = std::net::UdpSocket::bind(LOOPBACK)?;
    client.connect(server_addr)?;
    client.set_nonblocking(true)?;
    let payload = [7u8; locus_proto::EchoChallenge::LEN];
    let mut buf = [0u8; 1500];
    let mut hist = new_histogram();
    for i in 0..samples + WARM_UP {
        let start = Instant::now();
        client.send(&payload)?;
        loop {
            match client.recv(&mut buf) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() > ECHO_TIMEOUT {
                        anyhow::bail!("busy UDP echo: no answer within {ECHO_TIMEOUT:?}");
                    }
                    std::hint::spin_loop();
                }
                Err(e) => return Err(e.into()),
            }
        }
        if i >= WARM_UP {
            hist.record(start.elapsed().as_nanos().max(1) as u64)?;
        }
    }
    echo.finish()?;
    Ok(RttStats::from_histogram(&hist))
}

/// The precision mode: a busy responder thread and a busy prober on this thread, sequential
/// echoes over a pinned QUIC connection.
fn precision(samples: u64) -> anyhow::Result<RttStats> {
    let key = SessionKey::generate()?;
    let socket = std::net::UdpSocket::bind(LOOPBACK)?;
    let addr = socket.local_addr()?;
    let responder = Spinner::spawn({
        let key = key.clone();
        move |stop| serve_busy(socket, &key, stop)
    });
    let mut target = BusyTarget::connect(
        std::net::UdpSocket::bind(LOOPBACK)?,
        addr,
        SpkiPolicy::Pinned(key.spki_der().to_vec()),
        Duration::from_secs(5),
    )?;
    let mut hist = new_histogram();
    for i in 0..samples + WARM_UP {
        let nonce: locus_proto::Nonce = rand::random();
        let sample = target.echo(nonce, ECHO_TIMEOUT)?;
        if i >= WARM_UP {
            hist.record(sample.rtt_ns.max(1))?;
        }
    }
    target.close()?;
    responder.finish()??;
    Ok(RttStats::from_histogram(&hist))
}

/// The report as the command prints it.
fn render(r: &PingReport, json: bool) -> anyhow::Result<String> {
    crate::render(r, json, false, |out| {
        _ = writeln!(
            out,
            "{:<28} {:>9} {:>9} {:>9}",
            "path (sequential echo)", "min µs", "p50 µs", "p99 µs"
        );
        _ = writeln!(
            out,
            "{:<28} {:>9.1} {:>9.1} {:>9.1}",
            "raw tokio UDP (baseline)", r.baseline_min_us, r.baseline_p50_us, r.baseline_p99_us
        );
        _ = writeln!(
            out,
            "{:<28} {:>9.1} {:>9.1} {:>9.1}",
            "locus (QUIC datagrams)", r.locus_min_us, r.locus_p50_us, r.locus_p99_us
        );
        _ = writeln!(
            out,
            "ratio p50 {:.2} (target ≤ 1.3), ratio min {:.2}",
            r.ratio_p50, r.ratio_min
        );
        _ = writeln!(
            out,
            "256 in flight: {:.0} answered challenges/s (target ≥ 250000), p99 {:.1} µs (target ≤ 1000), lost {}",
            r.throughput_per_s, r.p99_at_256_us, r.lost_at_256
        );
        _ = writeln!(
            out,
            "{:<28} {:>9.1} {:>9.1} {:>9.1}",
            "busy-polled UDP (floor)", r.busy_udp_min_us, r.busy_udp_p50_us, r.busy_udp_p99_us
        );
        _ = writeln!(
            out,
            "{:<28} {:>9.1} {:>9.1} {:>9.1}",
            "locus precision (busy QUIC)",
            r.precision_min_us,
            r.precision_p50_us,
            r.precision_p99_us
        );
        _ = writeln!(
            out,
            "precision min gap {:.1} µs (target ≤ 15), p50 gap {:.1} µs",
            r.precision_min_gap_us, r.precision_p50_gap_us
        );
    })
}
