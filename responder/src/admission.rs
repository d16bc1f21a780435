//! Admission: which connections, requests and echoes the responder takes on, and counters of
//! what it shed. Decisions take `now` as an argument so they can be tested without a clock.
//!
//! Connections are capped in total and per peer IP; new ones are rate-limited per IP and in
//! total (a handshake costs a signature and a key schedule: many IPs reconnecting must not buy
//! unlimited ones), and an IP whose connection was closed for flooding has its new connections
//! ignored for a growing while. Refused attempts are decided before any TLS work and, but at
//! the total cap, get no answer at all. Requests (streams) and echo answers are rate-limited
//! per IP, and echo answers also in total, shared evenly between IPs; past its IP's rate a
//! connection is refused from its own allowance and, once it has spent some of that, its IP's
//! (all the IP's unproven connections together), then closed, so a flood spread over many
//! connections is closed too, never a newcomer's first requests (REVIEW6 R8). Connections
//! that proved a pinned key are answered from that key's allowance (one IP's rates, shared by
//! all its connections: REVIEW6 R7), never from their IP's, and never closed, and no IP is
//! penalized while it holds such a connection (REVIEW4 R2, REVIEW5 M4; the limiters are in
//! [`limits`]).
//! Established connections are never touched by the handshake limits. Under `[access] evidence = "pinned"`, a new
//! connection at the total cap evicts one that has not proved a pinned key, so idle
//! connections cannot lock probers out (REVIEW2 F7): the oldest of the peer holding the most
//! such connections, so a flood from a few peers evicts its own (REVIEW3 A); connections that
//! proved one are not counted against the total echo budget, and one key holds at most
//! [`MAX_PROVEN_PER_KEY`] of them (REVIEW3 G). Handshakes from addresses QUIC has not
//! validated are answered with a Retry, so spoofed sources take no place.
//! Each refusal is counted ([`ShedCounts`]) and logged at most once a second per kind.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, warn};

mod limits;
mod recent;

pub(crate) use limits::RateVerdict;
use limits::{Over, ProvedAnswers, Refusals, TokenBucket};
use recent::RecentlyProved;

/// The responder's admission limits (`[limits]` in the responder config).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Connections open at once, all peers together.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// New connections (handshakes) per second from one IP address; bursts up to twice that.
    pub connections_per_ip_per_sec: f64,
    /// Stream requests (evidence, keys, transcript) per second from one IP; bursts up to twice.
    pub requests_per_ip_per_sec: f64,
    /// Evidence collections running at once.
    pub evidence_concurrency: usize,
    /// Evidence requests waiting for a collection slot; one more is answered `busy` at once.
    pub evidence_queue: usize,
    /// Distinct anchors one evidence request may name.
    pub max_anchors: usize,
    /// Echo answers per second to one IP address, all its connections together (bursts up to
    /// a tenth of a second's worth); `None`: unlimited (benchmarks of the raw echo path).
    pub echo_per_ip_per_sec: Option<f64>,
    /// New connections (handshakes) per second from all IPs together, bursts up to one
    /// second's worth: however many addresses reconnect, handshakes stay within this budget.
    pub handshakes_per_sec: f64,
    /// After the responder closed a connection of an IP for flooding (echoes or requests),
    /// that IP's new connections are ignored for this long, doubled for each further flood
    /// close up to `flood_penalty_max`; zero: no penalty.
    pub flood_penalty: Duration,
    /// The longest penalty; an IP that went this long past its last penalty without another
    /// flood close starts again from `flood_penalty`.
    pub flood_penalty_max: Duration,
    /// Echo answers per second to all IPs together, shared evenly between the IPs with open
    /// connections (each also within `echo_per_ip_per_sec`); connections that proved a
    /// pinned key are not counted. `None`: unlimited.
    pub echo_per_sec: Option<f64>,
    /// UDP echo sessions held at once (`[echo] udp_listen`), all IPs together; at the cap the
    /// idlest of the oldest is evicted.
    pub udp_echo_sessions: usize,
    /// UDP echo sessions held at once for one IP; at the cap that IP's idlest of its oldest is
    /// evicted.
    pub udp_echo_sessions_per_ip: usize,
    /// UDP echo answers per second on one session (bursts of a tenth of a second's worth);
    /// `None`: unlimited. Per IP, `echo_per_ip_per_sec` applies to UDP echoes too.
    pub udp_echo_per_session_per_sec: Option<f64>,
}

impl Default for Limits {
    /// Sound for one CVM on two vCPUs: a few hundred probers, each probing at up to a few
    /// kHz, asking for evidence a few times a minute.
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 64,
            connections_per_ip_per_sec: 20.0,
            requests_per_ip_per_sec: 50.0,
            evidence_concurrency: 2,
            evidence_queue: 16,
            max_anchors: 4,
            echo_per_ip_per_sec: Some(20_000.0),
            // A handshake costs the responder ~0.3 ms of CPU: 200/s is under a tenth of a core,
            // and a thousand probers reconnect within five seconds.
            handshakes_per_sec: 200.0,
            flood_penalty: Duration::from_secs(1),
            flood_penalty_max: Duration::from_secs(60),
            // About half of what the tokio echo path answers on two loaded vCPUs (13-24 k/s):
            // the rest stays for pinned probers, handshakes and evidence.
            echo_per_sec: Some(10_000.0),
            // Four times the connections, as many per IP: ~250 bytes each, 1 MiB in all.
            udp_echo_sessions: 4096,
            udp_echo_sessions_per_ip: 64,
            udp_echo_per_session_per_sec: Some(1_000.0),
        }
    }
}

/// What was shed since the responder started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShedCounts {
    /// Connections refused: the total cap.
    pub connections_over_cap: u64,
    /// Connections closed to make room at the total cap: they had not proved a pinned key.
    pub connections_evicted: u64,
    /// Proved connections closed because their key held more than [`MAX_PROVEN_PER_KEY`].
    pub connections_evicted_same_key: u64,
    /// Handshakes answered with a QUIC Retry (address not validated, over half the cap).
    pub connections_retried: u64,
    /// Connections refused: this IP's cap or handshake rate.
    pub connections_per_ip: u64,
    /// Connections ignored: the handshake budget of all IPs together was spent.
    pub handshakes_over_budget: u64,
    /// Connections ignored: their IP is penalized after one of its connections was closed for
    /// flooding.
    pub connections_penalized: u64,
    /// Penalties started or lengthened (flood closes of an IP).
    pub flood_penalties: u64,
    /// Stream requests refused: this IP's request rate (`rate-limited`).
    pub requests_rate_limited: u64,
    /// Evidence requests answered `busy`: the queue was full.
    pub evidence_queue_full: u64,
    /// Evidence requests answered `busy`: their connection had one in flight.
    pub evidence_in_flight: u64,
    /// Evidence (or keys) requests answered `busy`: their pinned key held its share of the
    /// evidence queue (half the collection slots, queued and running).
    pub evidence_over_key_share: u64,
    /// Evidence requests refused under `[access] evidence = "pinned"`.
    pub unauthorized: u64,
    /// Evidence requests refused: too many anchors.
    pub too_many_anchors: u64,
    /// Echo challenges dropped unanswered: their IP's echo rate.
    pub echo_dropped: u64,
    /// Echo challenges dropped unanswered: their IP's share of the total echo budget.
    pub echo_over_share: u64,
    /// Connections closed for flooding echoes far beyond their rate.
    pub echo_flood_closed: u64,
    /// Connections closed because they kept asking past the per-IP request rate.
    pub request_flood_closed: u64,
    /// Evidence requests answered (a bundle was sent).
    pub evidence_answered: u64,
}

/// Kinds of shed work, one counter and one log limiter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shed {
    ConnectionsOverCap,
    ConnectionsEvicted,
    ConnectionsEvictedSameKey,
    ConnectionsRetried,
    ConnectionsPerIp,
    HandshakesOverBudget,
    ConnectionsPenalized,
    FloodPenalty,
    RequestsRateLimited,
    EvidenceQueueFull,
    EvidenceInFlight,
    EvidenceKeyShare,
    Unauthorized,
    TooManyAnchors,
    EchoDropped,
    EchoOverShare,
    EchoFloodClosed,
    RequestFloodClosed,
}

const SHED_KINDS: usize = 18;

impl Shed {
    fn name(self) -> &'static str {
        match self {
            Shed::ConnectionsOverCap => "connection refused: connection cap",
            Shed::ConnectionsEvicted => {
                "connection evicted: connection cap, and it proved no pinned key"
            }
            Shed::ConnectionsEvictedSameKey => {
                "connection evicted: its pinned key holds too many connections"
            }
            Shed::ConnectionsRetried => {
                "handshake answered with a Retry: over half the connection cap, address not validated"
            }
            Shed::ConnectionsPerIp => "connection ignored: per-IP cap or handshake rate",
            Shed::HandshakesOverBudget => "connection ignored: total handshake budget",
            Shed::ConnectionsPenalized => "connection ignored: its IP is penalized for a flood",
            Shed::FloodPenalty => "IP penalized: new connections ignored after a flood close",
            Shed::RequestsRateLimited => "request refused: per-IP request rate",
            Shed::EvidenceQueueFull => "evidence request busy: queue full",
            Shed::EvidenceInFlight => "evidence request busy: one already in flight",
            Shed::EvidenceKeyShare => {
                "evidence request busy: its pinned key holds its share of the queue"
            }
            Shed::Unauthorized => "evidence request unauthorized",
            Shed::TooManyAnchors => "evidence request refused: too many anchors",
            Shed::EchoDropped => "echo dropped: per-IP echo rate",
            Shed::EchoOverShare => "echo dropped: this IP's share of the total echo budget",
            Shed::EchoFloodClosed => "connection closed: it kept flooding echoes",
            Shed::RequestFloodClosed => "connection closed: it kept flooding requests",
        }
    }
}

/// Counters of shed work, with a log line per kind at most once a second.
#[derive(Debug, Default)]
pub(crate) struct ShedLog {
    counts: [AtomicU64; SHED_KINDS],
    answered: AtomicU64,
    /// Per kind: when it was last logged at warn, and the count then.
    logged: Mutex<[Option<(Instant, u64)>; SHED_KINDS]>,
}

/// Shed work is logged at warn at most this often per kind (a flood must not flood the log).
const LOG_EVERY: Duration = Duration::from_secs(1);

impl ShedLog {
    pub(crate) fn shed(&self, kind: Shed, peer: impl std::fmt::Display) {
        let total = self.counts[kind as usize].fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut logged[kind as usize];
        match *slot {
            Some((at, _)) if now.duration_since(at) < LOG_EVERY => {
                debug!(%peer, total, "{}", kind.name());
            }
            last => {
                let since = total - last.map_or(0, |(_, n)| n);
                *slot = Some((now, total));
                warn!(%peer, total, since_last_log = since, "{}", kind.name());
            }
        }
    }

    pub(crate) fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> ShedCounts {
        let c = |k: Shed| self.counts[k as usize].load(Ordering::Relaxed);
        ShedCounts {
            connections_over_cap: c(Shed::ConnectionsOverCap),
            connections_evicted: c(Shed::ConnectionsEvicted),
            connections_evicted_same_key: c(Shed::ConnectionsEvictedSameKey),
            connections_retried: c(Shed::ConnectionsRetried),
            connections_per_ip: c(Shed::ConnectionsPerIp),
            handshakes_over_budget: c(Shed::HandshakesOverBudget),
            connections_penalized: c(Shed::ConnectionsPenalized),
            flood_penalties: c(Shed::FloodPenalty),
            requests_rate_limited: c(Shed::RequestsRateLimited),
            evidence_queue_full: c(Shed::EvidenceQueueFull),
            evidence_in_flight: c(Shed::EvidenceInFlight),
            evidence_over_key_share: c(Shed::EvidenceKeyShare),
            unauthorized: c(Shed::Unauthorized),
            too_many_anchors: c(Shed::TooManyAnchors),
            echo_dropped: c(Shed::EchoDropped),
            echo_over_share: c(Shed::EchoOverShare),
            echo_flood_closed: c(Shed::EchoFloodClosed),
            request_flood_closed: c(Shed::RequestFloodClosed),
            evidence_answered: self.answered.load(Ordering::Relaxed),
        }
    }
}

/// One peer IP's state.
#[derive(Debug)]
struct PeerIp {
    connections: usize,
    /// Open connections of this peer that proved a pinned key: while there is one, a flood
    /// close of another connection of the peer penalizes nobody (REVIEW4 R2).
    proved: usize,
    handshakes: TokenBucket,
    /// Request answers, shared by the IP's unproven connections; refusals still cost a stream
    /// and an answer each, so a connection refused its allowance and still asking is closed
    /// (each connection has its own allowance, [`Refusals`], and the IP one more, `refusals`).
    /// Connections that proved a pinned key are answered from their key's ([`ProvedAnswers`]).
    requests: TokenBucket,
    /// Refusals of all the IP's unproven connections together, twice one connection's: a
    /// lone flooder runs out of its own first and leaves its neighbours some (REVIEW5 M4).
    refusals: Refusals,
    /// Echo answers, shared by the IP's connections: opening more connections buys no more.
    echo: Option<TokenBucket>,
    /// This IP's share of the total echo budget (its rate follows the number of IPs); it only
    /// drops echoes, never closes.
    echo_share: Option<TokenBucket>,
    /// New connections are ignored until then (after a flood close).
    penalized_until: Option<Instant>,
    /// The last penalty's length: the next one doubles it.
    penalty: Duration,
}

impl PeerIp {
    /// Whether nothing would be lost by forgetting this peer at `now`.
    fn idle(&self, now: Instant) -> bool {
        self.connections == 0
            && self.handshakes.full(now)
            && self.requests.full(now)
            && self.penalized_until.is_none_or(|u| u <= now)
    }
}

/// Most peer IPs remembered; beyond it, idle ones are forgotten and, when none is, new IPs
/// are refused (the table's memory stays bounded whatever the attack).
const MAX_PEER_IPS: usize = 65_536;

/// Connection and request admission of one responder.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    /// At the total cap, evict the oldest connection that proved no pinned key (set under
    /// `[access] evidence = "pinned"`; under `any` no connection can prove anything).
    evict_unproven: bool,
    state: Mutex<AdmissionState>,
    pub(crate) log: ShedLog,
}

#[derive(Debug)]
struct AdmissionState {
    /// Connections counted against the total cap (an evicted one no longer is).
    connections: usize,
    /// New connections of all IPs together.
    handshakes: TokenBucket,
    peers: HashMap<IpAddr, PeerIp>,
    /// Peers with at least one open connection: the total echo budget is split between them.
    active_peers: usize,
    /// Only with eviction: open connections that proved no pinned key yet, by admission
    /// number (oldest first), with their peer and the sender that evicts them.
    unproven: BTreeMap<u64, (IpAddr, Evictor)>,
    /// Open connections that proved a pinned key, by admission number, with that key.
    proven: BTreeMap<u64, ([u8; 32], Evictor)>,
    /// Every open connection's own allowance of refusals, by admission number (REVIEW4 R2).
    refusals: HashMap<u64, Refusals>,
    /// The key each connection that proved one proved first, by admission number.
    proved_keys: HashMap<u64, [u8; 32]>,
    /// Answers of each key in `proved_keys`, shared by its connections (REVIEW5 M4, REVIEW6
    /// R7); forgotten with its last connection, so bounded by the open connections.
    proved_answers: HashMap<[u8; 32], KeyAnswers>,
    /// Peers that proved a pinned key lately: they pass the total handshake budget (R4).
    recently_proved: RecentlyProved,
    next_id: u64,
}

/// The answers of one pinned key, and how many open connections proved it.
#[derive(Debug)]
struct KeyAnswers {
    answers: ProvedAnswers,
    connections: usize,
}

/// Why a connection was evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// At the total cap, to make room: it proved no pinned key.
    AtCap,
    /// Its pinned key proved itself on more than [`MAX_PROVEN_PER_KEY`] connections: the
    /// oldest goes (REVIEW3 G).
    SameKey,
}

/// Tells a connection it was evicted.
type Evictor = watch::Sender<Option<Eviction>>;

/// Connections one pinned key may hold proved at once: a prober needs one per responder, a
/// daemon with one-off `locus prober` runs or `locus bench overload` (five) a few more; many
/// more would let a stolen key hold the cap forever (REVIEW3 G).
pub const MAX_PROVEN_PER_KEY: usize = 8;

/// Holds one admitted connection's place; gives it back when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    handle: SlotHandle,
    ip: IpAddr,
}

/// What a connection's tasks need of its slot: to say it proved a pinned key, and to learn
/// it was evicted.
#[derive(Debug, Clone)]
pub(crate) struct SlotHandle {
    admission: Arc<Admission>,
    id: u64,
    /// The peer the per-IP limits count ([`peer_of`]).
    peer: IpAddr,
    /// Set when the connection is evicted.
    evicted: watch::Receiver<Option<Eviction>>,
    /// The connection made a request signed by a pinned key.
    proved: Arc<AtomicBool>,
}

impl SlotHandle {
    /// The connection made a request signed by the pinned `key`: it is no longer evicted at
    /// the cap, only when `key` proves itself on more than [`MAX_PROVEN_PER_KEY`] newer
    /// connections (then the oldest of them goes). Its peer's reconnects pass the total
    /// handshake budget for a while ([`recent::REMEMBER_FOR`]).
    pub(crate) fn prove(&self, key: &[u8; 32], now: Instant) {
        let mut guard = self.admission.lock();
        let s = &mut *guard;
        s.recently_proved.saw(self.peer, now);
        // A request checked after its connection closed (every open one has refusals): its
        // slot's drop is over, nothing would count it off again.
        if !s.refusals.contains_key(&self.id) {
            return;
        }
        // Under the lock, so that the slot's drop counts it off its peer exactly once.
        if !self.proved.swap(true, Ordering::Relaxed) {
            if let Some(p) = s.peers.get_mut(&self.peer) {
                p.proved += 1;
            }
            let l = &self.admission.limits;
            s.proved_keys.insert(self.id, *key);
            let shared = s.proved_answers.entry(*key).or_insert_with(|| KeyAnswers {
                answers: ProvedAnswers::new(l.echo_per_ip_per_sec, l.requests_per_ip_per_sec, now),
                connections: 0,
            });
            shared.connections += 1;
        }
        let Some((_, tx)) = s.unproven.remove(&self.id) else {
            // Proved already, evicted already, or eviction off (`any`): nothing to track.
            return;
        };
        s.proven.insert(self.id, (*key, tx));
        let same: Vec<u64> = (s.proven.iter())
            .filter(|(_, (k, _))| k == key)
            .map(|(id, _)| *id)
            .collect();
        let Some(&oldest) = same.first().filter(|_| same.len() > MAX_PROVEN_PER_KEY) else {
            return;
        };
        if let Some((_, tx)) = s.proven.remove(&oldest) {
            tx.send_replace(Some(Eviction::SameKey));
            // Its place is free now: the slot gives nothing back when it drops.
            s.connections = s.connections.saturating_sub(1);
        }
        drop(guard);
        self.admission
            .log
            .shed(Shed::ConnectionsEvictedSameKey, hex::encode(&key[..8]));
    }

    /// Whether the connection made a request signed by a pinned key.
    pub(crate) fn proved(&self) -> bool {
        self.proved.load(Ordering::Relaxed)
    }

    /// The pinned key the connection proved (the first, if it proved several).
    pub(crate) fn key(&self) -> Option<[u8; 32]> {
        if !self.proved() {
            return None;
        }
        self.admission.lock().proved_keys.get(&self.id).copied()
    }

    /// Resolves when the connection is evicted, with why.
    pub(crate) async fn evicted(&self) -> Eviction {
        let mut rx = self.evicted.clone();
        let why = rx.wait_for(|e| e.is_some()).await.map(|e| *e);
        match why {
            Ok(e) => e.unwrap_or(Eviction::AtCap),
            // The sender is dropped only with the slot.
            Err(_) => std::future::pending().await,
        }
    }
}

impl ConnectionSlot {
    pub(crate) fn handle(&self) -> &SlotHandle {
        &self.handle
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut guard = self.handle.admission.lock();
        let s = &mut *guard;
        s.unproven.remove(&self.handle.id);
        s.proven.remove(&self.handle.id);
        s.refusals.remove(&self.handle.id);
        if let Some(key) = s.proved_keys.remove(&self.handle.id) {
            if let Some(shared) = s.proved_answers.get_mut(&key) {
                shared.connections -= 1;
                if shared.connections == 0 {
                    s.proved_answers.remove(&key);
                }
            }
        }
        // An evicted connection's place was handed on when it was evicted.
        if self.handle.evicted.borrow().is_none() {
            s.connections = s.connections.saturating_sub(1);
        }
        if let Some(p) = s.peers.get_mut(&self.ip) {
            if p.connections == 1 {
                s.active_peers = s.active_peers.saturating_sub(1);
            }
            p.connections = p.connections.saturating_sub(1);
            if self.handle.proved() {
                p.proved = p.proved.saturating_sub(1);
            }
        }
        if self.handle.proved() {
            // Remembered from when its proved connection ended, not when it proved the key
            // (maybe days ago): a drop has no `now` of its own, so the clock is read here.
            s.recently_proved.saw(self.ip, Instant::now());
        }
    }
}

// The peer the per-IP limits count: an IPv4 address (also when mapped into IPv6), or an IPv6
// address's /64 (REVIEW2 F7); the UDP echo's session table counts the same peers.
use locus_proto::udp_echo::table::peer_of;

impl Admission {
    /// `evict_unproven`: see [`Admission::connect`]; set it under `[access] evidence =
    /// "pinned"`.
    pub(crate) fn new(limits: Limits, evict_unproven: bool) -> Self {
        let handshakes = TokenBucket::new(
            limits.handshakes_per_sec,
            limits.handshakes_per_sec,
            Instant::now(),
        );
        Self {
            limits,
            evict_unproven,
            state: Mutex::new(AdmissionState {
                connections: 0,
                handshakes,
                peers: HashMap::new(),
                active_peers: 0,
                unproven: BTreeMap::new(),
                proven: BTreeMap::new(),
                refusals: HashMap::new(),
                proved_keys: HashMap::new(),
                proved_answers: HashMap::new(),
                recently_proved: RecentlyProved::default(),
                next_id: 0,
            }),
            log: ShedLog::default(),
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AdmissionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `ip` at `now`, or says why not: a penalized IP, its cap,
    /// its handshake rate, the total handshake budget (passed by peers that proved a pinned
    /// key lately), the total cap, in that order (all
    /// decided before any TLS work; only the total cap's refusal is worth an answer, see
    /// [`Shed::answer_refusal`]). At the total cap, with eviction on, it takes the place of
    /// a connection that proved no pinned key ([`victim_of`]; it is told through
    /// [`SlotHandle::evicted`]); connections that did are evicted only by their own key.
    pub(crate) fn connect(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<ConnectionSlot, Shed> {
        let ip = peer_of(ip);
        let l = &self.limits;
        let mut guard = self.lock();
        let s = &mut *guard;
        if !s.peers.contains_key(&ip) && s.peers.len() >= MAX_PEER_IPS {
            s.peers.retain(|_, p| !p.idle(now));
            if s.peers.len() >= MAX_PEER_IPS {
                return Err(Shed::ConnectionsPerIp);
            }
        }
        let peer = s.peers.entry(ip).or_insert_with(|| PeerIp {
            connections: 0,
            proved: 0,
            handshakes: TokenBucket::new(
                l.connections_per_ip_per_sec,
                2.0 * l.connections_per_ip_per_sec,
                now,
            ),
            requests: TokenBucket::requests(l.requests_per_ip_per_sec, now),
            refusals: Refusals::shared(l.echo_per_ip_per_sec, l.requests_per_ip_per_sec, now),
            echo: l.echo_per_ip_per_sec.map(|r| TokenBucket::echo(r, now)),
            echo_share: l.echo_per_sec.map(|r| TokenBucket::echo(r, now)),
            penalized_until: None,
            penalty: Duration::ZERO,
        });
        if peer.penalized_until.is_some_and(|u| now < u) {
            return Err(Shed::ConnectionsPenalized);
        }
        if peer.connections >= l.max_connections_per_ip || !peer.handshakes.available(now) {
            return Err(Shed::ConnectionsPerIp);
        }
        // A peer that proved a pinned key lately (or holds a proved connection) passes the
        // total budget, so a flood of handshakes from other peers cannot keep a known prober
        // from reconnecting (REVIEW4 R4); its own limits above still apply.
        let known = peer.proved > 0 || s.recently_proved.contains(ip, now);
        if !s.handshakes.available(now) && !known {
            return Err(Shed::HandshakesOverBudget);
        }
        // Both budgets pay for a refusal at the cap too: that one is answered with a packet.
        peer.handshakes.take(now);
        s.handshakes.take(now);
        // Chosen now, evicted only once the newcomer is known to be admitted.
        let mut victim = None;
        if s.connections >= l.max_connections {
            victim = match victim_of(&s.unproven) {
                Some(id) if self.evict_unproven => Some(id),
                _ => return Err(Shed::ConnectionsOverCap),
            };
        }
        if peer.connections == 0 {
            s.active_peers += 1;
        }
        peer.connections += 1;
        let evicted = victim
            .and_then(|id| s.unproven.remove(&id))
            .map(|(at, tx)| {
                tx.send_replace(Some(Eviction::AtCap));
                s.connections -= 1;
                at
            });
        s.connections += 1;
        let id = s.next_id;
        s.next_id += 1;
        let (tx, rx) = watch::channel(None);
        if self.evict_unproven {
            s.unproven.insert(id, (ip, tx));
        }
        let refusals = Refusals::new(l.echo_per_ip_per_sec, l.requests_per_ip_per_sec, now);
        s.refusals.insert(id, refusals);
        drop(guard);
        if let Some(at) = evicted {
            self.log.shed(Shed::ConnectionsEvicted, at);
        }
        Ok(ConnectionSlot {
            handle: SlotHandle {
                admission: Arc::clone(self),
                id,
                peer: ip,
                evicted: rx,
                proved: Arc::new(AtomicBool::new(false)),
            },
            ip,
        })
    }

    /// The responder closed a connection of `ip` for flooding at `now`: that IP's new
    /// connections are ignored for a while, twice as long as last time (up to the maximum),
    /// or from the start again when its last penalty ended long enough ago. Returns the
    /// penalty; `None` when penalties are off, or while the IP holds a connection that proved
    /// a pinned key: a flooder behind the same NAT or /64 as a prober must not lock the
    /// prober's reconnects out (REVIEW4 R2; the flooder's connection is closed all the same).
    pub(crate) fn flood_closed(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let l = &self.limits;
        if l.flood_penalty.is_zero() {
            return None;
        }
        let ip = peer_of(ip);
        let mut s = self.lock();
        // A closed connection's peer is still in the table (its slot is not yet dropped).
        let p = s.peers.get_mut(&ip)?;
        if p.proved > 0 {
            debug!(peer = %ip, "no penalty: the peer holds a connection that proved a key");
            return None;
        }
        let long_ago = p
            .penalized_until
            .is_none_or(|u| now.saturating_duration_since(u) > l.flood_penalty_max);
        p.penalty = if long_ago {
            l.flood_penalty
        } else {
            (p.penalty * 2).clamp(l.flood_penalty, l.flood_penalty_max)
        };
        p.penalized_until = Some(now + p.penalty);
        let penalty = p.penalty;
        drop(s);
        self.log.shed(Shed::FloodPenalty, ip);
        Some(penalty)
    }

    /// What to do with one more stream request of connection `conn` at `now`. A connection
    /// that proved a pinned key is answered from its key's allowance, then refused (never
    /// closed); others within their IP's rate are answered, beyond it refused from their own
    /// allowance and their IP's (all its unproven connections together), then closed
    /// (REVIEW4 R2, REVIEW5 M4, REVIEW6 R7, R8).
    pub(crate) fn request(&self, conn: &SlotHandle, now: Instant) -> RateVerdict {
        let mut guard = self.lock();
        let s = &mut *guard;
        if let Some(key) = s.proved_answers_of(conn.id) {
            return key.request(now);
        }
        // A connected peer always has an entry (it is kept while connections are open).
        let Some(p) = s.peers.get_mut(&conn.peer) else {
            return RateVerdict::Refuse;
        };
        limits::verdict(&mut p.requests, now, || {
            match s.refusals.get_mut(&conn.id) {
                Some(r) => limits::refuse_from_both(r, &mut p.refusals, Over::Request, now),
                None => RateVerdict::Refuse,
            }
        })
    }

    /// What to do with an echo challenge of connection `conn` received at `now`, and which
    /// limit spoke when it is not `Answer`. One that proved a pinned key is answered from its
    /// key's allowance, then its echoes are dropped, never closed; it does not count against
    /// the total budget. Others over their IP's rate are dropped from their own allowance of
    /// refusals and their IP's, then told to close (REVIEW4 R2, REVIEW5 M4).
    pub(crate) fn echo(&self, conn: &SlotHandle, now: Instant) -> (RateVerdict, Shed) {
        let l = &self.limits;
        let proved = conn.proved();
        if l.echo_per_ip_per_sec.is_none() && (proved || l.echo_per_sec.is_none()) {
            return (RateVerdict::Answer, Shed::EchoDropped);
        }
        let mut guard = self.lock();
        let s = &mut *guard;
        if let Some(key) = s.proved_answers_of(conn.id) {
            return (key.echo(now), Shed::EchoDropped);
        }
        // A connected peer always has an entry.
        let Some(p) = s.peers.get_mut(&conn.peer) else {
            return (RateVerdict::Refuse, Shed::EchoDropped);
        };
        if let Some(answers) = p.echo.as_mut() {
            let v = limits::verdict(answers, now, || match s.refusals.get_mut(&conn.id) {
                Some(r) => limits::refuse_from_both(r, &mut p.refusals, Over::Echo, now),
                None => RateVerdict::Refuse,
            });
            if v != RateVerdict::Answer {
                return (v, Shed::EchoDropped);
            }
        }
        match (l.echo_per_sec, p.echo_share.as_mut()) {
            (Some(total), Some(share)) => {
                share.set_echo_rate(total / s.active_peers.max(1) as f64, now);
                // The share only drops, never closes: it shrinks as IPs connect, so an honest
                // prober can exceed it; closing would ban its IP (REVIEW4 R1).
                let v = if share.take(now) {
                    RateVerdict::Answer
                } else {
                    RateVerdict::Refuse
                };
                (v, Shed::EchoOverShare)
            }
            _ => (RateVerdict::Answer, Shed::EchoDropped),
        }
    }
}

impl AdmissionState {
    /// The answers of the key connection `id` proved, if it proved one.
    fn proved_answers_of(&mut self, id: u64) -> Option<&mut ProvedAnswers> {
        let key = self.proved_keys.get(&id)?;
        self.proved_answers.get_mut(key).map(|k| &mut k.answers)
    }
}

impl Shed {
    /// Whether a refused connection attempt is answered (a close packet: the peer learns at
    /// once) or ignored (nothing sent; the peer times out). Only the total cap is answered:
    /// it may refuse an honest prober, and those refusals are within the handshake budgets;
    /// every other refusal is of a peer over its own limits, not worth a packet.
    pub(crate) fn answer_refusal(self) -> bool {
        self == Shed::ConnectionsOverCap
    }
}

/// The connection to evict at the cap: the oldest unproven one of the peer holding the most
/// unproven connections (on a tie, the peer whose oldest is oldest). A flooding peer evicts
/// its own connections before anyone else's (REVIEW3 A).
fn victim_of(unproven: &BTreeMap<u64, (IpAddr, Evictor)>) -> Option<u64> {
    // Peer -> (unproven connections, its oldest); ids ascend, so the first seen is the oldest.
    let mut per_peer: HashMap<IpAddr, (usize, u64)> = HashMap::new();
    for (&id, (ip, _)) in unproven {
        per_peer.entry(*ip).or_insert((0, id)).0 += 1;
    }
    per_peer
        .into_values()
        .max_by_key(|&(n, oldest)| (n, std::cmp::Reverse(oldest)))
        .map(|(_, oldest)| oldest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// An admission without eviction (`[access] evidence = "any"`).
    fn any(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission::new(limits, false))
    }

    /// An admission with eviction (`[access] evidence = "pinned"`).
    fn pinned(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission::new(limits, true))
    }

    #[test]
    fn connections_are_capped_in_total_and_per_ip_and_slots_come_back() {
        let a = any(Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            connections_per_ip_per_sec: 1000.0,
            ..Limits::default()
        });
        let now = Instant::now();
        let s1 = a.connect(ip(1), now).unwrap();
        let _s2 = a.connect(ip(1), now).unwrap();
        assert_eq!(a.connect(ip(1), now).unwrap_err(), Shed::ConnectionsPerIp);
        let _s3 = a.connect(ip(2), now).unwrap();
        assert_eq!(a.connect(ip(3), now).unwrap_err(), Shed::ConnectionsOverCap);
        drop(s1);
        a.connect(ip(1), now).unwrap();
    }

    /// REVIEW2 F7: with eviction on (`pinned`), a connection at the cap takes the place of the
    /// oldest one that proved no pinned key; one that proved a key is never evicted, and with
    /// none unproven left the cap refuses.
    #[tokio::test]
    async fn at_the_cap_the_oldest_unproven_connection_is_evicted() {
        let a = pinned(Limits {
            max_connections: 3,
            connections_per_ip_per_sec: 1000.0,
            ..Limits::default()
        });
        let now = Instant::now();
        let evicted = |s: &ConnectionSlot| s.handle().evicted.borrow().is_some();
        let first = a.connect(ip(1), now).unwrap();
        let second = a.connect(ip(2), now).unwrap();
        let pinned = a.connect(ip(3), now).unwrap();
        pinned.handle().prove(&[1; 32], now);
        let fourth = a.connect(ip(4), now).unwrap();
        tokio::time::timeout(Duration::from_secs(5), first.handle().evicted())
            .await
            .expect("the oldest unproven connection is told it was evicted");
        assert!(evicted(&first) && !evicted(&second) && !evicted(&pinned));
        let fifth = a.connect(ip(5), now).unwrap();
        assert!(evicted(&second) && !evicted(&pinned) && !evicted(&fourth));
        // The evicted ones closing give back no place: theirs were handed on.
        drop((first, second));
        assert_eq!(a.lock().connections, 3);
        fourth.handle().prove(&[1; 32], now);
        fifth.handle().prove(&[1; 32], now);
        assert_eq!(a.connect(ip(6), now).unwrap_err(), Shed::ConnectionsOverCap);
        assert_eq!(a.log.counts().connections_evicted, 2);
        let never = tokio::time::timeout(Duration::from_millis(20), pinned.handle().evicted());
        assert!(never.await.is_err(), "a proved connection is never evicted");
        drop(fifth);
        a.connect(ip(6), now).unwrap();
    }

    /// REVIEW3 A: at the cap, the victim is the oldest unproven connection of the peer holding
    /// the most unproven connections, not the oldest overall: an honest prober that connected
    /// first is not evicted by a flood from other peers. IPv6 /64s count as one peer.
    #[test]
    fn at_the_cap_the_peer_holding_most_unproven_connections_loses_its_oldest() {
        let a = pinned(Limits {
            max_connections: 4,
            connections_per_ip_per_sec: 1000.0,
            ..Limits::default()
        });
        let now = Instant::now();
        let evicted = |s: &ConnectionSlot| s.handle().evicted.borrow().is_some();
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let honest = a.connect(ip(1), now).unwrap();
        let f1 = a.connect(v6("2001:db8::1"), now).unwrap();
        let f2 = a.connect(v6("2001:db8::2"), now).unwrap();
        let other = a.connect(ip(3), now).unwrap();
        let f3 = a.connect(v6("2001:db8::3"), now).unwrap();
        assert!(evicted(&f1), "the flooding /64's oldest goes first");
        assert!(!evicted(&honest) && !evicted(&other) && !evicted(&f2));
        let f4 = a.connect(v6("2001:db8::4"), now).unwrap();
        assert!(evicted(&f2) && !evicted(&honest) && !evicted(&f3) && !evicted(&f4));
        // One each left: on a tie, the oldest overall.
        drop((f1, f2, f4));
        assert_eq!(victim_of(&a.lock().unproven), Some(honest.handle().id));
        let _ = (other, f3);
    }

    /// REVIEW3 G: one pinned key holds at most `MAX_PROVEN_PER_KEY` proved connections; one
    /// more evicts that key's oldest (giving its place back), never another key's.
    #[tokio::test]
    async fn a_key_proved_on_too_many_connections_loses_its_oldest() {
        let a = pinned(Limits {
            max_connections: 16,
            connections_per_ip_per_sec: 1000.0,
            ..Limits::default()
        });
        let now = Instant::now();
        let why = |s: &ConnectionSlot| *s.handle().evicted.borrow();
        let other = a.connect(ip(9), now).unwrap();
        other.handle().prove(&[2; 32], now);
        let stolen: Vec<_> = (0..=MAX_PROVEN_PER_KEY as u8)
            .map(|i| a.connect(ip(10 + i), now).unwrap())
            .collect();
        for s in &stolen[..MAX_PROVEN_PER_KEY] {
            s.handle().prove(&[1; 32], now);
        }
        assert!(stolen.iter().all(|s| why(s).is_none()));
        stolen[MAX_PROVEN_PER_KEY].handle().prove(&[1; 32], now);
        assert_eq!(why(&stolen[0]), Some(Eviction::SameKey));
        assert!(stolen[1..].iter().all(|s| why(s).is_none()) && why(&other).is_none());
        // Proving again changes nothing; the evicted one's place was given back.
        stolen[1].handle().prove(&[1; 32], now);
        assert!(why(&stolen[1]).is_none());
        assert_eq!(a.lock().connections, 1 + MAX_PROVEN_PER_KEY);
        assert_eq!(a.log.counts().connections_evicted_same_key, 1);
        drop(stolen);
        assert_eq!(a.lock().connections, 1);
    }

    /// REVIEW2 F7 (in part): the addresses of one IPv6 /64 are one peer; another /64, or an
    /// IPv4-mapped address's IPv4 peer, is not the same one.
    #[test]
    fn an_ipv6_slash_64_is_one_peer() {
        let a = any(Limits {
            max_connections_per_ip: 2,
            connections_per_ip_per_sec: 1000.0,
            ..Limits::default()
        });
        let now = Instant::now();
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = a.connect(v6("2001:db8:1:2::1"), now).unwrap();
        let _b = a.connect(v6("2001:db8:1:2::ffff:2"), now).unwrap();
        assert_eq!(
            a.connect(v6("2001:db8:1:2:aaaa::3"), now).unwrap_err(),
            Shed::ConnectionsPerIp
        );
        let _c = a.connect(v6("2001:db8:1:3::1"), now).unwrap();
        assert_eq!(_b.handle().peer, peer_of(v6("2001:db8:1:2:bbbb::9")));
        assert_eq!(a.request(_b.handle(), now), RateVerdict::Answer);
        let _d = a.connect(v6("::ffff:127.0.0.9"), now).unwrap();
        let _e = a.connect(ip(9), now).unwrap();
        assert_eq!(a.connect(ip(9), now).unwrap_err(), Shed::ConnectionsPerIp);
    }

    #[test]
    fn handshakes_and_requests_are_rate_limited_per_ip() {
        let a = any(Limits {
            connections_per_ip_per_sec: 2.0,
            requests_per_ip_per_sec: 5.0,
            ..Limits::default()
        });
        let now = Instant::now();
        // Burst of twice the rate, then refused until the bucket refills.
        let slots: Vec<_> = (0..4).map(|_| a.connect(ip(1), now).unwrap()).collect();
        assert_eq!(a.connect(ip(1), now).unwrap_err(), Shed::ConnectionsPerIp);
        assert!(
            a.connect(ip(2), now).is_ok(),
            "another IP has its own budget"
        );
        a.connect(ip(1), now + Duration::from_millis(500)).unwrap();
        let verdicts: Vec<_> = (0..20).map(|_| a.request(slots[0].handle(), now)).collect();
        // The burst (twice the rate) served, the rate's worth refused, then closed.
        assert_eq!(verdicts[..10], [RateVerdict::Answer; 10]);
        assert_eq!(verdicts[10..15], [RateVerdict::Refuse; 5]);
        assert_eq!(verdicts[15..], [RateVerdict::Close; 5]);
        // Refusals refill too: a peer that paused is served again, not closed.
        let later = now + Duration::from_secs(2);
        assert_eq!(a.request(slots[0].handle(), later), RateVerdict::Answer);
        drop(slots);
    }

    /// Many IPs, each within its own handshake rate, together get no more handshakes than the
    /// total budget; an IP refused by the budget keeps its own tokens, and open connections
    /// are untouched.
    #[test]
    fn the_total_handshake_budget_binds_many_ips() {
        let a = any(Limits {
            handshakes_per_sec: 10.0,
            connections_per_ip_per_sec: 2.0,
            ..Limits::default()
        });
        let t0 = Instant::now();
        let verdicts: Vec<_> = (1..=20).map(|i| a.connect(ip(i), t0)).collect();
        assert_eq!(verdicts.iter().filter(|v| v.is_ok()).count(), 10);
        assert!(verdicts[10..]
            .iter()
            .all(|v| matches!(v, Err(Shed::HandshakesOverBudget))));
        assert!(!Shed::HandshakesOverBudget.answer_refusal());
        // A tenth of a second later the budget has one more; ip(11) still has its own two.
        let later = t0 + Duration::from_millis(100);
        let _again = a.connect(ip(11), later).unwrap();
        assert_eq!(
            a.connect(ip(12), later).unwrap_err(),
            Shed::HandshakesOverBudget
        );
        assert_eq!(a.lock().connections, 11, "admitted ones stay open");
        let first = verdicts[0].as_ref().unwrap();
        assert_eq!(a.request(first.handle(), later), RateVerdict::Answer);
    }

    /// After a flood close the IP's new connections are ignored for the penalty, twice as
    /// long at each further close up to the maximum, from the start again after a clean
    /// stretch; other IPs and the IP's open connections are not affected.
    #[test]
    fn a_flood_close_penalizes_new_connections_of_that_ip_growing() {
        let a = any(Limits {
            connections_per_ip_per_sec: 1000.0,
            flood_penalty: Duration::from_secs(1),
            flood_penalty_max: Duration::from_secs(3),
            ..Limits::default()
        });
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let open = a.connect(ip(1), t0).unwrap();
        assert_eq!(a.flood_closed(ip(1), t0), Some(Duration::from_secs(1)));
        assert_eq!(
            a.connect(ip(1), at(999)).unwrap_err(),
            Shed::ConnectionsPenalized
        );
        assert!(
            a.connect(ip(2), at(999)).is_ok(),
            "another IP is not penalized"
        );
        assert_eq!(
            a.request(open.handle(), at(999)),
            RateVerdict::Answer,
            "open ones serve"
        );
        let _back = a.connect(ip(1), at(1000)).unwrap();
        assert_eq!(
            a.flood_closed(ip(1), at(1000)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            a.connect(ip(1), at(2999)).unwrap_err(),
            Shed::ConnectionsPenalized
        );
        assert_eq!(
            a.flood_closed(ip(1), at(3000)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            a.flood_closed(ip(1), at(6000)),
            Some(Duration::from_secs(3))
        );
        // Clean for longer than the maximum after the last penalty (ended at 9 s): from 1 s.
        assert_eq!(
            a.flood_closed(ip(1), at(12_001)),
            Some(Duration::from_secs(1))
        );
        // Refused connections are counted by the caller (which also ignores them); penalties here.
        assert_eq!(a.log.counts().flood_penalties, 5);
        drop(open);
        let off = Admission::new(
            Limits {
                flood_penalty: Duration::ZERO,
                ..Limits::default()
            },
            false,
        );
        assert_eq!(off.flood_closed(ip(1), t0), None);
    }

    /// The total echo budget is split evenly between IPs with connections, grows back when one
    /// leaves, and does not count connections that proved a pinned key.
    #[test]
    fn the_total_echo_budget_is_shared_between_ips() {
        let a = any(Limits {
            echo_per_ip_per_sec: Some(100_000.0),
            echo_per_sec: Some(1000.0),
            ..Limits::default()
        });
        let t0 = Instant::now();
        let first = a.connect(ip(1), t0).unwrap();
        let second = a.connect(ip(2), t0).unwrap();
        // One second of challenges every 100 µs from each IP: about half the budget each.
        let mut answered = [0u32; 2];
        let mut shed = [0u32; 2];
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(100 * i);
            for (k, conn) in [&first, &second].into_iter().enumerate() {
                match a.echo(conn.handle(), now) {
                    (RateVerdict::Answer, _) => answered[k] += 1,
                    (_, kind) => {
                        assert_eq!(kind, Shed::EchoOverShare);
                        shed[k] += 1;
                    }
                }
            }
        }
        for k in 0..2 {
            assert!((500..=560).contains(&answered[k]), "{answered:?}");
            assert!(shed[k] > 0);
        }
        // A proved connection is not counted against the budget.
        let t1 = t0 + Duration::from_secs(5);
        let proved = a.connect(ip(2), t0).unwrap();
        proved.handle().prove(&[1; 32], t0);
        assert!((0..5000).all(|_| a.echo(proved.handle(), t1).0 == RateVerdict::Answer));
        // ip(1) leaves: ip(2) alone gets the whole budget (a tenth of a second's burst).
        drop(first);
        let t2 = t0 + Duration::from_secs(10);
        assert_eq!(a.echo(second.handle(), t2).0, RateVerdict::Answer);
        let t2 = t2 + Duration::from_secs(1);
        let burst = (0..1000)
            .take_while(|_| a.echo(second.handle(), t2).0 == RateVerdict::Answer)
            .count();
        assert_eq!(burst, 100);
    }

    #[test]
    fn shed_work_is_counted_per_kind() {
        let log = ShedLog::default();
        for _ in 0..3 {
            log.shed(Shed::EvidenceQueueFull, "127.0.0.1:1");
        }
        log.shed(Shed::Unauthorized, "127.0.0.1:1");
        log.answered();
        let c = log.counts();
        assert_eq!(c.evidence_queue_full, 3);
        assert_eq!(c.unauthorized, 1);
        assert_eq!(c.evidence_answered, 1);
        assert_eq!(c.echo_dropped, 0);
    }
    /// REVIEW4 PoC: with 200 IPs connected (an honest fleet under `any`), a one-off prober's
    /// default 100 Hz round exceeds its share of the total echo budget; the share must only drop
    /// echoes, never say Close (the server would close the connection and penalize the IP).
    #[test]
    fn review4_poc_the_echo_share_never_closes_an_honest_100hz_prober() {
        let a = any(Limits::default());
        let t0 = Instant::now();
        let v4 = |i: u16| IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
        let _slots: Vec<_> = (0..200).map(|i| a.connect(v4(i), t0).unwrap()).collect();
        let verdicts: Vec<_> = (0..200u64)
            .map(|k| {
                a.echo(_slots[0].handle(), t0 + Duration::from_millis(10 * k))
                    .0
            })
            .collect();
        assert!(
            !verdicts.contains(&RateVerdict::Close),
            "closed after {:?} echoes",
            verdicts.iter().position(|v| *v == RateVerdict::Close)
        );
    }

    /// REVIEW4 R2 (the reviewer's PoC): a proved (pinned) prober behind the same NAT as a
    /// flooder: its 10 Hz echoes are at most dropped, never told Close for the IP's flood;
    /// the flooder is closed, and its close penalizes nobody while the prober is connected.
    #[test]
    fn review4_poc_a_proved_prober_is_not_closed_for_its_nat_neighbours_flood() {
        let a = any(Limits::default());
        let t0 = Instant::now();
        let prober = a.connect(ip(1), t0).unwrap();
        prober.handle().prove(&[1; 32], t0);
        let flooder = a.connect(ip(1), t0).unwrap();
        let (mut closed, mut flooder_closed) = (false, None);
        for i in 0..100_000u64 {
            let now = t0 + Duration::from_micros(10 * i);
            // flooder at 100 kHz, prober at 10 Hz
            if flooder_closed.is_none() && a.echo(flooder.handle(), now).0 == RateVerdict::Close {
                flooder_closed = Some(now);
            }
            if i % 10_000 == 0 {
                closed |= a.echo(prober.handle(), now).0 == RateVerdict::Close;
            }
        }
        assert!(!closed, "the proved prober's connection is told Close");
        let at = flooder_closed.expect("the flooder is closed");
        assert_eq!(a.flood_closed(ip(1), at), None, "no penalty while proved");
        assert!(a.connect(ip(1), at).is_ok());
        // Once the prober is gone, a flood close penalizes the IP again.
        drop(prober);
        assert!(a.flood_closed(ip(1), at).is_some());
        assert_eq!(
            a.connect(ip(1), at).unwrap_err(),
            Shed::ConnectionsPenalized
        );
    }

    /// REVIEW4 R2 (unproved neighbours, `any`): refusals are each connection's own, so an
    /// honest 100 Hz prober sharing its IP with a flooder is not closed either: only the
    /// flooder runs out of its allowance. Requests likewise.
    #[test]
    fn refusals_are_per_connection_so_only_the_flooder_is_closed() {
        let a = any(Limits::default());
        let t0 = Instant::now();
        let honest = a.connect(ip(1), t0).unwrap();
        let flooder = a.connect(ip(1), t0).unwrap();
        let mut flooder_closed = false;
        for i in 0..100_000u64 {
            let now = t0 + Duration::from_micros(10 * i);
            // A closed connection sends no more.
            if !flooder_closed {
                flooder_closed = a.echo(flooder.handle(), now).0 == RateVerdict::Close;
            }
            if i % 1_000 == 0 {
                assert_ne!(
                    a.echo(honest.handle(), now).0,
                    RateVerdict::Close,
                    "echo {i}"
                );
            }
        }
        assert!(flooder_closed);
        let flood: Vec<_> = (0..1000).map(|_| a.request(flooder.handle(), t0)).collect();
        assert!(flood.contains(&RateVerdict::Close));
        assert_eq!(a.request(honest.handle(), t0), RateVerdict::Refuse);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(a.request(honest.handle(), later), RateVerdict::Answer);
    }

    /// REVIEW4 R4: the total handshake budget spent by 100 other IPs, an IP that proved a
    /// pinned key earlier (its connection closed since) is still admitted, within its own
    /// limits; once it has not proved one for long enough it waits like the others.
    #[test]
    fn an_ip_that_proved_a_key_lately_passes_the_spent_handshake_budget() {
        let a = pinned(Limits {
            handshakes_per_sec: 100.0,
            connections_per_ip_per_sec: 1.0,
            ..Limits::default()
        });
        let t0 = Instant::now();
        let before = a.connect(ip(1), t0).unwrap();
        before.handle().prove(&[1; 32], t0);
        drop(before);
        let spend = |at: Instant, net: u8| -> Vec<ConnectionSlot> {
            let v4 = |i: u8| IpAddr::from([10, net, 0, i]);
            let slots: Vec<_> = (0..100).filter_map(|i| a.connect(v4(i), at).ok()).collect();
            assert_eq!(
                a.connect(v4(200), at).unwrap_err(),
                Shed::HandshakesOverBudget
            );
            slots
        };
        let t1 = t0 + Duration::from_secs(60);
        let _others = spend(t1, 1);
        let back = a
            .connect(ip(1), t1)
            .expect("a prober that proved its key lately");
        // Its own limits still apply: a burst of two handshakes a second.
        let _again = a.connect(ip(1), t1).unwrap();
        assert_eq!(a.connect(ip(1), t1).unwrap_err(), Shed::ConnectionsPerIp);
        assert_eq!(
            a.connect(ip(2), t1).unwrap_err(),
            Shed::HandshakesOverBudget
        );
        drop((back, _again));
        // Long after it last proved a key (its unproved connections closing change nothing).
        let t2 = t1 + recent::REMEMBER_FOR + Duration::from_secs(1);
        let _more = spend(t2, 2);
        assert_eq!(
            a.connect(ip(1), t2).unwrap_err(),
            Shed::HandshakesOverBudget
        );
    }

    /// REVIEW5 M4 (the reviewer's PoC): a NAT or /64 neighbour of a proved prober floods
    /// requests over 63 connections, each a little under its own allowance of refusals. The
    /// prober is answered from its own allowance, and the flooders, out of their IP's shared
    /// allowance of refusals, are closed (a closed connection sends no more). Before the fix
    /// the prober got 0 of 200 answered and no flooder was closed.
    #[test]
    fn a_proved_probers_requests_are_not_starved_by_neighbours_spread_over_connections() {
        let a = Arc::new(Admission::new(Limits::default(), true));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let prober = a.connect(ip(9), at(0)).unwrap();
        prober.handle().prove(&[7; 32], at(0));
        let flooders: Vec<_> = (1..64u64)
            .map(|i| a.connect(ip(9), at(i * 60)).unwrap())
            .collect();
        let start_ns = 64 * 60 * 1_000_000u64;
        // each flooder: its share of the IP's 50/s plus 45/s of its own 50/s refusals; every
        // send at its own instant (ns), the prober every 100 ms (events in time order)
        let rate = 50.0 / 63.0 + 45.0;
        let period_ns = 1e9 / rate;
        let mut events: Vec<(u64, Option<usize>)> = (0..200u64)
            .map(|k| (start_ns + 50_000_000 + k * 100_000_000, None))
            .collect();
        for i in 0..63 {
            let mut t = i as f64 / 63.0 * period_ns;
            while t < 20e9 {
                events.push((start_ns + t as u64, Some(i)));
                t += period_ns;
            }
        }
        events.sort_unstable();
        let (mut asked, mut answered, mut closes) = (0, 0, 0);
        let mut closed = [false; 63];
        let (mut flood_sent, mut flood_answered) = (0, 0);
        for (t, who) in events {
            let now = t0 + Duration::from_nanos(t);
            match who {
                None => {
                    asked += 1;
                    answered += usize::from(a.request(prober.handle(), now) == RateVerdict::Answer);
                }
                Some(i) if closed[i] => {}
                Some(i) => {
                    let v = a.request(flooders[i].handle(), now);
                    closed[i] = v == RateVerdict::Close;
                    closes += usize::from(closed[i]);
                    flood_answered += usize::from(v == RateVerdict::Answer);
                    flood_sent += 1;
                }
            }
        }
        // Flooders are closed until the rest ask no more than the IP's answers and shared
        // refusals (50 + 100 a second); the IP's answers stay within rate and burst.
        let open = 63 - closes;
        assert!(
            closes > 0 && open as f64 * rate <= 150.0,
            "{closes} flooders closed, {open} still open at {rate:.1}/s each"
        );
        assert!(
            flood_answered <= 20 * 50 + 100,
            "{flood_sent} sent, {flood_answered} answered"
        );
        assert!(
            answered * 10 >= asked * 9,
            "the proved prober got {answered} of {asked} requests answered"
        );
    }

    /// REVIEW5 M4, echoes: 63 neighbours of a proved prober each echo a little under the
    /// IP's answers share plus their own refusals. The prober's 1 kHz echoes are all answered
    /// from its own allowance; flooders are closed until the rest fit the IP's budget.
    #[test]
    fn a_proved_probers_echoes_are_not_starved_by_neighbours_spread_over_connections() {
        let a = pinned(Limits::default());
        let t0 = Instant::now();
        let prober = a.connect(ip(9), t0).unwrap();
        prober.handle().prove(&[7; 32], t0);
        // Within the IP's handshake rate.
        let flooders: Vec<_> = (1..64u64)
            .map(|i| {
                a.connect(ip(9), t0 + Duration::from_millis(i * 60))
                    .unwrap()
            })
            .collect();
        let start = t0 + Duration::from_millis(64 * 60);
        // Each flooder: its share of the IP's 20 000/s and 1 800/s of its own 2 000/s
        // refusals, taking turns.
        let rate = 20_000.0 / 63.0 + 1_800.0;
        let step_ns = 1e9 / (63.0 * rate);
        let mut closed = [false; 63];
        let (mut answered, mut asked) = (0, 0);
        for k in 0..(63.0 * rate) as u64 {
            let now = start + Duration::from_nanos((k as f64 * step_ns) as u64);
            let i = (k % 63) as usize;
            if !closed[i] {
                closed[i] = a.echo(flooders[i].handle(), now).0 == RateVerdict::Close;
            }
            if k % 140 == 0 {
                asked += 1;
                answered += usize::from(a.echo(prober.handle(), now).0 == RateVerdict::Answer);
            }
        }
        let closes = closed.iter().filter(|c| **c).count();
        let open = 63 - closes;
        assert!(
            closes > 0 && open as f64 * rate <= 20_000.0 + 4_000.0,
            "{closes} flooders closed, {open} still open at {rate:.0}/s each"
        );
        assert_eq!(answered, asked, "the proved prober's echoes");
    }
    /// REVIEW6 R7 (the reviewer's PoC, M4-a): one pinned key (a hostile or stolen prober key)
    /// proves itself on MAX_PROVEN_PER_KEY connections from one IP. Each was answered from its
    /// own allowance at the full per-IP rate (8 x 20 000 echo answers a second, 16 x the
    /// total budget, and 8 x 50 requests); now the key's connections share one allowance, and
    /// it is forgotten with the key's last connection.
    #[test]
    fn review6_one_pinned_key_gets_no_more_than_one_ips_echo_rate() {
        let a = pinned(Limits::default());
        let t0 = Instant::now();
        let conns: Vec<_> = (0..MAX_PROVEN_PER_KEY as u64)
            .map(|i| {
                a.connect(ip(9), t0 + Duration::from_millis(i * 60))
                    .unwrap()
            })
            .collect();
        let start = t0 + Duration::from_secs(1);
        for c in &conns {
            c.handle().prove(&[7; 32], start);
        }
        let mut answered = 0u64;
        // one second, each connection at 20 000/s
        for k in 0..20_000u64 {
            let now = start + Duration::from_micros(k * 50);
            for c in &conns {
                answered += u64::from(a.echo(c.handle(), now).0 == RateVerdict::Answer);
            }
        }
        assert!(
            answered <= 20_000 + 2_000,
            "one key was answered {answered} echoes in a second"
        );
        // Requests: one IP's burst (100) and rate (50/s) for the key, over 8 connections.
        let later = start + Duration::from_secs(10);
        let requests = |at: Instant| {
            (0..100)
                .flat_map(|_| &conns)
                .filter(|c| a.request(c.handle(), at) == RateVerdict::Answer)
                .count()
        };
        assert_eq!(requests(later), 100);
        assert_eq!(requests(later + Duration::from_secs(1)), 50);
        // Another key has an allowance of its own.
        let other = a.connect(ip(10), later).unwrap();
        other.handle().prove(&[8; 32], later);
        assert_eq!(a.request(other.handle(), later), RateVerdict::Answer);
        drop(conns);
        assert_eq!(
            a.lock().proved_answers.len(),
            1,
            "only the other key's is left"
        );
        // A request checked after its connection closed leaves nothing behind.
        let late = a.connect(ip(11), later).unwrap();
        let handle = late.handle().clone();
        drop(late);
        handle.prove(&[9; 32], later);
        assert_eq!(a.lock().proved_answers.len(), 1);
        drop(other);
        assert!(a.lock().proved_answers.is_empty() && a.lock().proved_keys.is_empty());
    }

    /// REVIEW6 R8 (the reviewer's PoC, M4-b): a flooder behind the same NAT as an honest
    /// prober spends the IP's shared refusals; the prober's new connection was closed on its
    /// very first request (under `any` on its first echo) and the IP penalized. The IP's
    /// allowance now closes only connections that spent some of their own: the newcomer is
    /// refused (and under `pinned` its signed request over the rate still proves its key, see
    /// `tests/overload.rs`).
    #[test]
    fn review6_an_honest_neighbours_first_request_is_not_a_flood_close() {
        let a = pinned(Limits::default());
        let t0 = Instant::now();
        for _ in 0..2 {
            let flooder = a.connect(ip(9), t0).unwrap();
            while a.request(flooder.handle(), t0) != RateVerdict::Close {}
        }
        let honest = a.connect(ip(9), t0).unwrap();
        assert_ne!(
            a.request(honest.handle(), t0),
            RateVerdict::Close,
            "request"
        );
        // Still asking once it spent a tenth of its own 50 refusals, it is closed when the IP's
        // shared allowance runs out, its own far from spent.
        let refused = 1
            + (0..50)
                .take_while(|_| a.request(honest.handle(), t0) == RateVerdict::Refuse)
                .count();
        assert!(
            (5..50).contains(&refused),
            "refused {refused} before the close"
        );
        let a = any(Limits::default());
        for _ in 0..2 {
            let flooder = a.connect(ip(9), t0).unwrap();
            while a.echo(flooder.handle(), t0).0 != RateVerdict::Close {}
        }
        let honest = a.connect(ip(9), t0).unwrap();
        assert_ne!(a.echo(honest.handle(), t0).0, RateVerdict::Close, "echo");
    }
}
