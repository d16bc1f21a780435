//! Cloud evidence on arbitrary bytes: the GCE `attest.Attestation` protobuf decoder and
//! verifier and the Azure TDX vTPM evidence verifier must never panic.
//! Seed with the vendored vectors: `cargo +nightly fuzz run cloud_evidence
//! corpus/cloud_evidence ../tests/vectors/gce-vtpm ../tests/vectors/azure-tdx-vtpm --
//! -max_total_time=60`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use locus_analysis::verify::cloud::{azure, gce, roots};

/// Inside the vectors' certificate validity.
const AT: u64 = 1_735_689_600;

fn gce_roots() -> &'static [Vec<u8>] {
    static R: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    R.get_or_init(|| roots::named("gce").expect("built-in set"))
}

fuzz_target!(|data: &[u8]| {
    let _ = gce::decode(data);
    let _ = gce::verify_attestation(data, Some(b"nonce"), gce_roots(), AT);
    let _ = azure::verify(data, b"challenge", AT, None);
});
