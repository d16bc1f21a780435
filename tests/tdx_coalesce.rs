//! Coalesced quotes: the responder's batch tree and the verifier's inclusion check agree, and
//! concurrent requesters sharing lab quotes each verify their own binding.

use std::sync::Arc;

use locus_analysis::verify::tdx::{self, coalesced_report_data, InclusionProof, TrustRoot};
use locus_proto::merkle::batch_root;
use locus_responder::tdx::coalesce::CoalescingQuoter;
use locus_responder::tdx::lab::{LabOptions, LabTdx};

fn value(i: usize) -> [u8; 64] {
    let mut v = [0u8; 64];
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v
}

#[test]
fn every_member_of_every_batch_size_proves_inclusion() {
    for size in 1..=17usize {
        let values: Vec<_> = (0..size).map(value).collect();
        let (root, paths) = batch_root(&values).unwrap();
        for (i, path) in paths.into_iter().enumerate() {
            let proof = InclusionProof {
                index: i as u64,
                size: size as u64,
                path,
            };
            assert_eq!(
                coalesced_report_data(&values[i], &proof),
                Some(root),
                "{size}/{i}"
            );
            // Another value, another index, a changed sibling: never the same root.
            assert_ne!(coalesced_report_data(&value(99), &proof), Some(root));
            if size > 1 {
                let other = InclusionProof {
                    index: ((i + 1) % size) as u64,
                    ..proof.clone()
                };
                assert_ne!(coalesced_report_data(&values[i], &other), Some(root));
                let mut bent = proof.clone();
                bent.path[0][0] ^= 1;
                assert_ne!(coalesced_report_data(&values[i], &bent), Some(root));
                let mut short = proof.clone();
                short.path.pop();
                assert_ne!(coalesced_report_data(&values[i], &short), Some(root));
            }
        }
    }
}

#[test]
fn concurrent_requesters_each_verify_their_binding_in_a_shared_lab_quote() {
    const AT: u64 = 1_780_000_000;
    let lab = LabTdx::generate_with(&LabOptions::at(AT)).unwrap();
    let q = Arc::new(CoalescingQuoter::new(lab.quoter(), 16));
    let handles: Vec<_> = (0..12)
        .map(|i| {
            let q = Arc::clone(&q);
            std::thread::spawn(move || (value(i), q.quote_coalesced(value(i)).unwrap()))
        })
        .collect();
    let root = TrustRoot::Configured(lab.root_ca_der().to_vec());
    for h in handles {
        let (v, c) = h.join().unwrap();
        let verified = tdx::verify(&c.quote, lab.collateral(), &root, AT).unwrap();
        let proof = InclusionProof {
            index: c.index,
            size: c.size,
            path: c.path,
        };
        assert_eq!(
            coalesced_report_data(&v, &proof),
            Some(verified.report_data)
        );
    }
}
