//! The measuring TLS client's configuration: a ring `CryptoProvider` whose random source puts the
//! nonce-derived ClientHello.random into the handshake, a certificate verifier that records the
//! chain and the CertificateVerify it checked, and a key log that keeps the server's handshake
//! traffic secret, so that a verifier can re-check the handshake offline.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};

use locus_net::{spki_of, ServerCert, ServerKeyCheck, Tls13Verifier};
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, Error, KeyLog,
    OtherError, RootCertStore,
};
use sha2::{Digest, Sha256};

use crate::config::Trust;

thread_local! {
    /// The random for the ClientHello being built on this thread, if any; see [`NonceRandom`].
    static PLAN: RefCell<Option<Plan>> = const { RefCell::new(None) };
}

#[derive(Debug)]
struct Plan {
    client_random: [u8; 32],
    fills_of_32: u32,
}

/// The random source of the measuring client.
///
/// rustls 0.23 (`client/hs.rs`, `ClientHelloInput::new`) draws from `provider.secure_random`, in
/// this order, while `ClientConnection::new` builds the ClientHello: the legacy session id
/// (32 bytes), a u16 for extension GREASE, then ClientHello.random (32 bytes). The second
/// 32-byte draw is therefore the random, and only that draw is replaced, and only inside
/// [`new_connection`], which sets a thread-local plan around the synchronous constructor.
/// Every other draw is OS randomness. The ring provider's key exchange does not use this
/// source at all (`crypto/ring/kx.rs` calls `SystemRandom` directly), so key shares stay secret;
/// they must, or someone who knew the client's key share could forge the server's answers.
/// Should a rustls update reorder these draws, the random would land elsewhere: the measurement
/// checks the ClientHello it actually sent and records `FreshnessNotBound` instead of samples.
#[derive(Debug)]
struct NonceRandom;

static NONCE_RANDOM: NonceRandom = NonceRandom;

impl SecureRandom for NonceRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        let planned = PLAN.with(|p| {
            let mut p = p.borrow_mut();
            let plan = p.as_mut()?;
            if buf.len() != 32 {
                return None;
            }
            plan.fills_of_32 += 1;
            (plan.fills_of_32 == 2).then_some(plan.client_random)
        });
        match planned {
            Some(r) => {
                buf.copy_from_slice(&r);
                Ok(())
            }
            None => rustls::crypto::ring::default_provider()
                .secure_random
                .fill(buf),
        }
    }
}

/// What the verifier and the key log saw during one handshake.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub(crate) cert_chain: Vec<Vec<u8>>,
    pub(crate) cert_verify: Option<(u16, Vec<u8>, Vec<u8>)>,
    pub(crate) server_handshake_secret: Option<Vec<u8>>,
    pub(crate) keylog_client_random: Option<Vec<u8>>,
}

/// Shared between the verifier, the key log and the measurement.
#[derive(Debug, Default, Clone)]
pub(crate) struct Capture(Arc<Mutex<Captured>>);

impl Capture {
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Captured) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl KeyLog for Capture {
    fn will_log(&self, label: &str) -> bool {
        label == "SERVER_HANDSHAKE_TRAFFIC_SECRET"
    }

    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        if label == "SERVER_HANDSHAKE_TRAFFIC_SECRET" {
            self.with(|c| {
                c.server_handshake_secret = Some(secret.to_vec());
                c.keylog_client_random = Some(client_random.to_vec());
            });
        }
    }
}

#[derive(Debug)]
enum Inner {
    WebPki(Arc<WebPkiServerVerifier>),
    Pin([u8; 32]),
}

/// Checks the server per the anchor's [`Trust`] and records what it checked.
#[derive(Debug)]
struct CapturingCheck {
    inner: Inner,
    capture: Capture,
}

#[derive(Debug, thiserror::Error)]
#[error("SPKI pin mismatch: expected sha256 {expected}, found {found}")]
struct PinMismatch {
    expected: String,
    found: String,
}

fn spki_sha256(cert: &CertificateDer<'_>) -> Result<[u8; 32], Error> {
    Ok(Sha256::digest(spki_of(cert)?).into())
}

impl ServerKeyCheck for CapturingCheck {
    fn check_server_cert(&self, cert: ServerCert<'_>) -> Result<ServerCertVerified, Error> {
        self.capture.with(|c| {
            c.cert_chain = std::iter::once(cert.end_entity)
                .chain(cert.intermediates)
                .map(|d| d.as_ref().to_vec())
                .collect();
        });
        match &self.inner {
            Inner::WebPki(v) => cert.verify_with(v.as_ref()),
            Inner::Pin(expected) => {
                let found = spki_sha256(cert.end_entity)?;
                if &found == expected {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(Error::InvalidCertificate(CertificateError::Other(
                        OtherError(Arc::new(PinMismatch {
                            expected: hex::encode(expected),
                            found: hex::encode(found),
                        })),
                    )))
                }
            }
        }
    }

    fn saw_signature(&self, message: &[u8], dss: &DigitallySignedStruct) {
        self.capture.with(|c| {
            c.cert_verify = Some((
                u16::from(dss.scheme),
                dss.signature().to_vec(),
                message.to_vec(),
            ));
        });
    }
}

/// A client config for one measurement, and the capture it fills.
pub(crate) fn client_config(trust: &Trust) -> Result<(Arc<ClientConfig>, Capture), Error> {
    let base = rustls::crypto::ring::default_provider();
    let provider = Arc::new(CryptoProvider {
        secure_random: &NONCE_RANDOM,
        ..base
    });
    let inner = match trust {
        Trust::PinnedSpki(pin) => Inner::Pin(*pin),
        Trust::WebPki => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            Inner::WebPki(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::General(e.to_string()))?,
            )
        }
        Trust::Ca(certs) => {
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots.add(c.clone())?;
            }
            Inner::WebPki(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::General(e.to_string()))?,
            )
        }
    };
    let capture = Capture::default();
    let verifier: Arc<dyn ServerCertVerifier> = Arc::new(Tls13Verifier::new(
        CapturingCheck {
            inner,
            capture: capture.clone(),
        },
        provider.signature_verification_algorithms,
    ));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // Every measurement is a full handshake: a resumed one has no CertificateVerify.
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.key_log = Arc::new(capture.clone());
    Ok((Arc::new(config), capture))
}

/// A client connection whose ClientHello carries `client_random` (see [`NonceRandom`]).
pub(crate) fn new_connection(
    config: Arc<ClientConfig>,
    sni: ServerName<'static>,
    client_random: [u8; 32],
) -> Result<ClientConnection, Error> {
    PLAN.with(|p| {
        *p.borrow_mut() = Some(Plan {
            client_random,
            fills_of_32: 0,
        })
    });
    let conn = ClientConnection::new(config, sni);
    PLAN.with(|p| *p.borrow_mut() = None);
    conn
}

/// ClientHello.random inside the first TLS record the client wrote, if it is a ClientHello:
/// record header (5), handshake header (4), legacy_version (2), then the random (32).
pub(crate) fn client_hello_random(record: &[u8]) -> Option<[u8; 32]> {
    if record.first() != Some(&22) || record.get(5) != Some(&1) {
        return None;
    }
    record.get(11..43)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_flight(conn: &mut ClientConnection) -> Vec<u8> {
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn the_planned_bytes_land_in_client_hello_random_only() {
        let (config, _) = client_config(&Trust::PinnedSpki([0; 32])).unwrap();
        let sni = ServerName::try_from("anchor.lab").unwrap();
        let planned = [0xA5; 32];
        let mut conn = new_connection(config.clone(), sni.clone(), planned).unwrap();
        let hello = first_flight(&mut conn);
        assert_eq!(client_hello_random(&hello), Some(planned));
        // The legacy session id (length byte at 43, then 32 bytes) is OS randomness.
        assert_eq!(hello[43], 32);
        assert_ne!(&hello[44..76], &planned);
        // The planned bytes appear exactly once: not in a key share or anywhere else.
        let count = hello.windows(32).filter(|w| *w == planned).count();
        assert_eq!(count, 1);

        // Outside `new_connection` the provider's random is the OS's.
        let mut plain = ClientConnection::new(config, sni).unwrap();
        let other = first_flight(&mut plain);
        assert_ne!(client_hello_random(&other), Some(planned));
    }

    #[test]
    fn client_hello_random_needs_a_client_hello() {
        assert_eq!(client_hello_random(&[]), None);
        assert_eq!(client_hello_random(&[23; 64]), None);
        let mut rec = vec![22, 3, 1, 0, 100, 1, 0, 0, 96, 3, 3];
        rec.extend_from_slice(&[9; 32]);
        assert_eq!(client_hello_random(&rec), Some([9; 32]));
        rec[5] = 2;
        assert_eq!(client_hello_random(&rec), None);
    }
}
