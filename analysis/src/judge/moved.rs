//! Is a change of several probers' RTTs one move of the node? The settled shifts of every
//! evaluated prober (alarming or not) must fit a single new position; independent route
//! changes on a few paths do not.

use super::bound::PHYSICS_MS_PER_KM;
use super::geo::{distance_km, LatLon};
use super::joint;
use crate::policy::Policy;

/// One prober's view of the suspected move.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shift {
    /// The prober's site.
    pub(crate) at: LatLon,
    /// Its baseline minimum RTT, ms.
    pub(crate) baseline_ms: f64,
    /// What a move from the claim must explain, ms: the step of its rounds across the onset;
    /// differenced, the level after it (the node's RTT less the landmark's at the claim), so
    /// that where the node sat in the metro before does not count as part of the move.
    pub(crate) shift_ms: f64,
    /// The step across the onset, ms: the prober sees the move when it exceeds the noise.
    pub(crate) step_ms: f64,
    /// Its CUSUM alarmed.
    pub(crate) alarmed: bool,
    /// `shift_ms` is a step of the node's rounds less a landmark's at the claim: a route
    /// change of the prober's path is not in it.
    pub(crate) differenced: bool,
    /// When its step happened: an interval of send times (ns) holding the instant with
    /// confidence 1 − [`INSTANT_ALPHA`]; None when its samples cannot time it.
    pub(crate) when_ns: Option<(f64, f64)>,
}

/// Chance that a step's true instant lies outside the interval [`change_instant`] gives.
const INSTANT_ALPHA: f64 = 1e-3;

/// When one prober's step of `step_ms` happened, near round `onset` (rounds of `round_ns`
/// counted from its first sample). Round trips never beat their path's floor, so with a step
/// up no sample after it falls below the midpoint: it came after the last one below, and
/// before the next one the pre-step samples would have put there (their rate below the
/// midpoint, measured just before, bounds how long none may come); a step down mirrors it.
/// A move shifts every path at one instant; route changes at independent ones.
pub(crate) fn change_instant(
    eff: &[(u64, f64)],
    round_ns: f64,
    onset: u64,
    step_ms: f64,
) -> Option<(f64, f64)> {
    let t0 = eff.iter().map(|e| e.0).min()?;
    let round = |t: u64| ((t - t0) as f64 / round_ns).floor() as i64;
    let o = onset as i64;
    let mut near: Vec<(u64, f64)> = (eff.iter())
        .filter(|e| (round(e.0) - o).abs() <= 3)
        .copied()
        .collect();
    near.sort_by_key(|e| e.0);
    let level = |lo: i64, hi: i64| {
        (near.iter())
            .filter(|e| (lo..=hi).contains(&(round(e.0) - o)))
            .map(|e| e.1)
            .collect::<Vec<f64>>()
    };
    let before = level(-3, -2);
    let floor = before.iter().copied().fold(f64::INFINITY, f64::min);
    if !floor.is_finite() && o <= 1 {
        // the step precedes the window (a baseline from history): some time before it
        return Some((f64::NEG_INFINITY, t0 as f64));
    }
    if !floor.is_finite() || near.len() < 2 {
        return None;
    }
    let mid = floor + step_ms / 2.0;
    let dt = (near[near.len() - 1].0 - near[0].0) as f64 / (near.len() - 1) as f64;
    // the rate of samples below the midpoint on the side that has them
    let side = if step_ms > 0.0 { before } else { level(2, 3) };
    let q = side.iter().filter(|x| **x < mid).count() as f64 / side.len().max(1) as f64;
    if q <= 0.0 {
        return None;
    }
    let gap = if q >= 1.0 {
        1.0
    } else {
        (INSTANT_ALPHA.ln() / (1.0 - q).ln()).ceil()
    } * dt;
    if step_ms > 0.0 {
        let last = near.iter().rev().find(|e| e.1 < mid)?;
        Some((last.0 as f64, last.0 as f64 + gap))
    } else {
        let first = near.iter().find(|e| e.1 < mid)?;
        Some((first.0 as f64 - gap, first.0 as f64))
    }
}

impl Shift {
    /// The shift a move from `from` to `to` predicts at this prober, at the path inflation its
    /// baseline shows (bounded by 1 and the policy's ceiling).
    fn predicted(&self, from: LatLon, to: LatLon, ceiling: f64) -> f64 {
        let d0 = distance_km(self.at, from);
        let infl = if d0 > 0.0 {
            (self.baseline_ms / (d0 * PHYSICS_MS_PER_KM)).clamp(1.0, ceiling)
        } else {
            ceiling
        };
        infl * PHYSICS_MS_PER_KM * (distance_km(self.at, to) - d0)
    }
}

/// How far a fit proves a move.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fit {
    /// At least `relocation.min_seen_probers` seen shifts fit this position at one instant:
    /// two shifts fit some position whatever they are, only a third tests the move against
    /// two coinciding route changes.
    Moved(LatLon),
    /// Only `relocation.min_seen_differenced` (fewer than `min_seen_probers`) seen shifts,
    /// all landmark-differenced, fit this position (indices into the shifts): the prober
    /// side's route changes cancel in them, but a route change at the node's datacentre
    /// towards those probers looks the same (REVIEW6 R3). Not a move by itself.
    Seen(LatLon, Vec<usize>),
}

/// What one position makes of the shifts, when they are consistent with it.
struct Tally {
    /// Alarming probers explained.
    explained: usize,
    /// Indices of the explained shifts above the noise, and how many are differenced.
    seen: Vec<usize>,
    seen_differenced: usize,
}

/// Do the shifts fit a move from `from` to `p`? Each shift may miss its prediction by
/// `relocation.fit_tolerance_ms` + `fit_tolerance_frac` of it; up to `outliers` alarming
/// probers may miss (their route changed as well), but only when their own step is within
/// the noise (`drift_ms`) at the move's instant or happened at another instant: a step that
/// misses at the same instant as the others refutes the move (a uniform step of every path
/// at the node's side is not a move, REVIEW6 R1). The seen steps (above the noise) must share
/// one instant ([`change_instant`]).
fn tally(
    shifts: &[Shift],
    from: LatLon,
    p: LatLon,
    outliers: usize,
    policy: &Policy,
) -> Option<Tally> {
    let (tol, frac) = (
        policy.relocation.fit_tolerance_ms,
        policy.relocation.fit_tolerance_frac,
    );
    let (ceiling, noise) = (policy.inflation_ceiling, policy.relocation.drift_ms);
    let mut t = Tally {
        explained: 0,
        seen: Vec::new(),
        seen_differenced: 0,
    };
    // the seen steps' instants must share one moment
    let (mut from_ns, mut to_ns) = (f64::NEG_INFINITY, f64::INFINITY);
    let mut missed = Vec::new();
    for (i, s) in shifts.iter().enumerate() {
        let want = s.predicted(from, p, ceiling);
        if (s.shift_ms - want).abs() > tol + frac * want.abs() {
            // only an alarming path may miss (its route changed as well); a path that stayed
            // put must fit, or two route changes would pass for a move
            if missed.len() >= outliers || !s.alarmed {
                return None;
            }
            missed.push(s);
            continue;
        }
        t.explained += usize::from(s.alarmed);
        // a differenced step its samples cannot time (too close to the noise) proves nothing
        // but refutes nothing either; a raw one may be a route change
        let untimed = s.differenced && s.when_ns.is_none();
        if s.step_ms.abs() > noise && !untimed {
            let (a, b) = s.when_ns.filter(|w| w.0.max(from_ns) <= w.1.min(to_ns))?;
            (from_ns, to_ns) = (from_ns.max(a), to_ns.min(b));
            t.seen.push(i);
            t.seen_differenced += usize::from(s.differenced);
        }
    }
    // a missed step above the noise is an outlier only when timed away from the move
    let elsewhere = |s: &Shift| {
        s.step_ms.abs() <= noise || s.when_ns.is_some_and(|w| w.1 < from_ns || w.0 > to_ns)
    };
    missed.into_iter().all(elsewhere).then_some(t)
}

/// Where the shifts put the node, and how far they prove a move: positions explaining every
/// prober first; only without any, with four or more probers, those missing one alarming
/// prober (see [`tally`]). At least `relocation.min_probers` alarming probers must be
/// explained. The position reported fits itself (the hit nearest the hits' centroid).
pub(crate) fn fit(shifts: &[Shift], from: LatLon, policy: &Policy) -> Option<Fit> {
    let radius = disc_radius(shifts, from)?;
    let r = &policy.relocation;
    let search = |ok: &dyn Fn(&Tally) -> bool| {
        let with = |outliers: usize| {
            move |p: LatLon| tally(shifts, from, p, outliers, policy).is_some_and(|t| ok(&t))
        };
        joint::search_fitting(from, radius, with(0)).or_else(|| {
            (shifts.len() >= 4).then(|| joint::search_fitting(from, radius, with(1)))?
        })
    };
    let moved = |t: &Tally| t.explained >= r.min_probers && t.seen.len() >= r.min_seen_probers;
    if let Some(at) = search(&moved) {
        return Some(Fit::Moved(at));
    }
    let seen = |t: &Tally| {
        t.explained >= r.min_probers
            && t.seen.len() == t.seen_differenced
            && t.seen.len() >= r.min_seen_differenced
    };
    let at = search(&seen)?;
    let outliers = usize::from(tally(shifts, from, at, 0, policy).is_none());
    let t = tally(shifts, from, at, outliers, policy)?;
    Some(Fit::Seen(at, t.seen))
}

/// A position at least `min_km` from `anchor` that every shift fits (no outlier), with at
/// least one alarming prober explained and one step above the noise: a prober step that the
/// TD's rise towards that anchor explains, the other probers consistent with it (REVIEW6 R2).
pub(crate) fn fit_away_from(
    shifts: &[Shift],
    from: LatLon,
    anchor: LatLon,
    min_km: f64,
    policy: &Policy,
) -> Option<LatLon> {
    let radius = disc_radius(shifts, from)?;
    joint::search_fitting(from, radius, |p| {
        distance_km(p, anchor) >= min_km
            && tally(shifts, from, p, 0, policy)
                .is_some_and(|t| t.explained >= 1 && !t.seen.is_empty())
    })
}

/// The new position is inside every prober's 2/3 c disc after the move.
fn disc_radius(shifts: &[Shift], from: LatLon) -> Option<f64> {
    let radius = (shifts.iter())
        .map(|s| distance_km(s.at, from) + (s.baseline_ms + s.shift_ms).max(0.0) * 100.0)
        .fold(f64::INFINITY, f64::min);
    radius.is_finite().then_some(radius)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shift(at: LatLon, from: LatLon, to: LatLon, infl: f64, extra: f64) -> Shift {
        let base = distance_km(at, from) * PHYSICS_MS_PER_KM * infl;
        let shift_ms = distance_km(at, to) * PHYSICS_MS_PER_KM * infl - base + extra;
        Shift {
            at,
            baseline_ms: base,
            shift_ms,
            step_ms: shift_ms,
            alarmed: shift_ms.abs() > 0.5,
            differenced: false,
            when_ns: Some((1e9, 1.1e9)),
        }
    }

    /// The claim and four probers (ams, lon, par, waw).
    const FRA: LatLon = LatLon {
        lat: 50.11,
        lon: 8.68,
    };
    const PROBERS: [LatLon; 4] = [
        LatLon {
            lat: 52.37,
            lon: 4.90,
        },
        LatLon {
            lat: 51.51,
            lon: -0.13,
        },
        LatLon {
            lat: 48.86,
            lon: 2.35,
        },
        LatLon {
            lat: 52.23,
            lon: 21.01,
        },
    ];

    #[test]
    fn a_move_fits_and_two_route_changes_do_not() {
        let (fra, probers) = (FRA, PROBERS);
        let policy = Policy::default();
        // 150 km east: every prober's shift follows from one position
        let to = super::super::geo::destination(fra, 90.0, 150.0);
        let moved: Vec<Shift> = probers
            .iter()
            .map(|p| shift(*p, fra, to, 1.6, 0.0))
            .collect();
        let Some(Fit::Moved(at)) = fit(&moved, fra, &policy) else {
            panic!("a move fits");
        };
        assert!(distance_km(at, to) < 60.0, "{at:?}");
        // the node stays; two paths change route in opposite directions, two do not
        let mut routes: Vec<Shift> = probers
            .iter()
            .map(|p| shift(*p, fra, fra, 1.6, 0.0))
            .collect();
        routes[0].shift_ms = 2.0;
        routes[3].shift_ms = -2.5;
        routes[0].step_ms = 2.0;
        routes[3].step_ms = -2.5;
        routes[0].alarmed = true;
        routes[3].alarmed = true;
        assert!(fit(&routes, fra, &policy).is_none());
    }

    #[test]
    fn a_missed_step_at_the_moves_instant_refutes_it() {
        // REVIEW6 R1: every path 0.6 ms slower at one instant (the node's side). Three probers
        // west of the claim fit a move east; waw, east, misses with a step of its own.
        let (fra, probers) = (FRA, PROBERS);
        let policy = Policy::default();
        let mut uniform: Vec<Shift> = probers
            .iter()
            .map(|p| shift(*p, fra, fra, 1.5, 0.6))
            .collect();
        assert_eq!(fit(&uniform, fra, &policy), None);
        // the same miss timed minutes away is waw's own route change: it may be the outlier
        uniform[3].when_ns = Some((300e9, 300.1e9));
        assert!(
            matches!(fit(&uniform, fra, &policy), Some(Fit::Moved(_))),
            "{uniform:?}"
        );
    }

    #[test]
    fn a_step_is_timed_to_within_a_few_samples() {
        // 50 samples/s, floor 5 ms plus a deterministic spread of 0-0.5 ms; a step at 10.51 s
        let series = |step: f64| -> Vec<(u64, f64)> {
            (0..1000u64)
                .map(|k| {
                    let t = k * 20_000_000;
                    let noise = ((k * 7919) % 11) as f64 * 0.05;
                    let at = if t >= 10_510_000_000 { step } else { 0.0 };
                    (t, 5.0 + at + noise)
                })
                .collect()
        };
        for step in [1.0, -1.0] {
            let (a, b) = change_instant(&series(step), 1e9, 10, step).expect("timed");
            assert!(a <= 10.51e9 && 10.51e9 <= b, "{step}: {a} {b}");
            assert!(b - a < 0.3e9, "{step}: {a} {b}");
        }
        // a step up that is not there: samples below its midpoint to the window's end, so it
        // cannot be timed to the onset (nor meet a move's instant there)
        let (a, _) = change_instant(&series(0.0), 1e9, 10, 1.0).expect("timed");
        assert!(a > 13.0e9, "{a}");
    }

    #[test]
    fn two_shifts_fit_some_position_and_prove_nothing() {
        // probers north, east, north-west and south-east of the claim; a move north-east
        // shifts the first two and leaves the others flat: exactly what two coinciding route
        // changes look like
        let c = LatLon::new(45.0, 10.0);
        let probers = [
            super::super::geo::destination(c, 0.0, 1000.0),
            super::super::geo::destination(c, 90.0, 1000.0),
            super::super::geo::destination(c, 315.0, 1000.0),
            super::super::geo::destination(c, 135.0, 1000.0),
        ];
        let to = super::super::geo::destination(c, 45.0, 100.0);
        let shifts: Vec<Shift> = probers.iter().map(|p| shift(*p, c, to, 1.6, 0.0)).collect();
        let seen = |s: &Shift| s.shift_ms.abs() > 0.25;
        assert_eq!(shifts.iter().filter(|s| seen(s)).count(), 2, "{shifts:?}");
        let mut policy = Policy::default();
        assert!(fit(&shifts, c, &policy).is_none());
        policy.relocation.min_seen_probers = 2;
        assert!(fit(&shifts, c, &policy).is_some());
        // a fifth prober due east-north-east sees the same move: three shifts, a test passed
        let east = super::super::geo::destination(c, 60.0, 800.0);
        let mut five = shifts.clone();
        five.push(shift(east, c, to, 1.6, 0.0));
        policy.relocation.min_seen_probers = 3;
        assert!(fit(&five, c, &policy).is_some());
    }
}
