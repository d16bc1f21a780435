//! The judge's policy TOML and the evidence policy TOML loaders: must never panic.
//! `cargo +nightly fuzz run policy_toml corpus/policy_toml -- -max_total_time=3600`; the seeds in
//! `corpus/policy_toml` are replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::policy_toml(data));
