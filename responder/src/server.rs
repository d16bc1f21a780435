//! The QUIC driver: accepts prober connections, answers echo datagrams at once, and serves
//! evidence and transcript requests on bidirectional streams (one request per stream).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locus_net::{read_datagram_spinning, ConfigError};
use locus_proto::frame::{self, Frame, FrameError, MessageKind, HEADER_LEN};
use locus_proto::messages::{
    codes, ErrorMessage, EvidenceRequest, EvidenceResponse, KeysRequest, TranscriptRequest,
    TranscriptResponse,
};
use locus_proto::responder::EchoSession;
use locus_proto::{DecodeError, Nonce};
use tracing::{debug, info, warn};

use crate::evidence::EvidenceSource;
use crate::session_key::SessionKey;

/// Evidence and transcript requests a prober may have open at once on one connection.
const MAX_REQUEST_STREAMS: u32 = 64;
/// How long one evidence or transcript request may take before the stream is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Responder settings.
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request frame body accepted.
    pub max_request_len: u32,
    pub idle_timeout: Duration,
    /// How long the echo loop keeps polling after a datagram before it lets its thread sleep.
    /// Waking an idle vCPU costs tens of µs, more than the answer itself; a prober's next
    /// challenge often arrives within this window. Zero never spins.
    pub spin_after_answer: Duration,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_request_len: 64 << 10,
            idle_timeout: Duration::from_secs(30),
            spin_after_answer: Duration::from_micros(200),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The QUIC or TLS configuration was refused (see [`ConfigError`]'s variants).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// [`Server::start`] was called outside a tokio runtime: call it from inside one.
    #[error("no async runtime: start the server inside a tokio runtime")]
    NoRuntime,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running responder.
pub struct Server {
    endpoint: quinn::Endpoint,
    key: Arc<SessionKey>,
}

struct Shared {
    key: Arc<SessionKey>,
    spin_after_answer: Duration,
    evidence: EvidenceSource,
    max_request_len: u32,
}

impl Server {
    /// Binds the endpoint and starts accepting connections on the current tokio runtime.
    pub fn start(
        config: ServerConfig,
        key: Arc<SessionKey>,
        evidence: EvidenceSource,
    ) -> Result<Self, ServerError> {
        let bind_err = |source| ServerError::Bind {
            addr: config.listen,
            source,
        };
        let runtime = quinn::default_runtime().ok_or(ServerError::NoRuntime)?;
        let quic = locus_net::server_config(
            key.cert_der(),
            key.private_key_der(),
            config.idle_timeout,
            MAX_REQUEST_STREAMS,
        )?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(quic),
            udp_socket(config.listen).map_err(bind_err)?,
            runtime,
        )
        .map_err(bind_err)?;
        let shared = Arc::new(Shared {
            key: key.clone(),
            spin_after_answer: config.spin_after_answer,
            evidence,
            max_request_len: config.max_request_len,
        });
        let ep = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    match incoming.await {
                        Ok(conn) => serve_connection(conn, shared).await,
                        Err(e) => debug!("handshake failed: {e}"),
                    }
                });
            }
        });
        Ok(Self { endpoint, key })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn session_key(&self) -> &Arc<SessionKey> {
        &self.key
    }

    /// Closes every connection and waits until they are gone.
    pub async fn shutdown(&self) {
        self.endpoint.close(0u32.into(), b"shutting down");
        self.endpoint.wait_idle().await;
    }
}

/// Socket buffers asked for (capped by `net.core.rmem_max`/`wmem_max`): many probers' handshake
/// flights arrive in bursts that overflow the default ~208 KiB.
const SOCKET_BUFFER: usize = 4 << 20;

fn udp_socket(listen: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Best effort: a smaller buffer still works, with drops under bursts.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&listen.into())?;
    Ok(s.into())
}

async fn serve_connection(conn: quinn::Connection, shared: Arc<Shared>) {
    let peer = conn.remote_address();
    info!(%peer, "prober connected");
    let session = Arc::new(Mutex::new(EchoSession::new()));
    let streams = {
        let conn = conn.clone();
        let session = session.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok((send, recv)) = conn.accept_bi().await {
                let session = session.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        serve_stream(send, recv, &session, &shared),
                    )
                    .await;
                });
            }
        })
    };
    let mut rejected = 0u64;
    loop {
        let datagram = match read_datagram_spinning(&conn, shared.spin_after_answer).await {
            Ok(d) => d,
            Err(e) => {
                debug!(%peer, "connection ended: {e}");
                break;
            }
        };
        let received = Instant::now();
        let answer = {
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            // Time since receipt, in the responder's monotonic clock (receipt = 0).
            let inside = received.elapsed().as_nanos() as u64;
            s.on_challenge(0, inside, &datagram)
        };
        match answer {
            Ok(bytes) => {
                if let Err(e) = conn.send_datagram(bytes.to_vec().into()) {
                    debug!(%peer, "answer not sent: {e}");
                }
            }
            Err(e) => {
                // A bad challenge is the prober's problem: count it, tell the log, keep going.
                // Only every 1000th is logged at warn, so a flood cannot flood the log too.
                rejected += 1;
                if rejected % 1000 == 1 {
                    warn!(%peer, rejected, "challenge rejected: {e}");
                } else {
                    debug!(%peer, rejected, "challenge rejected: {e}");
                }
            }
        }
    }
    streams.abort();
    info!(%peer, rejected, "prober disconnected");
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    session: &Mutex<EchoSession>,
    shared: &Shared,
) {
    let reply = match read_request(&mut recv, shared.max_request_len).await {
        Ok((kind, body)) => handle_request(kind, &body, session, shared).await,
        Err(e) => {
            warn!("request refused: {e}");
            error_frame(&e)
        }
    };
    if send.write_all(&reply).await.is_ok() {
        let _ = send.finish();
        // Wait until the prober has the reply before the stream is dropped.
        let _ = send.stopped().await;
    }
}

/// Errors while reading a request from a stream.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("stream ended early: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("trailing bytes after the request frame")]
    Trailing,
    #[error("invalid nonce: expected {expected} bytes, got {found}")]
    BadNonce { expected: usize, found: usize },
    /// A sealed nonce must not also travel in clear (nor come without a vTPM part to activate
    /// it): the verifier would lose what sealing proves.
    #[error("a sealed nonce needs an empty clear nonce and a vTPM part")]
    SealedAndClear,
}

async fn read_request(
    recv: &mut quinn::RecvStream,
    max: u32,
) -> Result<(MessageKind, Vec<u8>), RequestError> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await?;
    let frame = Frame::decode_header(&header, max)?;
    let mut body = vec![0u8; frame.body_len as usize];
    recv.read_exact(&mut body).await?;
    // One request per stream: anything after it is a protocol error.
    let mut extra = [0u8; 1];
    match recv.read(&mut extra).await {
        Ok(None) => Ok((frame.kind, body)),
        Ok(Some(_)) => Err(RequestError::Trailing),
        Err(e) => Err(RequestError::Read(quinn::ReadExactError::ReadError(e))),
    }
}

async fn handle_request(
    kind: MessageKind,
    body: &[u8],
    session: &Mutex<EchoSession>,
    shared: &Shared,
) -> Vec<u8> {
    match kind {
        MessageKind::EvidenceRequest => {
            let req: EvidenceRequest = match frame::decode_body(kind, body) {
                Ok(r) => r,
                Err(e) => return error_frame(&RequestError::Frame(e)),
            };
            let started = Instant::now();
            let nonce: Nonce = match &req.sealed {
                Some(_) if !req.nonce.is_empty() || !req.include.tpm => {
                    return error_frame(&RequestError::SealedAndClear)
                }
                Some(sealed) => match shared.evidence.unseal(sealed).await {
                    Ok(n) => n,
                    Err(e) => return unavailable(&e),
                },
                None => match req.nonce.as_slice().try_into() {
                    Ok(n) => n,
                    Err(_) => {
                        return error_frame(&RequestError::BadNonce {
                            expected: locus_proto::NONCE_LEN,
                            found: req.nonce.len(),
                        })
                    }
                },
            };
            let transcript = signed_transcript(session, shared);
            match shared
                .evidence
                .collect(&nonce, shared.key.spki_der(), transcript, &req.include)
                .await
            {
                Ok(mut bundle) => {
                    bundle.nonce_issuer = req.issuer;
                    if let Some(t) = bundle.tpm.as_mut() {
                        t.sealed_nonce = req.sealed;
                    }
                    bundle.timings.evidence_ns = Some(started.elapsed().as_nanos() as u64);
                    frame::encode(MessageKind::EvidenceResponse, &EvidenceResponse { bundle })
                }
                Err(e) => unavailable(&e),
            }
        }
        MessageKind::KeysRequest => {
            if let Err(e) = frame::decode_body::<KeysRequest>(kind, body) {
                return error_frame(&RequestError::Frame(e));
            }
            match shared.evidence.keys().await {
                Ok(keys) => frame::encode(MessageKind::KeysResponse, &keys),
                Err(e) => unavailable(&e),
            }
        }
        MessageKind::TranscriptRequest => {
            if let Err(e) = frame::decode_body::<TranscriptRequest>(kind, body) {
                return error_frame(&RequestError::Frame(e));
            }
            let transcript = signed_transcript(session, shared);
            frame::encode(
                MessageKind::TranscriptResponse,
                &TranscriptResponse {
                    transcript,
                    session_spki: shared.key.spki_der().to_vec(),
                },
            )
        }
        other => frame::encode(
            MessageKind::Error,
            &ErrorMessage {
                code: codes::UNKNOWN_MESSAGE,
                message: format!("{other:?} is not a request"),
            },
        ),
    }
}

fn signed_transcript(
    session: &Mutex<EchoSession>,
    shared: &Shared,
) -> locus_proto::transcript::SignedTranscript {
    let transcript = session
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .transcript()
        .clone();
    transcript.sign(shared.key.signing_key())
}

fn unavailable(e: &crate::evidence::EvidenceError) -> Vec<u8> {
    frame::encode(
        MessageKind::Error,
        &ErrorMessage {
            code: codes::UNAVAILABLE,
            message: e.to_string(),
        },
    )
}

fn error_frame(e: &RequestError) -> Vec<u8> {
    let code = match e {
        RequestError::Frame(FrameError::Decode(DecodeError::WrongVersion { .. })) => {
            codes::WRONG_VERSION
        }
        RequestError::Frame(FrameError::TooLarge { .. }) => codes::TOO_LARGE,
        RequestError::Frame(FrameError::UnknownKind { .. }) => codes::UNKNOWN_MESSAGE,
        RequestError::BadNonce { .. } => codes::BAD_NONCE,
        _ => codes::MALFORMED,
    };
    frame::encode(
        MessageKind::Error,
        &ErrorMessage {
            code,
            message: e.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(config: ServerConfig) -> Result<Server, ServerError> {
        Server::start(
            config,
            SessionKey::generate().unwrap(),
            EvidenceSource::default(),
        )
    }

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn outside_a_runtime_there_is_no_runtime() {
        assert!(matches!(
            start(ServerConfig::new(loopback())),
            Err(ServerError::NoRuntime)
        ));
    }

    #[tokio::test]
    async fn an_idle_timeout_quic_cannot_carry_is_named() {
        let mut config = ServerConfig::new(loopback());
        let too_long = Duration::from_secs(1 << 62);
        config.idle_timeout = too_long;
        match start(config) {
            Err(ServerError::Config(ConfigError::IdleTimeout { timeout, .. })) => {
                assert_eq!(timeout, too_long)
            }
            other => panic!("expected IdleTimeout, got {:?}", other.err()),
        }
    }

    #[tokio::test]
    async fn a_taken_address_is_a_bind_error_naming_it() {
        let first = start(ServerConfig::new(loopback())).unwrap();
        let taken = first.local_addr().unwrap();
        match start(ServerConfig::new(taken)) {
            Err(ServerError::Bind { addr, .. }) => assert_eq!(addr, taken),
            other => panic!("expected Bind, got {:?}", other.err()),
        }
        first.shutdown().await;
    }
}
