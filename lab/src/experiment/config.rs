//! Experiment files (TOML): a base world (a lab scenario or inline sites), the delay model,
//! sweep axes and repetitions, validated once into an [`Experiment`]. Errors name the line.

use std::ops::Range;
use std::path::{Path, PathBuf};

use locus_analysis::Policy;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::toml_span::{check_range, line_of};

/// The attacks an experiment can sweep (honest trials are always run: they give the FPR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// A node at the claim (truth `located`).
    Honest,
    /// A relay at the claim forwards to a TD `distance_km` away.
    Proxy,
    /// The TD runs at the claim, its vTPM `distance_km` away.
    Frankenstein,
    /// The TD moves from the claim to a point `distance_km` away half-way through the window.
    Relocation,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Honest => "honest",
            Kind::Proxy => "proxy",
            Kind::Frankenstein => "frankenstein",
            Kind::Relocation => "relocation",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Honest,
            Kind::Proxy,
            Kind::Frankenstein,
            Kind::Relocation,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// What the lab's truth derivation calls a node of this kind.
    pub(crate) fn truth(self) -> &'static str {
        match self {
            Kind::Honest => "located",
            Kind::Proxy => "proxied",
            Kind::Frankenstein => "frankenstein",
            Kind::Relocation => "relocated",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    experiment: RawSettings,
    base: RawBase,
    #[serde(default)]
    model: Model,
    #[serde(default)]
    emulation: Option<EmulationError>,
    sweep: RawSweep,
    /// Verdict policy overrides (the schema of `config/policy.example.toml`).
    #[serde(default)]
    policy: Option<Spanned<Policy>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    name: String,
    #[serde(default)]
    description: String,
    seed: u64,
    /// Trials per attacker point.
    reps: Spanned<u64>,
    /// Honest trials per point of the other axes (default: `reps`).
    honest_reps: Option<Spanned<u64>>,
    /// Probing window per trial, seconds (default: the base scenario's `duration_s`, else 20).
    duration_s: Option<Spanned<f64>>,
    /// Only "simulation" is implemented (see the module doc of `sim`).
    #[serde(default = "d_mode")]
    mode: Spanned<String>,
}

fn d_mode() -> Spanned<String> {
    Spanned::new(0..0, "simulation".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBase {
    /// A lab scenario (`locus lab --scenario`), relative to the experiment file.
    scenario: Option<Spanned<String>>,
    /// The claimed site (a site name).
    claim: Spanned<String>,
    #[serde(default)]
    site: Vec<SiteDef>,
    #[serde(default)]
    prober: Vec<Spanned<SiteRef>>,
    #[serde(default)]
    anchor: Vec<Spanned<SiteRef>>,
}

/// The parts of a lab scenario an experiment uses (settings give axis defaults; responders
/// are ignored: the experiment places its own nodes; the scenario's network knobs — `[[path]]`,
/// `[[event]]`, `[[landmark]]` — are the lab's, the experiment has its own `[model]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabFile {
    #[serde(default)]
    settings: LabSettings,
    #[serde(default)]
    site: Vec<SiteDef>,
    #[serde(default)]
    prober: Vec<Spanned<SiteRef>>,
    #[serde(default)]
    anchor: Vec<Spanned<SiteRef>>,
    #[serde(default)]
    responder: Vec<toml::Value>,
    #[serde(default)]
    path: Vec<toml::Value>,
    #[serde(default)]
    event: Vec<toml::Value>,
    #[serde(default)]
    landmark: Vec<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct LabSettings {
    duration_s: Option<f64>,
    inflation: Option<f64>,
    jitter_us: Option<f64>,
    rate_hz: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteDef {
    pub(crate) name: String,
    pub(crate) lat: f64,
    pub(crate) lon: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteRef {
    site: Spanned<String>,
}

/// The delay model of the simulation beyond fiber × inflation and jitter. Defaults are
/// calibrated against a `locus lab` run of the built-in scenario (see `docs/experiment.md`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Model {
    /// Fixed part of every echo RTT (processing, loopback, relay), µs.
    pub(crate) floor_us: f64,
    /// Mean of the exponential host-noise tail added to every echo RTT, µs.
    pub(crate) noise_mean_us: f64,
    /// Fixed part of an in-TD TLS round trip to an anchor, µs.
    pub(crate) anchor_floor_us: f64,
    /// Anchor round trips per evidence answer (the minimum is reported).
    pub(crate) anchor_round_trips: u32,
    /// Fixed part of a local vTPM command round trip, µs.
    pub(crate) vtpm_local_us: f64,
    /// vTPM command round trips per evidence answer (the minimum is reported).
    pub(crate) vtpm_cmds: u32,
    /// Fraction of the window after which a relocating node moves.
    pub(crate) move_at_frac: f64,
    /// Realistic model (issue 19), all off by default. Per-path inflation drawn lognormal
    /// around the point's inflation with this σ (0: every path at the point's inflation).
    pub(crate) inflation_sigma: f64,
    /// Drawn inflations are clipped to `inflation_min..=inflation_max`.
    pub(crate) inflation_min: f64,
    /// See `inflation_min`.
    pub(crate) inflation_max: f64,
    /// Pareto (Lomax) shape of a heavy-tailed jitter with scale `jitter_us` per packet and
    /// direction, in place of the uniform one (0: uniform).
    pub(crate) jitter_tail: f64,
    /// Probability that a prober's path changes route at a uniformly random time within the
    /// window (10-90 %), for the node and a landmark alike.
    pub(crate) route_change_prob: f64,
    /// σ of the lognormal factor a route change multiplies the path's inflation by (clipped).
    pub(crate) route_change_sigma: f64,
    /// Honest nodes (and the TDs of Frankenstein and relocating nodes before they move) sit
    /// uniformly within this many km of the claimed site's point (0: at the point).
    pub(crate) metro_km: f64,
    /// A landmark at the claimed site's point, measured by every prober through the same paths
    /// (the same route changes) over the window; its minimum RTT goes to `World::landmarks`.
    pub(crate) landmark_at_claim: bool,
    /// Each endpoint (node, landmark) adds its own fixed host delay, uniform in 0..this, µs.
    pub(crate) host_spread_us: f64,
    /// The node's anchor minima from an earlier window go to the engine
    /// (`NodeInput::anchor_history`): taken where the TD was then (a relocating TD before its
    /// move), over a route to the anchor that changed since with `route_change_prob`. Left
    /// out of the fingerprint when off, so older experiment directories still resume.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) anchor_history: bool,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            floor_us: 80.0,
            noise_mean_us: 250.0,
            anchor_floor_us: 80.0,
            anchor_round_trips: 5,
            vtpm_local_us: 60.0,
            vtpm_cmds: 5,
            move_at_frac: 0.5,
            inflation_sigma: 0.0,
            inflation_min: 1.1,
            inflation_max: 3.0,
            jitter_tail: 0.0,
            route_change_prob: 0.0,
            route_change_sigma: 0.3,
            metro_km: 0.0,
            landmark_at_claim: false,
            host_spread_us: 0.0,
            anchor_history: false,
        }
    }
}

/// The emulation's measured delay error, from a `locus lab` report (`emulation` block).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmulationError {
    pub(crate) delay_error_p90_us: f64,
    pub(crate) delay_error_p99_us: f64,
    /// Where the numbers come from (which lab run).
    pub(crate) source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    kinds: Spanned<Vec<String>>,
    distance_km: Spanned<Vec<f64>>,
    jitter_us: Option<Spanned<Vec<f64>>>,
    probers: Option<Spanned<Vec<u64>>>,
    samples_per_round: Option<Spanned<Vec<u64>>>,
    inflation: Option<Spanned<Vec<f64>>>,
}

/// A validated experiment.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub name: String,
    pub(crate) description: String,
    pub seed: u64,
    pub(crate) reps: u64,
    pub(crate) honest_reps: u64,
    pub(crate) duration_s: f64,
    pub(crate) claim: String,
    pub(crate) sites: Vec<SiteDef>,
    /// Site index of each prober (the first `probers` of them take part in a point).
    pub(crate) probers: Vec<usize>,
    pub(crate) anchors: Vec<usize>,
    pub(crate) model: Model,
    pub(crate) emulation: Option<EmulationError>,
    pub(crate) kinds: Vec<Kind>,
    pub(crate) distance_km: Vec<f64>,
    pub(crate) jitter_us: Vec<f64>,
    pub(crate) n_probers: Vec<usize>,
    pub(crate) samples_per_round: Vec<u64>,
    pub(crate) inflation: Vec<f64>,
    pub(crate) policy: Policy,
}

impl Experiment {
    pub(crate) fn claim_index(&self) -> usize {
        self.sites
            .iter()
            .position(|s| s.name == self.claim)
            .unwrap_or(0)
    }
}

/// An experiment file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or not this schema (unknown key, wrong type); the message names the line.
    #[error("{origin}: {err}")]
    Syntax {
        origin: String,
        err: toml::de::Error,
    },
    #[error("{origin}, line {line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Other { origin: String, message: String },
}

const MAX_TRIALS: u64 = 20_000_000;

impl Experiment {
    /// Reads and validates an experiment file; a base scenario path is resolved relative to it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Other {
            origin: origin.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &origin, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses experiment text; `dir` resolves the base scenario path.
    pub(crate) fn parse(text: &str, origin: &str, dir: &Path) -> Result<Self, ConfigError> {
        let raw: RawExperiment = toml::from_str(text).map_err(|err| ConfigError::Syntax {
            origin: origin.to_string(),
            err,
        })?;
        let invalid = |span: Range<usize>, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            line: line_of(text, span.start),
            message,
        };

        // --- base world: a lab scenario, inline entries, or both (inline ones are added)
        let mut sites: Vec<SiteDef> = Vec::new();
        let mut prober_refs: Vec<(String, String, usize)> = Vec::new(); // (site, origin, line)
        let mut anchor_refs: Vec<(String, String, usize)> = Vec::new();
        let mut lab = LabSettings::default();
        if let Some(sc) = &raw.base.scenario {
            let p: PathBuf = dir.join(sc.get_ref());
            let sc_origin = p.display().to_string();
            let sc_text = std::fs::read_to_string(&p).map_err(|e| {
                invalid(sc.span(), format!("cannot read scenario {sc_origin}: {e}"))
            })?;
            let file: LabFile = toml::from_str(&sc_text).map_err(|err| ConfigError::Syntax {
                origin: sc_origin.clone(),
                err,
            })?;
            // parsed so that a typo in them still fails, but not used here
            let _ = (file.responder.len(), file.path.len(), file.event.len());
            let _ = file.landmark.len();
            sites.extend(file.site);
            for r in &file.prober {
                prober_refs.push((
                    r.get_ref().site.get_ref().clone(),
                    sc_origin.clone(),
                    line_of(&sc_text, r.span().start),
                ));
            }
            for r in &file.anchor {
                anchor_refs.push((
                    r.get_ref().site.get_ref().clone(),
                    sc_origin.clone(),
                    line_of(&sc_text, r.span().start),
                ));
            }
            lab = file.settings;
        }
        sites.extend(raw.base.site.iter().cloned());
        for r in &raw.base.prober {
            prober_refs.push((
                r.get_ref().site.get_ref().clone(),
                origin.to_string(),
                line_of(text, r.span().start),
            ));
        }
        for r in &raw.base.anchor {
            anchor_refs.push((
                r.get_ref().site.get_ref().clone(),
                origin.to_string(),
                line_of(text, r.span().start),
            ));
        }
        for (i, s) in sites.iter().enumerate() {
            if sites[..i].iter().any(|o| o.name == s.name) {
                return Err(ConfigError::Other {
                    origin: origin.to_string(),
                    message: format!("site {:?} is defined twice", s.name),
                });
            }
            if !(-90.0..=90.0).contains(&s.lat) || !(-180.0..=180.0).contains(&s.lon) {
                return Err(ConfigError::Other {
                    origin: origin.to_string(),
                    message: format!("site {:?} has impossible coordinates", s.name),
                });
            }
        }
        let find = |name: &str, at: &str, line: usize| {
            sites
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| ConfigError::Invalid {
                    origin: at.to_string(),
                    line,
                    message: format!("unknown site {name:?}"),
                })
        };
        let probers = prober_refs
            .iter()
            .map(|(s, o, l)| find(s, o, *l))
            .collect::<Result<Vec<_>, _>>()?;
        let anchors = anchor_refs
            .iter()
            .map(|(s, o, l)| find(s, o, *l))
            .collect::<Result<Vec<_>, _>>()?;
        let claim = raw.base.claim.get_ref().clone();
        if !sites.iter().any(|s| s.name == claim) {
            return Err(invalid(
                raw.base.claim.span(),
                format!("unknown site {claim:?} (claim)"),
            ));
        }
        if probers.is_empty() {
            return Err(ConfigError::Other {
                origin: origin.to_string(),
                message: "the base world has no prober ([[base.prober]] or a scenario)".into(),
            });
        }

        // --- settings
        let s = &raw.experiment;
        let reps = *s.reps.get_ref();
        if !(1..=1_000_000).contains(&reps) {
            return Err(invalid(
                s.reps.span(),
                format!("reps = {reps} is outside 1..=1000000"),
            ));
        }
        let honest_reps = match &s.honest_reps {
            Some(h) if !(1..=1_000_000).contains(h.get_ref()) => {
                return Err(invalid(
                    h.span(),
                    format!("honest_reps = {} is outside 1..=1000000", h.get_ref()),
                ))
            }
            Some(h) => *h.get_ref(),
            None => reps,
        };
        let duration_s = match &s.duration_s {
            Some(d) => {
                check_range(d, 1.0, 3600.0, "duration_s", &invalid)?;
                *d.get_ref()
            }
            None => lab.duration_s.unwrap_or(20.0),
        };
        if s.mode.get_ref() != "simulation" {
            return Err(invalid(
                s.mode.span(),
                format!(
                    "mode = {:?}: only \"simulation\" is implemented (sweeps through the full \
                     emulation take ~35 s per point; see docs/experiment.md)",
                    s.mode.get_ref()
                ),
            ));
        }
        let name_ok = !s.name.is_empty()
            && s.name.len() <= 64
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(ConfigError::Other {
                origin: origin.to_string(),
                message: format!("experiment name {:?}: use 1-64 of [A-Za-z0-9_-]", s.name),
            });
        }

        // --- model
        let m = &raw.model;
        for (field, v) in [
            ("floor_us", m.floor_us),
            ("noise_mean_us", m.noise_mean_us),
            ("anchor_floor_us", m.anchor_floor_us),
            ("vtpm_local_us", m.vtpm_local_us),
            ("host_spread_us", m.host_spread_us),
        ] {
            if !(v.is_finite() && (0.0..=1e6).contains(&v)) {
                return Err(ConfigError::Other {
                    origin: origin.to_string(),
                    message: format!("model.{field} = {v} is outside 0..=1000000 µs"),
                });
            }
        }
        let realistic_ok = (0.0..=2.0).contains(&m.inflation_sigma)
            && (0.0..=2.0).contains(&m.route_change_sigma)
            && (0.0..=1.0).contains(&m.route_change_prob)
            && (m.jitter_tail == 0.0 || (1.01..=10.0).contains(&m.jitter_tail))
            && (0.0..=1000.0).contains(&m.metro_km)
            && m.inflation_min >= 1.0
            && m.inflation_max >= m.inflation_min
            && m.inflation_max <= 10.0;
        if !realistic_ok {
            return Err(ConfigError::Other {
                origin: origin.to_string(),
                message: "model: inflation_sigma and route_change_sigma in 0..=2, \
                          route_change_prob in 0..=1, jitter_tail 0 or 1.01..=10, metro_km in \
                          0..=1000, 1 ≤ inflation_min ≤ inflation_max ≤ 10"
                    .into(),
            });
        }
        if m.anchor_round_trips == 0
            || m.vtpm_cmds == 0
            || !(m.move_at_frac > 0.0 && m.move_at_frac < 1.0)
        {
            return Err(ConfigError::Other {
                origin: origin.to_string(),
                message:
                    "model: anchor_round_trips and vtpm_cmds must be ≥ 1, move_at_frac in (0, 1)"
                        .into(),
            });
        }

        // --- axes
        let w = &raw.sweep;
        let mut kinds = Vec::new();
        for k in w.kinds.get_ref() {
            match Kind::parse(k) {
                Some(Kind::Honest) | None => {
                    return Err(invalid(
                        w.kinds.span(),
                        format!(
                            "unknown attacker kind {k:?}: use proxy, frankenstein, relocation \
                             (honest trials always run)"
                        ),
                    ))
                }
                Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
                Some(_) => {}
            }
        }
        if kinds.is_empty() {
            return Err(invalid(w.kinds.span(), "kinds is empty".into()));
        }
        let distance_km = floats(&w.distance_km, 0.0, 20_000.0, "distance_km", &invalid)?;
        let jitter_us = match &w.jitter_us {
            Some(v) => floats(v, 0.0, 100_000.0, "jitter_us", &invalid)?,
            None => vec![lab.jitter_us.unwrap_or(50.0)],
        };
        let inflation = match &w.inflation {
            Some(v) => floats(v, 1.0, 10.0, "inflation", &invalid)?,
            None => vec![lab.inflation.unwrap_or(1.5)],
        };
        let n_probers: Vec<usize> = match &w.probers {
            Some(v) => ints(v, 1, probers.len() as u64, "probers", &invalid)?
                .into_iter()
                .map(|x| x as usize)
                .collect(),
            None => vec![probers.len()],
        };
        let samples_per_round = match &w.samples_per_round {
            Some(v) => ints(v, 1, 2000, "samples_per_round", &invalid)?,
            None => vec![lab.rate_hz.unwrap_or(50.0).round().max(1.0) as u64],
        };

        let policy = match &raw.policy {
            Some(p) => {
                p.get_ref()
                    .validate()
                    .map_err(|e| invalid(p.span(), format!("policy: {e}")))?;
                p.get_ref().clone()
            }
            None => Policy::default(),
        };

        let others =
            (jitter_us.len() * inflation.len() * n_probers.len() * samples_per_round.len()) as u64;
        let trials = others * (kinds.len() as u64 * distance_km.len() as u64 * reps + honest_reps);
        if trials > MAX_TRIALS {
            return Err(ConfigError::Other {
                origin: origin.to_string(),
                message: format!("{trials} trials is more than {MAX_TRIALS}: shrink the sweep"),
            });
        }

        Ok(Experiment {
            name: s.name.clone(),
            description: s.description.clone(),
            seed: s.seed,
            reps,
            honest_reps,
            duration_s,
            claim,
            sites,
            probers,
            anchors,
            model: raw.model.clone(),
            emulation: raw.emulation.clone(),
            kinds,
            distance_km,
            jitter_us,
            n_probers,
            samples_per_round,
            inflation,
            policy,
        })
    }
}

/// A non-empty list of distinct values within `lo..=hi`, in the file's order.
fn floats(
    v: &Spanned<Vec<f64>>,
    lo: f64,
    hi: f64,
    name: &str,
    invalid: &impl Fn(Range<usize>, String) -> ConfigError,
) -> Result<Vec<f64>, ConfigError> {
    let xs = v.get_ref();
    if xs.is_empty() || xs.len() > 1000 {
        return Err(invalid(v.span(), format!("{name} needs 1..=1000 values")));
    }
    for (i, &x) in xs.iter().enumerate() {
        if !(x.is_finite() && (lo..=hi).contains(&x)) {
            return Err(invalid(
                v.span(),
                format!("{name}: {x} is outside {lo}..={hi}"),
            ));
        }
        if xs[..i].contains(&x) {
            return Err(invalid(v.span(), format!("{name}: {x} is listed twice")));
        }
    }
    Ok(xs.clone())
}

fn ints(
    v: &Spanned<Vec<u64>>,
    lo: u64,
    hi: u64,
    name: &str,
    invalid: &impl Fn(Range<usize>, String) -> ConfigError,
) -> Result<Vec<u64>, ConfigError> {
    let xs = v.get_ref();
    if xs.is_empty() || xs.len() > 1000 {
        return Err(invalid(v.span(), format!("{name} needs 1..=1000 values")));
    }
    for (i, &x) in xs.iter().enumerate() {
        if !(lo..=hi).contains(&x) {
            return Err(invalid(
                v.span(),
                format!("{name}: {x} is outside {lo}..={hi}"),
            ));
        }
        if xs[..i].contains(&x) {
            return Err(invalid(v.span(), format!("{name}: {x} is listed twice")));
        }
    }
    Ok(xs.clone())
}
