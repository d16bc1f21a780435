//! The binding of TDX and vTPM evidence to one fresh nonce, one TLS session and each other.
//!
//! The byte layout is specified in `docs/binding.md`; `proto/tests/vectors/binding.txt` holds
//! test vectors that the unit tests below recompute.
//!
//! - TDX REPORTDATA (64 bytes) = SHA-512 of
//!   `tag | version:u8 | nonce_len:u16be | nonce | ak_hash:[32] | spki_hash:[32] |
//!   anchor_flag:u8 | anchor_digest:[32] (only when anchor_flag = 1) |
//!   timings_digest:[32] (version 2 only)`; the tag names the version.
//! - TPM qualifying data (32 bytes) = SHA-256 of
//!   `QUALIFYING_DATA_TAG | 0x01 | nonce_len:u16be | nonce | spki_hash:[32]` (both versions).
//! - Version 2: the qualifying data of link `i` of the AK-signed chain = SHA-256 of
//!   `CHAIN_TAG | 0x02 | nonce_len:u16be | nonce | i:u32be | SHA-256(previous signature)`, the
//!   previous signature of link 0 being the main quote's; and the in-TD timings measured before
//!   the TDX quote are hashed into `timings_digest` ([`timings_digest`]).
//! - Version 3: as version 2, but each link's qualifying data also commits to a 32-byte secret
//!   the responder draws inside the TD per request and reveals only in the bundle, after the
//!   chain: `CHAIN_TAG_V3 | 0x03 | nonce_len:u16be | nonce | secret:[32] | i:u32be |
//!   SHA-256(previous signature)` ([`chain_qualifying_data_v3`]). Everything else in a version 2
//!   link is visible to the vTPM transport, which could ask the real TPM for every link at once
//!   and answer them from a local stub; the secret makes link `i + 1` unknowable before the TD
//!   sends it. The secret is also hashed into the timings digest ([`timings_digest_v3`]).
//!
//! `ak_hash` = SHA-256 of the AK's TPM2B_PUBLIC (size prefix included), `spki_hash` = SHA-256 of
//! the session key's SubjectPublicKeyInfo DER. The tags differ, so a value computed for one use
//! can never be replayed as the other.

use sha2::{Digest, Sha256, Sha512};
use thiserror::Error;

use crate::evidence::ResponderTimings;

/// Domain tag of the TDX REPORTDATA hash (NUL-terminated so no tag is a prefix of another).
pub const REPORT_DATA_TAG: &[u8] = b"locus/binding/tdx-report-data/v1\0";

/// Domain tag of the version 2 REPORTDATA hash (it also covers the in-TD timings).
pub const REPORT_DATA_TAG_V2: &[u8] = b"locus/binding/tdx-report-data/v2\0";

/// Domain tag of the TPM2_Quote qualifying data hash.
pub const QUALIFYING_DATA_TAG: &[u8] = b"locus/binding/tpm-qualifying-data/v1\0";

/// Domain tag of the qualifying data of one link of the AK-signed chain (version 2).
pub const CHAIN_TAG: &[u8] = b"locus/binding/tpm-chain/v2\0";

/// Domain tag of the digest of the in-TD timings (version 2).
pub const TIMINGS_TAG: &[u8] = b"locus/binding/in-td-timings/v2\0";

/// Domain tag of the version 3 REPORTDATA hash.
pub const REPORT_DATA_TAG_V3: &[u8] = b"locus/binding/tdx-report-data/v3\0";

/// Domain tag of the qualifying data of one link of the chain (version 3: with the TD's secret).
pub const CHAIN_TAG_V3: &[u8] = b"locus/binding/tpm-chain/v3\0";

/// Domain tag of the digest of the in-TD timings and the chain secret (version 3).
pub const TIMINGS_TAG_V3: &[u8] = b"locus/binding/in-td-timings/v3\0";

/// Length of the chain secret the responder draws per evidence request (version 3).
pub const CHAIN_SECRET_LEN: usize = 32;

/// The binding version this build writes.
pub const BINDING_VERSION: u8 = 3;

/// The version byte of the main quote's qualifying data: its layout did not change in
/// binding version 2, so both versions quote the same value.
const QUALIFYING_DATA_VERSION: u8 = 1;

/// Which binding REPORTDATA follows, with what only that version binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingVersion {
    /// Nonce, AK, session key and anchor report; the in-TD timings are not covered.
    V1,
    /// Version 1's inputs and the digest of the in-TD timings measured before the TDX quote
    /// ([`timings_digest`]).
    V2 { timings_digest: [u8; 32] },
    /// Version 2's layout with its own tag; the digest also covers the chain secret
    /// ([`timings_digest_v3`]), and the chain's links commit to it ([`chain_qualifying_data_v3`]).
    V3 { timings_digest: [u8; 32] },
}

impl BindingVersion {
    /// The version number (the byte in the preimage).
    pub fn number(&self) -> u8 {
        match self {
            BindingVersion::V1 => 1,
            BindingVersion::V2 { .. } => 2,
            BindingVersion::V3 { .. } => 3,
        }
    }
}

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
    /// The binding version, with the timings digest in version 2.
    pub version: BindingVersion,
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
    let tag = match inputs.version {
        BindingVersion::V1 => REPORT_DATA_TAG,
        BindingVersion::V2 { .. } => REPORT_DATA_TAG_V2,
        BindingVersion::V3 { .. } => REPORT_DATA_TAG_V3,
    };
    let mut m = Vec::with_capacity(tag.len() + 3 + inputs.nonce.len() + 129);
    m.extend_from_slice(tag);
    m.push(inputs.version.number());
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
    match inputs.version {
        BindingVersion::V1 => {}
        BindingVersion::V2 { timings_digest } | BindingVersion::V3 { timings_digest } => {
            m.extend_from_slice(&timings_digest)
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
    m.push(QUALIFYING_DATA_VERSION);
    m.extend_from_slice(&nonce_prefix(nonce)?);
    m.extend_from_slice(nonce);
    m.extend_from_slice(spki_hash);
    Ok(m)
}

/// TPM2_Quote qualifying data (`extraData` of the TPMS_ATTEST) for this nonce and session.
pub fn qualifying_data(nonce: &[u8], spki_hash: &[u8; 32]) -> Result<[u8; 32], BindingError> {
    Ok(Sha256::digest(qualifying_data_preimage(nonce, spki_hash)?).into())
}

/// The exact bytes hashed into the qualifying data of link `index` of the AK-signed chain.
pub fn chain_qualifying_data_preimage(
    nonce: &[u8],
    index: u32,
    previous_signature: &[u8],
) -> Result<Vec<u8>, BindingError> {
    let mut m = Vec::with_capacity(CHAIN_TAG.len() + 7 + nonce.len() + 32);
    m.extend_from_slice(CHAIN_TAG);
    m.push(2);
    m.extend_from_slice(&nonce_prefix(nonce)?);
    m.extend_from_slice(nonce);
    m.extend_from_slice(&index.to_be_bytes());
    m.extend_from_slice(&Sha256::digest(previous_signature));
    Ok(m)
}

/// Qualifying data of link `index` of the chain of AK-signed quotes (binding version 2):
/// each link commits to the previous link's signature (link 0 to the main quote's), so no
/// link can be made before the one before it was signed, and none without the AK.
pub fn chain_qualifying_data(
    nonce: &[u8],
    index: u32,
    previous_signature: &[u8],
) -> Result<[u8; 32], BindingError> {
    Ok(Sha256::digest(chain_qualifying_data_preimage(
        nonce,
        index,
        previous_signature,
    )?)
    .into())
}

/// The exact bytes hashed into the qualifying data of link `index` of the version 3 chain.
pub fn chain_qualifying_data_v3_preimage(
    nonce: &[u8],
    secret: &[u8; CHAIN_SECRET_LEN],
    index: u32,
    previous_signature: &[u8],
) -> Result<Vec<u8>, BindingError> {
    let mut m = Vec::with_capacity(CHAIN_TAG_V3.len() + 7 + nonce.len() + 64);
    m.extend_from_slice(CHAIN_TAG_V3);
    m.push(3);
    m.extend_from_slice(&nonce_prefix(nonce)?);
    m.extend_from_slice(nonce);
    m.extend_from_slice(secret);
    m.extend_from_slice(&index.to_be_bytes());
    m.extend_from_slice(&Sha256::digest(previous_signature));
    Ok(m)
}

/// Qualifying data of link `index` of the chain (binding version 3): version 2's link plus
/// the responder's per-request `secret`, which never crosses the vTPM transport in clear
/// before the chain is done. So the transport cannot ask the real TPM for link `i + 1` before
/// the TD sends it, and every link carries a full round trip to the TPM holding the AK.
pub fn chain_qualifying_data_v3(
    nonce: &[u8],
    secret: &[u8; CHAIN_SECRET_LEN],
    index: u32,
    previous_signature: &[u8],
) -> Result<[u8; 32], BindingError> {
    Ok(Sha256::digest(chain_qualifying_data_v3_preimage(
        nonce,
        secret,
        index,
        previous_signature,
    )?)
    .into())
}

/// The exact bytes hashed into [`timings_digest`]: every in-TD timing known before the TDX
/// quote is taken. `tdx_quote_ns` and `evidence_ns` are measured after it and are not covered.
pub fn timings_preimage(t: &ResponderTimings) -> Vec<u8> {
    timings_preimage_tagged(TIMINGS_TAG, t)
}

/// The exact bytes hashed into [`timings_digest_v3`]: version 2's fields under the version 3
/// tag, then `len(chain_secret):u16 | chain_secret` (length 0 without a vTPM part).
pub fn timings_preimage_v3(t: &ResponderTimings, chain_secret: &[u8]) -> Vec<u8> {
    let mut m = timings_preimage_tagged(TIMINGS_TAG_V3, t);
    // A secret is 32 bytes; a longer one (only in a forged bundle) is cut at the prefix's
    // limit, and the chain check refuses it anyway.
    let len = u16::try_from(chain_secret.len()).unwrap_or(u16::MAX);
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(&chain_secret[..usize::from(len)]);
    m
}

/// SHA-256 of [`timings_preimage_v3`], bound into REPORTDATA by binding version 3.
pub fn timings_digest_v3(t: &ResponderTimings, chain_secret: &[u8]) -> [u8; 32] {
    Sha256::digest(timings_preimage_v3(t, chain_secret)).into()
}

fn timings_preimage_tagged(tag: &[u8], t: &ResponderTimings) -> Vec<u8> {
    fn optional(m: &mut Vec<u8>, v: Option<u64>) {
        match v {
            None => m.push(0),
            Some(v) => {
                m.push(1);
                m.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
    let mut m = Vec::with_capacity(tag.len() + 60 + 8 * t.tpm_chain_ns.len());
    m.extend_from_slice(tag);
    optional(&mut m, t.tpm_quote_ns);
    optional(&mut m, t.tpm_cheap_rtt_min_ns);
    m.extend_from_slice(&t.tpm_cheap_samples.to_be_bytes());
    // A u32 count: a bundle is at most 4 MiB, so no real chain comes near it.
    let n = u32::try_from(t.tpm_chain_ns.len()).unwrap_or(u32::MAX);
    m.extend_from_slice(&n.to_be_bytes());
    for ns in &t.tpm_chain_ns {
        m.extend_from_slice(&ns.to_be_bytes());
    }
    m
}

/// SHA-256 of [`timings_preimage`], bound into REPORTDATA by binding version 2.
pub fn timings_digest(t: &ResponderTimings) -> [u8; 32] {
    Sha256::digest(timings_preimage(t)).into()
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
            version: BindingVersion::V1,
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

    fn vector_timings() -> ResponderTimings {
        ResponderTimings {
            tdx_quote_ns: Some(9),
            tpm_quote_ns: Some(3_400_000),
            tpm_cheap_rtt_min_ns: Some(41_000),
            tpm_cheap_samples: 5,
            evidence_ns: Some(10),
            tpm_chain_ns: vec![3_500_000, 3_300_000, 3_450_000],
        }
    }

    #[test]
    fn v2_vectors_recompute() {
        let (ak, spki, nonce, anchor) = inputs_from_vectors(true);
        let t = vector_timings();
        assert_eq!(timings_preimage(&t), vector("timings_preimage"));
        assert_eq!(timings_digest(&t).to_vec(), vector("timings_digest"));
        let inputs = BindingInputs {
            nonce: &nonce,
            ak_public_hash: ak,
            spki_hash: spki,
            anchor_digest: None,
            version: BindingVersion::V2 {
                timings_digest: timings_digest(&t),
            },
        };
        assert_eq!(
            report_data_preimage(&inputs).unwrap(),
            vector("report_data_v2_preimage")
        );
        assert_eq!(
            report_data(&inputs).unwrap().to_vec(),
            vector("report_data_v2")
        );
        let with_anchor = BindingInputs {
            anchor_digest: anchor,
            ..inputs
        };
        assert_eq!(
            report_data(&with_anchor).unwrap().to_vec(),
            vector("report_data_v2_with_anchor")
        );
        let previous = vector("chain_previous_signature");
        assert_eq!(
            chain_qualifying_data_preimage(&nonce, 1, &previous).unwrap(),
            vector("chain_qualifying_data_preimage")
        );
        assert_eq!(
            chain_qualifying_data(&nonce, 1, &previous)
                .unwrap()
                .to_vec(),
            vector("chain_qualifying_data")
        );
    }

    #[test]
    fn v3_vectors_recompute() {
        let (ak, spki, nonce, anchor) = inputs_from_vectors(true);
        let t = vector_timings();
        let secret: [u8; 32] = vector("chain_secret").try_into().unwrap();
        assert_eq!(
            timings_preimage_v3(&t, &secret),
            vector("timings_v3_preimage")
        );
        let digest = timings_digest_v3(&t, &secret);
        assert_eq!(digest.to_vec(), vector("timings_v3_digest"));
        let inputs = BindingInputs {
            nonce: &nonce,
            ak_public_hash: ak,
            spki_hash: spki,
            anchor_digest: None,
            version: BindingVersion::V3 {
                timings_digest: digest,
            },
        };
        assert_eq!(
            report_data_preimage(&inputs).unwrap(),
            vector("report_data_v3_preimage")
        );
        assert_eq!(
            report_data(&inputs).unwrap().to_vec(),
            vector("report_data_v3")
        );
        let with_anchor = BindingInputs {
            anchor_digest: anchor,
            ..inputs
        };
        assert_eq!(
            report_data(&with_anchor).unwrap().to_vec(),
            vector("report_data_v3_with_anchor")
        );
        let previous = vector("chain_previous_signature");
        assert_eq!(
            chain_qualifying_data_v3_preimage(&nonce, &secret, 1, &previous).unwrap(),
            vector("chain_v3_qualifying_data_preimage")
        );
        assert_eq!(
            chain_qualifying_data_v3(&nonce, &secret, 1, &previous)
                .unwrap()
                .to_vec(),
            vector("chain_v3_qualifying_data")
        );
    }

    #[test]
    fn a_v3_link_needs_the_secret() {
        let nonce = [1u8; 32];
        let q = chain_qualifying_data_v3(&nonce, &[7; 32], 0, b"sig").unwrap();
        // What the vTPM transport sees (nonce, index, previous signature) gives another value.
        assert_ne!(chain_qualifying_data(&nonce, 0, b"sig").unwrap(), q);
        assert_ne!(
            chain_qualifying_data_v3(&nonce, &[8; 32], 0, b"sig").unwrap(),
            q
        );
        assert_ne!(
            timings_digest_v3(&vector_timings(), &[7; 32]),
            timings_digest_v3(&vector_timings(), &[8; 32])
        );
    }

    #[test]
    fn the_timings_digest_covers_every_pre_quote_timing_only() {
        let base = vector_timings();
        let d = timings_digest(&base);
        for changed in [
            ResponderTimings {
                tpm_quote_ns: Some(1),
                ..base.clone()
            },
            ResponderTimings {
                tpm_cheap_rtt_min_ns: None,
                ..base.clone()
            },
            ResponderTimings {
                tpm_cheap_samples: 4,
                ..base.clone()
            },
            ResponderTimings {
                tpm_chain_ns: vec![3_500_000, 3_300_000],
                ..base.clone()
            },
            ResponderTimings {
                tpm_chain_ns: vec![3_500_000, 1, 3_450_000],
                ..base.clone()
            },
        ] {
            assert_ne!(timings_digest(&changed), d, "{changed:?}");
        }
        // Measured after the TDX quote, so they cannot be inside it.
        let after = ResponderTimings {
            tdx_quote_ns: None,
            evidence_ns: Some(77),
            ..base.clone()
        };
        assert_eq!(timings_digest(&after), d);
    }

    #[test]
    fn every_chain_input_changes_the_link() {
        let nonce = [1u8; 32];
        let q = chain_qualifying_data(&nonce, 0, b"sig").unwrap();
        assert_ne!(chain_qualifying_data(&[2u8; 32], 0, b"sig").unwrap(), q);
        assert_ne!(chain_qualifying_data(&nonce, 1, b"sig").unwrap(), q);
        assert_ne!(chain_qualifying_data(&nonce, 0, b"sig2").unwrap(), q);
        assert_ne!(qualifying_data(&nonce, &[0; 32]).unwrap(), q);
    }

    #[test]
    fn every_input_changes_the_binding() {
        let nonce = [1u8; 32];
        let base = BindingInputs {
            nonce: &nonce,
            ak_public_hash: [2; 32],
            spki_hash: [3; 32],
            anchor_digest: None,
            version: BindingVersion::V2 {
                timings_digest: [5; 32],
            },
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
            BindingInputs {
                version: BindingVersion::V2 {
                    timings_digest: [6; 32],
                },
                ..base
            },
            BindingInputs {
                version: BindingVersion::V1,
                ..base
            },
            BindingInputs {
                version: BindingVersion::V3 {
                    timings_digest: [5; 32],
                },
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
