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
    let round_ns = (round_ms * 1e6).max(1.0);
    let mut by_round: BTreeMap<u64, (usize, f64)> = BTreeMap::new();
    for &(t, rtt) in samples {
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
}

/// Relocation finding over all probers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relocation {
    pub detected: bool,
    /// Probers with enough rounds to be evaluated.
    pub evaluated: usize,
    pub shifts: Vec<ProberShift>,
    /// Median alarm round of the alarming probers.
    pub change_round: Option<u64>,
    /// Per alarming prober: the minimum round RTT from its alarm on (for the "after" region).
    pub after_min_ms: Vec<(String, f64)>,
}

/// Run CUSUM per prober. `series` holds `(prober, rounds, external baseline ms)`.
pub fn detect(series: &[(String, Rounds, Option<f64>)], p: &RelocationPolicy) -> Relocation {
    let mut shifts = Vec::new();
    let mut after_min_ms = Vec::new();
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
        let (mut up, mut down) = (0.0f64, 0.0f64);
        let mut alarm = None;
        let mut transients = 0;
        let mut max_stat = 0.0f64;
        for (i, &(round, x)) in rest.iter().enumerate() {
            up = (up + x - baseline - p.drift_ms).max(0.0);
            down = (down + baseline - x - p.drift_ms).max(0.0);
            max_stat = max_stat.max(up).max(down);
            if alarm.is_none() && (up > p.threshold_ms || down > p.threshold_ms) {
                // Offline, the rounds after the alarm are known: a relocation persists, a
                // host stall or route flap does not. Confirm before accepting the alarm.
                let dir = if up > p.threshold_ms { 1.0 } else { -1.0 };
                let after = &rest[i..];
                let mut dev: Vec<f64> = after.iter().map(|r| r.1 - baseline).collect();
                if after.len() >= p.confirm_rounds && median(&mut dev) * dir >= p.min_shift_ms {
                    alarm = Some((i, round));
                } else {
                    transients += 1;
                    up = 0.0;
                    down = 0.0;
                }
            }
        }
        let shift_ms = alarm.map(|(i, _)| {
            let mut after: Vec<f64> = rest[i..].iter().map(|r| r.1).collect();
            median(&mut after) - baseline
        });
        if let Some((i, _)) = alarm {
            let m = rest[i..].iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
            after_min_ms.push((prober.clone(), m));
        }
        shifts.push(ProberShift {
            prober: prober.clone(),
            baseline_ms: baseline,
            alarm_round: alarm.map(|a| a.1),
            shift_ms,
            rounds: rest.len(),
            max_stat_ms: max_stat,
            transients,
        });
    }
    let mut alarms: Vec<f64> = shifts
        .iter()
        .filter_map(|s| s.alarm_round.map(|r| r as f64))
        .collect();
    let detected = alarms.len() >= p.min_probers;
    let change_round = (!alarms.is_empty()).then(|| median(&mut alarms) as u64);
    Relocation {
        detected,
        evaluated: shifts.len(),
        shifts,
        change_round,
        after_min_ms,
    }
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
        assert_eq!(r.change_round, Some(11));
        let a = &r.shifts[0];
        assert!((a.shift_ms.unwrap() - 4.0).abs() < 0.2);
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
