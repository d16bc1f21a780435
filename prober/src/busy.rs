//! Busy-polling prober driver for precision timing: the calling thread spins on a non-blocking
//! UDP socket and drives `quinn-proto` directly, so no task or vCPU wake-up (20-45 µs on our
//! VMs) sits between the socket and [`ChallengeTracker`]. One challenge is in flight at a time;
//! rates, windows and evidence requests stay with the tokio driver ([`crate::round`]).

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use locus_proto::prober::{AnswerOutcome, ChallengeTracker, Counters, Sample, Violation};
use locus_proto::{Nonce, ALPN};
use quinn_proto::crypto::rustls::QuicClientConfig;
use quinn_proto::{
    ClientConfig, Connection, ConnectionError, ConnectionHandle, DatagramEvent, Endpoint,
    EndpointConfig, Event, SendDatagramError, TransportConfig,
};
use tracing::debug;

use crate::pin::{PinVerifier, SpkiPolicy};

/// Largest UDP payload read; QUIC datagrams stay far below it.
const MAX_UDP_PAYLOAD: usize = 65_535;

/// Why a busy connection or echo failed.
#[derive(Debug, thiserror::Error)]
pub enum BusyError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Quic(String),
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
    socket: UdpSocket,
    endpoint: Endpoint,
    ch: ConnectionHandle,
    conn: Connection,
    tracker: ChallengeTracker,
    /// Time base of the tracker's nanosecond timestamps.
    epoch: Instant,
    spki: Vec<u8>,
    pinned: bool,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
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
        socket.set_nonblocking(true)?;
        let seen = Arc::new(Mutex::new(None));
        let pinned = matches!(policy, SpkiPolicy::Pinned(_));
        let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, false, None);
        let now = Instant::now();
        let (ch, conn) = endpoint
            .connect(
                now,
                client_config(policy, seen.clone())?,
                addr,
                "locus-responder",
            )
            .map_err(|source| BusyError::Connect { addr, source })?;
        let mut target = Self {
            addr,
            socket,
            endpoint,
            ch,
            conn,
            tracker: ChallengeTracker::new(timeout.as_nanos() as u64),
            epoch: now,
            spki: Vec::new(),
            pinned,
            recv_buf: vec![0u8; MAX_UDP_PAYLOAD],
            send_buf: Vec::with_capacity(MAX_UDP_PAYLOAD),
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
        target.spki = seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        Ok(target)
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

    /// Spins until a datagram arrived, a connection timer fired, or `deadline` passed.
    fn wait(&mut self, deadline: Instant) -> Result<Woke, BusyError> {
        loop {
            match self.socket.recv_from(&mut self.recv_buf) {
                Ok((n, from)) => {
                    let received = Instant::now();
                    self.send_buf.clear();
                    match self.endpoint.handle(
                        received,
                        from,
                        None,
                        None,
                        BytesMut::from(&self.recv_buf[..n]),
                        &mut self.send_buf,
                    ) {
                        Some(DatagramEvent::ConnectionEvent(ch, event)) if ch == self.ch => {
                            self.conn.handle_event(event);
                        }
                        Some(DatagramEvent::Response(t)) => self.send(t.size, t.destination)?,
                        // A client endpoint accepts no connections.
                        Some(DatagramEvent::NewConnection(incoming)) => {
                            self.endpoint.ignore(incoming)
                        }
                        _ => {}
                    }
                    return Ok(Woke::Datagram(received));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if self.conn.poll_timeout().is_some_and(|t| t <= now) {
                        self.conn.handle_timeout(now);
                        return Ok(Woke::Timer);
                    }
                    if now >= deadline {
                        return Ok(Woke::Deadline);
                    }
                    std::hint::spin_loop();
                }
                Err(e) if is_transient(&e) => debug!("receive: {e}"),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Exchanges endpoint events and sends every packet the connection has ready.
    fn flush(&mut self) -> Result<(), BusyError> {
        loop {
            self.send_buf.clear();
            while let Some(t) = self
                .conn
                .poll_transmit(Instant::now(), 1, &mut self.send_buf)
            {
                self.send(t.size, t.destination)?;
                self.send_buf.clear();
            }
            let mut more = false;
            while let Some(event) = self.conn.poll_endpoint_events() {
                if let Some(back) = self.endpoint.handle_event(self.ch, event) {
                    self.conn.handle_event(back);
                    more = true;
                }
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Sends the first `len` bytes of `send_buf`; a full send buffer drops the datagram, as a
    /// congested network would (a lost challenge is counted as lost).
    fn send(&self, len: usize, to: SocketAddr) -> std::io::Result<()> {
        match self.socket.send_to(&self.send_buf[..len], to) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock || is_transient(&e) => {
                debug!(%to, "datagram not sent: {e}");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Errors a UDP socket reports for one peer (e.g. ICMP port unreachable), not for the socket.
fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Interrupted | ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
    )
}

/// TLS 1.3, ALPN `locus/1`, the responder's key checked by [`PinVerifier`]: as the tokio client.
fn client_config(
    policy: SpkiPolicy,
    seen: Arc<Mutex<Option<Vec<u8>>>>,
) -> Result<ClientConfig, BusyError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier::new(policy, seen)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| BusyError::Quic(e.to_string()))?;
    let mut client = ClientConfig::new(Arc::new(crypto));
    let mut transport = TransportConfig::default();
    transport
        .datagram_receive_buffer_size(Some(4 << 20))
        .datagram_send_buffer_size(4 << 20)
        .keep_alive_interval(Some(Duration::from_secs(5)));
    client.transport_config(Arc::new(transport));
    Ok(client)
}
