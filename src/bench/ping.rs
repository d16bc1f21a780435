//! `locus bench ping`: the locus echo path against a raw tokio UDP echo, in one process and run.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use locus_prober::stats::new_histogram;
use locus_prober::{connect, run_round, RoundConfig, RttStats, SpkiPolicy};
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;
use serde::Serialize;
use tokio::net::UdpSocket;

#[derive(Args)]
pub(crate) struct PingArgs {
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
}

const LOOPBACK: &str = "127.0.0.1:0";

/// Both ends run as they would in two processes: the answering side (UDP echo or locus
/// responder) on its own single-threaded runtime and thread, the measuring side on another.
pub(crate) fn run(args: PingArgs) -> anyhow::Result<ExitCode> {
    let server_rt = ServerThread::start()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(measure(&args, &server_rt))?;
    print(&report, args.json)?;
    Ok(ExitCode::SUCCESS)
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
            Server::start(
                ServerConfig::new(LOOPBACK.parse()?),
                SessionKey::generate()?,
                EvidenceSource::default(),
            )
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

#[expect(clippy::print_stdout, reason = "the CLI prints its report")]
fn print(r: &PingReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    println!(
        "{:<28} {:>9} {:>9} {:>9}",
        "path (sequential echo)", "min µs", "p50 µs", "p99 µs"
    );
    println!(
        "{:<28} {:>9.1} {:>9.1} {:>9.1}",
        "raw tokio UDP (baseline)", r.baseline_min_us, r.baseline_p50_us, r.baseline_p99_us
    );
    println!(
        "{:<28} {:>9.1} {:>9.1} {:>9.1}",
        "locus (QUIC datagrams)", r.locus_min_us, r.locus_p50_us, r.locus_p99_us
    );
    println!(
        "ratio p50 {:.2} (target ≤ 1.3), ratio min {:.2}",
        r.ratio_p50, r.ratio_min
    );
    println!(
        "256 in flight: {:.0} answered challenges/s (target ≥ 250000), p99 {:.1} µs (target ≤ 1000), lost {}",
        r.throughput_per_s, r.p99_at_256_us, r.lost_at_256
    );
    Ok(())
}
