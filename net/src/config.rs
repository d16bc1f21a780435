//! The QUIC configurations of both ends: TLS 1.3 only, ALPN `locus/1`, datagram buffers sized
//! for bursts of challenges. The tokio drivers and the busy-polling driver use the same ones
//! (`quinn` re-exports `quinn-proto`'s configuration types).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use locus_proto::ALPN;
use quinn_proto::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use quinn_proto::{ClientConfig, IdleTimeout, ServerConfig, TransportConfig, VarIntBoundsExceeded};
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Datagrams queued per direction before the oldest are dropped.
const DATAGRAM_BUFFER: usize = 4 << 20;
/// The responder's datagram queues per connection: a connection whose challenges arrive
/// faster than they are answered loses the oldest instead of holding memory (the prober's
/// 4 MiB would be 4 GiB across a thousand hostile connections).
const SERVER_DATAGRAM_BUFFER: usize = 256 << 10;
/// Keeps an idle prober connection (and its NAT binding) alive between rounds.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Why a QUIC configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// rustls refused the protocol versions or the certificate and key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS configuration has no cipher suite QUIC can protect Initial packets with
    /// (TLS_AES_128_GCM_SHA256); the ring provider always has it.
    #[error("QUIC configuration: {0}")]
    NoInitialCipherSuite(#[from] NoInitialCipherSuite),
    /// The idle timeout does not fit QUIC's varint milliseconds: choose one below 2^62 ms.
    #[error("idle timeout {timeout:?} is too large for QUIC: {source}")]
    IdleTimeout {
        timeout: Duration,
        source: VarIntBoundsExceeded,
    },
}

/// One ring crypto provider for every connection (each would otherwise carry its own copy).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The prober's configuration: the responder's key checked by `verifier` (see
/// [`crate::Tls13Verifier`]), no resumption, no streams opened by the responder.
pub fn client_config(verifier: Arc<dyn ServerCertVerifier>) -> Result<ClientConfig, ConfigError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // Every connection shows the session key: a resumed session would skip the certificate
    // (and the pin). This also frees the 256-entry session cache each config starts with.
    tls.resumption = rustls::client::Resumption::disabled();
    let mut client = ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let mut transport = TransportConfig::default();
    transport
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_BUFFER)
        .keep_alive_interval(Some(KEEP_ALIVE))
        // Responders never open streams: no per-connection state for them (quinn keeps a
        // slot per allowed stream, ~10 KiB per connection at the default 100 + 100).
        .max_concurrent_bidi_streams(0u32.into())
        .max_concurrent_uni_streams(0u32.into());
    client.transport_config(Arc::new(transport));
    Ok(client)
}

/// The responder's configuration: its session certificate and key, no 0-RTT, connections
/// closed after `idle_timeout` of silence, up to `bidi_streams` request streams at once
/// (zero for an echo-only driver), each buffering at most `stream_window` bytes of request
/// (a whole request frame: QUIC's default 1.25 MB per stream is an attacker's to fill).
pub fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    idle_timeout: Duration,
    bidi_streams: u32,
    stream_window: u32,
) -> Result<ServerConfig, ConfigError> {
    let idle = IdleTimeout::try_from(idle_timeout).map_err(|source| ConfigError::IdleTimeout {
        timeout: idle_timeout,
        source,
    })?;
    let mut tls = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // Every connection is fresh: no resumption, no 0-RTT replays of requests.
    tls.max_early_data_size = 0;
    let mut server = ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(idle))
        .datagram_receive_buffer_size(Some(SERVER_DATAGRAM_BUFFER))
        .datagram_send_buffer_size(SERVER_DATAGRAM_BUFFER)
        .stream_receive_window(stream_window.into())
        .receive_window(
            (u64::from(stream_window) * u64::from(bidi_streams.max(1)))
                .try_into()
                .unwrap_or(quinn_proto::VarInt::MAX),
        )
        .max_concurrent_bidi_streams(bidi_streams.into())
        .max_concurrent_uni_streams(0u32.into());
    server.transport_config(Arc::new(transport));
    Ok(server)
}
