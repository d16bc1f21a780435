//! The QUIC driver: accepts prober connections, answers echo datagrams at once, and serves
//! evidence and transcript requests on bidirectional streams (one request per stream).
//!
//! Under attack it keeps answering: connections and requests pass [`crate::admission`];
//! evidence work runs on its own worker ([`crate::evidence_queue`]), bounded, one request in
//! flight per connection, and a request it cannot take is answered `busy` at once; under
//! `[access] evidence = "pinned"` only signed requests of known probers are served
//! ([`crate::access`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locus_net::{read_datagram_spinning, ConfigError};
use locus_proto::frame::{self, Frame, FrameError, MessageKind, HEADER_LEN};
use locus_proto::messages::{
    codes, ErrorMessage, EvidenceRequest, EvidenceResponse, HelloRequest, HelloResponse,
    KeysRequest, RequestAuth, TranscriptRequest, TranscriptResponse, UdpEchoRequest,
};
use locus_proto::request_auth::{EXPORTER_LABEL, EXPORTER_LEN};
use locus_proto::responder::EchoSession;
use locus_proto::udp_echo::table::{Grantee, RegisterError, TableCounts};
use locus_proto::{DecodeError, Nonce};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::access::{AccessError, EvidenceAccess};
use crate::admission::{
    Admission, ConnectionSlot, Eviction, Limits, RateVerdict, Shed, ShedCounts, SlotHandle,
};
use crate::evidence::EvidenceSource;
use crate::evidence_queue::{EvidenceQueue, Refused};
use crate::session_key::SessionKey;
use crate::udp_echo::{GrantError, UdpEcho, UdpEchoConfig};

/// Requests a prober may have open at once on one connection: the protocol needs at most a
/// keys request, an evidence request and a transcript request; each open stream is state
/// (and buffer) an attacker could make us hold.
const MAX_REQUEST_STREAMS: u32 = 4;
/// How long one evidence or transcript request may take before the stream is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Close reason (with code `busy`) of an evicted connection.
fn eviction_reason(why: Eviction) -> &'static [u8] {
    match why {
        Eviction::AtCap => {
            b"evicted: connection cap reached and this connection proved no pinned key"
        }
        Eviction::SameKey => b"evicted: this prober key holds too many connections",
    }
}

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
    /// Connection, request and echo admission.
    pub limits: Limits,
    /// Who may ask for evidence.
    pub access: EvidenceAccess,
    /// `[echo] udp_listen`: also answer UDP echoes keyed from QUIC connections; None: off.
    pub udp_echo: Option<UdpEchoConfig>,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            // Requests are small (a sealed nonce is ~400 bytes): no need to buffer more.
            max_request_len: 16 << 10,
            idle_timeout: Duration::from_secs(30),
            spin_after_answer: Duration::from_micros(200),
            limits: Limits::default(),
            access: EvidenceAccess::Any,
            udp_echo: None,
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
    /// The evidence worker thread could not be started.
    #[error("cannot start the evidence worker: {0}")]
    Worker(std::io::Error),
}

/// A running responder.
pub struct Server {
    endpoint: quinn::Endpoint,
    key: Arc<SessionKey>,
    admission: Arc<Admission>,
    udp_echo: Option<Arc<UdpEcho>>,
}

struct Shared {
    key: Arc<SessionKey>,
    spin_after_answer: Duration,
    evidence: EvidenceSource,
    max_request_len: u32,
    admission: Arc<Admission>,
    access: EvidenceAccess,
    queue: EvidenceQueue,
    udp_echo: Option<Arc<UdpEcho>>,
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
            frame::HEADER_LEN as u32 + config.max_request_len,
        )?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(quic),
            udp_socket(config.listen).map_err(bind_err)?,
            runtime,
        )
        .map_err(bind_err)?;
        // Under `pinned`, connections that proved no key make room at the cap (REVIEW2 F7).
        let evict = matches!(config.access, EvidenceAccess::Pinned(_));
        let admission = Arc::new(Admission::new(config.limits.clone(), evict));
        // Under `pinned` only proven probers' work is queued: it goes ahead of the rest.
        let queue = EvidenceQueue::start(
            config.limits.evidence_concurrency,
            config.limits.evidence_queue,
            evict,
        )
        .map_err(ServerError::Worker)?;
        let udp_echo = match &config.udp_echo {
            Some(u) => Some(Arc::new(
                UdpEcho::start(u, &config.limits, config.spin_after_answer).map_err(|source| {
                    ServerError::Bind {
                        addr: u.listen,
                        source,
                    }
                })?,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            key: key.clone(),
            spin_after_answer: config.spin_after_answer,
            evidence,
            max_request_len: config.max_request_len,
            admission: admission.clone(),
            access: config.access,
            queue,
            udp_echo: udp_echo.clone(),
        });
        let ep = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let from = incoming.remote_address();
                let Some(incoming) = retry_unvalidated(incoming, &shared.admission) else {
                    continue;
                };
                // The slot is taken before the handshake: half-open connections count too.
                let slot = match shared.admission.connect(from.ip(), Instant::now()) {
                    Ok(slot) => slot,
                    Err(kind) => {
                        shared.admission.log.shed(kind, from);
                        // Ignoring sends nothing: an attacker's attempt costs us no more than
                        // reading its first packet.
                        if kind.answer_refusal() {
                            incoming.refuse();
                        } else {
                            incoming.ignore();
                        }
                        continue;
                    }
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let handshake = tokio::select! {
                        r = incoming => r,
                        _ = slot.handle().evicted() => {
                            debug!(peer = %from, "evicted during its handshake");
                            return;
                        }
                    };
                    match handshake {
                        Ok(conn) => serve_connection(conn, shared, slot).await,
                        Err(e) => debug!("handshake failed: {e}"),
                    }
                });
            }
        });
        Ok(Self {
            endpoint,
            key,
            admission,
            udp_echo,
        })
    }

    /// The UDP echo's address, when `udp_echo` is on.
    pub fn udp_echo_addr(&self) -> Option<SocketAddr> {
        self.udp_echo.as_ref().map(|u| u.local_addr())
    }

    /// What the UDP echo answered and dropped since it started, when it is on.
    pub fn udp_echo_counts(&self) -> Option<TableCounts> {
        self.udp_echo.as_ref().map(|u| u.counts())
    }

    /// What this responder has shed (and evidence answered) since it started.
    pub fn shed_counts(&self) -> ShedCounts {
        self.admission.log.counts()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn session_key(&self) -> &Arc<SessionKey> {
        &self.key
    }

    /// Closes every connection and waits until they are gone.
    pub async fn shutdown(&self) {
        if let Some(u) = &self.udp_echo {
            u.stop();
        }
        self.endpoint.close(0u32.into(), b"shutting down");
        self.endpoint.wait_idle().await;
    }
}

/// Answers every handshake from an address QUIC has not validated with a Retry (stateless;
/// the client comes back with a token proving it receives at that address, one round trip)
/// before any limit is charged: spoofed sources take no place, spend no IP's or the total
/// handshake allowance and evict nothing (REVIEW3 A, REVIEW4 R3: below half the cap they
/// once filled a chosen prober's per-IP places). Returns the handshake to go on with, or
/// `None` once retried.
fn retry_unvalidated(incoming: quinn::Incoming, admission: &Admission) -> Option<quinn::Incoming> {
    if incoming.remote_address_validated() || !incoming.may_retry() {
        return Some(incoming);
    }
    let from = incoming.remote_address();
    match incoming.retry() {
        Ok(()) => {
            admission.log.shed(Shed::ConnectionsRetried, from);
            None
        }
        // Only when it already came with a Retry token (`may_retry` said it did not).
        Err(e) => Some(e.into_incoming()),
    }
}

/// Socket buffers asked for (capped by `net.core.rmem_max`/`wmem_max`): many probers' handshake
/// flights arrive in bursts that overflow the default ~208 KiB.
const SOCKET_BUFFER: usize = 4 << 20;

pub(crate) fn udp_socket(listen: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
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

/// What the stream tasks of one connection share.
struct ConnState {
    conn: quinn::Connection,
    peer: SocketAddr,
    session: Arc<Mutex<EchoSession>>,
    /// An evidence request of this connection is queued or running.
    evidence_in_flight: AtomicBool,
    /// Its admission slot: a signed request of a pinned key protects it from eviction.
    slot: SlotHandle,
    /// Its one request over the rate read and checked for a pinned key's signature was
    /// taken ([`prove_early`]).
    early_proof: AtomicBool,
}

async fn serve_connection(conn: quinn::Connection, shared: Arc<Shared>, slot: ConnectionSlot) {
    let peer = conn.remote_address();
    info!(%peer, "prober connected");
    let session = Arc::new(Mutex::new(EchoSession::new()));
    let state = Arc::new(ConnState {
        conn: conn.clone(),
        peer,
        session: session.clone(),
        evidence_in_flight: AtomicBool::new(false),
        slot: slot.handle().clone(),
        early_proof: AtomicBool::new(false),
    });
    // Off the echo path: closing the connection ends the loop below (counted at eviction).
    let eviction = {
        let (conn, handle) = (conn.clone(), slot.handle().clone());
        tokio::spawn(async move {
            let why = handle.evicted().await;
            debug!(%peer, ?why, "evicted");
            conn.close(codes::BUSY.into(), eviction_reason(why));
        })
    };
    let streams = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok((send, recv)) = state.conn.accept_bi().await {
                let state = state.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        serve_stream(send, recv, &state, &shared),
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
        match shared.admission.echo(slot.handle(), received) {
            (RateVerdict::Answer, _) => {}
            (RateVerdict::Refuse, kind) => {
                shared.admission.log.shed(kind, peer);
                continue;
            }
            (RateVerdict::Close, _) => {
                shared.admission.log.shed(Shed::EchoFloodClosed, peer);
                conn.close(codes::RATE_LIMITED.into(), b"echo rate exceeded");
                shared.admission.flood_closed(peer.ip(), received);
                break;
            }
        }
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
    eviction.abort();
    drop(slot);
    info!(%peer, rejected, "prober disconnected");
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    state: &Arc<ConnState>,
    shared: &Arc<Shared>,
) {
    let now = Instant::now();
    let mut verdict = shared.admission.request(&state.slot, now);
    let mut read = None;
    if verdict == RateVerdict::Refuse
        && shared.access != EvidenceAccess::Any
        && !state.slot.proved()
        && !state.early_proof.swap(true, Ordering::AcqRel)
    {
        let request = read_request(&mut recv, shared.max_request_len).await;
        if let Ok((kind, body)) = &request {
            if prove_early(*kind, body, state, shared) {
                // Proved: answered from its key's allowance from now on.
                verdict = shared.admission.request(&state.slot, now);
            }
        }
        read = Some(request);
    }
    let reply = match verdict {
        RateVerdict::Answer => {
            let request = match read {
                Some(r) => r,
                None => read_request(&mut recv, shared.max_request_len).await,
            };
            match request {
                Ok((kind, body)) => handle_request(kind, &body, state, shared).await,
                Err(e) => {
                    debug!(peer = %state.peer, "request refused: {e}");
                    error_frame(&e)
                }
            }
        }
        RateVerdict::Refuse => {
            shared
                .admission
                .log
                .shed(Shed::RequestsRateLimited, state.peer);
            refusal(
                codes::RATE_LIMITED,
                "request rate of this peer exceeded; ask again later",
            )
        }
        RateVerdict::Close => {
            shared
                .admission
                .log
                .shed(Shed::RequestFloodClosed, state.peer);
            state
                .conn
                .close(codes::RATE_LIMITED.into(), b"request rate exceeded");
            shared
                .admission
                .flood_closed(state.peer.ip(), Instant::now());
            return;
        }
    };
    if send.write_all(&reply).await.is_ok() {
        let _ = send.finish();
        // Wait until the prober has the reply before the stream is dropped.
        let _ = send.stopped().await;
    }
}

/// REVIEW6 R8: a pinned prober's request over its IP's rate (a NAT or /64 neighbour spent
/// it) is read and its signature checked before it is refused, so the prober can still prove
/// its key and be answered from the key's allowance. One such request per connection: what a
/// flooder can make the responder verify this way is one signature per connection, within the
/// per-IP and total handshake rates (each handshake already costs a signature of ours). The
/// request, when answered, is checked again as any other.
fn prove_early(kind: MessageKind, body: &[u8], state: &ConnState, shared: &Shared) -> bool {
    let checked = match kind {
        MessageKind::HelloRequest => {
            frame::decode_body::<HelloRequest>(kind, body)
                .ok()
                .map(|req| {
                    check_auth(state, shared, Some(&req.auth), |x| {
                        shared.access.check_hello(&req, x)
                    })
                })
        }
        MessageKind::KeysRequest => frame::decode_body::<KeysRequest>(kind, body)
            .ok()
            .map(|req| {
                check_auth(state, shared, req.auth.as_ref(), |x| {
                    shared.access.check_keys(&req, x)
                })
            }),
        MessageKind::EvidenceRequest => {
            frame::decode_body::<EvidenceRequest>(kind, body)
                .ok()
                .map(|req| {
                    check_auth(state, shared, req.auth.as_ref(), |x| {
                        shared.access.check(&req, x)
                    })
                })
        }
        _ => None,
    };
    matches!(checked, Some(Ok(())))
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
    #[error("the request names {found} distinct anchors; this responder times at most {max}")]
    TooManyAnchors { found: usize, max: usize },
}

async fn read_request(
    recv: &mut quinn::RecvStream,
    max: u32,
) -> Result<(MessageKind, Vec<u8>), RequestError> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await?;
    // The body is allocated only now: its length is known and within the cap.
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
    state: &Arc<ConnState>,
    shared: &Arc<Shared>,
) -> Vec<u8> {
    match kind {
        MessageKind::EvidenceRequest => {
            let req: EvidenceRequest = match frame::decode_body(kind, body) {
                Ok(r) => r,
                Err(e) => return error_frame(&RequestError::Frame(e)),
            };
            evidence_request(req, state, shared).await
        }
        MessageKind::KeysRequest => {
            let req: KeysRequest = match frame::decode_body(kind, body) {
                Ok(r) => r,
                Err(e) => return error_frame(&RequestError::Frame(e)),
            };
            // The keys name the platform (EK certificates) and cost vTPM work: under
            // `pinned`, only for pinned probers, like evidence.
            if let Err(e) = check_auth(state, shared, req.auth.as_ref(), |x| {
                shared.access.check_keys(&req, x)
            }) {
                shared.admission.log.shed(Shed::Unauthorized, state.peer);
                return refusal(codes::UNAUTHORIZED, &e.to_string());
            }
            // Keys cost vTPM commands: they queue with evidence.
            let worker = shared.clone();
            queued(state, shared, async move {
                match worker.evidence.keys().await {
                    Ok(keys) => frame::encode(MessageKind::KeysResponse, &keys),
                    Err(e) => unavailable(&e),
                }
            })
            .await
            .unwrap_or_else(|refused| refused)
        }
        MessageKind::HelloRequest => hello(body, state, shared),
        MessageKind::UdpEchoRequest => udp_echo(body, state, shared),
        MessageKind::TranscriptRequest => {
            if let Err(e) = frame::decode_body::<TranscriptRequest>(kind, body) {
                return error_frame(&RequestError::Frame(e));
            }
            let transcript = signed_transcript(&state.session, shared);
            frame::encode(
                MessageKind::TranscriptResponse,
                &TranscriptResponse {
                    transcript,
                    session_spki: shared.key.spki_der().to_vec(),
                },
            )
        }
        other => refusal(
            codes::UNKNOWN_MESSAGE,
            &format!("{other:?} is not a request"),
        ),
    }
}

/// A pinned prober proving its key right after the handshake (REVIEW3 A): checked at once,
/// off the evidence queue, so the connection is safe from eviction within a round trip.
fn hello(body: &[u8], state: &ConnState, shared: &Shared) -> Vec<u8> {
    let req: HelloRequest = match frame::decode_body(MessageKind::HelloRequest, body) {
        Ok(r) => r,
        Err(e) => return error_frame(&RequestError::Frame(e)),
    };
    if let Err(e) = check_auth(state, shared, Some(&req.auth), |x| {
        shared.access.check_hello(&req, x)
    }) {
        shared.admission.log.shed(Shed::Unauthorized, state.peer);
        return refusal(codes::UNAUTHORIZED, &e.to_string());
    }
    frame::encode(MessageKind::HelloResponse, &HelloResponse {})
}

/// Grants a UDP echo session keyed from this connection: under `[access] evidence = "pinned"`
/// only to a connection that proved a pinned key (a session outlives its connection, so
/// strangers' grants would evict probers' sessions, REVIEW7 U1); under `any` to every prober.
fn udp_echo(body: &[u8], state: &ConnState, shared: &Shared) -> Vec<u8> {
    if let Err(e) = frame::decode_body::<UdpEchoRequest>(MessageKind::UdpEchoRequest, body) {
        return error_frame(&RequestError::Frame(e));
    }
    let Some(udp) = &shared.udp_echo else {
        return refusal(
            codes::UNAVAILABLE,
            "this responder answers no UDP echo ([echo] udp_listen)",
        );
    };
    let grantee = match state.slot.key() {
        Some(key) => Grantee::Proved(key),
        None if shared.access == EvidenceAccess::Any => Grantee::Unproven,
        None => {
            shared.admission.log.shed(Shed::Unauthorized, state.peer);
            return refusal(
                codes::UNAUTHORIZED,
                "a UDP echo session is granted only to a connection that proved a pinned key",
            );
        }
    };
    match udp.grant(&state.conn, grantee) {
        Ok(granted) => {
            debug!(peer = %state.peer, session = granted.session, "UDP echo session granted");
            frame::encode(MessageKind::UdpEchoResponse, &granted)
        }
        Err(e @ GrantError::Register(RegisterError::Full)) => refusal(codes::BUSY, &e.to_string()),
        Err(e) => refusal(codes::INTERNAL, &e.to_string()),
    }
}

/// Admits an evidence request (access, anchors, one in flight per connection) and queues it.
async fn evidence_request(
    mut req: EvidenceRequest,
    state: &Arc<ConnState>,
    shared: &Arc<Shared>,
) -> Vec<u8> {
    // The request is in the TD from here: time waiting in the evidence queue behind other
    // probers' requests is in-TD time too, or a prober would hold it against the distance.
    let received = Instant::now();
    let peer = state.peer;
    if let Err(e) = check_auth(state, shared, req.auth.as_ref(), |x| {
        shared.access.check(&req, x)
    }) {
        shared.admission.log.shed(Shed::Unauthorized, peer);
        return refusal(codes::UNAUTHORIZED, &e.to_string());
    }
    // Each anchor is timed once however often it is named, and a request names few: one
    // request must not make the responder hammer third-party servers.
    let mut seen = std::collections::HashSet::new();
    req.include.anchors.retain(|a| seen.insert(a.clone()));
    let max_anchors = shared.admission.limits().max_anchors;
    if req.include.anchors.len() > max_anchors {
        shared.admission.log.shed(Shed::TooManyAnchors, peer);
        return error_frame(&RequestError::TooManyAnchors {
            found: req.include.anchors.len(),
            max: max_anchors,
        });
    }
    if state.evidence_in_flight.swap(true, Ordering::AcqRel) {
        shared.admission.log.shed(Shed::EvidenceInFlight, peer);
        return refusal(
            codes::BUSY,
            "this connection already has an evidence request in flight",
        );
    }
    let authorized = Instant::now();
    let worker = shared.clone();
    let session = state.session.clone();
    let reply = queued(state, shared, async move {
        let started = Instant::now();
        let reply = collect_evidence(req, received, &session, &worker).await;
        (reply, started, Instant::now())
    })
    .await;
    state.evidence_in_flight.store(false, Ordering::Release);
    let (reply, started, done) = match reply {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    // Where this request's time went, for slow requests under load.
    let us = |from: Instant, to: Instant| to.saturating_duration_since(from).as_micros() as u64;
    debug!(
        target: EVIDENCE_TIMING_TARGET,
        %peer,
        auth_us = us(received, authorized),
        queue_us = us(authorized, started),
        work_us = us(started, done),
        handback_us = us(done, Instant::now()),
        "evidence request served"
    );
    reply
}

/// The log target of each evidence request's timing (`auth_us`, `queue_us`, `work_us`,
/// `handback_us`), at debug.
pub const EVIDENCE_TIMING_TARGET: &str = "locus_evidence_timing";

/// `[access]`: under `pinned`, the request's signature (`check`, of `auth`) must verify on
/// this connection; the connection has then proved `auth`'s key.
fn check_auth(
    state: &ConnState,
    shared: &Shared,
    auth: Option<&RequestAuth>,
    check: impl FnOnce(&[u8; EXPORTER_LEN]) -> Result<(), AccessError>,
) -> Result<(), AccessError> {
    if shared.access == EvidenceAccess::Any {
        return Ok(());
    }
    let mut exporter = [0u8; EXPORTER_LEN];
    // The exporter is available on every established TLS 1.3 connection; without it no
    // signature can be checked, which refuses the request.
    if state
        .conn
        .export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
        .is_err()
    {
        return Err(AccessError::BadSignature);
    }
    check(&exporter)?;
    // `check` passed under `pinned`: the key is one of the pinned ones, 32 bytes.
    if let Some(key) = auth.and_then(|a| <[u8; 32]>::try_from(&a.public_key[..]).ok()) {
        state.slot.prove(&key, Instant::now());
    }
    Ok(())
}

/// Runs `work` on the evidence worker and returns its output, or (as `Err`) the refusal to
/// send: `busy` at once when the worker's queue is full or the connection's pinned key holds
/// its share of it (REVIEW6 R9).
async fn queued<T: Send + 'static>(
    state: &ConnState,
    shared: &Shared,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, Vec<u8>> {
    let (tx, rx) = oneshot::channel();
    let job = Box::pin(async move {
        // The prober gave up (its stream timed out) while this waited: skip the work.
        if tx.is_closed() {
            return;
        }
        let _ = tx.send(work.await);
    });
    if let Err(why) = shared.queue.try_submit(state.slot.key(), job) {
        let (kind, message) = match why {
            Refused::Full => (
                Shed::EvidenceQueueFull,
                "the evidence queue is full; ask again later",
            ),
            Refused::KeyShare => (
                Shed::EvidenceKeyShare,
                "this prober key holds its share of the evidence queue; ask again later",
            ),
        };
        shared.admission.log.shed(kind, state.peer);
        return Err(refusal(codes::BUSY, message));
    }
    rx.await
        .map_err(|_| refusal(codes::INTERNAL, "the evidence worker dropped the request"))
}

/// The evidence work of one request, on the evidence worker.
async fn collect_evidence(
    req: EvidenceRequest,
    received: Instant,
    session: &Mutex<EchoSession>,
    shared: &Shared,
) -> Vec<u8> {
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
            bundle.timings.evidence_ns = Some(received.elapsed().as_nanos() as u64);
            debug!(
                target: EVIDENCE_TIMING_TARGET,
                tdx_quote_us = bundle.timings.tdx_quote_ns.map(|ns| ns / 1000),
                tpm_quote_us = bundle.timings.tpm_quote_ns.map(|ns| ns / 1000),
                "evidence collected"
            );
            shared.admission.log.answered();
            frame::encode(MessageKind::EvidenceResponse, &EvidenceResponse { bundle })
        }
        Err(e) => unavailable(&e),
    }
}

fn refusal(code: u16, message: &str) -> Vec<u8> {
    frame::encode(
        MessageKind::Error,
        &ErrorMessage {
            code,
            message: message.to_string(),
        },
    )
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
    refusal(codes::UNAVAILABLE, &e.to_string())
}

fn error_frame(e: &RequestError) -> Vec<u8> {
    let code = match e {
        RequestError::Frame(FrameError::Decode(DecodeError::WrongVersion { .. })) => {
            codes::WRONG_VERSION
        }
        RequestError::Frame(FrameError::TooLarge { .. }) => codes::TOO_LARGE,
        RequestError::Frame(FrameError::UnknownKind { .. }) => codes::UNKNOWN_MESSAGE,
        RequestError::BadNonce { .. } => codes::BAD_NONCE,
        RequestError::TooManyAnchors { .. } => codes::TOO_LARGE,
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
