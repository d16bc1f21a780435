//! Echoes over plain UDP for fleets ([`locus_proto::udp_echo`]): a session is granted over a
//! QUIC connection ([`request_udp_echo`]), which can then be closed; one socket serves every
//! target, and one receive task hands each answer to its session's state by session id. A
//! target then costs its session's keys and challenge bookkeeping, not a QUIC connection.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use locus_proto::frame::MessageKind;
use locus_proto::messages::{UdpEchoRequest, UdpEchoResponse};
use locus_proto::prober::{AnswerOutcome, ChallengeTracker, Sample};
use locus_proto::udp_echo::{
    answer_session, exporter_context, ClientSession, EchoKeys, EXPORTER_LABEL, EXPORTER_LEN,
};
use rand::{RngCore, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tracing::debug;

use crate::client::Target;
use crate::requests::{exchange, RequestError};
use crate::round::{Pacer, RoundConfig, RoundReport};
use crate::stats::RttStats;

/// How many violations a round keeps verbatim (all are counted).
const VIOLATIONS_KEPT: usize = 32;

/// A UDP echo session granted by a responder.
#[derive(Debug, Clone)]
pub struct UdpEchoGrant {
    pub session: u64,
    /// Where the session's challenges go: the responder's address, the granted port.
    pub addr: SocketAddr,
    /// How long the responder keeps the session.
    pub lifetime: Duration,
    keys: EchoKeys,
}

impl UdpEchoGrant {
    /// A grant made by hand (tests of the socket against a fake responder).
    pub fn new(session: u64, addr: SocketAddr, lifetime: Duration, keys: EchoKeys) -> Self {
        Self {
            session,
            addr,
            lifetime,
            keys,
        }
    }
}

/// Asks the responder of `target` for a UDP echo session keyed from this connection; the
/// connection may be closed once it is granted.
pub async fn request_udp_echo(target: &Target) -> Result<UdpEchoGrant, RequestError> {
    let granted: UdpEchoResponse = exchange(
        target,
        MessageKind::UdpEchoRequest,
        &UdpEchoRequest {},
        MessageKind::UdpEchoResponse,
    )
    .await?;
    let mut secret = [0u8; EXPORTER_LEN];
    target
        .conn
        .export_keying_material(
            &mut secret,
            EXPORTER_LABEL,
            &exporter_context(granted.session),
        )
        .map_err(|_| RequestError::NoExporter)?;
    Ok(UdpEchoGrant {
        session: granted.session,
        addr: SocketAddr::new(target.addr.ip(), granted.port),
        lifetime: Duration::from_secs(granted.lifetime_s.into()),
        keys: EchoKeys::from_exporter(&secret),
    })
}

/// One target's session state, shared by its rounds and the receive task.
struct Slot {
    state: Mutex<SessionState>,
    /// Woken by each answer matched (window room, or the round's end).
    answered: Notify,
}

struct SessionState {
    client: ClientSession,
    epoch: Instant,
    samples: Vec<Sample>,
    examples: Vec<String>,
    /// Datagrams for this session that did not authenticate.
    rejected: u64,
}

/// A session as the prober tells it apart: the responder's UDP address (canonical IP) and the
/// id it granted. Ids are chosen by responders, so one alone could be granted by two targets
/// (a hostile one copying another's id, REVIEW7 U4).
type SessionKey = (SocketAddr, u64);

fn session_key(addr: SocketAddr, session: u64) -> SessionKey {
    (
        SocketAddr::new(addr.ip().to_canonical(), addr.port()),
        session,
    )
}

/// [`UdpEchoSocket::open`] was handed a session this socket already probes.
#[derive(Debug, thiserror::Error)]
#[error("UDP echo session {session:016x} of {addr} is already open on this socket")]
pub struct SessionTaken {
    pub addr: SocketAddr,
    pub session: u64,
}

struct Shared {
    socket: UdpSocket,
    sessions: Mutex<HashMap<SessionKey, Arc<Slot>>>,
    /// Datagrams dropped: malformed, of no session held, from another address, or not
    /// authenticating.
    rejected: AtomicU64,
}

/// Aborts the receive task when the last handle goes.
struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The socket every UDP echo target of a prober shares.
#[derive(Clone)]
pub struct UdpEchoSocket {
    shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

/// Socket buffers asked for: answers of thousands of targets arrive in bursts.
const SOCKET_BUFFER: usize = 4 << 20;

impl UdpEchoSocket {
    /// Binds `bind` and starts the receive task on the current tokio runtime.
    pub fn bind(bind: SocketAddr) -> std::io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
        if bind.is_ipv6() {
            s.set_only_v6(false)?;
        }
        // Best effort: a smaller buffer still works, with drops under bursts.
        let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = s.set_send_buffer_size(SOCKET_BUFFER);
        s.set_nonblocking(true)?;
        s.bind(&bind.into())?;
        let socket = UdpSocket::from_std(s.into())?;
        let shared = Arc::new(Shared {
            socket,
            sessions: Mutex::new(HashMap::new()),
            rejected: AtomicU64::new(0),
        });
        let task = tokio::spawn(receive(shared.clone())).abort_handle();
        Ok(Self {
            shared,
            _task: Arc::new(TaskGuard(task)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    /// Datagrams dropped by the receive task since the socket was bound.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Starts probing the session of `grant`; `spki` is the session key the grant's connection
    /// showed (recorded with its rounds). Answers time out after `timeout`. A session of the
    /// same address and id already open is refused, not replaced.
    pub fn open(
        &self,
        grant: UdpEchoGrant,
        spki: Vec<u8>,
        timeout: Duration,
    ) -> Result<UdpTarget, SessionTaken> {
        let now = Instant::now();
        let slot = Arc::new(Slot {
            state: Mutex::new(SessionState {
                client: ClientSession::new(grant.session, grant.keys, nanos(timeout)),
                epoch: now,
                samples: Vec::new(),
                examples: Vec::new(),
                rejected: 0,
            }),
            answered: Notify::new(),
        });
        match lock_map(&self.shared.sessions).entry(session_key(grant.addr, grant.session)) {
            Entry::Occupied(_) => {
                return Err(SessionTaken {
                    addr: grant.addr,
                    session: grant.session,
                })
            }
            Entry::Vacant(v) => {
                v.insert(slot.clone());
            }
        }
        Ok(UdpTarget {
            addr: grant.addr,
            spki,
            session: grant.session,
            expires: now + grant.lifetime,
            slot,
            socket: self.clone(),
        })
    }
}

/// One target probed over UDP echo; its session is forgotten when this is dropped.
pub struct UdpTarget {
    pub addr: SocketAddr,
    /// The responder's session key (SPKI DER), as its QUIC connection showed it.
    pub spki: Vec<u8>,
    pub session: u64,
    /// When the responder forgets the session.
    pub expires: Instant,
    slot: Arc<Slot>,
    socket: UdpEchoSocket,
}

impl UdpTarget {
    /// The instant that sample timestamps (`sent_ns`) count from.
    pub fn epoch(&self) -> Instant {
        lock(&self.slot).epoch
    }

    /// Answers to this session that did not authenticate (forged, relayed, replayed).
    pub fn rejected(&self) -> u64 {
        lock(&self.slot).rejected
    }
}

impl Drop for UdpTarget {
    fn drop(&mut self) {
        // Only its own entry: another may hold the key since (never while this one lives,
        // but the check is cheap and keeps a drop from ending someone else's session).
        let mut sessions = lock_map(&self.socket.shared.sessions);
        let key = session_key(self.addr, self.session);
        if sessions
            .get(&key)
            .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
        {
            sessions.remove(&key);
        }
    }
}

fn lock(slot: &Slot) -> MutexGuard<'_, SessionState> {
    slot.state.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_map(
    m: &Mutex<HashMap<SessionKey, Arc<Slot>>>,
) -> MutexGuard<'_, HashMap<SessionKey, Arc<Slot>>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Reads every answer and hands it to its session.
async fn receive(shared: Arc<Shared>) {
    // Longer than any answer: an oversized datagram is read whole and refused as such.
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = match shared.socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                debug!("UDP echo receive failed: {e}");
                continue;
            }
        };
        let received = Instant::now();
        let datagram = buf.get(..n).unwrap_or_default();
        // Keyed by the source too: an answer from another address than the session's finds
        // no session.
        let slot = answer_session(datagram).ok().and_then(|id| {
            lock_map(&shared.sessions)
                .get(&session_key(from, id))
                .cloned()
        });
        let Some(slot) = slot else {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut s = lock(&slot);
        let now = nanos(received.saturating_duration_since(s.epoch));
        match s.client.on_answer(now, datagram) {
            Ok(AnswerOutcome::Sample(sample)) => {
                s.samples.push(sample);
                drop(s);
                slot.answered.notify_one();
            }
            Ok(AnswerOutcome::Late { .. }) => {}
            Ok(AnswerOutcome::Violation(v)) => {
                if s.examples.len() < VIOLATIONS_KEPT {
                    s.examples.push(v.to_string());
                }
            }
            Err(e) => {
                debug!(session = s.client.session(), "UDP echo answer dropped: {e}");
                s.rejected += 1;
                shared.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Runs one round over `target`'s session whose challenge `i` is due at `schedule + i /
/// rate_hz`, like [`crate::run_round_from`] over QUIC. Every sample is kept (`keep_samples`
/// has nothing to save here: the samples are the round's statistics).
pub async fn run_udp_round_from(
    target: &UdpTarget,
    cfg: &RoundConfig,
    schedule: Instant,
) -> RoundReport {
    let started = Instant::now();
    let slot = &target.slot;
    let (before, epoch) = {
        let mut s = lock(slot);
        s.client.tracker_mut().set_timeout(nanos(cfg.timeout));
        s.samples.clear();
        s.examples.clear();
        (s.client.tracker().counters(), s.epoch)
    };
    let socket = &target.socket.shared.socket;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut pacer = Pacer::new(cfg, schedule);
    for i in 0..cfg.count {
        let due = pacer.until(i).await;
        settle(slot, epoch, |t| t.in_flight() < cfg.window).await;
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let datagram = {
            let mut s = lock(slot);
            let now = nanos(epoch.elapsed());
            s.client.issue(now, nonce)
        };
        pacer.left(due);
        if let Err(e) = socket.send_to(&datagram, target.addr).await {
            // Counted as lost when it expires, as a datagram lost on the way would be.
            debug!(target = %target.addr, "challenge not sent: {e}");
        }
    }
    settle(slot, epoch, |t| t.in_flight() == 0).await;
    let (samples, examples, after) = {
        let mut s = lock(slot);
        (
            std::mem::take(&mut s.samples),
            std::mem::take(&mut s.examples),
            s.client.tracker().counters(),
        )
    };
    RoundReport {
        target: target.addr,
        rtt: RttStats::from_ns(samples.iter().map(|s| s.rtt_ns).collect()),
        inside_p50_us: RttStats::from_ns(samples.iter().map(|s| s.inside_ns).collect()).p50_us,
        violation_examples: examples,
        wall_s: started.elapsed().as_secs_f64(),
        samples,
        lateness_ns: pacer.lateness_ns,
        ..RoundReport::counted(before, after)
    }
}

/// Expires what timed out and waits, without polling, until `done` holds: woken by each answer
/// and at the oldest pending challenge's expiry.
async fn settle(slot: &Slot, epoch: Instant, done: impl Fn(&ChallengeTracker) -> bool) {
    loop {
        let next = {
            let mut s = lock(slot);
            let t = s.client.tracker_mut();
            t.expire(nanos(epoch.elapsed()));
            if done(t) {
                return;
            }
            t.next_expiry_ns()
        };
        let wake = match next {
            Some(ns) => epoch + Duration::from_nanos(ns),
            // Nothing pending yet `done` fails: cannot happen for the callers' conditions;
            // look again shortly rather than never.
            None => Instant::now() + Duration::from_millis(100),
        };
        tokio::select! {
            _ = slot.answered.notified() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

#[cfg(test)]
mod tests;
