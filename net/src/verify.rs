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

/// What the server showed in its Certificate message: the arguments of
/// [`ServerCertVerifier::verify_server_cert`].
#[derive(Debug, Clone, Copy)]
pub struct ServerCert<'a> {
    pub end_entity: &'a CertificateDer<'a>,
    pub intermediates: &'a [CertificateDer<'a>],
    pub server_name: &'a ServerName<'a>,
    pub ocsp_response: &'a [u8],
    pub now: UnixTime,
}

impl ServerCert<'_> {
    /// Verifies it with another verifier, e.g. rustls's WebPKI one.
    pub fn verify_with(&self, v: &dyn ServerCertVerifier) -> Result<ServerCertVerified, Error> {
        v.verify_server_cert(
            self.end_entity,
            self.intermediates,
            self.server_name,
            self.ocsp_response,
            self.now,
        )
    }
}

/// What one end decides about the server's certificate; see [`Tls13Verifier`].
pub trait ServerKeyCheck: Debug + Send + Sync {
    /// Trusts or refuses the server's certificate chain.
    fn check_server_cert(&self, cert: ServerCert<'_>) -> Result<ServerCertVerified, Error>;

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
        self.check.check_server_cert(ServerCert {
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        })
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

#[cfg(test)]
mod tests {
    use rustls::pki_types::UnixTime;

    use super::*;

    /// Accepts one SPKI.
    #[derive(Debug)]
    struct Only {
        spki: Vec<u8>,
    }

    impl ServerKeyCheck for Only {
        fn check_server_cert(&self, cert: ServerCert<'_>) -> Result<ServerCertVerified, Error> {
            if spki_of(cert.end_entity)? == self.spki.as_slice() {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn new_cert() -> (CertificateDer<'static>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.der().clone(), key.public_key_der())
    }

    fn verifier(spki: Vec<u8>) -> Tls13Verifier<Only> {
        let algorithms = crate::crypto_provider().signature_verification_algorithms;
        Tls13Verifier::new(Only { spki }, algorithms)
    }

    #[test]
    fn the_check_decides_about_the_certificate() {
        let (cert, spki) = new_cert();
        let (other, _) = new_cert();
        let v = verifier(spki);
        let name = ServerName::try_from("x").unwrap();
        let now = UnixTime::now();
        assert!(v.verify_server_cert(&cert, &[], &name, &[], now).is_ok());
        assert_eq!(
            v.verify_server_cert(&other, &[], &name, &[], now).err(),
            Some(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            ))
        );
    }

    #[test]
    fn spki_of_is_the_certificate_key_and_garbage_is_bad_encoding() {
        let (cert, spki) = new_cert();
        assert_eq!(spki_of(&cert).unwrap(), spki.as_slice());
        assert_eq!(
            spki_of(&cert[..cert.len() - 1]).err(),
            Some(Error::InvalidCertificate(CertificateError::BadEncoding))
        );
    }
}
