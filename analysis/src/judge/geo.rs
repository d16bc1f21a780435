//! Great-circle geometry on a spherical Earth (mean radius of WGS84), in kilometres and degrees.

/// Mean Earth radius (IUGG R1 of WGS84), km. The sphere is off by < 0.5 % from the ellipsoid,
/// far below what round-trip timing resolves.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

pub use crate::input::LatLon;

/// Great-circle distance (haversine), km.
pub fn distance_km(a: LatLon, b: LatLon) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    // clamp: rounding can push h a hair above 1 for antipodal points
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The point reached from `from` after `dist_km` along the initial bearing `bearing_deg`.
pub fn destination(from: LatLon, bearing_deg: f64, dist_km: f64) -> LatLon {
    let d = dist_km / EARTH_RADIUS_KM;
    let b = bearing_deg.to_radians();
    let la1 = from.lat.to_radians();
    let lo1 = from.lon.to_radians();
    let la2 = (la1.sin() * d.cos() + la1.cos() * d.sin() * b.cos())
        .clamp(-1.0, 1.0)
        .asin();
    let lo2 = lo1 + (b.sin() * d.sin() * la1.cos()).atan2(d.cos() - la1.sin() * la2.sin());
    let mut lon = lo2.to_degrees();
    lon = (lon + 540.0).rem_euclid(360.0) - 180.0;
    LatLon::new(la2.to_degrees(), lon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        let fra = LatLon::new(50.11, 8.68);
        let ams = LatLon::new(52.37, 4.90);
        let nyc = LatLon::new(40.71, -74.01);
        let d = distance_km(fra, ams);
        assert!((d - 364.0).abs() < 5.0, "fra-ams {d}");
        let d = distance_km(fra, nyc);
        assert!((d - 6200.0).abs() < 60.0, "fra-nyc {d}");
        assert_eq!(distance_km(fra, fra), 0.0);
    }

    #[test]
    fn destination_round_trips() {
        let fra = LatLon::new(50.11, 8.68);
        for bearing in [0.0, 45.0, 135.0, 270.0] {
            let p = destination(fra, bearing, 400.0);
            assert!((distance_km(fra, p) - 400.0).abs() < 0.01);
        }
    }
}
