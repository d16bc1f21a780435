//! Relocation detection: two-sided CUSUM on each prober's per-round minimum RTT against a
//! baseline (history, or the first rounds), requiring several probers to agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::RelocationPolicy;

/// One prober's rounds: `(round index, minimum effective RTT in ms)`, ascending, rounds with
/// too few answers already removed.
pub type Rounds = Vec<(u64, f64)>;

/// Group `(sent_ns, effective rtt ms)` samples into rounds of `round_ms`, counted from the
/// series' first sample, keeping each round's minimum when it has ≥ `min_samples` answers.
/// The result does not depend on the order of `samples`.
pub fn rounds(samples: &[(u64, f64)], round_ms: f64, min_samples: usize) -> Rounds {
    let Some(t0) = samples.iter().map(|s| s.0).min() else {
        return Vec::new();
    };
    rounds_from(samples, t0, round_ms, min_samples)
}

/// [`rounds`] counted from `t0` (another series' first sample, so both share round
/// indices); samples before `t0` are left out.
pub fn rounds_from(samples: &[(u64, f64)], t0: u64, round_ms: f64, min_samples: usize) -> Rounds {
    let round_ns = (round_ms * 1e6).max(1.0);
    let mut by_round: BTreeMap<u64, (usize, f64)> = BTreeMap::new();
    for &(t, rtt) in samples.iter().filter(|s| s.0 >= t0) {
        let r = ((t - t0) as f64 / round_ns).floor() as u64;
        let e = by_round.entry(r).or_insert((0, f64::INFINITY));
        e.0 += 1;
        e.1 = e.1.min(rtt);
    }
    by_round
        .into_iter()
        .filter(|(_, (n, _))| *n >= min_samples)
        .map(|(r, (_, m))| (r, m))
        .collect()
}

/// The node's round minima less the landmark's, over the rounds both have: what the two
/// paths share (the prober's route to the landmark's site) cancels.
pub fn difference(node: &[(u64, f64)], landmark: &[(u64, f64)]) -> Rounds {
    let lm: BTreeMap<u64, f64> = landmark.iter().copied().collect();
    (node.iter())
        .filter_map(|&(r, m)| Some((r, m - lm.get(&r)?)))
        .collect()
}

/// What CUSUM found for one prober.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProberShift {
    pub prober: String,
    pub baseline_ms: f64,
    /// Round at which the accumulated deviation crossed the threshold.
    pub alarm_round: Option<u64>,
    /// Median round minimum after the alarm minus the baseline (sign = direction).
    pub shift_ms: Option<f64>,
    /// Rounds evaluated (after the baseline rounds).
    pub rounds: usize,
    /// Largest CUSUM statistic reached (either direction), ms: compare with the threshold, or
    /// sweep the threshold over it offline.
    pub max_stat_ms: f64,
    /// Alarms discarded because the shift did not persist (stalls, route flaps).
    pub transients: usize,
    /// Round the alarming deviation began (the statistic's last departure from zero).
    #[serde(default)]
    pub onset_round: Option<u64>,
    /// The step of the round minima across the common onset (medians of the rounds just
    /// after minus just before), for every evaluated prober (alarming or not) once a move is
    /// suspected: what the geometric fit reads.
    #[serde(default)]
    pub settled_shift_ms: Option<f64>,
    /// Its rounds were the node's minima less a landmark's at the claim (route changes of
    /// the prober's path cancel): `baseline_ms` and the shifts are differences.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub landmark_differenced: bool,
}

/// Relocation finding over all probers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relocation {
    pub detected: bool,
    /// Probers with enough rounds to be evaluated.
    pub evaluated: usize,
    pub shifts: Vec<ProberShift>,
    /// Median alarm round of the alarming probers (of the largest group with agreeing onsets).
    pub change_round: Option<u64>,
    /// Per alarming prober: the minimum round RTT from its alarm on (for the "after" region).
    pub after_min_ms: Vec<(String, f64)>,
    /// Median onset of the agreeing alarms.
    #[serde(default)]
    pub onset_round: Option<u64>,
    /// Why enough alarms were still not a move (onsets apart, or no single new position fits
    /// the shifts); None when nothing was rejected.
    #[serde(default)]
    pub rejected: Option<String>,
    /// Where the shifts put the node after the move (a fitting position nearest the centroid
    /// of all of them).
    #[serde(default)]
    pub new_position: Option<crate::input::LatLon>,
    /// A move the shifts allow but do not prove (two landmark-differenced steps only, or the
    /// node's own rounds moving while the landmark stepped too): the node is not `located`,
    /// and `relocated` only with a third prober or the TD's anchor step tied to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// The TD's RTT to an anchor at the claim against its history, when it has one; a rise
    /// beyond `bound_ms` is a move by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_step: Option<super::anchor_step::AnchorStep>,
}

/// One prober's CUSUM run against its baseline.
struct Run {
    alarm: Option<(usize, u64)>,
    onset: Option<u64>,
    transients: usize,
    max_stat: f64,
}

fn cusum(rest: &[(u64, f64)], baseline: f64, p: &RelocationPolicy) -> Run {
    let (mut up, mut down) = (0.0f64, 0.0f64);
    // first round of the current excursion in each direction
    let (mut up_from, mut down_from) = (None, None);
    let mut run = Run {
        alarm: None,
        onset: None,
        transients: 0,
        max_stat: 0.0,
    };
    for (i, &(round, x)) in rest.iter().enumerate() {
        up = (up + x - baseline - p.drift_ms).max(0.0);
        down = (down + baseline - x - p.drift_ms).max(0.0);
        up_from = if up > 0.0 {
            up_from.or(Some(round))
        } else {
            None
        };
        down_from = if down > 0.0 {
            down_from.or(Some(round))
        } else {
            None
        };
        run.max_stat = run.max_stat.max(up).max(down);
        if run.alarm.is_none() && (up > p.threshold_ms || down > p.threshold_ms) {
            // Offline, the rounds after the alarm are known: a relocation persists, a
            // host stall or route flap does not. Confirm before accepting the alarm.
            let dir = if up > p.threshold_ms { 1.0 } else { -1.0 };
            let after = &rest[i..];
            let mut dev: Vec<f64> = after.iter().map(|r| r.1 - baseline).collect();
            if after.len() >= p.confirm_rounds && median(&mut dev) * dir >= p.min_shift_ms {
                run.alarm = Some((i, round));
                run.onset = if dir > 0.0 { up_from } else { down_from };
            } else {
                run.transients += 1;
                up = 0.0;
                down = 0.0;
                up_from = None;
                down_from = None;
            }
        }
    }
    run
}

/// Run CUSUM per prober. `series` holds `(prober, rounds, external baseline ms)`. Alarms
/// count together only when their onsets agree (within `onset_rounds`); the caller checks the
/// settled shifts against geometry ([`super::moved`]).
pub fn detect(series: &[(String, Rounds, Option<f64>)], p: &RelocationPolicy) -> Relocation {
    let mut shifts = Vec::new();
    let mut evaluated: Vec<(f64, &[(u64, f64)])> = Vec::new();
    for (prober, rounds, external) in series {
        let (baseline, rest) = match external {
            Some(b) => (*b, &rounds[..]),
            None => {
                // start-up rounds (processes launching, handshakes) are not a baseline
                let usable = rounds.get(p.warmup_rounds..).unwrap_or(&[]);
                if usable.len() <= p.baseline_rounds {
                    continue;
                }
                let mut first: Vec<f64> = usable[..p.baseline_rounds].iter().map(|r| r.1).collect();
                (median(&mut first), &usable[p.baseline_rounds..])
            }
        };
        if rest.is_empty() {
            continue;
        }
        let run = cusum(rest, baseline, p);
        let shift_ms = run.alarm.map(|(i, _)| {
            let mut after: Vec<f64> = rest[i..].iter().map(|r| r.1).collect();
            median(&mut after) - baseline
        });
        shifts.push(ProberShift {
            prober: prober.clone(),
            baseline_ms: baseline,
            alarm_round: run.alarm.map(|a| a.1),
            shift_ms,
            rounds: rest.len(),
            max_stat_ms: run.max_stat,
            transients: run.transients,
            onset_round: run.onset,
            settled_shift_ms: None,
            landmark_differenced: false,
        });
        evaluated.push((baseline, rest));
    }
    // the largest group of alarms whose onsets lie within `onset_rounds` of each other
    let mut onsets: Vec<(u64, usize)> = (shifts.iter().enumerate())
        .filter(|(_, s)| s.alarm_round.is_some())
        .map(|(i, s)| (s.onset_round.or(s.alarm_round).unwrap_or(0), i))
        .collect();
    onsets.sort_unstable();
    let mut group: &[(u64, usize)] = &[];
    for i in 0..onsets.len() {
        let j = onsets[i..]
            .iter()
            .take_while(|o| o.0 <= onsets[i].0 + p.onset_rounds)
            .count();
        if j > group.len() {
            group = &onsets[i..i + j];
        }
    }
    let mut alarms: Vec<f64> = (group.iter())
        .filter_map(|&(_, i)| shifts[i].alarm_round.map(|r| r as f64))
        .collect();
    let mut group_onsets: Vec<f64> = group.iter().map(|o| o.0 as f64).collect();
    let detected = alarms.len() >= p.min_probers;
    let rejected = (!detected && onsets.len() >= p.min_probers).then(|| {
        format!(
            "{} probers alarmed but their onsets (rounds {}) are more than {} rounds apart: \
             independent route changes, not one move",
            onsets.len(),
            onsets
                .iter()
                .map(|o| o.0.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            p.onset_rounds
        )
    });
    let change_round = (!alarms.is_empty()).then(|| median(&mut alarms) as u64);
    let onset_round = (!group_onsets.is_empty()).then(|| median(&mut group_onsets) as u64);
    let mut after_min_ms = Vec::new();
    if let Some(onset) = onset_round.filter(|_| detected) {
        for (s, (baseline, rest)) in shifts.iter_mut().zip(&evaluated) {
            let after: Vec<f64> = (rest.iter())
                .filter(|r| r.0 >= onset)
                .map(|r| r.1)
                .collect();
            if !after.is_empty() {
                let m = after.iter().copied().fold(f64::INFINITY, f64::min);
                if s.alarm_round.is_some() {
                    after_min_ms.push((s.prober.clone(), m));
                }
                s.settled_shift_ms = Some(step_at(rest, onset, *baseline, p.confirm_rounds));
            }
        }
    }
    Relocation {
        detected,
        evaluated: shifts.len(),
        shifts,
        change_round,
        after_min_ms,
        onset_round,
        rejected,
        new_position: None,
        held: None,
        anchor_step: None,
    }
}

/// The step of one prober's round minima across `onset`: the median of the `k` (≥ 3) rounds
/// just after it minus the median of the `k` just before, leaving out the round on each side
/// of the onset (the move may fall inside either). A move shifts every path at that instant;
/// a route change earlier or later in the window is not part of it, so it is measured at the
/// onset, not against the window's baseline. Without rounds before the onset, the baseline.
fn step_at(rest: &[(u64, f64)], onset: u64, baseline: f64, k: usize) -> f64 {
    let k = k.max(3);
    let mut before: Vec<f64> = (rest.iter().rev())
        .filter(|r| r.0 + 1 < onset)
        .take(k)
        .map(|r| r.1)
        .collect();
    let mut after: Vec<f64> = (rest.iter())
        .filter(|r| r.0 > onset + 1)
        .take(k)
        .map(|r| r.1)
        .collect();
    if after.is_empty() {
        after = rest.iter().filter(|r| r.0 >= onset).map(|r| r.1).collect();
    }
    let from = if before.is_empty() {
        baseline
    } else {
        median(&mut before)
    };
    median(&mut after) - from
}

/// [`step_at`] for rounds that need rounds on both sides of `onset`: None without them.
pub(crate) fn step_across(rounds: &[(u64, f64)], onset: u64, k: usize) -> Option<f64> {
    let before = rounds.iter().any(|r| r.0 + 1 < onset);
    let after = rounds.iter().any(|r| r.0 >= onset);
    (before && after).then(|| step_at(rounds, onset, f64::NAN, k))
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(
        name: &str,
        before: f64,
        after: f64,
        n: u64,
        switch: u64,
    ) -> (String, Rounds, Option<f64>) {
        let r = (0..n)
            .map(|i| {
                (
                    i,
                    if i < switch { before } else { after } + (i % 3) as f64 * 0.05,
                )
            })
            .collect();
        (name.into(), r, None)
    }

    #[test]
    fn shift_at_two_probers_is_detected() {
        let p = RelocationPolicy::default();
        let s = [
            series("a", 5.0, 9.0, 20, 10),
            series("b", 7.0, 3.0, 20, 10),
            series("c", 6.0, 6.0, 20, 10),
        ];
        let r = detect(&s, &p);
        assert!(r.detected, "{r:?}");
        assert_eq!(r.change_round, Some(10)); // h = 1.5 ms: a 4 ms shift alarms in its first round
        assert_eq!(r.onset_round, Some(10));
        let a = &r.shifts[0];
        assert!((a.shift_ms.unwrap() - 4.0).abs() < 0.2);
    }

    #[test]
    fn a_route_change_before_the_onset_is_no_step_at_it() {
        let p = RelocationPolicy::default();
        let s = [
            series("a", 5.0, 9.0, 24, 14),
            series("b", 7.0, 3.0, 24, 14),
            series("c", 6.0, 8.0, 24, 7), // its route changed 7 rounds earlier
        ];
        let r = detect(&s, &p);
        assert!(r.detected, "{r:?}");
        let step = |i: usize| r.shifts[i].settled_shift_ms.unwrap();
        assert!((step(0) - 4.0).abs() < 0.2, "{r:?}");
        assert!(step(2).abs() < 0.2, "{r:?}");
    }

    #[test]
    fn one_prober_shift_or_spike_is_not_relocation() {
        let p = RelocationPolicy::default();
        let mut spiky = series("c", 6.0, 6.0, 20, 10);
        spiky.1[12].1 += 4.0;
        let s = [
            series("a", 5.0, 9.0, 20, 10),
            series("b", 7.0, 7.0, 20, 10),
            spiky,
        ];
        let r = detect(&s, &p);
        assert!(!r.detected, "{r:?}");
    }

    #[test]
    fn host_stall_and_slow_start_are_not_relocation() {
        let p = RelocationPolicy::default();
        // every prober +2.5 ms for 4 rounds mid-window (a stalled host), and a slow first round
        let stalled = |name: &str, base: f64| {
            let mut s = series(name, base, base, 20, 20);
            for r in &mut s.1[9..13] {
                r.1 += 2.5;
            }
            s.1[0].1 += 5.0;
            s
        };
        let s = [stalled("a", 5.0), stalled("b", 7.0), stalled("c", 6.0)];
        let r = detect(&s, &p);
        assert!(!r.detected, "{r:?}");
        assert!(r.shifts.iter().all(|x| x.transients >= 1), "{r:?}");
    }

    #[test]
    fn shift_too_late_to_confirm_is_not_reported() {
        let p = RelocationPolicy::default();
        let s = [
            series("a", 5.0, 15.0, 20, 19),
            series("b", 7.0, 1.0, 20, 19),
        ];
        assert!(!detect(&s, &p).detected);
    }

    #[test]
    fn rounds_skip_sparse_rounds() {
        let mut samples = Vec::new();
        for i in 0..30u64 {
            samples.push((i * 100_000_000, 5.0 + i as f64));
        }
        samples.push((10_000_000_000, 1.0)); // a lone late sample: round 100 with 1 answer
        let r = rounds(&samples, 1000.0, 5);
        assert_eq!(r, vec![(0, 5.0), (1, 15.0), (2, 25.0)]);
    }
}
