//! Lab scenarios: sites, probers, anchors and responders (honest or attackers), from TOML.
//!
//! Unknown keys, unknown site names and impossible settings are errors naming the line.
//! Truth is derived from what a responder does, never declared.

use std::collections::HashSet;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::toml_span::{check_range, line_of};

/// The built-in scenario (`config/lab.toml`), compiled in.
pub(crate) const BUILT_IN: &str = include_str!("../../config/lab.toml");

/// The largest number of entries of each kind (each host takes a loopback address).
const MAX_ENTRIES: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    settings: Settings,
    #[serde(default, rename = "site")]
    sites: Vec<Spanned<RawSite>>,
    #[serde(default, rename = "prober")]
    probers: Vec<Spanned<RawSiteRef>>,
    #[serde(default, rename = "anchor")]
    anchors: Vec<Spanned<RawSiteRef>>,
    #[serde(default, rename = "responder")]
    responders: Vec<Spanned<RawResponder>>,
}

/// Run-wide settings.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// Probing time, seconds.
    #[serde(default = "d_duration")]
    pub(crate) duration_s: Spanned<f64>,
    /// Seed of all randomness (jitter, nonces of the emulation).
    #[serde(default = "d_seed")]
    pub(crate) seed: u64,
    /// Fiber path length over great-circle distance.
    #[serde(default = "d_inflation")]
    pub(crate) inflation: Spanned<f64>,
    /// Random extra one-way delay per packet, uniform in `0..=jitter_us` µs.
    #[serde(default = "d_jitter")]
    pub(crate) jitter_us: Spanned<f64>,
    /// Echo challenges per prober per responder per second.
    #[serde(default = "d_rate")]
    pub(crate) rate_hz: Spanned<f64>,
    /// Each lab TDX quote takes at least this long, one at a time per responder, as on a cloud
    /// TD (≈ 39 ms on GCP). 0 (default): as fast as the lab signs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) quote_delay_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn d_duration() -> Spanned<f64> {
    Spanned::new(0..0, 20.0)
}
fn d_seed() -> u64 {
    1
}
fn d_inflation() -> Spanned<f64> {
    Spanned::new(0..0, 1.5)
}
fn d_jitter() -> Spanned<f64> {
    Spanned::new(0..0, 50.0)
}
fn d_rate() -> Spanned<f64> {
    Spanned::new(0..0, 50.0)
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            duration_s: d_duration(),
            seed: d_seed(),
            inflation: d_inflation(),
            jitter_us: d_jitter(),
            rate_hz: d_rate(),
            quote_delay_ms: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: String,
    lat: f64,
    lon: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSiteRef {
    site: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponder {
    name: String,
    claim: Spanned<String>,
    site: Spanned<String>,
    relay_via: Option<Spanned<String>>,
    tpm_site: Option<Spanned<String>>,
    move_to: Option<Spanned<String>>,
    move_after_s: Option<Spanned<f64>>,
}

/// A place with coordinates.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Site {
    pub(crate) name: String,
    pub(crate) lat: f64,
    pub(crate) lon: f64,
}

/// What a responder really is: the verdict the lab expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Truth {
    Located,
    Proxied,
    Frankenstein,
    Relocated,
}

impl Truth {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Located => "located",
            Self::Proxied => "proxied",
            Self::Frankenstein => "frankenstein",
            Self::Relocated => "relocated",
        }
    }
}

/// One responder of the scenario (indices into `Scenario::sites`).
#[derive(Debug, Clone)]
pub(crate) struct Responder {
    pub(crate) name: String,
    pub(crate) claim: usize,
    pub(crate) site: usize,
    pub(crate) relay_via: Option<usize>,
    pub(crate) tpm_site: Option<usize>,
    /// `(site, seconds into the run)`.
    pub(crate) moves: Option<(usize, f64)>,
}

impl Responder {
    /// Truth is derived: vTPM elsewhere ⇒ Frankenstein; a relay ⇒ proxied; a move or a site
    /// other than the claim ⇒ relocated; otherwise located.
    pub(crate) fn truth(&self) -> Truth {
        if self.tpm_site.is_some_and(|t| t != self.site) {
            Truth::Frankenstein
        } else if self.relay_via.is_some() {
            Truth::Proxied
        } else if self.moves.is_some() || self.site != self.claim {
            Truth::Relocated
        } else {
            Truth::Located
        }
    }
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub(crate) duration_s: f64,
    pub(crate) seed: u64,
    pub(crate) inflation: f64,
    pub(crate) jitter_us: f64,
    pub(crate) rate_hz: f64,
    /// Least time of one lab TDX quote (one at a time per responder), ms; 0: none.
    pub(crate) quote_delay_ms: u64,
    pub(crate) sites: Vec<Site>,
    /// Site index of each prober.
    pub(crate) probers: Vec<usize>,
    /// Site index of each anchor.
    pub(crate) anchors: Vec<usize>,
    pub(crate) responders: Vec<Responder>,
}

/// A scenario error, naming the line where it can.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScenarioError {
    #[error("{origin}: {source}")]
    Syntax {
        origin: String,
        source: toml::de::Error,
    },
    #[error("{origin}, line {line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Missing { origin: String, message: String },
}

impl Scenario {
    /// Parses and validates scenario text; `origin` names it in errors (a path).
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|source| ScenarioError::Syntax {
            origin: origin.to_string(),
            source,
        })?;
        let invalid = |span: Range<usize>, message: String| ScenarioError::Invalid {
            origin: origin.to_string(),
            line: line_of(text, span.start),
            message,
        };
        let missing = |message: &str| ScenarioError::Missing {
            origin: origin.to_string(),
            message: message.to_string(),
        };

        let s = &raw.settings;
        check_range(&s.duration_s, 1.0, 3600.0, "duration_s", &invalid)?;
        check_range(&s.inflation, 1.0, 10.0, "inflation", &invalid)?;
        check_range(&s.jitter_us, 0.0, 100_000.0, "jitter_us", &invalid)?;
        check_range(&s.rate_hz, 0.1, 2_000.0, "rate_hz", &invalid)?;

        let mut sites = Vec::new();
        let mut names = HashSet::new();
        for site in &raw.sites {
            let span = site.span();
            let site = site.get_ref();
            if !names.insert(site.name.clone()) {
                return Err(invalid(
                    span,
                    format!("site {:?} is defined twice", site.name),
                ));
            }
            if !(-90.0..=90.0).contains(&site.lat) || !(-180.0..=180.0).contains(&site.lon) {
                return Err(invalid(
                    span,
                    format!("site {:?} has impossible coordinates", site.name),
                ));
            }
            sites.push(Site {
                name: site.name.clone(),
                lat: site.lat,
                lon: site.lon,
            });
        }
        let find = |r: &Spanned<String>| {
            sites
                .iter()
                .position(|s| s.name == *r.get_ref())
                .ok_or_else(|| invalid(r.span(), format!("unknown site {:?}", r.get_ref())))
        };

        if raw.probers.is_empty() {
            return Err(missing("a scenario needs at least one [[prober]]"));
        }
        if raw.responders.is_empty() {
            return Err(missing("a scenario needs at least one [[responder]]"));
        }
        for (kind, n) in [
            ("site", raw.sites.len()),
            ("prober", raw.probers.len()),
            ("anchor", raw.anchors.len()),
            ("responder", raw.responders.len()),
        ] {
            if n > MAX_ENTRIES {
                return Err(missing(&format!(
                    "at most {MAX_ENTRIES} [[{kind}]] entries, found {n}"
                )));
            }
        }
        let probers = raw
            .probers
            .iter()
            .map(|p| find(&p.get_ref().site))
            .collect::<Result<Vec<_>, _>>()?;
        let anchors = raw
            .anchors
            .iter()
            .map(|a| find(&a.get_ref().site))
            .collect::<Result<Vec<_>, _>>()?;

        let mut responders = Vec::new();
        let mut rnames = HashSet::new();
        for r in &raw.responders {
            let span = r.span();
            let r = r.get_ref();
            let valid_name = !r.name.is_empty()
                && r.name.len() <= 64
                && r.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_name {
                return Err(invalid(
                    span,
                    format!("responder name {:?}: use 1-64 of [A-Za-z0-9_-]", r.name),
                ));
            }
            if !rnames.insert(r.name.clone()) {
                return Err(invalid(
                    span,
                    format!("responder {:?} is defined twice", r.name),
                ));
            }
            let opt = |o: &Option<Spanned<String>>| o.as_ref().map(&find).transpose();
            let moves = match (&r.move_to, &r.move_after_s) {
                (None, None) => None,
                (Some(to), Some(after)) => {
                    let t = *after.get_ref();
                    if !(t > 0.0 && t < *s.duration_s.get_ref()) {
                        return Err(invalid(
                            after.span(),
                            format!(
                                "move_after_s = {t} must lie inside the run (0 < t < duration_s)"
                            ),
                        ));
                    }
                    Some((find(to)?, t))
                }
                (Some(to), None) => {
                    return Err(invalid(to.span(), "move_to needs move_after_s".to_string()))
                }
                (None, Some(after)) => {
                    return Err(invalid(
                        after.span(),
                        "move_after_s needs move_to".to_string(),
                    ))
                }
            };
            responders.push(Responder {
                name: r.name.clone(),
                claim: find(&r.claim)?,
                site: find(&r.site)?,
                relay_via: opt(&r.relay_via)?,
                tpm_site: opt(&r.tpm_site)?,
                moves,
            });
        }
        Ok(Self {
            duration_s: *s.duration_s.get_ref(),
            seed: s.seed,
            inflation: *s.inflation.get_ref(),
            jitter_us: *s.jitter_us.get_ref(),
            rate_hz: *s.rate_hz.get_ref(),
            quote_delay_ms: s.quote_delay_ms,
            sites,
            probers,
            anchors,
            responders,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Scenario::parse(text, "t.toml").unwrap_err().to_string()
    }

    /// "line N" for the first line of `text` containing `needle`.
    fn line(text: &str, needle: &str) -> String {
        format!(
            "line {}",
            text.lines().position(|l| l.contains(needle)).unwrap() + 1
        )
    }

    const BASE: &str = r#"
[[site]]
name = "fra"
lat = 50.11
lon = 8.68

[[site]]
name = "ams"
lat = 52.37
lon = 4.90

[[prober]]
site = "ams"
"#;

    #[test]
    fn built_in_parses_and_covers_every_truth() {
        let s = Scenario::parse(BUILT_IN, "built-in").unwrap();
        let truths: HashSet<_> = s.responders.iter().map(|r| r.truth()).collect();
        for t in [
            Truth::Located,
            Truth::Proxied,
            Truth::Frankenstein,
            Truth::Relocated,
        ] {
            assert!(truths.contains(&t), "built-in scenario lacks a {t:?} node");
        }
        assert!(s.probers.len() >= 4);
        assert!(!s.anchors.is_empty());
        assert_eq!(s.quote_delay_ms, 0, "the built-in lab quotes at lab speed");
        let slow = BUILT_IN.replacen("[settings]\n", "[settings]\nquote_delay_ms = 40\n", 1);
        assert_eq!(Scenario::parse(&slow, "slow").unwrap().quote_delay_ms, 40);
    }

    #[test]
    fn truth_is_derived() {
        let text = format!(
            "{BASE}{}",
            r#"
[[responder]]
name = "a"
claim = "fra"
site = "fra"
[[responder]]
name = "b"
claim = "fra"
site = "ams"
[[responder]]
name = "c"
claim = "fra"
site = "ams"
relay_via = "fra"
[[responder]]
name = "d"
claim = "fra"
site = "fra"
tpm_site = "ams"
[[responder]]
name = "e"
claim = "fra"
site = "fra"
move_to = "ams"
move_after_s = 5
"#
        );
        let s = Scenario::parse(&text, "t").unwrap();
        let truths: Vec<_> = s.responders.iter().map(|r| r.truth()).collect();
        assert_eq!(
            truths,
            [
                Truth::Located,
                Truth::Relocated,
                Truth::Proxied,
                Truth::Frankenstein,
                Truth::Relocated
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let unknown_site =
            format!("{BASE}\n[[responder]]\nname = \"a\"\nclaim = \"nowhere\"\nsite = \"fra\"\n");
        let e = err(&unknown_site);
        assert!(
            e.contains(&line(&unknown_site, "nowhere")) && e.contains("unknown site \"nowhere\""),
            "{e}"
        );

        let unknown_key = format!(
            "{BASE}\n[[responder]]\nname = \"a\"\nclaim = \"fra\"\nsite = \"fra\"\ncolour = 1\n"
        );
        let e = err(&unknown_key);
        assert!(
            e.contains("unknown field `colour`") && e.contains(&line(&unknown_key, "colour")),
            "{e}"
        );

        let bad_rate = format!("[settings]\nrate_hz = -3\n{BASE}\n[[responder]]\nname = \"a\"\nclaim = \"fra\"\nsite = \"fra\"\n");
        let e = err(&bad_rate);
        assert!(
            e.contains(&line(&bad_rate, "rate_hz")) && e.contains("rate_hz"),
            "{e}"
        );

        let late_move = format!(
            "{BASE}\n[[responder]]\nname = \"a\"\nclaim = \"fra\"\nsite = \"fra\"\nmove_to = \"ams\"\nmove_after_s = 99\n"
        );
        let e = err(&late_move);
        assert!(
            e.contains(&line(&late_move, "move_after_s")) && e.contains("inside the run"),
            "{e}"
        );

        let twice = format!("{BASE}\n[[site]]\nname = \"fra\"\nlat = 1\nlon = 1\n");
        assert!(err(&twice).contains("defined twice"));
        assert!(
            err("[[site]]\nname = \"x\"\nlat = 1\nlon = 1\n").contains("at least one [[prober]]")
        );
        assert!(err("this is not toml").contains("t.toml"));
    }
}
