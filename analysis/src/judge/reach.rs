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
    /// How far the node's RTT may differ from the landmark's and still match it, ms.
    match_slack_ms: f64,
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
                // the route from elsewhere is inflated between light in fiber and the
                // landmark's path (whose fixed delays make its inflation an upper estimate)
                let step = (d - self.d_claim) * PHYSICS_MS_PER_KM;
                let (a, b) = (rtt + step, rtt + step * infl);
                self.rtt >= a.min(b) - slack && self.rtt <= a.max(b) + slack
            }
            None => true,
        }
    }
}

/// The farthest the TD can be from the claim given the used probers (site positions in `at`,
/// same order) and the anchors timed from inside the TD (site positions in `anchors`).
pub(crate) fn reach(
    used: &[(LatLon, &ProberDistance)],
    anchors: &[(LatLon, &AnchorDistance)],
    claim: LatLon,
    policy: &Policy,
) -> Reach {
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
                // the position is tested where it is: no metro allowance, only the noise
                // between a node and its landmark; the landmark path's inflation is measured, so
                // no ceiling (capping it let nodes 200 km away fit nowhere, hence be located)
                (
                    d.expected_rtt_ms,
                    infl.max(1.0),
                    policy.calibrated_excess_ms,
                )
            });
            Some(Probe {
                at: *at,
                d_claim: d.distance_to_claim_km,
                rtt,
                match_slack_ms: d.slack_ms,
                landmark,
            })
        })
        .collect();
    if probes.is_empty() && anchors.is_empty() {
        return Reach {
            km: f64::INFINITY,
            how: "no prober or anchor timing".into(),
        };
    }
    // Relayed: a relay at the claim adds the TD's detour to every prober, so the least-delayed
    // prober bounds it (over the landmark's RTT with one, over light in fiber without); an
    // anchor timed from inside the TD bounds the TD by physics, relayed or not.
    let detour = (probes.iter())
        .map(|p| {
            let floor = p.landmark.map_or(p.d_claim * PHYSICS_MS_PER_KM, |l| l.0);
            bound::max_distance_km(p.rtt - floor)
        })
        .fold(f64::INFINITY, f64::min);
    let anchor = (anchors.iter())
        .map(|(_, a)| a.max_distance_km + a.distance_to_claim_km)
        .fold(f64::INFINITY, f64::min);
    let relayed = detour.min(anchor);
    // Not relayed, the node sits where every prober's RTT and every anchor's fits: the
    // farthest ring with such a position (the next ring out bounds it).
    let fits = |p: LatLon| {
        probes.iter().all(|x| x.fits(p))
            && (anchors.iter()).all(|(at, a)| distance_km(*at, p) <= a.max_distance_km)
    };
    let ring = (RINGS_KM.iter())
        .rev()
        .find(|&&r| {
            (0..BEARINGS).any(|b| fits(destination(claim, b as f64 * 360.0 / BEARINGS as f64, r)))
        })
        .map(|&r| {
            let next = RINGS_KM.iter().find(|&&n| n > r);
            next.copied().unwrap_or(f64::INFINITY)
        })
        // no ring fits: the claim itself still may (then the first ring bounds the node);
        // if not even the claim fits, the model explains nothing and bounds nothing
        .unwrap_or(if fits(claim) {
            RINGS_KM[0]
        } else {
            f64::INFINITY
        });
    let bounded = |v: f64| {
        if v.is_finite() {
            format!("{v:.0} km")
        } else {
            "any distance".into()
        }
    };
    let calibrated = probes.iter().filter(|p| p.landmark.is_some()).count();
    // With a landmark at the claim at every prober, the landmark's RTTs are measured evidence
    // and decide alone: the rings rest on a model (the node's paths stretched like the
    // landmark's) that real paths do not follow, locating nodes whose RTTs fit no position at
    // all and withholding it from nodes whose probers sit on one side.
    if probes.len() >= policy.min_probers.max(2) && calibrated == probes.len() {
        return matched(&probes, anchors.len(), ring, policy);
    }
    Reach {
        km: ring.max(relayed),
        how: format!(
            "{} probers ({calibrated} with a landmark at the claim) and {} anchors: a node \
             elsewhere within {}, a relay's TD within {}",
            probes.len(),
            anchors.len(),
            if ring.is_finite() {
                bounded(ring)
            } else {
                format!("> {:.0} km", RINGS_KM[RINGS_KM.len() - 1])
            },
            bounded(relayed)
        ),
    }
}

/// Every prober has a landmark at the claim: the node is located within the metro only if its
/// RTT matches the landmark's at every prober, within the noise and what a position anywhere
/// in the metro adds on a path inflated up to the ceiling. Along each prober's path a TD
/// farther or nearer changes the RTT by at least light in fiber, so the tolerance bounds it.
/// A mismatch accuses nothing (a faster or slower route is no proof): it only locates nothing.
fn matched(probes: &[Probe], anchors: usize, ring: f64, policy: &Policy) -> Reach {
    let mut worst = 0.0_f64;
    let mut off = Vec::new();
    for p in probes {
        let Some((lm, infl, _)) = p.landmark else {
            continue;
        };
        let (diff, tol) = (p.rtt - lm, tolerance(p, infl, policy));
        worst = worst.max(diff.abs());
        if diff.abs() > tol {
            off.push(format!("{diff:+.2} ms (tolerance ±{tol:.2})"));
        }
    }
    let geometry = if ring.is_finite() {
        format!("{ring:.0} km")
    } else {
        "no bound".into()
    };
    if !off.is_empty() {
        return Reach {
            km: f64::INFINITY,
            how: format!(
                "{} probers with a landmark at the claim and {anchors} anchors: the node's RTT                  differs from the landmark's at {} of them ({}): nothing measured places it                  at the claim (no accusation: only the 2/3 c bound or a uniform excess                  accuses)",
                probes.len(),
                off.len(),
                off.join(", ")
            ),
        };
    }
    let tol = (probes.iter())
        .filter_map(|p| Some(tolerance(p, p.landmark?.1, policy)))
        .fold(0.0, f64::max);
    let along = bound::max_distance_km(tol);
    Reach {
        km: along,
        how: format!(
            "{} probers, all with a landmark at the claim, and {anchors} anchors: the node's RTT              matches the landmark's at every prober (largest difference {worst:.2} ms,              tolerance ±{tol:.2} ms: within {along:.0} km along each prober's path; the              probers' geometry alone would give {geometry})",
            probes.len()
        ),
    }
}

/// How far a node in the claim's metro may differ from the landmark at one prober, ms: the
/// noise, plus the metro's radius on a path inflated like the landmark's (measured; the
/// ceiling caps it).
fn tolerance(p: &Probe, landmark_inflation: f64, policy: &Policy) -> f64 {
    let infl = landmark_inflation.min(policy.inflation_ceiling);
    p.match_slack_ms + policy.claim_radius_km * PHYSICS_MS_PER_KM * infl
}
