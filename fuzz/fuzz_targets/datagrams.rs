//! Echo challenges and answers; an accepted datagram re-encodes to the same bytes: must never panic.
//! `cargo +nightly fuzz run datagrams corpus/datagrams seeds/datagrams -- -max_total_time=3600`:
//! new inputs go to `corpus/datagrams` (ignored by git); the seeds in `seeds/datagrams` are in the tree
//! and replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::datagrams(data));
