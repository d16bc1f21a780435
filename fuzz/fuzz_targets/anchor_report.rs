//! Anchor reports as bundles carry them (strict CBOR) and their canonical digest: must never panic.
//! `cargo +nightly fuzz run anchor_report corpus/anchor_report -- -max_total_time=3600`; the seeds in
//! `corpus/anchor_report` are replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::anchor_report(data));
