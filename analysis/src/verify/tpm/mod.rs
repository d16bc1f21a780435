//! TPM 2.0 structures a vTPM quote consists of (TPMS_ATTEST, TPMT_SIGNATURE, TPM2B_PUBLIC),
//! parsed with every length checked, and the quote's signature and PCR digest verified.
//!
//! Supported AKs: ECC NIST P-256 with ECDSA-SHA256 (what locus's responder creates) and RSA
//! (2048-8192 bits) with RSASSA-PKCS1-v1_5 or RSA-PSS over SHA-256 (providers that only offer
//! RSA AKs, e.g. Azure's HCL AK).

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::EncodedPoint;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// TPM_GENERATED_VALUE: the magic of every TPMS_ATTEST the TPM signs.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// TPM_ALG_* values used here.
pub const ALG_SHA256: u16 = 0x000b;
pub const ALG_ECC: u16 = 0x0023;
pub const ALG_RSA: u16 = 0x0001;
pub const ALG_ECDSA: u16 = 0x0018;
pub const ALG_RSASSA: u16 = 0x0014;
pub const ALG_RSAPSS: u16 = 0x0016;
pub const ALG_NULL: u16 = 0x0010;
pub const ECC_NIST_P256: u16 = 0x0003;

/// TPMA_OBJECT bits an AK must have.
const ATTR_FIXED_TPM: u32 = 1 << 1;
const ATTR_FIXED_PARENT: u32 = 1 << 4;
const ATTR_SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
const ATTR_RESTRICTED: u32 = 1 << 16;
const ATTR_DECRYPT: u32 = 1 << 17;
const ATTR_SIGN: u32 = 1 << 18;

/// Why a TPM structure or quote was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TpmError {
    #[error("{what} truncated: need {need} bytes at offset {at}, have {have}")]
    Truncated {
        what: &'static str,
        at: usize,
        need: usize,
        have: usize,
    },
    #[error("{what} has {extra} trailing bytes")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("attest magic is {found:#010x}, expected TPM_GENERATED {TPM_GENERATED:#010x}")]
    BadMagic { found: u32 },
    #[error("attest type is {found:#06x}, expected TPM_ST_ATTEST_QUOTE {ST_ATTEST_QUOTE:#06x}")]
    NotAQuote { found: u16 },
    #[error("PCR selection bitmap of {size} bytes (at most 32)")]
    BadPcrSelection { size: u8 },
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    #[error("the AK lacks required attributes (restricted signing, fixedTPM): {attributes:#010x}")]
    NotAnAttestationKey { attributes: u32 },
    #[error("signature algorithm {sig_alg:#06x}/{hash_alg:#06x} is not ECDSA-SHA256")]
    UnsupportedSignature { sig_alg: u16, hash_alg: u16 },
    #[error("signature component of {len} bytes does not fit P-256")]
    BadSignatureComponent { len: usize },
    #[error("the AK's public point is not on P-256")]
    BadPublicPoint,
    #[error("the quote signature does not verify under the AK")]
    SignatureMismatch,
}

/// A bounds-checked reader over TPM wire format (big-endian).
struct Reader<'a> {
    what: &'static str,
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Self { what, buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TpmError> {
        let rest = self.buf.get(self.at..).unwrap_or(&[]);
        match rest.get(..n) {
            Some(s) => {
                self.at += n;
                Ok(s)
            }
            None => Err(TpmError::Truncated {
                what: self.what,
                at: self.at,
                need: n,
                have: rest.len(),
            }),
        }
    }

    fn u8(&mut self) -> Result<u8, TpmError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, TpmError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, TpmError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, TpmError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn tpm2b(&mut self) -> Result<&'a [u8], TpmError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn finish(self) -> Result<(), TpmError> {
        let extra = self.buf.len().saturating_sub(self.at);
        if extra == 0 {
            Ok(())
        } else {
            Err(TpmError::TrailingBytes {
                what: self.what,
                extra,
            })
        }
    }
}

/// One bank's selection in a TPML_PCR_SELECTION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    pub hash_alg: u16,
    /// Selected PCR indices in ascending order.
    pub pcrs: Vec<u8>,
}

/// A parsed TPMS_ATTEST of type quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteAttest {
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the qualifying data the caller passed to TPM2_Quote.
    pub extra_data: Vec<u8>,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
    pub firmware_version: u64,
    pub selections: Vec<PcrSelection>,
    pub pcr_digest: Vec<u8>,
}

/// Parses a TPMS_ATTEST, checking the magic and that it is a quote.
pub fn parse_quote_attest(bytes: &[u8]) -> Result<QuoteAttest, TpmError> {
    let mut r = Reader::new("TPMS_ATTEST", bytes);
    let magic = r.u32()?;
    if magic != TPM_GENERATED {
        return Err(TpmError::BadMagic { found: magic });
    }
    let ty = r.u16()?;
    if ty != ST_ATTEST_QUOTE {
        return Err(TpmError::NotAQuote { found: ty });
    }
    let qualified_signer = r.tpm2b()?.to_vec();
    let extra_data = r.tpm2b()?.to_vec();
    let clock = r.u64()?;
    let reset_count = r.u32()?;
    let restart_count = r.u32()?;
    let safe = r.u8()? != 0;
    let firmware_version = r.u64()?;
    let count = r.u32()?;
    // TPM2 defines at most HASH_COUNT banks; 16 is far above any real TPM and caps allocation.
    if count > 16 {
        return Err(TpmError::Truncated {
            what: "TPML_PCR_SELECTION",
            at: r.at,
            need: count as usize,
            have: 16,
        });
    }
    let mut selections = Vec::new();
    for _ in 0..count {
        let hash_alg = r.u16()?;
        let size = r.u8()?;
        // 32 bytes select 256 PCRs, the most a u8 index names (real TPMs use 3 or 4).
        if size > 32 {
            return Err(TpmError::BadPcrSelection { size });
        }
        let bitmap = r.take(usize::from(size))?;
        let pcrs = bitmap
            .iter()
            .enumerate()
            .flat_map(|(byte, bits)| {
                (0..8u8).filter_map(move |bit| {
                    (bits & (1 << bit) != 0).then_some((byte as u8) * 8 + bit)
                })
            })
            .collect();
        selections.push(PcrSelection { hash_alg, pcrs });
    }
    let pcr_digest = r.tpm2b()?.to_vec();
    r.finish()?;
    Ok(QuoteAttest {
        qualified_signer,
        extra_data,
        clock,
        reset_count,
        restart_count,
        safe,
        firmware_version,
        selections,
        pcr_digest,
    })
}

/// A TPMT_SIGNATURE over SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmSignature {
    Ecdsa { r: Vec<u8>, s: Vec<u8> },
    RsaPkcs1 { sig: Vec<u8> },
    RsaPss { sig: Vec<u8> },
}

/// Parses a TPMT_SIGNATURE (ECDSA, RSASSA or RSAPSS, each with SHA-256).
pub fn parse_signature(bytes: &[u8]) -> Result<TpmSignature, TpmError> {
    let mut r = Reader::new("TPMT_SIGNATURE", bytes);
    let sig_alg = r.u16()?;
    let hash_alg = r.u16()?;
    if hash_alg != ALG_SHA256 {
        return Err(TpmError::UnsupportedSignature { sig_alg, hash_alg });
    }
    let sig = match sig_alg {
        ALG_ECDSA => {
            let sig_r = r.tpm2b()?.to_vec();
            let sig_s = r.tpm2b()?.to_vec();
            TpmSignature::Ecdsa { r: sig_r, s: sig_s }
        }
        ALG_RSASSA => TpmSignature::RsaPkcs1 {
            sig: r.tpm2b()?.to_vec(),
        },
        ALG_RSAPSS => TpmSignature::RsaPss {
            sig: r.tpm2b()?.to_vec(),
        },
        _ => return Err(TpmError::UnsupportedSignature { sig_alg, hash_alg }),
    };
    r.finish()?;
    Ok(sig)
}

/// The public key of an AK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AkKey {
    /// NIST P-256 point.
    Ecc { x: Vec<u8>, y: Vec<u8> },
    /// RSA modulus and public exponent (big-endian).
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// The parts of an AK's TPM2B_PUBLIC that verification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkPublic {
    pub name_alg: u16,
    pub attributes: u32,
    pub key: AkKey,
}

/// Parses a TPM2B_PUBLIC of a restricted signing key (ECC P-256 or RSA).
pub fn parse_ak_public(bytes: &[u8]) -> Result<AkPublic, TpmError> {
    let mut outer = Reader::new("TPM2B_PUBLIC", bytes);
    let inner = outer.tpm2b()?;
    outer.finish()?;
    let mut r = Reader::new("TPMT_PUBLIC", inner);
    let ty = r.u16()?;
    if ty != ALG_ECC && ty != ALG_RSA {
        return Err(TpmError::UnsupportedKey(format!(
            "key type {ty:#06x} (only ECC and RSA)"
        )));
    }
    let name_alg = r.u16()?;
    let attributes = r.u32()?;
    let _auth_policy = r.tpm2b()?;
    let symmetric = r.u16()?;
    if symmetric != ALG_NULL {
        let _key_bits = r.u16()?;
        let _mode = r.u16()?;
    }
    let scheme = r.u16()?;
    if scheme != ALG_NULL {
        let _hash = r.u16()?;
    }
    let key = if ty == ALG_ECC {
        let curve = r.u16()?;
        let kdf = r.u16()?;
        if kdf != ALG_NULL {
            let _hash = r.u16()?;
        }
        let x = r.tpm2b()?.to_vec();
        let y = r.tpm2b()?.to_vec();
        if curve != ECC_NIST_P256 {
            return Err(TpmError::UnsupportedKey(format!(
                "curve {curve:#06x} (only NIST P-256)"
            )));
        }
        AkKey::Ecc { x, y }
    } else {
        let _key_bits = r.u16()?;
        let exponent = r.u32()?;
        let n = r.tpm2b()?.to_vec();
        // TPM2: an exponent of 0 means the default 2^16 + 1.
        let e = if exponent == 0 { 65_537 } else { exponent };
        let e = e.to_be_bytes();
        let first = e.iter().position(|b| *b != 0).unwrap_or(3);
        AkKey::Rsa {
            n,
            e: e[first..].to_vec(),
        }
    };
    r.finish()?;
    let required = ATTR_FIXED_TPM
        | ATTR_FIXED_PARENT
        | ATTR_SENSITIVE_DATA_ORIGIN
        | ATTR_RESTRICTED
        | ATTR_SIGN;
    if attributes & required != required || attributes & ATTR_DECRYPT != 0 {
        return Err(TpmError::NotAnAttestationKey { attributes });
    }
    Ok(AkPublic {
        name_alg,
        attributes,
        key,
    })
}

fn left_pad_32(v: &[u8]) -> Result<[u8; 32], TpmError> {
    // Leading zeros may be kept or stripped by the TPM; strip, then pad.
    let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    let v = &v[first..];
    if v.len() > 32 {
        return Err(TpmError::BadSignatureComponent { len: v.len() });
    }
    let mut out = [0u8; 32];
    out[32 - v.len()..].copy_from_slice(v);
    Ok(out)
}

/// Verifies `signature` (TPMT_SIGNATURE) over `attest` under the AK.
pub fn verify_signature(ak: &AkPublic, attest: &[u8], signature: &[u8]) -> Result<(), TpmError> {
    match (&ak.key, parse_signature(signature)?) {
        (AkKey::Ecc { x, y }, TpmSignature::Ecdsa { r, s }) => {
            let x = left_pad_32(x).map_err(|_| TpmError::BadPublicPoint)?;
            let y = left_pad_32(y).map_err(|_| TpmError::BadPublicPoint)?;
            let point = EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
            let key =
                VerifyingKey::from_encoded_point(&point).map_err(|_| TpmError::BadPublicPoint)?;
            let sig = Signature::from_scalars(left_pad_32(&r)?, left_pad_32(&s)?)
                .map_err(|_| TpmError::SignatureMismatch)?;
            key.verify(attest, &sig)
                .map_err(|_| TpmError::SignatureMismatch)
        }
        (AkKey::Rsa { n, e }, TpmSignature::RsaPkcs1 { sig }) => verify_rsa(
            n,
            e,
            attest,
            &sig,
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (AkKey::Rsa { n, e }, TpmSignature::RsaPss { sig }) => verify_rsa(
            n,
            e,
            attest,
            &sig,
            &ring::signature::RSA_PSS_2048_8192_SHA256,
        ),
        _ => Err(TpmError::UnsupportedSignature {
            sig_alg: signature_alg(signature),
            hash_alg: ALG_SHA256,
        }),
    }
}

fn signature_alg(signature: &[u8]) -> u16 {
    match signature {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// RSASSA-PKCS1-v1_5 / SHA-256 with a raw (not TPMT-wrapped) signature, as some providers
/// deliver vTPM quotes (Azure's HCL).
pub fn verify_rsa_pkcs1_sha256(
    n: &[u8],
    e: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), TpmError> {
    verify_rsa(
        n,
        e,
        message,
        signature,
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
    )
}

fn verify_rsa(
    n: &[u8],
    e: &[u8],
    message: &[u8],
    signature: &[u8],
    params: &'static ring::signature::RsaParameters,
) -> Result<(), TpmError> {
    ring::signature::RsaPublicKeyComponents { n, e }
        .verify(params, message, signature)
        .map_err(|_| TpmError::SignatureMismatch)
}

/// SHA-256 over the given PCR values in order: what TPM2_Quote puts in `pcrDigest` when its
/// selection is these PCRs (ascending index order within one bank).
pub fn pcr_digest<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in values {
        h.update(v);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TPMS_ATTEST from a swtpm quote (qualifying data 32 bytes of 0x07, PCR 0-15 sha256).
    fn sample_attest() -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&TPM_GENERATED.to_be_bytes());
        a.extend_from_slice(&ST_ATTEST_QUOTE.to_be_bytes());
        a.extend_from_slice(&[0, 2, 0xaa, 0xbb]);
        a.extend_from_slice(&[0, 32]);
        a.extend_from_slice(&[7; 32]);
        a.extend_from_slice(&[0; 17]);
        a.extend_from_slice(&[0; 8]);
        a.extend_from_slice(&1u32.to_be_bytes());
        a.extend_from_slice(&ALG_SHA256.to_be_bytes());
        a.extend_from_slice(&[3, 0xff, 0xff, 0x00]);
        a.extend_from_slice(&[0, 32]);
        a.extend_from_slice(&[9; 32]);
        a
    }

    #[test]
    fn parses_a_quote_attest() {
        let q = parse_quote_attest(&sample_attest()).unwrap();
        assert_eq!(q.extra_data, vec![7; 32]);
        assert_eq!(q.selections[0].pcrs, (0..16).collect::<Vec<u8>>());
        assert_eq!(q.pcr_digest, vec![9; 32]);
    }

    #[test]
    fn every_prefix_is_rejected_and_trailing_bytes_too() {
        let a = sample_attest();
        for n in 0..a.len() {
            assert!(parse_quote_attest(&a[..n]).is_err(), "prefix {n}");
        }
        let mut long = a.clone();
        long.push(0);
        assert_eq!(
            parse_quote_attest(&long),
            Err(TpmError::TrailingBytes {
                what: "TPMS_ATTEST",
                extra: 1
            })
        );
        let mut bad = a.clone();
        bad[0] ^= 1;
        assert!(matches!(
            parse_quote_attest(&bad),
            Err(TpmError::BadMagic { .. })
        ));
        let mut bad = a;
        bad[5] = 0x17;
        assert!(matches!(
            parse_quote_attest(&bad),
            Err(TpmError::NotAQuote { found: 0x8017 })
        ));
    }

    #[test]
    fn the_binding_vector_ak_parses() {
        let vectors = include_str!("../../../../proto/tests/vectors/binding.txt");
        let line = vectors
            .lines()
            .find(|l| l.starts_with("ak_public ="))
            .unwrap();
        let ak = hex::decode(line.split_once('=').unwrap().1.trim()).unwrap();
        let p = parse_ak_public(&ak).unwrap();
        // fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign.
        assert_eq!(p.attributes, 0x0005_0072);
        assert!(matches!(&p.key, AkKey::Ecc { x, .. } if *x == vec![0x11; 32]));
        for n in 0..ak.len() {
            assert!(parse_ak_public(&ak[..n]).is_err(), "prefix {n}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse_quote_attest(&bytes);
            let _ = parse_signature(&bytes);
            let _ = parse_ak_public(&bytes);
        }

        #[test]
        fn flipped_attest_bytes_never_panic(at in 0usize..80, bit in 0u8..8) {
            let mut a = sample_attest();
            a[at] ^= 1 << bit;
            let _ = parse_quote_attest(&a);
        }
    }
}
