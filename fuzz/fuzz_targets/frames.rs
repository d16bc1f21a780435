//! Stream frames: the header, then every request and answer body either end decodes; an accepted frame re-encodes to the same bytes: must never panic.
//! `cargo +nightly fuzz run frames corpus/frames seeds/frames -- -max_total_time=3600`:
//! new inputs go to `corpus/frames` (ignored by git); the seeds in `seeds/frames` are in the tree
//! and replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::frames(data));
