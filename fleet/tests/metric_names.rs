//! The Grafana dashboard and the Prometheus rules only name metrics that locus exports (or
//! that the rules record): a renamed metric breaks this test, not a dashboard in production.

use std::collections::BTreeSet;
use std::path::Path;

use locus_fleet::metrics::{
    encode_prometheus, NodeMetrics, NodePhysics, ProberMetrics, ProberPhysics, Registry,
    RejectLabels, TargetLabels,
};

fn config_file(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config")
            .join(name),
    )
    .unwrap()
}

/// Every series name the prober and the monitor can export (histograms with their suffixes).
fn exported() -> BTreeSet<String> {
    let mut r = Registry::default();
    let m = ProberMetrics::new(&mut r);
    // A family without series is not encoded at all: give each one a series.
    let l = TargetLabels::new("p", "t", "i", "c");
    let _ = m.probe_success.get_or_create(&l);
    let _ = m.rtt_seconds.get_or_create(&l);
    let _ = m.round_min_rtt_seconds.get_or_create(&l);
    for c in [
        &m.sent,
        &m.answered,
        &m.lost,
        &m.late,
        &m.violations,
        &m.rounds,
        &m.session_key_changes,
    ] {
        let _ = c.get_or_create(&l);
    }
    let _ = m.evidence_success.get_or_create(&l);
    let _ = m.evidence_rtt_seconds.get_or_create(&l);
    let _ = m.evidence_last_success.get_or_create(&l);
    let physics = NodePhysics {
        claim_center: Some((50.1, 8.7)),
        region_center: Some((50.0, 8.0)),
        region_radius_m: Some(1e3),
        probers: vec![ProberPhysics {
            prober: "p".into(),
            min_rtt_s: Some(0.002),
            expected_rtt_s: 0.001,
            excess_s: Some(0.001),
        }],
    };
    let node = NodeMetrics::new(&mut r);
    node.set_verdict("n", "c", "located", &physics, 0.0);
    let _ = node.rows_rejected.get_or_create(&RejectLabels {
        table: "rounds".into(),
        reason: "unsigned".into(),
    });
    locus_fleet::self_metrics::register(&mut r);
    let mut out = BTreeSet::new();
    for line in encode_prometheus(&r).lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.insert(name.to_owned());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{s}"));
                }
            }
        }
    }
    out
}

/// Names starting with `locus` in a PromQL expression, outside quoted label values.
fn names_in(expr: &str) -> Vec<String> {
    let unquoted: String = expr
        .split('"')
        .enumerate()
        .map(|(i, part)| if i % 2 == 0 { part } else { "" })
        .collect::<Vec<_>>()
        .join(" ");
    let expr = unquoted.as_str();
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(off) = expr[i..].find("locus") {
        let start = i + off;
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        if start > 0 && ident(b[start - 1]) {
            i = start + 5;
            continue;
        }
        let mut end = start;
        while end < b.len() && ident(b[end]) {
            end += 1;
        }
        out.push(expr[start..end].to_owned());
        i = end;
    }
    out
}

fn recorded(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(|s| s.trim().to_owned())
        .collect()
}

#[test]
fn dashboard_and_rules_name_only_exported_metrics() {
    let known: BTreeSet<String> = exported();
    assert!(known.contains("locus_rtt_seconds_bucket"), "{known:?}");
    assert!(known.contains("locus_answers_lost_total"), "{known:?}");
    let rules = config_file("alerts.yml");
    let rec = recorded(&rules);
    assert!(rec.len() >= 2, "{rec:?}");

    let mut unknown = Vec::new();
    // PromQL is on `expr:` lines and the block lines that follow `expr: |`.
    let mut in_expr = false;
    let mut rule_exprs = 0;
    for l in rules.lines() {
        let t = l.trim();
        let is_key = t.starts_with("- ")
            || t.split_once(':').is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|c| c.is_ascii_lowercase() || c == b'_')
            });
        let expr = if let Some(e) = t.strip_prefix("expr:") {
            in_expr = true;
            rule_exprs += 1;
            e
        } else if in_expr && !is_key {
            t
        } else {
            in_expr = false;
            continue;
        };
        for n in names_in(expr) {
            if !known.contains(&n) && !rec.contains(&n) {
                unknown.push(format!("rules: {n} in {t}"));
            }
        }
    }
    assert!(rule_exprs >= 10, "{rule_exprs}");

    let dash: serde_json::Value =
        serde_json::from_str(&config_file("grafana-dashboard.json")).unwrap();
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        // Rows hold no queries.
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for a in dash["annotations"]["list"].as_array().unwrap() {
        if let Some(e) = a["expr"].as_str() {
            exprs.push(e.to_owned());
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            exprs.push(q.to_owned());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    for e in &exprs {
        for n in names_in(e) {
            if !known.contains(&n) && !rec.contains(&n) {
                unknown.push(format!("dashboard: {n} in {e}"));
            }
        }
    }
    assert!(unknown.is_empty(), "unknown metric names: {unknown:#?}");
    // The check itself catches a misspelt name.
    assert_eq!(
        names_in("rate(locus_rtt_second_bucket[5m])"),
        ["locus_rtt_second_bucket"]
    );
    assert!(!known.contains("locus_rtt_second_bucket"));
}

/// The dashboard imports from a file (`__inputs`, `__requires`) and has what an operator looks
/// for: a map of claimed site vs region estimate, measured minimum vs expected RTT per prober,
/// a verdict timeline coloured per verdict, a daemon-health row, verdict-change annotations.
#[test]
fn dashboard_has_the_operator_panels() {
    let dash: serde_json::Value =
        serde_json::from_str(&config_file("grafana-dashboard.json")).unwrap();
    let input = &dash["__inputs"][0];
    assert_eq!(input["pluginId"], "prometheus", "{input}");
    let name = input["name"].as_str().unwrap();
    assert!(
        dash["templating"]["list"][0]["current"]["value"]
            .as_str()
            .is_some_and(|v| v == format!("${{{name}}}")),
        "the datasource variable defaults to the import's input"
    );
    let requires: Vec<&str> = dash["__requires"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let panels = dash["panels"].as_array().unwrap();
    let exprs = |p: &serde_json::Value| -> String {
        p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["expr"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let find = |kind: &str, needs: &[&str]| {
        panels
            .iter()
            .find(|p| p["type"] == kind && needs.iter().all(|n| exprs(p).contains(n)))
    };
    let geo = find(
        "geomap",
        &[
            "locus_node_region_latitude_degrees",
            "locus_node_region_longitude_degrees",
            "locus_node_claim_latitude_degrees",
            "locus_region_radius_meters",
        ],
    )
    .expect("a geomap of claimed site vs region estimate");
    assert_eq!(geo["options"]["layers"].as_array().unwrap().len(), 2);
    find(
        "timeseries",
        &[
            "locus_node_min_rtt_seconds",
            "locus_node_expected_rtt_seconds",
        ],
    )
    .filter(|p| p["repeat"] == "prober")
    .expect("measured minimum vs expected RTT, per prober");
    let timeline =
        find("state-timeline", &["locus_node_verdict"]).expect("a verdict state timeline");
    let colours: Vec<String> = timeline["fieldConfig"]["defaults"]["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["options"].as_object().unwrap().values())
        .map(|o| o["text"].as_str().unwrap().to_owned())
        .collect();
    for v in locus_fleet::metrics::VERDICTS {
        assert!(
            colours.iter().any(|c| c == v),
            "no colour for {v}: {colours:?}"
        );
    }
    let health = panels
        .iter()
        .position(|p| p["type"] == "row" && p["title"] == "Daemon health")
        .expect("a daemon-health row");
    let below: String = panels[health..].iter().map(exprs).collect();
    for m in [
        "locus_targets_connected",
        "locus_probe_lateness_seconds_bucket",
        "locus_store_errors_total",
        "locus_rounds_dropped_total",
        "locus_config_reloads_total",
    ] {
        assert!(below.contains(m), "daemon health lacks {m}");
    }
    for kind in ["geomap", "state-timeline", "timeseries", "heatmap", "table"] {
        assert!(requires.contains(&kind), "__requires lacks {kind}");
        assert!(panels.iter().any(|p| p["type"] == kind), "no {kind} panel");
    }
    let annotations = dash["annotations"]["list"].as_array().unwrap();
    assert!(
        annotations.iter().any(|a| a["expr"]
            .as_str()
            .is_some_and(|e| e.contains("locus_node_verdict"))),
        "verdict changes are annotated"
    );
    // Panel ids are unique (Grafana keys panels by id).
    let mut ids: Vec<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len());
}
