//! `locus bench ping`: what the locus echo path adds to a round trip, against a raw UDP echo
//! under the same polling policy, in one process and run. Three policies: both ends spinning
//! for a while after each datagram (the default of the prober and the responder), neither end
//! spinning, and the precision mode (busy-polling on both ends). Under the first two the locus
//! side is the quinn-proto drivers on the thread that reads the socket (spinning, then parked in
//! the kernel), beside a raw tokio UDP echo; the tokio drivers (quinn's endpoint and connection
//! tasks, what `locus responder` and the daemon run) are measured in the same blocks as a third
//! side. Each pair runs interleaved (A, B, A, B…) over several repetitions so that machine noise
//! hits both sides alike; the spread is over repetitions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use locus_net::spinning;
use locus_prober::busy::BusyTarget;
use locus_prober::client::Target;
use locus_prober::{connect, run_round, RoundConfig, RttStats, SpkiPolicy};
use locus_responder::busy::{serve_busy, serve_parked, BusyError, BusyReport};
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;
use serde::Serialize;
use tokio::net::UdpSocket;

#[derive(Args)]
pub struct PingArgs {
    /// Sequential round trips measured per path, split evenly over the repetitions (each
    /// block after a warm-up of its own).
    #[arg(long, default_value_t = 5000)]
    samples: u64,
    /// Interleaved repetitions of each pair (baseline, locus, baseline, locus…); the spread
    /// of the overheads is over these.
    #[arg(long, default_value_t = 5)]
    repetitions: u32,
    /// Challenges sent in the throughput run (256 in flight).
    #[arg(long, default_value_t = 300_000)]
    throughput_count: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Overheads are locus minus baseline under the same polling policy, in µs; `_km` turns them
/// into km of fiber (a 10 km round trip in fiber takes 100 µs).
#[derive(Serialize)]
struct PingReport {
    samples: u64,
    repetitions: u32,
    /// The spin-after-datagram both sides of the spin pair use (the locus defaults).
    baseline_spin_us: f64,
    /// Spin pair: raw tokio UDP echo, both ends spinning `baseline_spin_us` after a datagram.
    baseline_min_us: f64,
    baseline_p50_us: f64,
    baseline_p99_us: f64,
    /// Spin pair: the locus quinn-proto drivers on the socket's thread, both ends spinning
    /// `baseline_spin_us` and then sleeping in the kernel.
    locus_min_us: f64,
    locus_p50_us: f64,
    locus_p99_us: f64,
    /// `locus_p50_us / baseline_p50_us` (target ≤ 1.3).
    ratio_p50: f64,
    ratio_min: f64,
    /// Median over repetitions of the spin pair's p50 difference (target ≤ 3 µs).
    overhead_p50_us: f64,
    /// `locus_min_us - baseline_min_us`.
    overhead_min_us: f64,
    overhead_p50_km: f64,
    /// Spin pair, third side: the tokio drivers (quinn's endpoint and connection tasks), both
    /// ends spinning `baseline_spin_us`; the overhead is over the same baseline blocks.
    tokio_locus_min_us: f64,
    tokio_locus_p50_us: f64,
    tokio_overhead_p50_us: f64,
    /// No-spin pair: neither end spins, so each datagram waits for a thread wake-up.
    baseline_nospin_min_us: f64,
    baseline_nospin_p50_us: f64,
    locus_nospin_min_us: f64,
    locus_nospin_p50_us: f64,
    ratio_p50_nospin: f64,
    /// Median over repetitions of the no-spin pair's p50 difference (target ≤ 5 µs).
    overhead_p50_us_nospin: f64,
    overhead_min_us_nospin: f64,
    overhead_p50_km_nospin: f64,
    /// No-spin pair, third side: the tokio drivers.
    tokio_locus_nospin_min_us: f64,
    tokio_locus_nospin_p50_us: f64,
    tokio_overhead_p50_us_nospin: f64,
    /// The tokio drivers at 256 challenges in flight (spin pair's connection).
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
    /// `precision_min_us - busy_udp_min_us`.
    precision_min_gap_us: f64,
    /// `precision_p50_us - busy_udp_p50_us` over all samples.
    precision_p50_gap_us: f64,
    /// Median over repetitions of the precision pair's p50 difference (target ≤ 2 µs).
    overhead_p50_us_precision: f64,
    overhead_p50_km_precision: f64,
    /// `[lowest, highest]` over the repetitions, for each per-repetition figure.
    spread: BTreeMap<&'static str, [f64; 2]>,
}

/// The spin both tokio drivers use by default (`RoundConfig::spin` in the bench's prober,
/// `ServerConfig::spin_after_answer` in the responder).
const SPIN: Duration = Duration::from_micros(200);
/// The first block of each path follows this many unrecorded round trips.
const WARM_UP: u64 = 500;
/// Every block starts with this many unrecorded round trips: the other path of the pair ran
/// last and may have evicted this one's caches.
const BLOCK_WARM_UP: u64 = 100;
/// An echo that takes longer than this is lost and fails the run.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// µs of round trip per km of fiber (light in fiber: ~200 km/ms each way).
const US_PER_KM: f64 = 10.0;

const LOOPBACK: &str = "127.0.0.1:0";

/// Both ends run as they would in two processes: the answering side (UDP echo or locus
/// responder) on its own single-threaded runtime and thread, the measuring side on another.
/// Runs the benchmark; returns its report as text, or as JSON with `--json`.
pub fn run(args: PingArgs) -> anyhow::Result<String> {
    let reps = args.repetitions.max(1);
    let per_block = (args.samples / u64::from(reps)).max(1);
    let server_rt = ServerThread::start()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (spin, nospin, throughput) = rt.block_on(async {
        let mut spin = Pair::start(&server_rt, SPIN).await?;
        let mut nospin = Pair::start(&server_rt, Duration::ZERO).await?;
        spin.warm_up().await?;
        nospin.warm_up().await?;
        let (mut s, mut n) = (PairRuns::default(), PairRuns::default());
        for rep in 0..reps {
            // Alternate which side goes first, so that neither always follows the other.
            let flip = rep % 2 == 1;
            spin.block(per_block, flip, &mut s).await?;
            nospin.block(per_block, flip, &mut n).await?;
        }
        let throughput = spin.throughput(args.throughput_count).await;
        spin.stop(&server_rt).await?;
        nospin.stop(&server_rt).await?;
        anyhow::Ok((s, n, throughput))
    })?;
    drop(server_rt);
    // The spinning pair comes last, on threads of its own, with the runtimes idle or gone.
    let mut precision = PairRuns::default();
    busy_udp_block(WARM_UP)?;
    precision_block(WARM_UP)?;
    for rep in 0..reps {
        let (a, b) = if rep % 2 == 1 {
            let b = precision_block(per_block)?;
            (busy_udp_block(per_block)?, b)
        } else {
            let a = busy_udp_block(per_block)?;
            (a, precision_block(per_block)?)
        };
        precision.push(a, b);
    }
    render(
        &report(&args, reps, &spin, &nospin, &precision, throughput),
        args.json,
    )
}

fn report(
    args: &PingArgs,
    reps: u32,
    spin: &PairRuns,
    nospin: &PairRuns,
    precision: &PairRuns,
    throughput: Throughput,
) -> PingReport {
    let (base, locus) = (spin.baseline(), spin.locus());
    let (base_n, locus_n) = (nospin.baseline(), nospin.locus());
    let (busy, prec) = (precision.baseline(), precision.locus());
    let mut spread = BTreeMap::new();
    spread.insert("overhead_p50_us", spin.overhead_spread());
    spread.insert("overhead_p50_us_nospin", nospin.overhead_spread());
    spread.insert("overhead_p50_us_precision", precision.overhead_spread());
    spread.insert("ratio_p50", spin.ratio_spread());
    spread.insert("ratio_p50_nospin", nospin.ratio_spread());
    spread.insert("tokio_overhead_p50_us", spin.tokio_overhead_spread());
    spread.insert(
        "tokio_overhead_p50_us_nospin",
        nospin.tokio_overhead_spread(),
    );
    PingReport {
        samples: args.samples,
        repetitions: reps,
        baseline_spin_us: SPIN.as_secs_f64() * 1e6,
        baseline_min_us: base.min_us,
        baseline_p50_us: base.p50_us,
        baseline_p99_us: base.p99_us,
        locus_min_us: locus.min_us,
        locus_p50_us: locus.p50_us,
        locus_p99_us: locus.p99_us,
        ratio_p50: locus.p50_us / base.p50_us,
        ratio_min: locus.min_us / base.min_us,
        overhead_p50_us: spin.overhead_p50(),
        overhead_min_us: locus.min_us - base.min_us,
        overhead_p50_km: spin.overhead_p50() / US_PER_KM,
        tokio_locus_min_us: spin.tokio().min_us,
        tokio_locus_p50_us: spin.tokio().p50_us,
        tokio_overhead_p50_us: spin.tokio_overhead_p50(),
        baseline_nospin_min_us: base_n.min_us,
        baseline_nospin_p50_us: base_n.p50_us,
        locus_nospin_min_us: locus_n.min_us,
        locus_nospin_p50_us: locus_n.p50_us,
        ratio_p50_nospin: locus_n.p50_us / base_n.p50_us,
        overhead_p50_us_nospin: nospin.overhead_p50(),
        overhead_min_us_nospin: locus_n.min_us - base_n.min_us,
        overhead_p50_km_nospin: nospin.overhead_p50() / US_PER_KM,
        tokio_locus_nospin_min_us: nospin.tokio().min_us,
        tokio_locus_nospin_p50_us: nospin.tokio().p50_us,
        tokio_overhead_p50_us_nospin: nospin.tokio_overhead_p50(),
        throughput_per_s: throughput.per_s,
        p99_at_256_us: throughput.p99_us,
        lost_at_256: throughput.lost,
        busy_udp_min_us: busy.min_us,
        busy_udp_p50_us: busy.p50_us,
        busy_udp_p99_us: busy.p99_us,
        precision_min_us: prec.min_us,
        precision_p50_us: prec.p50_us,
        precision_p99_us: prec.p99_us,
        precision_min_gap_us: prec.min_us - busy.min_us,
        precision_p50_gap_us: prec.p50_us - busy.p50_us,
        overhead_p50_us_precision: precision.overhead_p50(),
        overhead_p50_km_precision: precision.overhead_p50() / US_PER_KM,
        spread,
    }
}

/// The round trips (ns) of both sides of one pair, block by block, and of the tokio drivers
/// where they ran beside them.
#[derive(Default)]
struct PairRuns {
    baseline: Vec<Vec<u64>>,
    locus: Vec<Vec<u64>>,
    tokio: Vec<Vec<u64>>,
}

impl PairRuns {
    fn push(&mut self, baseline: Vec<u64>, locus: Vec<u64>) {
        self.baseline.push(baseline);
        self.locus.push(locus);
    }

    fn tokio(&self) -> RttStats {
        RttStats::from_ns(self.tokio.concat())
    }

    /// Per repetition: the tokio drivers' p50 minus the baseline's, in µs.
    fn tokio_overheads(&self) -> Vec<f64> {
        self.baseline
            .iter()
            .zip(&self.tokio)
            .map(|(a, b)| RttStats::from_ns(b.clone()).p50_us - RttStats::from_ns(a.clone()).p50_us)
            .collect()
    }

    fn tokio_overhead_p50(&self) -> f64 {
        median(self.tokio_overheads())
    }

    fn tokio_overhead_spread(&self) -> [f64; 2] {
        range(&self.tokio_overheads())
    }

    fn baseline(&self) -> RttStats {
        RttStats::from_ns(self.baseline.concat())
    }

    fn locus(&self) -> RttStats {
        RttStats::from_ns(self.locus.concat())
    }

    /// Per repetition: (baseline p50, locus p50) in µs.
    fn p50s(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.baseline.iter().zip(&self.locus).map(|(a, b)| {
            (
                RttStats::from_ns(a.clone()).p50_us,
                RttStats::from_ns(b.clone()).p50_us,
            )
        })
    }

    fn overheads(&self) -> Vec<f64> {
        self.p50s().map(|(a, b)| b - a).collect()
    }

    fn overhead_p50(&self) -> f64 {
        median(self.overheads())
    }

    fn overhead_spread(&self) -> [f64; 2] {
        range(&self.overheads())
    }

    fn ratio_spread(&self) -> [f64; 2] {
        range(&self.p50s().map(|(a, b)| b / a).collect::<Vec<_>>())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn range(v: &[f64]) -> [f64; 2] {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        [0.0, 0.0]
    } else {
        [lo, hi]
    }
}

/// The 256-in-flight run on the spin pair's locus connection.
#[derive(Clone, Copy)]
struct Throughput {
    per_s: f64,
    p99_us: f64,
    lost: u64,
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

/// One pair under one polling policy, all spinning `spin` after each datagram: a raw tokio UDP
/// echo and a locus tokio responder on the server thread, a parked quinn-proto responder on a
/// thread of its own, and their clients here.
struct Pair {
    spin: Duration,
    udp: UdpSocket,
    echo: tokio::task::JoinHandle<()>,
    server: Server,
    target: Target,
    parked: BusyTarget,
    parked_responder: Spinner<Result<BusyReport, BusyError>>,
}

impl Pair {
    async fn start(server_rt: &ServerThread, spin: Duration) -> anyhow::Result<Self> {
        let echo_socket = server_rt
            .handle
            .spawn(async { UdpSocket::bind(LOOPBACK).await })
            .await??;
        let echo_addr: SocketAddr = echo_socket.local_addr()?;
        let echo = server_rt.handle.spawn(udp_echo(echo_socket, spin));
        let udp = UdpSocket::bind(LOOPBACK).await?;
        udp.connect(echo_addr).await?;

        let server = server_rt
            .handle
            .spawn(async move {
                let mut config = ServerConfig::new(LOOPBACK.parse()?);
                config.spin_after_answer = spin;
                // Throughput of the echo path itself: no echo rate limits.
                config.limits.echo_per_ip_per_sec = None;
                config.limits.echo_per_sec = None;
                Server::start(config, SessionKey::generate()?, EvidenceSource::default())
                    .map_err(anyhow::Error::from)
            })
            .await??;
        let addr = server.local_addr()?;
        let pin = SpkiPolicy::Pinned(server.session_key().spki_der().to_vec());
        let target = connect(addr, LOOPBACK.parse()?, pin, Duration::from_secs(5)).await?;

        let key = SessionKey::generate()?;
        let socket = std::net::UdpSocket::bind(LOOPBACK)?;
        let parked_addr = socket.local_addr()?;
        let parked_responder = Spinner::spawn({
            let key = key.clone();
            move |stop| serve_parked(socket, &key, stop, spin)
        });
        let mut parked = BusyTarget::connect(
            std::net::UdpSocket::bind(LOOPBACK)?,
            parked_addr,
            SpkiPolicy::Pinned(key.spki_der().to_vec()),
            Duration::from_secs(5),
        )?;
        parked.set_spin(spin);
        Ok(Self {
            spin,
            udp,
            echo,
            server,
            target,
            parked,
            parked_responder,
        })
    }

    fn round(&self, count: u64) -> RoundConfig {
        RoundConfig {
            rate_hz: 0.0,
            count,
            window: 1,
            timeout: ECHO_TIMEOUT,
            keep_samples: true,
            spin: self.spin,
        }
    }

    /// Connection state, allocator, caches: both sides once.
    async fn warm_up(&mut self) -> anyhow::Result<()> {
        self.udp_block(WARM_UP).await?;
        run_round(&self.target, &self.round(WARM_UP)).await;
        echo_block(&mut self.parked, WARM_UP)?;
        Ok(())
    }

    /// One repetition: a block of each side (baseline, locus, tokio drivers), in reverse order
    /// if `flip`.
    async fn block(&mut self, n: u64, flip: bool, runs: &mut PairRuns) -> anyhow::Result<()> {
        let (a, b, c) = if flip {
            let c = self.locus_block(n).await?;
            let b = echo_block(&mut self.parked, n)?;
            (self.udp_block(n).await?, b, c)
        } else {
            let a = self.udp_block(n).await?;
            let b = echo_block(&mut self.parked, n)?;
            (a, b, self.locus_block(n).await?)
        };
        runs.push(a, b);
        runs.tokio.push(c);
        Ok(())
    }

    async fn udp_block(&self, n: u64) -> anyhow::Result<Vec<u64>> {
        let payload = [7u8; locus_proto::EchoChallenge::LEN];
        let mut buf = [0u8; 1500];
        let mut rtts = Vec::with_capacity(n as usize);
        for i in 0..n + BLOCK_WARM_UP {
            let start = Instant::now();
            self.udp.send(&payload).await?;
            tokio::time::timeout(ECHO_TIMEOUT, spinning(self.udp.recv(&mut buf), self.spin))
                .await??;
            if i >= BLOCK_WARM_UP {
                rtts.push(start.elapsed().as_nanos().max(1) as u64);
            }
        }
        Ok(rtts)
    }

    async fn locus_block(&self, n: u64) -> anyhow::Result<Vec<u64>> {
        run_round(&self.target, &self.round(BLOCK_WARM_UP)).await;
        let r = run_round(&self.target, &self.round(n)).await;
        anyhow::ensure!(
            r.lost == 0 && r.violations == 0,
            "locus echo: {} lost, {} violations",
            r.lost,
            r.violations
        );
        Ok(r.samples.iter().map(|s| s.rtt_ns.max(1)).collect())
    }

    async fn throughput(&self, count: u64) -> Throughput {
        let r = run_round(
            &self.target,
            &RoundConfig {
                window: 256,
                keep_samples: false,
                ..self.round(count)
            },
        )
        .await;
        Throughput {
            per_s: r.answered as f64 / r.wall_s,
            p99_us: r.rtt.p99_us,
            lost: r.lost,
        }
    }

    async fn stop(self, server_rt: &ServerThread) -> anyhow::Result<()> {
        self.parked.close()?;
        self.parked_responder.finish()??;
        self.echo.abort();
        self.target.conn.close(0u32.into(), b"done");
        let server = self.server;
        server_rt
            .handle
            .spawn(async move { server.shutdown().await })
            .await?;
        Ok(())
    }
}

/// Raw UDP echo with tokio, spinning like the responder after each datagram.
async fn udp_echo(socket: UdpSocket, spin: Duration) {
    let mut buf = [0u8; 1500];
    while let Ok((n, from)) = spinning(socket.recv_from(&mut buf), spin).await {
        let _ = socket.send_to(&buf[..n], from).await;
    }
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

/// One block of raw UDP echoes over loopback, both sides spinning on non-blocking std sockets:
/// the floor that the precision mode is compared with. The echo thread lives for the block
/// only, so that it never spins beside the precision responder.
fn busy_udp_block(n: u64) -> anyhow::Result<Vec<u64>> {
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
    let mut rtts = Vec::with_capacity(n as usize);
    for i in 0..n + BLOCK_WARM_UP {
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
        if i >= BLOCK_WARM_UP {
            rtts.push(start.elapsed().as_nanos().max(1) as u64);
        }
    }
    echo.finish()?;
    Ok(rtts)
}

/// One block of the precision mode: a busy responder thread and a busy prober on this thread,
/// sequential echoes over a pinned QUIC connection made for the block.
fn precision_block(n: u64) -> anyhow::Result<Vec<u64>> {
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
    let rtts = echo_block(&mut target, n)?;
    target.close()?;
    responder.finish()??;
    Ok(rtts)
}

/// `n` sequential echoes on a quinn-proto target after a short warm-up; round trips in ns.
fn echo_block(target: &mut BusyTarget, n: u64) -> anyhow::Result<Vec<u64>> {
    let mut rtts = Vec::with_capacity(n as usize);
    for i in 0..n + BLOCK_WARM_UP {
        let nonce: locus_proto::Nonce = rand::random();
        let sample = target.echo(nonce, ECHO_TIMEOUT)?;
        if i >= BLOCK_WARM_UP {
            rtts.push(sample.rtt_ns.max(1));
        }
    }
    Ok(rtts)
}

/// The report as the command prints it.
fn render(r: &PingReport, json: bool) -> anyhow::Result<String> {
    crate::render(r, json, false, |out| {
        let spread = |k: &str| r.spread.get(k).copied().unwrap_or_default();
        _ = writeln!(
            out,
            "sequential echo, {} repetitions interleaved; overhead = locus - baseline, same polling",
            r.repetitions
        );
        _ = writeln!(
            out,
            "{:<34} {:>8} {:>8} {:>8}",
            "path", "min µs", "p50 µs", "p99 µs"
        );
        let row = |out: &mut String, name: &str, min: f64, p50: f64, p99: Option<f64>| {
            let p99 = p99.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
            _ = writeln!(out, "{name:<34} {min:>8.1} {p50:>8.1} {p99:>8}");
        };
        let spin_name = format!("spin {:.0} µs both ends", r.baseline_spin_us);
        row(
            out,
            &format!("raw tokio UDP, {spin_name}"),
            r.baseline_min_us,
            r.baseline_p50_us,
            Some(r.baseline_p99_us),
        );
        row(
            out,
            &format!("locus QUIC, {spin_name}"),
            r.locus_min_us,
            r.locus_p50_us,
            Some(r.locus_p99_us),
        );
        row(
            out,
            "  the same over tokio drivers",
            r.tokio_locus_min_us,
            r.tokio_locus_p50_us,
            None,
        );
        let pair = |out: &mut String, what: &str, p50: f64, min: f64, key: &str, goal: f64| {
            let [lo, hi] = spread(key);
            _ = writeln!(
                out,
                "  {what}: overhead p50 {p50:.1} µs [{lo:.1} .. {hi:.1}] = {:.2} km of fiber \
                 (goal ≤ {goal} µs), min {min:.1} µs",
                p50 / US_PER_KM
            );
        };
        pair(
            out,
            "spin",
            r.overhead_p50_us,
            r.overhead_min_us,
            "overhead_p50_us",
            3.0,
        );
        let tokio = |out: &mut String, p50: f64, key: &str| {
            let [lo, hi] = spread(key);
            _ = writeln!(
                out,
                "  tokio drivers: overhead p50 {p50:.1} µs [{lo:.1} .. {hi:.1}]"
            );
        };
        tokio(out, r.tokio_overhead_p50_us, "tokio_overhead_p50_us");
        let [lo, hi] = spread("ratio_p50");
        _ = writeln!(
            out,
            "  ratio p50 {:.2} [{lo:.2} .. {hi:.2}] (goal ≤ 1.3), ratio min {:.2}",
            r.ratio_p50, r.ratio_min
        );
        row(
            out,
            "raw tokio UDP, no spin",
            r.baseline_nospin_min_us,
            r.baseline_nospin_p50_us,
            None,
        );
        row(
            out,
            "locus QUIC, no spin",
            r.locus_nospin_min_us,
            r.locus_nospin_p50_us,
            None,
        );
        row(
            out,
            "  the same over tokio drivers",
            r.tokio_locus_nospin_min_us,
            r.tokio_locus_nospin_p50_us,
            None,
        );
        pair(
            out,
            "no spin",
            r.overhead_p50_us_nospin,
            r.overhead_min_us_nospin,
            "overhead_p50_us_nospin",
            5.0,
        );
        tokio(
            out,
            r.tokio_overhead_p50_us_nospin,
            "tokio_overhead_p50_us_nospin",
        );
        row(
            out,
            "busy-polled UDP (floor)",
            r.busy_udp_min_us,
            r.busy_udp_p50_us,
            Some(r.busy_udp_p99_us),
        );
        row(
            out,
            "locus precision (busy QUIC)",
            r.precision_min_us,
            r.precision_p50_us,
            Some(r.precision_p99_us),
        );
        pair(
            out,
            "precision",
            r.overhead_p50_us_precision,
            r.precision_min_gap_us,
            "overhead_p50_us_precision",
            2.0,
        );
        _ = writeln!(
            out,
            "tokio drivers, 256 in flight: {:.0} answered challenges/s (target ≥ 250000), p99 {:.1} µs (target ≤ 1000), lost {}",
            r.throughput_per_s, r.p99_at_256_us, r.lost_at_256
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny run prints every key of the contract; timings are not asserted.
    #[test]
    fn small_run_reports_the_fair_keys() {
        let out = run(PingArgs {
            samples: 20,
            repetitions: 2,
            throughput_count: 200,
            json: true,
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for key in [
            "baseline_p50_us",
            "locus_p50_us",
            "ratio_p50",
            "ratio_p50_nospin",
            "overhead_p50_us",
            "overhead_min_us",
            "overhead_p50_us_nospin",
            "overhead_p50_us_precision",
            "precision_min_gap_us",
            "tokio_locus_p50_us",
            "tokio_overhead_p50_us",
            "tokio_overhead_p50_us_nospin",
        ] {
            assert!(v[key].as_f64().is_some_and(f64::is_finite), "{key} in {v}");
        }
        assert_eq!(v["baseline_spin_us"].as_f64(), Some(200.0), "{v}");
        assert_eq!(v["repetitions"].as_u64(), Some(2), "{v}");
        let [lo, hi] = [0, 1].map(|i| v["spread"]["overhead_p50_us"][i].as_f64().unwrap());
        assert!(lo <= v["overhead_p50_us"].as_f64().unwrap(), "{v}");
        assert!(hi >= v["overhead_p50_us"].as_f64().unwrap(), "{v}");
    }

    #[test]
    fn median_and_range_of_repetitions() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(range(&[3.0, -1.0, 2.0]), [-1.0, 3.0]);
        assert_eq!(range(&[]), [0.0, 0.0]);
    }
}
