//! The binding of TDX and vTPM evidence to one fresh nonce, one TLS session and each other.
//!
//! The byte layout is specified in `docs/binding.md`; `proto/tests/vectors/binding.txt` holds
//! test vectors that the unit tests below recompute.
//!
//! - TDX REPORTDATA (64 bytes) = SHA-512 of
//!   `REPORT_DATA_TAG | version:u8 | nonce_len:u16be | nonce | ak_hash:[32] | spki_hash:[32] |
//!   anchor_flag:u8 | anchor_digest:[32] (only when anchor_flag = 1)`.
//! - TPM qualifying data (32 bytes) = SHA-256 of
//!   `QUALIFYING_DATA_TAG | version:u8 | nonce_len:u16be | nonce | spki_hash:[32]`.
//!
//! `ak_hash` = SHA-256 of the AK's TPM2B_PUBLIC (size prefix included), `spki_hash` = SHA-256 of
//! the session key's SubjectPublicKeyInfo DER. The tags differ, so a value computed for one use
//! can never be replayed as the other.

use sha2::{Digest, Sha256, Sha512};
use thiserror::Error;

/// Domain tag of the TDX REPORTDATA hash (NUL-terminated so no tag is a prefix of another).
pub const REPORT_DATA_TAG: &[u8] = b"locus/binding/tdx-report-data/v1\0";

/// Domain tag of the TPM2_Quote qualifying data hash.
pub const QUALIFYING_DATA_TAG: &[u8] = b"locus/binding/tpm-qualifying-data/v1\0";

/// The binding version this build writes and checks (equal to the protocol version).
pub const BINDING_VERSION: u8 = crate::PROTOCOL_VERSION;

/// Why binding inputs were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BindingError {
    /// Nonces longer than 64 KiB cannot be length-prefixed; real nonces are 32 bytes.
    #[error("nonce of {len} bytes is too long to bind (at most {max})")]
    NonceTooLong { len: usize, max: usize },
}

/// What one evidence answer is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingInputs<'a> {
    /// The verifier's fresh nonce.
    pub nonce: &'a [u8],
    /// SHA-256 of the AK's TPM2B_PUBLIC; all zeros when no vTPM is part of the evidence.
    pub ak_public_hash: [u8; 32],
    /// SHA-256 of the session key's SubjectPublicKeyInfo (DER).
    pub spki_hash: [u8; 32],
    /// Digest of the anchor report, when anchors were timed.
    pub anchor_digest: Option<[u8; 32]>,
}

/// SHA-256 of an AK public area as stored in the bundle (TPM2B_PUBLIC, size prefix included).
pub fn ak_public_hash(tpm2b_public: &[u8]) -> [u8; 32] {
    Sha256::digest(tpm2b_public).into()
}

/// SHA-256 of a SubjectPublicKeyInfo DER.
pub fn spki_hash(spki_der: &[u8]) -> [u8; 32] {
    Sha256::digest(spki_der).into()
}

fn nonce_prefix(nonce: &[u8]) -> Result<[u8; 2], BindingError> {
    u16::try_from(nonce.len())
        .map(u16::to_be_bytes)
        .map_err(|_| BindingError::NonceTooLong {
            len: nonce.len(),
            max: u16::MAX as usize,
        })
}

/// The exact bytes hashed into TDX REPORTDATA (exposed for the docs and test vectors).
pub fn report_data_preimage(inputs: &BindingInputs<'_>) -> Result<Vec<u8>, BindingError> {
    let mut m = Vec::with_capacity(REPORT_DATA_TAG.len() + 3 + inputs.nonce.len() + 97);
    m.extend_from_slice(REPORT_DATA_TAG);
    m.push(BINDING_VERSION);
    m.extend_from_slice(&nonce_prefix(inputs.nonce)?);
    m.extend_from_slice(inputs.nonce);
    m.extend_from_slice(&inputs.ak_public_hash);
    m.extend_from_slice(&inputs.spki_hash);
    match inputs.anchor_digest {
        None => m.push(0),
        Some(d) => {
            m.push(1);
            m.extend_from_slice(&d);
        }
    }
    Ok(m)
}

/// TDX REPORTDATA for these inputs.
pub fn report_data(inputs: &BindingInputs<'_>) -> Result<[u8; 64], BindingError> {
    Ok(Sha512::digest(report_data_preimage(inputs)?).into())
}

/// The exact bytes hashed into the TPM qualifying data.
pub fn qualifying_data_preimage(
    nonce: &[u8],
    spki_hash: &[u8; 32],
) -> Result<Vec<u8>, BindingError> {
    let mut m = Vec::with_capacity(QUALIFYING_DATA_TAG.len() + 3 + nonce.len() + 32);
    m.extend_from_slice(QUALIFYING_DATA_TAG);
    m.push(BINDING_VERSION);
    m.extend_from_slice(&nonce_prefix(nonce)?);
    m.extend_from_slice(nonce);
    m.extend_from_slice(spki_hash);
    Ok(m)
}

/// TPM2_Quote qualifying data (`extraData` of the TPMS_ATTEST) for this nonce and session.
pub fn qualifying_data(nonce: &[u8], spki_hash: &[u8; 32]) -> Result<[u8; 32], BindingError> {
    Ok(Sha256::digest(qualifying_data_preimage(nonce, spki_hash)?).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name = hex` lines, `#` comments; see the file's header for how each vector was built.
    const VECTORS: &str = include_str!("../tests/vectors/binding.txt");

    fn vector(name: &str) -> Vec<u8> {
        VECTORS
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == name).then(|| hex::decode(v.trim()).unwrap())
            })
            .unwrap_or_else(|| panic!("vector {name} missing"))
    }

    fn inputs_from_vectors(anchor: bool) -> ([u8; 32], [u8; 32], Vec<u8>, Option<[u8; 32]>) {
        let ak = ak_public_hash(&vector("ak_public"));
        let spki = spki_hash(&vector("spki"));
        let anchor = anchor.then(|| vector("anchor_digest").try_into().unwrap());
        (ak, spki, vector("nonce"), anchor)
    }

    #[test]
    fn vectors_recompute() {
        let (ak, spki, nonce, _) = inputs_from_vectors(false);
        assert_eq!(ak.to_vec(), vector("ak_public_hash"));
        assert_eq!(spki.to_vec(), vector("spki_hash"));
        let inputs = BindingInputs {
            nonce: &nonce,
            ak_public_hash: ak,
            spki_hash: spki,
            anchor_digest: None,
        };
        assert_eq!(
            report_data_preimage(&inputs).unwrap(),
            vector("report_data_preimage")
        );
        assert_eq!(
            report_data(&inputs).unwrap().to_vec(),
            vector("report_data")
        );
        let (_, _, _, anchor) = inputs_from_vectors(true);
        let with_anchor = BindingInputs {
            anchor_digest: anchor,
            ..inputs
        };
        assert_eq!(
            report_data(&with_anchor).unwrap().to_vec(),
            vector("report_data_with_anchor")
        );
        assert_eq!(
            qualifying_data_preimage(&nonce, &spki).unwrap(),
            vector("qualifying_data_preimage")
        );
        assert_eq!(
            qualifying_data(&nonce, &spki).unwrap().to_vec(),
            vector("qualifying_data")
        );
    }

    #[test]
    fn every_input_changes_the_binding() {
        let nonce = [1u8; 32];
        let base = BindingInputs {
            nonce: &nonce,
            ak_public_hash: [2; 32],
            spki_hash: [3; 32],
            anchor_digest: None,
        };
        let rd = report_data(&base).unwrap();
        let other_nonce = [9u8; 32];
        for changed in [
            BindingInputs {
                nonce: &other_nonce,
                ..base
            },
            BindingInputs {
                ak_public_hash: [4; 32],
                ..base
            },
            BindingInputs {
                spki_hash: [4; 32],
                ..base
            },
            BindingInputs {
                anchor_digest: Some([0; 32]),
                ..base
            },
        ] {
            assert_ne!(report_data(&changed).unwrap(), rd);
        }
        let qd = qualifying_data(&nonce, &[3; 32]).unwrap();
        assert_ne!(qualifying_data(&other_nonce, &[3; 32]).unwrap(), qd);
        assert_ne!(qualifying_data(&nonce, &[4; 32]).unwrap(), qd);
        // The two hashes use different tags: the qualifying data is not a REPORTDATA prefix.
        assert_ne!(rd[..32], qd);
    }

    #[test]
    fn overlong_nonce_is_refused() {
        let nonce = vec![0u8; 70_000];
        assert_eq!(
            qualifying_data(&nonce, &[0; 32]),
            Err(BindingError::NonceTooLong {
                len: 70_000,
                max: 65_535
            })
        );
    }
}
