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

/// The centroid of the new positions that explain the shifts, or None. Each shift may miss
/// its prediction by `relocation.fit_tolerance_ms` + `fit_tolerance_frac` of it. With four or
/// more probers one alarming prober may miss (its path changed route during the window too),
/// as long as at least `relocation.min_probers` alarming probers are explained. At least
/// `relocation.min_seen_probers` explained shifts must exceed the noise (`drift_ms`): two
/// shifts fit some position whatever they are, only a third tests the move against two
/// coinciding route changes; and those steps must have happened at one instant
/// ([`change_instant`]). When every seen shift is landmark-differenced, route changes are not
/// in them: `min_seen_differenced` suffice.
pub(crate) fn fit(shifts: &[Shift], from: LatLon, policy: &Policy) -> Option<LatLon> {
    let (tol, frac) = (
        policy.relocation.fit_tolerance_ms,
        policy.relocation.fit_tolerance_frac,
    );
    let ceiling = policy.inflation_ceiling;
    // the new position is inside every prober's 2/3 c disc after the move
    let radius = (shifts.iter())
        .map(|s| distance_km(s.at, from) + (s.baseline_ms + s.shift_ms).max(0.0) * 100.0)
        .fold(f64::INFINITY, f64::min);
    if !radius.is_finite() {
        return None;
    }
    let (need, need_seen, need_seen_diff) = (
        policy.relocation.min_probers,
        policy.relocation.min_seen_probers,
        policy.relocation.min_seen_differenced,
    );
    let noise = policy.relocation.drift_ms;
    let fits = |p: LatLon, outliers: usize| {
        let (mut missed, mut explained, mut seen, mut seen_diff) = (0, 0, 0, 0);
        // the seen steps' instants must share one moment
        let (mut from_ns, mut to_ns) = (f64::NEG_INFINITY, f64::INFINITY);
        for s in shifts {
            let want = s.predicted(from, p, ceiling);
            let timed = s.when_ns.filter(|w| w.0.max(from_ns) <= w.1.min(to_ns));
            if (s.shift_ms - want).abs() <= tol + frac * want.abs() {
                explained += usize::from(s.alarmed);
                // a differenced step its samples cannot time (too close to the noise) proves
                // nothing but refutes nothing either; a raw one may be a route change
                let untimed = s.differenced && s.when_ns.is_none();
                if s.step_ms.abs() > noise && !untimed {
                    let Some((a, b)) = timed else {
                        return false;
                    };
                    (from_ns, to_ns) = (from_ns.max(a), to_ns.min(b));
                    seen += 1;
                    seen_diff += usize::from(s.differenced);
                }
            } else {
                // only an alarming path may miss (its route changed as well); a path that
                // stayed put must fit, or two route changes would pass for a move
                missed += 1;
                if missed > outliers || !s.alarmed {
                    return false;
                }
            }
        }
        explained >= need && (seen >= need_seen || (seen == seen_diff && seen >= need_seen_diff))
    };
    // positions explaining every prober first; only without any, those missing one
    joint::search(from, radius, |p| fits(p, 0))
        .or_else(|| (shifts.len() >= 4).then(|| joint::search(from, radius, |p| fits(p, 1)))?)
        .map(|(c, _)| c)
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

    #[test]
    fn a_move_fits_and_two_route_changes_do_not() {
        let fra = LatLon::new(50.11, 8.68);
        let probers = [
            LatLon::new(52.37, 4.90),
            LatLon::new(51.51, -0.13),
            LatLon::new(48.86, 2.35),
            LatLon::new(52.23, 21.01),
        ];
        let policy = Policy::default();
        // 150 km east: every prober's shift follows from one position
        let to = super::super::geo::destination(fra, 90.0, 150.0);
        let moved: Vec<Shift> = probers
            .iter()
            .map(|p| shift(*p, fra, to, 1.6, 0.0))
            .collect();
        let at = fit(&moved, fra, &policy).expect("a move fits");
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
