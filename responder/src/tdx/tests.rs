//! One conformance suite for every [`TdxQuoter`] backend that can run here: the lab backend
//! directly, and configfs-tsm over the kernel emulation (whose "TDX module" is the lab).

use std::sync::Arc;

use locus_analysis::verify::tdx::{self as v, TrustRoot};

use super::configfs::fake::{FakeKernel, Faults};
use super::configfs::ConfigfsQuoter;
use super::lab::{LabOptions, LabTdx};
use super::TdxQuoter;

const NOW: u64 = 1_780_000_000;

fn conformance(name: &str, quoter: Arc<dyn TdxQuoter>, lab: &LabTdx) {
    let root = TrustRoot::Configured(lab.root_ca_der().to_vec());
    let mut seen = Vec::new();
    for tag in [0u8, 1, 0xFF] {
        let rd = [tag; 64];
        let q = quoter.quote(rd).unwrap_or_else(|e| panic!("{name}: {e}"));
        let r =
            v::verify(&q, lab.collateral(), &root, NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.report_data, rd, "{name}");
        assert_eq!(r.mr_td, lab.measurements().mr_td, "{name}");
        seen.push(q);
    }
    seen.dedup();
    assert_eq!(
        seen.len(),
        3,
        "{name}: distinct REPORTDATA, distinct quotes"
    );

    // Shared across threads, every caller gets its own binding back.
    let threads: Vec<_> = (0u8..4)
        .map(|t| {
            let q = Arc::clone(&quoter);
            std::thread::spawn(move || {
                let rd = [0x10 + t; 64];
                (rd, q.quote(rd).unwrap())
            })
        })
        .collect();
    for t in threads {
        let (rd, q) = t.join().unwrap();
        assert_eq!(&q[568..632], &rd, "{name}");
    }
}

#[test]
fn lab_backend_conforms() {
    let lab = LabTdx::generate_with(&LabOptions::at(NOW)).unwrap();
    conformance("lab", lab.quoter(), &lab);
}

#[test]
fn configfs_backend_over_the_kernel_emulation_conforms() {
    let lab = LabTdx::generate_with(&LabOptions::at(NOW)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let kernel = Arc::new(FakeKernel::new(lab.quoter(), Faults::default()));
    let quoter = Arc::new(ConfigfsQuoter::with_fs(tmp.path(), kernel));
    conformance("configfs", quoter, &lab);
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
}
