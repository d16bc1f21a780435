//! Server authentication by key rather than by WebPKI name: the responder's session key is
//! bound into its quotes and an anchor may be pinned by its SPKI hash, so each end decides
//! about the server key itself ([`ServerKeyCheck`]) and [`Tls13Verifier`] does the rest a
//! rustls verifier must: refuse TLS 1.2 and check the TLS 1.3 CertificateVerify signature
//! with the provider's algorithms, so the server proves it holds the key it showed.

use std::fmt::Debug;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, PeerIncompatible, SignatureScheme};

/// What one end decides about the server's certificate; see [`Tls13Verifier`].
pub trait ServerKeyCheck: Debug + Send + Sync {
    /// Trusts or refuses the server's certificate chain, as
    /// [`ServerCertVerifier::verify_server_cert`] does.
    fn check_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error>;

    /// Sees each TLS 1.3 CertificateVerify before its signature is checked, e.g. to keep it for
    /// an offline re-check. Does nothing by default.
    fn saw_signature(&self, _message: &[u8], _dss: &DigitallySignedStruct) {}
}

/// A TLS 1.3-only server certificate verifier: the certificate decision is `C`'s, the
/// handshake signature is checked with `algorithms`.
#[derive(Debug)]
pub struct Tls13Verifier<C> {
    check: C,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<C: ServerKeyCheck> Tls13Verifier<C> {
    /// `algorithms` are the crypto provider's `signature_verification_algorithms`.
    pub fn new(check: C, algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self { check, algorithms }
    }
}

impl<C: ServerKeyCheck> ServerCertVerifier for Tls13Verifier<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check
            .check_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // Both ends offer TLS 1.3 only (QUIC is 1.3 only); a 1.2 signature means the server
        // ignored that.
        Err(Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.check.saw_signature(message, dss);
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The SubjectPublicKeyInfo (DER) of a certificate; an unparsable one is `BadEncoding`.
pub fn spki_of(cert: &[u8]) -> Result<&[u8], Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(parsed.tbs_certificate.subject_pki.raw)
}
