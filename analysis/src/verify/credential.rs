//! Credential activation: the proof that the AK lives in the TPM the EK certificate endorses
//! (`docs/binding.md`, "Credential activation"). The verifier made a TPM2_MakeCredential
//! challenge to the certified EK for the AK's name ([`locus_proto::credential`]); the bundle
//! carries what the vTPM's TPM2_ActivateCredential returned.

use locus_proto::credential::{CredentialError, EkPublic};
use x509_parser::prelude::FromDer;

/// The EK public key of an EK certificate (DER), to encrypt a credential to.
pub fn ek_public_from_cert(der: &[u8]) -> Result<EkPublic, CredentialError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| CredentialError::UnsupportedEk(format!("EK certificate: {e}")))?;
    EkPublic::from_spki_der(cert.public_key().raw)
}
