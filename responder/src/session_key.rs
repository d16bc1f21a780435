//! The session key: one P-256 key per responder start, used as the QUIC/TLS key and to sign
//! transcripts, so that binding its SPKI into a quote binds every fast answer too.

use std::sync::Arc;

use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The responder's session key and its self-signed certificate.
pub struct SessionKey {
    signing: SigningKey,
    spki_der: Vec<u8>,
    cert_der: CertificateDer<'static>,
    pkcs8_der: Vec<u8>,
}

/// Why a session key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    #[error("encoding the session key: {0}")]
    Encoding(String),
    #[error("self-signing the session certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

impl SessionKey {
    /// Generates a fresh key from the OS RNG.
    pub fn generate() -> Result<Arc<Self>, SessionKeyError> {
        Self::from_signing_key(SigningKey::random(&mut rand::rngs::OsRng))
    }

    pub fn from_signing_key(signing: SigningKey) -> Result<Arc<Self>, SessionKeyError> {
        let pkcs8 = signing
            .to_pkcs8_der()
            .map_err(|e| SessionKeyError::Encoding(e.to_string()))?;
        let spki_der = signing
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| SessionKeyError::Encoding(e.to_string()))?
            .as_bytes()
            .to_vec();
        let pkcs8_der = pkcs8.as_bytes().to_vec();
        let key_pair = rcgen::KeyPair::try_from(pkcs8_der.as_slice())?;
        let params = rcgen::CertificateParams::new(vec!["locus-responder".to_string()])?;
        let cert = params.self_signed(&key_pair)?;
        Ok(Arc::new(Self {
            signing,
            spki_der,
            cert_der: cert.der().clone(),
            pkcs8_der,
        }))
    }

    /// SubjectPublicKeyInfo (DER) of the session key: what quotes bind and probers pin.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    pub(crate) fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8_der.clone()))
    }
}
