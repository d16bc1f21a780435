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

impl SpkiPolicy {
    /// Whether the key is known beforehand (rather than learned on first use).
    pub fn is_pinned(&self) -> bool {
        matches!(self, Self::Pinned(_))
    }
}

/// The responder SPKI a [`pin_verifier`] accepted; empty until the handshake checked it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeenKey(Arc<Mutex<Option<Vec<u8>>>>);

impl SeenKey {
    pub(crate) fn spki(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }
}

/// Checks the server's key against an [`SpkiPolicy`], recording the SPKI seen.
#[derive(Debug)]
struct PinCheck {
    policy: SpkiPolicy,
    seen: SeenKey,
}

/// A verifier for `policy`, and where it records the responder's SPKI once it accepted it.
pub(crate) fn pin_verifier(policy: SpkiPolicy) -> (Arc<dyn ServerCertVerifier>, SeenKey) {
    let seen = SeenKey::default();
    let algorithms = locus_net::crypto_provider().signature_verification_algorithms;
    let check = PinCheck {
        policy,
        seen: seen.clone(),
    };
    (Arc::new(Tls13Verifier::new(check, algorithms)), seen)
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
        *self.seen.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(spki.to_vec());
        Ok(ServerCertVerified::assertion())
    }
}
