//! The maps' basemap: Natural Earth 1:110m land and borders (vendored in `lab/data/`), an
//! azimuthal equidistant projection centred on the claim, and clipping to a cap around it.
//!
//! Azimuthal equidistant keeps every distance and direction from the centre true, so the
//! claim's distance rings are circles and the probers' discs keep their shape near the claim.
//! Far from the centre it stretches without bound (the antipode becomes a circle), which is
//! why everything is clipped to a cap of radius `D` around the centre before drawing: inside
//! the cap consecutive points stay close, so straight segments between them are faithful.

use std::f64::consts::PI;
use std::sync::OnceLock;

use locus_analysis::judge::geo::{distance_km, LatLon, EARTH_RADIUS_KM};
use serde::Deserialize;

/// Natural Earth 1:110m (public domain) via world-atlas 2.0.2; see `lab/data/README.md`.
const BASEMAP_JSON: &[u8] = include_bytes!("../data/basemap-110m.json");

/// Beyond this distance from the centre the projection stretches too much to trust a
/// segment's straight chord (a quarter of the way round the Earth and more).
const TAME_KM: f64 = 10_000.0;

/// Points on a boundary arc of the cap: one every this many radians.
const ARC_STEP: f64 = PI / 90.0;

/// Land rings (fill even-odd) and land borders, in degrees.
pub(crate) struct Basemap {
    pub(crate) land: Vec<Vec<LatLon>>,
    pub(crate) borders: Vec<Vec<LatLon>>,
}

#[derive(Deserialize)]
struct RawBasemap {
    /// Flat `[lon, lat, lon, lat, …]` in hundredths of a degree.
    land: Vec<Vec<i32>>,
    borders: Vec<Vec<i32>>,
}

/// The vendored basemap, parsed once per process.
pub(crate) fn basemap() -> Result<&'static Basemap, String> {
    static MAP: OnceLock<Result<Basemap, String>> = OnceLock::new();
    MAP.get_or_init(|| {
        let raw: RawBasemap = serde_json::from_slice(BASEMAP_JSON)
            .map_err(|e| format!("vendored basemap-110m.json: {e}"))?;
        let lines = |v: Vec<Vec<i32>>| -> Vec<Vec<LatLon>> {
            v.into_iter()
                .map(|flat| {
                    flat.chunks_exact(2)
                        .map(|c| LatLon::new(f64::from(c[1]) / 100.0, f64::from(c[0]) / 100.0))
                        .collect()
                })
                .collect()
        };
        Ok(Basemap {
            land: lines(raw.land),
            borders: lines(raw.borders),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Where a point lands in the projection: distance and azimuth from the centre.
#[derive(Clone, Copy)]
struct Polar {
    km: f64,
    /// Radians clockwise from north.
    az: f64,
}

impl Polar {
    fn xy(self) -> (f64, f64) {
        (self.km * self.az.sin(), self.km * self.az.cos())
    }
}

/// Azimuthal equidistant projection centred on `centre`, to km east (x) and north (y), with
/// clipping to the cap of `cap_km` around the centre.
pub(crate) struct Aeqd {
    centre: LatLon,
    sin0: f64,
    cos0: f64,
    cap_km: f64,
}

impl Aeqd {
    pub(crate) fn new(centre: LatLon, cap_km: f64) -> Self {
        let phi = centre.lat.to_radians();
        Self {
            centre,
            sin0: phi.sin(),
            cos0: phi.cos(),
            cap_km: cap_km.min(PI * EARTH_RADIUS_KM * 0.9),
        }
    }

    pub(crate) fn centre(&self) -> LatLon {
        self.centre
    }

    fn polar(&self, p: LatLon) -> Polar {
        let phi = p.lat.to_radians();
        let dl = (p.lon - self.centre.lon).to_radians();
        let east = phi.cos() * dl.sin();
        let north = self.cos0 * phi.sin() - self.sin0 * phi.cos() * dl.cos();
        Polar {
            km: distance_km(self.centre, p),
            az: east.atan2(north),
        }
    }

    /// km east and north of the centre (true distance and direction from it).
    pub(crate) fn project(&self, p: LatLon) -> (f64, f64) {
        self.polar(p).xy()
    }

    /// The parts of a polyline inside the cap.
    pub(crate) fn clip_line(&self, line: &[LatLon]) -> Vec<Vec<(f64, f64)>> {
        let mut pieces = Vec::new();
        let mut cur: Vec<(f64, f64)> = Vec::new();
        let pts: Vec<Polar> = line.iter().map(|&p| self.polar(p)).collect();
        if let Some(first) = pts.first().filter(|p| p.km <= self.cap_km) {
            cur.push(first.xy());
        }
        for w in pts.windows(2) {
            let (q, p) = (w[0], w[1]);
            for x in self.crossings(q, p) {
                // Crossings alternate: entering starts a piece, leaving ends it.
                cur.push(x);
                if cur.len() > 1 {
                    pieces.push(std::mem::take(&mut cur));
                }
            }
            if p.km <= self.cap_km {
                cur.push(p.xy());
            }
        }
        pieces.push(cur);
        pieces.retain(|p| p.len() > 1);
        pieces
    }

    /// A closed ring clipped to the cap, the cap's boundary standing in for what lies outside.
    /// `contains_centre` decides a ring that never enters the cap: it then covers all of it
    /// or none.
    pub(crate) fn clip_ring(
        &self,
        ring: &[LatLon],
        contains_centre: impl FnOnce() -> bool,
    ) -> Option<Vec<(f64, f64)>> {
        let pts: Vec<Polar> = ring.iter().map(|&p| self.polar(p)).collect();
        let n = pts.len();
        // Start the walk where the ring enters the cap, or at an inside point.
        let start = pts
            .iter()
            .position(|p| p.km <= self.cap_km)
            .or_else(|| (0..n).find(|&k| !self.crossings(pts[k], pts[(k + 1) % n]).is_empty()));
        let Some(start) = start else {
            return contains_centre().then(|| self.arc(0.0, 2.0 * PI));
        };
        let mut out = Vec::new();
        // An excursion outside becomes the arc of the cap's boundary it winds along: its
        // azimuth sweep, unwrapped step by step. (azimuth where it left, sweep so far)
        let mut outside: Option<(f64, f64)> = None;
        if pts[start].km <= self.cap_km {
            out.push(pts[start].xy());
        }
        for k in 1..=n {
            let (q, p) = (pts[(start + k - 1) % n], pts[(start + k) % n]);
            let mut last_az = q.az;
            for x in self.crossings(q, p) {
                let az = x.0.atan2(x.1);
                match outside.take() {
                    // Coming back in: follow the boundary the way the excursion went.
                    Some((from, sweep)) => {
                        let sweep = sweep + wrap(az - (from + sweep));
                        out.extend(self.arc(from, sweep));
                    }
                    None if out.is_empty() => {}
                    // Leaving.
                    None => outside = Some((az, 0.0)),
                }
                out.push(x);
                last_az = az;
            }
            if let Some((_, sweep)) = outside.as_mut() {
                *sweep += wrap(p.az - last_az);
            } else if p.km <= self.cap_km {
                out.push(p.xy());
            }
        }
        // A walk started on an entry crossing ends outside: close along the boundary.
        if let (Some((from, sweep)), Some(&first)) = (outside, out.first()) {
            let az = first.0.atan2(first.1);
            out.extend(self.arc(from, sweep + wrap(az - (from + sweep))));
        }
        (out.len() > 2).then_some(out)
    }

    /// Where the segment q→p crosses the cap's boundary, in order from q: one point when one
    /// end is inside, none or two when both are outside.
    fn crossings(&self, q: Polar, p: Polar) -> Vec<(f64, f64)> {
        let (q_in, p_in) = (q.km <= self.cap_km, p.km <= self.cap_km);
        // Near the antipode a short segment can project to a long chord: trust a segment
        // with both ends outside only where the projection is still tame.
        if q_in && p_in || (!q_in && !p_in && q.km.max(p.km) > TAME_KM) {
            return Vec::new();
        }
        let (a, b) = (q.xy(), p.xy());
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        // |a + t·d| = cap, for t in [0, 1].
        let qa = dx * dx + dy * dy;
        let qb = 2.0 * (a.0 * dx + a.1 * dy);
        let qc = a.0 * a.0 + a.1 * a.1 - self.cap_km * self.cap_km;
        let disc = qb * qb - 4.0 * qa * qc;
        if qa == 0.0 || disc < 0.0 {
            return Vec::new();
        }
        let root = disc.sqrt();
        let at = |t: f64| (a.0 + t * dx, a.1 + t * dy);
        let (t0, t1) = ((-qb - root) / (2.0 * qa), (-qb + root) / (2.0 * qa));
        match (q_in, p_in) {
            (true, _) => vec![at(t1.clamp(0.0, 1.0))],
            (_, true) => vec![at(t0.clamp(0.0, 1.0))],
            _ if (0.0..=1.0).contains(&t0) && (0.0..=1.0).contains(&t1) && t0 < t1 => {
                vec![at(t0), at(t1)]
            }
            _ => Vec::new(),
        }
    }

    /// Points along the cap's boundary from azimuth `from`, sweeping `sweep` radians.
    fn arc(&self, from: f64, sweep: f64) -> Vec<(f64, f64)> {
        let steps = (sweep.abs() / ARC_STEP).ceil().max(1.0) as usize;
        (0..=steps)
            .map(|i| {
                let az = from + sweep * i as f64 / steps as f64;
                Polar {
                    km: self.cap_km,
                    az,
                }
                .xy()
            })
            .collect()
    }
}

/// An angle difference into (-π, π].
fn wrap(a: f64) -> f64 {
    let a = (a + PI).rem_euclid(2.0 * PI) - PI;
    if a == -PI {
        PI
    } else {
        a
    }
}

/// Ray casting in longitude/latitude, the plane Natural Earth's rings are defined in.
pub(crate) fn ring_contains(ring: &[LatLon], p: LatLon) -> bool {
    let mut inside = false;
    for (a, b) in ring.iter().zip(ring.iter().cycle().skip(1)) {
        if (a.lat > p.lat) != (b.lat > p.lat)
            && p.lon < a.lon + (p.lat - a.lat) / (b.lat - a.lat) * (b.lon - a.lon)
        {
            inside = !inside;
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fra() -> LatLon {
        LatLon::new(50.11, 8.68)
    }

    #[test]
    fn basemap_parses_with_land_and_borders() {
        let m = basemap().unwrap();
        assert!(m.land.len() > 100, "{} land rings", m.land.len());
        assert!(m.borders.len() > 100, "{} borders", m.borders.len());
        // Frankfurt is on land, the middle of the Atlantic is not.
        let on_land = |p: LatLon| m.land.iter().filter(|r| ring_contains(r, p)).count() % 2 == 1;
        assert!(on_land(fra()));
        assert!(!on_land(LatLon::new(40.0, -35.0)));
    }

    #[test]
    fn distances_from_the_centre_are_true() {
        let aeqd = Aeqd::new(fra(), 10_000.0);
        let iad = LatLon::new(39.04, -77.49);
        let (x, y) = aeqd.project(iad);
        let d = distance_km(fra(), iad);
        assert!(((x * x + y * y).sqrt() - d).abs() < 1e-6);
        // Ashburn lies west (and a little north) of Frankfurt along the great circle.
        assert!(x < -5000.0, "{x}");
        let (x, y) = aeqd.project(LatLon::new(55.0, 8.68));
        assert!(x.abs() < 1e-6 && y > 500.0, "due north: {x} {y}");
    }

    #[test]
    fn lines_are_cut_at_the_cap() {
        let aeqd = Aeqd::new(fra(), 1000.0);
        // Along the equator-ward meridian from Frankfurt: leaves the cap after 1000 km.
        let line: Vec<LatLon> = (0..30)
            .map(|i| LatLon::new(50.11 - i as f64, 8.68))
            .collect();
        let pieces = aeqd.clip_line(&line);
        assert_eq!(pieces.len(), 1);
        let last = *pieces[0].last().unwrap();
        assert!(((last.0.powi(2) + last.1.powi(2)).sqrt() - 1000.0).abs() < 1.0);
        assert!(aeqd.clip_line(&line[20..]).is_empty());
    }

    #[test]
    fn a_ring_around_the_cap_fills_it_and_one_beside_it_does_not() {
        let aeqd = Aeqd::new(fra(), 300.0);
        // Corners only: the edges cross the cap between vertices.
        let square = |lat: f64, lon: f64, h: f64| {
            vec![
                LatLon::new(lat - h, lon - h),
                LatLon::new(lat - h, lon + h),
                LatLon::new(lat + h, lon + h),
                LatLon::new(lat + h, lon - h),
            ]
        };
        let around = square(50.11, 8.68, 20.0);
        let full = aeqd.clip_ring(&around, || ring_contains(&around, fra()));
        assert!(full.unwrap().len() > 100);
        let beside = square(20.0, 8.68, 5.0);
        assert!(aeqd
            .clip_ring(&beside, || ring_contains(&beside, fra()))
            .is_none());
        // Half in, half out: the outside half follows the cap's boundary, the short way.
        let half = square(50.11, 18.68, 10.0);
        let clipped = aeqd.clip_ring(&half, || unreachable!()).unwrap();
        let area = shoelace(&clipped).abs();
        let cap = PI * 300.0 * 300.0;
        assert!(area > 0.1 * cap && area < 0.6 * cap, "{area} of {cap}");
    }

    fn shoelace(p: &[(f64, f64)]) -> f64 {
        p.iter()
            .zip(p.iter().cycle().skip(1))
            .map(|(a, b)| a.0 * b.1 - b.0 * a.1)
            .sum::<f64>()
            / 2.0
    }
}
