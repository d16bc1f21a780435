//! The provider's AK certificate check (`ak_ek_binding`): the certificate's key is the AK,
//! and it chains to a provider root.

use super::{ekchain, EkChainError, EvidenceError};
use crate::verify::tpm;

/// The provider's AK certificate certifies this AK: its key is the AK's public point, and it
/// chains to a provider root (GCE issues AK certificates under its EK/AK CA).
pub fn check_ak_cert(
    ak_public: &[u8],
    ak_cert: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: i64,
) -> Result<(), EvidenceError> {
    use x509_parser::prelude::FromDer;
    let ak = tpm::parse_ak_public(ak_public)?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(ak_cert)
        .map_err(|e| EkChainError::Parse(e.to_string()))?;
    let matches = match (&ak.key, cert.public_key().parsed()) {
        (tpm::AkKey::Ecc { x, y }, Ok(x509_parser::public_key::PublicKey::EC(point))) => {
            let mut expected = vec![0x04];
            for c in [x, y] {
                let mut padded = [0u8; 32];
                let n = c.len().min(32);
                padded[32 - n..].copy_from_slice(&c[c.len() - n..]);
                expected.extend_from_slice(&padded);
            }
            point.data() == expected.as_slice()
        }
        (tpm::AkKey::Rsa { n, e }, Ok(x509_parser::public_key::PublicKey::RSA(rsa))) => {
            same_rsa_key((rsa.modulus, rsa.exponent), (n, e))
        }
        _ => false,
    };
    if !matches {
        return Err(EvidenceError::AkCertKeyMismatch);
    }
    ekchain::verify_chain(ak_cert, intermediates, roots, now)?;
    Ok(())
}

/// Two RSA public keys (modulus, exponent; big-endian) are equal, leading zeros aside (DER
/// integers carry a sign byte, JWKs and TPM2B buffers do not).
pub(super) fn same_rsa_key(a: (&[u8], &[u8]), b: (&[u8], &[u8])) -> bool {
    fn strip(v: &[u8]) -> &[u8] {
        let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
        &v[first..]
    }
    strip(a.0) == strip(b.0) && strip(a.1) == strip(b.1)
}
