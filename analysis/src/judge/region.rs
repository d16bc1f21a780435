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
    let cell = step_deg.to_radians().powi(2) * EARTH_RADIUS_KM.powi(2);
    let lattice = Lattice::new(
        index_range(lat_r, step_deg),
        index_range(lon_r, step_deg),
        step_deg,
    );
    let scan = if disjoint_pairs.is_empty() {
        lattice.scan(discs, cell)
    } else {
        Scan::default()
    };
    let claim_inside = claim_excluded_by.is_empty();
    let estimate = scan
        .centroid()
        .or(if claim_inside { Some(claim) } else { None });
    let radius_km = estimate.map(|e| lattice.farthest_km(e, &scan.feasible));
    let area = scan.area;
    let feasible = &scan.feasible;
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

/// The rows (latitudes inside ±90) and columns (longitudes) of one region's lattice. Every
/// lattice point's haversine terms are computed once per row or column and combined exactly as
/// [`distance_km`] combines them, so each test gives the bits `distance_km` would: the region
/// is the same as point by point, only without most of the trigonometry.
struct Lattice {
    rows: Vec<Row>,
    lons: Vec<f64>,
}

struct Row {
    lat_rad: f64,
    cos_lat: f64,
}

/// Points found inside every disc: their area, lattice indices (row, column) in scan order and
/// the sums of their unit vectors (for the centroid, added in the same order as before).
#[derive(Default)]
struct Scan {
    area: f64,
    feasible: Vec<(u32, u32)>,
    sum: (f64, f64, f64),
}

impl Lattice {
    fn new(lat_i: (i64, i64), lon_i: (i64, i64), step_deg: f64) -> Self {
        let rows = (lat_i.0..=lat_i.1)
            .map(|li| li as f64 * step_deg)
            .filter(|lat| (-90.0..=90.0).contains(lat))
            .map(|lat| {
                let lat_rad = lat.to_radians();
                Row {
                    lat_rad,
                    cos_lat: lat_rad.cos(),
                }
            })
            .collect();
        let lons = (lon_i.0..=lon_i.1).map(|oi| oi as f64 * step_deg).collect();
        Self { rows, lons }
    }

    /// The lattice points inside every disc, row by row.
    fn scan(&self, discs: &[Disc], cell: f64) -> Scan {
        let mut terms: Vec<DiscTerms> = discs.iter().map(DiscTerms::new).collect();
        // Which disc rejects first changes nothing but speed: the smallest most often does.
        terms.sort_by(|a, b| a.radius.total_cmp(&b.radius));
        let n = self.lons.len();
        // Per disc and column: the longitude term of the haversine.
        let lon_terms: Vec<f64> = terms
            .iter()
            .flat_map(|t| {
                self.lons
                    .iter()
                    .map(move |&lon| half_sin_sq((lon - t.lon).to_radians()))
            })
            .collect();
        // Per disc: the largest longitude term, which bounds h along a row.
        let max_lon_term: Vec<f64> = (0..terms.len())
            .map(|k| {
                lon_terms[k * n..(k + 1) * n]
                    .iter()
                    .copied()
                    .fold(0.0, f64::max)
            })
            .collect();
        // Per column, for the centroid.
        let lon_trig: Vec<(f64, f64)> = self
            .lons
            .iter()
            .map(|lon| {
                let lo = lon.to_radians();
                (lo.cos(), lo.sin())
            })
            .collect();
        // The discs that decide the current row: (disc, latitude term, cosine product).
        let mut active: Vec<(usize, f64, f64)> = Vec::with_capacity(terms.len());
        let mut scan = Scan::default();
        'rows: for (ri, row) in self.rows.iter().enumerate() {
            active.clear();
            for (k, t) in terms.iter().enumerate() {
                let (a, c) = (
                    half_sin_sq(row.lat_rad - t.lat_rad),
                    t.cos_lat * row.cos_lat,
                );
                // Along the row h = a + c·b with c, b ≥ 0, so a ≤ h ≤ a + c·max b, and rounding
                // keeps both bounds: a disc that the bounds put wholly outside or inside decides
                // every point of the row as the point-by-point test would.
                if a > t.h_out {
                    continue 'rows;
                }
                if a + c * max_lon_term[k] >= t.h_in {
                    active.push((k, a, c));
                }
            }
            let row_area = cell * row.cos_lat;
            let sin_lat = row.lat_rad.sin();
            for (j, &(cos_lo, sin_lo)) in lon_trig.iter().enumerate() {
                let inside = active
                    .iter()
                    .all(|&(k, a, c)| terms[k].contains(a + c * lon_terms[k * n + j]));
                if inside {
                    scan.area += row_area;
                    scan.feasible.push((ri as u32, j as u32));
                    scan.sum.0 += row.cos_lat * cos_lo;
                    scan.sum.1 += row.cos_lat * sin_lo;
                    scan.sum.2 += sin_lat;
                }
            }
        }
        scan
    }

    /// Largest [`distance_km`] from `e` to a feasible point.
    fn farthest_km(&self, e: LatLon, feasible: &[(u32, u32)]) -> f64 {
        let la1 = e.lat.to_radians();
        let cos1 = la1.cos();
        let row_terms: Vec<(f64, f64)> = self
            .rows
            .iter()
            .map(|r| (half_sin_sq(r.lat_rad - la1), cos1 * r.cos_lat))
            .collect();
        let lon_terms: Vec<f64> = self
            .lons
            .iter()
            .map(|&lon| half_sin_sq((lon - e.lon).to_radians()))
            .collect();
        let h = |&(ri, j): &(u32, u32)| {
            let (a, c) = row_terms[ri as usize];
            a + c * lon_terms[j as usize]
        };
        // The distance grows with h: only points whose h is within rounding of the largest can
        // be the farthest, and only those pay for the arcsine.
        let max_h = feasible.iter().map(h).fold(0.0, f64::max);
        let cutoff = max_h - (max_h * H_MARGIN + H_FLOOR);
        feasible
            .iter()
            .map(h)
            .filter(|&v| v >= cutoff)
            .map(haversine_km)
            .fold(0.0, f64::max)
    }
}

impl Scan {
    /// Centroid of the feasible points: the direction of the sum of their unit vectors.
    fn centroid(&self) -> Option<LatLon> {
        if self.feasible.is_empty() {
            return None;
        }
        let (x, y, z) = self.sum;
        let h = (x * x + y * y).sqrt();
        Some(LatLon::new(
            z.atan2(h).to_degrees(),
            y.atan2(x).to_degrees(),
        ))
    }
}

/// Relative and absolute widths of the band of h around a disc's edge in which the arcsine is
/// evaluated: far wider than the rounding of the distance (~1e-15 relative, ~1e-10 near the
/// antipode), far narrower than the lattice.
const H_MARGIN: f64 = 1e-9;
const H_FLOOR: f64 = 1e-18;

/// One disc's haversine terms, and the band of h (squared sine of half the central angle)
/// outside which `distance <= radius` is decided without the arcsine.
struct DiscTerms {
    lat_rad: f64,
    cos_lat: f64,
    lon: f64,
    radius: f64,
    /// h below this: inside.
    h_in: f64,
    /// h above this: outside.
    h_out: f64,
}

impl DiscTerms {
    fn new(d: &Disc) -> Self {
        let lat_rad = d.center.lat.to_radians();
        let half_angle = d.radius_km / (2.0 * EARTH_RADIUS_KM);
        // Near half the globe (or for a radius that is no distance) every point is decided
        // exactly.
        let (h_in, h_out) = if (0.0..std::f64::consts::FRAC_PI_2 - 1e-6).contains(&half_angle) {
            let s = half_angle.sin().powi(2);
            (s - (s * H_MARGIN + H_FLOOR), s + (s * H_MARGIN + H_FLOOR))
        } else {
            (f64::NEG_INFINITY, f64::INFINITY)
        };
        Self {
            lat_rad,
            cos_lat: lat_rad.cos(),
            lon: d.center.lon,
            radius: d.radius_km,
            h_in,
            h_out,
        }
    }

    /// [`Disc::contains`] for a point whose haversine h is given.
    fn contains(&self, h: f64) -> bool {
        if h < self.h_in {
            true
        } else if h > self.h_out {
            false
        } else {
            haversine_km(h) <= self.radius
        }
    }
}

/// `sin(x / 2)²`, as [`distance_km`] computes it.
fn half_sin_sq(x: f64) -> f64 {
    (x / 2.0).sin().powi(2)
}

/// The distance for a haversine h, as [`distance_km`] computes it.
fn haversine_km(h: f64) -> f64 {
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
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

fn normalize(p: LatLon) -> LatLon {
    LatLon::new(p.lat, (p.lon + 540.0).rem_euclid(360.0) - 180.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    /// The lattice scan as it was before [`Lattice`]: every point through [`distance_km`].
    /// The fast scan must give the same region, bit for bit.
    fn reference(discs: &[Disc], claim: LatLon, step_deg: f64) -> Region {
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

    fn arb_disc() -> impl Strategy<Value = Disc> {
        // Around Europe and the whole globe; radii from a city block to beyond the antipode.
        (
            -89.9f64..89.9,
            -200.0f64..200.0,
            prop_oneof![0.0f64..50.0, 0.0f64..3_000.0, 0.0f64..25_000.0],
        )
            .prop_map(|(lat, lon, r)| disc("d", lat, lon, r))
    }

    fn near(center: LatLon, spread: f64) -> impl Strategy<Value = Disc> {
        (-spread..spread, -spread..spread, 100.0f64..1_500.0).prop_map(move |(dlat, dlon, r)| {
            disc(
                "n",
                (center.lat + dlat).clamp(-90.0, 90.0),
                center.lon + dlon,
                r,
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random discs anywhere: the fast scan equals the reference, field for field.
        #[test]
        fn fast_scan_equals_reference(
            discs in proptest::collection::vec(arb_disc(), 1..5),
            claim_lat in -90.0f64..90.0,
            claim_lon in -180.0f64..180.0,
        ) {
            let claim = LatLon::new(claim_lat, claim_lon);
            let step = intersect(&discs, claim).step_deg.unwrap();
            prop_assert_eq!(intersect_with_step(&discs, claim, step), reference(&discs, claim, step));
        }

        /// Overlapping discs around one place (as the judge draws them): non-empty regions whose
        /// edges cross many lattice points, so the arcsine band is exercised.
        #[test]
        fn fast_scan_equals_reference_on_overlapping_discs(
            discs in proptest::collection::vec(near(LatLon::new(50.11, 8.68), 4.0), 1..7),
        ) {
            let claim = LatLon::new(50.11, 8.68);
            let step = intersect(&discs, claim).step_deg.unwrap();
            let fast = intersect_with_step(&discs, claim, step);
            prop_assert_eq!(&fast, &reference(&discs, claim, step));
        }
    }
}
