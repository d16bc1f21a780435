//! Emulated geography: one-way delay between sites from great-circle distance.

use std::time::Duration;

use locus_analysis::judge::geo::{distance_km, LatLon};

use crate::scenario::{Scenario, Site};

/// One-way speed of light in fiber, km per ms (2/3 c).
pub(crate) const FIBER_KM_PER_MS: f64 = 200.0;

pub(crate) fn km(a: &Site, b: &Site) -> f64 {
    distance_km(LatLon::new(a.lat, a.lon), LatLon::new(b.lat, b.lon))
}

/// One-way delay from site `a` to site `b` at `t_s` seconds into the run, the path's
/// inflation included (no jitter).
pub(crate) fn one_way(s: &Scenario, a: usize, b: usize, t_s: f64) -> Duration {
    let ms = km(&s.sites[a], &s.sites[b]) * s.inflation_at(a, b, t_s) / FIBER_KM_PER_MS;
    Duration::from_secs_f64(ms / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frankfurt_to_ashburn_is_tens_of_ms() {
        let s = Scenario::parse(crate::scenario::BUILT_IN, "built-in").unwrap();
        let fra = s.sites.iter().position(|x| x.name == "fra").unwrap();
        let iad = s.sites.iter().position(|x| x.name == "iad").unwrap();
        let d = one_way(&s, fra, iad, 0.0).as_secs_f64() * 1e3;
        // ~6,500 km × 1.5 / 200 km/ms ≈ 49 ms.
        assert!((45.0..55.0).contains(&d), "{d} ms");
        assert_eq!(one_way(&s, fra, fra, 0.0), Duration::ZERO);
    }
}
