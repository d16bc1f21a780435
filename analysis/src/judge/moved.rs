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
    /// Its settled shift from the onset on, ms.
    pub(crate) shift_ms: f64,
    /// Its CUSUM alarmed.
    pub(crate) alarmed: bool,
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
/// shifts fit some position whatever they are, only a third tests the move.
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
    let (need, need_seen) = (
        policy.relocation.min_probers,
        policy.relocation.min_seen_probers,
    );
    let noise = policy.relocation.drift_ms;
    let fits = |p: LatLon, outliers: usize| {
        let (mut missed, mut explained, mut seen) = (0, 0, 0);
        for s in shifts {
            let want = s.predicted(from, p, ceiling);
            if (s.shift_ms - want).abs() <= tol + frac * want.abs() {
                explained += usize::from(s.alarmed);
                seen += usize::from(s.shift_ms.abs() > noise);
            } else {
                // only an alarming path may miss (its route changed as well); a path that
                // stayed put must fit, or two route changes would pass for a move
                missed += 1;
                if missed > outliers || !s.alarmed {
                    return false;
                }
            }
        }
        explained >= need && seen >= need_seen
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
            alarmed: shift_ms.abs() > 0.5,
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
        routes[0].alarmed = true;
        routes[3].alarmed = true;
        assert!(fit(&routes, fra, &policy).is_none());
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
