//! Lab quotes verify under the lab root, through dcap-qvl alone and through locus's verifier.

use super::*;
use locus_analysis::verify::tdx::{self as v, RootKind, TdxError, TrustRoot};

const NOW: u64 = 1_780_000_000;

fn lab() -> LabTdx {
    LabTdx::generate_with(&LabOptions::at(NOW)).unwrap()
}

#[test]
fn lab_quote_verifies_with_bare_dcap_qvl_under_the_lab_root() {
    let lab = lab();
    let q = lab.quoter().quote([0x42; 64]).unwrap();
    let report = dcap_qvl::verify::QuoteVerifier::new(lab.root_ca_der().to_vec())
        .verify(&q, lab.collateral(), NOW)
        .unwrap();
    assert_eq!(report.status, "UpToDate");
}

#[test]
fn lab_quote_verifies_with_locus_and_reports_its_fields() {
    let lab = lab();
    let q = lab.quoter().quote([0x42; 64]).unwrap();
    let root = TrustRoot::Configured(lab.root_ca_der().to_vec());
    let r = v::verify(&q, lab.collateral(), &root, NOW).unwrap();
    assert!(matches!(r.root, RootKind::Configured { .. }));
    assert_eq!(r.report_data, [0x42; 64]);
    assert_eq!(r.mr_td, lab.measurements().mr_td);
    assert_eq!(r.rtmr, lab.measurements().rtmr);
    assert_eq!(&r.fmspc, b"LOCUS\0");
    assert_eq!(r.ppid.len(), 16);
    assert_eq!(r.piid.as_ref().map(Vec::len), Some(16));
    assert_eq!(r.tcb_status, "UpToDate");
}

#[test]
fn lab_quote_is_not_an_intel_quote() {
    let lab = lab();
    let q = lab.quoter().quote([0; 64]).unwrap();
    let err = v::verify(&q, lab.collateral(), &TrustRoot::IntelSgx, NOW).unwrap_err();
    assert!(
        matches!(err, TdxError::EmbeddedRootMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn revoked_pck_leaf_is_rejected() {
    let lab = LabTdx::generate_with(&LabOptions {
        revoke_pck_leaf: true,
        ..LabOptions::at(NOW)
    })
    .unwrap();
    let q = lab.quoter().quote([0; 64]).unwrap();
    let root = TrustRoot::Configured(lab.root_ca_der().to_vec());
    let err = v::verify(&q, lab.collateral(), &root, NOW).unwrap_err();
    assert!(
        matches!(err, TdxError::CertificateRevoked { .. }),
        "{err:?}"
    );
}

#[test]
fn save_and_load_keep_the_lab() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    lab.save(dir.path()).unwrap();
    let loaded = LabTdx::load(dir.path()).unwrap();
    assert_eq!(loaded.root_ca_der(), lab.root_ca_der());
    assert_eq!(loaded.collateral(), lab.collateral());
    let q = loaded.quoter().quote([5; 64]).unwrap();
    let root = TrustRoot::Configured(std::fs::read(dir.path().join(ROOT_FILE)).unwrap());
    let coll =
        v::collateral_from_json(&std::fs::read(dir.path().join(COLLATERAL_FILE)).unwrap()).unwrap();
    assert_eq!(
        v::verify(&q, &coll, &root, NOW).unwrap().report_data,
        [5; 64]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn two_labs_do_not_trust_each_other() {
    let (a, b) = (lab(), lab());
    let q = a.quoter().quote([0; 64]).unwrap();
    let err = v::verify(
        &q,
        b.collateral(),
        &TrustRoot::Configured(b.root_ca_der().to_vec()),
        NOW,
    )
    .unwrap_err();
    assert!(
        matches!(err, TdxError::EmbeddedRootMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn lab_tcb_status_and_advisories_reach_the_verdict() {
    for (status, want) in [
        (LabTcbStatus::OutOfDate, "OutOfDate"),
        (LabTcbStatus::SwHardeningNeeded, "SWHardeningNeeded"),
    ] {
        let lab = LabTdx::generate_with(&LabOptions {
            tcb_status: status,
            ..LabOptions::at(NOW)
        })
        .unwrap();
        let q = lab.quoter().quote([0; 64]).unwrap();
        let root = TrustRoot::Configured(lab.root_ca_der().to_vec());
        let r = v::verify(&q, lab.collateral(), &root, NOW).unwrap();
        assert_eq!(r.tcb_status, want);
        assert_eq!(r.advisory_ids, ["LOCUS-LAB-SA-0002"]);
    }
    let lab = LabTdx::generate_with(&LabOptions {
        tcb_status: LabTcbStatus::Revoked,
        ..LabOptions::at(NOW)
    })
    .unwrap();
    let q = lab.quoter().quote([0; 64]).unwrap();
    let root = TrustRoot::Configured(lab.root_ca_der().to_vec());
    let err = v::verify(&q, lab.collateral(), &root, NOW).unwrap_err();
    assert!(matches!(err, TdxError::TcbRevoked), "{err:?}");
}
