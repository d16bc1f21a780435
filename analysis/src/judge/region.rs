//! Feasible region: the intersection of distance discs (spherical caps), sampled on a
//! degree-aligned lattice; reports whether the claim is inside, the size and a best estimate.

use serde::{Deserialize, Serialize};

use crate::judge::geo::{distance_km, LatLon, EARTH_RADIUS_KM};

/// Lattice steps tried, finest first (degrees). Aligned to multiples of the step so that a
/// larger disc can only add lattice points, never move them.
const STEPS_DEG: [f64; 9] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];
/// Most lattice points evaluated for one region.
const MAX_POINTS: usize = 65_000;

/// "The responder is within `radius_km` of `center`", from one prober or anchor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disc {
    /// What produced the disc, e.g. `prober ams` or `anchor fra`.
    pub label: String,
    pub center: LatLon,
    pub radius_km: f64,
}

impl Disc {
    pub fn contains(&self, p: LatLon) -> bool {
        distance_km(self.center, p) <= self.radius_km
    }
}

/// The intersection of a set of discs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// Number of discs intersected.
    pub discs: usize,
    /// No point satisfies every disc: the timing is inconsistent with physics (or with the
    /// stated prober/anchor sites).
    pub empty: bool,
    /// Pairs of discs that cannot both hold (centres farther apart than the radii allow).
    pub disjoint_pairs: Vec<(String, String)>,
    pub claim_inside: bool,
    /// Discs that exclude the claim.
    pub claim_excluded_by: Vec<String>,
    /// Area of the lattice cells inside the region, km² (None when there are no discs).
    pub area_km2: Option<f64>,
    /// Largest distance from the estimate to a point of the region, km.
    pub radius_km: Option<f64>,
    /// Centroid of the region.
    pub estimate: Option<LatLon>,
    pub estimate_to_claim_km: Option<f64>,
    /// Lattice step used, degrees.
    pub step_deg: Option<f64>,
}

/// Intersect `discs`, checking `claim`; the lattice step is chosen from the smallest disc.
pub fn intersect(discs: &[Disc], claim: LatLon) -> Region {
    let Some(smallest) = discs
        .iter()
        .min_by(|a, b| a.radius_km.total_cmp(&b.radius_km))
    else {
        return Region {
            discs: 0,
            empty: false,
            disjoint_pairs: Vec::new(),
            claim_inside: true,
            claim_excluded_by: Vec::new(),
            area_km2: None,
            radius_km: None,
            estimate: None,
            estimate_to_claim_km: None,
            step_deg: None,
        };
    };
    let (lat_r, lon_r) = bbox(smallest);
    let step = STEPS_DEG
        .iter()
        .copied()
        .find(|s| lattice_len(lat_r, s) * lattice_len(lon_r, s) <= MAX_POINTS)
        .unwrap_or(STEPS_DEG[STEPS_DEG.len() - 1]);
    intersect_with_step(discs, claim, step)
}

/// [`intersect`] with a fixed lattice step (degrees): with the same step, growing any disc can
/// only add lattice points to the region.
pub fn intersect_with_step(discs: &[Disc], claim: LatLon, step_deg: f64) -> Region {
    let claim_excluded_by: Vec<String> = discs
        .iter()
        .filter(|d| !d.contains(claim))
        .map(|d| d.label.clone())
        .collect();
    let mut disjoint_pairs = Vec::new();
    for (i, a) in discs.iter().enumerate() {
        for b in &discs[i + 1..] {
            if distance_km(a.center, b.center) > a.radius_km + b.radius_km {
                disjoint_pairs.push((a.label.clone(), b.label.clone()));
            }
        }
    }
    let Some(smallest) = discs
        .iter()
        .min_by(|a, b| a.radius_km.total_cmp(&b.radius_km))
    else {
        return intersect(discs, claim);
    };
    let (lat_r, lon_r) = bbox(smallest);
    let mut feasible = Vec::new();
    let mut area = 0.0;
    let cell = step_deg.to_radians().powi(2) * EARTH_RADIUS_KM.powi(2);
    let (lat_i0, lat_i1) = index_range(lat_r, step_deg);
    let (lon_i0, lon_i1) = index_range(lon_r, step_deg);
    if disjoint_pairs.is_empty() {
        for li in lat_i0..=lat_i1 {
            let lat = li as f64 * step_deg;
            if !(-90.0..=90.0).contains(&lat) {
                continue;
            }
            for oi in lon_i0..=lon_i1 {
                let p = LatLon::new(lat, oi as f64 * step_deg);
                if discs.iter().all(|d| d.contains(p)) {
                    area += cell * lat.to_radians().cos();
                    feasible.push(p);
                }
            }
        }
    }
    let claim_inside = claim_excluded_by.is_empty();
    let estimate = centroid(&feasible).or(if claim_inside { Some(claim) } else { None });
    let radius_km = estimate.map(|e| {
        feasible
            .iter()
            .map(|p| distance_km(e, *p))
            .fold(0.0, f64::max)
    });
    Region {
        discs: discs.len(),
        // a region too small for the lattice is still non-empty when the claim satisfies it
        empty: !disjoint_pairs.is_empty() || (feasible.is_empty() && !claim_inside),
        disjoint_pairs,
        claim_inside,
        claim_excluded_by,
        area_km2: Some(area),
        radius_km,
        estimate: estimate.map(normalize),
        estimate_to_claim_km: estimate.map(|e| distance_km(e, claim)),
        step_deg: Some(step_deg),
    }
}

fn lattice_len(range: (f64, f64), step: &f64) -> usize {
    ((range.1 - range.0) / step).ceil() as usize + 1
}

fn index_range(range: (f64, f64), step: f64) -> (i64, i64) {
    (
        (range.0 / step).floor() as i64,
        (range.1 / step).ceil() as i64,
    )
}

/// Latitude and longitude ranges covering the disc (longitudes may exceed ±180; distances
/// wrap correctly).
fn bbox(d: &Disc) -> ((f64, f64), (f64, f64)) {
    let dlat = (d.radius_km / EARTH_RADIUS_KM).to_degrees();
    let lat0 = (d.center.lat - dlat).max(-90.0);
    let lat1 = (d.center.lat + dlat).min(90.0);
    let max_abs_lat = lat0.abs().max(lat1.abs());
    let lon = if max_abs_lat >= 89.0 || dlat >= 60.0 {
        (-180.0, 180.0)
    } else {
        let dlon = (dlat / max_abs_lat.to_radians().cos()).min(180.0);
        (d.center.lon - dlon, d.center.lon + dlon)
    };
    ((lat0, lat1), lon)
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
    let h = (x * x + y * y).sqrt();
    Some(LatLon::new(
        z.atan2(h).to_degrees(),
        y.atan2(x).to_degrees(),
    ))
}

fn normalize(p: LatLon) -> LatLon {
    LatLon::new(p.lat, (p.lon + 540.0).rem_euclid(360.0) - 180.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disc(label: &str, lat: f64, lon: f64, r: f64) -> Disc {
        Disc {
            label: label.into(),
            center: LatLon::new(lat, lon),
            radius_km: r,
        }
    }

    #[test]
    fn three_discs_around_frankfurt() {
        let fra = LatLon::new(50.11, 8.68);
        let ds = [
            disc("ams", 52.37, 4.90, 400.0),
            disc("par", 48.86, 2.35, 520.0),
            disc("waw", 52.23, 21.01, 930.0),
        ];
        let r = intersect(&ds, fra);
        assert!(r.claim_inside && !r.empty, "{r:?}");
        assert!(r.area_km2.unwrap() > 0.0);
        assert!(r.estimate_to_claim_km.unwrap() < 300.0, "{r:?}");
    }

    #[test]
    fn disjoint_discs_are_empty() {
        let ds = [disc("a", 50.0, 0.0, 100.0), disc("b", 50.0, 10.0, 100.0)];
        let r = intersect(&ds, LatLon::new(50.0, 5.0));
        assert!(r.empty && !r.claim_inside);
        assert_eq!(r.disjoint_pairs.len(), 1);
    }

    #[test]
    fn huge_disc_uses_coarse_lattice() {
        let ds = [disc("a", 50.0, 8.0, 15_000.0)];
        let r = intersect(&ds, LatLon::new(-6.0, 106.0)); // Jakarta, ≈ 11 000 km
        assert!(r.claim_inside && !r.empty);
        assert!(r.step_deg.unwrap() >= 1.0);
    }
}
