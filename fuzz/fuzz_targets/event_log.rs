//! TCG crypto-agile event logs (UEFI and CCEL) and their PCR/RTMR replay: must never panic.
//! `cargo +nightly fuzz run event_log corpus/event_log seeds/event_log -- -max_total_time=3600`:
//! new inputs go to `corpus/event_log` (ignored by git); the seeds in `seeds/event_log` are in the tree
//! and replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::event_log(data));
