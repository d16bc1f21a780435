//! TCG crypto-agile event logs (UEFI and CCEL) and their PCR/RTMR replay: must never panic.
//! `cargo +nightly fuzz run event_log corpus/event_log -- -max_total_time=3600`; the seeds in
//! `corpus/event_log` are replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::event_log(data));
