//! Round-trip time → distance: the hard physical bound (2/3 c in fiber) and CBG-style
//! calibrated "bestlines" per prober, which may be tighter but never faster than light in fiber.

use serde::{Deserialize, Serialize};

/// Light in fiber (refractive index ≈ 1.5) covers about 200 km per millisecond, one way.
pub const FIBER_KM_PER_MS: f64 = 200.0;

/// RTT per km of great-circle distance at the speed of light in fiber: 2 / 200 = 0.01 ms/km.
pub const PHYSICS_MS_PER_KM: f64 = 2.0 / FIBER_KM_PER_MS;

/// The farthest a responder can be from a prober whose round trip (processing already
/// subtracted) took `rtt_ms`: the hard bound, ≈ 100 km per ms of RTT.
pub fn max_distance_km(rtt_ms: f64) -> f64 {
    rtt_ms.max(0.0) * FIBER_KM_PER_MS / 2.0
}

/// A line `rtt_ms = slope_ms_per_km · d_km + intercept_ms` relating distance to RTT.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bestline {
    pub slope_ms_per_km: f64,
    pub intercept_ms: f64,
}

impl Bestline {
    /// The physics line: 2/3 c, no fixed delay.
    pub const PHYSICS: Bestline = Bestline {
        slope_ms_per_km: PHYSICS_MS_PER_KM,
        intercept_ms: 0.0,
    };

    /// A line for paths `inflation` times longer than the great circle, with no fixed delay.
    pub fn inflated(inflation: f64) -> Bestline {
        Bestline {
            slope_ms_per_km: PHYSICS_MS_PER_KM * inflation.max(1.0),
            intercept_ms: 0.0,
        }
    }

    /// Expected RTT at distance `d_km` under this line.
    pub fn rtt_ms(&self, d_km: f64) -> f64 {
        self.slope_ms_per_km * d_km + self.intercept_ms
    }

    /// Largest distance this line allows for `rtt_ms`. For a line from [`bestline`] this is
    /// never larger than [`max_distance_km`] (slope ≥ physics, intercept ≥ 0).
    pub fn max_distance_km(&self, rtt_ms: f64) -> f64 {
        ((rtt_ms - self.intercept_ms) / self.slope_ms_per_km).max(0.0)
    }
}

/// CBG bestline from landmark observations `(distance_km, min_rtt_ms)`: the line below every
/// point that is closest to them in total, with slope ≥ [`PHYSICS_MS_PER_KM`] and intercept ≥ 0.
///
/// Returns [`Bestline::PHYSICS`] when there are no points, or when some point is faster than
/// light in fiber (the data are then inconsistent and nothing tighter can be trusted).
pub fn bestline(points: &[(f64, f64)]) -> Bestline {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(d, r)| d.is_finite() && r.is_finite() && *d >= 0.0)
        .collect();
    const EPS: f64 = 1e-9;
    let feasible = |l: &Bestline| {
        l.slope_ms_per_km >= PHYSICS_MS_PER_KM - EPS
            && l.intercept_ms >= -EPS
            && pts.iter().all(|&(d, r)| r + 1e-7 >= l.rtt_ms(d))
    };
    if pts.is_empty() || !feasible(&Bestline::PHYSICS) {
        return Bestline::PHYSICS;
    }
    // The optimum of this small linear program lies on a vertex of the feasible set: a line
    // through two points, or through one point with the physics slope or a zero intercept.
    let mut candidates = vec![Bestline::PHYSICS];
    for (i, &(d1, r1)) in pts.iter().enumerate() {
        candidates.push(Bestline {
            slope_ms_per_km: PHYSICS_MS_PER_KM,
            intercept_ms: r1 - PHYSICS_MS_PER_KM * d1,
        });
        if d1 > 0.0 {
            candidates.push(Bestline {
                slope_ms_per_km: r1 / d1,
                intercept_ms: 0.0,
            });
        }
        for &(d2, r2) in &pts[i + 1..] {
            if (d2 - d1).abs() > 1e-6 {
                let m = (r2 - r1) / (d2 - d1);
                candidates.push(Bestline {
                    slope_ms_per_km: m,
                    intercept_ms: r1 - m * d1,
                });
            }
        }
    }
    let cost = |l: &Bestline| pts.iter().map(|&(d, r)| r - l.rtt_ms(d)).sum::<f64>();
    candidates
        .into_iter()
        .filter(feasible)
        .map(|l| Bestline {
            slope_ms_per_km: l.slope_ms_per_km.max(PHYSICS_MS_PER_KM),
            intercept_ms: l.intercept_ms.max(0.0),
        })
        .min_by(|a, b| cost(a).total_cmp(&cost(b)))
        .unwrap_or(Bestline::PHYSICS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hundred_km_per_ms() {
        assert_eq!(max_distance_km(1.0), 100.0);
        assert_eq!(max_distance_km(-3.0), 0.0);
    }

    #[test]
    fn bestline_fits_inflated_landmarks_and_stays_below() {
        // landmarks on a 1.5x inflated path with 0.2 ms fixed delay
        let pts: Vec<(f64, f64)> = [100.0, 300.0, 700.0, 1200.0]
            .iter()
            .map(|d| (*d, 0.015 * d + 0.2))
            .collect();
        let l = bestline(&pts);
        assert!((l.slope_ms_per_km - 0.015).abs() < 1e-9, "{l:?}");
        assert!((l.intercept_ms - 0.2).abs() < 1e-9, "{l:?}");
        for &(d, r) in &pts {
            assert!(l.rtt_ms(d) <= r + 1e-9);
        }
        // never looser than physics: calibrated radius ≤ hard radius
        for rtt in [0.5, 3.0, 20.0] {
            assert!(l.max_distance_km(rtt) <= max_distance_km(rtt));
        }
    }

    proptest::proptest! {
        /// The bestline stays below every landmark and never beats light in fiber.
        #[test]
        fn bestline_is_a_physical_lower_envelope(
            pts in proptest::collection::vec((0.0f64..3000.0, 0.0f64..5.0, 1.0f64..3.0), 1..8)
        ) {
            let pts: Vec<(f64, f64)> =
                pts.iter().map(|(d, fixed, infl)| (*d, PHYSICS_MS_PER_KM * infl * d + fixed)).collect();
            let l = bestline(&pts);
            proptest::prop_assert!(l.slope_ms_per_km >= PHYSICS_MS_PER_KM);
            proptest::prop_assert!(l.intercept_ms >= 0.0);
            for &(d, r) in &pts {
                proptest::prop_assert!(l.rtt_ms(d) <= r + 1e-6, "{l:?} above ({d}, {r})");
            }
        }
    }

    #[test]
    fn bestline_rejects_faster_than_light_data() {
        let l = bestline(&[(1000.0, 5.0), (100.0, 2.0)]);
        assert_eq!(l, Bestline::PHYSICS);
        assert_eq!(bestline(&[]), Bestline::PHYSICS);
    }
}
