//! The lab report: `report.json`, `samples.json` (re-judgeable with `locus judge`),
//! `samples.csv`, the evidence bundles, and the table printed at the end.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::emulation::Outcome;

/// Above this p99 relay error (µs), emulated distances are off by more than ~10 km and
/// verdicts that hinge on small distances are not supported by the emulation.
const MAX_TRUSTED_DELAY_ERROR_P99_US: f64 = 100.0;

#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) responders: Vec<ResponderReport>,
    pub(crate) wall_s: f64,
    pub(crate) emulation: Emulation,
    /// Every verdict equals the truth.
    pub(crate) all_correct: bool,
    pub(crate) out_dir: String,
}

#[derive(Serialize)]
pub(crate) struct ResponderReport {
    pub(crate) name: String,
    pub(crate) claim: String,
    pub(crate) truth: String,
    pub(crate) verdict: String,
    pub(crate) correct: bool,
    pub(crate) reasons: Vec<String>,
    pub(crate) probers: Vec<ProberRtt>,
    pub(crate) anchors: Vec<SiteRtt>,
    /// Radius of the feasible region, km.
    pub(crate) region_radius_km: Option<f64>,
    pub(crate) claim_inside_region: Option<bool>,
    /// Evidence checks that failed (empty when the bundle verified).
    pub(crate) failed_checks: Vec<String>,
    pub(crate) evidence_error: Option<String>,
    /// Unix seconds at which the stored bundle was collected (`--at` for offline checks).
    pub(crate) collected_at: u64,
    pub(crate) bundle: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct ProberRtt {
    pub(crate) site: String,
    pub(crate) min_rtt_ms: Option<f64>,
    pub(crate) max_distance_km: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct SiteRtt {
    pub(crate) site: String,
    pub(crate) min_rtt_ms: f64,
}

#[derive(Serialize)]
pub(crate) struct Emulation {
    pub(crate) delay_error_p50_us: f64,
    pub(crate) delay_error_p99_us: f64,
    pub(crate) delay_error_max_us: f64,
    pub(crate) packets: u64,
    /// The emulation was precise enough for its verdicts.
    pub(crate) trusted: bool,
    pub(crate) note: String,
}

/// Writes every output file and returns the report.
pub(crate) fn write(out: &Path, o: &Outcome) -> anyhow::Result<Report> {
    std::fs::create_dir_all(out.join("evidence"))?;
    let mut responders = Vec::new();
    for n in &o.nodes {
        let bundle = match &n.bundle {
            Some(b) => {
                let rel = format!("evidence/{}.bundle", n.name);
                std::fs::write(out.join(&rel), b.to_cbor())
                    .with_context(|| format!("writing {rel}"))?;
                Some(rel)
            }
            None => None,
        };
        let j = &n.judgement;
        responders.push(ResponderReport {
            name: n.name.clone(),
            claim: j.claim.clone(),
            truth: n.truth.as_str().to_string(),
            verdict: j.verdict.as_str().to_string(),
            correct: j.verdict.as_str() == n.truth.as_str(),
            reasons: j.reasons.clone(),
            probers: j
                .distances
                .iter()
                .map(|d| ProberRtt {
                    site: d.site.clone(),
                    min_rtt_ms: d.min_rtt_ms,
                    max_distance_km: d.max_distance_km,
                })
                .collect(),
            anchors: j
                .anchors
                .iter()
                .map(|a| SiteRtt {
                    site: a.site.clone(),
                    min_rtt_ms: a.min_rtt_ms,
                })
                .collect(),
            region_radius_km: j.region.as_ref().and_then(|r| r.radius_km),
            claim_inside_region: j.region.as_ref().map(|r| r.claim_inside),
            failed_checks: n.failed_checks.clone(),
            evidence_error: n.evidence_error.clone(),
            collected_at: n.collected_at,
            bundle,
        });
    }
    let e = o.relay_error;
    let trusted = e.p99_us <= MAX_TRUSTED_DELAY_ERROR_P99_US;
    let report = Report {
        all_correct: responders.iter().all(|r| r.correct),
        responders,
        wall_s: o.wall_s,
        emulation: Emulation {
            delay_error_p50_us: e.p50_us,
            delay_error_p99_us: e.p99_us,
            delay_error_max_us: e.max_us,
            packets: e.packets,
            trusted,
            note: if trusted {
                format!(
                    "relay delay error p99 {:.0} µs ≤ {MAX_TRUSTED_DELAY_ERROR_P99_US:.0} µs (≈{:.0} km of fiber): precise enough",
                    e.p99_us,
                    e.p99_us / 10.0
                )
            } else {
                format!(
                    "relay delay error p99 {:.0} µs > {MAX_TRUSTED_DELAY_ERROR_P99_US:.0} µs: distances under ~{:.0} km are not resolved by this run",
                    e.p99_us,
                    e.p99_us / 10.0
                )
            },
        },
        out_dir: out.display().to_string(),
    };
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(out.join("samples.json"), serde_json::to_vec(&o.samples)?)?;
    std::fs::write(out.join("samples.csv"), samples_csv(o))?;
    Ok(report)
}

fn samples_csv(o: &Outcome) -> String {
    let mut csv = String::from("responder,prober,sent_s,rtt_ms,inside_us\n");
    for node in &o.samples.nodes {
        for series in &node.probes {
            for s in &series.samples {
                let _ = writeln!(
                    csv,
                    "{},{},{:.6},{:.4},{:.1}",
                    node.name,
                    series.prober,
                    s.sent_ns as f64 / 1e9,
                    s.rtt_ns as f64 / 1e6,
                    s.inside_ns as f64 / 1e3
                );
            }
        }
    }
    csv
}

/// The table printed at the end of a run.
pub(crate) fn table(r: &Report) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<14} {:<6} {:<13} {:<13} {:<3} {:<30} {:>9} {:>10}  reasons",
        "responder",
        "claim",
        "truth",
        "verdict",
        "ok",
        "min RTT per prober (ms)",
        "region km",
        "anchor ms"
    );
    for x in &r.responders {
        let rtts = x
            .probers
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p.site,
                    p.min_rtt_ms.map_or("-".into(), |v| format!("{v:.1}"))
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        let anchors = x
            .anchors
            .iter()
            .map(|a| format!("{:.1}", a.min_rtt_ms))
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(
            t,
            "{:<14} {:<6} {:<13} {:<13} {:<3} {:<30} {:>9} {:>10}  {}",
            x.name,
            x.claim,
            x.truth,
            x.verdict,
            if x.correct { "✓" } else { "✗" },
            rtts,
            x.region_radius_km.map_or("-".into(), |v| format!("{v:.0}")),
            if anchors.is_empty() {
                "-".into()
            } else {
                anchors
            },
            x.reasons.first().cloned().unwrap_or_default()
        );
    }
    let _ = writeln!(
        t,
        "\n{} of {} verdicts equal the truth; wall time {:.1} s; relay delay error p50 {:.1} µs, p99 {:.1} µs ({})",
        r.responders.iter().filter(|x| x.correct).count(),
        r.responders.len(),
        r.wall_s,
        r.emulation.delay_error_p50_us,
        r.emulation.delay_error_p99_us,
        if r.emulation.trusted { "trusted" } else { "NOT precise enough" }
    );
    let _ = writeln!(t, "output: {}/index.html", r.out_dir);
    t
}
