//! Platform endorsements: a signed inventory (platform ID → owner, facility, site), the shape a
//! public registry of proof-of-cloud machines takes, verified with ECDSA P-256 at a given time.
//!
//! Intel's Platform Ownership Endorsement (COSE_Sign1 CoRIM) is in [`crate::verify::poe`].

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::Signature;
/// Key types, re-exported so callers need no matching `p256` dependency.
pub use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of the inventory payload layout.
pub const INVENTORY_VERSION: u32 = 1;

/// The signed file: `payload` is the exact JSON text that was signed (so no canonicalisation
/// is needed), `signature` the hex ECDSA P-256 / SHA-256 signature (r ‖ s, 64 bytes, or DER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedInventory {
    /// Always `ES256`.
    pub alg: String,
    pub payload: String,
    pub signature: String,
}

/// The inventory, once its signature verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub version: u32,
    /// Who signs (informational; trust comes from the configured key).
    pub issuer: String,
    /// Validity, unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    pub entries: Vec<InventoryEntry>,
}

/// One endorsed platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryEntry {
    /// Platform ID, lowercase hex (e.g. the PIID from the PCK certificate).
    pub platform_id: String,
    /// The operator that owns the platform.
    pub owner: String,
    pub facility: String,
    /// A site name as used in samples files.
    pub site: String,
}

/// Why an inventory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InventoryError {
    #[error("inventory algorithm {found} is not supported (expected ES256)")]
    Algorithm { found: String },
    #[error("inventory signature is not hex or not a P-256 signature")]
    SignatureEncoding,
    #[error("inventory signature does not verify under the configured key (wrong signer or altered payload)")]
    BadSignature,
    #[error("inventory payload is malformed: {0}")]
    Malformed(String),
    #[error("inventory version {found} is not supported (this build reads {supported})")]
    Version { found: u32, supported: u32 },
    #[error("inventory is not valid before {not_before} (now {now})")]
    NotYetValid { not_before: u64, now: u64 },
    #[error("inventory key is not a P-256 public key in PEM (SubjectPublicKeyInfo)")]
    Key,
    #[error("inventory expired at {not_after} (now {now}, {} s ago)", now - not_after)]
    Expired { not_after: u64, now: u64 },
}

/// Parse the inventory signer's public key (PEM `PUBLIC KEY`, SubjectPublicKeyInfo).
pub fn verifying_key_from_pem(pem: &str) -> Result<VerifyingKey, InventoryError> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|_| InventoryError::Key)
}

/// PEM (SubjectPublicKeyInfo) of a signer's public key, as [`verifying_key_from_pem`] reads it.
pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("a P-256 public key encodes")
}

impl SignedInventory {
    /// Sign `inventory` (what a registry does; used by tests and tooling).
    pub fn sign(inventory: &Inventory, key: &SigningKey) -> SignedInventory {
        let payload = serde_json::to_string(inventory).expect("inventory serializes");
        let sig: Signature = key.sign(payload.as_bytes());
        SignedInventory {
            alg: "ES256".into(),
            payload,
            signature: hex::encode(sig.to_bytes()),
        }
    }

    /// Verify the signature with `key`, then the validity period at `now_unix`.
    pub fn verify(&self, key: &VerifyingKey, now_unix: u64) -> Result<Inventory, InventoryError> {
        if self.alg != "ES256" {
            return Err(InventoryError::Algorithm {
                found: self.alg.clone(),
            });
        }
        let raw =
            hex::decode(self.signature.trim()).map_err(|_| InventoryError::SignatureEncoding)?;
        let sig = Signature::from_slice(&raw)
            .or_else(|_| Signature::from_der(&raw))
            .map_err(|_| InventoryError::SignatureEncoding)?;
        key.verify(self.payload.as_bytes(), &sig)
            .map_err(|_| InventoryError::BadSignature)?;
        let inv: Inventory = serde_json::from_str(&self.payload)
            .map_err(|e| InventoryError::Malformed(e.to_string()))?;
        if inv.version != INVENTORY_VERSION {
            return Err(InventoryError::Version {
                found: inv.version,
                supported: INVENTORY_VERSION,
            });
        }
        if now_unix < inv.not_before {
            return Err(InventoryError::NotYetValid {
                not_before: inv.not_before,
                now: now_unix,
            });
        }
        if now_unix > inv.not_after {
            return Err(InventoryError::Expired {
                not_after: inv.not_after,
                now: now_unix,
            });
        }
        Ok(inv)
    }
}

impl Inventory {
    /// The entry for `platform_id` (hex, case-insensitive).
    pub fn lookup(&self, platform_id: &str) -> Option<&InventoryEntry> {
        self.entries
            .iter()
            .find(|e| e.platform_id.eq_ignore_ascii_case(platform_id.trim()))
    }
}

/// What the endorsement says about one node's platform; input to [`crate::judge`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endorsement {
    /// The platform ID the verified evidence names (None: evidence names none).
    #[serde(default)]
    pub platform_id: Option<String>,
    /// The inventory entry for it (None: not endorsed).
    #[serde(default)]
    pub entry: Option<InventoryEntry>,
    /// Why the inventory could not be used (signature, validity), if so.
    #[serde(default)]
    pub error: Option<String>,
}

impl Endorsement {
    /// Verify `signed` with `key` at `now_unix` and look `platform_id` up in it.
    pub fn resolve(
        signed: &SignedInventory,
        key: &VerifyingKey,
        now_unix: u64,
        platform_id: Option<&str>,
    ) -> Endorsement {
        match signed.verify(key, now_unix) {
            Err(e) => Endorsement {
                platform_id: platform_id.map(String::from),
                entry: None,
                error: Some(e.to_string()),
            },
            Ok(inv) => Endorsement {
                platform_id: platform_id.map(String::from),
                entry: platform_id.and_then(|p| inv.lookup(p).cloned()),
                error: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_slice(&[b; 32]).unwrap()
    }

    fn signed(k: &SigningKey, not_after: u64) -> SignedInventory {
        let inv = Inventory {
            version: 1,
            issuer: "lab registry".into(),
            not_before: 1_000,
            not_after,
            entries: vec![InventoryEntry {
                platform_id: "00aa11".into(),
                owner: "acme-cloud".into(),
                facility: "FRA-1".into(),
                site: "fra".into(),
            }],
        };
        SignedInventory::sign(&inv, k)
    }

    #[test]
    fn pem_key_round_trip() {
        let k = key(7);
        let pem = public_key_pem(k.verifying_key());
        assert_eq!(&verifying_key_from_pem(&pem).unwrap(), k.verifying_key());
        assert_eq!(verifying_key_from_pem("nope"), Err(InventoryError::Key));
    }

    #[test]
    fn verifies_and_finds_platform() {
        let k = key(7);
        let inv = signed(&k, 10_000).verify(k.verifying_key(), 5_000).unwrap();
        assert_eq!(inv.lookup("00AA11").unwrap().site, "fra");
        assert!(inv.lookup("ffff").is_none());
    }

    #[test]
    fn wrong_signer_altered_expired_early() {
        let s = signed(&key(7), 10_000);
        let other = key(9);
        assert_eq!(
            s.verify(other.verifying_key(), 5_000),
            Err(InventoryError::BadSignature)
        );
        let mut altered = s.clone();
        altered.payload = altered.payload.replace("fra", "waw");
        assert_eq!(
            altered.verify(key(7).verifying_key(), 5_000),
            Err(InventoryError::BadSignature)
        );
        assert!(matches!(
            s.verify(key(7).verifying_key(), 10_001),
            Err(InventoryError::Expired { .. })
        ));
        assert!(matches!(
            s.verify(key(7).verifying_key(), 999),
            Err(InventoryError::NotYetValid { .. })
        ));
        let mut alg = s.clone();
        alg.alg = "none".into();
        assert!(matches!(
            alg.verify(key(7).verifying_key(), 5_000),
            Err(InventoryError::Algorithm { .. })
        ));
    }

    #[test]
    fn resolve_reports_unknown_platform_and_errors() {
        let k = key(7);
        let s = signed(&k, 10_000);
        let e = Endorsement::resolve(&s, k.verifying_key(), 5_000, Some("beef"));
        assert!(e.entry.is_none() && e.error.is_none());
        let e = Endorsement::resolve(&s, key(8).verifying_key(), 5_000, Some("00aa11"));
        assert!(e.error.unwrap().contains("does not verify"));
    }
}
