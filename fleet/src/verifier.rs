//! Verifying stored evidence offline: an evidence policy file with the trust files it names,
//! a nonce ledger, and the bundle bytes, as `locus verify evidence`, `locus judge`, the monitor
//! and the lab do. The verification itself is `locus_analysis::verify::bundle` (pure); this module
//! reads the files it needs.

use std::path::{Path, PathBuf};

use locus_analysis::verify::bundle::{
    self as evidence, EvidencePolicy, EvidenceReport, NonceRecord, PolicyError, PolicyFile,
    VerifyInputs,
};
use locus_analysis::Policy;
use locus_proto::evidence::EvidenceBundle;

/// Why a policy, its trust files or a nonce ledger could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file could not be read.
    #[error("reading {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The policy file is not UTF-8 text.
    #[error("policy {} is not UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    /// The policy does not parse, or a trust file it names is unreadable or invalid.
    #[error("policy {}: {source}", path.display())]
    Policy { path: PathBuf, source: PolicyError },
    /// The verdict policy does not parse or is out of range.
    #[error("policy {}: {source}", path.display())]
    VerdictPolicy {
        path: PathBuf,
        source: locus_analysis::PolicyError,
    },
    /// The nonce ledger is not a JSON list of nonce records.
    #[error("nonce ledger {}: {source}", path.display())]
    Ledger {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Reads `path`; `what` names the file in the error.
pub fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a verdict policy file (config/policy.example.toml); the defaults without one.
pub fn load_verdict_policy(path: Option<&Path>) -> Result<Policy, LoadError> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        what: "policy",
        path: path.to_path_buf(),
        source,
    })?;
    Policy::from_toml_str(&text).map_err(|source| LoadError::VerdictPolicy {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads an evidence policy file and the trust files it names (relative to the file).
pub fn load_policy(path: &Path) -> Result<(PolicyFile, EvidencePolicy), LoadError> {
    let text = String::from_utf8(read(path, "policy")?).map_err(|_| LoadError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    let invalid = |source| LoadError::Policy {
        path: path.to_path_buf(),
        source,
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let file = PolicyFile::from_toml(&text).map_err(invalid)?;
    let policy = file
        .resolve(&|rel: &str| {
            std::fs::read(base.join(rel)).map_err(|e| format!("{}: {e}", base.join(rel).display()))
        })
        .map_err(invalid)?;
    Ok((file, policy))
}

/// A verification policy with its trust files and nonce ledger loaded: what `locus verify
/// evidence` and `locus judge` (on stored bundles) verify bundles with.
pub struct BundleVerifier {
    pub policy: EvidencePolicy,
    ledger: Vec<NonceRecord>,
}

impl BundleVerifier {
    /// Loads `policy_path` (paths in it relative to it) and the nonce ledger: `ledger` when
    /// given, otherwise the one the policy names.
    pub fn load(policy_path: &Path, ledger: Option<&Path>) -> Result<Self, LoadError> {
        let (policy_file, policy) = load_policy(policy_path)?;
        let base = policy_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let ledger_path = ledger
            .map(Path::to_path_buf)
            .or_else(|| policy_file.nonce.ledger.as_ref().map(|l| base.join(l)));
        let ledger: Vec<NonceRecord> = match &ledger_path {
            None => Vec::new(),
            Some(p) => serde_json::from_slice(&read(p, "nonce ledger")?).map_err(|source| {
                LoadError::Ledger {
                    path: p.clone(),
                    source,
                }
            })?,
        };
        Ok(Self { policy, ledger })
    }

    /// When this verifier issued the bundle's nonce, if it did.
    pub fn issued_at(&self, bundle: &EvidenceBundle) -> Option<u64> {
        self.record(&bundle.nonce).map(|r| r.issued_at)
    }

    fn record(&self, nonce: &[u8]) -> Option<&NonceRecord> {
        self.ledger.iter().find(|r| r.nonce == nonce)
    }

    /// Verifies a decoded bundle at `now_unix`.
    pub fn verify(
        &self,
        bundle: &EvidenceBundle,
        now_unix: u64,
        peer_spki: Option<Vec<u8>>,
    ) -> EvidenceReport {
        let inputs = VerifyInputs {
            now_unix,
            nonce_record: self.record(&bundle.nonce).cloned(),
            peer_spki,
        };
        evidence::verify_bundle(bundle, &self.policy, &inputs)
    }

    /// Verifies stored bundle bytes at `now_unix`; bytes that do not decode fail
    /// `bundle_format`.
    pub fn verify_bytes(
        &self,
        bytes: &[u8],
        now_unix: u64,
        peer_spki: Option<Vec<u8>>,
    ) -> EvidenceReport {
        match EvidenceBundle::from_cbor(bytes) {
            Ok(b) => self.verify(&b, now_unix, peer_spki),
            Err(_) => evidence::verify_bundle_bytes(
                bytes,
                &self.policy,
                &VerifyInputs {
                    now_unix,
                    nonce_record: None,
                    peer_spki,
                },
            ),
        }
    }
}
