//! The prober's identity: an Ed25519 key that signs what the prober stores (rounds, evidence
//! records) and the evidence requests it sends, so a monitor or a responder can tell its rows and
//! requests from anyone else's.
//!
//! On disk the private key is PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, the format
//! `openssl genpkey -algorithm ed25519` writes), mode 0600. The public key is shown and configured
//! as standard base64 (with padding) of its raw 32 bytes; its key id is the first 8 bytes of
//! SHA-256 over those 32 bytes, in hex. Callers domain-separate what they sign: each signed
//! message starts with its own context string, so a signature over one kind of message can never
//! pass for another.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// What went wrong loading, writing or checking a prober key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The key file could not be read.
    #[error("reading prober key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `keygen` never overwrites a key: move the old file away first if you mean to replace it.
    #[error("{path} exists: refusing to overwrite a prober key")]
    Exists { path: PathBuf },
    /// The key file could not be written.
    #[error("writing prober key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Group or others may read the private key: `chmod 600` it (like ssh, we refuse to use it).
    #[error("prober key {path} has mode {mode:o}; it must not be readable by group or others (chmod 600)")]
    Permissions { path: PathBuf, mode: u32 },
    /// The file is not an Ed25519 private key in PKCS#8 PEM.
    #[error("prober key {path} is not an Ed25519 PKCS#8 PEM private key: {reason}")]
    Format { path: PathBuf, reason: String },
    /// A public key is not base64 of 32 bytes, or not a valid Ed25519 point.
    #[error("public key {found:?} is not base64 of a 32-byte Ed25519 key: {reason}")]
    PublicKey { found: String, reason: String },
    /// A signature is not 64 bytes long.
    #[error("signature is {found} bytes, expected {SIGNATURE_LEN}")]
    SignatureLength { found: usize },
    /// The signature does not verify under the key.
    #[error("signature does not verify under key {key_id}")]
    BadSignature { key_id: String },
}

/// A prober's private identity key.
pub struct ProberIdentity {
    key: SigningKey,
}

impl fmt::Debug for ProberIdentity {
    // Never print the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProberIdentity")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl ProberIdentity {
    /// A fresh key from the OS random number generator.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The key with this 32-byte seed (tests and test vectors).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Reads a PKCS#8 PEM key; refuses one that group or others may read.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let read_err = |source| IdentityError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(read_err)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions {
                path: path.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
        let pem = std::fs::read_to_string(path).map_err(read_err)?;
        Self::from_pem(&pem).map_err(|reason| IdentityError::Format {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn from_pem(pem: &str) -> Result<Self, String> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| Self { key })
            .map_err(|e| e.to_string())
    }

    /// Writes the key as PKCS#8 PEM to a new file with mode 0600; never overwrites.
    pub fn write_new(&self, path: &Path) -> Result<(), IdentityError> {
        let write_err = |source| IdentityError::Write {
            path: path.to_path_buf(),
            source,
        };
        // PKCS#8 v1 (no public key inside): OpenSSL 3.0 refuses the v2 form for Ed25519.
        let v1 = KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        let pem = v1
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => IdentityError::Exists {
                    path: path.to_path_buf(),
                },
                _ => write_err(e),
            })?;
        file.write_all(pem.as_bytes()).map_err(write_err)?;
        file.sync_all().map_err(write_err)
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Signs `message` (which starts with the caller's context string).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(message).to_bytes()
    }
}

/// A prober's public key: configured and shown as base64 of its raw 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key from its raw 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|e| IdentityError::PublicKey {
                found: base64::engine::general_purpose::STANDARD.encode(bytes),
                reason: e.to_string(),
            })
    }

    /// Short name for logs and the store: hex of the first 8 bytes of SHA-256(raw key).
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }

    /// Checks `signature` over `message` (strict: rejects malleable and small-order forms).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        let sig: &[u8; SIGNATURE_LEN] =
            signature
                .try_into()
                .map_err(|_| IdentityError::SignatureLength {
                    found: signature.len(),
                })?;
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| IdentityError::BadSignature {
                key_id: self.key_id(),
            })
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| IdentityError::PublicKey {
            found: s.to_string(),
            reason,
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| bad(e.to_string()))?;
        let raw: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| bad(format!("{} bytes, expected 32", raw.len())))?;
        Self::from_bytes(&raw)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_every_bit_flip_fails() {
        let id = ProberIdentity::from_seed([7; 32]);
        let key = id.public_key();
        let sig = id.sign(b"locus test\0hello");
        key.verify(b"locus test\0hello", &sig).unwrap();
        assert!(matches!(
            key.verify(b"locus test\0hellp", &sig),
            Err(IdentityError::BadSignature { .. })
        ));
        for i in 0..SIGNATURE_LEN {
            let mut bad = sig;
            bad[i] ^= 1;
            assert!(key.verify(b"locus test\0hello", &bad).is_err(), "byte {i}");
        }
        assert!(matches!(
            key.verify(b"x", &sig[..63]),
            Err(IdentityError::SignatureLength { found: 63 })
        ));
        let other = ProberIdentity::from_seed([8; 32]).public_key();
        assert!(other.verify(b"locus test\0hello", &sig).is_err());
    }

    #[test]
    fn public_key_round_trips_as_base64() {
        let key = ProberIdentity::from_seed([1; 32]).public_key();
        let text = key.to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert_eq!(key.key_id().len(), 16);
        assert!("AAAA".parse::<PublicKey>().is_err());
        assert!("not base64!".parse::<PublicKey>().is_err());
    }

    #[test]
    fn key_file_is_0600_never_overwritten_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prober.key");
        let id = ProberIdentity::generate();
        id.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        assert_eq!(
            ProberIdentity::load(&path).unwrap().public_key(),
            id.public_key()
        );
        assert!(matches!(
            ProberIdentity::generate().write_new(&path),
            Err(IdentityError::Exists { .. })
        ));
        // The first key is still there.
        assert_eq!(
            ProberIdentity::load(&path).unwrap().public_key(),
            id.public_key()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ProberIdentity::load(&path),
            Err(IdentityError::Permissions { mode: 0o644, .. })
        ));
    }

    #[test]
    fn reads_an_openssl_genpkey_key() {
        // `openssl genpkey -algorithm ed25519` output for the RFC 8032 test 1 secret key.
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
                   -----END PRIVATE KEY-----\n";
        let id = ProberIdentity::from_pem(pem).unwrap();
        // RFC 8032 section 7.1, test 1: the public key.
        assert_eq!(
            hex::encode(id.public_key().to_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            ProberIdentity::from_seed(id.key.to_bytes()).public_key(),
            id.public_key()
        );
    }

    #[test]
    fn garbage_key_file_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            ProberIdentity::load(&path),
            Err(IdentityError::Format { .. })
        ));
    }
}
