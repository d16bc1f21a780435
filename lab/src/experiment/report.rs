//! `report.md`: the headline per attacker kind, model assumptions, the emulation's measured
//! error with the points it cannot resolve, thresholds, and the plots.

use std::fmt::Write as _;

use super::config::Experiment;
use super::summary::{KindSummary, Summary};

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.2} %", v * 100.0))
}

fn ci(x: Option<(f64, f64)>) -> String {
    x.map_or("-".into(), |(lo, hi)| {
        format!("[{:.2}, {:.2}] %", lo * 100.0, hi * 100.0)
    })
}

fn kind_line(name: &str, k: &KindSummary) -> String {
    if !k.swept {
        return format!("| {name} | not swept | | | | | | | |\n");
    }
    format!(
        "| {name} | {} | {} {} | {} | {} | {} {} | {} | {} / {} | {} |\n",
        k.min_distance_km
            .map_or("none (null)".into(), |d| format!("{d} km")),
        pct(k.correct_tpr),
        ci(k.correct_tpr_ci),
        pct(k.flagged_other),
        pct(k.tpr),
        pct(k.fpr),
        ci(k.fpr_ci),
        pct(k.accused_fpr),
        k.trials,
        k.honest_trials,
        if k.ci_supported { "yes" } else { "no" }
    )
}

pub(crate) fn markdown(
    e: &Experiment,
    s: &Summary,
    files: &[String],
    new_trials: usize,
    skipped: usize,
    wall_s: f64,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# Experiment {} — SIMULATION\n", e.name);
    if !e.description.is_empty() {
        let _ = writeln!(t, "{}\n", e.description);
    }
    let _ = writeln!(
        t,
        "{} trials ({new_trials} run now, {skipped} resumed from trials.csv) in {wall_s:.1} s. \
         Headline at {} probers, jitter {} µs, {} samples per 1 s round, inflation {}, \
         {} s windows.\n",
        s.trials,
        s.at.probers,
        s.at.jitter_us,
        s.at.samples_per_round,
        s.at.inflation,
        s.at.duration_s
    );
    let _ = writeln!(t, "{}\n", s.criterion);
    t.push_str(
        "| attacker | min distance caught | right class (95 % CI) | flagged as something else | \
         not located | FPR: honest not located (95 % CI) | honest accused | trials / honest | CI \
         meets target |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    t.push_str(&kind_line("proxy", &s.proxy));
    t.push_str(&kind_line("frankenstein", &s.frankenstein));
    t.push_str(&kind_line("relocation", &s.relocation));

    if s.by_axes.len() > 1 {
        t.push_str(
            "\n## Every combination of the other axes\n\n| jitter µs | probers | samples/round | \
             inflation | honest trials | FPR (95 % CI) | accused | inconclusive | min distance caught |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for a in &s.by_axes {
            let md: Vec<String> = a
                .min_distance_km
                .iter()
                .map(|(k, d)| {
                    format!(
                        "{} {}",
                        k.as_str(),
                        d.map_or("none".into(), |d| format!("{d} km"))
                    )
                })
                .collect();
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {:.2} % {} | {:.2} % | {:.2} % | {} |",
                a.jitter_us,
                a.probers,
                a.samples_per_round,
                a.inflation,
                a.honest_trials,
                a.fpr * 100.0,
                ci(Some(a.fpr_ci)),
                a.accused_fpr * 100.0,
                a.inconclusive_rate * 100.0,
                md.join(", ")
            );
        }
    }
    t.push_str("\n## Per distance (headline axes)\n\n");
    t.push_str(
        "| kind | km | trials | TPR | correct verdict | TPR at FPR ≤ 0.1 % (score) | AUC | \
         latency median s | emulation error ≥ effect |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in s.points.iter().filter(|p| {
        p.jitter_us == s.at.jitter_us
            && p.probers == s.at.probers
            && p.samples_per_round == s.at.samples_per_round
            && p.inflation == s.at.inflation
    }) {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.2} % | {:.2} % | {:.2} % | {:.3} | {} | {} |",
            p.kind.as_str(),
            p.distance_km,
            p.trials,
            p.tpr * 100.0,
            p.correct_verdict_rate * 100.0,
            p.tpr_at_fixed_fpr * 100.0,
            p.auc,
            p.latency_median_s.map_or("-".into(), |x| format!("{x:.1}")),
            match p.emulation_error_exceeds_effect {
                Some(true) => "**yes: flagged**",
                Some(false) => "no",
                None => "unknown",
            }
        );
    }

    t.push_str("\n## Thresholds (regenerating the policy defaults)\n\n");
    t.push_str(
        "| kind | score | policy field | default | honest max | threshold at FPR ≤ 0.1 % | FPR \
         at default |\n|---|---|---|---|---|---|---|\n",
    );
    for th in &s.thresholds {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {:.3} | {:.3} % |",
            th.kind.as_str(),
            th.score,
            th.policy_field,
            th.default,
            th.honest_max.map_or("-".into(), |x| format!("{x:.3}")),
            th.threshold_at_fpr,
            th.fpr_at_default * 100.0
        );
    }

    t.push_str("\n## Model assumptions (simulation)\n\n");
    for a in &s.assumptions {
        let _ = writeln!(t, "- {a}");
    }
    t.push_str("\n## Emulation error\n\n");
    match &e.emulation {
        Some(em) => {
            let flagged: Vec<String> = s
                .points
                .iter()
                .filter(|p| p.emulation_error_exceeds_effect == Some(true))
                .map(|p| format!("{} {} km", p.kind.as_str(), p.distance_km))
                .collect();
            let _ = writeln!(
                t,
                "The lab relay's measured delay error is p90 {} µs, p99 {} µs ({}). A point whose \
                 attacker effect (2 × distance × inflation / 200 km/ms) is not larger than the \
                 p99 error cannot be reproduced in the emulation and is flagged: {}.",
                em.delay_error_p90_us,
                em.delay_error_p99_us,
                em.source,
                if flagged.is_empty() {
                    "none".into()
                } else {
                    flagged.join(", ")
                }
            );
        }
        None => t.push_str(
            "Not stated in the experiment file (`[emulation]`): no point can be checked against \
             the emulation's resolution.\n",
        ),
    }
    t.push_str("\n## Files\n\n- trials.csv (one line per trial)\n- summary.json\n");
    for f in files {
        let _ = writeln!(t, "- {f}");
    }
    t
}
