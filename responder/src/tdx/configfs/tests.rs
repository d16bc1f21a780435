//! The configfs-tsm backend against the kernel emulation, and against a plain directory.

use std::sync::Arc;

use super::fake::{FakeKernel, Faults};
use super::*;
use crate::tdx::lab::{LabOptions, LabTdx};

const NOW: u64 = 1_780_000_000;

fn lab() -> LabTdx {
    LabTdx::generate_with(&LabOptions::at(NOW)).unwrap()
}

struct Rig {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    kernel: Arc<FakeKernel>,
    quoter: ConfigfsQuoter,
    lab: LabTdx,
}

fn rig(faults: Faults) -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tsm/report");
    std::fs::create_dir_all(&root).unwrap();
    let lab = lab();
    let kernel = Arc::new(FakeKernel::new(lab.quoter(), faults));
    let quoter = ConfigfsQuoter::with_fs(&root, kernel.clone());
    Rig {
        _tmp: tmp,
        root,
        kernel,
        quoter,
        lab,
    }
}

fn rd(tag: u8) -> [u8; 64] {
    [tag; 64]
}

fn root_is_empty(root: &Path) -> bool {
    std::fs::read_dir(root).unwrap().next().is_none()
}

#[test]
fn quote_binds_report_data_and_leaves_no_report_dir() {
    let r = rig(Faults::default());
    let q = r.quoter.quote(rd(7)).unwrap();
    assert_eq!(&q[568..632], &rd(7));
    let v = locus_analysis::verify::tdx::verify(
        &q,
        r.lab.collateral(),
        &locus_analysis::verify::tdx::TrustRoot::Configured(r.lab.root_ca_der().to_vec()),
        NOW,
    )
    .unwrap();
    assert_eq!(v.report_data, rd(7));
    let s = r.kernel.stats();
    assert_eq!((s.dirs_created, s.dirs_removed, s.quotes), (1, 1, 1));
    assert!(root_is_empty(&r.root));
}

#[test]
fn missing_root_is_unavailable() {
    let r = rig(Faults::default());
    let q = ConfigfsQuoter::with_fs(r.root.join("absent"), r.kernel.clone());
    assert!(matches!(
        q.quote(rd(1)),
        Err(QuoteError::ConfigfsUnavailable { .. })
    ));
}

#[test]
fn permission_denied_is_reported() {
    let r = rig(Faults {
        deny_mkdir: true,
        ..Faults::default()
    });
    assert!(matches!(
        r.quoter.quote(rd(1)),
        Err(QuoteError::PermissionDenied { .. })
    ));
}

#[test]
fn missing_provider_is_reported_and_dir_removed() {
    let r = rig(Faults {
        provider: None,
        ..Faults::default()
    });
    assert!(matches!(
        r.quoter.quote(rd(1)),
        Err(QuoteError::ProviderMissing { .. })
    ));
    assert!(root_is_empty(&r.root));
}

#[test]
fn wrong_provider_is_reported_and_dir_removed() {
    let r = rig(Faults {
        provider: Some("sev_guest"),
        ..Faults::default()
    });
    match r.quoter.quote(rd(1)) {
        Err(QuoteError::WrongProvider { found, .. }) => assert_eq!(found, "sev_guest"),
        other => panic!("{other:?}"),
    }
    assert!(root_is_empty(&r.root));
}

#[test]
fn a_race_is_retried_in_a_new_dir_and_yields_our_report_data() {
    let r = rig(Faults {
        races: 1,
        ..Faults::default()
    });
    let q = r.quoter.quote(rd(9)).unwrap();
    assert_eq!(&q[568..632], &rd(9));
    let s = r.kernel.stats();
    assert_eq!((s.dirs_created, s.dirs_removed), (2, 2));
    assert!(root_is_empty(&r.root));
}

#[test]
fn endless_races_give_up() {
    let r = rig(Faults {
        races: 100,
        ..Faults::default()
    });
    assert!(matches!(
        r.quoter.quote(rd(1)),
        Err(QuoteError::GenerationRaced {
            attempts: DEFAULT_ATTEMPTS,
            ..
        })
    ));
    assert_eq!(r.kernel.stats().dirs_created, DEFAULT_ATTEMPTS);
    assert!(root_is_empty(&r.root));
}

#[test]
fn ebusy_is_retried_then_given_up() {
    let r = rig(Faults {
        busy: 1,
        ..Faults::default()
    });
    assert_eq!(&r.quoter.quote(rd(3)).unwrap()[568..632], &rd(3));
    let r = rig(Faults {
        busy: 100,
        ..Faults::default()
    });
    assert!(matches!(
        r.quoter.quote(rd(1)),
        Err(QuoteError::Busy { .. })
    ));
    assert!(root_is_empty(&r.root));
}

#[test]
fn concurrent_requests_are_serialized_and_never_cross() {
    let r = Arc::new(rig(Faults::default()));
    let handles: Vec<_> = (0u8..8)
        .map(|t| {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                for i in 0u8..3 {
                    let tag = t * 16 + i;
                    let q = r.quoter.quote(rd(tag)).unwrap();
                    assert_eq!(&q[568..632], &rd(tag));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = r.kernel.stats();
    assert_eq!((s.quotes, s.max_open), (24, 1));
    assert!(root_is_empty(&r.root));
}

#[test]
fn a_plain_directory_is_not_configfs() {
    // The real filesystem backend on a directory the kernel does not manage: mkdir works,
    // but no provider appears; the directory is removed again.
    let tmp = tempfile::tempdir().unwrap();
    let q = ConfigfsQuoter::new(tmp.path());
    assert!(matches!(
        q.quote(rd(1)),
        Err(QuoteError::ProviderMissing { .. })
    ));
    assert!(root_is_empty(tmp.path()));
    let absent = ConfigfsQuoter::new(tmp.path().join("no/such/dir"));
    assert!(matches!(
        absent.quote(rd(1)),
        Err(QuoteError::ConfigfsUnavailable { .. })
    ));
}
