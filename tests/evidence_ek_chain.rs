//! EK/AK certificate chains of real GCE vTPMs, verified to Google's roots at a pinned time;
//! each rejected against the other root, before and after the validity window.

use locus_analysis::verify::bundle::ekchain::{verify_chain, EkChainError};
use locus_analysis::verify::bundle::policy::certificates_from_bytes;

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

/// TPM2B_PUBLIC of an ECC P-256 restricted signing key with the given point.
fn ak_public(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut t = hex::decode("0023000b00050072000000100018000b00030010").unwrap();
    t.extend_from_slice(&[0, 32]);
    t.extend_from_slice(x);
    t.extend_from_slice(&[0, 32]);
    t.extend_from_slice(y);
    let mut out = (t.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&t);
    out
}

#[test]
fn a_gce_ak_certificate_binds_its_key_to_the_provider() {
    use locus_analysis::verify::bundle::{check_ak_cert, EvidenceError};
    let leaf = cert("certificates/pca_tpm_ecc_sign_cert.pem");
    let inter = vec![cert("ca-certs/gcp_ek_ak_ca_intermediate_v3.crt")];
    let root = vec![cert("ca-certs/gcp_ek_ak_ca_root.crt")];
    // The certificate's P-256 point (from its SubjectPublicKeyInfo: 04 | x | y).
    let spki_point_at = leaf
        .windows(3)
        .position(|w| w == [0x03, 0x42, 0x00])
        .unwrap()
        + 3;
    let point = &leaf[spki_point_at..spki_point_at + 65];
    assert_eq!(point[0], 4);
    let ak = ak_public(&point[1..33], &point[33..65]);
    check_ak_cert(&ak, &leaf, &inter, &root, AT).unwrap();

    let other = ak_public(&[0x11; 32], &point[33..65]);
    assert!(matches!(
        check_ak_cert(&other, &leaf, &inter, &root, AT),
        Err(EvidenceError::AkCertKeyMismatch)
    ));
    let legacy_root = vec![cert("ca-certs/tpm_ek_root_1.cer")];
    assert!(matches!(
        check_ak_cert(&ak, &leaf, &inter, &legacy_root, AT),
        Err(EvidenceError::EkChain(EkChainError::UntrustedIssuer { .. }))
    ));
}
