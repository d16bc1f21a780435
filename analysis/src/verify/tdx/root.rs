//! Trust roots: Intel's SGX root CA (embedded) or an explicitly configured lab root.

use sha2::{Digest, Sha256};

/// Intel SGX Provisioning Certification Root CA, DER.
///
/// Source: Intel PCS, <https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.cer>,
/// as shipped in dcap-qvl 0.7.1 (`src/TrustedRootCA.der`, MIT). Subject `CN=Intel SGX Root CA,
/// O=Intel Corporation`, valid 2018-05-21 .. 2049-12-31, SHA-256
/// 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3 (pinned by a test).
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel_sgx_root_ca.der");

/// The certificate a TDX verdict is rooted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoot {
    /// Intel's SGX root CA: verdicts about real hardware.
    IntelSgx,
    /// A root given explicitly (a lab PKI). Verdicts under it say so; never a default.
    Configured(Vec<u8>),
}

/// Which root a verdict was made under, for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RootKind {
    /// Intel's SGX root CA.
    IntelSgx,
    /// A configured root that is not Intel's, identified by the SHA-256 of its DER.
    Configured { sha256: String },
}

impl TrustRoot {
    /// The root certificate, DER.
    pub fn der(&self) -> &[u8] {
        match self {
            Self::IntelSgx => INTEL_SGX_ROOT_CA_DER,
            Self::Configured(der) => der,
        }
    }

    /// Intel's root also when it was configured explicitly, so a report never calls Intel's
    /// root a lab root.
    pub fn kind(&self) -> RootKind {
        match self {
            Self::Configured(der) if der.as_slice() != INTEL_SGX_ROOT_CA_DER => {
                RootKind::Configured {
                    sha256: sha256_hex(der),
                }
            }
            _ => RootKind::IntelSgx,
        }
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_intel_root_is_the_pinned_one() {
        assert_eq!(
            sha256_hex(INTEL_SGX_ROOT_CA_DER),
            "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
        );
    }

    #[test]
    fn intel_root_configured_explicitly_is_still_intel() {
        let root = TrustRoot::Configured(INTEL_SGX_ROOT_CA_DER.to_vec());
        assert_eq!(root.kind(), RootKind::IntelSgx);
        assert!(matches!(
            TrustRoot::Configured(vec![1, 2, 3]).kind(),
            RootKind::Configured { .. }
        ));
    }
}
