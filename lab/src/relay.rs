//! The lab's user-space delay relay: emulates distance between hosts on loopback.
//!
//! netem is not available here and tokio's timers have 1 ms granularity, so one scheduler
//! thread holds every in-flight packet in a deadline queue, sleeps on a condition variable
//! until shortly before the earliest deadline, then spins to it (spinning is bounded to
//! [`SPIN_WINDOW`] before each deadline, to keep 2 cores usable). It records its own error
//! (actual − intended send time) so that reports can say how far to trust the emulation.
//!
//! Links carry UDP datagrams (QUIC) or TCP byte streams (swtpm's TCTI, TLS anchors); each
//! direction keeps FIFO order, as a real link's queue does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How long before a deadline the scheduler stops sleeping and spins.
const SPIN_WINDOW: Duration = Duration::from_micros(250);

/// How often blocked receivers look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Random extra delay of each packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Jitter {
    /// Uniform in `0..=max`.
    Uniform(Duration),
    /// Heavy-tailed: `scale · (U^(-1/shape) − 1)` (a Pareto draw minus its scale, so small
    /// values are the rule and a few packets wait much longer), at most `cap`.
    Pareto {
        scale: Duration,
        shape: f64,
        cap: Duration,
    },
}

impl Jitter {
    #[cfg(test)]
    pub(crate) const NONE: Jitter = Jitter::Uniform(Duration::ZERO);

    fn draw_ns(&self, rng: &mut StdRng) -> u64 {
        match *self {
            Jitter::Uniform(max) => {
                let max = max.as_nanos() as u64;
                if max == 0 {
                    0
                } else {
                    rng.gen_range(0..=max)
                }
            }
            Jitter::Pareto { scale, shape, cap } => {
                // 1 − U lies in (0, 1]: never a division by zero.
                let u: f64 = 1.0 - rng.gen::<f64>();
                let x = scale.as_nanos() as f64 * (u.powf(-1.0 / shape) - 1.0);
                (x as u64).min(cap.as_nanos() as u64)
            }
        }
    }
}

/// One-way delay of a link, possibly changing over time (a host that moves, a route change).
#[derive(Debug, Clone)]
pub(crate) struct DelayPlan {
    /// `(from, delay)`: from this offset since the relay's start, this one-way delay holds.
    steps: Vec<(Duration, Duration)>,
    jitter: Jitter,
}

/// Both directions of a link: paths may be asymmetric.
#[derive(Debug, Clone)]
pub(crate) struct LinkPlan {
    /// Client → target.
    pub(crate) there: DelayPlan,
    /// Target → client.
    pub(crate) back: DelayPlan,
}

impl LinkPlan {
    /// The same plan both ways.
    #[cfg(test)]
    pub(crate) fn both(plan: DelayPlan) -> Self {
        Self {
            there: plan.clone(),
            back: plan,
        }
    }
}

impl DelayPlan {
    pub(crate) fn fixed(delay: Duration, jitter: Jitter) -> Self {
        Self {
            steps: vec![(Duration::ZERO, delay)],
            jitter,
        }
    }

    /// Adds a change of delay at `at` since the relay's start.
    pub(crate) fn then_at(mut self, at: Duration, delay: Duration) -> Self {
        self.steps.push((at, delay));
        self.steps.sort_by_key(|s| s.0);
        self
    }

    fn base_at(&self, since_start: Duration) -> Duration {
        self.steps
            .iter()
            .rev()
            .find(|(from, _)| *from <= since_start)
            .map_or(Duration::ZERO, |s| s.1)
    }
}

enum Action {
    Udp {
        socket: Arc<UdpSocket>,
        /// `None` for a connected socket.
        to: Option<SocketAddr>,
        data: Vec<u8>,
    },
    Tcp {
        stream: Arc<TcpStream>,
        data: Vec<u8>,
    },
    TcpShutdown {
        stream: Arc<TcpStream>,
    },
}

struct Job {
    deadline: Instant,
    order: u64,
    action: Action,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.order) == (other.deadline, other.order)
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Job {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.order).cmp(&(other.deadline, other.order))
    }
}

struct Scheduler {
    queue: Mutex<BinaryHeap<Reverse<Job>>>,
    wake: Condvar,
    order: AtomicU64,
    stop: AtomicBool,
    /// Send time minus deadline, in nanoseconds.
    error: Mutex<Histogram<u64>>,
}

/// One direction of a link: its delay plan, random jitter, and FIFO floor.
struct Direction {
    plan: DelayPlan,
    rng: Mutex<(StdRng, Instant)>,
    clock: Arc<Clock>,
}

/// The relay's time base for delay plans: set when the emulated run starts, so that set-up
/// time does not count towards scheduled moves.
struct Clock {
    start: Instant,
    epoch_offset_ns: AtomicU64,
}

impl Clock {
    fn since_epoch(&self, now: Instant) -> Duration {
        let epoch = self.start + Duration::from_nanos(self.epoch_offset_ns.load(Ordering::Relaxed));
        now.saturating_duration_since(epoch)
    }
}

impl Direction {
    fn new(plan: DelayPlan, seed: u64, clock: Arc<Clock>) -> Self {
        Self {
            plan,
            rng: Mutex::new((StdRng::seed_from_u64(seed), clock.start)),
            clock,
        }
    }

    /// Deadline of a packet received at `now`: never before the previous one (FIFO).
    fn deadline(&self, now: Instant) -> Instant {
        let mut g = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let extra = self.plan.jitter.draw_ns(&mut g.0);
        let d = now + self.plan.base_at(self.clock.since_epoch(now)) + Duration::from_nanos(extra);
        let d = d.max(g.1);
        g.1 = d;
        d
    }
}

/// The relay: a scheduler thread plus receiver threads for each link.
pub(crate) struct Relay {
    sched: Arc<Scheduler>,
    clock: Arc<Clock>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    seed: AtomicU64,
}

/// Delay error of the relay so far.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct RelayError {
    pub(crate) packets: u64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
}

impl Relay {
    pub(crate) fn start(seed: u64) -> Arc<Self> {
        let sched = Arc::new(Scheduler {
            queue: Mutex::new(BinaryHeap::new()),
            wake: Condvar::new(),
            order: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            error: Mutex::new(
                Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("static bounds"),
            ),
        });
        let relay = Arc::new(Self {
            sched: sched.clone(),
            clock: Arc::new(Clock {
                start: Instant::now(),
                epoch_offset_ns: AtomicU64::new(0),
            }),
            threads: Mutex::new(Vec::new()),
            seed: AtomicU64::new(seed),
        });
        relay.spawn("relay-scheduler", move || run_scheduler(&sched));
        relay
    }

    fn spawn(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .expect("spawning a relay thread");
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    fn next_seed(&self) -> u64 {
        self.seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
    }

    fn direction(&self, plan: &DelayPlan) -> Arc<Direction> {
        Arc::new(Direction::new(
            plan.clone(),
            self.next_seed(),
            self.clock.clone(),
        ))
    }

    /// Starts the clock of delay plans: changes scheduled at `t` happen `t` after now.
    pub(crate) fn start_clock(&self) {
        let offset = self.clock.start.elapsed().as_nanos() as u64;
        self.clock.epoch_offset_ns.store(offset, Ordering::Relaxed);
    }

    /// Forwards UDP datagrams arriving at `listen` to `target` (delayed by `plan.there`) and
    /// the replies back (by `plan.back`). Returns the bound listen address.
    pub(crate) fn udp_link(
        self: &Arc<Self>,
        listen: SocketAddr,
        target: SocketAddr,
        plan: &LinkPlan,
    ) -> std::io::Result<SocketAddr> {
        let front = Arc::new(UdpSocket::bind(listen)?);
        front.set_read_timeout(Some(POLL))?;
        let bound = front.local_addr()?;
        let forward = self.direction(&plan.there);
        let relay = self.clone();
        let plan = plan.back.clone();
        self.spawn("relay-udp", move || {
            let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            while !relay.sched.stop.load(Ordering::Relaxed) {
                let Ok((n, client)) = front.recv_from(&mut buf) else {
                    continue;
                };
                let now = Instant::now();
                let up = match upstreams.get(&client) {
                    Some(u) => u.clone(),
                    None => match relay.open_upstream(&front, client, target, bound, &plan) {
                        Ok(u) => {
                            upstreams.insert(client, u.clone());
                            u
                        }
                        Err(e) => {
                            tracing::warn!("relay: no upstream socket for {client}: {e}");
                            continue;
                        }
                    },
                };
                relay.schedule(
                    forward.deadline(now),
                    Action::Udp {
                        socket: up,
                        to: None,
                        data: buf[..n].to_vec(),
                    },
                );
            }
        });
        Ok(bound)
    }

    /// One socket per client towards the target, so the target sees distinct peers; its
    /// replies go back to the client from the front socket.
    fn open_upstream(
        self: &Arc<Self>,
        front: &Arc<UdpSocket>,
        client: SocketAddr,
        target: SocketAddr,
        bound: SocketAddr,
        plan: &DelayPlan,
    ) -> std::io::Result<Arc<UdpSocket>> {
        let up = Arc::new(UdpSocket::bind(SocketAddr::new(bound.ip(), 0))?);
        up.connect(target)?;
        up.set_read_timeout(Some(POLL))?;
        let back = self.direction(plan);
        let relay = self.clone();
        let (up2, front) = (up.clone(), front.clone());
        self.spawn("relay-udp-back", move || {
            let mut buf = vec![0u8; 65_536];
            while !relay.sched.stop.load(Ordering::Relaxed) {
                let Ok(n) = up2.recv(&mut buf) else { continue };
                let now = Instant::now();
                relay.schedule(
                    back.deadline(now),
                    Action::Udp {
                        socket: front.clone(),
                        to: Some(client),
                        data: buf[..n].to_vec(),
                    },
                );
            }
        });
        Ok(up)
    }

    /// Forwards TCP connections arriving at `listen` to `target`, both directions delayed.
    pub(crate) fn tcp_link(
        self: &Arc<Self>,
        listen: SocketAddr,
        target: SocketAddr,
        plan: &LinkPlan,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let relay = self.clone();
        let plan = plan.clone();
        self.spawn("relay-tcp-accept", move || {
            while !relay.sched.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if let Err(e) = relay.splice(client, target, bound, &plan) {
                            tracing::warn!("relay: cannot reach {target}: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => tracing::warn!("relay: accept on {bound}: {e}"),
                }
            }
        });
        Ok(bound)
    }

    fn splice(
        self: &Arc<Self>,
        client: TcpStream,
        target: SocketAddr,
        bound: SocketAddr,
        plan: &LinkPlan,
    ) -> std::io::Result<()> {
        client.set_nonblocking(false)?;
        // Connect from the relay host's own address, so the target sees the relay.
        let server = connect_from(bound.ip(), target)?;
        for s in [&client, &server] {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(POLL))?;
        }
        let client = Arc::new(client);
        let server = Arc::new(server);
        self.pump(client.clone(), server.clone(), self.direction(&plan.there));
        self.pump(server, client, self.direction(&plan.back));
        Ok(())
    }

    fn pump(self: &Arc<Self>, from: Arc<TcpStream>, to: Arc<TcpStream>, dir: Arc<Direction>) {
        let relay = self.clone();
        self.spawn("relay-tcp", move || {
            let mut buf = vec![0u8; 65_536];
            while !relay.sched.stop.load(Ordering::Relaxed) {
                match (&*from).read(&mut buf) {
                    Ok(0) => {
                        relay.schedule(
                            dir.deadline(Instant::now()),
                            Action::TcpShutdown { stream: to },
                        );
                        return;
                    }
                    Ok(n) => relay.schedule(
                        dir.deadline(Instant::now()),
                        Action::Tcp {
                            stream: to.clone(),
                            data: buf[..n].to_vec(),
                        },
                    ),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => {
                        relay.schedule(
                            dir.deadline(Instant::now()),
                            Action::TcpShutdown { stream: to },
                        );
                        return;
                    }
                }
            }
        });
    }

    fn schedule(&self, deadline: Instant, action: Action) {
        let order = self.sched.order.fetch_add(1, Ordering::Relaxed);
        let mut q = self.sched.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.push(Reverse(Job {
            deadline,
            order,
            action,
        }));
        drop(q);
        self.sched.wake.notify_one();
    }

    /// The relay's delay error so far (send time − deadline).
    pub(crate) fn error(&self) -> RelayError {
        let h = self.sched.error.lock().unwrap_or_else(|p| p.into_inner());
        if h.is_empty() {
            return RelayError::default();
        }
        RelayError {
            packets: h.len(),
            p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
            p90_us: h.value_at_quantile(0.9) as f64 / 1e3,
            p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
            max_us: h.max() as f64 / 1e3,
        }
    }

    /// Stops every thread of the relay and waits for them.
    pub(crate) fn stop(&self) {
        self.sched.stop.store(true, Ordering::Relaxed);
        self.sched.wake.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A TCP connection from the relay host's own address (std cannot bind before connecting).
fn connect_from(ip: std::net::IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

fn run_scheduler(s: &Scheduler) {
    // The default 50 µs timer slack would come on top of every wake-up.
    if let Err(e) = nix::sys::prctl::set_timerslack(1) {
        tracing::debug!("relay: cannot lower timer slack: {e}");
    }
    let mut q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(Reverse(next)) = q.peek() else {
            q = s
                .wake
                .wait_timeout(q, POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        };
        let deadline = next.deadline;
        let now = Instant::now();
        if deadline > now + SPIN_WINDOW {
            let sleep = deadline - now - SPIN_WINDOW;
            q = s
                .wake
                .wait_timeout(q, sleep)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        }
        // Within the spin window: release the lock so receivers can queue, spin, send.
        drop(q);
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
        q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
        // Send everything that is due now (the earliest may have changed meanwhile).
        let now = Instant::now();
        while q.peek().is_some_and(|Reverse(j)| j.deadline <= now) {
            let Some(Reverse(job)) = q.pop() else { break };
            let late = Instant::now().saturating_duration_since(job.deadline);
            // Recorded before sending, so that whoever receives the packet sees it counted.
            let _ = s
                .error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record((late.as_nanos() as u64).max(1));
            execute(job.action);
        }
    }
}

fn execute(action: Action) {
    match action {
        Action::Udp { socket, to, data } => {
            let r = match to {
                None => socket.send(&data),
                Some(to) => socket.send_to(&data, to),
            };
            if let Err(e) = r {
                tracing::debug!("relay: UDP send: {e}");
            }
        }
        Action::Tcp { stream, data } => {
            if let Err(e) = (&*stream).write_all(&data) {
                tracing::debug!("relay: TCP write: {e}");
            }
        }
        Action::TcpShutdown { stream } => {
            let _ = stream.shutdown(Shutdown::Write);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A UDP echo server on loopback; it ends on a `stop` datagram or 5 s of silence.
    pub(crate) fn udp_echo() -> (SocketAddr, JoinHandle<()>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let addr = s.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                if &buf[..n] == b"stop" {
                    return;
                }
                let _ = s.send_to(&buf[..n], from);
            }
        });
        (addr, h)
    }

    fn rtt(client: &UdpSocket, to: SocketAddr) -> Duration {
        let mut buf = [0u8; 64];
        let t = Instant::now();
        client.send_to(b"ping", to).unwrap();
        client.recv_from(&mut buf).unwrap();
        t.elapsed()
    }

    /// The relay may be late, never early: a round trip through a link of one-way delay `d`
    /// never takes less than `2d`. And the planned change of delay takes effect.
    #[test]
    fn udp_link_delays_both_ways_and_follows_its_plan() {
        let relay = Relay::start(1);
        let (echo, handle) = udp_echo();
        let plan = DelayPlan::fixed(Duration::from_millis(3), Jitter::NONE)
            .then_at(Duration::from_millis(300), Duration::from_millis(1));
        let link = relay
            .udp_link("127.0.0.1:0".parse().unwrap(), echo, &LinkPlan::both(plan))
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        relay.start_clock();
        for _ in 0..5 {
            assert!(rtt(&client, link) >= Duration::from_millis(6));
        }
        std::thread::sleep(Duration::from_millis(350));
        let after = (0..5).map(|_| rtt(&client, link)).min().unwrap();
        assert!(after >= Duration::from_millis(2), "{after:?}");
        assert!(
            after < Duration::from_millis(6),
            "the delay change did not apply: {after:?}"
        );
        let err = relay.error();
        assert!(err.packets >= 20, "{err:?}");
        client.send_to(b"stop", echo).unwrap();
        handle.join().unwrap();
        relay.stop();
    }

    #[test]
    fn pareto_jitter_has_a_heavy_capped_tail_and_uniform_stays_bounded() {
        let mut rng = StdRng::seed_from_u64(5);
        let scale = Duration::from_micros(50);
        let cap = Duration::from_millis(5);
        let pareto = Jitter::Pareto {
            scale,
            shape: 1.5,
            cap,
        };
        let mut x: Vec<u64> = (0..20_000).map(|_| pareto.draw_ns(&mut rng)).collect();
        x.sort_unstable();
        // Median of scale·(U^(-1/α) − 1): scale·(2^(1/α) − 1) ≈ 29 µs.
        let median = x[x.len() / 2] as f64 / 1e3;
        assert!((25.0..34.0).contains(&median), "{median} µs");
        // Heavy tail: about 2 % beyond 15 scales (uniform jitter never leaves one scale)...
        let far = x.iter().filter(|v| **v > 15 * 50_000).count();
        assert!((200..700).contains(&far), "{far}");
        // ... cut at the cap.
        assert_eq!(*x.last().unwrap(), cap.as_nanos() as u64);
        let uniform = Jitter::Uniform(scale);
        assert!((0..1000).all(|_| uniform.draw_ns(&mut rng) <= 50_000));
        assert_eq!(Jitter::NONE.draw_ns(&mut rng), 0);
    }

    #[test]
    fn tcp_link_delays_bytes_and_closes() {
        let relay = Relay::start(2);
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let plan = DelayPlan::fixed(Duration::from_millis(2), Jitter::NONE);
        let link = relay
            .tcp_link(
                "127.0.0.1:0".parse().unwrap(),
                target,
                &LinkPlan::both(plan),
            )
            .unwrap();
        let mut c = TcpStream::connect(link).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let t = Instant::now();
        c.write_all(b"abcd").unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"abcd");
        assert!(t.elapsed() >= Duration::from_millis(4));
        h.join().unwrap();
        // The server closed: the close travels through the link too.
        assert_eq!(c.read(&mut back).unwrap(), 0);
        relay.stop();
    }
}
