//! SVG plots of a lab run (plotters): RTT vs distance with the 2/3 c bound and RTT over time
//! for nodes that move; each node's map comes from [`crate::map`].

use std::path::Path;

use plotters::prelude::*;

use crate::emulation::Outcome;
use crate::geo::{km, FIBER_KM_PER_MS};
use crate::map::{self, PROBER_COLOURS};
use crate::scenario::Scenario;

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The plots of a run, as file names relative to the output directory.
pub(crate) struct Plots {
    /// Every node's minimum RTTs against distance.
    pub(crate) overview: String,
    /// Per responder (scenario order): its map, then its RTT over time when it moves.
    pub(crate) nodes: Vec<Vec<String>>,
}

/// Draws every plot into `out`.
pub(crate) fn draw_all(out: &Path, o: &Outcome) -> PlotResult<Plots> {
    let overview = rtt_vs_distance(out, o)?;
    let mut nodes = Vec::new();
    for (j, r) in o.scenario.responders.iter().enumerate() {
        let mut files = vec![map::draw(out, o, j)?];
        if r.moves.is_some() {
            files.push(rtt_over_time(out, o, j)?);
        }
        nodes.push(files);
    }
    Ok(Plots { overview, nodes })
}

fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// `PROBER_COLOURS[i]` (cycled) for plotters.
fn prober_colour(i: usize) -> RGBColor {
    let hex = PROBER_COLOURS[i % PROBER_COLOURS.len()];
    let c = |k: usize| {
        hex.get(k..k + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    RGBColor(c(1), c(3), c(5))
}

fn site_index(s: &Scenario, name: &str) -> Option<usize> {
    s.sites.iter().position(|x| x.name == name)
}

/// Minimum RTT of every (prober, responder) pair against its distance to the *claimed* site:
/// honest nodes sit just above the physical bound, attackers far above it.
fn rtt_vs_distance(out: &Path, o: &Outcome) -> PlotResult<String> {
    let s = &o.scenario;
    let mut points: Vec<(usize, f64, f64)> = Vec::new();
    for (j, node) in o.nodes.iter().enumerate() {
        let claim = s.responders[j].claim;
        for d in &node.judgement.distances {
            let (Some(rtt), Some(p)) = (d.min_rtt_ms, site_index(s, &d.site)) else {
                continue;
            };
            points.push((j, km(&s.sites[p], &s.sites[claim]), rtt));
        }
    }
    let xmax = points.iter().map(|p| p.1).fold(100.0, f64::max) * 1.1;
    let ymax = points.iter().map(|p| p.2).fold(1.0, f64::max) * 1.1;
    let file = "rtt-vs-distance.svg";
    let path = out.join(file);
    let root = SVGBackend::new(&path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Minimum RTT vs distance from prober to the claimed site",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("great-circle distance prober → claim (km)")
        .y_desc("min RTT (ms)")
        .draw()?;
    // Light in fiber: RTT = 2·d / 200 km/ms.
    let bound = |d: f64| 2.0 * d / FIBER_KM_PER_MS;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (xmax, bound(xmax))],
            BLACK.stroke_width(2),
        ))?
        .label("physical bound (2/3 c)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    let infl = s.inflation;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (xmax, bound(xmax) * infl)],
            BLACK.mix(0.4).stroke_width(1),
        ))?
        .label(format!("expected with inflation {infl}"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
    for (j, node) in o.nodes.iter().enumerate() {
        let c = color(j);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.0 == j)
                    .map(|p| Circle::new((p.1, p.2), 4, c.filled())),
            )?
            .label(format!(
                "{} ({})",
                node.name,
                node.judgement.verdict.as_str()
            ))
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(file.to_string())
}

/// Every RTT sample over time for responder `j`, one colour per prober, with the move.
fn rtt_over_time(out: &Path, o: &Outcome, j: usize) -> PlotResult<String> {
    let s = &o.scenario;
    let node = &o.samples.nodes[j];
    let name = &o.nodes[j].name;
    let series: Vec<(String, Vec<(f64, f64)>)> = node
        .probes
        .iter()
        .map(|p| {
            (
                p.prober.clone(),
                p.samples
                    .iter()
                    .map(|x| (x.sent_ns as f64 / 1e9, x.rtt_ns as f64 / 1e6))
                    .collect(),
            )
        })
        .collect();
    let tmax = s.duration_s.max(1.0);
    let ymax = series
        .iter()
        .flat_map(|x| x.1.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let file = format!("rtt-over-time-{name}.svg");
    let path = out.join(&file);
    let root = SVGBackend::new(&path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{name}: RTT over time"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..tmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("RTT (ms)")
        .draw()?;
    for (k, (prober, pts)) in series.iter().enumerate() {
        // The prober's colour on the node's map, where the judge used it.
        let c = o.nodes[j]
            .judgement
            .distances
            .iter()
            .position(|d| &d.prober == prober)
            .map_or_else(|| color(k + 8), prober_colour);
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 1, c.filled())))?
            .label(prober.clone())
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, c.filled()));
    }
    if let Some((to, after)) = s.responders[j].moves {
        chart
            .draw_series(LineSeries::new(
                [(after, 0.0), (after, ymax)],
                RED.stroke_width(2),
            ))?
            .label(format!("moves to {}", s.sites[to].name))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(file)
}
