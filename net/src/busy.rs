//! The busy-polling half of a `quinn-proto` driver for precision timing: the calling thread
//! spins on a non-blocking UDP socket and feeds the endpoint directly, so no task or vCPU
//! wake-up (20-45 µs on our VMs) sits between the socket and the echo logic. The prober's
//! one-connection client and the responder's many-connection server are built on
//! [`BusyEndpoint`]; what each does with connection events stays with it. The same drivers can
//! spin for a while after each datagram and then sleep in the kernel
//! ([`BusyEndpoint::recv_parked`]): the tokio drivers' spin policy without their task hops.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use quinn_proto::{
    ClientConfig, ConnectError, Connection, ConnectionEvent, ConnectionHandle, DatagramEvent,
    Endpoint, EndpointConfig, Incoming, ServerConfig,
};
use tracing::debug;

/// Largest UDP payload read; QUIC datagrams stay far below it.
const MAX_UDP_PAYLOAD: usize = 65_535;

/// What one UDP datagram meant to the endpoint.
pub enum Received {
    /// It belongs to this connection: pass the event to its `handle_event`.
    Connection(ConnectionHandle, ConnectionEvent),
    /// A client wants to connect: [`BusyEndpoint::accept`] or [`BusyEndpoint::ignore`] it.
    Incoming(Incoming),
    /// Nothing for the caller (the endpoint answered it statelessly, or dropped it).
    Nothing,
}

/// What one [`BusyEndpoint::transmit`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transmitted {
    /// The endpoint answered the connection's events: run the connection (and this) again.
    pub more: bool,
    /// The connection is drained: its handle may be forgotten.
    pub drained: bool,
}

/// A `quinn-proto` endpoint on a non-blocking UDP socket, driven from one spinning thread.
pub struct BusyEndpoint {
    endpoint: Endpoint,
    socket: UdpSocket,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
    /// `Some`: the socket is in blocking mode with this read timeout ([`Self::recv_parked`]).
    parked: Option<Duration>,
}

impl BusyEndpoint {
    /// An endpoint on `socket` (made non-blocking); with `server`, it accepts connections.
    pub fn new(socket: UdpSocket, server: Option<ServerConfig>) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            endpoint: Endpoint::new(
                Arc::new(EndpointConfig::default()),
                server.map(Arc::new),
                false,
                None,
            ),
            socket,
            recv_buf: vec![0u8; MAX_UDP_PAYLOAD],
            send_buf: Vec::with_capacity(MAX_UDP_PAYLOAD),
            parked: None,
        })
    }

    /// Starts a connection to `addr`; [`Self::transmit`] sends its first flight.
    pub fn connect(
        &mut self,
        now: Instant,
        config: ClientConfig,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<(ConnectionHandle, Connection), ConnectError> {
        self.endpoint.connect(now, config, addr, server_name)
    }

    /// Reads one UDP datagram if one is waiting and feeds it to the endpoint, sending any
    /// stateless answer. `None`: nothing was read (nothing waiting, or an error the socket
    /// reported for one peer only); the caller may look at its timers and spin on.
    pub fn recv(&mut self) -> std::io::Result<Option<(Instant, Received)>> {
        if self.parked.take().is_some() {
            self.socket.set_nonblocking(true)?;
        }
        self.read()
    }

    /// Like [`Self::recv`], but when nothing is waiting the thread sleeps in the kernel until a
    /// datagram arrives or `until` has passed (then `None`): the parking half of a driver that
    /// spins for a while after each datagram and then lets its thread sleep. A parked socket
    /// blocks its sends too when the kernel's send buffer is full, where a spinning one drops.
    pub fn recv_parked(&mut self, until: Instant) -> std::io::Result<Option<(Instant, Received)>> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return self.recv();
        }
        // Mode and timeout are socket options (a syscall each): set them only when they must
        // change. Waking before `until` is harmless (the caller parks again), so a timeout that
        // is at most twice as long as needed stays.
        let timeout = match self.parked {
            Some(t) if t <= left && t * 2 >= left => t,
            _ => left,
        };
        if self.parked.is_none() {
            self.socket.set_nonblocking(false)?;
        }
        if self.parked != Some(timeout) {
            self.socket.set_read_timeout(Some(timeout))?;
        }
        self.parked = Some(timeout);
        self.read()
    }

    /// One `recv_from` in the socket's current mode; a timeout reads as nothing waiting.
    fn read(&mut self) -> std::io::Result<Option<(Instant, Received)>> {
        let (n, from) = match self.socket.recv_from(&mut self.recv_buf) {
            Ok(read) => read,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(None)
            }
            Err(e) if is_transient(&e) => {
                debug!("receive: {e}");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let received = Instant::now();
        self.send_buf.clear();
        let event = self.endpoint.handle(
            received,
            from,
            None,
            None,
            BytesMut::from(&self.recv_buf[..n]),
            &mut self.send_buf,
        );
        let received_as = match event {
            Some(DatagramEvent::ConnectionEvent(ch, event)) => Received::Connection(ch, event),
            Some(DatagramEvent::NewConnection(incoming)) => Received::Incoming(incoming),
            Some(DatagramEvent::Response(t)) => {
                self.send(t.size, t.destination)?;
                Received::Nothing
            }
            None => Received::Nothing,
        };
        Ok(Some((received, received_as)))
    }

    /// Accepts a connection attempt read at `now`; a refused one is answered and logged.
    pub fn accept(
        &mut self,
        incoming: Incoming,
        now: Instant,
    ) -> std::io::Result<Option<(ConnectionHandle, Connection)>> {
        let from = incoming.remote_address();
        self.send_buf.clear();
        match self
            .endpoint
            .accept(incoming, now, &mut self.send_buf, None)
        {
            Ok(accepted) => Ok(Some(accepted)),
            Err(e) => {
                debug!(%from, "connection refused: {}", e.cause);
                if let Some(t) = e.response {
                    self.send(t.size, t.destination)?;
                }
                Ok(None)
            }
        }
    }

    /// Drops a connection attempt without an answer (a client accepts none).
    pub fn ignore(&mut self, incoming: Incoming) {
        self.endpoint.ignore(incoming);
    }

    /// Sends every packet `conn` has ready and exchanges its endpoint events once.
    pub fn transmit(
        &mut self,
        ch: ConnectionHandle,
        conn: &mut Connection,
    ) -> std::io::Result<Transmitted> {
        self.send_buf.clear();
        while let Some(t) = conn.poll_transmit(Instant::now(), 1, &mut self.send_buf) {
            self.send(t.size, t.destination)?;
            self.send_buf.clear();
        }
        let mut done = Transmitted::default();
        while let Some(event) = conn.poll_endpoint_events() {
            done.drained |= event.is_drained();
            if let Some(back) = self.endpoint.handle_event(ch, event) {
                conn.handle_event(back);
                done.more = true;
            }
        }
        Ok(done)
    }

    /// Runs [`Self::transmit`] until the endpoint has nothing more to say to `conn`.
    pub fn flush(&mut self, ch: ConnectionHandle, conn: &mut Connection) -> std::io::Result<()> {
        while self.transmit(ch, conn)?.more {}
        Ok(())
    }

    /// Sends the first `len` bytes of the send buffer; a full socket buffer drops the
    /// datagram, as a congested network would (QUIC recovers what matters, a lost challenge
    /// is counted as lost).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A parked read returns what is waiting, returns nothing once `until` has passed, and
    /// leaves the socket non-blocking for the next spinning read.
    #[test]
    fn parked_reads_wake_for_datagrams_and_deadlines() {
        let mut ep = BusyEndpoint::new(UdpSocket::bind("127.0.0.1:0").unwrap(), None).unwrap();
        let addr = ep.socket.local_addr().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"not quic", addr).unwrap();
        let far = Instant::now() + Duration::from_secs(10);
        assert!(
            ep.recv_parked(far).unwrap().is_some(),
            "the waiting datagram"
        );
        let soon = Instant::now() + Duration::from_millis(2);
        assert!(
            ep.recv_parked(soon).unwrap().is_none(),
            "nothing before `until`"
        );
        assert!(ep.parked.is_some());
        // Non-blocking again: nothing waiting reads as nothing, at once.
        assert!(ep.recv().unwrap().is_none());
        assert!(ep.parked.is_none());
    }
}
