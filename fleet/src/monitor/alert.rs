//! Direct alerting without Prometheus: posts alerts to Alertmanager's API (`POST
//! /api/v2/alerts`), named and labelled like the rules in `config/alerts.yml`.
//! A firing alert is re-sent on every judgement with `endsAt` a few intervals ahead (as
//! Prometheus does); when a node's verdict changes, the previous alert is resolved (`endsAt`
//! now). Plain HTTP only: run it against an Alertmanager on the same host or a trusted network.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::store::VerdictRecord;
use crate::time::rfc3339;
use locus_analysis::Judgement;
use serde::Serialize;

/// Connect, write and read timeout of one post.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why an alert could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("{url:?} is not an http://host:port[/path] URL")]
    Url { url: String },
    #[error("connecting to {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("Alertmanager at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: String,
        body: String,
    },
}

/// One alert in Alertmanager's API v2 format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Alert {
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    pub(crate) annotations: std::collections::BTreeMap<String, String>,
    #[serde(rename = "startsAt", skip_serializing_if = "Option::is_none")]
    pub(crate) starts_at: Option<String>,
    #[serde(rename = "endsAt")]
    pub(crate) ends_at: String,
}

/// The alert name of a verdict, or None for verdicts that do not alert.
fn alert_name(verdict: &str) -> Option<&'static str> {
    Some(match verdict {
        "relocated" => "LocusNodeRelocated",
        "proxied" => "LocusNodeProxied",
        "frankenstein" => "LocusNodeFrankenstein",
        "evidence-invalid" => "LocusNodeEvidenceInvalid",
        "unreachable" => "LocusNodeUnreachable",
        _ => return None,
    })
}

/// Where a stored judgement placed the node, for the old/new region annotations.
fn region_of(judgement_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(judgement_json).ok()?;
    region_text(&v)
}

fn region_text(j: &serde_json::Value) -> Option<String> {
    let r = &j["region"];
    let (lat, lon) = (
        r["estimate"]["lat"].as_f64()?,
        r["estimate"]["lon"].as_f64()?,
    );
    Some(match r["radius_km"].as_f64() {
        Some(rad) => format!("({lat:.2}, {lon:.2}) ± {rad:.0} km"),
        None => format!("({lat:.2}, {lon:.2})"),
    })
}

/// The alerts to send after judging a node whose previous stored verdict was `previous` and
/// whose last `located` verdict was `last_located` (the old region of the alert).
pub(crate) fn alerts_for(
    j: &Judgement,
    previous: Option<&VerdictRecord>,
    last_located: Option<&VerdictRecord>,
    now_unix_s: i64,
    firing_for: Duration,
) -> Vec<Alert> {
    let verdict = j.verdict.as_str();
    let mut out = Vec::new();
    let labels = |name: &str, verdict: &str, claim: &str| {
        [
            ("alertname", name),
            ("node", j.name.as_str()),
            ("claim", claim),
            ("verdict", verdict),
            (
                "severity",
                if verdict == "unreachable" {
                    "warning"
                } else {
                    "critical"
                },
            ),
            ("source", "locus-monitor"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    if let Some(prev) = previous {
        if prev.verdict != verdict {
            if let Some(name) = alert_name(&prev.verdict) {
                out.push(Alert {
                    labels: labels(name, &prev.verdict, &prev.claim),
                    annotations: [("summary".to_owned(), format!("{} is now {verdict}", j.name))]
                        .into_iter()
                        .collect(),
                    starts_at: None,
                    ends_at: rfc3339(now_unix_s),
                });
            }
        }
    }
    let Some(name) = alert_name(verdict) else {
        return out;
    };
    let judged = serde_json::to_value(j).unwrap_or_default();
    let new_region = region_text(&judged).unwrap_or_else(|| "none (no feasible region)".into());
    let old_region = last_located
        .and_then(|p| region_of(&p.judgement).map(|r| format!("{r} (verdict {})", p.verdict)))
        .unwrap_or_else(|| format!("claimed site {}", j.claim));
    let annotations = [
        (
            "summary",
            format!("{} is {verdict} (claimed site {})", j.name, j.claim),
        ),
        ("reasons", j.reasons.join("; ")),
        ("old_region", old_region),
        ("new_region", new_region),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    out.push(Alert {
        labels: labels(name, verdict, &j.claim),
        annotations,
        starts_at: None,
        ends_at: rfc3339(now_unix_s + firing_for.as_secs() as i64),
    });
    out
}

/// Posts `alerts` to the Alertmanager at `url` (`http://host:port[/prefix]`).
pub(crate) fn post(url: &str, alerts: &[Alert]) -> Result<(), AlertError> {
    if alerts.is_empty() {
        return Ok(());
    }
    let bad = || AlertError::Url {
        url: url.to_owned(),
    };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (host, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let addr = host
        .to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)?;
    let conn = |source| AlertError::Connect {
        url: url.to_owned(),
        source,
    };
    let body = serde_json::to_vec(alerts).unwrap_or_default();
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(conn)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(conn)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(conn)?;
    let head = format!(
        "POST {prefix}/api/v2/alerts HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(conn)?;
    s.write_all(&body).map_err(conn)?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).map_err(conn)?;
    let reply = String::from_utf8_lossy(&reply);
    let status = reply.lines().next().unwrap_or("").to_owned();
    if status.split(' ').nth(1) == Some("200") {
        Ok(())
    } else {
        Err(AlertError::Status {
            url: url.to_owned(),
            status,
            body: reply
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.chars().take(500).collect())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_named() {
        let a = Alert {
            labels: Default::default(),
            annotations: Default::default(),
            starts_at: None,
            ends_at: rfc3339(0),
        };
        for url in ["https://x:1", "127.0.0.1:9093", "http://"] {
            assert!(
                matches!(
                    post(url, std::slice::from_ref(&a)),
                    Err(AlertError::Url { .. })
                ),
                "{url}"
            );
        }
    }
}
