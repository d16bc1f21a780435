//! Provider certificate authorities shipped with locus, selectable by name (`gce`).
//!
//! GCE: Google's EK/AK CAs for Shielded/Confidential VM vTPMs, DER, as published in
//! google/go-tpm-tools (`server/ca-certs/`, Apache-2.0) and vendored under
//! `tests/vectors/gce-vtpm/ca-certs/` with that licence:
//! - legacy CA: root `tpm_ek_root_1.cer` (EK/AK Root), intermediates `tpm_ek_intermediate_2.crt`,
//!   `tpm_ek_intermediate_3.crt`;
//! - CAS CA: root `gcp_ek_ak_ca_root.crt`, intermediate `gcp_ek_ak_ca_intermediate_v3.crt`.
//!
//! A set mixes roots and intermediates; verifiers trust only the self-signed ones as anchors and
//! use the others to build paths.

use x509_parser::prelude::{FromDer, X509Certificate};

const GCE_LEGACY_ROOT: &[u8] =
    include_bytes!("../../../../tests/vectors/gce-vtpm/ca-certs/tpm_ek_root_1.cer");
const GCE_LEGACY_INTERMEDIATE_2: &[u8] =
    include_bytes!("../../../../tests/vectors/gce-vtpm/ca-certs/tpm_ek_intermediate_2.crt");
const GCE_LEGACY_INTERMEDIATE_3: &[u8] =
    include_bytes!("../../../../tests/vectors/gce-vtpm/ca-certs/tpm_ek_intermediate_3.crt");
const GCE_CAS_ROOT: &[u8] =
    include_bytes!("../../../../tests/vectors/gce-vtpm/ca-certs/gcp_ek_ak_ca_root.crt");
const GCE_CAS_INTERMEDIATE_V3: &[u8] =
    include_bytes!("../../../../tests/vectors/gce-vtpm/ca-certs/gcp_ek_ak_ca_intermediate_v3.crt");

/// Names [`named`] knows.
pub const NAMES: &[&str] = &["gce", "gce-legacy", "gce-cas"];

/// The certificates (DER) of a named provider CA set: `gce` (both Google EK/AK CAs),
/// `gce-legacy` or `gce-cas`. `None` for an unknown name.
pub fn named(name: &str) -> Option<Vec<Vec<u8>>> {
    let legacy = [
        GCE_LEGACY_ROOT,
        GCE_LEGACY_INTERMEDIATE_2,
        GCE_LEGACY_INTERMEDIATE_3,
    ];
    let cas = [GCE_CAS_ROOT, GCE_CAS_INTERMEDIATE_V3];
    let set: Vec<&[u8]> = match name {
        "gce" => legacy.iter().chain(cas.iter()).copied().collect(),
        "gce-legacy" => legacy.to_vec(),
        "gce-cas" => cas.to_vec(),
        _ => return None,
    };
    Some(set.into_iter().map(<[u8]>::to_vec).collect())
}

/// Trust anchors and intermediates, DER.
pub type AnchorsAndIntermediates = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Splits certificates into trust anchors (self-signed) and intermediates. Unparsable ones
/// count as anchors, so that the chain check that uses them reports them.
pub fn split(certs: &[Vec<u8>]) -> AnchorsAndIntermediates {
    certs.iter().cloned().partition(|der| {
        X509Certificate::from_der(der).map_or(true, |(_, c)| {
            c.subject() == c.issuer() && c.verify_signature(None).is_ok()
        })
    })
}

/// [`named`], split into trust anchors and intermediates.
pub fn named_split(name: &str) -> Option<AnchorsAndIntermediates> {
    named(name).map(|set| split(&set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_set_parses_and_unknown_names_do_not_resolve() {
        for name in NAMES {
            let set = named(name).unwrap();
            assert!(!set.is_empty());
            for der in &set {
                X509Certificate::from_der(der).unwrap();
            }
        }
        assert!(named("aws").is_none());
        let (anchors, intermediates) = named_split("gce").unwrap();
        assert_eq!((anchors.len(), intermediates.len()), (2, 3));
    }
}
