//! A move seen from inside the TD: its RTT to an anchor at the claim, against its own history.
//! The anchor sits in every direction at once, so moves the probers hardly see show here.

use serde::{Deserialize, Serialize};

use super::bound::PHYSICS_MS_PER_KM;
use super::geo::{distance_km, LatLon};
use crate::input::{AnchorReport, World};
use crate::policy::Policy;

/// The TD's RTT to one anchor at the claim, now and in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorStep {
    /// The anchor's site.
    pub site: String,
    /// The smallest minimum of the history, ms.
    pub history_ms: f64,
    /// This window's minimum, ms.
    pub now_ms: f64,
    /// The largest rise a route change can bring a TD that stayed within `claim_radius_km` of
    /// the claim, plus `relocation.drift_ms` of noise and `relocation.anchor_jitter_ms` of the
    /// anchor server's own delay, ms.
    pub bound_ms: f64,
    /// `now_ms − history_ms` exceeds `bound_ms`.
    pub moved: bool,
    /// `moved`, and a prober's own rounds moved too: only then does the rise accuse (the
    /// anchor's RTT includes its server's work, which anyone can slow down).
    #[serde(default)]
    pub corroborated: bool,
    /// How much farther from the anchor the TD is now at least, km (the rise at the policy's
    /// inflation ceiling, beyond the bound).
    pub min_move_km: f64,
}

/// The largest rise, over anchors within `claim_radius_km` of the claim that have a history.
///
/// A route between the great circle and `inflation_ceiling` times it can at most multiply
/// the fiber part of the history round trip (≤ all of it) by the ceiling. When the probers
/// showed the node at the claim before (`in_metro`: not slower than the landmark at every
/// prober, which a relay's detour would make it), the TD was within `claim_radius_km` + the
/// anchor's offset of the anchor, which bounds that fiber part much tighter. The anchor's fixed
/// delay (TLS, host) is in both minima, but the server's work varies (load, a new backend): up
/// to `relocation.anchor_jitter_ms` is allowed on top. A move of 100 km away from the anchor
/// adds ≥ 1 ms of fiber. The caller accuses only when a prober's own rounds moved too.
pub(crate) fn check(
    world: &World,
    now: &[AnchorReport],
    history: &[AnchorReport],
    claim: LatLon,
    in_metro: bool,
    policy: &Policy,
) -> Option<AnchorStep> {
    let ms = |ns: u64| ns as f64 / 1e6;
    let ceiling = policy.inflation_ceiling;
    let mut best: Option<AnchorStep> = None;
    for site in world.sites.iter() {
        let off = distance_km(site.position(), claim);
        if off > policy.claim_radius_km {
            continue;
        }
        let min_of = |v: &[AnchorReport]| {
            (v.iter())
                .filter(|a| a.site == site.name)
                .map(|a| ms(a.min_rtt_ns))
                .min_by(f64::total_cmp)
        };
        let (Some(now_ms), Some(history_ms)) = (min_of(now), min_of(history)) else {
            continue;
        };
        let physics_km = history_ms / PHYSICS_MS_PER_KM;
        let reach_km = if in_metro {
            (policy.claim_radius_km + off).min(physics_km)
        } else {
            physics_km
        };
        let bound_ms = reach_km * PHYSICS_MS_PER_KM * (ceiling - 1.0)
            + policy.relocation.drift_ms
            + policy.relocation.anchor_jitter_ms;
        let rise = now_ms - history_ms;
        let step = AnchorStep {
            site: site.name.clone(),
            history_ms,
            now_ms,
            bound_ms,
            moved: rise > bound_ms,
            corroborated: false,
            min_move_km: ((rise - bound_ms) / (PHYSICS_MS_PER_KM * ceiling)).max(0.0),
        };
        if best
            .as_ref()
            .is_none_or(|b| rise - bound_ms > b.now_ms - b.history_ms - b.bound_ms)
        {
            best = Some(step);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Site;

    fn world() -> World {
        World {
            sites: vec![
                Site {
                    name: "fra".into(),
                    lat: 50.11,
                    lon: 8.68,
                },
                Site {
                    name: "waw".into(),
                    lat: 52.23,
                    lon: 21.01,
                },
            ],
            ..World::default()
        }
    }

    fn report(site: &str, ms: f64) -> Vec<AnchorReport> {
        vec![AnchorReport {
            site: site.into(),
            min_rtt_ns: (ms * 1e6) as u64,
            samples: 5,
        }]
    }

    /// The step of an anchor at fra for a TD claimed at fra, `history` → `now` ms.
    fn fra_step(now: f64, history: f64, in_metro: bool) -> AnchorStep {
        let fra = LatLon::new(50.11, 8.68);
        let (w, p) = (world(), Policy::default());
        check(
            &w,
            &report("fra", now),
            &report("fra", history),
            fra,
            in_metro,
            &p,
        )
        .expect("an anchor at the claim with a history")
    }

    #[test]
    fn a_rise_beyond_any_metro_route_change_is_a_move() {
        // 20 km from the anchor at 1.2: 0.08 ms fixed + 0.48 ms; 200 km away at 1.1: + 4.4 ms
        let step = fra_step(4.48, 0.56, true);
        assert!(step.moved, "{step:?}");
        assert!(step.min_move_km > 20.0, "{step:?}");
        // a TD that was never shown in the metro (a relay's TD 100 km away, history 2.1 ms):
        // its own route change may add that much
        let step = fra_step(4.1, 2.1, false);
        assert!(!step.moved, "{step:?}");
        // the same TD, its anchor route now at the ceiling (3.0): + 1.2 ms, never a move
        let step = fra_step(1.28, 0.56, true);
        assert!(!step.moved, "{step:?}");
        // ... nor its anchor server 1.9 ms slower on top (load, a new backend)
        let step = fra_step(3.18, 0.56, true);
        assert!(!step.moved, "{step:?}");
        // the worst honest case: 30 km from the anchor, 1.0 → 3.0
        let (lo, hi) = (0.08 + 30.0 * 0.01, 0.08 + 30.0 * 0.03);
        let step = fra_step(hi, lo, true);
        assert!(!step.moved, "{step:?}");
    }

    #[test]
    fn far_anchors_and_missing_history_say_nothing() {
        let (w, p) = (world(), Policy::default());
        let fra = LatLon::new(50.11, 8.68);
        // an anchor 900 km away: any route change there dwarfs a metro
        assert!(check(
            &w,
            &report("waw", 30.0),
            &report("waw", 12.0),
            fra,
            true,
            &p
        )
        .is_none());
        assert!(check(&w, &report("fra", 3.0), &[], fra, true, &p).is_none());
    }
}
