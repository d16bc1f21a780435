//! The responder's UDP echo sessions: bounded in total and per peer (an IPv4 address or an
//! IPv6 /64; the idlest of the oldest is evicted to make room, and a session granted to a
//! connection that proved no pinned key evicts only such sessions), expiring after a fixed
//! lifetime, rate-limited per session, per peer and in total for unproven sessions, per key
//! for proved ones. A datagram of an unknown session costs a hash lookup and allocates nothing.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use serde::Serialize;
use thiserror::Error;

use super::{challenge_session, EchoKeys, ServerSession, UdpEchoError, ANSWER_LEN};

/// How many of the oldest sessions are weighed when one must go: the idlest of them is
/// evicted, so a prober that challenges steadily outlives sessions nobody uses.
const EVICTION_CANDIDATES: usize = 8;

/// Limits of a [`SessionTable`].
#[derive(Debug, Clone, PartialEq)]
pub struct TableLimits {
    /// Sessions held at once, all IPs together.
    pub max_sessions: usize,
    /// Sessions held at once for one peer (an IPv4 address or an IPv6 /64, [`peer_of`]): one
    /// host cannot fill the table.
    pub max_sessions_per_ip: usize,
    /// A session is forgotten this long after it was granted.
    pub lifetime_ns: u64,
    /// Answers per second on one session (bursts of a tenth of a second's worth, at least
    /// one); `None`: unlimited.
    pub per_session_per_sec: Option<f64>,
    /// Answers per second to one peer, all its unproven sessions together, and to one pinned
    /// key, all its proved sessions together; `None`: unlimited.
    pub per_ip_per_sec: Option<f64>,
    /// Answers per second to all unproven sessions together (REVIEW7 U2: the QUIC echo's
    /// `echo_per_sec`); `None`: unlimited.
    pub unproven_per_sec: Option<f64>,
}

/// Who a session was granted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantee {
    /// A connection that proved no pinned key.
    Unproven,
    /// A connection that proved this pinned key: its sessions are answered from the key's own
    /// rate, not its peer's or the unproven total, and unproven grants never evict them.
    Proved([u8; 32]),
}

/// The peer the per-peer limits count: an IPv4 address (also when mapped into IPv6), or an
/// IPv6 address's /64, since one host commonly holds a whole /64 (REVIEW2 F7, REVIEW7 U1).
pub fn peer_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
        },
    }
}

/// What the table did since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    /// Sessions granted.
    pub registered: u64,
    /// Sessions evicted to make room (total or per-IP cap).
    pub evicted: u64,
    /// Sessions forgotten at the end of their lifetime.
    pub expired: u64,
    /// Challenges answered.
    pub answered: u64,
    /// Datagrams of the wrong length, version or type.
    pub malformed: u64,
    /// Datagrams naming no session held.
    pub unknown_session: u64,
    /// Datagrams from another IP than the session's.
    pub wrong_peer: u64,
    /// Datagrams whose MAC did not verify.
    pub bad_mac: u64,
    /// Replayed or too old counters.
    pub replayed: u64,
    /// Authenticated challenges dropped over a session's or an IP's rate.
    pub rate_limited: u64,
}

/// Why a session was not registered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The id is in use: draw another.
    #[error("session id {0:016x} is taken")]
    IdTaken(u64),
    /// At a cap with no session an unproven grant may evict (all are proved).
    #[error("no room for a session of a connection that proved no pinned key")]
    Full,
}

/// A token bucket over nanoseconds.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last_ns: u64,
}

impl Bucket {
    fn new(rate: f64, now_ns: u64) -> Self {
        Self {
            tokens: burst(rate),
            last_ns: now_ns,
        }
    }

    fn take(&mut self, rate: f64, now_ns: u64) -> bool {
        let dt = now_ns.saturating_sub(self.last_ns) as f64 / 1e9;
        self.last_ns = self.last_ns.max(now_ns);
        self.tokens = (self.tokens + dt * rate).min(burst(rate));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn burst(rate: f64) -> f64 {
    (rate / 10.0).max(1.0)
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    /// The peer ([`peer_of`]) of `ip`.
    peer: IpAddr,
    grantee: Grantee,
    state: ServerSession,
    created_ns: u64,
    last_used_ns: u64,
    bucket: Option<Bucket>,
}

#[derive(Debug)]
struct PerIp {
    /// This IP's sessions, oldest first; ids of removed sessions are skipped lazily.
    order: VecDeque<(u64, u64)>,
    live: usize,
    bucket: Option<Bucket>,
}

/// The responder's UDP echo sessions.
#[derive(Debug)]
pub struct SessionTable {
    limits: TableLimits,
    sessions: HashMap<u64, Entry>,
    /// Every session as `(id, created_ns)`, oldest first (so also by expiry); ids of removed
    /// sessions are skipped lazily and compacted away.
    order: VecDeque<(u64, u64)>,
    /// Per peer ([`peer_of`]), not per address.
    ips: HashMap<IpAddr, PerIp>,
    /// Per pinned key: its proved sessions and their answers.
    keys: HashMap<[u8; 32], (usize, Option<Bucket>)>,
    /// Answers of all unproven sessions together.
    unproven: Option<Bucket>,
    counts: TableCounts,
}

impl SessionTable {
    pub fn new(limits: TableLimits) -> Self {
        Self {
            limits,
            sessions: HashMap::new(),
            order: VecDeque::new(),
            ips: HashMap::new(),
            keys: HashMap::new(),
            unproven: None,
            counts: TableCounts::default(),
        }
    }

    pub fn limits(&self) -> &TableLimits {
        &self.limits
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.sessions.contains_key(&id)
    }

    pub fn counts(&self) -> TableCounts {
        self.counts
    }

    /// Registers session `id` for a connection that proved no pinned key, see
    /// [`SessionTable::register_for`].
    pub fn register(
        &mut self,
        now_ns: u64,
        id: u64,
        ip: IpAddr,
        keys: EchoKeys,
    ) -> Result<u64, RegisterError> {
        self.register_for(now_ns, id, ip, keys, Grantee::Unproven)
    }

    /// Registers session `id` (drawn at random by the caller) for `ip` with the keys exported
    /// for it; returns when it expires (ns). Expired sessions go first; at the peer's or the
    /// total cap the idlest of the oldest [`EVICTION_CANDIDATES`] unproven sessions is
    /// evicted, or, for a proved grantee when there is none, of all sessions; an unproven
    /// grant finding no unproven session to evict is refused (REVIEW7 U1).
    pub fn register_for(
        &mut self,
        now_ns: u64,
        id: u64,
        ip: IpAddr,
        keys: EchoKeys,
        grantee: Grantee,
    ) -> Result<u64, RegisterError> {
        self.expire(now_ns);
        if self.sessions.contains_key(&id) {
            return Err(RegisterError::IdTaken(id));
        }
        let peer = peer_of(ip);
        let max_ip = self.limits.max_sessions_per_ip.max(1);
        while self.ips.get(&peer).is_some_and(|p| p.live >= max_ip) {
            let victim = self
                .ips
                .get(&peer)
                .and_then(|p| self.victim(&p.order, grantee));
            let Some(victim) = victim else {
                return Err(RegisterError::Full);
            };
            self.remove(victim);
            self.counts.evicted += 1;
        }
        while self.sessions.len() >= self.limits.max_sessions.max(1) {
            let Some(victim) = self.victim(&self.order, grantee) else {
                return Err(RegisterError::Full);
            };
            self.remove(victim);
            self.counts.evicted += 1;
        }
        let bucket = self
            .limits
            .per_session_per_sec
            .map(|r| Bucket::new(r, now_ns));
        self.sessions.insert(
            id,
            Entry {
                ip,
                peer,
                grantee,
                state: ServerSession::new(id, keys),
                created_ns: now_ns,
                last_used_ns: now_ns,
                bucket,
            },
        );
        self.order.push_back((id, now_ns));
        let per_ip_rate = self.limits.per_ip_per_sec;
        let p = self.ips.entry(peer).or_insert_with(|| PerIp {
            order: VecDeque::new(),
            live: 0,
            bucket: per_ip_rate.map(|r| Bucket::new(r, now_ns)),
        });
        p.order.push_back((id, now_ns));
        p.live += 1;
        if let Grantee::Proved(key) = grantee {
            let k = (self.keys.entry(key))
                .or_insert_with(|| (0, per_ip_rate.map(|r| Bucket::new(r, now_ns))));
            k.0 += 1;
        }
        self.counts.registered += 1;
        self.compact(peer);
        Ok(now_ns.saturating_add(self.limits.lifetime_ns))
    }

    /// Answers one challenge datagram from `from`, received at `received_ns` (`now_ns` read
    /// just before calling); every `Err` is counted and must not be answered.
    pub fn on_datagram(
        &mut self,
        received_ns: u64,
        now_ns: u64,
        from: IpAddr,
        datagram: &[u8],
    ) -> Result<[u8; ANSWER_LEN], UdpEchoError> {
        let result = self.answer(received_ns, now_ns, from, datagram);
        let c = &mut self.counts;
        match &result {
            Ok(_) => c.answered += 1,
            Err(UdpEchoError::Decode(_)) => c.malformed += 1,
            Err(UdpEchoError::UnknownSession { .. }) => c.unknown_session += 1,
            Err(UdpEchoError::WrongPeer { .. }) => c.wrong_peer += 1,
            Err(UdpEchoError::BadMac { .. }) => c.bad_mac += 1,
            Err(UdpEchoError::Replayed { .. } | UdpEchoError::TooOld { .. }) => c.replayed += 1,
            Err(UdpEchoError::RateLimited { .. }) => c.rate_limited += 1,
            // Prober-side errors: never made here.
            Err(_) => c.malformed += 1,
        }
        result
    }

    fn answer(
        &mut self,
        received_ns: u64,
        now_ns: u64,
        from: IpAddr,
        datagram: &[u8],
    ) -> Result<[u8; ANSWER_LEN], UdpEchoError> {
        let session = challenge_session(datagram)?;
        let lifetime = self.limits.lifetime_ns;
        match self.sessions.get(&session) {
            Some(e) if received_ns.saturating_sub(e.created_ns) < lifetime => {}
            Some(_) => {
                self.remove(session);
                self.counts.expired += 1;
                return Err(UdpEchoError::UnknownSession { session });
            }
            None => return Err(UdpEchoError::UnknownSession { session }),
        }
        let Some(entry) = self.sessions.get_mut(&session) else {
            return Err(UdpEchoError::UnknownSession { session });
        };
        if entry.ip != from {
            return Err(UdpEchoError::WrongPeer {
                session,
                expected: entry.ip,
                found: from,
            });
        }
        let answer = entry.state.on_challenge(received_ns, now_ns, datagram)?;
        entry.last_used_ns = received_ns;
        let session_ok = match (&mut entry.bucket, self.limits.per_session_per_sec) {
            (Some(b), Some(rate)) => b.take(rate, received_ns),
            _ => true,
        };
        let l = &self.limits;
        let take = |b: Option<&mut Bucket>, rate: Option<f64>| match (b, rate) {
            (Some(b), Some(rate)) => b.take(rate, received_ns),
            _ => true,
        };
        // A proved session spends its key's answers only, so neither its NAT neighbours nor
        // the unproven crowd can spend them (as REVIEW6 R7 for the QUIC echo).
        let ok = session_ok
            && match entry.grantee {
                Grantee::Proved(key) => take(
                    self.keys.get_mut(&key).and_then(|k| k.1.as_mut()),
                    l.per_ip_per_sec,
                ),
                Grantee::Unproven => {
                    let peer = entry.peer;
                    take(
                        self.ips.get_mut(&peer).and_then(|p| p.bucket.as_mut()),
                        l.per_ip_per_sec,
                    ) && take(
                        match (&mut self.unproven, l.unproven_per_sec) {
                            (Some(b), _) => Some(b),
                            (None, Some(r)) => {
                                Some(self.unproven.insert(Bucket::new(r, received_ns)))
                            }
                            (None, None) => None,
                        },
                        l.unproven_per_sec,
                    )
                }
            };
        if !ok {
            return Err(UdpEchoError::RateLimited { session });
        }
        Ok(answer)
    }

    /// Forgets sessions past their lifetime (the oldest are at the front of `order`).
    fn expire(&mut self, now_ns: u64) {
        while let Some(&(id, created)) = self.order.front() {
            if self
                .sessions
                .get(&id)
                .is_some_and(|e| e.created_ns == created)
            {
                if now_ns.saturating_sub(created) < self.limits.lifetime_ns {
                    break;
                }
                self.remove(id);
                self.counts.expired += 1;
            }
            self.order.pop_front();
        }
    }

    /// The session to evict for a grant to `grantee`: the idlest of the oldest unproven
    /// sessions in `order`, else, for a proved grantee only, of all sessions.
    fn victim(&self, order: &VecDeque<(u64, u64)>, grantee: Grantee) -> Option<u64> {
        self.idlest(order, true).or_else(|| match grantee {
            Grantee::Proved(_) => self.idlest(order, false),
            Grantee::Unproven => None,
        })
    }

    /// Of the oldest [`EVICTION_CANDIDATES`] live sessions in `order` (only unproven ones if
    /// `unproven`), the least recently used (the oldest among equals).
    fn idlest(&self, order: &VecDeque<(u64, u64)>, unproven: bool) -> Option<u64> {
        order
            .iter()
            .filter_map(|&(id, created)| {
                let e = self.sessions.get(&id)?;
                let fits = !unproven || e.grantee == Grantee::Unproven;
                (e.created_ns == created && fits).then_some((e.last_used_ns, id))
            })
            .take(EVICTION_CANDIDATES)
            .min_by_key(|&(last_used, _)| last_used)
            .map(|(_, id)| id)
    }

    fn remove(&mut self, id: u64) {
        let Some(e) = self.sessions.remove(&id) else {
            return;
        };
        if let Some(p) = self.ips.get_mut(&e.peer) {
            p.live -= 1;
            if p.live == 0 {
                self.ips.remove(&e.peer);
            }
        }
        if let Grantee::Proved(key) = e.grantee {
            if let Some(k) = self.keys.get_mut(&key) {
                k.0 -= 1;
                if k.0 == 0 {
                    self.keys.remove(&key);
                }
            }
        }
    }

    /// Drops the ids of removed sessions from the total queue and `ip`'s once they are most of
    /// them: a queue only grows when its IP registers, so each stays within a small multiple
    /// of the sessions it holds.
    fn compact(&mut self, ip: IpAddr) {
        let sessions = &self.sessions;
        let live = |&(id, created): &(u64, u64)| {
            sessions.get(&id).is_some_and(|e| e.created_ns == created)
        };
        if self.order.len() > 2 * sessions.len() + 64 {
            self.order.retain(live);
        }
        if let Some(p) = self.ips.get_mut(&ip) {
            if p.order.len() > 2 * p.live + 16 {
                p.order.retain(live);
            }
        }
    }
}

#[cfg(test)]
mod tests;
