//! Fast simulation of one trial: draws the observations a lab run would make from the lab's
//! delay model and judges them with the verdict engine.
//!
//! Model (the lab's, `src/lab/geo.rs`): one-way delay = great-circle distance × inflation /
//! 200 km per ms, plus per packet and direction a jitter uniform in `0..=jitter_us`; every
//! echo RTT also carries a fixed floor (processing, loopback) and an exponential host-noise
//! tail, calibrated against the emulation (`Model`). No sockets, processes or clocks: a trial
//! is a pure function of the experiment, the point and its seed.

use locus_analysis::judge::geo::{destination, distance_km, LatLon};
use locus_analysis::{
    judge, AnchorReport, EchoSample, EvidenceSummary, InTdTimings, Judgement, LandmarkRtt,
    LandmarkSeries, NodeInput, Prober, ProberSeries, Site, World,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{Experiment, Kind, Model};

/// Echoes a prober sends the landmark over a window (its minimum is the landmark's RTT).
pub(crate) const LANDMARK_ECHOES: usize = 200;

/// One point of the sweep (all axes fixed).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub(crate) kind: Kind,
    /// Attacker distance (relay → TD, TD → vTPM, claim → new site); 0 for honest points.
    pub(crate) distance_km: f64,
    pub(crate) jitter_us: f64,
    pub(crate) probers: usize,
    pub(crate) samples_per_round: u64,
    pub(crate) inflation: f64,
}

impl Point {
    /// Stable key of the point (CSV, resume, seeds).
    pub(crate) fn key(&self) -> String {
        format!(
            "{}/d{}/j{}/p{}/s{}/i{}",
            self.kind.as_str(),
            self.distance_km,
            self.jitter_us,
            self.probers,
            self.samples_per_round,
            self.inflation
        )
    }
}

/// What one trial produced.
#[derive(Debug, Clone)]
pub(crate) struct TrialResult {
    pub(crate) judgement: Judgement,
    /// Seconds from the move to the end of the round CUSUM alarmed in (relocation only).
    pub(crate) latency_s: Option<f64>,
}

/// FNV-1a over the bytes, then splitmix64: a seed per (experiment seed, point, rep) that does
/// not depend on run order, so resumed and parallel runs draw the same numbers.
pub(crate) fn trial_seed(seed: u64, key: &str, rep: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed
        .to_le_bytes()
        .iter()
        .chain(key.as_bytes())
        .chain(&rep.to_le_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The verdict engine's world for a point: every site, the first `n` probers.
pub(crate) fn world(e: &Experiment, n: usize) -> World {
    World {
        sites: e
            .sites
            .iter()
            .map(|s| Site {
                name: s.name.clone(),
                lat: s.lat,
                lon: s.lon,
            })
            .collect(),
        probers: e.probers[..n.min(e.probers.len())]
            .iter()
            .enumerate()
            .map(|(i, &s)| Prober {
                id: prober_id(e, i, s),
                site: e.sites[s].name.clone(),
            })
            .collect(),
        landmarks: Vec::new(),
    }
}

fn prober_id(e: &Experiment, i: usize, site: usize) -> String {
    format!("p{i}-{}", e.sites[site].name)
}

fn pos(e: &Experiment, i: usize) -> LatLon {
    LatLon::new(e.sites[i].lat, e.sites[i].lon)
}

struct Draw<'a> {
    rng: StdRng,
    jitter_ms: f64,
    model: &'a Model,
}

impl Draw<'_> {
    /// One direction's jitter: uniform in 0..=jitter, or heavy-tailed (Lomax with the model's
    /// shape and scale `jitter`) when `model.jitter_tail` is set.
    fn jitter1(&mut self) -> f64 {
        if self.jitter_ms <= 0.0 {
            return 0.0;
        }
        if self.model.jitter_tail > 0.0 {
            let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
            return self.jitter_ms * (u.powf(-1.0 / self.model.jitter_tail) - 1.0);
        }
        self.rng.gen_range(0.0..=self.jitter_ms)
    }

    /// Both directions' jitter.
    fn jitter2(&mut self) -> f64 {
        if self.jitter_ms > 0.0 {
            self.jitter1() + self.jitter1()
        } else {
            0.0
        }
    }

    fn exp(&mut self, mean_ms: f64) -> f64 {
        if mean_ms <= 0.0 {
            return 0.0;
        }
        let u: f64 = self.rng.gen_range(0.0..1.0);
        -mean_ms * (1.0 - u).ln()
    }

    fn echo(&mut self, one_way_ms: f64) -> f64 {
        2.0 * one_way_ms
            + self.model.floor_us / 1e3
            + self.jitter2()
            + self.exp(self.model.noise_mean_us / 1e3)
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.gen_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// One path's inflation: the point's, or drawn lognormal around it (clipped).
    fn inflation(&mut self, median: f64) -> f64 {
        let m = self.model;
        if m.inflation_sigma <= 0.0 {
            return median;
        }
        (median * (m.inflation_sigma * self.normal()).exp()).clamp(m.inflation_min, m.inflation_max)
    }
}

/// One prober's path to the claimed metro over the window: its inflation, and after a route
/// change (at `change_s`) another.
#[derive(Debug, Clone, Copy)]
struct PathInfl {
    before: f64,
    after: f64,
    change_s: f64,
}

impl PathInfl {
    fn at(&self, t_s: f64) -> f64 {
        if t_s >= self.change_s {
            self.after
        } else {
            self.before
        }
    }
}

/// A point uniformly within `radius_km` of `c`.
fn in_metro(d: &mut Draw<'_>, c: LatLon, radius_km: f64) -> LatLon {
    if radius_km <= 0.0 {
        return c;
    }
    let bearing = d.rng.gen_range(0.0..360.0);
    let r = radius_km * d.rng.gen_range(0.0f64..1.0).sqrt();
    destination(c, bearing, r)
}

/// Runs one trial: draw, judge.
pub(crate) fn trial(
    e: &Experiment,
    world: &World,
    p: &Point,
    rep: u64,
    move_after_s: f64,
) -> TrialResult {
    let mut d = Draw {
        rng: StdRng::seed_from_u64(trial_seed(e.seed, &p.key(), rep)),
        jitter_ms: p.jitter_us / 1e3,
        model: &e.model,
    };
    let claim = pos(e, e.claim_index());
    // Where the attacker's far end is: a random bearing at `distance_km` from the claim.
    let bearing: f64 = d.rng.gen_range(0.0..360.0);
    let far = destination(claim, bearing, p.distance_km);
    let m = &e.model;
    // The realistic model's draws (none when it is off, so older experiments draw as before).
    let home = in_metro(&mut d, claim, m.metro_km);
    let duration_s = e.duration_s;
    let paths: Vec<PathInfl> = (0..p.probers)
        .map(|_| {
            let before = d.inflation(p.inflation);
            let mut path = PathInfl {
                before,
                after: before,
                change_s: f64::INFINITY,
            };
            if m.route_change_prob > 0.0 && d.rng.gen_range(0.0..1.0) < m.route_change_prob {
                path.change_s = duration_s * d.rng.gen_range(0.1..0.9);
                path.after = (before * (m.route_change_sigma * d.normal()).exp())
                    .clamp(m.inflation_min, m.inflation_max);
            }
            path
        })
        .collect();
    let far_infl = d.inflation(p.inflation);
    let anchor_infl = d.inflation(p.inflation);
    let host_ms = |d: &mut Draw<'_>| {
        if m.host_spread_us > 0.0 {
            d.rng.gen_range(0.0..=m.host_spread_us) / 1e3
        } else {
            0.0
        }
    };
    let node_host_ms = host_ms(&mut d);
    let ow = |a: LatLon, b: LatLon, infl: f64| distance_km(a, b) * infl / 200.0;
    let extra_ow = p.distance_km * far_infl / 200.0;

    let n = p.samples_per_round as usize;
    let rounds = e.duration_s.ceil() as usize;
    let step_ns = 1e9 / p.samples_per_round as f64;
    let mut probes = Vec::new();
    let mut landmarks = Vec::new();
    let mut landmark_series = Vec::new();
    for (i, &site) in e.probers[..p.probers].iter().enumerate() {
        let at = pos(e, site);
        let path = paths[i];
        let mut samples = Vec::with_capacity(n * rounds);
        // Once per prober, not per sample: the distances are the trial's hottest trigonometry.
        let (to_home, to_claim, to_far) = (ow(at, home, 1.0), ow(at, claim, 1.0), ow(at, far, 1.0));
        for k in 0..n * rounds {
            let t_s = k as f64 * step_ns / 1e9;
            let infl = path.at(t_s);
            let one_way = match p.kind {
                Kind::Honest | Kind::Frankenstein => to_home * infl,
                Kind::Proxy => to_claim * infl + extra_ow,
                // the far site is reached over the same backbone: the path keeps its inflation
                Kind::Relocation if t_s >= move_after_s => to_far * infl,
                Kind::Relocation => to_home * infl,
            };
            let rtt = d.echo(one_way) + node_host_ms;
            samples.push(EchoSample {
                sent_ns: (k as f64 * step_ns) as u64,
                rtt_ns: (rtt * 1e6) as u64,
                inside_ns: 0,
            });
        }
        probes.push(ProberSeries {
            prober: prober_id(e, i, site),
            sent: samples.len() as u64,
            samples,
            evidence_rtt_ns: Vec::new(),
            peer_spki: None,
        });
        if m.landmark_at_claim {
            // the prober measures the landmark through the window too (same routes)
            let lm_host = host_ms(&mut d);
            let total = (n * rounds).max(1);
            let echoes: Vec<EchoSample> = (0..LANDMARK_ECHOES)
                .map(|j| {
                    let sent = (j * total / LANDMARK_ECHOES) as f64 * step_ns;
                    let rtt = d.echo(ow(at, claim, path.at(sent / 1e9))) + lm_host;
                    EchoSample {
                        sent_ns: sent as u64,
                        rtt_ns: (rtt * 1e6) as u64,
                        inside_ns: 0,
                    }
                })
                .collect();
            let min = echoes.iter().map(|x| x.rtt_ns).min().unwrap_or(0);
            landmarks.push(LandmarkRtt {
                prober: prober_id(e, i, site),
                site: e.claim.clone(),
                min_rtt_ns: min,
            });
            landmark_series.push(LandmarkSeries {
                prober: prober_id(e, i, site),
                site: e.claim.clone(),
                samples: echoes,
            });
        }
    }

    // In-TD measurements, taken with the evidence at the end of the window.
    let td = match p.kind {
        Kind::Honest | Kind::Frankenstein => home,
        Kind::Proxy | Kind::Relocation => far,
    };
    // each anchor's minimum TLS round trip from a TD at `at` over a path inflated `infl`
    let anchor_reports = |d: &mut Draw<'_>, at: LatLon, infl: f64| -> Vec<AnchorReport> {
        (e.anchors.iter())
            .map(|&a| {
                let one_way = ow(at, pos(e, a), infl);
                let min = (0..e.model.anchor_round_trips)
                    .map(|_| 2.0 * one_way + e.model.anchor_floor_us / 1e3 + d.jitter2())
                    .fold(f64::INFINITY, f64::min);
                AnchorReport {
                    site: e.sites[a].name.clone(),
                    min_rtt_ns: (min * 1e6) as u64,
                    samples: e.model.anchor_round_trips,
                }
            })
            .collect()
    };
    let anchors = anchor_reports(&mut d, td, anchor_infl);
    let vtpm_ow = if p.kind == Kind::Frankenstein {
        extra_ow
    } else {
        0.0
    };
    let vtpm = (0..e.model.vtpm_cmds)
        .map(|_| 2.0 * vtpm_ow + e.model.vtpm_local_us / 1e3 + d.jitter2())
        .fold(f64::INFINITY, f64::min);
    // Drawn last, so that every other draw stays as it was without it.
    let mut anchor_history = Vec::new();
    if m.anchor_history {
        let then = match p.kind {
            Kind::Honest | Kind::Frankenstein | Kind::Relocation => home,
            Kind::Proxy => far,
        };
        let mut infl = anchor_infl;
        if m.route_change_prob > 0.0 && d.rng.gen_range(0.0..1.0) < m.route_change_prob {
            infl = (infl * (m.route_change_sigma * d.normal()).exp())
                .clamp(m.inflation_min, m.inflation_max);
        }
        anchor_history = anchor_reports(&mut d, then, infl);
    }
    let node = NodeInput {
        name: p.kind.as_str().into(),
        claim: e.claim.clone(),
        probes,
        in_td: InTdTimings {
            tpm_cmd_rtt_ns: vec![(vtpm * 1e6) as u64],
            ..InTdTimings::default()
        },
        anchors,
        landmark_series,
        anchor_history,
        // The simulation studies timing: evidence is valid and bound (a Frankenstein built
        // from two machines with the same image passes PCR equality; timing must catch it).
        evidence: Some(EvidenceSummary {
            valid: true,
            tdx_vtpm_bound: Some(true),
            ..EvidenceSummary::default()
        }),
        ..NodeInput::default()
    };
    let with_landmarks;
    let world = if landmarks.is_empty() {
        world
    } else {
        with_landmarks = World {
            landmarks,
            ..world.clone()
        };
        &with_landmarks
    };
    let judgement = judge(world, &node, &e.policy);
    let latency_s = match (p.kind, &judgement.relocation) {
        // seen only by the anchor: alerted with the evidence, at the window's end
        (Kind::Relocation, Some(r))
            if r.detected
                && r.new_position.is_none()
                && r.anchor_step.as_ref().is_some_and(|s| s.moved) =>
        {
            Some(duration_s - move_after_s)
        }
        (Kind::Relocation, Some(r)) if r.detected => r.change_round.map(|c| {
            let span_ms = (n * rounds).saturating_sub(1) as f64 * step_ns / 1e6;
            let rp = &e.policy.relocation;
            let round_ms = if rp.min_rounds > 0 && span_ms > 0.0 {
                rp.round_ms.min(span_ms / rp.min_rounds as f64)
            } else {
                rp.round_ms
            };
            (c + 1) as f64 * round_ms / 1e3 - move_after_s
        }),
        _ => None,
    };
    TrialResult {
        judgement,
        latency_s,
    }
}
