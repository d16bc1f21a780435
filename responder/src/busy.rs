//! Busy-polling responder driver for precision timing: one thread spins on a non-blocking UDP
//! socket and drives `quinn-proto` directly, so no task or vCPU wake-up (20-45 µs on our VMs)
//! sits between the socket and the sans-I/O echo core. It answers echo datagrams only;
//! evidence and transcript requests stay with the tokio [`crate::server::Server`].
//! [`serve_parked`] spins only for a while after each datagram and then sleeps in the kernel.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use locus_net::busy::{BusyEndpoint, Received};
use locus_net::ConfigError;
use locus_proto::responder::EchoSession;
use quinn_proto::{Connection, ConnectionHandle, Event};
use tracing::{debug, info, warn};

use crate::session_key::SessionKey;

/// Idle connections are closed after this long, as in the tokio server.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A parked responder wakes at least this often to see whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(10);

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
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    serve(socket, key, stop, None)
}

/// Like [`serve_busy`], but spins only for `spin` after each datagram and then sleeps in the
/// kernel until the next one (or a connection timer): the tokio server's
/// `spin_after_answer` policy, with the datagram handled on the thread that read it instead of
/// passing through quinn's endpoint and connection tasks. Zero never spins.
pub fn serve_parked(
    socket: UdpSocket,
    key: &SessionKey,
    stop: &AtomicBool,
    spin: Duration,
) -> Result<BusyReport, BusyError> {
    serve(socket, key, stop, Some(spin))
}

fn serve(
    socket: UdpSocket,
    key: &SessionKey,
    stop: &AtomicBool,
    spin: Option<Duration>,
) -> Result<BusyReport, BusyError> {
    // Echoes only: evidence and transcript requests (streams) go to the tokio server.
    let config =
        locus_net::server_config(key.cert_der(), key.private_key_der(), IDLE_TIMEOUT, 0, 0)?;
    let mut driver = Driver {
        endpoint: BusyEndpoint::new(socket, Some(config))?,
        peers: HashMap::new(),
        report: BusyReport::default(),
    };
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let parked = spin.is_some_and(|s| last.elapsed() >= s);
        let read = if parked {
            let stop_check = Instant::now() + STOP_CHECK;
            let wake = driver
                .next_timer()
                .map_or(stop_check, |t| t.min(stop_check));
            driver.endpoint.recv_parked(wake)?
        } else {
            driver.endpoint.recv()?
        };
        match read {
            Some((received, event)) => {
                last = received;
                driver.on_datagram(received, event)?;
            }
            None => {
                driver.on_timers()?;
                if !parked {
                    std::hint::spin_loop();
                }
            }
        }
    }
    driver.close_all()?;
    Ok(driver.report)
}

/// The endpoint and its connections, driven from one thread.
struct Driver {
    endpoint: BusyEndpoint,
    peers: HashMap<ConnectionHandle, Peer>,
    report: BusyReport,
}

impl Driver {
    /// Hands what one UDP datagram, read at `received`, meant to the connection it is for.
    fn on_datagram(&mut self, received: Instant, event: Received) -> Result<(), BusyError> {
        match event {
            Received::Connection(ch, event) => {
                if let Some(peer) = self.peers.get_mut(&ch) {
                    peer.conn.handle_event(event);
                    self.drive(ch, received)?;
                }
            }
            Received::Incoming(incoming) => {
                if let Some((ch, conn)) = self.endpoint.accept(incoming, received)? {
                    self.report.connections += 1;
                    info!(peer = %conn.remote_address(), "prober connected (busy)");
                    let session = EchoSession::new();
                    self.peers.insert(ch, Peer { conn, session });
                    self.drive(ch, received)?;
                }
            }
            Received::Nothing => {}
        }
        Ok(())
    }

    /// The earliest connection timer.
    fn next_timer(&mut self) -> Option<Instant> {
        self.peers
            .values_mut()
            .filter_map(|p| p.conn.poll_timeout())
            .min()
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
            let sent = self.endpoint.transmit(ch, &mut peer.conn)?;
            drained |= sent.drained;
            if !sent.more {
                break;
            }
        }
        if drained {
            self.peers.remove(&ch);
        }
        Ok(())
    }
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
