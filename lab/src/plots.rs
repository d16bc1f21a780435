//! SVG plots of a lab run (plotters): RTT vs distance with the 2/3 c bound, a map of sites
//! with each prober's disc, and RTT over time for nodes that move.

use std::path::{Path, PathBuf};

use locus_analysis::judge::geo::{destination, LatLon};
use plotters::prelude::*;

use crate::emulation::Outcome;
use crate::geo::{km, FIBER_KM_PER_MS};
use crate::scenario::Scenario;

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Draws every plot into `out`; returns the files written, relative to `out`.
pub(crate) fn draw_all(out: &Path, o: &Outcome) -> PlotResult<Vec<String>> {
    let mut files = vec![rtt_vs_distance(out, o)?];
    for (j, r) in o.scenario.responders.iter().enumerate() {
        files.push(map(out, o, j)?);
        if r.moves.is_some() {
            files.push(rtt_over_time(out, o, j)?);
        }
    }
    Ok(files)
}

fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
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

/// Sites on an equirectangular view, with each prober's hard-bound disc for responder `j`.
fn map(out: &Path, o: &Outcome, j: usize) -> PlotResult<String> {
    let s = &o.scenario;
    let node = &o.nodes[j];
    let r = &s.responders[j];
    // Keep the view on the probers and the claim; far sites are drawn at the edge.
    let focus: Vec<usize> = s.probers.iter().copied().chain([r.claim]).collect();
    let (lat0, lat1, lon0, lon1) = bounds(s, &focus);
    let file = format!("map-{}.svg", node.name);
    let path = out.join(&file);
    let root = SVGBackend::new(&path, (760, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: claim {}, verdict {} (truth {})",
                node.name,
                s.sites[r.claim].name,
                node.judgement.verdict.as_str(),
                node.truth.as_str()
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(lon0..lon1, lat0..lat1)?;
    chart
        .configure_mesh()
        .x_desc("longitude")
        .y_desc("latitude")
        .draw()?;
    for (k, d) in node.judgement.distances.iter().enumerate() {
        let (Some(radius), Some(p)) = (d.max_distance_km, site_index(s, &d.site)) else {
            continue;
        };
        let centre = LatLon::new(s.sites[p].lat, s.sites[p].lon);
        let ring: Vec<(f64, f64)> = (0..=72)
            .map(|b| {
                let q = destination(centre, b as f64 * 5.0, radius);
                (q.lon.clamp(lon0, lon1), q.lat.clamp(lat0, lat1))
            })
            .collect();
        let c = color(k + 3);
        chart
            .draw_series(std::iter::once(Polygon::new(ring.clone(), c.mix(0.12))))?
            .label(format!("{}: ≤ {radius:.0} km", d.site))
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.mix(0.4).filled())
            });
        chart.draw_series(std::iter::once(PathElement::new(ring, c.stroke_width(1))))?;
    }
    for (idx, site) in s.sites.iter().enumerate() {
        let (x, y) = (site.lon.clamp(lon0, lon1), site.lat.clamp(lat0, lat1));
        let (marker, label) = if idx == r.claim {
            (RED.filled(), format!("{} (claim)", site.name))
        } else if idx == r.site {
            (BLUE.filled(), format!("{} (truth)", site.name))
        } else {
            (BLACK.filled(), site.name.clone())
        };
        chart.draw_series(std::iter::once(Circle::new((x, y), 4, marker)))?;
        chart.draw_series(std::iter::once(Text::new(
            label,
            (x, y),
            ("sans-serif", 13),
        )))?;
    }
    if let Some(est) = node.judgement.region.as_ref().and_then(|g| g.estimate) {
        chart
            .draw_series(std::iter::once(Cross::new(
                (est.lon, est.lat),
                7,
                GREEN.stroke_width(2),
            )))?
            .label("region estimate")
            .legend(|(x, y)| Cross::new((x + 8, y), 5, GREEN.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(file)
}

fn bounds(s: &Scenario, focus: &[usize]) -> (f64, f64, f64, f64) {
    let lat = focus.iter().map(|&i| s.sites[i].lat);
    let lon = focus.iter().map(|&i| s.sites[i].lon);
    let (lat0, lat1) = (lat.clone().fold(90.0, f64::min), lat.fold(-90.0, f64::max));
    let (lon0, lon1) = (
        lon.clone().fold(180.0, f64::min),
        lon.fold(-180.0, f64::max),
    );
    let pad_lat = ((lat1 - lat0) * 0.4).max(3.0);
    let pad_lon = ((lon1 - lon0) * 0.4).max(4.0);
    (
        (lat0 - pad_lat).max(-90.0),
        (lat1 + pad_lat).min(90.0),
        (lon0 - pad_lon).max(-180.0),
        (lon1 + pad_lon).min(180.0),
    )
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
        let c = color(k);
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

/// `index.html`: the table and every plot on one page.
pub(crate) fn index_html(out: &Path, table: &str, files: &[String]) -> std::io::Result<PathBuf> {
    let escape = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>locus lab</title>\
         <style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em;overflow:auto}\
         img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}</style></head><body>\
         <h1>locus lab</h1><p>Files: <a href=\"report.json\">report.json</a>, \
         <a href=\"samples.csv\">samples.csv</a>, <a href=\"samples.json\">samples.json</a>, \
         <a href=\"policy.toml\">policy.toml</a>, <a href=\"evidence/\">evidence/</a></p><pre>",
    );
    html.push_str(&escape(table));
    html.push_str("</pre>");
    for f in files {
        html.push_str(&format!("<div><img src=\"{f}\" alt=\"{f}\"></div>"));
    }
    html.push_str("</body></html>\n");
    let path = out.join("index.html");
    std::fs::write(&path, html)?;
    Ok(path)
}
