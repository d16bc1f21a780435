//! `locus bench tdx`: lab quote generation, and locus's TDX verification against bare dcap-qvl
//! verification of the same quotes in the same run (real Intel sample and lab quote).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use clap::Args;
use locus_analysis::verify::tdx::{self, Collateral, TrustRoot};
use locus_responder::tdx::lab::LabTdx;
use locus_responder::tdx::TdxQuoter;
use serde::Serialize;

#[derive(Args)]
pub struct TdxArgs {
    /// Iterations per measured operation (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 1000)]
    iterations: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// dcap-qvl's sample and the time inside its collateral's validity window.
const SAMPLE: &[u8] = include_bytes!("../../tests/vectors/dcap-qvl/tdx_quote");
const SAMPLE_COLLATERAL: &[u8] =
    include_bytes!("../../tests/vectors/dcap-qvl/tdx_quote_collateral.json");
const SAMPLE_AT: u64 = 1_752_919_234;

#[derive(Serialize)]
struct Pair {
    dcap_p50_us: f64,
    locus_p50_us: f64,
    dcap_min_us: f64,
    locus_min_us: f64,
    /// locus p50 / dcap-qvl p50; the target is at most 1.2.
    ratio_p50: f64,
}

#[derive(Serialize)]
struct TdxReport {
    iterations: u32,
    lab_generate_ms: f64,
    lab_quote_p50_us: f64,
    /// Lab quote generation p50 / bare dcap-qvl verify p50 of that quote.
    lab_quote_vs_dcap_verify: f64,
    intel_sample: Pair,
    lab_quote: Pair,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn p50(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort_unstable();
    let min = v.first().copied().unwrap_or_default();
    let mid = v.get(v.len() / 2).copied().unwrap_or_default();
    (us(mid), us(min))
}

/// Alternate the two verifiers, one call each per iteration, so drift hits both alike.
fn pair(
    n: u32,
    quote: &[u8],
    coll: &Collateral,
    root: &TrustRoot,
    at: u64,
) -> anyhow::Result<Pair> {
    let (mut dcap, mut locus) = (Vec::new(), Vec::new());
    for i in 0..n + n / 10 {
        let t = Instant::now();
        tdx::verify_dcap_only(quote, coll, root, at)?;
        let d1 = t.elapsed();
        let t = Instant::now();
        tdx::verify(quote, coll, root, at)?;
        let d2 = t.elapsed();
        if i >= n / 10 {
            dcap.push(d1);
            locus.push(d2);
        }
    }
    let (dcap_p50_us, dcap_min_us) = p50(dcap);
    let (locus_p50_us, locus_min_us) = p50(locus);
    Ok(Pair {
        dcap_p50_us,
        locus_p50_us,
        dcap_min_us,
        locus_min_us,
        ratio_p50: locus_p50_us / dcap_p50_us,
    })
}

/// Runs the benchmark; returns its report as text, or as JSON with `--json`.
pub fn run(args: TdxArgs) -> anyhow::Result<String> {
    let n = args.iterations.max(1);
    let t = Instant::now();
    let lab = LabTdx::generate()?;
    let lab_generate_ms = t.elapsed().as_secs_f64() * 1e3;

    let quoter = lab.quoter();
    let mut gen = Vec::new();
    let mut quote = Vec::new();
    for i in 0..n {
        let mut rd = [0u8; 64];
        rd[..4].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        quote = quoter.quote(rd)?;
        gen.push(t.elapsed());
    }
    let (lab_quote_p50_us, _) = p50(gen);

    let lab_root = TrustRoot::Configured(lab.root_ca_der().to_vec());
    let (from, _) = lab.validity();
    let lab_pair = pair(n, &quote, lab.collateral(), &lab_root, from + 3600)?;
    let sample_coll = tdx::collateral_from_json(SAMPLE_COLLATERAL)?;
    let intel_pair = pair(n, SAMPLE, &sample_coll, &TrustRoot::IntelSgx, SAMPLE_AT)?;

    let report = TdxReport {
        iterations: n,
        lab_generate_ms,
        lab_quote_p50_us,
        lab_quote_vs_dcap_verify: lab_quote_p50_us / lab_pair.dcap_p50_us,
        intel_sample: intel_pair,
        lab_quote: lab_pair,
    };
    render(&report, args.json)
}

/// The report as the command prints it.
fn render(r: &TdxReport, json: bool) -> anyhow::Result<String> {
    crate::render(r, json, true, |out| {
        _ = writeln!(out, "iterations:           {}", r.iterations);
        _ = writeln!(out, "lab generate:         {:.1} ms", r.lab_generate_ms);
        _ = writeln!(
            out,
            "lab quote p50:        {:.1} us ({:.2}x a bare dcap-qvl verify of it)",
            r.lab_quote_p50_us, r.lab_quote_vs_dcap_verify
        );
        for (name, p) in [
            ("intel sample", &r.intel_sample),
            ("lab quote", &r.lab_quote),
        ] {
            _ = writeln!(
                out,
                "{name:<13} verify p50: dcap-qvl {:.1} us, locus {:.1} us, ratio {:.3} (target <= 1.2)",
                p.dcap_p50_us, p.locus_p50_us, p.ratio_p50
            );
        }
    })
}
