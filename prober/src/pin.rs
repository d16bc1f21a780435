//! Server authentication by SPKI pin: the responder's session key is bound into its quotes, so
//! the prober trusts that key, not WebPKI. It either pins a known SPKI or learns it on first use
//! (and reports which), always checking the TLS 1.3 CertificateVerify signature.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};

/// How the prober decides to trust a responder's session key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpkiPolicy {
    /// Accept only this SubjectPublicKeyInfo (DER).
    Pinned(Vec<u8>),
    /// Accept any key, record it, and say so (trust on first use).
    TrustOnFirstUse,
}

/// Verifies the server's certificate against an [`SpkiPolicy`], recording the SPKI seen.
#[derive(Debug)]
pub(crate) struct PinVerifier {
    policy: SpkiPolicy,
    seen: Arc<Mutex<Option<Vec<u8>>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinVerifier {
    pub(crate) fn new(policy: SpkiPolicy, seen: Arc<Mutex<Option<Vec<u8>>>>) -> Self {
        Self {
            policy,
            seen,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

/// Extracts the SubjectPublicKeyInfo (DER) of a certificate.
pub fn spki_of(cert: &[u8]) -> Result<Vec<u8>, Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|_| Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    Ok(parsed.tbs_certificate.subject_pki.raw.to_vec())
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let spki = spki_of(end_entity)?;
        if let SpkiPolicy::Pinned(expected) = &self.policy {
            if *expected != spki {
                return Err(Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(spki);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // QUIC is TLS 1.3 only.
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
