//! Lab scenarios: sites, probers, anchors and responders (honest or attackers), from TOML.
//!
//! Unknown keys, unknown site names and impossible settings are errors naming the line.
//! Truth is derived from what a responder does, never declared: the network knobs (per-path
//! inflation, route changes, heavy-tailed jitter, landmarks) shape delays only.

use std::collections::HashSet;
use std::ops::Range;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
    #[serde(default, rename = "path")]
    paths: Vec<Spanned<RawPath>>,
    #[serde(default, rename = "event")]
    events: Vec<Spanned<RawEvent>>,
    #[serde(default, rename = "landmark")]
    landmarks: Vec<Spanned<RawSiteRef>>,
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
    /// σ of the lognormal per-path inflation drawn (seeded) around `inflation`, clipped to
    /// [`INFLATION_CLIP`]; absent: every path has `inflation`.
    #[serde(default)]
    pub(crate) inflation_spread: Option<Spanned<f64>>,
    /// Pareto shape α of heavy-tailed jitter (scale `jitter_us`); absent: uniform jitter.
    #[serde(default)]
    pub(crate) jitter_tail: Option<Spanned<f64>>,
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
            inflation_spread: None,
            jitter_tail: None,
        }
    }
}

/// Drawn per-path inflations stay within this range: no path beats fiber's straight line, and
/// 4x covers the worst detours measured between cities.
pub(crate) const INFLATION_CLIP: (f64, f64) = (1.0, 4.0);

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPath {
    between: Spanned<Vec<Spanned<String>>>,
    inflation: Spanned<f64>,
    #[serde(default)]
    one_way: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at_s: Spanned<f64>,
    between: Spanned<Vec<Spanned<String>>>,
    inflation: Spanned<f64>,
    #[serde(default)]
    one_way: bool,
}

/// A fixed inflation on the path between two sites (`from` → `to`, and back unless one-way).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PathRule {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) inflation: f64,
    pub(crate) one_way: bool,
}

impl PathRule {
    fn applies(&self, a: usize, b: usize) -> bool {
        (self.from, self.to) == (a, b) || (!self.one_way && (self.from, self.to) == (b, a))
    }
}

/// A route change: from `at_s` seconds into the run the path has `rule.inflation`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RouteEvent {
    pub(crate) at_s: f64,
    pub(crate) rule: PathRule,
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
    pub(crate) sites: Vec<Site>,
    /// Site index of each prober.
    pub(crate) probers: Vec<usize>,
    /// Site index of each anchor.
    pub(crate) anchors: Vec<usize>,
    pub(crate) responders: Vec<Responder>,
    /// σ of the drawn per-path inflation (0: none).
    pub(crate) inflation_spread: f64,
    /// Pareto shape of the jitter (None: uniform).
    pub(crate) jitter_tail: Option<f64>,
    /// `[[path]]` overrides, in file order (a later one wins).
    pub(crate) paths: Vec<PathRule>,
    /// `[[event]]` route changes, by time.
    pub(crate) events: Vec<RouteEvent>,
    /// Site index of each landmark responder.
    pub(crate) landmarks: Vec<usize>,
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
        if let Some(spread) = &s.inflation_spread {
            check_range(spread, 0.0, 1.0, "inflation_spread", &invalid)?;
        }
        if let Some(tail) = &s.jitter_tail {
            check_range(tail, 1.0, 10.0, "jitter_tail", &invalid)?;
        }

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
            ("path", raw.paths.len()),
            ("event", raw.events.len()),
            ("landmark", raw.landmarks.len()),
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

        let landmarks = raw
            .landmarks
            .iter()
            .map(|l| find(&l.get_ref().site))
            .collect::<Result<Vec<_>, _>>()?;
        let pair = |between: &Spanned<Vec<Spanned<String>>>| match between.get_ref().as_slice() {
            [a, b] => {
                let (a, b) = (find(a)?, find(b)?);
                if a == b {
                    return Err(invalid(
                        between.span(),
                        "between names one site twice: a path joins two sites".to_string(),
                    ));
                }
                Ok((a, b))
            }
            other => Err(invalid(
                between.span(),
                format!("between needs two site names, found {}", other.len()),
            )),
        };
        let mut paths = Vec::new();
        for p in &raw.paths {
            let p = p.get_ref();
            check_range(&p.inflation, 1.0, 10.0, "inflation", &invalid)?;
            let (from, to) = pair(&p.between)?;
            paths.push(PathRule {
                from,
                to,
                inflation: *p.inflation.get_ref(),
                one_way: p.one_way,
            });
        }
        let mut events = Vec::new();
        for e in &raw.events {
            let e = e.get_ref();
            let t = *e.at_s.get_ref();
            if !(t > 0.0 && t < *s.duration_s.get_ref()) {
                return Err(invalid(
                    e.at_s.span(),
                    format!("at_s = {t} must lie inside the run (0 < t < duration_s)"),
                ));
            }
            check_range(&e.inflation, 1.0, 10.0, "inflation", &invalid)?;
            let (from, to) = pair(&e.between)?;
            events.push(RouteEvent {
                at_s: t,
                rule: PathRule {
                    from,
                    to,
                    inflation: *e.inflation.get_ref(),
                    one_way: e.one_way,
                },
            });
        }
        // Stable: events at one time apply in file order.
        events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));

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
            sites,
            probers,
            anchors,
            responders,
            inflation_spread: s.inflation_spread.as_ref().map_or(0.0, |x| *x.get_ref()),
            jitter_tail: s.jitter_tail.as_ref().map(|x| *x.get_ref()),
            paths,
            events,
            landmarks,
        })
    }

    /// Path inflation from site `a` to site `b`, `t_s` seconds into the run: the latest route
    /// event before `t_s` on that path, else its `[[path]]` override, else the drawn (or the
    /// run-wide) inflation.
    pub(crate) fn inflation_at(&self, a: usize, b: usize, t_s: f64) -> f64 {
        if let Some(e) = self
            .events
            .iter()
            .rev()
            .find(|e| e.at_s <= t_s && e.rule.applies(a, b))
        {
            return e.rule.inflation;
        }
        if let Some(p) = self.paths.iter().rev().find(|p| p.applies(a, b)) {
            return p.inflation;
        }
        self.drawn_inflation(a, b)
    }

    /// Seconds into the run at which some path's delay may change (route events, moves).
    pub(crate) fn change_times(&self) -> Vec<f64> {
        let mut t: Vec<f64> = self.events.iter().map(|e| e.at_s).collect();
        t.extend(self.responders.iter().filter_map(|r| r.moves.map(|m| m.1)));
        t.sort_by(f64::total_cmp);
        t.dedup();
        t
    }

    /// The seeded per-path inflation: lognormal with median `inflation` and σ
    /// `inflation_spread`, clipped to [`INFLATION_CLIP`]; one draw per pair of sites, the same
    /// both ways.
    fn drawn_inflation(&self, a: usize, b: usize) -> f64 {
        if self.inflation_spread == 0.0 {
            return self.inflation;
        }
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let mut rng =
            StdRng::seed_from_u64(splitmix(self.seed ^ PATH_STREAM ^ splitmix(lo << 32 | hi)));
        // Box-Muller: one standard normal from two uniforms in (0, 1].
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (self.inflation * (self.inflation_spread * z).exp())
            .clamp(INFLATION_CLIP.0, INFLATION_CLIP.1)
    }
}

/// Sets the per-path inflation draws apart from the relay's jitter stream.
const PATH_STREAM: u64 = 0x7061_7468_7300_0001;

/// SplitMix64's finaliser: spreads nearby seeds (pairs of small indices) over the whole range.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
        // Issue 19: per-path spread, a route change and a landmark at the claimed site.
        assert!(s.inflation_spread > 0.0);
        assert_eq!(s.events.len(), 1);
        let claim = s.responders[0].claim;
        assert_eq!(s.landmarks, [claim]);
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

    const ONE: &str = "\n[[responder]]\nname = \"a\"\nclaim = \"fra\"\nsite = \"fra\"\n";

    fn with_sites(extra: &str) -> String {
        format!("{BASE}\n[[site]]\nname = \"waw\"\nlat = 52.23\nlon = 21.01\n{ONE}{extra}")
    }

    fn idx(s: &Scenario, name: &str) -> usize {
        s.sites.iter().position(|x| x.name == name).unwrap()
    }

    #[test]
    fn network_keys_parse_and_shape_inflation() {
        let text = format!(
            "[settings]\ninflation = 1.5\ninflation_spread = 0.3\njitter_tail = 1.5\n{}",
            with_sites(
                r#"
[[path]]
between = ["ams", "fra"]
inflation = 1.1

[[path]]
between = ["waw", "fra"]
inflation = 2.8
one_way = true

[[event]]
at_s = 8
between = ["fra", "ams"]
inflation = 3.0

[[landmark]]
site = "fra"
"#
            )
        );
        let s = Scenario::parse(&text, "t").unwrap();
        let (fra, ams, waw) = (idx(&s, "fra"), idx(&s, "ams"), idx(&s, "waw"));
        assert_eq!(s.jitter_tail, Some(1.5));
        assert_eq!(s.landmarks, [fra]);
        // The override holds both ways until the route change, which also holds both ways.
        assert_eq!(s.inflation_at(ams, fra, 0.0), 1.1);
        assert_eq!(s.inflation_at(fra, ams, 7.9), 1.1);
        assert_eq!(s.inflation_at(ams, fra, 8.0), 3.0);
        assert_eq!(s.inflation_at(fra, ams, 19.0), 3.0);
        // one_way: only waw → fra; the way back keeps its drawn inflation.
        assert_eq!(s.inflation_at(waw, fra, 0.0), 2.8);
        let back = s.inflation_at(fra, waw, 0.0);
        assert_ne!(back, 2.8);
        assert!(
            (INFLATION_CLIP.0..=INFLATION_CLIP.1).contains(&back),
            "{back}"
        );
        assert_eq!(s.change_times(), [8.0]);
        // Truth does not see the network.
        assert_eq!(s.responders[0].truth(), Truth::Located);
    }

    #[test]
    fn drawn_inflation_is_seeded_per_path_symmetric_and_clipped() {
        let draw = |seed: u64, spread: f64| {
            let text = format!(
                "[settings]\nseed = {seed}\ninflation_spread = {spread}\n{}",
                with_sites("")
            );
            let s = Scenario::parse(&text, "t").unwrap();
            let n = s.sites.len();
            let mut v = Vec::new();
            for a in 0..n {
                for b in 0..n {
                    if a != b {
                        assert_eq!(s.inflation_at(a, b, 0.0), s.inflation_at(b, a, 0.0));
                        v.push(s.inflation_at(a, b, 0.0));
                    }
                }
            }
            v
        };
        let a = draw(3, 0.4);
        assert_eq!(a, draw(3, 0.4), "one seed, one network");
        assert_ne!(a, draw(4, 0.4), "another seed, another network");
        assert!(a.iter().any(|x| *x != a[0]), "paths differ: {a:?}");
        assert!(a.iter().all(|x| (1.0..=4.0).contains(x)), "{a:?}");
        // No spread: the run-wide inflation everywhere.
        assert!(draw(3, 0.0).iter().all(|x| *x == 1.5));
        // A wide spread hits both clips over many sites' worth of draws.
        let mut wide = Vec::new();
        for seed in 0..40 {
            wide.extend(draw(seed, 1.0));
        }
        assert!(wide.contains(&1.0) && wide.contains(&4.0), "{wide:?}");
    }

    #[test]
    fn bad_network_keys_name_the_line() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[settings]\ninflation_spread = 2\n",
                "inflation_spread",
                "inflation_spread = 2 is outside",
            ),
            (
                "[settings]\njitter_tail = 0.5\n",
                "jitter_tail",
                "jitter_tail = 0.5 is outside",
            ),
            (
                "\n[[path]]\nbetween = [\"fra\", \"nowhere\"]\ninflation = 1.2\n",
                "nowhere",
                "unknown site \"nowhere\"",
            ),
            (
                "\n[[path]]\nbetween = [\"fra\"]\ninflation = 1.2\n",
                "between",
                "two site names, found 1",
            ),
            (
                "\n[[path]]\nbetween = [\"fra\", \"fra\"]\ninflation = 1.2\n",
                "between",
                "one site twice",
            ),
            (
                "\n[[path]]\nbetween = [\"fra\", \"ams\"]\ninflation = 0.9\n",
                "0.9",
                "inflation = 0.9 is outside",
            ),
            (
                "\n[[path]]\nbetween = [\"fra\", \"ams\"]\ninflation = 1.2\nlatency = 3\n",
                "latency",
                "unknown field `latency`",
            ),
            (
                "\n[[event]]\nat_s = 99\nbetween = [\"fra\", \"ams\"]\ninflation = 1.2\n",
                "at_s",
                "inside the run",
            ),
            (
                "\n[[event]]\nat_s = 3\nbetween = [\"fra\", \"ams\"]\ninflation = 11\n",
                "= 11",
                "inflation = 11 is outside",
            ),
            (
                "\n[[landmark]]\nsite = \"atlantis\"\n",
                "atlantis",
                "unknown site \"atlantis\"",
            ),
            (
                "\n[[landmark]]\nsite = \"fra\"\nkey = 1\n",
                "key",
                "unknown field `key`",
            ),
        ];
        for (extra, needle, message) in cases {
            // Settings go first, tables after the base.
            let text = if extra.starts_with("[settings]") {
                format!("{extra}{}", with_sites(""))
            } else {
                with_sites(extra)
            };
            let e = err(&text);
            assert!(
                e.contains(&line(&text, needle)) && e.contains(message),
                "{extra:?}: {e}"
            );
        }
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
