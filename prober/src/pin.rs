//! Server authentication by SPKI pin: the responder's session key is bound into its quotes, so
//! the prober trusts that key, not WebPKI. It either pins a known SPKI or learns it on first use
//! (and reports which); [`locus_net::Tls13Verifier`] checks the CertificateVerify signature.

use std::sync::{Arc, Mutex};

use locus_net::{spki_of, ServerCert, ServerKeyCheck, Tls13Verifier};
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, Error};

/// How the prober decides to trust a responder's session key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpkiPolicy {
    /// Accept only this SubjectPublicKeyInfo (DER).
    Pinned(Vec<u8>),
    /// Accept any key, record it, and say so (trust on first use).
    TrustOnFirstUse,
}

/// Checks the server's key against an [`SpkiPolicy`], recording the SPKI seen.
#[derive(Debug)]
struct PinCheck {
    policy: SpkiPolicy,
    seen: Arc<Mutex<Option<Vec<u8>>>>,
}

/// A verifier for `policy` that stores the responder's SPKI in `seen` once it is accepted.
pub(crate) fn pin_verifier(
    policy: SpkiPolicy,
    seen: Arc<Mutex<Option<Vec<u8>>>>,
) -> Arc<dyn ServerCertVerifier> {
    let algorithms = locus_net::crypto_provider().signature_verification_algorithms;
    Arc::new(Tls13Verifier::new(PinCheck { policy, seen }, algorithms))
}

impl ServerKeyCheck for PinCheck {
    fn check_server_cert(&self, cert: ServerCert<'_>) -> Result<ServerCertVerified, Error> {
        let spki = spki_of(cert.end_entity)?;
        if let SpkiPolicy::Pinned(expected) = &self.policy {
            if expected.as_slice() != spki {
                return Err(Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(spki.to_vec());
        Ok(ServerCertVerified::assertion())
    }
}
