//! Platform Ownership Endorsements on arbitrary bytes: the COSE_Sign1 / CoRIM decoder and the
//! checks must never panic, and an input that passes every document check must say so
//! consistently. Seed with POEs from `locus endorse poe issue`:
//! `cargo +nightly fuzz run poe corpus/poe -- -max_total_time=60`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use locus_analysis::verify::poe::{self, Expectations};

fuzz_target!(|data: &[u8]| {
    // No anchor: the chain check fails, every other check still runs on the decoded POE.
    let v = poe::appraise(
        data,
        &[],
        1_800_000_000,
        &Expectations {
            piid: Some(&[0; 16]),
            owner: Some("operator.example"),
            site: Some("fra"),
        },
    );
    assert!(!v.valid(), "no trust anchor, yet valid");
    assert_eq!(v.checks.len(), poe::PoeCheckId::ALL.len());
});
