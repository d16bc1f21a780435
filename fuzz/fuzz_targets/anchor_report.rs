//! Anchor reports as bundles carry them (strict CBOR) and their canonical digest: must never panic.
//! `cargo +nightly fuzz run anchor_report corpus/anchor_report seeds/anchor_report -- -max_total_time=3600`:
//! new inputs go to `corpus/anchor_report` (ignored by git); the seeds in `seeds/anchor_report` are in the tree
//! and replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::anchor_report(data));
