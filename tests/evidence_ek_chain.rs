//! EK/AK certificate chains of real GCE vTPMs, verified to Google's roots at a pinned time;
//! each rejected against the other root, before and after the validity window.

use locus_analysis::evidence::ekchain::{verify_chain, EkChainError};
use locus_analysis::evidence::policy::certificates_from_bytes;

fn cert(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/vectors/gce-vtpm/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    certificates_from_bytes(&std::fs::read(path).unwrap())
        .unwrap()
        .remove(0)
}

/// 2024-01-01T00:00:00Z: inside every certificate's validity.
const AT: i64 = 1_704_067_200;

#[test]
fn new_ca_certificates_chain_to_the_gcp_ek_ak_root_only() {
    let inter = vec![
        cert("ca-certs/gcp_ek_ak_ca_intermediate_v3.crt"),
        cert("ca-certs/tpm_ek_intermediate_3.crt"),
    ];
    let gcp_root = vec![cert("ca-certs/gcp_ek_ak_ca_root.crt")];
    let legacy_root = vec![cert("ca-certs/tpm_ek_root_1.cer")];
    for leaf in [
        "certificates/pca_tpm_ecc_sign_cert.pem",
        "certificates/pca_tpm_rsa_enc_cert.pem",
    ] {
        let chain = verify_chain(&cert(leaf), &inter, &gcp_root, AT).unwrap();
        assert_eq!(chain.len(), 3, "{leaf}: {chain:?}");
        assert!(matches!(
            verify_chain(&cert(leaf), &inter, &legacy_root, AT),
            Err(EkChainError::UntrustedIssuer { .. })
        ));
    }
}

#[test]
fn legacy_certificates_chain_to_the_legacy_root_only() {
    let inter = vec![
        cert("ca-certs/gcp_ek_ak_ca_intermediate_v3.crt"),
        cert("ca-certs/tpm_ek_intermediate_3.crt"),
    ];
    let gcp_root = vec![cert("ca-certs/gcp_ek_ak_ca_root.crt")];
    let legacy_root = vec![cert("ca-certs/tpm_ek_root_1.cer")];
    for leaf in [
        "certificates/uca_tpm_ecc_sign_cert.pem",
        "certificates/uca_tpm_rsa_enc_cert.pem",
    ] {
        verify_chain(&cert(leaf), &inter, &legacy_root, AT).unwrap();
        assert!(matches!(
            verify_chain(&cert(leaf), &inter, &gcp_root, AT),
            Err(EkChainError::UntrustedIssuer { .. })
        ));
    }
}

#[test]
fn chains_outside_their_validity_are_rejected() {
    let inter = vec![cert("ca-certs/gcp_ek_ak_ca_intermediate_v3.crt")];
    let root = vec![cert("ca-certs/gcp_ek_ak_ca_root.crt")];
    let leaf = cert("certificates/pca_tpm_ecc_sign_cert.pem");
    // 2022-01-01: before the leaf (2022-11-23) was issued.
    assert!(matches!(
        verify_chain(&leaf, &inter, &root, 1_640_995_200),
        Err(EkChainError::NotYetValid { .. })
    ));
    // 2060-01-01: after the leaf expired (2052-11-15).
    assert!(matches!(
        verify_chain(&leaf, &inter, &root, 2_840_140_800),
        Err(EkChainError::Expired { .. })
    ));
    // A missing intermediate leaves the leaf without a trusted issuer.
    assert!(matches!(
        verify_chain(&leaf, &[], &root, AT),
        Err(EkChainError::UntrustedIssuer { .. })
    ));
}
