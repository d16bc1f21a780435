//! Busy-polling prober driver for precision timing: the calling thread spins on a non-blocking
//! UDP socket and drives `quinn-proto` directly, so no task or vCPU wake-up (20-45 µs on our
//! VMs) sits between the socket and [`ChallengeTracker`]. One challenge is in flight at a time;
//! rates, windows and evidence requests stay with the tokio driver ([`crate::round`]).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use locus_net::busy::{BusyEndpoint, Received};
use locus_net::ConfigError;
use locus_proto::prober::{AnswerOutcome, ChallengeTracker, Counters, Sample, Violation};
use locus_proto::Nonce;
use quinn_proto::{Connection, ConnectionError, ConnectionHandle, Event, SendDatagramError};
use tracing::debug;

use crate::pin::{pin_verifier, SpkiPolicy};

/// Why a busy connection or echo failed.
#[derive(Debug, thiserror::Error)]
pub enum BusyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("UDP socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: quinn_proto::ConnectError,
    },
    /// The handshake failed, e.g. because the responder's key does not match the pin.
    #[error("handshake with {addr} failed: {reason}")]
    Handshake {
        addr: SocketAddr,
        reason: ConnectionError,
    },
    #[error("{addr} did not finish the handshake within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connection lost: {0}")]
    Lost(ConnectionError),
    #[error("challenge not sent: {0}")]
    Send(#[from] SendDatagramError),
    /// Counted as lost by the tracker.
    #[error("no answer within {timeout:?}")]
    NoAnswer { timeout: Duration },
    /// The responder broke the protocol (see [`Violation`]).
    #[error("protocol violation: {0}")]
    Violation(#[from] Violation),
}

/// What woke the spin loop.
enum Woke {
    /// A UDP datagram, read at this instant, was fed to the connection.
    Datagram(Instant),
    /// A connection timer fired.
    Timer,
    /// The caller's deadline passed.
    Deadline,
}

/// A responder connected by a busy-polling driver; echoes run on the calling thread.
pub struct BusyTarget {
    addr: SocketAddr,
    endpoint: BusyEndpoint,
    ch: ConnectionHandle,
    conn: Connection,
    tracker: ChallengeTracker,
    /// Time base of the tracker's nanosecond timestamps.
    epoch: Instant,
    spki: Vec<u8>,
    pinned: bool,
    /// `Some`: spin this long after sending, then sleep in the kernel ([`Self::set_spin`]).
    spin: Option<Duration>,
}

impl BusyTarget {
    /// Connects from `socket` to the responder at `addr`, spinning until the handshake is done
    /// (the responder's key checked against `policy`) or `timeout` passed.
    pub fn connect(
        socket: UdpSocket,
        addr: SocketAddr,
        policy: SpkiPolicy,
        timeout: Duration,
    ) -> Result<Self, BusyError> {
        let mut endpoint = BusyEndpoint::new(socket, None)?;
        let pinned = policy.is_pinned();
        let (verifier, seen) = pin_verifier(policy);
        let config = locus_net::client_config(verifier)?;
        let now = Instant::now();
        let (ch, conn) = endpoint
            .connect(now, config, addr, "locus-responder")
            .map_err(|source| BusyError::Connect { addr, source })?;
        let mut target = Self {
            addr,
            endpoint,
            ch,
            conn,
            tracker: ChallengeTracker::new(timeout.as_nanos() as u64),
            epoch: now,
            spki: Vec::new(),
            pinned,
            spin: None,
        };
        target.flush()?;
        let deadline = now + timeout;
        loop {
            if let Woke::Deadline = target.wait(deadline)? {
                return Err(BusyError::Timeout { addr, timeout });
            }
            let mut connected = false;
            while let Some(event) = target.conn.poll() {
                match event {
                    Event::Connected => connected = true,
                    Event::ConnectionLost { reason } => {
                        // Tell the responder why, then give up.
                        target.flush()?;
                        return Err(BusyError::Handshake { addr, reason });
                    }
                    _ => {}
                }
            }
            target.flush()?;
            if connected {
                break;
            }
        }
        target.spki = seen.spki();
        Ok(target)
    }

    /// Spin for at most `spin` after each challenge, then let the thread sleep in the kernel
    /// until the answer (or a timer) comes: the tokio driver's `RoundConfig::spin` policy
    /// without its task hops. Zero never spins. Busy targets spin without limit until this is
    /// called.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = Some(spin);
    }

    /// The responder's session key (SPKI DER) as seen in the handshake.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// Whether [`Self::spki`] was pinned beforehand or learned on first use.
    pub fn pinned(&self) -> bool {
        self.pinned
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sent, answered, lost, late and violating challenges so far.
    pub fn counters(&self) -> Counters {
        self.tracker.counters()
    }

    /// The instant that sample timestamps (`sent_ns`) count from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Sends one challenge carrying `nonce` and spins until its answer arrives. The round trip
    /// runs from just before the challenge is encrypted to the moment the answer's UDP
    /// datagram was read. No answer within `timeout` counts the challenge as lost.
    pub fn echo(&mut self, nonce: Nonce, timeout: Duration) -> Result<Sample, BusyError> {
        self.tracker.set_timeout(timeout.as_nanos() as u64);
        let sent = Instant::now();
        let challenge = self.tracker.issue(self.ns(sent), nonce);
        self.conn
            .datagrams()
            .send(Bytes::copy_from_slice(&challenge), false)?;
        self.flush()?;
        let deadline = sent + timeout;
        loop {
            let received = match self.wait(deadline)? {
                Woke::Datagram(at) => at,
                Woke::Timer => Instant::now(),
                Woke::Deadline => {
                    self.tracker.expire(self.ns(Instant::now()));
                    return Err(BusyError::NoAnswer { timeout });
                }
            };
            let mut answer = None;
            while let Some(event) = self.conn.poll() {
                match event {
                    Event::DatagramReceived => {
                        while let Some(datagram) = self.conn.datagrams().recv() {
                            match self.tracker.on_answer(self.ns(received), &datagram) {
                                // One challenge in flight: the tracker matched it, nonce too.
                                AnswerOutcome::Sample(s) => answer = Some(s),
                                AnswerOutcome::Late { seq, .. } => debug!(seq, "late answer"),
                                AnswerOutcome::Violation(v) => return Err(v.into()),
                            }
                        }
                    }
                    Event::ConnectionLost { reason } => return Err(BusyError::Lost(reason)),
                    _ => {}
                }
            }
            // ACKs and anything else the connection wants to say.
            self.flush()?;
            if let Some(s) = answer {
                return Ok(s);
            }
        }
    }

    /// Closes the connection and sends the close to the responder.
    pub fn close(mut self) -> Result<(), BusyError> {
        self.conn
            .close(Instant::now(), 0u32.into(), Bytes::from_static(b"done"));
        self.flush()
    }

    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Spins (then sleeps, with [`Self::set_spin`]) until a datagram arrived, a connection
    /// timer fired, or `deadline` passed.
    fn wait(&mut self, deadline: Instant) -> Result<Woke, BusyError> {
        let started = Instant::now();
        loop {
            let parked = self.spin.is_some_and(|s| started.elapsed() >= s);
            let read = if parked {
                let wake = self
                    .conn
                    .poll_timeout()
                    .map_or(deadline, |t| t.min(deadline));
                self.endpoint.recv_parked(wake)?
            } else {
                self.endpoint.recv()?
            };
            match read {
                Some((received, event)) => {
                    match event {
                        Received::Connection(ch, event) if ch == self.ch => {
                            self.conn.handle_event(event);
                        }
                        // A client endpoint accepts no connections.
                        Received::Incoming(incoming) => self.endpoint.ignore(incoming),
                        _ => {}
                    }
                    return Ok(Woke::Datagram(received));
                }
                None => {
                    let now = Instant::now();
                    if self.conn.poll_timeout().is_some_and(|t| t <= now) {
                        self.conn.handle_timeout(now);
                        return Ok(Woke::Timer);
                    }
                    if now >= deadline {
                        return Ok(Woke::Deadline);
                    }
                    if !parked {
                        std::hint::spin_loop();
                    }
                }
            }
        }
    }

    /// Exchanges endpoint events and sends every packet the connection has ready.
    fn flush(&mut self) -> Result<(), BusyError> {
        Ok(self.endpoint.flush(self.ch, &mut self.conn)?)
    }
}
