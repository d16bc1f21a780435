//! TPM2_MakeCredential in software, for a verifier that has no TPM (TPM 2.0 Part 1 §24
//! "Credential Protection", Part 3 §12.6 TPM2_MakeCredential).
//!
//! The verifier encrypts a secret to the EK public key from the EK certificate for the AK's
//! name; only the TPM holding that EK's private key, with an object of that name loaded, gets
//! it back through TPM2_ActivateCredential. That proves the AK lives in the TPM the EK
//! certificate endorses, which a software TPM carrying a copied EK certificate cannot show.
//!
//! Hand-assembled from well-kept primitives (rsa, p256, aes, cfb-mode, hmac, sha2) because no
//! maintained crate does MakeCredential without a TPM: tss-esapi's `make_credential` is a TPM
//! command on a `Context` (the verifier has no TPM), and tpm2-tools does it in C. The encoding
//! is checked against swtpm's real TPM2_ActivateCredential (`responder` tests, both EK kinds).
//!
//! Supported EKs: the TCG EK Credential Profile's low-range templates, RSA-2048 (template L-1)
//! and ECC NIST P-256 (L-2): nameAlg SHA-256, symmetric AES-128-CFB. Randomness comes in as an
//! argument (sans-I/O).

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_chacha::rand_core::SeedableRng;
use rsa::pkcs8::DecodePublicKey;
use rsa::rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;
type Aes128CfbEnc = cfb_mode::Encryptor<aes::Aes128>;

/// TPM_ALG_SHA256.
const ALG_SHA256: u16 = 0x000b;
/// Bytes of a SHA-256 digest: the EK nameAlg's size, so the seed's and HMAC key's size.
const DIGEST_LEN: usize = 32;
/// AES-128: the low-range EK templates' symmetric key size in bits.
const SYM_KEY_BITS: u32 = 128;

/// NV index of the RSA-2048 EK certificate (TCG EK Credential Profile, template L-1).
pub const EK_CERT_NV_RSA_2048: u32 = 0x01c0_0002;
/// NV index of the ECC NIST P-256 EK certificate (template L-2).
pub const EK_CERT_NV_ECC_P256: u32 = 0x01c0_000a;

/// Largest credential a TPM2B_DIGEST can carry with a SHA-256 EK: the digest size.
pub const MAX_CREDENTIAL_LEN: usize = DIGEST_LEN;

/// Why a credential could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The EK's SubjectPublicKeyInfo is neither RSA nor ECC P-256, or does not parse.
    #[error("unsupported EK public key: {0}")]
    UnsupportedEk(String),
    /// The AK public area is too short or not a TPM2B_PUBLIC with SHA-256 as nameAlg.
    #[error("AK public area: {0}")]
    BadAkPublic(&'static str),
    /// The credential is empty or longer than the EK nameAlg's digest.
    #[error("a credential of {len} bytes does not fit (1 to {max})")]
    BadCredentialLength { len: usize, max: usize },
    /// RSA-OAEP refused to encrypt the seed.
    #[error("RSA-OAEP: {0}")]
    Rsa(String),
}

/// An EK public key, from the EK certificate's SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EkPublic {
    Rsa(rsa::RsaPublicKey),
    EccP256(p256::PublicKey),
}

impl EkPublic {
    /// Parses a SubjectPublicKeyInfo (DER): RSA or EC P-256.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, CredentialError> {
        if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(spki) {
            return Ok(EkPublic::Rsa(k));
        }
        p256::PublicKey::from_public_key_der(spki)
            .map(EkPublic::EccP256)
            .map_err(|e| CredentialError::UnsupportedEk(e.to_string()))
    }

    /// The EK public key of an EK certificate (DER).
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, CredentialError> {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| CredentialError::UnsupportedEk(format!("EK certificate: {e}")))?;
        Self::from_spki_der(cert.public_key().raw)
    }

    /// Whether this key is the kind the EK certificate index `nv_index` holds (a nonce can only
    /// be sealed to the two low-range EKs, which a TPM recreates from their default templates).
    pub fn fits_cert_index(&self, nv_index: u32) -> bool {
        matches!(
            (self, nv_index),
            (EkPublic::Rsa(_), EK_CERT_NV_RSA_2048) | (EkPublic::EccP256(_), EK_CERT_NV_ECC_P256)
        )
    }

    /// An RSA EK from its modulus and public exponent (big-endian), as a TPMT_PUBLIC holds
    /// them.
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<Self, CredentialError> {
        rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(n),
            rsa::BigUint::from_bytes_be(e),
        )
        .map(EkPublic::Rsa)
        .map_err(|e| CredentialError::UnsupportedEk(e.to_string()))
    }

    /// An ECC P-256 EK from its affine coordinates (big-endian, up to 32 bytes each).
    pub fn ecc_p256(x: &[u8], y: &[u8]) -> Result<Self, CredentialError> {
        let pad = |c: &[u8]| -> Result<[u8; 32], CredentialError> {
            let first = c.iter().position(|b| *b != 0).unwrap_or(c.len());
            let c = &c[first..];
            let mut out = [0u8; 32];
            let at = 32usize.checked_sub(c.len()).ok_or_else(|| {
                CredentialError::UnsupportedEk(format!("a coordinate of {} bytes", c.len()))
            })?;
            out[at..].copy_from_slice(c);
            Ok(out)
        };
        let (x, y) = (pad(x)?, pad(y)?);
        let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        p256::PublicKey::from_sec1_bytes(point.as_bytes())
            .map(EkPublic::EccP256)
            .map_err(|e| CredentialError::UnsupportedEk(e.to_string()))
    }
}

/// TPM2_MakeCredential's output, each the contents of its TPM2B (no size prefix), as
/// TPM2_ActivateCredential takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// TPM2B_ID_OBJECT contents: TPM2B_DIGEST(outer HMAC) ‖ encrypted TPM2B_DIGEST(credential).
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET contents: the RSA-OAEP ciphertext of the seed, or the ephemeral
    /// ECDH point (TPMS_ECC_POINT).
    pub encrypted_secret: Vec<u8>,
}

/// The TPM name of an object from its TPM2B_PUBLIC (size prefix included): nameAlg ‖
/// H_nameAlg(TPMT_PUBLIC). Only SHA-256 names are supported (every AK locus creates or
/// accepts has one).
pub fn object_name(tpm2b_public: &[u8]) -> Result<Vec<u8>, CredentialError> {
    let (size, rest) = tpm2b_public
        .split_at_checked(2)
        .ok_or(CredentialError::BadAkPublic("shorter than its size prefix"))?;
    let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
    if rest.len() != size || size < 4 {
        return Err(CredentialError::BadAkPublic(
            "size prefix does not match the TPMT_PUBLIC",
        ));
    }
    // TPMT_PUBLIC: type u16, nameAlg u16, ...
    if u16::from_be_bytes([rest[2], rest[3]]) != ALG_SHA256 {
        return Err(CredentialError::BadAkPublic("nameAlg is not SHA-256"));
    }
    let mut name = ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&Sha256::digest(rest));
    Ok(name)
}

/// Domain tag of the randomness [`seal_nonce`] derives from the nonce.
pub const SEAL_RNG_TAG: &[u8] = b"locus/credential/seal-rng/v1\0";

/// Seals an evidence nonce as the credential for the AK named `name` under `ek`.
///
/// Deterministic in its inputs: the seed, the OAEP padding or ephemeral ECDH key are drawn
/// from ChaCha20 keyed with SHA-256(`SEAL_RNG_TAG` ‖ nonce). The nonce stays secret until the
/// responder activates the credential, so this randomness is unpredictable to anyone without
/// the EK; once the bundle shows the nonce, a verifier recomputes exactly the credential the
/// prober sent and so learns, without storing anything, which EK and AK name it was sealed to.
pub fn seal_nonce(
    ek: &EkPublic,
    name: &[u8],
    nonce: &crate::Nonce,
) -> Result<Credential, CredentialError> {
    let mut h = Sha256::new();
    h.update(SEAL_RNG_TAG);
    h.update(nonce);
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(h.finalize().into());
    make_credential(ek, name, nonce, &mut rng)
}

/// Seals `nonce` to the first of `ek_certs` of a known kind (RSA-2048 or ECC P-256, at its
/// index) for the AK `ak_public` (TPM2B_PUBLIC): what a prober sends instead of a clear nonce.
/// `None` when the AK has no usable name or no certificate fits.
pub fn seal_to_first_ek(
    ak_public: &[u8],
    ek_certs: &[crate::evidence::EkCert],
    nonce: &crate::Nonce,
) -> Option<crate::evidence::SealedNonce> {
    let name = object_name(ak_public)
        .map_err(|e| tracing::debug!(error = %e, "the stated AK has no usable name"))
        .ok()?;
    ek_certs.iter().find_map(|c| {
        let ek = EkPublic::from_certificate_der(&c.der).ok()?;
        if !ek.fits_cert_index(c.nv_index) {
            return None;
        }
        let cred = seal_nonce(&ek, &name, nonce).ok()?;
        Some(crate::evidence::SealedNonce {
            ek_nv_index: c.nv_index,
            id_object: cred.id_object,
            encrypted_secret: cred.encrypted_secret,
        })
    })
}

/// TPM2_MakeCredential: protects `credential` for the object named `name` under `ek`.
pub fn make_credential(
    ek: &EkPublic,
    name: &[u8],
    credential: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Credential, CredentialError> {
    if credential.is_empty() || credential.len() > MAX_CREDENTIAL_LEN {
        return Err(CredentialError::BadCredentialLength {
            len: credential.len(),
            max: MAX_CREDENTIAL_LEN,
        });
    }
    let (seed, encrypted_secret) = seed(ek, rng)?;

    // Part 1 §24.4: symmetric key from the seed, bound to the object's name.
    let sym_key = kdfa(&seed, b"STORAGE", name, &[], SYM_KEY_BITS);
    let mut enc_identity = Vec::with_capacity(2 + credential.len());
    enc_identity.extend_from_slice(&(credential.len() as u16).to_be_bytes());
    enc_identity.extend_from_slice(credential);
    // The TPM uses a zero IV here: the key is single-use, derived from a fresh seed.
    Aes128CfbEnc::new(sym_key.as_slice().into(), &[0u8; 16].into()).encrypt(&mut enc_identity);

    // §24.5: the outer HMAC covers the encrypted credential and the name.
    let hmac_key = kdfa(&seed, b"INTEGRITY", &[], &[], (DIGEST_LEN * 8) as u32);
    let mut mac = HmacSha256::new_from_slice(&hmac_key).expect("HMAC takes any key length");
    mac.update(&enc_identity);
    mac.update(name);
    let outer = mac.finalize().into_bytes();

    let mut id_object = Vec::with_capacity(2 + DIGEST_LEN + enc_identity.len());
    id_object.extend_from_slice(&(DIGEST_LEN as u16).to_be_bytes());
    id_object.extend_from_slice(&outer);
    id_object.extend_from_slice(&enc_identity);
    Ok(Credential {
        id_object,
        encrypted_secret,
    })
}

/// A fresh seed and its protection under the EK (Part 1 §24.3; Annex B.10.3 for RSA-OAEP
/// with label "IDENTITY", C.6.4 for ECDH and KDFe).
fn seed(
    ek: &EkPublic,
    rng: &mut impl CryptoRngCore,
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    match ek {
        EkPublic::Rsa(key) => {
            let mut seed = vec![0u8; DIGEST_LEN];
            rng.fill_bytes(&mut seed);
            // The TPM's OAEP label is the NUL-terminated string.
            let padding = rsa::Oaep::new_with_label::<Sha256, _>("IDENTITY\0");
            let secret = key
                .encrypt(rng, padding, &seed)
                .map_err(|e| CredentialError::Rsa(e.to_string()))?;
            Ok((seed, secret))
        }
        EkPublic::EccP256(key) => {
            let ephemeral = p256::ecdh::EphemeralSecret::random(rng);
            let z = ephemeral.diffie_hellman(key);
            let ours = ephemeral.public_key().to_encoded_point(false);
            let theirs = key.to_encoded_point(false);
            let (Some(ux), Some(uy), Some(vx)) = (ours.x(), ours.y(), theirs.x()) else {
                return Err(CredentialError::UnsupportedEk(
                    "EC point at infinity".into(),
                ));
            };
            let seed = kdfe(
                z.raw_secret_bytes(),
                b"IDENTITY",
                ux,
                vx,
                (DIGEST_LEN * 8) as u32,
            );
            // TPMS_ECC_POINT: TPM2B x ‖ TPM2B y.
            let mut secret = Vec::with_capacity(4 + 64);
            for c in [ux, uy] {
                secret.extend_from_slice(&(c.len() as u16).to_be_bytes());
                secret.extend_from_slice(c);
            }
            Ok((seed, secret))
        }
    }
}

/// KDFa with SHA-256 (Part 1 §11.4.10.2, SP 800-108 counter mode with HMAC): the label is
/// NUL-terminated, the length in bits closes every block's input.
pub fn kdfa(key: &[u8], label: &[u8], context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let len = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(len + DIGEST_LEN);
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(&counter.to_be_bytes());
        mac.update(label);
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// KDFe with SHA-256 (Part 1 §11.4.10.3, SP 800-56A concatenation KDF): Z is the ECDH
/// x-coordinate, the parties are the ephemeral and the EK's x-coordinates.
pub fn kdfe(z: &[u8], label: &[u8], party_u: &[u8], party_v: &[u8], bits: u32) -> Vec<u8> {
    let len = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(len + DIGEST_LEN);
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(label);
        h.update([0]);
        h.update(party_u);
        h.update(party_v);
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn ak_public() -> Vec<u8> {
        // A TPM2B_PUBLIC's shape: size, type ECC (0x0023), nameAlg SHA-256, then anything.
        let mut t = vec![0x00, 0x23, 0x00, 0x0b];
        t.extend_from_slice(&[0x55; 60]);
        let mut out = (t.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&t);
        out
    }

    #[test]
    fn the_name_is_the_sha256_of_the_public_area_after_its_algorithm() {
        let p = ak_public();
        let name = object_name(&p).unwrap();
        assert_eq!(&name[..2], &[0x00, 0x0b]);
        assert_eq!(name[2..], Sha256::digest(&p[2..])[..]);
        let mut sha1 = p.clone();
        sha1[5] = 0x04;
        assert_eq!(
            object_name(&sha1),
            Err(CredentialError::BadAkPublic("nameAlg is not SHA-256"))
        );
        for cut in 0..p.len() {
            assert!(object_name(&p[..cut]).is_err(), "prefix of {cut} bytes");
        }
    }

    /// KDFa against a direct HMAC construction of its two blocks.
    #[test]
    fn kdfa_is_counter_mode_hmac_with_a_nul_terminated_label() {
        let key = [0x11; 32];
        let out = kdfa(&key, b"STORAGE", b"name", b"", 384);
        assert_eq!(out.len(), 48);
        let block = |i: u32| {
            let mut m = HmacSha256::new_from_slice(&key).unwrap();
            m.update(
                &[
                    &i.to_be_bytes()[..],
                    b"STORAGE\0name",
                    &384u32.to_be_bytes(),
                ]
                .concat(),
            );
            m.finalize().into_bytes().to_vec()
        };
        assert_eq!(out, [block(1), block(2)].concat()[..48].to_vec());
        // The bit count is part of each block's input: a shorter output is not a prefix.
        assert_ne!(
            kdfa(&key, b"STORAGE", b"name", b"", 128),
            out[..16].to_vec()
        );
    }

    #[test]
    fn a_credential_has_the_tpm2b_layout_and_bad_lengths_are_refused() {
        let key = p256::SecretKey::from_slice(&[3; 32]).unwrap();
        let ek = EkPublic::EccP256(key.public_key());
        let name = object_name(&ak_public()).unwrap();
        let c = make_credential(&ek, &name, &[9; 32], &mut rng()).unwrap();
        // HMAC size, HMAC, then 2 + 32 encrypted bytes.
        assert_eq!(c.id_object.len(), 2 + 32 + 34);
        assert_eq!(&c.id_object[..2], &[0, 32]);
        assert_eq!(c.encrypted_secret.len(), 4 + 64);
        for bad in [0, 33] {
            assert_eq!(
                make_credential(&ek, &name, &vec![1; bad], &mut rng()),
                Err(CredentialError::BadCredentialLength { len: bad, max: 32 })
            );
        }
    }

    /// The ECC path decrypts with the EK's private key exactly as the TPM does
    /// (ActivateCredential steps, Part 1 §24): an independent check of the encoding; the
    /// swtpm tests check it against a real TPM.
    #[test]
    fn the_ecc_credential_opens_with_the_ek_private_key() {
        use aes::cipher::AsyncStreamCipher;
        let ek_priv = p256::SecretKey::from_slice(&[5; 32]).unwrap();
        let ek = EkPublic::EccP256(ek_priv.public_key());
        let name = object_name(&ak_public()).unwrap();
        let c = make_credential(&ek, &name, b"the secret", &mut rng()).unwrap();

        let ux = &c.encrypted_secret[2..34];
        let uy = &c.encrypted_secret[36..68];
        let point = p256::EncodedPoint::from_affine_coordinates(ux.into(), uy.into(), false);
        let ephemeral = p256::PublicKey::from_sec1_bytes(point.as_bytes()).unwrap();
        let z = p256::ecdh::diffie_hellman(ek_priv.to_nonzero_scalar(), ephemeral.as_affine());
        let vx = ek_priv.public_key().to_encoded_point(false);
        let seed = kdfe(z.raw_secret_bytes(), b"IDENTITY", ux, vx.x().unwrap(), 256);

        let hmac_key = kdfa(&seed, b"INTEGRITY", &[], &[], 256);
        let mut mac = HmacSha256::new_from_slice(&hmac_key).unwrap();
        mac.update(&c.id_object[34..]);
        mac.update(&name);
        mac.verify_slice(&c.id_object[2..34]).unwrap();

        let sym = kdfa(&seed, b"STORAGE", &name, &[], 128);
        let mut plain = c.id_object[34..].to_vec();
        cfb_mode::Decryptor::<aes::Aes128>::new(sym.as_slice().into(), &[0u8; 16].into())
            .decrypt(&mut plain);
        assert_eq!(&plain[..2], &[0, 10]);
        assert_eq!(&plain[2..], b"the secret");

        // Another name gives another HMAC: the TPM refuses it (TPM_RC_INTEGRITY).
        let other = [&name[..2], &[0u8; 32][..]].concat();
        let mut mac = HmacSha256::new_from_slice(&hmac_key).unwrap();
        mac.update(&c.id_object[34..]);
        mac.update(&other);
        assert!(mac.verify_slice(&c.id_object[2..34]).is_err());
    }

    #[test]
    fn the_rsa_seed_opens_with_oaep_and_the_identity_label() {
        let mut r = rng();
        let private = rsa::RsaPrivateKey::new(&mut r, 1024).unwrap();
        let ek = EkPublic::Rsa(private.to_public_key());
        let name = object_name(&ak_public()).unwrap();
        let c = make_credential(&ek, &name, &[7; 16], &mut r).unwrap();
        assert_eq!(c.encrypted_secret.len(), 128);
        let seed = private
            .decrypt(
                rsa::Oaep::new_with_label::<Sha256, _>("IDENTITY\0"),
                &c.encrypted_secret,
            )
            .unwrap();
        assert_eq!(seed.len(), 32);
        let hmac_key = kdfa(&seed, b"INTEGRITY", &[], &[], 256);
        let mut mac = HmacSha256::new_from_slice(&hmac_key).unwrap();
        mac.update(&c.id_object[34..]);
        mac.update(&name);
        mac.verify_slice(&c.id_object[2..34]).unwrap();
    }
}
