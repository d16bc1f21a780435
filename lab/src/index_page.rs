//! `index.html`: the lab report as a page to read. A table with one row per node, a card per
//! node with its reasons, map and RTT plots, and the emulation's error and the run's settings
//! in the footer. Self-contained (inline style, no script, no external fetch) so that it works
//! offline and opened straight from disk.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::emulation::Outcome;
use crate::map::escape;
use crate::plots::Plots;
use crate::report::{Report, ResponderReport};

const STYLE: &str = "\
:root{--fg:#1d2330;--muted:#5b6475;--line:#dde1e8;--bg:#f6f7f9}\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);margin:0;background:var(--bg);line-height:1.45}\
header,main,footer{max-width:1200px;margin:0 auto;padding:0 1.5rem}\
header{padding-top:1.5rem}h1{margin:0 0 .25rem}h2{margin:2rem 0 .75rem}\
.summary{font-size:1.1rem;margin:.25rem 0}.files a{margin-right:.75rem}\
.ok{color:#1b7a36}.bad{color:#b3261e}\
table{border-collapse:collapse;background:#fff;width:100%;font-size:.92rem}\
th,td{border-bottom:1px solid var(--line);padding:.45rem .6rem;text-align:left;vertical-align:top}\
thead th{background:#eef0f4;position:sticky;top:0}th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}\
td.reasons{color:var(--muted);max-width:32rem}td.reasons p{margin:0 0 .25rem}\
.badge{display:inline-block;border-radius:1rem;padding:.1rem .6rem;font-weight:600;font-size:.85rem;color:#fff;white-space:nowrap}\
.v-located{background:#1b7a36}.v-relocated{background:#b3261e}.v-proxied{background:#c2410c}\
.v-frankenstein{background:#7e22ce}.v-evidence-invalid{background:#9f1239}\
.v-inconclusive{background:#b7791f}.v-unreachable{background:#6b7280}\
td.verdict{white-space:nowrap}.truth{font-size:.8rem;color:var(--muted);white-space:nowrap}\
.card{background:#fff;border:1px solid var(--line);border-radius:.5rem;padding:1rem 1.25rem;margin:1rem 0}\
.card h3{margin:0 0 .5rem;display:flex;gap:.6rem;align-items:center}\
.card dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}\
.card dt{color:var(--muted)}.card dd{margin:0}ul.why{margin:0;padding-left:1.1rem}\
.figs{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0}figure img{max-width:100%;height:auto;border:1px solid var(--line)}\
figcaption{font-size:.85rem;color:var(--muted)}\
footer{font-size:.88rem;color:var(--muted);padding-bottom:2rem}footer dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem}\
footer dd{margin:0}.warn{color:#b3261e;font-weight:600}";

/// Writes `index.html` into `out`.
pub(crate) fn write(
    out: &Path,
    report: &Report,
    o: &Outcome,
    plots: &Plots,
) -> std::io::Result<PathBuf> {
    let s = &o.scenario;
    let correct = report.responders.iter().filter(|r| r.correct).count();
    let total = report.responders.len();
    let mut h = String::with_capacity(32 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>locus lab: {correct} of {total} verdicts equal the truth</title>\
         <style>{STYLE}</style></head><body><header><h1>locus lab</h1>\
         <p class=\"summary {cls}\"><strong>{correct} of {total}</strong> verdicts equal the truth</p>\
         <p class=\"files\">Data: <a href=\"report.json\">report.json</a><a href=\"samples.json\">samples.json</a>\
         <a href=\"samples.csv\">samples.csv</a><a href=\"policy.toml\">policy.toml</a>\
         <a href=\"evidence/\">evidence/</a></p></header><main>",
        cls = if correct == total { "ok" } else { "bad" },
    );

    verdict_table(&mut h, report, o);

    let _ = write!(
        h,
        "<h2>Minimum RTT against distance</h2><figure><img src=\"{f}\" alt=\"minimum RTT of every \
         prober and node against the distance from the prober to the claimed site\" width=\"900\" height=\"560\">\
         <figcaption>Each point is one prober's smallest round trip to one node. Light in fiber \
         (2/3 c) cannot go below the black line; honest nodes sit just above it, nodes that are \
         not where they claim far above.</figcaption></figure>",
        f = escape(&plots.overview)
    );

    h.push_str("<h2>Nodes</h2>");
    for (j, r) in report.responders.iter().enumerate() {
        card(&mut h, r, plots.nodes.get(j).map_or(&[][..], Vec::as_slice));
    }

    if !report.landmarks.is_empty() {
        h.push_str(
            "<h2>Landmarks</h2><p>Each prober's minimum RTT to the reference responders that \
             calibrate the judge.</p><table><thead><tr><th>prober</th><th>landmark</th>\
             <th class=\"num\">min RTT (ms)</th></tr></thead><tbody>",
        );
        for l in &report.landmarks {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.2}</td></tr>",
                escape(&l.prober),
                escape(&l.site),
                l.min_rtt_ms
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</main>");

    // Footer: how far to trust the emulation, and what was run.
    let e = &report.emulation;
    let _ = write!(
        h,
        "<footer><h2>Emulation and settings</h2><dl>\
         <dt>relay delay error</dt><dd>p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs over {} packets</dd>\
         <dt>verdict support</dt><dd{}>{}</dd>",
        e.delay_error_p50_us,
        e.delay_error_p90_us,
        e.delay_error_p99_us,
        e.delay_error_max_us,
        e.packets,
        if e.trusted { "" } else { " class=\"warn\"" },
        escape(&e.note)
    );
    let site_list = |idx: &[usize]| {
        if idx.is_empty() {
            "none".to_string()
        } else {
            idx.iter()
                .map(|&i| escape(&s.sites[i].name))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let settings: [(&str, String); 12] = [
        ("probing time", format!("{:.0} s", s.duration_s)),
        ("wall time", format!("{:.1} s", report.wall_s)),
        ("seed", s.seed.to_string()),
        ("echo rate", format!("{} Hz per prober and node", s.rate_hz)),
        (
            "path inflation",
            if s.inflation_spread > 0.0 {
                format!("median {}, lognormal σ {}", s.inflation, s.inflation_spread)
            } else {
                s.inflation.to_string()
            },
        ),
        (
            "jitter",
            match s.jitter_tail {
                Some(a) => format!("{} µs, Pareto tail α {a}", s.jitter_us),
                None => format!("uniform 0–{} µs", s.jitter_us),
            },
        ),
        (
            "path overrides, route changes",
            format!("{}, {}", s.paths.len(), s.events.len()),
        ),
        ("TDX quote delay", format!("{} ms", s.quote_delay_ms)),
        ("sites", s.sites.len().to_string()),
        ("probers", site_list(&s.probers)),
        ("anchors", site_list(&s.anchors)),
        ("landmarks", site_list(&s.landmarks)),
    ];
    for (k, v) in settings {
        // Values are escaped where they hold names; the rest are numbers.
        let _ = write!(h, "<dt>{k}</dt><dd>{v}</dd>");
    }
    let _ = writeln!(
        h,
        "<dt>output</dt><dd>{}</dd></dl><p>Maps: azimuthal equidistant projection centred on the \
         claim (distances and directions from the claim are true). Basemap: Natural Earth \
         1:110m coastlines and borders (public domain), via world-atlas. Generated by locus {}.</p>\
         </footer></body></html>",
        escape(&report.out_dir),
        env!("CARGO_PKG_VERSION")
    );
    let path = out.join("index.html");
    std::fs::write(&path, h)?;
    Ok(path)
}

fn badge(verdict: &str) -> String {
    format!(
        "<span class=\"badge v-{v}\">{v}</span>",
        v = escape(verdict)
    )
}

/// The table: one row per node, one RTT column per prober (scenario order).
fn verdict_table(h: &mut String, report: &Report, o: &Outcome) {
    let s = &o.scenario;
    let probers: Vec<&str> = s
        .probers
        .iter()
        .map(|&p| s.sites[p].name.as_str())
        .collect();
    let _ = write!(
        h,
        "<h2>Verdicts</h2><table id=\"verdicts\"><thead><tr><th rowspan=\"2\">node</th>\
         <th rowspan=\"2\">claim</th><th rowspan=\"2\">verdict</th>\
         <th colspan=\"{}\" class=\"num\">min RTT per prober (ms)</th>\
         <th rowspan=\"2\" class=\"num\">anchor RTT (ms)</th><th rowspan=\"2\" class=\"num\">region radius (km)</th>\
         <th rowspan=\"2\">why</th></tr><tr>",
        probers.len().max(1)
    );
    for p in &probers {
        let _ = write!(h, "<th class=\"num\">{}</th>", escape(p));
    }
    if probers.is_empty() {
        h.push_str("<th></th>");
    }
    h.push_str("</tr></thead><tbody>");
    for r in &report.responders {
        let mark = if r.correct {
            "<span class=\"ok\" title=\"equals the truth\">✓</span>"
        } else {
            "<span class=\"bad\" title=\"differs from the truth\">✗</span>"
        };
        let _ = write!(
            h,
            "<tr class=\"node\" id=\"row-{n}\"><td><a href=\"#node-{n}\">{n}</a></td><td>{}</td>\
             <td class=\"verdict\">{} {mark}<div class=\"truth\">truth: {}</div></td>",
            escape(&r.claim),
            badge(&r.verdict),
            escape(&r.truth),
            n = escape(&r.name),
        );
        for p in &probers {
            let rtt = r
                .probers
                .iter()
                .find(|x| x.site == *p)
                .and_then(|x| x.min_rtt_ms);
            let _ = write!(h, "<td class=\"num\">{}</td>", ms(rtt));
        }
        if probers.is_empty() {
            h.push_str("<td></td>");
        }
        let anchors = r
            .anchors
            .iter()
            .map(|a| format!("{:.2}", a.min_rtt_ms))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            h,
            "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"reasons\">",
            if anchors.is_empty() {
                "–".into()
            } else {
                anchors
            },
            r.region_radius_km.map_or("–".into(), |v| format!("{v:.0}"))
        );
        // The most decisive reason here; all of them in the node's card.
        match r.reasons.first() {
            Some(first) => {
                let _ = write!(h, "<p>{}</p>", escape(first));
            }
            None => h.push('–'),
        }
        if r.reasons.len() > 1 {
            let _ = write!(
                h,
                "<a href=\"#node-{}\">{} more reasons</a>",
                escape(&r.name),
                r.reasons.len() - 1
            );
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</tbody></table>");
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

/// A node's card: verdict, evidence, reasons, map and plots.
fn card(h: &mut String, r: &ResponderReport, files: &[String]) {
    let n = escape(&r.name);
    let _ = write!(
        h,
        "<section class=\"card\" id=\"node-{n}\"><h3>{n} {}</h3><dl>\
         <dt>claim</dt><dd>{}</dd><dt>truth</dt><dd>{}{}</dd>",
        badge(&r.verdict),
        escape(&r.claim),
        escape(&r.truth),
        if r.correct {
            " <span class=\"ok\">(verdict equals the truth)</span>"
        } else {
            " <span class=\"bad\">(verdict differs from the truth)</span>"
        }
    );
    if let Some(radius) = r.region_radius_km {
        let inside = match r.claim_inside_region {
            Some(true) => ", the claim inside it",
            Some(false) => ", the claim outside it",
            None => "",
        };
        let _ = write!(
            h,
            "<dt>feasible region</dt><dd>radius {radius:.0} km{inside}</dd>"
        );
    }
    let evidence = match (&r.evidence_error, r.failed_checks.is_empty()) {
        (Some(e), _) => format!("not collected: {}", escape(e)),
        (None, true) => "verified".to_string(),
        (None, false) => format!("failed checks: {}", escape(&r.failed_checks.join(", "))),
    };
    let bundle = r.bundle.as_ref().map_or(String::new(), |b| {
        format!(" (<a href=\"{b}\">bundle</a>)", b = escape(b))
    });
    let _ = write!(
        h,
        "<dt>evidence</dt><dd>{evidence}{bundle}</dd><dt>why</dt><dd>"
    );
    if r.reasons.is_empty() {
        h.push('–');
    } else {
        h.push_str("<ul class=\"why\">");
        for reason in &r.reasons {
            let _ = write!(h, "<li>{}</li>", escape(reason));
        }
        h.push_str("</ul>");
    }
    h.push_str("</dd></dl><div class=\"figs\">");
    for f in files {
        let (what, w, ht) = if f.starts_with("map-") {
            (
                "Map: each prober's disc bounds where the node can be (2/3 c); the green cross is the region estimate",
                760,
                600,
            )
        } else {
            ("RTT over time: every sample, with the move", 900, 500)
        };
        let _ = write!(
            h,
            "<figure><img src=\"{f}\" alt=\"{what}\" width=\"{w}\" height=\"{ht}\">\
             <figcaption>{what}.</figcaption></figure>",
            f = escape(f)
        );
    }
    h.push_str("</div></section>");
}
