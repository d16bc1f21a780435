//! Unit tests on real vectors (dcap-qvl samples, GCE and Azure quotes) at pinned times.

use super::*;

const SAMPLE: &[u8] = include_bytes!("../../../../tests/vectors/dcap-qvl/tdx_quote");
const SAMPLE_COLLATERAL: &[u8] =
    include_bytes!("../../../../tests/vectors/dcap-qvl/tdx_quote_collateral.json");
/// Inside every validity window of the sample's collateral (dcap-qvl's own pin).
const SAMPLE_NOW: u64 = 1_752_919_234;
const GCE: &[u8] = include_bytes!("../../../../tests/vectors/gce-tdx-ccel/cos-113-tdx-quote.dat");
const AZURE: &[u8] = include_bytes!("../../../../tests/vectors/azure-tdx-vtpm/td-quote.bin");

fn sample_collateral() -> Collateral {
    collateral_from_json(SAMPLE_COLLATERAL).unwrap()
}

#[test]
fn real_sample_verifies_up_to_date_under_intel_root() {
    let v = verify(
        SAMPLE,
        &sample_collateral(),
        &TrustRoot::IntelSgx,
        SAMPLE_NOW,
    )
    .unwrap();
    assert_eq!(v.tcb_status, "UpToDate");
    assert_eq!(v.root, RootKind::IntelSgx);
    assert_eq!(v.quote_version, 4);
    assert_eq!(hex::encode_upper(v.fmspc), "B0C06F000000");
    assert_eq!(v.ppid.len(), 16);
    assert_eq!(&v.report_data[..], &SAMPLE[568..632]);
    assert_eq!(&v.mr_td[..], &SAMPLE[184..232]);
}

#[test]
fn real_sample_rejected_one_second_after_its_window() {
    let err = verify(
        SAMPLE,
        &sample_collateral(),
        &TrustRoot::IntelSgx,
        SAMPLE_NOW + 1,
    )
    .unwrap_err();
    assert!(matches!(err, TdxError::CrlExpired { .. }), "{err:?}");
}

#[test]
fn real_sample_under_another_root_fails_the_embedded_root_check() {
    let err = verify(
        SAMPLE,
        &sample_collateral(),
        &TrustRoot::Configured(vec![0x30, 0x00]),
        SAMPLE_NOW,
    )
    .unwrap_err();
    assert!(
        matches!(err, TdxError::EmbeddedRootMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn dcap_alone_accepts_what_locus_rejects() {
    // The three laxities the issue names: dcap-qvl 0.7.1 accepts each, locus must not.
    let c = sample_collateral();
    let mut len_tampered = SAMPLE.to_vec();
    len_tampered[632] ^= 0x01; // 4300 -> 4301: reads one padding byte more
    let mut type_tampered = SAMPLE.to_vec();
    type_tampered[764] = 5;
    let mut trailing = SAMPLE.to_vec();
    trailing[5000] = 0xAA;
    for (q, want) in [
        (&len_tampered, "SignatureDataLength"),
        (&type_tampered, "CertificationDataType"),
        (&trailing, "TrailingBytes"),
    ] {
        assert!(
            verify_dcap_only(q, &c, &TrustRoot::IntelSgx, SAMPLE_NOW).is_ok(),
            "dcap-qvl got stricter for {want}: drop or adapt this test"
        );
        let err = verify(q, &c, &TrustRoot::IntelSgx, SAMPLE_NOW).unwrap_err();
        assert!(format!("{err:?}").starts_with(want), "{want}: {err:?}");
    }
}

#[test]
fn zero_padded_real_quotes_pass_the_structural_checks() {
    for q in [GCE, AZURE, SAMPLE] {
        let (layout, chain) = structural(q, &TrustRoot::IntelSgx).unwrap();
        assert_eq!(layout.version, 4);
        assert_eq!(layout.sig_len_field, 632);
        assert_eq!(chain.len(), 3);
    }
    let (gce, _) = structural(GCE, &TrustRoot::IntelSgx).unwrap();
    assert_eq!(gce.end, 0x1347);
}

#[test]
fn every_prefix_of_a_real_quote_fails() {
    // Cut inside the quote proper; cuts in the zero padding are still whole quotes.
    let (layout, _) = structural(SAMPLE, &TrustRoot::IntelSgx).unwrap();
    for len in 0..layout.end {
        assert!(
            structural(&SAMPLE[..len], &TrustRoot::IntelSgx).is_err(),
            "{len}"
        );
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
            let _ = verify(&bytes, &sample_collateral(), &TrustRoot::IntelSgx, SAMPLE_NOW);
        }

        #[test]
        fn random_byte_flips_never_panic(at in 0usize..5006, val in any::<u8>()) {
            let mut q = SAMPLE.to_vec();
            q[at] = val;
            let _ = verify(&q, &sample_collateral(), &TrustRoot::IntelSgx, SAMPLE_NOW);
        }
    }
}

const TD15EX: &[u8] = include_bytes!("../../../../tests/vectors/dcap-qvl/tdx_quote_td15ex");
/// Inside every window of the v5 sample's collateral (computed from its TCB info, QE identity
/// and CRL dates).
const TD15EX_NOW: u64 = 1_791_419_306 + 3600;

fn td15ex_collateral() -> Collateral {
    collateral_from_json(include_bytes!(
        "../../../../tests/vectors/dcap-qvl/tdx_quote_td15ex_collateral.json"
    ))
    .unwrap()
}

#[test]
fn v5_samples_inside_their_windows() {
    let v = verify(
        TD15EX,
        &td15ex_collateral(),
        &TrustRoot::IntelSgx,
        TD15EX_NOW,
    )
    .unwrap();
    assert_eq!((v.quote_version, v.tcb_status.as_str()), (5, "UpToDate"));

    // This platform's SVNs meet no TCB level of its TCB info: not appraisable (dcap-qvl's
    // own tests accept it only with a dangerous TCB override).
    let outdated = collateral_from_json(include_bytes!(
        "../../../../tests/vectors/dcap-qvl/tdx_quote_outdated_collateral.json"
    ))
    .unwrap();
    let quote = include_bytes!("../../../../tests/vectors/dcap-qvl/tdx_quote_outdated");
    let err = verify(quote, &outdated, &TrustRoot::IntelSgx, 1_771_412_331 + 3600).unwrap_err();
    assert!(matches!(err, TdxError::TcbLevel { .. }), "{err:?}");
}

/// Raw reads (unverified fields, the HCL's TDREPORT comparison) take the body where the quote's
/// version puts it: a v5 quote's body starts after its 6-byte descriptor, and its XFAM is the
/// verified one on both versions.
#[test]
fn unverified_fields_read_the_body_at_the_versions_offset() {
    let cases: [(&[u8], Collateral, u64, usize); 2] = [
        (SAMPLE, sample_collateral(), SAMPLE_NOW, 48),
        (TD15EX, td15ex_collateral(), TD15EX_NOW, 54),
    ];
    for (quote, collateral, now, body) in cases {
        assert_eq!(body_offset(quote), body);
        let v = verify(quote, &collateral, &TrustRoot::IntelSgx, now).unwrap();
        assert_eq!(&v.xfam[..], &quote[body + 128..body + 136]);
        let f = crate::verify::bundle::td_fields_unverified(quote).unwrap();
        assert_eq!(f.xfam, v.xfam, "v{}", v.quote_version);
        assert_eq!(f.td_attributes, v.td_attributes);
        assert_eq!(f.mrtd, v.mr_td);
        assert_eq!(f.mr_config_id, v.mr_config_id);
        assert_eq!(f.rtmrs, v.rtmr);
        assert_eq!(f.report_data, v.report_data);
    }
}
