//! Lab anchors: a CA generated at run time and rustls TLS 1.3 servers that answer HTTP/1.1
//! `HEAD` with keep-alive on their own loopback address, for `locus lab` and the tests.
//!
//! The lab puts its delay relay between the responder and these servers; the servers themselves
//! answer at once. Besides honest servers, [`LabBehaviour`] has the misbehaving anchors the tests
//! need (slow, oversized answers).

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

/// Why a lab CA, certificate or server could not be made.
#[derive(Debug, Error)]
pub enum LabError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS server configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The lab's certificate authority, generated at run time (ECDSA P-256).
pub struct LabCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for LabCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabCa").finish_non_exhaustive()
    }
}

impl LabCa {
    pub fn generate() -> Result<Self, LabError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        // A name of its own per CA, so that a chain from another lab CA fails as an unknown
        // issuer rather than as a bad signature under a same-named CA.
        let id = hex::encode(&Sha256::digest(key.public_key_der())[..6]);
        dn.push(DnType::CommonName, format!("locus lab anchor CA {id}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// The CA certificate (DER): the lab verification policy's trust anchor.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for DNS name `name` (e.g. `anchor-fra.lab`), signed by this CA.
    pub fn issue(&self, name: &str) -> Result<ServerIdentity, LabError> {
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(ServerIdentity {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

/// A server's certificate chain (leaf first) and private key.
#[derive(Debug)]
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ServerIdentity {
    /// SHA-256 of the leaf's SubjectPublicKeyInfo, for a pinned-SPKI anchor.
    pub fn spki_sha256(&self) -> [u8; 32] {
        let Some(leaf) = self.chain.first() else {
            return [0; 32];
        };
        match x509_parser::parse_x509_certificate(leaf.as_ref()) {
            Ok((_, c)) => Sha256::digest(c.tbs_certificate.subject_pki.raw).into(),
            Err(_) => [0; 32],
        }
    }
}

/// How a lab anchor answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabBehaviour {
    /// A `200 OK` head with keep-alive to every `HEAD`.
    Honest,
    /// Completes the handshake, reads requests, never answers.
    StallResponses,
    /// Accepts TCP, never speaks TLS.
    StallHandshake,
    /// Answers every request with a response head of about this many bytes.
    Oversized { bytes: usize },
}

/// A running lab anchor; stops when dropped or [`AnchorServer::shutdown`].
#[derive(Debug)]
pub struct AnchorServer {
    addr: SocketAddr,
    name: String,
    task: JoinHandle<()>,
}

/// Most bytes of a request head the lab server reads before dropping the connection.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

impl AnchorServer {
    /// Starts an honest anchor on `addr` (e.g. `127.0.3.1:443`, or port 0 for any) with a fresh
    /// certificate for `name` from `ca`. Must be called inside a tokio runtime.
    pub async fn start(addr: SocketAddr, ca: &LabCa, name: &str) -> Result<Self, LabError> {
        Self::start_with(addr, name, ca.issue(name)?, LabBehaviour::Honest).await
    }

    /// Starts an anchor with a given identity and behaviour.
    pub async fn start_with(
        addr: SocketAddr,
        name: &str,
        identity: ServerIdentity,
        behaviour: LabBehaviour,
    ) -> Result<Self, LabError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(identity.chain, PrivateKeyDer::Pkcs8(identity.key))?;
        // No tickets: clients never resume, and tickets would only add bytes to each exchange.
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| LabError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| LabError::Bind { addr, source })?;
        let task_name = name.to_owned();
        let task = tokio::spawn(async move {
            // Connection tasks live in the set, so aborting this task ends them all.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((sock, peer)) => {
                            debug!(anchor = %task_name, %peer, "lab anchor connection");
                            conns.spawn(serve(sock, acceptor.clone(), behaviour.clone()));
                        }
                        Err(e) => warn!(anchor = %task_name, error = %e, "lab anchor accept failed"),
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Self {
            addr,
            name: name.to_owned(),
            task,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The DNS name its certificate is for (the SNI to use).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for AnchorServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(sock: TcpStream, acceptor: tokio_rustls::TlsAcceptor, behaviour: LabBehaviour) {
    let _ = sock.set_nodelay(true);
    if behaviour == LabBehaviour::StallHandshake {
        let mut sock = sock;
        let mut sink = [0u8; 1024];
        while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
    let mut tls = match acceptor.accept(sock).await {
        Ok(t) => t,
        Err(e) => {
            debug!(error = %e, "lab anchor handshake failed");
            return;
        }
    };
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let close = String::from_utf8_lossy(&buf[..end])
                .lines()
                .any(|l| l.eq_ignore_ascii_case("connection: close"));
            buf.drain(..end + 4);
            let response = match &behaviour {
                LabBehaviour::StallResponses => continue,
                LabBehaviour::Oversized { bytes } => format!(
                    "HTTP/1.1 200 OK\r\nX-Padding: {}\r\n\r\n",
                    "a".repeat(*bytes)
                ),
                _ => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
                    .to_owned(),
            };
            if tls.write_all(response.as_bytes()).await.is_err() || tls.flush().await.is_err() {
                return;
            }
            if close {
                let _ = tls.shutdown().await;
                return;
            }
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return;
        }
    }
}
