//! How far from the claim the evidence still lets the TD be: the verdict's uncertainty in km.
//! `located` needs it below `max_located_km`; a widened, uncalibrated bound is no location.

use super::bound::{self, PHYSICS_MS_PER_KM};
use super::geo::{destination, distance_km, LatLon};
use super::verdict::{AnchorDistance, ProberDistance};
use crate::policy::Policy;

/// Rings (km from the claim) on which positions consistent with the probers are looked for.
const RINGS_KM: [f64; 10] = [
    25.0, 50.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0, 2000.0, 5000.0,
];
/// Bearings tried on each ring.
const BEARINGS: usize = 180;

/// The uncertainty and what bounds it.
#[derive(Debug, Clone)]
pub(crate) struct Reach {
    /// The TD is within this many km of the claim.
    pub(crate) km: f64,
    /// Which evidence bounds it, in words.
    pub(crate) how: String,
}

/// One used prober as the consistency test reads it.
struct Probe {
    at: LatLon,
    d_claim: f64,
    rtt: f64,
    /// With a landmark at the claim: its RTT, the path inflation it shows, the slack.
    landmark: Option<(f64, f64, f64)>,
}

impl Probe {
    /// Could a node at `p`, not relayed, give this prober its RTT? Physics always; with a
    /// landmark at the claim, also within the slack of what the landmark's path predicts
    /// there (faster or slower: this widens no accusation, it only withholds `located`).
    fn fits(&self, p: LatLon) -> bool {
        let d = distance_km(self.at, p);
        if d * PHYSICS_MS_PER_KM > self.rtt {
            return false;
        }
        match self.landmark {
            Some((rtt, infl, slack)) => {
                let want = rtt + (d - self.d_claim) * infl * PHYSICS_MS_PER_KM;
                (self.rtt - want).abs() <= slack
            }
            None => true,
        }
    }
}

/// The farthest the TD can be from the claim given the used probers (site positions in `at`,
/// same order) and the anchors timed from inside the TD.
pub(crate) fn reach(
    used: &[(LatLon, &ProberDistance)],
    anchors: &[AnchorDistance],
    claim: LatLon,
    policy: &Policy,
) -> Reach {
    // An anchor timed from inside the TD bounds it by physics, relayed or not.
    let anchor = (anchors.iter())
        .map(|a| (a.max_distance_km + a.distance_to_claim_km, a))
        .min_by(|x, y| x.0.total_cmp(&y.0));
    let probes: Vec<Probe> = (used.iter())
        .filter_map(|(at, d)| {
            let rtt = d.min_eff_rtt_ms?;
            let at_claim = (d.reference.as_deref()).is_some_and(|r| r.starts_with("landmark"));
            let landmark = at_claim.then(|| {
                let infl = if d.distance_to_claim_km > 0.0 {
                    d.expected_rtt_ms / (d.distance_to_claim_km * PHYSICS_MS_PER_KM)
                } else {
                    policy.inflation_ceiling
                };
                (
                    d.expected_rtt_ms,
                    infl.clamp(1.0, policy.inflation_ceiling),
                    d.slack_ms,
                )
            });
            Some(Probe {
                at: *at,
                d_claim: d.distance_to_claim_km,
                rtt,
                landmark,
            })
        })
        .collect();
    // A relay at the claim adds its detour to every prober: the least-delayed prober bounds it
    // (over the landmark's RTT with one, over light in fiber without).
    let detour = (probes.iter())
        .map(|p| {
            let floor = p.landmark.map_or(p.d_claim * PHYSICS_MS_PER_KM, |l| l.0);
            bound::max_distance_km(p.rtt - floor)
        })
        .fold(f64::INFINITY, f64::min);
    // Not relayed, the node sits where every prober's RTT fits: the farthest ring with such a
    // position (the next ring out bounds it).
    let ring = (RINGS_KM.iter())
        .rev()
        .find(|&&r| {
            (0..BEARINGS).any(|b| {
                let p = destination(claim, b as f64 * 360.0 / BEARINGS as f64, r);
                probes.iter().all(|x| x.fits(p))
            })
        })
        .map(|&r| {
            let next = RINGS_KM.iter().find(|&&n| n > r);
            next.copied().unwrap_or(f64::INFINITY)
        })
        .unwrap_or(RINGS_KM[0]);
    let calibrated = probes.iter().filter(|p| p.landmark.is_some()).count();
    let probers = if probes.is_empty() {
        None
    } else {
        Some((
            ring.max(detour),
            format!(
                "{} probers ({calibrated} with a landmark at the claim): a relay's detour ≤ \
                 {detour:.0} km, a node elsewhere within {} km",
                probes.len(),
                if ring.is_finite() {
                    format!("{ring:.0}")
                } else {
                    format!("> {:.0}", RINGS_KM[RINGS_KM.len() - 1])
                }
            ),
        ))
    };
    match (anchor, probers) {
        (Some((a, an)), p) if p.as_ref().is_none_or(|p| a <= p.0) => Reach {
            km: a,
            how: format!(
                "the TD's own {:.2} ms to anchor {} ({:.0} km from the claim)",
                an.min_rtt_ms, an.site, an.distance_to_claim_km
            ),
        },
        (_, Some((km, how))) => Reach { km, how },
        (_, None) => Reach {
            km: f64::INFINITY,
            how: "no prober or anchor timing".into(),
        },
    }
}
