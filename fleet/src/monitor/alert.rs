//! Direct alerting without Prometheus: posts alerts to Alertmanager's API (`POST
//! /api/v2/alerts`), named, labelled and annotated like the rules in `config/alerts.yml`.
//! A firing alert is re-sent on every judgement with `endsAt` a few intervals ahead (as
//! Prometheus does) and a stable `startsAt`: when the node's verdict changed. When a node's
//! verdict changes, the previous alert is resolved (`endsAt` now). `LocusNodeUnreachable`
//! waits [`UNREACHABLE_FOR`] like the rule's `for: 5m`, so either path raises one alert per
//! event. Posts go through reqwest (rustls): `http://` or `https://`, basic auth from the URL's
//! user info, or a bearer token.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::store::VerdictRecord;
use crate::time::rfc3339;
use locus_analysis::Judgement;
use serde::Serialize;

/// Connect, write and read timeout of one post.
const TIMEOUT: Duration = Duration::from_secs(5);

/// How long a node must stay `unreachable` before it alerts (the rule's `for: 5m`).
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(300);

/// Why an alert could not be delivered, or an Alertmanager URL is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    #[error("{url:?} is not an http(s)://[user:password@]host:port[/path] URL: {reason}")]
    Url { url: String, reason: String },
    #[error("the HTTP client could not start: {0}")]
    Client(String),
    #[error("posting to {url}: {reason}")]
    Connect { url: String, reason: String },
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
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt", skip_serializing_if = "Option::is_none")]
    pub(crate) starts_at: Option<String>,
    #[serde(rename = "endsAt")]
    pub(crate) ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub(crate) generator_url: Option<String>,
}

/// One Alertmanager: where to post and how to authenticate.
#[derive(Debug, Clone)]
struct Target {
    /// `.../api/v2/alerts`, without user info.
    endpoint: reqwest::Url,
    /// Shown in errors: the URL with its password replaced by `***`.
    shown: String,
    basic: Option<(String, String)>,
}

/// The Alertmanagers the monitor posts to (`--alertmanager`, repeatable).
#[derive(Debug, Clone)]
pub struct Alertmanagers {
    client: reqwest::blocking::Client,
    targets: Vec<Target>,
    bearer: Option<String>,
    /// Where an alert links back to (the monitor's `/metrics`, or `--external-url`).
    generator_url: Option<String>,
}

impl Alertmanagers {
    /// Checks every URL (`http(s)://[user:password@]host:port[/prefix]`) and builds the client.
    /// `bearer` is sent as `Authorization: Bearer` to every Alertmanager without user info.
    pub fn new(
        urls: &[String],
        bearer: Option<String>,
        generator_url: Option<String>,
    ) -> Result<Self, AlertError> {
        let targets = urls
            .iter()
            .map(|u| target(u))
            .collect::<Result<Vec<_>, _>>()?;
        let client = reqwest::blocking::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .map_err(|e| AlertError::Client(e.to_string()))?;
        Ok(Self {
            client,
            targets,
            bearer,
            generator_url,
        })
    }

    pub(crate) fn generator_url(&self) -> Option<&str> {
        self.generator_url.as_deref()
    }

    /// Posts `alerts` to every Alertmanager; returns the failures.
    pub(crate) fn post(&self, alerts: &[Alert]) -> Vec<AlertError> {
        if alerts.is_empty() {
            return Vec::new();
        }
        self.targets
            .iter()
            .filter_map(|t| self.post_to(t, alerts).err())
            .collect()
    }

    fn post_to(&self, t: &Target, alerts: &[Alert]) -> Result<(), AlertError> {
        let body = serde_json::to_vec(alerts).unwrap_or_default();
        let mut req = self
            .client
            .post(t.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some((user, password)) = &t.basic {
            req = req.basic_auth(user, Some(password));
        } else if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().map_err(|e| AlertError::Connect {
            url: t.shown.clone(),
            // reqwest's message names the URL it was given, which has no user info.
            reason: error_chain(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().unwrap_or_default();
        Err(AlertError::Status {
            url: t.shown.clone(),
            status: status.to_string(),
            body: body.chars().take(500).collect(),
        })
    }
}

/// `e` and its sources, once each.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}

fn target(url: &str) -> Result<Target, AlertError> {
    let bad = |reason: &str| AlertError::Url {
        url: redact(url),
        reason: reason.to_owned(),
    };
    let mut u = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad("no query or fragment allowed"));
    }
    let basic = (!u.username().is_empty()).then(|| {
        let decode = |s: &str| percent_decode(s);
        (
            decode(u.username()),
            decode(u.password().unwrap_or_default()),
        )
    });
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let shown = u.as_str().trim_end_matches('/').to_owned();
    let path = format!("{}/api/v2/alerts", u.path().trim_end_matches('/'));
    u.set_path(&path);
    Ok(Target {
        endpoint: u,
        shown,
        basic,
    })
}

/// Decodes `%XX` escapes of URL user info (a password may hold `@` or `:`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with the password of its user info replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => url.to_owned(),
    }
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

/// The `description` annotation, worded like the rule's in `config/alerts.yml`.
fn description(verdict: &str, node: &str, claim: &str) -> String {
    match verdict {
        "relocated" => format!(
            "locus judged {node} relocated: its timing moved or points away from {claim}. See \
             the verdict's reasons (locus export --table verdicts --node {node})."
        ),
        "proxied" => {
            format!("locus judged {node} proxied: the TD runs elsewhere than {claim}.")
        }
        "frankenstein" => {
            format!("locus judged {node} frankenstein (binding or vTPM timing failed).")
        }
        "evidence-invalid" => format!(
            "locus judged {node} evidence-invalid: a required check of its latest bundle failed."
        ),
        "unreachable" => format!("No prober got an answer from {node} for 5 minutes."),
        other => format!("locus judged {node} {other}."),
    }
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

/// What [`alerts_for`] needs besides the judgement.
pub(crate) struct AlertContext<'a> {
    /// The node's previous stored verdict.
    pub(crate) previous: Option<&'a VerdictRecord>,
    /// The node's last `located` verdict (the old region of the alert).
    pub(crate) last_located: Option<&'a VerdictRecord>,
    /// When the node's current verdict began (Unix seconds).
    pub(crate) since_unix_s: i64,
    /// The judgement's instant.
    pub(crate) now_unix_s: i64,
    /// When the alerts are sent (the wall clock): a firing alert's `endsAt` counts from here,
    /// so that a judgement slower than the TTL does not post alerts that already ended.
    pub(crate) sent_unix_s: i64,
    /// A firing alert expires this long after it was last sent.
    pub(crate) firing_for: Duration,
    pub(crate) generator_url: Option<&'a str>,
}

/// The alerts to send after judging a node.
pub(crate) fn alerts_for(j: &Judgement, cx: &AlertContext<'_>) -> Vec<Alert> {
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
    let generator_url = cx.generator_url.map(str::to_owned);
    if let Some(prev) = cx.previous {
        if prev.verdict != verdict {
            if let Some(name) = alert_name(&prev.verdict) {
                out.push(Alert {
                    labels: labels(name, &prev.verdict, &prev.claim),
                    annotations: [("summary".to_owned(), format!("{} is now {verdict}", j.name))]
                        .into_iter()
                        .collect(),
                    starts_at: None,
                    ends_at: rfc3339(cx.now_unix_s),
                    generator_url: generator_url.clone(),
                });
            }
        }
    }
    let Some(name) = alert_name(verdict) else {
        return out;
    };
    // Like the rule's `for: 5m`: a short outage raises nothing on either path.
    let held = (cx.now_unix_s - cx.since_unix_s).max(0) as u64;
    if verdict == "unreachable" && held < UNREACHABLE_FOR.as_secs() {
        return out;
    }
    let judged = serde_json::to_value(j).unwrap_or_default();
    let new_region = region_text(&judged).unwrap_or_else(|| "none (no feasible region)".into());
    let old_region = cx
        .last_located
        .and_then(|p| region_of(&p.judgement).map(|r| format!("{r} (verdict {})", p.verdict)))
        .unwrap_or_else(|| format!("claimed site {}", j.claim));
    let annotations = [
        (
            "summary",
            format!("{} is {verdict} (claimed site {})", j.name, j.claim),
        ),
        ("description", description(verdict, &j.name, &j.claim)),
        ("reasons", j.reasons.join("; ")),
        ("old_region", old_region),
        ("new_region", new_region),
        (
            "runbook_url",
            format!("docs/runbook.md#{}", name.to_ascii_lowercase()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    out.push(Alert {
        labels: labels(name, verdict, &j.claim),
        annotations,
        starts_at: Some(rfc3339(cx.since_unix_s)),
        ends_at: rfc3339(
            cx.now_unix_s.max(cx.sent_unix_s) + cx.firing_for.as_secs_f64().ceil() as i64,
        ),
        generator_url,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relocated(name: &str) -> Judgement {
        Judgement {
            name: name.into(),
            claim: "fra".into(),
            verdict: locus_analysis::Verdict::Relocated,
            reasons: vec!["moved".into()],
            region: None,
            calibrated_region: None,
            distances: Vec::new(),
            anchors: Vec::new(),
            checks: Vec::new(),
            relocation: None,
            vtpm: Default::default(),
            scores: Default::default(),
            evidence_excess_ms: None,
        }
    }

    fn ends_at(now_unix_s: i64, sent_unix_s: i64) -> String {
        let j = relocated("n");
        let alerts = alerts_for(
            &j,
            &AlertContext {
                previous: None,
                last_located: None,
                since_unix_s: now_unix_s,
                now_unix_s,
                sent_unix_s,
                firing_for: Duration::from_millis(2_500),
                generator_url: None,
            },
        );
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        alerts[0].ends_at.clone()
    }

    #[test]
    fn a_firing_alert_ends_after_it_is_sent_even_when_judging_was_slow() {
        // Judged at 1000, sent at 1010 (a judgement slower than the TTL): the alert must not
        // arrive already ended, or Alertmanager never shows it.
        assert_eq!(ends_at(1_000, 1_010), rfc3339(1_013));
        // Sent within the judgement's second: from the judgement (the TTL rounded up).
        assert_eq!(ends_at(1_000, 1_000), rfc3339(1_003));
        // A judgement dated ahead of the clock (`--at` in the future): from the judgement.
        assert_eq!(ends_at(1_000, 990), rfc3339(1_003));
    }

    #[test]
    fn bad_urls_are_named_and_passwords_hidden() {
        for url in ["ftp://x:1", "127.0.0.1:9093", "http://", "http://h:1/?q=1"] {
            assert!(matches!(target(url), Err(AlertError::Url { .. })), "{url}");
        }
        let e = target("ftp://am:s3cret@x:1").unwrap_err().to_string();
        assert!(!e.contains("s3cret") && e.contains("am:***@x:1"), "{e}");
    }

    #[test]
    fn user_info_becomes_basic_auth_and_the_path_keeps_its_prefix() {
        let t = target("https://am:p%40ss@alerts.example:9093/prefix/").unwrap();
        assert_eq!(
            t.endpoint.as_str(),
            "https://alerts.example:9093/prefix/api/v2/alerts"
        );
        assert_eq!(t.basic, Some(("am".into(), "p@ss".into())));
        assert_eq!(t.shown, "https://alerts.example:9093/prefix");
        let t = target("http://127.0.0.1:9093").unwrap();
        assert_eq!(t.endpoint.as_str(), "http://127.0.0.1:9093/api/v2/alerts");
        assert_eq!(t.basic, None);
    }

    /// Accepts one HTTP request on loopback, answers `status`, returns the request's head.
    fn capture(status: u16) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s);
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            head.push_str(&String::from_utf8(body).unwrap());
            write!(
                r.get_mut(),
                "HTTP/1.1 {status} X\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
            )
            .unwrap();
            head
        });
        (url, h)
    }

    fn one_alert() -> Vec<Alert> {
        vec![Alert {
            labels: [("alertname".to_owned(), "X".to_owned())].into(),
            annotations: Default::default(),
            starts_at: Some(rfc3339(1)),
            ends_at: rfc3339(2),
            generator_url: Some("http://monitor:19465/metrics".into()),
        }]
    }

    #[test]
    fn posts_carry_basic_or_bearer_auth_and_failures_are_named() {
        let (url, h) = capture(200);
        let basic = url.replace("http://", "http://am:pw@");
        let ams = Alertmanagers::new(&[basic], Some("tok".into()), None).unwrap();
        assert!(ams.post(&one_alert()).is_empty());
        let req = h.join().unwrap();
        assert!(req.starts_with("POST /api/v2/alerts "), "{req}");
        // base64("am:pw")
        assert!(req.contains("authorization: Basic YW06cHc="), "{req}");
        assert!(
            req.contains(r#""generatorURL":"http://monitor:19465/metrics""#),
            "{req}"
        );
        assert!(
            req.contains(r#""startsAt":"1970-01-01T00:00:01Z""#),
            "{req}"
        );

        let (url, h) = capture(400);
        let ams = Alertmanagers::new(&[url], Some("tok".into()), None).unwrap();
        let failed = ams.post(&one_alert());
        let req = h.join().unwrap();
        assert!(req.contains("authorization: Bearer tok"), "{req}");
        assert!(
            matches!(&failed[..], [AlertError::Status { status, body, .. }]
                if status.starts_with("400") && body == "nope"),
            "{failed:?}"
        );
    }
}
