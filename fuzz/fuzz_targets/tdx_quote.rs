//! TDX quote parsing and verification on arbitrary bytes: must never panic.
//! Seed with the vendored quotes: `cargo +nightly fuzz run tdx_quote corpus/tdx_quote
//! ../tests/vectors/dcap-qvl ../tests/vectors/gce-tdx-ccel -- -max_total_time=60`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use locus_analysis::verify::tdx::{self, Collateral, TrustRoot};

const COLLATERAL: &[u8] = include_bytes!("../../tests/vectors/dcap-qvl/tdx_quote_collateral.json");
/// Inside the sample collateral's validity, so fuzzed quotes reach the deep checks.
const AT: u64 = 1_752_919_234;

fn collateral() -> &'static Collateral {
    static C: OnceLock<Collateral> = OnceLock::new();
    C.get_or_init(|| tdx::collateral_from_json(COLLATERAL).expect("vendored collateral"))
}

fuzz_target!(|data: &[u8]| {
    let _ = tdx::quote_fmspc(data);
    let _ = tdx::verify_without_collateral(data, &TrustRoot::IntelSgx, AT);
    let _ = tdx::verify(data, collateral(), &TrustRoot::IntelSgx, AT);
});
