//! One node's map (`map-NODE.svg`): land and borders under the sites, each prober's and
//! anchor's distance disc, the region estimate, and distance rings around the claim, in an
//! azimuthal equidistant projection centred on the claim.
//!
//! Hand-written SVG rather than plotters: the map needs a clip path (discs and coastlines run
//! past the view; plotters draws a series outside its chart's range over the axes), an
//! even-odd filled land path, and no Cartesian axes; its ~100 lines of markup are simpler than
//! working around a chart.

use std::fmt::Write as _;
use std::path::Path;

use locus_analysis::judge::geo::{destination, distance_km, LatLon, EARTH_RADIUS_KM};

use crate::basemap::{basemap, ring_contains, Aeqd};
use crate::emulation::Outcome;
use crate::scenario::Site;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 600.0;
/// Height of the caption band above the map.
const TOP: f64 = 34.0;
const MARGIN: f64 = 8.0;

/// Colours of the probers' discs, in prober order (the plots use the same order).
pub(crate) const PROBER_COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];

const REGION_COLOUR: &str = "#2a9d4b";

/// A disc this wide (half the Earth's circumference) holds every point: it has no edge.
const WHOLE_EARTH_KM: f64 = std::f64::consts::PI * EARTH_RADIUS_KM;

/// A disc's legend entry.
fn bound(what: &str, radius_km: f64) -> String {
    if radius_km >= WHOLE_EARTH_KM {
        format!("{what} ≤ {radius_km:.0} km (all the Earth)")
    } else {
        format!("{what} ≤ {radius_km:.0} km")
    }
}

/// Points on a disc's edge: one every this many degrees of bearing.
const DISC_STEP_DEG: f64 = 2.5;

/// Escapes text for XML and HTML content and attribute values.
pub(crate) fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pos(s: &Site) -> LatLon {
    LatLon::new(s.lat, s.lon)
}

/// The view: projection, and km → pixel scale around the map's centre pixel.
struct View {
    aeqd: Aeqd,
    scale: f64,
    /// Half the view's width and height, km.
    half: (f64, f64),
}

impl View {
    fn px(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            WIDTH / 2.0 + x * self.scale,
            TOP + (HEIGHT - TOP) / 2.0 - y * self.scale,
        )
    }

    /// `(x, y)` pulled along its ray from the centre onto the view's edge when outside.
    fn to_edge(&self, (x, y): (f64, f64)) -> ((f64, f64), bool) {
        let k = (x.abs() / self.half.0).max(y.abs() / self.half.1);
        if k <= 0.95 {
            ((x, y), false)
        } else {
            ((x * 0.95 / k, y * 0.95 / k), true)
        }
    }
}

/// Appends an SVG path's `d` for `pieces` (closed with `Z` when `close`).
fn path_d(d: &mut String, view: &View, pieces: &[Vec<(f64, f64)>], close: bool) {
    for piece in pieces {
        for (i, &p) in piece.iter().enumerate() {
            let (x, y) = view.px(p);
            let _ = write!(d, "{}{x:.1} {y:.1}", if i == 0 { "M" } else { "L" });
        }
        if close {
            d.push('Z');
        }
    }
}

/// A round number of km for rings about a third of `span` apart.
fn ring_step(span: f64) -> f64 {
    [
        50.0, 100.0, 200.0, 250.0, 500.0, 1000.0, 2000.0, 2500.0, 5000.0,
    ]
    .into_iter()
    .find(|s| span / s <= 3.5)
    .unwrap_or(10_000.0)
}

/// Draws the map of responder `j` into `out`; returns the file name.
pub(crate) fn draw(out: &Path, o: &Outcome, j: usize) -> Result<String, String> {
    let s = &o.scenario;
    let node = &o.nodes[j];
    let r = &s.responders[j];
    let claim = pos(&s.sites[r.claim]);
    let region = node.judgement.region.as_ref();
    let estimate = region.and_then(|g| g.estimate);

    // Frame the probers, the claim and the estimate; the truth and relay sites too when they
    // are near enough not to shrink the rest to dots.
    let probe = Aeqd::new(claim, f64::INFINITY);
    let mut focus: Vec<LatLon> = s.probers.iter().map(|&p| pos(&s.sites[p])).collect();
    focus.extend(estimate);
    for extra in [Some(r.site), r.relay_via, r.tpm_site, r.moves.map(|m| m.0)]
        .into_iter()
        .flatten()
    {
        let p = pos(&s.sites[extra]);
        if distance_km(claim, p) < 3000.0 {
            focus.push(p);
        }
    }
    let (mut hx, mut hy) = (300.0f64, 300.0f64);
    for p in &focus {
        let (x, y) = probe.project(*p);
        hx = hx.max(x.abs() * 1.25);
        hy = hy.max(y.abs() * 1.25);
    }
    let (w, h) = (WIDTH - 2.0 * MARGIN, HEIGHT - TOP - MARGIN);
    let scale = (w / (2.0 * hx)).min(h / (2.0 * hy));
    let half = (WIDTH / 2.0 / scale, (HEIGHT - TOP) / 2.0 / scale);
    let cap = half.0.hypot(half.1) * 1.05;
    let view = View {
        aeqd: Aeqd::new(claim, cap),
        scale,
        half,
    };
    let base = basemap()?;

    let mut svg = String::with_capacity(64 * 1024);
    let title = format!(
        "{}: claims {}, judged {} (truth {})",
        node.name,
        s.sites[r.claim].name,
        node.judgement.verdict.as_str(),
        node.truth.as_str()
    );
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\
         <title>{t}</title><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\
         <text x=\"{MARGIN}\" y=\"22\" font-size=\"16\">{t}</text>\
         <clipPath id=\"view\"><rect x=\"{MARGIN}\" y=\"{TOP}\" width=\"{w}\" height=\"{h}\"/></clipPath>\
         <rect x=\"{MARGIN}\" y=\"{TOP}\" width=\"{w}\" height=\"{h}\" fill=\"#dcebf5\" stroke=\"#999\"/>\
         <g clip-path=\"url(#view)\">",
        t = escape(&title)
    );

    // Land, coastlines, borders.
    let mut d = String::new();
    for ring in &base.land {
        let clipped = view.aeqd.clip_ring(ring, || ring_contains(ring, claim));
        path_d(&mut d, &view, clipped.as_slice(), true);
    }
    let _ = write!(
        svg,
        "<path d=\"{d}\" fill=\"#f3f0e6\" fill-rule=\"evenodd\" stroke=\"none\"/>"
    );
    d.clear();
    for ring in &base.land {
        for line in coast_lines(ring) {
            path_d(&mut d, &view, &view.aeqd.clip_line(&line), false);
        }
    }
    let _ = write!(
        svg,
        "<path d=\"{d}\" fill=\"none\" stroke=\"#8c8c8c\" stroke-width=\"0.8\"/>"
    );
    d.clear();
    for line in &base.borders {
        path_d(&mut d, &view, &view.aeqd.clip_line(line), false);
    }
    let _ = write!(
        svg,
        "<path d=\"{d}\" fill=\"none\" stroke=\"#b5b0a3\" stroke-width=\"0.6\" stroke-dasharray=\"3 2\"/>"
    );

    // Distance rings around the claim: true distances in this projection.
    let step = ring_step(half.0.min(half.1));
    let (cx, cy) = view.px((0.0, 0.0));
    let mut k = step;
    while k < cap {
        let _ = write!(
            svg,
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{:.1}\" fill=\"none\" stroke=\"#7a8fa3\" \
             stroke-width=\"0.6\" stroke-dasharray=\"2 4\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#5a6f83\" font-size=\"10\">{k:.0} km</text>",
            k * scale,
            cx + 3.0,
            cy - k * scale - 3.0
        );
        k += step;
    }

    // Discs: each prober's hard bound (filled), each anchor's (dashed).
    let mut legend: Vec<(String, String, bool)> = Vec::new();
    for (i, dist) in node.judgement.distances.iter().enumerate() {
        let (Some(radius), Some(site)) = (dist.max_distance_km, find(&s.sites, &dist.site)) else {
            continue;
        };
        let colour = PROBER_COLOURS[i % PROBER_COLOURS.len()];
        disc(&mut svg, &view, pos(site), radius, colour, Style::Prober);
        legend.push((colour.to_string(), bound(&dist.site, radius), false));
    }
    for a in &node.judgement.anchors {
        let Some(site) = find(&s.sites, &a.site) else {
            continue;
        };
        disc(
            &mut svg,
            &view,
            pos(site),
            a.max_distance_km,
            "#444",
            Style::Anchor,
        );
        legend.push((
            "#444".into(),
            bound(&format!("anchor {}", a.site), a.max_distance_km),
            true,
        ));
    }
    if let (Some(est), Some(g)) = (estimate, region) {
        if let Some(radius) = g.radius_km {
            disc(&mut svg, &view, est, radius, REGION_COLOUR, Style::Region);
        }
        let (x, y) = view.px(view.aeqd.project(est));
        let _ = write!(
            svg,
            "<path d=\"M{a:.1} {b:.1}L{c:.1} {e:.1}M{a:.1} {e:.1}L{c:.1} {b:.1}\" stroke=\"{REGION_COLOUR}\" stroke-width=\"2.5\"/>",
            a = x - 6.0,
            b = y - 6.0,
            c = x + 6.0,
            e = y + 6.0
        );
        legend.push((
            REGION_COLOUR.into(),
            format!(
                "region estimate{}",
                g.radius_km
                    .map_or(String::new(), |r| format!(", radius {r:.0} km"))
            ),
            true,
        ));
    }

    // Sites: claim, truth, probers, the rest; those outside the view sit on its edge.
    for (idx, site) in s.sites.iter().enumerate() {
        let (role, fill, radius) = if idx == r.claim {
            (" (claim)", "#d62728", 6.0)
        } else if idx == r.site {
            (" (truth)", "#1f4fd6", 6.0)
        } else if r.moves.is_some_and(|(to, _)| to == idx) {
            (" (moves here)", "#1f4fd6", 6.0)
        } else if r.relay_via == Some(idx) {
            (" (relay)", "#6a3d9a", 5.0)
        } else if r.tpm_site == Some(idx) {
            (" (vTPM)", "#6a3d9a", 5.0)
        } else if s.probers.contains(&idx) {
            ("", "#222", 4.0)
        } else {
            ("", "#888", 3.0)
        };
        let xy = view.aeqd.project(pos(site));
        let ((x, y), off) = view.to_edge(xy);
        let (px, py) = view.px((x, y));
        let far = if off {
            format!(" → {:.0} km", distance_km(claim, pos(site)).round())
        } else {
            String::new()
        };
        let _ = write!(
            svg,
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"{radius}\" fill=\"{fill}\" stroke=\"#fff\" stroke-width=\"1\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{fill}\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\">{}{role}{far}</text>",
            px + radius + 2.0,
            py + 4.0,
            escape(&site.name)
        );
    }
    svg.push_str("</g>");

    legend_box(&mut svg, &legend);
    scale_bar(&mut svg, scale, step);
    svg.push_str("</svg>\n");
    let file = format!("map-{}.svg", node.name);
    std::fs::write(out.join(&file), svg).map_err(|e| format!("writing {file}: {e}"))?;
    Ok(file)
}

fn find<'a>(sites: &'a [Site], name: &str) -> Option<&'a Site> {
    sites.iter().find(|x| x.name == name)
}

/// A land ring as coastlines: without the edges Natural Earth adds where it cuts land at the
/// antimeridian and closes Antarctica at the bottom of the map, which are not coast.
fn coast_lines(ring: &[LatLon]) -> Vec<Vec<LatLon>> {
    let artificial = |a: LatLon, b: LatLon| {
        (a.lon.abs() >= 179.99 && b.lon.abs() >= 179.99) || (a.lat < -84.0 && b.lat < -84.0)
    };
    let mut lines = vec![Vec::new()];
    let closed = ring.iter().chain(ring.first());
    for (a, b) in closed.clone().zip(closed.skip(1)) {
        let cur = lines.last_mut().expect("never empty");
        if artificial(*a, *b) {
            if !cur.is_empty() {
                lines.push(Vec::new());
            }
            continue;
        }
        if cur.is_empty() {
            cur.push(*a);
        }
        cur.push(*b);
    }
    lines.retain(|l| l.len() > 1);
    lines
}

/// How a disc is drawn: probers' filled faintly (their overlap is where the node can be),
/// anchors' and the region's outlined.
#[derive(Clone, Copy)]
enum Style {
    Prober,
    Anchor,
    Region,
}

/// The disc of `radius_km` around `centre`: its true edge, projected and clipped.
fn disc(svg: &mut String, view: &View, centre: LatLon, radius_km: f64, colour: &str, style: Style) {
    if radius_km >= WHOLE_EARTH_KM {
        return;
    }
    let edge: Vec<LatLon> = (0..(360.0 / DISC_STEP_DEG) as usize)
        .map(|b| destination(centre, b as f64 * DISC_STEP_DEG, radius_km))
        .collect();
    let covers_claim = || distance_km(centre, view.aeqd.centre()) <= radius_km;
    let mut d = String::new();
    if let Some(ring) = view.aeqd.clip_ring(&edge, covers_claim) {
        path_d(&mut d, view, &[ring], true);
    }
    let (fill_opacity, width, dash) = match style {
        Style::Prober => ("0.05", "1.6", ""),
        Style::Anchor => ("0", "1.4", " stroke-dasharray=\"6 3\""),
        Style::Region => ("0.15", "1.6", " stroke-dasharray=\"2 2\""),
    };
    let _ = write!(
        svg,
        "<path d=\"{d}\" fill=\"{colour}\" fill-opacity=\"{fill_opacity}\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash}/>"
    );
}

fn legend_box(svg: &mut String, entries: &[(String, String, bool)]) {
    if entries.is_empty() {
        return;
    }
    let line = 16.0;
    let width = 12.0
        + entries
            .iter()
            .map(|e| e.1.chars().count())
            .max()
            .unwrap_or(0) as f64
            * 6.6
        + 30.0;
    let x = WIDTH - MARGIN - width - 6.0;
    let y = TOP + 6.0;
    let _ = write!(
        svg,
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"#fff\" fill-opacity=\"0.88\" stroke=\"#999\"/>",
        entries.len() as f64 * line + 8.0
    );
    for (i, (colour, label, dashed)) in entries.iter().enumerate() {
        let ly = y + 4.0 + line * (i as f64 + 0.5);
        let dash = if *dashed {
            " stroke-dasharray=\"4 2\""
        } else {
            ""
        };
        let _ = write!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"3\"{dash}/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 8.0,
            x + 28.0,
            x + 34.0,
            ly + 4.0,
            escape(label)
        );
    }
}

fn scale_bar(svg: &mut String, scale: f64, km: f64) {
    let (x, y) = (MARGIN + 12.0, HEIGHT - MARGIN - 12.0);
    let len = km * scale;
    let _ = write!(
        svg,
        "<path d=\"M{x:.1} {:.1}V{y:.1}H{:.1}V{:.1}\" fill=\"none\" stroke=\"#222\" stroke-width=\"1.5\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\">{km:.0} km (true from the claim)</text>",
        y - 5.0,
        x + len,
        y - 5.0,
        x + len + 6.0,
        y
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coastlines_leave_out_the_antimeridian_cut() {
        // A ring cut at 180°: two real coast edges, one along the cut.
        let ring = [
            LatLon::new(60.0, 170.0),
            LatLon::new(65.0, 180.0),
            LatLon::new(70.0, 180.0),
            LatLon::new(68.0, 172.0),
        ];
        let lines = coast_lines(&ring);
        assert_eq!(
            lines.len(),
            2,
            "{:?}",
            lines.iter().map(Vec::len).collect::<Vec<_>>()
        );
        for line in &lines {
            for w in line.windows(2) {
                assert!(!(w[0].lon == 180.0 && w[1].lon == 180.0), "cut edge kept");
            }
        }
    }

    #[test]
    fn whole_earth_discs_say_so() {
        assert_eq!(bound("ams", 585.2), "ams ≤ 585 km");
        assert!(bound("sin", 34_237.0).ends_with("(all the Earth)"));
    }
}
