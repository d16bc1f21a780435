//! Connecting to a responder: QUIC with TLS 1.3, ALPN `locus/1`, SPKI-pinned.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locus_net::ConfigError;
use locus_proto::prober::ChallengeTracker;

use crate::pin::{pin_verifier, SpkiPolicy};

/// A connected responder.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub conn: quinn::Connection,
    /// The responder's session key (SPKI DER) as seen in the handshake.
    pub spki: Vec<u8>,
    /// Whether `spki` was pinned beforehand or learned on first use.
    pub pinned: bool,
    /// Challenge bookkeeping of this connection: sequence numbers never repeat across rounds.
    pub(crate) probe: Arc<Mutex<ProbeState>>,
    /// Signs this connection's evidence requests (a responder with `[access] evidence =
    /// "pinned"` answers only signed ones); see [`Target::with_signer`].
    pub(crate) signer: Option<Arc<dyn crate::requests::RequestSigner>>,
    // Keeps the endpoint alive as long as the connection.
    _endpoint: quinn::Endpoint,
}

/// Per-connection prober state shared by the rounds on it.
pub(crate) struct ProbeState {
    pub(crate) tracker: ChallengeTracker,
    /// Time base of the tracker's nanosecond timestamps.
    pub(crate) epoch: Instant,
    /// A round is running: rounds on one connection take turns.
    pub(crate) sending_done: bool,
}

impl Target {
    /// Signs every evidence request on this connection with `signer`.
    pub fn with_signer(mut self, signer: Arc<dyn crate::requests::RequestSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The instant that sample timestamps (`sent_ns`) of this connection count from.
    pub fn epoch(&self) -> Instant {
        self.probe.lock().unwrap_or_else(|p| p.into_inner()).epoch
    }
}

/// Why a responder could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot open a local UDP socket: {0}")]
    Bind(std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No tokio runtime is running: connect from inside one.
    #[error("no async runtime")]
    NoRuntime,
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: quinn::ConnectError,
    },
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: quinn::ConnectionError,
    },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
}

/// Connects to the responder at `addr`, from a fresh endpoint bound to `bind`.
pub async fn connect(
    addr: SocketAddr,
    bind: SocketAddr,
    policy: SpkiPolicy,
    timeout: Duration,
) -> Result<Target, ConnectError> {
    let endpoint = client_endpoint(bind)?;
    connect_on(&endpoint, addr, policy, timeout).await
}

/// Socket buffers asked for (the kernel caps them at `net.core.rmem_max`/`wmem_max`): with
/// thousands of targets on one socket, handshake flights of full-size packets arrive in bursts
/// that overflow the default ~208 KiB, and every drop costs a retransmission timeout.
const SOCKET_BUFFER: usize = 4 << 20;

/// A client endpoint (one UDP socket) that many connections can share: see [`connect_on`].
pub fn client_endpoint(bind: SocketAddr) -> Result<quinn::Endpoint, ConnectError> {
    let socket = udp_socket(bind).map_err(ConnectError::Bind)?;
    let runtime = quinn::default_runtime().ok_or(ConnectError::NoRuntime)?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
        .map_err(ConnectError::Bind)
}

fn udp_socket(bind: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if bind.is_ipv6() {
        s.set_only_v6(false)?;
    }
    // Best effort: a smaller buffer still works, with drops under bursts.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&bind.into())?;
    Ok(s.into())
}

/// Connects to the responder at `addr` over an existing endpoint. A daemon probing thousands
/// of targets shares one endpoint: each endpoint has its own socket, driver task and receive
/// buffer (quinn sizes it for 32 batches of GRO'd 64 KiB datagrams).
pub async fn connect_on(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    policy: SpkiPolicy,
    timeout: Duration,
) -> Result<Target, ConnectError> {
    let pinned = policy.is_pinned();
    let (verifier, seen) = pin_verifier(policy);
    let client = locus_net::client_config(verifier)?;
    let connecting = endpoint
        .connect_with(client, addr, "locus-responder")
        .map_err(|source| ConnectError::Connect { addr, source })?;
    let conn = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(source)) => return Err(ConnectError::Handshake { addr, source }),
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
    };
    let spki = seen.spki();
    Ok(Target {
        addr,
        conn,
        spki,
        pinned,
        probe: Arc::new(Mutex::new(ProbeState {
            tracker: ChallengeTracker::new(1_000_000_000),
            epoch: Instant::now(),
            sending_done: true,
        })),
        signer: None,
        _endpoint: endpoint.clone(),
    })
}
