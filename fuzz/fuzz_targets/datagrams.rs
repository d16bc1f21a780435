//! Echo challenges and answers; an accepted datagram re-encodes to the same bytes: must never panic.
//! `cargo +nightly fuzz run datagrams corpus/datagrams -- -max_total_time=3600`; the seeds in
//! `corpus/datagrams` are replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::datagrams(data));
