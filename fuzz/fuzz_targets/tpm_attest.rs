//! TPMS_ATTEST, TPMT_SIGNATURE and TPM2B_PUBLIC parsers, and a signature check: must never panic.
//! `cargo +nightly fuzz run tpm_attest corpus/tpm_attest seeds/tpm_attest -- -max_total_time=3600`:
//! new inputs go to `corpus/tpm_attest` (ignored by git); the seeds in `seeds/tpm_attest` are in the tree
//! and replayed by `cargo test --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| locus_fuzz::entries::tpm_attest(data));
