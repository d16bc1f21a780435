//! Connecting to a responder: QUIC with TLS 1.3, ALPN `locus/1`, SPKI-pinned.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locus_proto::prober::ChallengeTracker;
use locus_proto::ALPN;

use crate::pin::{PinVerifier, SpkiPolicy};

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
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Quic(String),
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
    let seen = Arc::new(Mutex::new(None));
    let pinned = matches!(policy, SpkiPolicy::Pinned(_));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier::new(policy, seen.clone())))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| ConnectError::Quic(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .datagram_receive_buffer_size(Some(4 << 20))
        .datagram_send_buffer_size(4 << 20)
        .keep_alive_interval(Some(Duration::from_secs(5)));
    client.transport_config(Arc::new(transport));

    let mut endpoint = quinn::Endpoint::client(bind).map_err(ConnectError::Bind)?;
    endpoint.set_default_client_config(client);
    let connecting = endpoint
        .connect(addr, "locus-responder")
        .map_err(|source| ConnectError::Connect { addr, source })?;
    let conn = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(source)) => return Err(ConnectError::Handshake { addr, source }),
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
    };
    let spki = seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default();
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
        _endpoint: endpoint,
    })
}
