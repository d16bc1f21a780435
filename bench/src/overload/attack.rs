//! The attackers of `locus bench overload`, in their own process (`locus bench
//! overload-attack`, hidden): on a real deployment they are other machines, so their CPU must
//! not run on the honest prober's runtime or in its process. The attack itself is unchanged:
//! hostile connections (header-only streams, unsigned evidence floods, echo floods, each
//! reconnecting once closed or refused) and raw UDP datagrams at a given rate.
//!
//! Protocol with the bench (one JSON [`AttackSnapshot`] per line on stdout): one when every
//! attacker is started, one for each line read on stdin, and a last one after `stop` (or the
//! end of stdin) once the attackers have stopped.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use locus_prober::{connect, run_round, SpkiPolicy, Target};
use locus_proto::frame::{self, MessageKind};
use locus_proto::messages::{codes, ErrorMessage, EvidenceRequest, Include};
use serde::{Deserialize, Serialize};

use super::{flood_round, ATTACK_CONNECT_TIMEOUT, RECONNECT_PAUSE};

#[derive(Args)]
pub struct AttackArgs {
    /// The responder's address.
    #[arg(long)]
    addr: SocketAddr,
    /// The responder's SPKI (DER, hex) to pin.
    #[arg(long)]
    spki: String,
    /// Hostile connections (header-only streams, evidence flood, echo flood, in turn).
    #[arg(long)]
    connections: usize,
    /// Raw datagrams per second.
    #[arg(long)]
    flood_rate: f64,
    /// The third octet of the attackers' source addresses, 127.0.SUBNET.x (1-254; the honest
    /// prober uses 127.0.0.x): a new attack from addresses the responder has not penalized.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    subnet: u8,
}

/// What the attackers have done so far (counts since they started).
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub(super) struct AttackSnapshot {
    /// Connection attempts (handshakes started), refused or timed-out attempts, and
    /// connections the responder closed.
    pub(super) connect_attempts: u64,
    pub(super) refused: u64,
    pub(super) closed: u64,
    pub(super) echo_sent: u64,
    pub(super) echo_answered: u64,
    pub(super) evidence_sent: u64,
    pub(super) evidence_answered: u64,
    pub(super) unauthorized: u64,
    /// `busy` and `rate-limited` answers.
    pub(super) busy: u64,
    pub(super) streams_held: u64,
    pub(super) flood_sent: u64,
}

#[derive(Default)]
struct Counters {
    connect_attempts: AtomicU64,
    refused: AtomicU64,
    closed: AtomicU64,
    echo_sent: AtomicU64,
    echo_answered: AtomicU64,
    evidence_sent: AtomicU64,
    evidence_answered: AtomicU64,
    unauthorized: AtomicU64,
    busy: AtomicU64,
    streams_held: AtomicU64,
    flood_sent: AtomicU64,
}

impl AttackSnapshot {
    /// Each count combined with `other`'s by `f`.
    fn zip(&self, other: &Self, f: impl Fn(u64, u64) -> u64) -> Self {
        Self {
            connect_attempts: f(self.connect_attempts, other.connect_attempts),
            refused: f(self.refused, other.refused),
            closed: f(self.closed, other.closed),
            echo_sent: f(self.echo_sent, other.echo_sent),
            echo_answered: f(self.echo_answered, other.echo_answered),
            evidence_sent: f(self.evidence_sent, other.evidence_sent),
            evidence_answered: f(self.evidence_answered, other.evidence_answered),
            unauthorized: f(self.unauthorized, other.unauthorized),
            busy: f(self.busy, other.busy),
            streams_held: f(self.streams_held, other.streams_held),
            flood_sent: f(self.flood_sent, other.flood_sent),
        }
    }

    /// The counts added since `before`.
    pub(super) fn since(&self, before: &Self) -> Self {
        self.zip(before, u64::saturating_sub)
    }

    /// The sum of two snapshots (of two attack processes).
    pub(super) fn plus(&self, other: &Self) -> Self {
        self.zip(other, u64::saturating_add)
    }
}

impl Counters {
    fn snapshot(&self) -> AttackSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AttackSnapshot {
            connect_attempts: get(&self.connect_attempts),
            refused: get(&self.refused),
            closed: get(&self.closed),
            echo_sent: get(&self.echo_sent),
            echo_answered: get(&self.echo_answered),
            evidence_sent: get(&self.evidence_sent),
            evidence_answered: get(&self.evidence_answered),
            unauthorized: get(&self.unauthorized),
            busy: get(&self.busy),
            streams_held: get(&self.streams_held),
            flood_sent: get(&self.flood_sent),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Runs the attack until `input` says `stop` or ends, answering each other line of `input`
/// with a snapshot on `output`.
pub fn run(args: AttackArgs, input: impl BufRead, mut output: impl Write) -> anyhow::Result<()> {
    let pin = SpkiPolicy::Pinned(hex::decode(&args.spki).context("--spki is not hex")?);
    // Two workers, as the attack had when it shared the bench's runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let flood = {
        let (stop, counters) = (stop.clone(), counters.clone());
        let (addr, rate, subnet) = (args.addr, args.flood_rate, args.subnet);
        std::thread::spawn(move || raw_flood(addr, rate, subnet, &stop, &counters))
    };
    let mut attackers = Vec::new();
    for i in 0..args.connections {
        // 32 connections per source address: the per-IP cap (64) is not what stops them.
        let bind = SocketAddr::from(([127, 0, args.subnet, 1 + (i / 32) as u8], 0));
        let (stop, counters, pin) = (stop.clone(), counters.clone(), pin.clone());
        attackers.push(rt.spawn(attacker(i, args.addr, bind, pin, stop, counters)));
    }
    let mut say = |s: AttackSnapshot| -> anyhow::Result<()> {
        writeln!(output, "{}", serde_json::to_string(&s)?)?;
        output.flush()?;
        Ok(())
    };
    say(counters.snapshot())?;
    for line in input.lines() {
        if line?.trim() == "stop" {
            break;
        }
        say(counters.snapshot())?;
    }
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for a in attackers {
            let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
        }
        // Each attacker closed its connection; their drivers (tasks of this runtime) send
        // the close frames in a moment, before the runtime goes.
        tokio::time::sleep(CLOSE_FLUSH).await;
    });
    // Hostile streams may still be parked on the responder: do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    flood
        .join()
        .map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
    say(counters.snapshot())
}

/// One hostile connection: a connection the responder closes (or refuses) is opened again,
/// so the attack keeps its size for as long as the responder lets it.
async fn attacker(
    i: usize,
    addr: SocketAddr,
    bind: SocketAddr,
    pin: SpkiPolicy,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
) {
    while !stop.load(Ordering::Relaxed) {
        add(&c.connect_attempts, 1);
        let target = match connect(addr, bind, pin.clone(), ATTACK_CONNECT_TIMEOUT).await {
            Ok(t) => t,
            Err(_) => {
                add(&c.refused, 1);
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        match i % 3 {
            0 => hold_header_only_streams(&target, &stop, &c).await,
            1 => evidence_flood(&target, &stop, &c).await,
            _ => echo_flood(&target, &stop, &c).await,
        }
        if target.conn.close_reason().is_some() {
            add(&c.closed, 1);
        } else {
            // Stopped: say so, rather than leave the responder holding the connection (and its
            // streams) until its idle timeout, into the next idle phase.
            target.conn.close(0u32.into(), b"attack stopped");
        }
    }
}

/// Opens request streams that announce the largest body and never send it, as many as the
/// responder allows, and holds them.
async fn hold_header_only_streams(target: &Target, stop: &AtomicBool, c: &Counters) {
    let header = [
        1u8,
        MessageKind::EvidenceRequest as u8,
        0x00,
        0x00,
        0x3f,
        0xff,
    ];
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Past the stream limit `open_bi` waits: try again a little later.
        match tokio::time::timeout(Duration::from_millis(100), target.conn.open_bi()).await {
            Ok(Ok((mut send, recv))) => {
                if send.write_all(&header).await.is_ok() {
                    add(&c.streams_held, 1);
                    held.push((send, recv));
                }
            }
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
}

/// Unsigned evidence requests, one after another (the responder's answer decides the pace).
async fn evidence_flood(target: &Target, stop: &AtomicBool, c: &Counters) {
    let req = EvidenceRequest {
        nonce: vec![0xa5; 32],
        include: Include {
            tdx: true,
            tpm: false,
            anchors: vec!["a".into(), "a".into(), "b".into()],
        },
        issuer: None,
        sealed: None,
        auth: None,
    };
    let bytes = frame::encode(MessageKind::EvidenceRequest, &req);
    while !stop.load(Ordering::Relaxed) {
        add(&c.evidence_sent, 1);
        match locus_prober::requests::exchange_raw(target, &bytes).await {
            Ok(reply) => match reply.get(1).copied() {
                Some(k) if k == MessageKind::EvidenceResponse as u8 => {
                    add(&c.evidence_answered, 1);
                }
                _ => {
                    let e: Result<ErrorMessage, _> =
                        frame::decode(&reply, MessageKind::Error, frame::MAX_BODY_LEN);
                    match e.map(|e| e.code) {
                        Ok(codes::UNAUTHORIZED) => add(&c.unauthorized, 1),
                        Ok(codes::BUSY | codes::RATE_LIMITED) => add(&c.busy, 1),
                        _ => {}
                    }
                }
            },
            Err(_) => {
                if target.conn.close_reason().is_some() {
                    return;
                }
            }
        }
    }
}

/// Echo challenges as fast as 256 in flight allow.
async fn echo_flood(target: &Target, stop: &AtomicBool, c: &Counters) {
    while !stop.load(Ordering::Relaxed) && target.conn.close_reason().is_none() {
        let r = run_round(target, &flood_round(2_000)).await;
        add(&c.echo_sent, r.sent);
        add(&c.echo_answered, r.answered);
    }
}

/// Raw UDP datagrams (QUIC short-header look, no connection) at `rate` per second from one
/// thread, paced per millisecond.
fn raw_flood(
    addr: SocketAddr,
    rate: f64,
    subnet: u8,
    stop: &AtomicBool,
    c: &Counters,
) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::from(([127, 0, subnet, 250], 0)))?;
    socket.set_nonblocking(true)?;
    let mut packet = [0u8; 64];
    packet[0] = 0x40;
    let started = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let burst = (due - sent).min(1024);
        for _ in 0..burst {
            packet[1..9].copy_from_slice(&sent.to_le_bytes());
            // A full socket buffer drops the datagram, as a congested path would.
            let _ = socket.send_to(&packet, addr);
            sent += 1;
        }
        add(&c.flood_sent, burst);
    }
    Ok(())
}

/// How long the attack process keeps running after its attackers closed their connections.
const CLOSE_FLUSH: Duration = Duration::from_millis(100);

/// How long the bench waits for the attack process to start, or to answer a snapshot.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping may take (each attacker is given 5 s, in turn, at worst).
pub(super) const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the attack process runs: its nice value, and its CPUs (empty: the bench's).
#[derive(Clone, Copy)]
pub(super) struct Scheduling<'a> {
    pub(super) nice: i32,
    pub(super) cpus: &'a BTreeSet<usize>,
}

/// The attack process as the bench sees it: `locus bench overload-attack`, killed on drop.
pub(super) struct AttackProcess {
    child: Child,
    pub(super) pid: u32,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl AttackProcess {
    /// Starts the attack on `addr` and waits until every attacker is started.
    pub(super) fn spawn(
        addr: SocketAddr,
        spki: &[u8],
        connections: usize,
        flood_rate: f64,
        subnet: u8,
        log: &std::path::Path,
        sched: Scheduling<'_>,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["bench", "overload-attack", "--addr"])
            .arg(addr.to_string())
            .arg("--spki")
            .arg(hex::encode(spki))
            .arg("--connections")
            .arg(connections.to_string())
            .arg("--flood-rate")
            .arg(flood_rate.to_string())
            .arg("--subnet")
            .arg(subnet.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?);
        // Started from a thread of its own at its nice value and on its CPUs: a
        // child inherits its parent thread's priority and CPUs, from its first instruction,
        // and the bench's threads run above it and elsewhere.
        let mut child = std::thread::scope(|s| {
            s.spawn(|| {
                if !sched.cpus.is_empty() {
                    super::cpus::pin_thread(sched.cpus)?;
                }
                super::priority::set(sched.nice)?;
                Ok::<_, anyhow::Error>(cmd.spawn()?)
            })
            .join()
        })
        .map_err(|_| anyhow::anyhow!("the thread starting the attack panicked"))?
        .context("starting `locus bench overload-attack`")?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("attack process stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Self {
            child,
            pid,
            stdin,
            lines,
        };
        p.next(REPLY_TIMEOUT)
            .with_context(|| format!("the attack process did not start (log {})", log.display()))?;
        Ok(p)
    }

    /// The attackers' counts now.
    pub(super) fn snapshot(&mut self) -> anyhow::Result<AttackSnapshot> {
        self.send("snapshot")?;
        self.next(REPLY_TIMEOUT)
    }

    /// Stops the attack and returns its last counts.
    pub(super) fn stop(&mut self) -> anyhow::Result<AttackSnapshot> {
        self.send("stop")?;
        self.stdin = None;
        let last = self.next(STOP_TIMEOUT)?;
        let _ = self.child.wait();
        Ok(last)
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the attack was stopped")?;
        writeln!(stdin, "{line}").context("the attack process is gone")?;
        Ok(())
    }

    fn next(&mut self, timeout: Duration) -> anyhow::Result<AttackSnapshot> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line)
                .with_context(|| format!("the attack process said {line:?}")),
            Err(_) => bail!("the attack process did not answer within {timeout:?}"),
        }
    }
}

impl Drop for AttackProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
