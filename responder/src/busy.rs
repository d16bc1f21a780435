//! Busy-polling responder driver for precision timing: one thread spins on a non-blocking UDP
//! socket and drives `quinn-proto` directly, so no task or vCPU wake-up (20-45 µs on our VMs)
//! sits between the socket and the sans-I/O echo core. It answers echo datagrams only;
//! evidence and transcript requests stay with the tokio [`crate::server::Server`].

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use locus_proto::responder::EchoSession;
use locus_proto::ALPN;
use quinn_proto::crypto::rustls::QuicServerConfig;
use quinn_proto::{
    Connection, ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, Event, ServerConfig,
    TransportConfig,
};
use tracing::{debug, info, warn};

use crate::session_key::SessionKey;

/// Idle connections are closed after this long, as in the tokio server.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest UDP payload read; QUIC datagrams stay far below it.
const MAX_UDP_PAYLOAD: usize = 65_535;

/// What a busy responder did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusyReport {
    /// Connections accepted (handshake started).
    pub connections: u64,
    /// Challenges answered.
    pub answered: u64,
    /// Challenge datagrams refused by [`EchoSession::on_challenge`].
    pub rejected: u64,
}

/// Why the busy responder could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum BusyError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Quic(String),
    #[error("UDP socket: {0}")]
    Io(#[from] std::io::Error),
}

/// One accepted connection and its echo state.
struct Peer {
    conn: Connection,
    session: EchoSession,
}

/// Answers echo challenges on `socket` by spinning on it until `stop` is set, then closes every
/// connection and returns. The calling thread spins at 100% the whole time: give it its own core.
pub fn serve_busy(
    socket: UdpSocket,
    key: &SessionKey,
    stop: &AtomicBool,
) -> Result<BusyReport, BusyError> {
    socket.set_nonblocking(true)?;
    let mut driver = Driver {
        endpoint: Endpoint::new(
            Arc::new(EndpointConfig::default()),
            Some(Arc::new(server_config(key)?)),
            false,
            None,
        ),
        peers: HashMap::new(),
        io: Io {
            socket,
            send_buf: Vec::with_capacity(MAX_UDP_PAYLOAD),
        },
        report: BusyReport::default(),
    };
    let mut recv_buf = vec![0u8; MAX_UDP_PAYLOAD];
    while !stop.load(Ordering::Relaxed) {
        match driver.io.socket.recv_from(&mut recv_buf) {
            Ok((n, from)) => driver.on_datagram(Instant::now(), from, &recv_buf[..n])?,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                driver.on_timers()?;
                std::hint::spin_loop();
            }
            Err(e) if is_transient(&e) => debug!("receive: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    driver.close_all()?;
    Ok(driver.report)
}

/// The endpoint, its connections and the socket, driven from one thread.
struct Driver {
    endpoint: Endpoint,
    peers: HashMap<ConnectionHandle, Peer>,
    io: Io,
    report: BusyReport,
}

impl Driver {
    /// Feeds one UDP datagram, read at `received`, to the endpoint and the connection it is for.
    fn on_datagram(
        &mut self,
        received: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), BusyError> {
        self.io.send_buf.clear();
        let event = self.endpoint.handle(
            received,
            from,
            None,
            None,
            BytesMut::from(data),
            &mut self.io.send_buf,
        );
        match event {
            Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                if let Some(peer) = self.peers.get_mut(&ch) {
                    peer.conn.handle_event(event);
                    self.drive(ch, received)?;
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                self.io.send_buf.clear();
                match self
                    .endpoint
                    .accept(incoming, received, &mut self.io.send_buf, None)
                {
                    Ok((ch, conn)) => {
                        self.report.connections += 1;
                        info!(peer = %conn.remote_address(), "prober connected (busy)");
                        let session = EchoSession::new();
                        self.peers.insert(ch, Peer { conn, session });
                        self.drive(ch, received)?;
                    }
                    Err(e) => {
                        debug!(%from, "connection refused: {}", e.cause);
                        if let Some(t) = e.response {
                            self.io.send(t.size, t.destination)?;
                        }
                    }
                }
            }
            Some(DatagramEvent::Response(t)) => self.io.send(t.size, t.destination)?,
            None => {}
        }
        Ok(())
    }

    /// Fires expired connection timers (loss detection, ACK delay, idle timeout).
    fn on_timers(&mut self) -> Result<(), BusyError> {
        if self.peers.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        // Collecting nothing allocates nothing: the common, idle spin stays cheap.
        let due: Vec<ConnectionHandle> = self
            .peers
            .iter_mut()
            .filter_map(|(ch, p)| p.conn.poll_timeout().filter(|t| *t <= now).map(|_| *ch))
            .collect();
        for ch in due {
            if let Some(peer) = self.peers.get_mut(&ch) {
                peer.conn.handle_timeout(now);
            }
            self.drive(ch, now)?;
        }
        Ok(())
    }

    /// Closes every connection and sends the closes.
    fn close_all(&mut self) -> Result<(), BusyError> {
        let now = Instant::now();
        let handles: Vec<ConnectionHandle> = self.peers.keys().copied().collect();
        for ch in handles {
            if let Some(peer) = self.peers.get_mut(&ch) {
                peer.conn
                    .close(now, 0u32.into(), Bytes::from_static(b"responder stopping"));
            }
            self.drive(ch, now)?;
        }
        Ok(())
    }

    /// Runs one connection until it has nothing more to do: answers its challenges, flushes
    /// its packets, and exchanges endpoint events; forgets it once drained.
    fn drive(&mut self, ch: ConnectionHandle, received: Instant) -> Result<(), BusyError> {
        let Some(peer) = self.peers.get_mut(&ch) else {
            return Ok(());
        };
        let mut drained = false;
        loop {
            while let Some(event) = peer.conn.poll() {
                match event {
                    Event::DatagramReceived => answer(peer, received, &mut self.report),
                    Event::Connected => {
                        debug!(peer = %peer.conn.remote_address(), "handshake done");
                    }
                    Event::ConnectionLost { reason } => {
                        info!(peer = %peer.conn.remote_address(), "prober disconnected (busy): {reason}");
                    }
                    _ => {}
                }
            }
            self.io.send_buf.clear();
            while let Some(t) = peer
                .conn
                .poll_transmit(Instant::now(), 1, &mut self.io.send_buf)
            {
                self.io.send(t.size, t.destination)?;
                self.io.send_buf.clear();
            }
            let mut more = false;
            while let Some(event) = peer.conn.poll_endpoint_events() {
                drained |= event.is_drained();
                if let Some(back) = self.endpoint.handle_event(ch, event) {
                    peer.conn.handle_event(back);
                    more = true;
                }
            }
            if !more {
                break;
            }
        }
        if drained {
            self.peers.remove(&ch);
        }
        Ok(())
    }
}

/// The socket and the buffer outgoing datagrams are written into.
struct Io {
    socket: UdpSocket,
    send_buf: Vec<u8>,
}

impl Io {
    /// Sends the first `len` bytes of `send_buf`. A full send buffer drops the datagram, as a
    /// congested network would; QUIC recovers what matters.
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

/// Answers every challenge datagram the connection holds.
fn answer(peer: &mut Peer, received: Instant, report: &mut BusyReport) {
    while let Some(datagram) = peer.conn.datagrams().recv() {
        // Time since the UDP datagram was read, in the responder's monotonic clock.
        let inside = received.elapsed().as_nanos() as u64;
        match peer.session.on_challenge(0, inside, &datagram) {
            Ok(bytes) => {
                report.answered += 1;
                if let Err(e) = peer
                    .conn
                    .datagrams()
                    .send(Bytes::copy_from_slice(&bytes), false)
                {
                    debug!("answer not sent: {e}");
                }
            }
            Err(e) => {
                // As in the tokio server: count it, log every 1000th at warn, keep going.
                report.rejected += 1;
                if report.rejected % 1000 == 1 {
                    warn!(rejected = report.rejected, "challenge rejected: {e}");
                } else {
                    debug!(rejected = report.rejected, "challenge rejected: {e}");
                }
            }
        }
    }
}

/// TLS 1.3 with the session key, ALPN `locus/1`, no 0-RTT, datagrams only (no streams).
fn server_config(key: &SessionKey) -> Result<ServerConfig, BusyError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![key.cert_der()], key.private_key_der())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| BusyError::Quic(e.to_string()))?;
    let mut server = ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().map_err(
            |e: quinn_proto::VarIntBoundsExceeded| BusyError::Quic(e.to_string()),
        )?))
        .datagram_receive_buffer_size(Some(4 << 20))
        .datagram_send_buffer_size(4 << 20)
        .max_concurrent_bidi_streams(0u32.into())
        .max_concurrent_uni_streams(0u32.into());
    server.transport_config(Arc::new(transport));
    Ok(server)
}
