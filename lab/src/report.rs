//! The lab report: `report.json`, `samples.json` (re-judgeable with `locus judge`),
//! `samples.csv`, the evidence bundles, and the table printed at the end.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::emulation::Outcome;
use crate::geo::km;
use crate::scenario::Scenario;

/// km of distance per µs of one-way delay error: an error `e` on both legs lengthens a round
/// trip by `2e`, worth `2e × 100 km/ms`.
const KM_PER_US_ERROR: f64 = 0.2;

/// The emulation supports its verdicts when the p90 delay error, as distance, stays below this
/// fraction of the smallest distance an attacker of the scenario relies on. Verdicts use
/// minimum RTTs over many samples, which the (late-only) tail barely moves; p90 bounds what
/// most samples saw.
const MAX_ERROR_FRACTION: f64 = 0.25;

#[derive(Serialize)]
pub struct Report {
    pub(crate) responders: Vec<ResponderReport>,
    /// Each prober's minimum RTT to each landmark (the judge's calibration).
    pub(crate) landmarks: Vec<LandmarkReport>,
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
pub(crate) struct LandmarkReport {
    pub(crate) prober: String,
    pub(crate) site: String,
    pub(crate) min_rtt_ms: f64,
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
    pub(crate) delay_error_p90_us: f64,
    pub(crate) delay_error_p99_us: f64,
    /// Smallest distance any attacker of the scenario relies on, km.
    pub(crate) smallest_attack_km: Option<f64>,
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
    let error_km = e.p90_us * KM_PER_US_ERROR;
    let smallest = smallest_attack_km(&o.scenario);
    let trusted = smallest.is_none_or(|km| error_km <= km * MAX_ERROR_FRACTION);
    let report = Report {
        all_correct: responders.iter().all(|r| r.correct),
        responders,
        landmarks: o
            .samples
            .landmarks
            .iter()
            .map(|l| LandmarkReport {
                prober: l.prober.clone(),
                site: l.site.clone(),
                min_rtt_ms: l.min_rtt_ns as f64 / 1e6,
            })
            .collect(),
        wall_s: o.wall_s,
        emulation: Emulation {
            delay_error_p50_us: e.p50_us,
            delay_error_p90_us: e.p90_us,
            delay_error_p99_us: e.p99_us,
            smallest_attack_km: smallest,
            delay_error_max_us: e.max_us,
            packets: e.packets,
            trusted,
            note: format!(
                "relay delay error p90 {:.0} µs ≈ {error_km:.0} km of fiber{}; relays only ever add delay, never remove it; {}",
                e.p90_us,
                smallest.map_or(String::new(), |km| format!(
                    ", smallest attacker distance in this scenario {km:.0} km"
                )),
                if trusted {
                    "precise enough for these verdicts"
                } else {
                    "NOT precise enough: verdicts that hinge on the smallest distances are not supported by this run"
                }
            ),
        },
        out_dir: out.display().to_string(),
    };
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(out.join("samples.json"), serde_json::to_vec(&o.samples)?)?;
    std::fs::write(out.join("samples.csv"), samples_csv(o))?;
    Ok(report)
}

/// The smallest distance between where an attacker of the scenario is and where it claims
/// (or pretends) to be: relay to TD, TD to vTPM, move, site to claim.
fn smallest_attack_km(s: &Scenario) -> Option<f64> {
    let d = |a: usize, b: usize| km(&s.sites[a], &s.sites[b]);
    s.responders
        .iter()
        .flat_map(|r| {
            [
                r.relay_via.map(|v| d(v, r.site)),
                r.tpm_site.map(|t| d(t, r.site)),
                r.moves.map(|(to, _)| d(to, r.site)),
                (r.site != r.claim).then(|| d(r.site, r.claim)),
            ]
        })
        .flatten()
        .filter(|km| *km > 0.0)
        .min_by(f64::total_cmp)
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
    let landmarks = r
        .landmarks
        .iter()
        .map(|l| format!("{}→{}:{:.1}", l.prober, l.site, l.min_rtt_ms))
        .collect::<Vec<_>>()
        .join(" ");
    let _ = writeln!(
        t,
        "\nlandmarks (min RTT, ms): {}",
        if landmarks.is_empty() {
            "none (uncalibrated)".to_string()
        } else {
            landmarks
        }
    );
    let _ = writeln!(
        t,
        "\n{} of {} verdicts equal the truth; wall time {:.1} s\nemulation: {}",
        r.responders.iter().filter(|x| x.correct).count(),
        r.responders.len(),
        r.wall_s,
        r.emulation.note
    );
    let _ = writeln!(t, "output: {}/index.html", r.out_dir);
    t
}
