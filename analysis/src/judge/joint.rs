//! Joint fit: is there one location that explains both the probers' RTTs (to the node's
//! network endpoint) and the TD's own RTTs to anchors? If so the TD answers from there
//! (relocated); if not, the endpoint and the TD are in different places (a relay: proxied).

use crate::judge::bound::Bestline;
use crate::judge::geo::{destination, distance_km, LatLon};

/// One timing observation from a known place: `rtt_ms` predicted by `model` at the distance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obs {
    pub(crate) at: LatLon,
    pub(crate) rtt_ms: f64,
    pub(crate) model: Bestline,
    /// Allowed excess over the model (slower), ms.
    pub(crate) slow_tol_ms: f64,
    /// Allowed shortfall under the model (faster), ms.
    pub(crate) fast_tol_ms: f64,
}

impl Obs {
    fn violation(&self, p: LatLon) -> f64 {
        let r = self.rtt_ms - self.model.rtt_ms(distance_km(self.at, p));
        (r - self.slow_tol_ms).max(-self.fast_tol_ms - r).max(0.0)
    }
}

/// Points within `radius_km` of `center` where every observation fits within its tolerances:
/// their centroid and count, or None. Deterministic lattice search (≤ ~40 000 points).
pub(crate) fn consistent_location(
    obs: &[Obs],
    center: LatLon,
    radius_km: f64,
) -> Option<(LatLon, usize)> {
    search(center, radius_km, |p| {
        obs.iter().all(|o| o.violation(p) <= 0.0)
    })
}

/// Points within `radius_km` of `center` where `fits` holds: their centroid and count, or
/// None. Deterministic lattice search (≤ ~40 000 points).
pub(crate) fn search(
    center: LatLon,
    radius_km: f64,
    fits: impl Fn(LatLon) -> bool,
) -> Option<(LatLon, usize)> {
    let hits = hits(center, radius_km, fits);
    Some((centroid(&hits)?, hits.len()))
}

/// The hit of [`search`] nearest the hits' centroid: a point where `fits` holds itself (the
/// centroid of a crescent or of two patches need not, REVIEW6 R1), or None.
pub(crate) fn search_fitting(
    center: LatLon,
    radius_km: f64,
    fits: impl Fn(LatLon) -> bool,
) -> Option<LatLon> {
    let hits = hits(center, radius_km, fits);
    let c = centroid(&hits)?;
    hits.into_iter()
        .min_by(|a, b| distance_km(*a, c).total_cmp(&distance_km(*b, c)))
}

/// The lattice points within `radius_km` of `center` where `fits` holds.
fn hits(center: LatLon, radius_km: f64, fits: impl Fn(LatLon) -> bool) -> Vec<LatLon> {
    let radius_km = radius_km.clamp(10.0, 20_000.0);
    let n = 100i64; // half-width in steps
    let step_km = radius_km / n as f64;
    let mut hits = Vec::new();
    for i in -n..=n {
        for j in -n..=n {
            let (dx, dy) = (i as f64 * step_km, j as f64 * step_km);
            let d = (dx * dx + dy * dy).sqrt();
            if d > radius_km {
                continue;
            }
            let p = destination(center, dx.atan2(dy).to_degrees(), d);
            if fits(p) {
                hits.push(p);
            }
        }
    }
    hits
}

fn centroid(points: &[LatLon]) -> Option<LatLon> {
    if points.is_empty() {
        return None;
    }
    let (mut x, mut y, mut z) = (0.0, 0.0, 0.0);
    for p in points {
        let (la, lo) = (p.lat.to_radians(), p.lon.to_radians());
        x += la.cos() * lo.cos();
        y += la.cos() * lo.sin();
        z += la.sin();
    }
    Some(LatLon::new(
        z.atan2((x * x + y * y).sqrt()).to_degrees(),
        y.atan2(x).to_degrees(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(at: LatLon, truth: LatLon) -> Obs {
        let model = Bestline::inflated(1.5);
        Obs {
            at,
            rtt_ms: model.rtt_ms(distance_km(at, truth)),
            model,
            slow_tol_ms: 1.0,
            fast_tol_ms: 1.0,
        }
    }

    #[test]
    fn finds_the_common_point_and_rejects_contradictions() {
        let fra = LatLon::new(50.11, 8.68);
        let truth = LatLon::new(53.55, 9.99); // Hamburg
        let sites = [
            LatLon::new(52.37, 4.90),
            LatLon::new(48.86, 2.35),
            LatLon::new(52.23, 21.01),
            fra,
        ];
        let all: Vec<Obs> = sites.iter().map(|s| obs(*s, truth)).collect();
        let (c, _) = consistent_location(&all, fra, 800.0).unwrap();
        assert!(distance_km(c, truth) < 60.0, "{c:?}");
        // the last observation now says "at fra", the others "at Hamburg"
        let mut contradict = all.clone();
        contradict[3].rtt_ms = 0.1;
        contradict[3].slow_tol_ms = 0.5;
        assert!(consistent_location(&contradict, fra, 800.0).is_none());
    }
}
