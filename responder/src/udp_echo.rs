//! The UDP echo driver (`[echo] udp_listen`): one socket answering the challenges of sessions
//! granted over QUIC ([`locus_proto::udp_echo`]), on the runtime that answers QUIC echoes and
//! so ahead of evidence work, which runs on its own worker. Decisions (lookup, peer, MAC,
//! replay, rates, eviction) are the session table's; this owns the socket and the clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use locus_proto::messages::UdpEchoResponse;
use locus_proto::udp_echo::table::{
    Grantee, RegisterError, SessionTable, TableCounts, TableLimits,
};
use locus_proto::udp_echo::{exporter_context, EchoKeys, EXPORTER_LABEL, EXPORTER_LEN};
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use crate::admission::Limits;

/// `[echo]` settings of the UDP echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpEchoConfig {
    pub listen: SocketAddr,
    /// How long a granted session lives.
    pub lifetime: Duration,
}

/// Why a session could not be granted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GrantError {
    /// The connection has no TLS exporter (never on an established TLS 1.3 connection).
    #[error("the connection has no TLS exporter to key the session from")]
    NoExporter,
    #[error(transparent)]
    Register(#[from] RegisterError),
}

/// A running UDP echo.
#[derive(Debug)]
pub(crate) struct UdpEcho {
    table: Arc<Mutex<SessionTable>>,
    epoch: Instant,
    lifetime: Duration,
    addr: SocketAddr,
    task: tokio::task::AbortHandle,
}

/// Largest datagram read whole: any longer than a challenge is refused as oversized, so the
/// buffer only has to be longer than one.
const RECV_BUF: usize = 2048;

impl UdpEcho {
    /// Binds `config.listen` and answers on the current tokio runtime; after each answer the
    /// loop polls the socket for `spin` before it sleeps (see `ServerConfig::spin_after_answer`).
    pub(crate) fn start(
        config: &UdpEchoConfig,
        limits: &Limits,
        spin: Duration,
    ) -> std::io::Result<Self> {
        let socket = crate::server::udp_socket(config.listen)?;
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket)?;
        let addr = socket.local_addr()?;
        let table = Arc::new(Mutex::new(SessionTable::new(TableLimits {
            max_sessions: limits.udp_echo_sessions,
            max_sessions_per_ip: limits.udp_echo_sessions_per_ip,
            lifetime_ns: nanos(config.lifetime),
            per_session_per_sec: limits.udp_echo_per_session_per_sec,
            per_ip_per_sec: limits.echo_per_ip_per_sec,
            unproven_per_sec: limits.echo_per_sec,
        })));
        let epoch = Instant::now();
        let task = tokio::spawn(serve(socket, table.clone(), epoch, spin)).abort_handle();
        Ok(Self {
            table,
            epoch,
            lifetime: config.lifetime,
            addr,
            task,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn counts(&self) -> TableCounts {
        lock(&self.table).counts()
    }

    /// Grants a session to the peer of `conn`, keyed from its TLS exporter, for `grantee`.
    pub(crate) fn grant(
        &self,
        conn: &quinn::Connection,
        grantee: Grantee,
    ) -> Result<UdpEchoResponse, GrantError> {
        let ip = conn.remote_address().ip().to_canonical();
        let mut tries = 0;
        loop {
            // 64 random bits: a collision (refused, then drawn again) is all but impossible.
            let session: u64 = rand::random();
            let mut secret = [0u8; EXPORTER_LEN];
            conn.export_keying_material(&mut secret, EXPORTER_LABEL, &exporter_context(session))
                .map_err(|_| GrantError::NoExporter)?;
            let now = nanos(self.epoch.elapsed());
            let keys = EchoKeys::from_exporter(&secret);
            let result = lock(&self.table).register_for(now, session, ip, keys, grantee);
            match result {
                Ok(_) => {
                    return Ok(UdpEchoResponse {
                        session,
                        port: self.addr.port(),
                        lifetime_s: u32::try_from(self.lifetime.as_secs()).unwrap_or(u32::MAX),
                    })
                }
                Err(e @ RegisterError::Full) => return Err(e.into()),
                Err(e) if tries >= 3 => return Err(e.into()),
                Err(_) => tries += 1,
            }
        }
    }

    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn lock(t: &Mutex<SessionTable>) -> MutexGuard<'_, SessionTable> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

async fn serve(socket: UdpSocket, table: Arc<Mutex<SessionTable>>, epoch: Instant, spin: Duration) {
    let mut buf = [0u8; RECV_BUF];
    let mut rejected = 0u64;
    let mut spin_until: Option<Instant> = None;
    loop {
        let (n, from) = match recv(&socket, &mut buf, spin_until).await {
            Ok(r) => r,
            Err(e) => {
                // E.g. an ICMP error reported on the socket: nothing to do but read on.
                debug!("UDP echo receive failed: {e}");
                continue;
            }
        };
        let received = Instant::now();
        let datagram = buf.get(..n).unwrap_or_default();
        let result = {
            let mut t = lock(&table);
            // Time since receipt in the responder's monotonic clock, read last.
            let now = Instant::now();
            t.on_datagram(
                nanos(received - epoch),
                nanos(now - epoch),
                from.ip().to_canonical(),
                datagram,
            )
        };
        match result {
            Ok(answer) => {
                if let Err(e) = socket.send_to(&answer, from).await {
                    debug!(peer = %from, "UDP echo answer not sent: {e}");
                }
                if !spin.is_zero() {
                    spin_until = Some(Instant::now() + spin);
                }
            }
            Err(e) => {
                // Counted by the table; only every 1000th is logged at warn, so a flood cannot
                // flood the log too.
                rejected += 1;
                if rejected % 1000 == 1 {
                    warn!(peer = %from, rejected, "UDP echo datagram dropped: {e}");
                } else {
                    debug!(peer = %from, rejected, "UDP echo datagram dropped: {e}");
                }
            }
        }
    }
}

/// The next datagram; until `spin_until` polls without sleeping (waking an idle vCPU costs
/// tens of µs, more than the answer).
async fn recv(
    socket: &UdpSocket,
    buf: &mut [u8],
    spin_until: Option<Instant>,
) -> std::io::Result<(usize, SocketAddr)> {
    if let Some(until) = spin_until {
        loop {
            match socket.try_recv_from(buf) {
                Ok(r) => return Ok(r),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= until {
                        break;
                    }
                    std::hint::spin_loop();
                }
                Err(e) => return Err(e),
            }
        }
    }
    socket.recv_from(buf).await
}
