//! SVG plots of an experiment (plotters): ROC curves per distance, detection rate vs
//! distance, threshold sweeps and relocation detection latency.

use std::path::Path;

use plotters::prelude::*;

use super::config::{Experiment, Kind};
use super::results::Row;
use super::summary::{self, curves, KindCurves, Summary, FPR_MAX};

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// The headline plot's file name.
pub(crate) const HEADLINE: &str = "detection-vs-distance.svg";

/// Draws every plot into `out`; returns the files written.
pub(crate) fn draw_all(
    out: &Path,
    e: &Experiment,
    rows: &[Row],
    s: &Summary,
) -> PlotResult<Vec<String>> {
    let head = summary::combos(e)[0].clone();
    let all: Vec<KindCurves> = e.kinds.iter().map(|&k| curves(e, rows, &head, k)).collect();
    let mut files = vec![detection_vs_distance(out, e, s)?];
    for c in &all {
        files.push(roc(out, e, c)?);
        files.push(threshold_sweep(out, e, c)?);
        if c.kind == Kind::Relocation {
            files.push(latency(out, e, c)?);
        }
    }
    Ok(files)
}

/// x positions: distances are swept on a roughly logarithmic grid, so they are drawn evenly
/// spaced and labelled with their value.
fn dist_label(ds: &[f64], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    ds.get(i as usize)
        .map(|d| format!("{d}"))
        .unwrap_or_default()
}

fn detection_vs_distance(out: &Path, e: &Experiment, s: &Summary) -> PlotResult<String> {
    let file = HEADLINE;
    let path = out.join(file);
    let root = SVGBackend::new(&path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = e.distance_km.len();
    let ds = e.distance_km.clone();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Detection rate vs attacker distance (simulation; {} probers, jitter {} µs, \
                 inflation {})",
                s.at.probers, s.at.jitter_us, s.at.inflation
            ),
            ("sans-serif", 17),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), 0f64..1.05)?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| dist_label(&ds, *x))
        .x_desc("attacker distance from the claim (km)")
        .y_desc("detection rate")
        .draw()?;
    for (ci, &k) in e.kinds.iter().enumerate() {
        let pts: Vec<&summary::PointStats> = s
            .points
            .iter()
            .filter(|p| {
                p.kind == k
                    && p.jitter_us == s.at.jitter_us
                    && p.probers == s.at.probers
                    && p.samples_per_round == s.at.samples_per_round
                    && p.inflation == s.at.inflation
            })
            .collect();
        let col = color(ci);
        let verdict: Vec<(f64, f64)> = pts
            .iter()
            .enumerate()
            .map(|(i, p)| (i as f64, p.tpr))
            .collect();
        chart
            .draw_series(LineSeries::new(verdict.clone(), col.stroke_width(2)))?
            .label(format!("{} (verdict, policy defaults)", k.as_str()))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], col.stroke_width(2)));
        chart.draw_series(
            verdict
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 4, col.filled())),
        )?;
        let fixed: Vec<(f64, f64)> = pts
            .iter()
            .enumerate()
            .map(|(i, p)| (i as f64, p.tpr_at_fixed_fpr))
            .collect();
        chart
            .draw_series(LineSeries::new(fixed.clone(), col.stroke_width(1)))?
            .label(format!(
                "{} (score at FPR ≤ {:.1} %)",
                k.as_str(),
                FPR_MAX * 100.0
            ))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], col.stroke_width(1)));
        chart.draw_series(
            fixed
                .iter()
                .map(|&(x, y)| TriangleMarker::new((x, y), 4, col)),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(file.to_string())
}

fn roc(out: &Path, e: &Experiment, c: &KindCurves) -> PlotResult<String> {
    let file = format!("roc-{}.svg", c.kind.as_str());
    let path = out.join(&file);
    let root = SVGBackend::new(&path, (800, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (score, _) = summary::score_name(c.kind);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "ROC per distance: {} (score {score}; simulation, {} honest trials)",
                c.kind.as_str(),
                c.honest.len()
            ),
            ("sans-serif", 16),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..1.0, 0f64..1.02)?;
    chart
        .configure_mesh()
        .x_desc("false-positive rate (honest trials)")
        .y_desc("true-positive rate")
        .draw()?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))?;
    for (i, (d, a)) in c.attack.iter().enumerate() {
        let (pts, auc) = summary::roc(&c.honest, a);
        let col = color(i);
        chart
            .draw_series(LineSeries::new(pts, col.stroke_width(2)))?
            .label(format!("{d} km (AUC {auc:.3})"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], col.stroke_width(2)));
    }
    let _ = e;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(file)
}

fn threshold_sweep(out: &Path, e: &Experiment, c: &KindCurves) -> PlotResult<String> {
    let file = format!("threshold-{}.svg", c.kind.as_str());
    let path = out.join(&file);
    let root = SVGBackend::new(&path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let def = summary::default_threshold(e, c.kind);
    let (score, field) = summary::score_name(c.kind);
    let xmax = (def * 4.0).max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Threshold sweep: {} ({score}; policy {field} = {def})",
                c.kind.as_str()
            ),
            ("sans-serif", 16),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..xmax, 0f64..1.05)?;
    chart
        .configure_mesh()
        .x_desc("threshold (ms)")
        .y_desc("rate of score > threshold")
        .draw()?;
    let steps = 200;
    let sweep = |xs: &[f64]| -> Vec<(f64, f64)> {
        (0..=steps)
            .map(|i| {
                let t = xmax * i as f64 / steps as f64;
                let r = if xs.is_empty() {
                    0.0
                } else {
                    xs.iter().filter(|&&x| x > t).count() as f64 / xs.len() as f64
                };
                (t, r)
            })
            .collect()
    };
    chart
        .draw_series(LineSeries::new(sweep(&c.honest), BLACK.stroke_width(3)))?
        .label("FPR (honest)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(3)));
    for (i, (d, a)) in c.attack.iter().enumerate() {
        let col = color(i);
        chart
            .draw_series(LineSeries::new(sweep(a), col.stroke_width(2)))?
            .label(format!("TPR {d} km"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], col.stroke_width(2)));
    }
    chart
        .draw_series(LineSeries::new(
            [(def, 0.0), (def, 1.05)],
            RED.stroke_width(1),
        ))?
        .label("policy default")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(file)
}

fn latency(out: &Path, e: &Experiment, c: &KindCurves) -> PlotResult<String> {
    let file = "latency-relocation.svg".to_string();
    let path = out.join(&file);
    let root = SVGBackend::new(&path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = e.distance_km.len();
    let ds = e.distance_km.clone();
    let all: Vec<f64> = c
        .latencies
        .iter()
        .flat_map(|l| l.1.iter().copied())
        .collect();
    let ymax = all.iter().copied().fold(1.0, f64::max) * 1.1;
    let ymin = all.iter().copied().fold(0.0, f64::min) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Relocation: detection latency after the move (simulation; 1 s rounds)",
            ("sans-serif", 17),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), ymin..ymax)?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| dist_label(&ds, *x))
        .x_desc("relocation distance (km)")
        .y_desc("seconds from the move to the alarm round's end")
        .draw()?;
    for (q, (name, col)) in [(0.5, ("median", BLUE)), (0.9, ("p90", RED))] {
        let pts: Vec<(f64, f64)> = c
            .latencies
            .iter()
            .enumerate()
            .filter_map(|(i, (_, l))| {
                let mut v = l.clone();
                if v.is_empty() {
                    return None;
                }
                v.sort_by(f64::total_cmp);
                Some((i as f64, v[((v.len() - 1) as f64 * q).round() as usize]))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?
            .label(format!("{name} (detected trials)"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], col.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(file)
}
