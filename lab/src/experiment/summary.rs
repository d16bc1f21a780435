//! From trials to numbers: detection and false-positive rates with Wilson intervals, ROC
//! curves, thresholds at a fixed FPR, the smallest distance caught, and `summary.json`.

use serde::Serialize;

use super::config::{Experiment, Kind};
use super::results::Row;
use super::sim::Point;

/// Detection target of the headline: TPR ≥ 99.9 % at FPR ≤ 0.1 %.
pub(crate) const TPR_MIN: f64 = 0.999;
pub(crate) const FPR_MAX: f64 = 0.001;
const Z95: f64 = 1.959_964;

/// Wilson score interval (95 %) of `k` successes in `n` trials; (0, 1) for n = 0.
pub(crate) fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = n as f64;
    let p = k as f64 / n_f;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n_f;
    let center = (p + z2 / (2.0 * n_f)) / denom;
    let half = Z95 * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denom;
    // exact at the ends: no successes has lower bound 0, all successes upper bound 1
    let lo = if k == 0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let hi = if k == n {
        1.0
    } else {
        (center + half).min(1.0)
    };
    (lo, hi)
}

/// The decision statistic (verdict `Scores`) whose threshold a kind's ROC sweeps.
pub(crate) fn score(kind: Kind, r: &Row) -> Option<f64> {
    match kind {
        // both the prober excess and the in-TD anchor excess catch a proxy; the policy's
        // defaults for the two are equal (2 ms), so one threshold sweeps both
        Kind::Proxy | Kind::Honest => match (r.min_excess_ms, r.max_anchor_excess_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        },
        Kind::Frankenstein => r.vtpm_cmd_rtt_min_ms,
        Kind::Relocation => r.cusum_stat_ms,
    }
}

/// Name of the score and the policy field holding its default threshold.
pub(crate) fn score_name(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Proxy | Kind::Honest => (
            "max(min_excess_ms, max_anchor_excess_ms)",
            "max_excess_ms (= max_anchor_excess_ms)",
        ),
        Kind::Frankenstein => ("vtpm_cmd_rtt_min_ms", "max_vtpm_cmd_rtt_ms"),
        Kind::Relocation => ("cusum_stat_ms", "relocation.threshold_ms"),
    }
}

pub(crate) fn default_threshold(e: &Experiment, kind: Kind) -> f64 {
    match kind {
        Kind::Proxy | Kind::Honest => e.policy.max_excess_ms,
        Kind::Frankenstein => e.policy.max_vtpm_cmd_rtt_ms,
        Kind::Relocation => e.policy.relocation.threshold_ms,
    }
}

fn scores(kind: Kind, rows: &[&Row]) -> Vec<f64> {
    rows.iter()
        .map(|r| score(kind, r).unwrap_or(f64::NEG_INFINITY))
        .collect()
}

/// Smallest threshold `t` with at most `fpr_max` of the honest scores above it.
pub(crate) fn threshold_at_fpr(honest: &[f64], fpr_max: f64) -> f64 {
    let mut v = honest.to_vec();
    v.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr_max * v.len() as f64).floor() as usize;
    v.get(allowed).copied().unwrap_or(f64::NEG_INFINITY)
}

fn rate_above(xs: &[f64], t: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.iter().filter(|&&x| x > t).count() as f64 / xs.len() as f64
}

/// ROC curve points `(fpr, tpr)` sweeping the threshold over every observed score, and AUC.
pub(crate) fn roc(honest: &[f64], attack: &[f64]) -> (Vec<(f64, f64)>, f64) {
    let mut ts: Vec<f64> = honest.iter().chain(attack).copied().collect();
    ts.sort_by(f64::total_cmp);
    ts.dedup();
    let mut pts = vec![(1.0, 1.0)];
    for &t in &ts {
        pts.push((rate_above(honest, t), rate_above(attack, t)));
    }
    pts.push((0.0, 0.0));
    pts.dedup();
    let mut auc = 0.0;
    for w in pts.windows(2) {
        auc += (w[0].0 - w[1].0) * (w[0].1 + w[1].1) / 2.0;
    }
    (pts, auc)
}

/// One swept point's numbers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PointStats {
    pub(crate) kind: Kind,
    pub(crate) distance_km: f64,
    pub(crate) jitter_us: f64,
    pub(crate) probers: usize,
    pub(crate) samples_per_round: u64,
    pub(crate) inflation: f64,
    pub(crate) trials: u64,
    /// Verdict ≠ located (policy thresholds).
    pub(crate) tpr: f64,
    pub(crate) tpr_ci: (f64, f64),
    /// Verdict equals the truth (`proxied`, `frankenstein`, `relocated`).
    pub(crate) correct_verdict_rate: f64,
    /// The same as `correct_verdict_rate` ("caught": the right class only), with its interval.
    pub(crate) correct_tpr: f64,
    pub(crate) correct_tpr_ci: (f64, f64),
    /// Not located, but not the right class either ("flagged as something else").
    pub(crate) flagged_other: f64,
    pub(crate) honest_trials: u64,
    /// Honest nodes not `located` (any other verdict).
    pub(crate) fpr: f64,
    pub(crate) fpr_ci: (f64, f64),
    /// Honest nodes accused: `proxied`, `relocated`, `frankenstein` or `evidence-invalid`.
    pub(crate) accused_fpr: f64,
    pub(crate) accused_fpr_ci: (f64, f64),
    /// Honest nodes `inconclusive` (not located, not accused).
    pub(crate) inconclusive_rate: f64,
    /// Detection rate of the kind's score at the threshold that keeps FPR ≤ 0.1 %.
    pub(crate) tpr_at_fixed_fpr: f64,
    pub(crate) auc: f64,
    pub(crate) latency_median_s: Option<f64>,
    pub(crate) latency_p90_s: Option<f64>,
    /// RTT the attacker adds at this distance, ms (2 × distance × inflation / 200 km/ms).
    pub(crate) effect_ms: f64,
    /// The emulation's p99 delay error is at least the effect: lab runs could not resolve it.
    pub(crate) emulation_error_exceeds_effect: Option<bool>,
}

/// Per kind, at the headline point (first value of every other axis).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KindSummary {
    pub(crate) swept: bool,
    /// Smallest swept distance from which on every swept distance is caught with TPR ≥
    /// 99.9 % at FPR ≤ 0.1 % (point estimates); null if none.
    pub(crate) min_distance_km: Option<f64>,
    /// At `min_distance_km` (else at the largest distance): any verdict but `located`.
    pub(crate) tpr: Option<f64>,
    pub(crate) tpr_ci: Option<(f64, f64)>,
    /// The right verdict class only (what `min_distance_km` counts as caught).
    pub(crate) correct_tpr: Option<f64>,
    pub(crate) correct_tpr_ci: Option<(f64, f64)>,
    /// Not located but another class than the truth.
    pub(crate) flagged_other: Option<f64>,
    pub(crate) fpr: Option<f64>,
    pub(crate) fpr_ci: Option<(f64, f64)>,
    /// Honest nodes accused (`proxied`, `relocated`, `frankenstein`, `evidence-invalid`).
    pub(crate) accused_fpr: Option<f64>,
    pub(crate) accused_fpr_ci: Option<(f64, f64)>,
    /// Attacker trials at that distance.
    pub(crate) trials: u64,
    pub(crate) honest_trials: u64,
    /// Whether the Wilson bounds also meet the target (TPR lower ≥ 99.9 %, FPR upper ≤ 0.1 %).
    pub(crate) ci_supported: bool,
    pub(crate) at_distance_km: Option<f64>,
}

/// Regenerating a policy default: the kind's score on honest and attacker trials.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ThresholdStats {
    pub(crate) kind: Kind,
    pub(crate) score: &'static str,
    pub(crate) policy_field: &'static str,
    pub(crate) default: f64,
    pub(crate) honest_max: Option<f64>,
    /// The threshold keeping FPR ≤ 0.1 % on the honest trials.
    pub(crate) threshold_at_fpr: f64,
    /// FPR of the score alone at the default threshold.
    pub(crate) fpr_at_default: f64,
    /// Per distance: detection rate of the score alone at the default threshold.
    pub(crate) tpr_at_default: Vec<(f64, f64)>,
}

/// One combination of the axes other than distance: honest FPR and, per swept kind, the
/// smallest distance caught (same criterion as the headline).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AxesStats {
    pub(crate) jitter_us: f64,
    pub(crate) probers: usize,
    pub(crate) samples_per_round: u64,
    pub(crate) inflation: f64,
    pub(crate) honest_trials: u64,
    pub(crate) fpr: f64,
    pub(crate) fpr_ci: (f64, f64),
    pub(crate) accused_fpr: f64,
    pub(crate) accused_fpr_ci: (f64, f64),
    pub(crate) inconclusive_rate: f64,
    pub(crate) min_distance_km: std::collections::BTreeMap<Kind, Option<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Headline {
    pub(crate) jitter_us: f64,
    pub(crate) probers: usize,
    pub(crate) samples_per_round: u64,
    pub(crate) inflation: f64,
    pub(crate) duration_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub(crate) experiment: String,
    pub(crate) description: String,
    /// "simulation": trials drawn from the lab's delay model (not run through the emulation).
    pub(crate) mode: &'static str,
    pub(crate) seed: u64,
    pub(crate) trials: u64,
    pub(crate) criterion: String,
    pub(crate) at: Headline,
    pub(crate) proxy: KindSummary,
    pub(crate) frankenstein: KindSummary,
    pub(crate) relocation: KindSummary,
    /// Every combination of the other axes (the first is the headline).
    pub(crate) by_axes: Vec<AxesStats>,
    pub(crate) thresholds: Vec<ThresholdStats>,
    pub(crate) points: Vec<PointStats>,
    pub(crate) assumptions: Vec<String>,
    pub(crate) model: super::config::Model,
    pub(crate) emulation: Option<super::config::EmulationError>,
    pub(crate) policy: locus_analysis::Policy,
}

fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    Some(v[i])
}

/// The other axes of every point, in sweep order.
pub(crate) fn combos(e: &Experiment) -> Vec<Point> {
    let mut out = Vec::new();
    for &j in &e.jitter_us {
        for &p in &e.n_probers {
            for &s in &e.samples_per_round {
                for &i in &e.inflation {
                    out.push(Point {
                        kind: Kind::Honest,
                        distance_km: 0.0,
                        jitter_us: j,
                        probers: p,
                        samples_per_round: s,
                        inflation: i,
                    });
                }
            }
        }
    }
    out
}

/// Every point of the sweep (honest first per combination), in run order.
pub(crate) fn points(e: &Experiment) -> Vec<(Point, u64)> {
    let mut out = Vec::new();
    for c in combos(e) {
        out.push((c.clone(), e.honest_reps));
        for &k in &e.kinds {
            for &d in &e.distance_km {
                out.push((
                    Point {
                        kind: k,
                        distance_km: d,
                        ..c.clone()
                    },
                    e.reps,
                ));
            }
        }
    }
    out
}

fn same_axes(a: &Point, b: &Point) -> bool {
    a.jitter_us == b.jitter_us
        && a.probers == b.probers
        && a.samples_per_round == b.samples_per_round
        && a.inflation == b.inflation
}

/// Rows of one point (only reps the experiment asks for).
fn rows_of<'a>(rows: &'a [Row], p: &Point, reps: u64) -> Vec<&'a Row> {
    let key = p.key();
    rows.iter()
        .filter(|r| r.rep < reps && r.point.key() == key)
        .collect()
}

/// Everything the plots need for one kind at one combination.
pub(crate) struct KindCurves {
    pub(crate) kind: Kind,
    pub(crate) honest: Vec<f64>,
    /// Per distance: attacker scores.
    pub(crate) attack: Vec<(f64, Vec<f64>)>,
    pub(crate) latencies: Vec<(f64, Vec<f64>)>,
}

pub(crate) fn curves(e: &Experiment, rows: &[Row], combo: &Point, kind: Kind) -> KindCurves {
    let honest = scores(kind, &rows_of(rows, combo, e.honest_reps));
    let mut attack = Vec::new();
    let mut latencies = Vec::new();
    for &d in &e.distance_km {
        let p = Point {
            kind,
            distance_km: d,
            ..combo.clone()
        };
        let rs = rows_of(rows, &p, e.reps);
        attack.push((d, scores(kind, &rs)));
        latencies.push((d, rs.iter().filter_map(|r| r.latency_s).collect()));
    }
    KindCurves {
        kind,
        honest,
        attack,
        latencies,
    }
}

pub(crate) fn summarize(e: &Experiment, rows: &[Row]) -> Summary {
    let emu_ms = e.emulation.as_ref().map(|x| x.delay_error_p99_us / 1e3);
    let mut points_out = Vec::new();
    for c in combos(e) {
        let honest = rows_of(rows, &c, e.honest_reps);
        let h_n = honest.len() as u64;
        let h_k = honest.iter().filter(|r| r.caught).count() as u64;
        let h_acc = honest.iter().filter(|r| accused(r)).count() as u64;
        let h_inc = (honest.iter())
            .filter(|r| r.verdict == "inconclusive")
            .count() as u64;
        for &k in &e.kinds {
            let hs = scores(k, &honest);
            let t_fix = threshold_at_fpr(&hs, FPR_MAX);
            for &d in &e.distance_km {
                let p = Point {
                    kind: k,
                    distance_km: d,
                    ..c.clone()
                };
                let rs = rows_of(rows, &p, e.reps);
                let n = rs.len() as u64;
                let caught = rs.iter().filter(|r| r.caught).count() as u64;
                let correct = rs.iter().filter(|r| r.verdict == k.truth()).count();
                let a = scores(k, &rs);
                let (_, auc) = roc(&hs, &a);
                let mut lat: Vec<f64> = rs.iter().filter_map(|r| r.latency_s).collect();
                let effect_ms = 2.0 * d * c.inflation / 200.0;
                points_out.push(PointStats {
                    kind: k,
                    distance_km: d,
                    jitter_us: c.jitter_us,
                    probers: c.probers,
                    samples_per_round: c.samples_per_round,
                    inflation: c.inflation,
                    trials: n,
                    tpr: frac(caught, n),
                    tpr_ci: wilson(caught, n),
                    correct_verdict_rate: frac(correct as u64, n),
                    correct_tpr: frac(correct as u64, n),
                    correct_tpr_ci: wilson(correct as u64, n),
                    flagged_other: frac(caught - correct as u64, n),
                    honest_trials: h_n,
                    fpr: frac(h_k, h_n),
                    fpr_ci: wilson(h_k, h_n),
                    accused_fpr: frac(h_acc, h_n),
                    accused_fpr_ci: wilson(h_acc, h_n),
                    inconclusive_rate: frac(h_inc, h_n),
                    tpr_at_fixed_fpr: rate_above(&a, t_fix),
                    auc,
                    latency_median_s: quantile(&mut lat, 0.5),
                    latency_p90_s: quantile(&mut lat, 0.9),
                    effect_ms,
                    emulation_error_exceeds_effect: emu_ms.map(|m| m >= effect_ms),
                });
            }
        }
    }

    let combos = combos(e);
    let head = combos[0].clone();
    let kind_summary = |k: Kind, head: &Point| -> KindSummary {
        let mine: Vec<&PointStats> = points_out
            .iter()
            .filter(|p| p.kind == k)
            .filter(|p| {
                same_axes(
                    &Point {
                        kind: k,
                        distance_km: p.distance_km,
                        jitter_us: p.jitter_us,
                        probers: p.probers,
                        samples_per_round: p.samples_per_round,
                        inflation: p.inflation,
                    },
                    head,
                )
            })
            .collect();
        if mine.is_empty() {
            return KindSummary {
                swept: false,
                min_distance_km: None,
                tpr: None,
                tpr_ci: None,
                correct_tpr: None,
                correct_tpr_ci: None,
                flagged_other: None,
                fpr: None,
                fpr_ci: None,
                accused_fpr: None,
                accused_fpr_ci: None,
                trials: 0,
                honest_trials: 0,
                ci_supported: false,
                at_distance_km: None,
            };
        }
        let mut by_d = mine.clone();
        by_d.sort_by(|a, b| a.distance_km.total_cmp(&b.distance_km));
        // caught = the right verdict class; a false positive = an honest node not located
        let ok = |p: &PointStats| p.trials > 0 && p.correct_tpr >= TPR_MIN && p.fpr <= FPR_MAX;
        // smallest distance from which on every larger swept distance is caught too
        let mut first_ok: Option<usize> = None;
        for i in (0..by_d.len()).rev() {
            if ok(by_d[i]) {
                first_ok = Some(i);
            } else {
                break;
            }
        }
        let at = by_d[first_ok.unwrap_or(by_d.len() - 1)];
        KindSummary {
            swept: true,
            min_distance_km: first_ok.map(|i| by_d[i].distance_km),
            tpr: Some(at.tpr),
            tpr_ci: Some(at.tpr_ci),
            correct_tpr: Some(at.correct_tpr),
            correct_tpr_ci: Some(at.correct_tpr_ci),
            flagged_other: Some(at.flagged_other),
            fpr: Some(at.fpr),
            fpr_ci: Some(at.fpr_ci),
            accused_fpr: Some(at.accused_fpr),
            accused_fpr_ci: Some(at.accused_fpr_ci),
            trials: at.trials,
            honest_trials: at.honest_trials,
            ci_supported: first_ok.is_some()
                && at.correct_tpr_ci.0 >= TPR_MIN
                && at.fpr_ci.1 <= FPR_MAX,
            at_distance_km: Some(at.distance_km),
        }
    };

    let by_axes: Vec<AxesStats> = combos
        .iter()
        .map(|c| {
            let honest = rows_of(rows, c, e.honest_reps);
            let n = honest.len() as u64;
            let k = honest.iter().filter(|r| r.caught).count() as u64;
            let acc = honest.iter().filter(|r| accused(r)).count() as u64;
            let inc = (honest.iter())
                .filter(|r| r.verdict == "inconclusive")
                .count() as u64;
            AxesStats {
                jitter_us: c.jitter_us,
                probers: c.probers,
                samples_per_round: c.samples_per_round,
                inflation: c.inflation,
                honest_trials: n,
                fpr: frac(k, n),
                fpr_ci: wilson(k, n),
                accused_fpr: frac(acc, n),
                accused_fpr_ci: wilson(acc, n),
                inconclusive_rate: frac(inc, n),
                min_distance_km: e
                    .kinds
                    .iter()
                    .map(|&kind| (kind, kind_summary(kind, c).min_distance_km))
                    .collect(),
            }
        })
        .collect();

    let mut thresholds = Vec::new();
    for &k in &e.kinds {
        let cv = curves(e, rows, &head, k);
        let def = default_threshold(e, k);
        let finite: Vec<f64> = cv
            .honest
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        let (score, field) = score_name(k);
        thresholds.push(ThresholdStats {
            kind: k,
            score,
            policy_field: field,
            default: def,
            honest_max: finite.iter().copied().max_by(f64::total_cmp),
            threshold_at_fpr: threshold_at_fpr(&cv.honest, FPR_MAX),
            fpr_at_default: rate_above(&cv.honest, def),
            tpr_at_default: cv
                .attack
                .iter()
                .map(|(d, a)| (*d, rate_above(a, def)))
                .collect(),
        });
    }

    let m = &e.model;
    let mut assumptions = vec![
        "mode: simulation — trials are drawn from the lab's delay model and judged by the \
         verdict engine (locus_analysis::judge); no packets are sent"
            .to_string(),
        "one-way delay = great-circle distance × inflation / 200 km per ms (light in fiber at \
         2/3 c)"
            .to_string(),
        "jitter: uniform in 0..=jitter_us per packet and direction (as the lab relay draws it)"
            .to_string(),
        format!(
            "every echo RTT adds a fixed floor of {} µs and an exponential host-noise tail with \
             mean {} µs (calibrated against a locus lab run)",
            m.floor_us, m.noise_mean_us
        ),
        format!(
            "in-TD anchor RTT: minimum of {} TLS round trips with a {} µs floor; vTPM command: \
             minimum of {} with a {} µs local floor; a relayed vTPM adds its fiber RTT",
            m.anchor_round_trips, m.anchor_floor_us, m.vtpm_cmds, m.vtpm_local_us
        ),
        format!(
            "attackers: the far end (TD behind a proxy, remote vTPM, relocation target) lies at \
             a uniformly random bearing at the swept distance from the claim; a relocating node \
             moves {:.0} % into the window",
            m.move_at_frac * 100.0
        ),
        "evidence is valid and bound in every trial: the experiment measures what timing \
         catches"
            .to_string(),
        "caught (min_distance_km, correct_tpr) = the right verdict class only; tpr = any \
         verdict other than located, flagged_other = the difference; FPR = honest nodes not \
         located, accused_fpr = honest nodes proxied/relocated/frankenstein/evidence-invalid"
            .to_string(),
    ];

    if m.inflation_sigma > 0.0 {
        assumptions.push(format!(
            "realistic paths: every prober's path to the claimed metro, the relay → TD, TD → \
             anchor and TD → vTPM legs have their own inflation, lognormal (σ {}) around the \
             point's inflation, clipped to {}-{}",
            m.inflation_sigma, m.inflation_min, m.inflation_max
        ));
    }
    if m.jitter_tail > 0.0 {
        assumptions.push(format!(
            "jitter: heavy-tailed (Lomax, shape {}, scale jitter_us) per packet and direction",
            m.jitter_tail
        ));
    }
    if m.route_change_prob > 0.0 {
        assumptions.push(format!(
            "route changes: each prober path changes route with probability {} at a uniform \
             time in 10-90 % of the window, its inflation multiplied by a lognormal factor \
             (σ {}); a relocating node keeps each path's inflation to its new site",
            m.route_change_prob, m.route_change_sigma
        ));
    }
    if m.metro_km > 0.0 {
        assumptions.push(format!(
            "honest nodes (and Frankenstein TDs, relocating nodes before the move) sit \
             uniformly within {} km of the claimed site's point; relays sit at the point",
            m.metro_km
        ));
    }
    if m.landmark_at_claim {
        assumptions.push(format!(
            "a landmark at the claimed site's point: each prober's minimum over {} echoes \
             through the same paths (and route changes) goes to World::landmarks",
            super::sim::LANDMARK_ECHOES
        ));
    }
    if m.anchor_history {
        assumptions.push(
            "the node's anchor minima from an earlier window (where the TD was before any \
             move; the anchor route changed since with route_change_prob) go to \
             NodeInput::anchor_history"
                .to_string(),
        );
    }
    if m.host_spread_us > 0.0 {
        assumptions.push(format!(
            "each endpoint (node, landmark) adds its own host delay, uniform in 0-{} µs",
            m.host_spread_us
        ));
    }

    Summary {
        experiment: e.name.clone(),
        description: e.description.clone(),
        mode: "simulation",
        seed: e.seed,
        trials: rows.len() as u64,
        criterion: format!(
            "min_distance_km: smallest swept distance from which on every swept distance has \
             TPR ≥ {:.1} % with FPR ≤ {:.1} % (point estimates under the policy's thresholds); \
             intervals are Wilson 95 %",
            TPR_MIN * 100.0,
            FPR_MAX * 100.0
        ),
        at: Headline {
            jitter_us: head.jitter_us,
            probers: head.probers,
            samples_per_round: head.samples_per_round,
            inflation: head.inflation,
            duration_s: e.duration_s,
        },
        proxy: kind_summary(Kind::Proxy, &head),
        frankenstein: kind_summary(Kind::Frankenstein, &head),
        relocation: kind_summary(Kind::Relocation, &head),
        by_axes,
        thresholds,
        points: points_out,
        assumptions,
        model: e.model.clone(),
        emulation: e.emulation.clone(),
        policy: e.policy.clone(),
    }
}

/// An accusation: a verdict that says the node is not what it claims (not `located`, not
/// merely `inconclusive` or `unreachable`).
fn accused(r: &Row) -> bool {
    matches!(
        r.verdict.as_str(),
        "proxied" | "relocated" | "frankenstein" | "evidence-invalid"
    )
}

fn frac(k: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        k as f64 / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_brackets_the_estimate() {
        let (lo, hi) = wilson(0, 4000);
        assert_eq!(lo, 0.0);
        assert!(hi < 0.001, "{hi}");
        let (lo, hi) = wilson(50, 100);
        assert!(lo < 0.5 && hi > 0.5 && lo > 0.39 && hi < 0.61);
    }

    #[test]
    fn roc_of_separated_scores_has_auc_one() {
        let (_, auc) = roc(&[0.0, 0.1, 0.2], &[1.0, 2.0]);
        assert!((auc - 1.0).abs() < 1e-9, "{auc}");
        let (_, auc) = roc(&[0.0, 1.0], &[0.0, 1.0]);
        assert!((auc - 0.5).abs() < 1e-9, "{auc}");
    }

    #[test]
    fn threshold_keeps_the_fpr() {
        let honest: Vec<f64> = (0..1000).map(f64::from).collect();
        let t = threshold_at_fpr(&honest, 0.001);
        assert_eq!(rate_above(&honest, t), 0.001);
    }
}
