//! The judge's policy TOML and the evidence policy TOML loaders: must never panic.
//! `cargo +nightly fuzz run policy_toml corpus/policy_toml seeds/policy_toml -- -max_total_time=3600`:
//! new inputs go to `corpus/policy_toml` (ignored by git); the seeds in `seeds/policy_toml` are in the tree
//! and replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::policy_toml(data));
