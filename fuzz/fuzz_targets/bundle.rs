//! Stored evidence bundles (CBOR) through `verify_bundle_bytes` and every check: must never panic.
//! `cargo +nightly fuzz run bundle corpus/bundle seeds/bundle -- -max_total_time=3600`:
//! new inputs go to `corpus/bundle` (ignored by git); the seeds in `seeds/bundle` are in the tree
//! and replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::bundle(data));
