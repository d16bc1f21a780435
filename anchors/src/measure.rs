//! The measurement driver: connect, handshake and `HEAD` round trips against one anchor, timed
//! with the monotonic clock (`Instant`, CLOCK_MONOTONIC; inside a TD it runs on the TSC, which
//! the host can delay but not speed up), recorded into a [`proto::anchor::AnchorResult`].
//!
//! rustls is driven by hand over the tokio socket (no stream adaptor), so that the timestamps are
//! taken right at the socket writes and reads, and the raw handshake bytes are kept.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use locus_proto::anchor::{
    batch_leaf, AnchorFailure, AnchorReport, AnchorResult, CertVerify, Freshness, TlsCapture,
};
use locus_proto::merkle::{batch_root, InclusionProof};
use rustls::ClientConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn, Instrument};

use crate::config::{AnchorSpec, MeasureOptions};
use crate::http::{head_request, parse_head, Head};
use crate::tls::{client_config, client_hello_random, new_connection, Capture};

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Measures every anchor in order (one at a time, so that they do not disturb each other) for
/// challenge `nonce`. The report's digest goes into the REPORTDATA of a quote taken afterwards.
pub async fn measure_all(
    specs: &[AnchorSpec],
    nonce: &[u8],
    options: &MeasureOptions,
) -> AnchorReport {
    let mut report = AnchorReport::new(nonce, "");
    let (clocksource, anchors) = measure_with(specs, Freshness::Nonce(nonce), options).await;
    report.clocksource = Some(clocksource);
    report.anchors = anchors;
    report
}

/// One measurement shared by a batch of challenges: every anchor once, its ClientHello.random
/// derived from the Merkle root over the batch's nonces ([`batch_leaf`] values, in the order
/// given), so each anchor's signed handshake is later than every nonce. Returns one report per
/// nonce, in order, each with its proof of inclusion (`docs/binding.md`, "Batched anchor
/// measurements"). A batch of one is [`measure_all`]: a version 2 report without a proof.
pub async fn measure_batch(
    specs: &[AnchorSpec],
    nonces: &[&[u8]],
    options: &MeasureOptions,
) -> Vec<AnchorReport> {
    if let [one] = nonces {
        return vec![measure_all(specs, one, options).await];
    }
    let leaves: Vec<[u8; 64]> = nonces.iter().map(|n| batch_leaf(n)).collect();
    let Some((root, paths)) = batch_root(&leaves) else {
        return Vec::new();
    };
    let (clocksource, anchors) = measure_with(specs, Freshness::BatchRoot(&root), options).await;
    let mut shared = AnchorReport::new(&[], &clocksource);
    shared.anchors = anchors;
    let size = nonces.len() as u64;
    nonces
        .iter()
        .zip(paths)
        .enumerate()
        .map(|(i, (nonce, path))| {
            let proof = InclusionProof {
                index: i as u64,
                size,
                path,
            };
            AnchorReport::batch_member(&shared, nonce, &root, proof)
        })
        .collect()
}

/// The clocksource and every anchor's result, randoms derived from `freshness`.
async fn measure_with(
    specs: &[AnchorSpec],
    freshness: Freshness<'_>,
    options: &MeasureOptions,
) -> (String, Vec<AnchorResult>) {
    let clocksource = options.clock.current();
    if !options.clock.allows(&clocksource) {
        // A clock the host can speed up would make far anchors look near: time nothing.
        warn!(%clocksource, allowed = ?options.clock.allow, "refusing to time anchors");
        let anchors = specs
            .iter()
            .map(|spec| AnchorResult {
                failure: Some(AnchorFailure::Clocksource {
                    found: clocksource.clone(),
                }),
                ..empty_result(spec, options)
            })
            .collect();
        return (clocksource, anchors);
    }
    let mut anchors = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let random = freshness.client_random(index, &spec.name);
        anchors.push(measure_with_random(spec, random, options).await);
    }
    (clocksource, anchors)
}

/// A result with nothing measured yet.
fn empty_result(spec: &AnchorSpec, options: &MeasureOptions) -> AnchorResult {
    AnchorResult {
        name: spec.name.clone(),
        target: spec.target.clone(),
        peer_addr: None,
        sni: spec.sni.to_str().into_owned(),
        round_trips_requested: options.round_trips,
        tcp_connect_ns: None,
        handshake_rtt_ns: None,
        round_trips_ns: Vec::new(),
        min_rtt_ns: None,
        tls: None,
        failure: None,
    }
}

/// Measures one anchor, at position `index` of the report (the index is part of the
/// ClientHello.random derivation). Never fails: what went wrong is in `failure`.
pub async fn measure(
    spec: &AnchorSpec,
    nonce: &[u8],
    index: u32,
    options: &MeasureOptions,
) -> AnchorResult {
    let random = Freshness::Nonce(nonce).client_random(index, &spec.name);
    measure_with_random(spec, random, options).await
}

/// [`measure`] with the ClientHello.random given.
async fn measure_with_random(
    spec: &AnchorSpec,
    client_random: [u8; 32],
    options: &MeasureOptions,
) -> AnchorResult {
    let mut result = empty_result(spec, options);
    let span = tracing::debug_span!("anchor", name = %spec.name, target = %spec.target);
    let mut run = Run {
        spec,
        options,
        client_random,
        result: &mut result,
        capture: None,
        client_hello: Vec::new(),
        server_flight: Vec::new(),
    };
    let outcome = run.run().instrument(span).await;
    let tls = run.tls_capture();
    if let Err(failure) = outcome {
        warn!(anchor = %spec.name, %failure, "anchor measurement failed");
        result.failure = Some(failure);
    }
    result.tls = tls;
    result.min_rtt_ns = result.round_trips_ns.iter().min().copied();
    debug!(min_rtt_ns = ?result.min_rtt_ns, samples = result.round_trips_ns.len(), "anchor measured");
    result
}

struct Run<'a> {
    spec: &'a AnchorSpec,
    options: &'a MeasureOptions,
    client_random: [u8; 32],
    result: &'a mut AnchorResult,
    capture: Option<(Capture, u16)>,
    client_hello: Vec<u8>,
    server_flight: Vec<u8>,
}

fn tls_failure(e: rustls::Error) -> AnchorFailure {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            AnchorFailure::Certificate {
                detail: format!("invalid peer certificate: {}", other.0),
            }
        }
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            AnchorFailure::Certificate {
                detail: e.to_string(),
            }
        }
        e => AnchorFailure::Tls {
            detail: e.to_string(),
        },
    }
}

fn io_failure(e: std::io::Error) -> AnchorFailure {
    AnchorFailure::Io {
        detail: e.to_string(),
    }
}

impl Run<'_> {
    fn tls_capture(&self) -> Option<TlsCapture> {
        let (capture, suite) = self.capture.as_ref()?;
        Some(capture.with(|c| {
            TlsCapture {
                client_random: self.client_random.to_vec(),
                cipher_suite: *suite,
                client_hello: self.client_hello.clone(),
                server_flight: self.server_flight.clone(),
                server_handshake_secret: c.server_handshake_secret.clone().unwrap_or_default(),
                cert_chain: c
                    .cert_chain
                    .iter()
                    .map(|d| serde_bytes::ByteBuf::from(d.clone()))
                    .collect(),
                cert_verify: c
                    .cert_verify
                    .as_ref()
                    .map(|(scheme, signature, signed_message)| CertVerify {
                        scheme: *scheme,
                        signature: signature.clone(),
                        signed_message: signed_message.clone(),
                    }),
            }
        }))
    }

    async fn run(&mut self) -> Result<(), AnchorFailure> {
        // Everything that costs CPU but no round trip happens before the clock starts.
        let (config, capture) = client_config(&self.spec.trust).map_err(tls_failure)?;
        let request = head_request(&self.spec.sni.to_str());

        let connect_timeout = self.options.connect_timeout;
        let addr = tokio::time::timeout(
            connect_timeout,
            tokio::net::lookup_host(self.spec.target.as_str()),
        )
        .await
        .map_err(|_| AnchorFailure::Resolve {
            detail: format!("no answer within {} ms", ms(connect_timeout)),
        })?
        .map_err(|e| AnchorFailure::Resolve {
            detail: e.to_string(),
        })?
        .next()
        .ok_or_else(|| AnchorFailure::Resolve {
            detail: "no address".into(),
        })?;
        self.result.peer_addr = Some(addr.to_string());

        let t0 = Instant::now();
        let mut sock = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(AnchorFailure::ConnectTimeout {
                    timeout_ms: ms(connect_timeout),
                })
            }
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => {
                return Err(AnchorFailure::Refused)
            }
            Ok(Err(e)) => {
                return Err(AnchorFailure::Connect {
                    detail: e.to_string(),
                })
            }
            Ok(Ok(s)) => s,
        };
        self.result.tcp_connect_ns = Some(ns(t0.elapsed()));
        sock.set_nodelay(true).map_err(io_failure)?;

        let mut conn = new_connection(config, self.spec.sni.clone(), self.client_random)
            .map_err(tls_failure)?;
        // From here on there is a handshake to record, complete or not.
        self.capture = Some((capture.clone(), 0));
        let handshake_timeout = self.options.handshake_timeout;
        match tokio::time::timeout(handshake_timeout, self.handshake(&mut sock, &mut conn)).await {
            Err(_) => {
                return Err(AnchorFailure::HandshakeTimeout {
                    timeout_ms: ms(handshake_timeout),
                })
            }
            Ok(r) => r?,
        }
        let suite = conn
            .negotiated_cipher_suite()
            .map(|s| u16::from(s.suite()))
            .unwrap_or_default();
        self.capture = Some((capture.clone(), suite));
        if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return Err(AnchorFailure::Tls {
                detail: "not TLS 1.3".into(),
            });
        }
        // Freshness: the random on the wire (checked before sending) is also the one the key
        // schedule used.
        let logged = capture.with(|c| c.keylog_client_random.clone());
        if logged.as_deref() != Some(&self.client_random[..]) {
            return Err(AnchorFailure::FreshnessNotBound);
        }

        for i in 0..self.options.round_trips {
            let rtt_timeout = self.options.round_trip_timeout;
            let sample = tokio::time::timeout(
                rtt_timeout,
                self.round_trip(&mut sock, &mut conn, &request, i),
            )
            .await
            .map_err(|_| AnchorFailure::RoundTripTimeout {
                index: i,
                timeout_ms: ms(rtt_timeout),
            })??;
            self.result.round_trips_ns.push(ns(sample.rtt));
            if sample.close && i + 1 < self.options.round_trips {
                return Err(AnchorFailure::Closed { index: i + 1 });
            }
        }
        conn.send_close_notify();
        let _ = flush(&mut sock, &mut conn).await;
        let _ = sock.shutdown().await;
        Ok(())
    }

    /// Drives the handshake; records the ClientHello, the server's bytes and the first-flight RTT.
    async fn handshake(
        &mut self,
        sock: &mut TcpStream,
        conn: &mut ClientConnection,
    ) -> Result<(), AnchorFailure> {
        let mut hello_sent: Option<Instant> = None;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out).map_err(io_failure)?;
            }
            if !out.is_empty() {
                // Checked before anything is sent: if rustls ever put the planned bytes anywhere
                // but ClientHello.random, nothing of that handshake leaves the TD.
                if hello_sent.is_none() && client_hello_random(&out) != Some(self.client_random) {
                    return Err(AnchorFailure::FreshnessNotBound);
                }
                sock.write_all(&out).await.map_err(io_failure)?;
                if hello_sent.is_none() {
                    hello_sent = Some(Instant::now());
                    self.client_hello = out;
                }
            }
            if !conn.is_handshaking() {
                return Ok(());
            }
            let n = sock.read(&mut buf).await.map_err(io_failure)?;
            let now = Instant::now();
            if n == 0 {
                return Err(AnchorFailure::Tls {
                    detail: "connection closed during the handshake".into(),
                });
            }
            if self.server_flight.is_empty() {
                if let Some(t) = hello_sent {
                    self.result.handshake_rtt_ns = Some(ns(now - t));
                }
            }
            let limit = self.options.max_handshake_bytes;
            if self.server_flight.len() + n > limit as usize {
                return Err(AnchorFailure::Oversized {
                    phase: "handshake".into(),
                    limit,
                });
            }
            self.server_flight.extend_from_slice(&buf[..n]);
            if let Err(failure) = feed(conn, &buf[..n], None) {
                // Tell the server why (the alert rustls queued); best effort.
                let _ = flush(sock, conn).await;
                return Err(failure);
            }
        }
    }

    /// One `HEAD` round trip: request written to complete response head read.
    async fn round_trip(
        &mut self,
        sock: &mut TcpStream,
        conn: &mut ClientConnection,
        request: &[u8],
        index: u32,
    ) -> Result<Sample, AnchorFailure> {
        conn.writer().write_all(request).map_err(io_failure)?;
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).map_err(io_failure)?;
        }
        let start = Instant::now();
        sock.write_all(&out).await.map_err(io_failure)?;
        let limit = self.options.max_response_bytes;
        let mut response = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = sock.read(&mut buf).await.map_err(io_failure)?;
            let now = Instant::now();
            if n == 0 {
                return Err(AnchorFailure::Closed { index });
            }
            let closed = feed(conn, &buf[..n], Some((&mut response, limit)))?;
            match parse_head(&response) {
                Head::Partial if closed => return Err(AnchorFailure::Closed { index }),
                Head::Partial => continue,
                Head::Bad(detail) => return Err(AnchorFailure::BadResponse { index, detail }),
                Head::Complete { status, close } => {
                    debug!(index, status, "round trip");
                    return Ok(Sample {
                        rtt: now - start,
                        close: close || closed,
                    });
                }
            }
        }
    }
}

struct Sample {
    rtt: Duration,
    close: bool,
}

/// Hands received bytes to rustls and processes them, moving decrypted bytes into `plaintext`
/// (capped) as they come, so that rustls' plaintext buffer never fills. True once the peer sent
/// close_notify.
fn feed(
    conn: &mut ClientConnection,
    mut bytes: &[u8],
    mut plaintext: Option<(&mut Vec<u8>, u32)>,
) -> Result<bool, AnchorFailure> {
    let mut closed = false;
    while !bytes.is_empty() {
        conn.read_tls(&mut bytes).map_err(io_failure)?;
        conn.process_new_packets().map_err(tls_failure)?;
        if let Some((into, limit)) = plaintext.as_mut() {
            closed |= read_plaintext(conn, into, *limit)?;
        }
    }
    Ok(closed)
}

/// Moves decrypted bytes into `into`, capped at `limit`; true once the peer sent close_notify.
fn read_plaintext(
    conn: &mut ClientConnection,
    into: &mut Vec<u8>,
    limit: u32,
) -> Result<bool, AnchorFailure> {
    let mut chunk = [0u8; 4096];
    loop {
        match conn.reader().read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                if into.len() + n > limit as usize {
                    return Err(AnchorFailure::Oversized {
                        phase: "response".into(),
                        limit,
                    });
                }
                into.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(true),
            Err(e) => return Err(io_failure(e)),
        }
    }
}

async fn flush(sock: &mut TcpStream, conn: &mut ClientConnection) -> std::io::Result<()> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    sock.write_all(&out).await
}
