//! The numbers every rule reads: per-prober distances and bounds, anchor distances, the
//! feasible region, relocation statistics and the scores, computed before any rule decides.

use super::bound::{self, Bestline};
use super::geo::distance_km;
use super::region::{self, Disc, Region};
use super::relocation::{self, Relocation, Rounds};
use super::verdict::{ms, AnchorDistance, Judging, ProberDistance, Scores};
use super::{anchor_step, frankenstein, joint, moved};
use crate::input::{LatLon, ProberSeries};

/// What the timing rules need beyond the judgement's own fields.
pub(super) struct Measured<'a> {
    /// The node's sample series, in prober order (the judgement must not depend on input order).
    pub(super) probes: Vec<&'a ProberSeries>,
    /// Per used prober: its minimum RTT over the most recent third of the window.
    pub(super) recent: Vec<joint::Obs>,
    pub(super) region: Region,
    pub(super) relocation: Relocation,
}

/// How one prober predicts its RTT to the claim: from a landmark at the claim (best: the
/// expected RTT is measured), from a CBG bestline over its landmarks, or from the policy's
/// inflation with bounds widened to the inflation ceiling.
struct Calibration {
    /// Bestline (≥ 2 landmarks) or the policy's inflation line.
    model: Bestline,
    /// Landmarks this prober measured.
    landmarks: usize,
    /// A landmark within `claim_radius_km` of the claim: (site, its distance to the claim
    /// km, min RTT ms).
    at_claim: Option<(String, f64, f64)>,
    /// Largest landmark residual above the bestline, ms (how well the line fits).
    max_residual_ms: f64,
}

impl Calibration {
    fn of(
        world: &crate::input::World,
        policy: &crate::policy::Policy,
        prober: &str,
        at: LatLon,
        claim: LatLon,
    ) -> Self {
        let mut points = Vec::new();
        let mut at_claim: Option<(String, f64, f64)> = None;
        for l in world.landmarks.iter().filter(|l| l.prober == prober) {
            let Some(ls) = world.site(&l.site) else {
                continue;
            };
            let rtt = ms(l.min_rtt_ns);
            points.push((distance_km(at, ls.position()), rtt));
            let off = distance_km(ls.position(), claim);
            // the nearest landmark at the claim; among equals the fastest (its best route)
            let better = at_claim
                .as_ref()
                .is_none_or(|(_, o, r)| off < *o || (off == *o && rtt < *r));
            if off <= policy.claim_radius_km && better {
                at_claim = Some((l.site.clone(), off, rtt));
            }
        }
        let model = if points.len() >= 2 {
            bound::bestline(&points)
        } else {
            Bestline::inflated(policy.inflation)
        };
        let max_residual_ms = (points.iter())
            .map(|&(d, r)| r - model.rtt_ms(d))
            .fold(0.0, f64::max);
        Calibration {
            model,
            landmarks: points.len(),
            at_claim,
            max_residual_ms,
        }
    }

    /// RTT expected for a node at the claim and how much slower an honest node may be (ms).
    fn predict(&self, policy: &crate::policy::Policy, d_claim: f64) -> (f64, f64) {
        let ceiling = policy.inflation_ceiling;
        if let Some((_, off, rtt)) = &self.at_claim {
            // measured at the claim: only the metro offset and noise remain
            let slack = policy.calibrated_excess_ms + off * bound::PHYSICS_MS_PER_KM * ceiling;
            return (*rtt, slack);
        }
        let expected = self.model.rtt_ms(d_claim);
        // Without a reference at the claim the path to it may be as inflated as any real path:
        // widen to the ceiling (and the metro) rather than guess.
        let widest = (d_claim * bound::PHYSICS_MS_PER_KM * ceiling + self.model.intercept_ms)
            .max(expected + self.max_residual_ms);
        let metro = policy.claim_radius_km * bound::PHYSICS_MS_PER_KM * ceiling;
        (expected, widest - expected + metro + policy.max_excess_ms)
    }

    /// The reference used, for the judgement's `reference` field.
    fn describe(&self) -> Option<String> {
        if let Some((site, off, rtt)) = &self.at_claim {
            return Some(format!(
                "landmark {site} at the claim ({off:.0} km from it): {rtt:.2} ms"
            ));
        }
        (self.landmarks >= 2).then(|| {
            format!(
                "bestline over {} landmarks: {:.4} ms/km ({:.2}x 2/3 c), intercept {:.2} ms, \
                 residuals ≤ {:.2} ms",
                self.landmarks,
                self.model.slope_ms_per_km,
                self.model.slope_ms_per_km / bound::PHYSICS_MS_PER_KM,
                self.model.intercept_ms,
                self.max_residual_ms
            )
        })
    }
}

/// One prober's rounds for relocation detection.
struct SeriesRounds {
    prober: String,
    /// What CUSUM reads: the node's rounds, or them less the landmark's when `landmark` is set.
    rounds: Rounds,
    /// Baseline from history, ms (raw rounds only).
    external: Option<f64>,
    /// The node's own (raw) rounds: a move steps them, a landmark event leaves them flat.
    raw: Rounds,
    /// The landmark's rounds at the claim when `rounds` is differenced against them.
    landmark: Option<Rounds>,
}

/// Discs from the probers' hard bounds and from their calibrated bestlines.
#[derive(Default)]
struct Discs {
    hard: Vec<Disc>,
    calibrated: Vec<Disc>,
    any_calibrated: bool,
}

impl<'a> Judging<'a> {
    pub(super) fn measure(&mut self, claim: LatLon) -> Measured<'a> {
        let mut probes: Vec<&'a ProberSeries> = self.node.probes.iter().collect();
        probes.sort_by(|a, c| a.prober.cmp(&c.prober));
        let round_ms = self.round_ms(&probes);
        let mut discs = Discs::default();
        let mut recent = Vec::new();
        let mut series_rounds = Vec::new();
        for s in probes.iter().copied() {
            if let Some(r) = self.prober_numbers(s, claim, round_ms, &mut discs, &mut recent) {
                series_rounds.push(r);
            }
        }
        self.anchor_numbers(claim, &mut discs.hard);
        let region = region::intersect(&discs.hard, claim);
        self.j.region = Some(region.clone());
        if discs.any_calibrated {
            self.j.calibrated_region = Some(region::intersect(&discs.calibrated, claim));
        }
        let detect_input: Vec<_> = (series_rounds.iter())
            .map(|x| (x.prober.clone(), x.rounds.clone(), x.external))
            .collect();
        let mut reloc = relocation::detect(&detect_input, &self.policy.relocation);
        for s in &mut reloc.shifts {
            s.landmark_differenced =
                (series_rounds.iter()).any(|x| x.prober == s.prober && x.landmark.is_some());
        }
        if reloc.detected {
            self.check_move(&mut reloc, claim, &probes, round_ms, &series_rounds);
        }
        // The node sat in the metro before when its early rounds were not slower than the
        // landmark at the claim at every prober (a relay's detour is a uniform excess).
        let slack = |p: &str| {
            (self.j.distances.iter())
                .find(|d| d.prober == p)
                .map(|d| d.slack_ms)
        };
        let in_metro = !reloc.shifts.is_empty()
            && (reloc.shifts.iter()).all(|s| s.landmark_differenced)
            && (reloc.shifts.iter())
                .any(|s| slack(&s.prober).is_some_and(|slack| s.baseline_ms <= slack));
        let node = self.node;
        reloc.anchor_step = anchor_step::check(
            self.world,
            &node.anchors,
            &node.anchor_history,
            claim,
            in_metro,
            self.policy,
        );
        if let Some(step) = reloc.anchor_step.clone().filter(|s| s.moved) {
            // The anchor's RTT includes its server's work: it accuses only together with a
            // prober step that a move away from it explains.
            let tied =
                self.tie_anchor_step(&reloc, &step, claim, &probes, round_ms, &series_rounds);
            if let (Some(_), Some(s)) = (tied, reloc.anchor_step.as_mut()) {
                s.corroborated = true;
                reloc.detected = true;
            }
        }
        self.j.relocation = Some(reloc.clone());
        self.j.scores = self.scores(&reloc);
        Measured {
            probes,
            recent,
            region,
            relocation: reloc,
        }
    }

    /// Enough probers shifted at once: do the shifts fit one new position? If not, they are
    /// route changes, not a move.
    fn check_move(
        &self,
        reloc: &mut Relocation,
        claim: LatLon,
        probes: &[&ProberSeries],
        round_ms: f64,
        series_rounds: &[SeriesRounds],
    ) {
        let p = &self.policy.relocation;
        let onset = reloc.onset_round.unwrap_or(0);
        // (prober, landmark step ms) where the landmark stepped and the node's rounds did not
        let mut landmark_events: Vec<(String, f64)> = Vec::new();
        let shifts: Vec<(String, moved::Shift)> = (reloc.shifts.iter())
            .filter_map(|s| {
                let step = s.settled_shift_ms?;
                let sr = series_rounds.iter().find(|x| x.prober == s.prober)?;
                if let Some(lm) = &sr.landmark {
                    // A differenced step is the node's only if its own rounds step about as
                    // much at that instant; else the landmark moved or re-routed, and the
                    // node's raw rounds are what this prober saw.
                    let raw_step = relocation::step_across(&sr.raw, onset, p.confirm_rounds)?;
                    if (raw_step - step).abs()
                        > p.fit_tolerance_ms + p.fit_tolerance_frac * step.abs()
                    {
                        let lm_step = relocation::step_across(lm, onset, p.confirm_rounds)?;
                        if raw_step.abs() <= p.drift_ms && lm_step.abs() > p.drift_ms {
                            landmark_events.push((s.prober.clone(), lm_step));
                        }
                        let raw = self.raw_shift(s, sr, probes, onset, round_ms)?;
                        return Some((s.prober.clone(), raw));
                    }
                }
                let site = self.world.site(&self.world.prober(&s.prober)?.site)?;
                let series = probes.iter().find(|p| p.prober == s.prober)?;
                // a differenced baseline is no path length: read the inflation from the
                // node's own minimum
                let baseline_ms = if s.landmark_differenced {
                    (self.j.distances.iter())
                        .find(|d| d.prober == s.prober)
                        .and_then(|d| d.min_eff_rtt_ms)?
                } else {
                    s.baseline_ms
                };
                let shift = moved::Shift {
                    at: site.position(),
                    baseline_ms,
                    differenced: s.landmark_differenced,
                    shift_ms: if s.landmark_differenced {
                        s.baseline_ms + step
                    } else {
                        step
                    },
                    step_ms: step,
                    alarmed: s.alarm_round.is_some(),
                    when_ns: moved::change_instant(
                        &self.timing_samples(series, s.landmark_differenced, claim, round_ms),
                        round_ms * 1e6,
                        onset,
                        step,
                    ),
                };
                Some((s.prober.clone(), shift))
            })
            .collect();
        let steps = |list: &[(String, f64)]| {
            (list.iter())
                .map(|(p, m)| format!("{p} {m:+.2} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if landmark_events.len() >= 2 {
            // The same landmark stepping on several prober paths while the node's rounds
            // stay flat: the landmark moved, was re-homed or re-routed. Unless the node's own
            // rounds moved at that instant at another prober: then the landmark is no
            // reference this window, and the node's raw rounds decide (REVIEW6 R4).
            let event = format!(
                "the landmark at the claim stepped on {} prober paths at once ({}) while the \
                 node's own rounds stayed flat",
                landmark_events.len(),
                steps(&landmark_events)
            );
            let own: Vec<(String, f64)> = (reloc.shifts.iter())
                .filter(|s| !landmark_events.iter().any(|e| e.0 == s.prober))
                .filter_map(|s| {
                    let sr = series_rounds.iter().find(|x| x.prober == s.prober)?;
                    let raw = relocation::step_across(&sr.raw, onset, p.confirm_rounds)?;
                    (raw.abs() >= p.min_shift_ms).then(|| (s.prober.clone(), raw))
                })
                .collect();
            if own.is_empty() {
                reloc.detected = false;
                reloc.rejected = Some(format!(
                    "{event}: a landmark event (moved, re-homed or re-routed), not a move"
                ));
                return;
            }
            let raw: Vec<moved::Shift> = (reloc.shifts.iter())
                .filter_map(|s| {
                    let sr = series_rounds.iter().find(|x| x.prober == s.prober)?;
                    self.raw_shift(s, sr, probes, onset, round_ms)
                })
                .collect();
            if let Some(moved::Fit::Moved(at)) = moved::fit(&raw, claim, self.policy) {
                reloc.new_position = Some(at);
                return;
            }
            reloc.detected = false;
            reloc.held = Some(format!(
                "{event}, but at that instant the node's own rounds moved at {}: the landmark \
                 is no reference this window, and the node's raw rounds alone are seen by too \
                 few probers to prove a move",
                steps(&own)
            ));
            return;
        }
        let only: Vec<moved::Shift> = shifts.iter().map(|x| x.1).collect();
        match moved::fit(&only, claim, self.policy) {
            Some(moved::Fit::Moved(at)) => reloc.new_position = Some(at),
            Some(moved::Fit::Seen(at, seen)) => {
                reloc.detected = false;
                let list: Vec<(String, f64)> = (seen.iter())
                    .filter_map(|&i| Some((shifts.get(i)?.0.clone(), shifts[i].1.step_ms)))
                    .collect();
                reloc.held = Some(format!(
                    "only {} landmark-differenced steps ({}) at one instant fit a new position, \
                     ({:.2}, {:.2}), {:.0} km from the claim: a move {} probers see, or a route \
                     change at the node's datacentre towards them (need ≥ {} probers, or the \
                     TD's anchor step tied to it)",
                    list.len(),
                    steps(&list),
                    at.lat,
                    at.lon,
                    distance_km(at, claim),
                    list.len(),
                    p.min_seen_probers
                ));
            }
            None => {
                reloc.detected = false;
                let list: Vec<String> = (reloc.shifts.iter())
                    .filter_map(|s| Some(format!("{} {:+.2} ms", s.prober, s.settled_shift_ms?)))
                    .collect();
                reloc.rejected = Some(format!(
                    "shifts {} fit no single new position seen by ≥ {} probers: route \
                     changes, not a move",
                    list.join(", "),
                    p.min_seen_probers
                ));
            }
        }
    }

    /// One prober's shift from the node's own (raw) rounds across `onset`, its baseline their
    /// minimum: what it saw of a move whatever its landmark did.
    fn raw_shift(
        &self,
        s: &relocation::ProberShift,
        sr: &SeriesRounds,
        probes: &[&ProberSeries],
        onset: u64,
        round_ms: f64,
    ) -> Option<moved::Shift> {
        let p = &self.policy.relocation;
        let site = self.world.site(&self.world.prober(&s.prober)?.site)?;
        let series = probes.iter().find(|p| p.prober == s.prober)?;
        let raw_step = relocation::step_across(&sr.raw, onset, p.confirm_rounds)?;
        Some(moved::Shift {
            at: site.position(),
            baseline_ms: sr.raw.iter().map(|r| r.1).fold(f64::INFINITY, f64::min),
            differenced: false,
            shift_ms: raw_step,
            step_ms: raw_step,
            alarmed: s.alarm_round.is_some(),
            when_ns: moved::change_instant(
                &self.effective(series),
                round_ms * 1e6,
                onset,
                raw_step,
            ),
        })
    }

    /// The TD's anchor rose beyond what it may without a move: does a prober step tie it to
    /// one? At an alarming prober's onset, the node's raw steps of every prober must fit a
    /// position at least `min_move_km` from the anchor, with one of them above the noise
    /// (REVIEW6 R2): an unrelated route change elsewhere, or at another time, is not that.
    fn tie_anchor_step(
        &self,
        reloc: &Relocation,
        step: &anchor_step::AnchorStep,
        claim: LatLon,
        probes: &[&ProberSeries],
        round_ms: f64,
        series_rounds: &[SeriesRounds],
    ) -> Option<LatLon> {
        let anchor = self.world.site(&step.site)?.position();
        let mut onsets: Vec<u64> = (reloc.shifts.iter())
            .filter(|s| s.alarm_round.is_some())
            .filter_map(|s| s.onset_round.or(s.alarm_round))
            .chain(reloc.onset_round)
            .collect();
        onsets.sort_unstable();
        onsets.dedup();
        onsets.into_iter().find_map(|onset| {
            let raw: Vec<moved::Shift> = (reloc.shifts.iter())
                .filter_map(|s| {
                    let sr = series_rounds.iter().find(|x| x.prober == s.prober)?;
                    self.raw_shift(s, sr, probes, onset, round_ms)
                })
                .collect();
            // every evaluated prober must have its say
            (raw.len() == reloc.shifts.len()).then_some(())?;
            moved::fit_away_from(&raw, claim, anchor, step.min_move_km, self.policy)
        })
    }

    /// `(sent_ns, effective RTT ms)`: each sample's RTT less the node's reported processing
    /// time (capped at `max_processing_us`).
    fn effective(&self, s: &ProberSeries) -> Vec<(u64, f64)> {
        let cap_ns = (self.policy.max_processing_us * 1e3).max(0.0) as u64;
        (s.samples.iter())
            .map(|x| {
                let rtt = x.rtt_ns.saturating_sub(x.inside_ns.min(cap_ns));
                (x.sent_ns, ms(rtt))
            })
            .collect()
    }

    /// Rounds: `round_ms`, shortened for short windows so there are at least `min_rounds`.
    fn round_ms(&self, probes: &[&ProberSeries]) -> f64 {
        let p = &self.policy.relocation;
        let span_ms = probes
            .iter()
            .filter_map(|s| {
                let lo = s.samples.iter().map(|x| x.sent_ns).min()?;
                let hi = s.samples.iter().map(|x| x.sent_ns).max()?;
                Some(ms(hi - lo))
            })
            .fold(0.0, f64::max);
        if p.min_rounds > 0 && span_ms > 0.0 {
            p.round_ms.min(span_ms / p.min_rounds as f64)
        } else {
            p.round_ms
        }
    }

    /// One prober's distance, bounds and discs; its rounds when it counts (≥ `min_samples`).
    fn prober_numbers(
        &mut self,
        s: &ProberSeries,
        claim: LatLon,
        round_ms: f64,
        discs: &mut Discs,
        recent: &mut Vec<joint::Obs>,
    ) -> Option<SeriesRounds> {
        let (world, policy) = (self.world, self.policy);
        let prober = world.prober(&s.prober)?;
        let site = world.site(&prober.site)?;
        let d_claim = distance_km(site.position(), claim);
        let eff = self.effective(s);
        let min_rtt = s.samples.iter().map(|x| x.rtt_ns).min().map(ms);
        let min_eff = eff.iter().map(|e| e.1).min_by(f64::total_cmp);
        let cal = Calibration::of(world, policy, &s.prober, site.position(), claim);
        let model = cal.model;
        let calibrated = cal.at_claim.is_some() || cal.landmarks >= 2;
        // The calibrated disc keeps the bestline's slope but not its intercept: the node's
        // fixed delay may be smaller than the landmarks', and a disc must not exclude it.
        let disc_line = Bestline {
            intercept_ms: 0.0,
            ..model
        };
        // Samples under a key no verified bundle binds are shown but never count.
        let used = s.samples.len() >= policy.min_samples && self.key_mismatch(s).is_none();
        let (expected, slack) = cal.predict(policy, d_claim);
        let mut rounds = None;
        if used {
            if let Some(m) = min_eff {
                let hard = Disc {
                    label: format!("prober {}", s.prober),
                    center: site.position(),
                    radius_km: bound::max_distance_km(m),
                };
                discs.calibrated.push(if calibrated {
                    discs.any_calibrated = true;
                    Disc {
                        label: format!("prober {} (calibrated)", s.prober),
                        center: site.position(),
                        radius_km: disc_line.max_distance_km(m),
                    }
                } else {
                    hard.clone()
                });
                discs.hard.push(hard);
            }
            let external = self
                .node
                .baseline
                .iter()
                .find(|x| x.prober == s.prober)
                .map(|x| ms(x.min_rtt_ns));
            let min_round = policy.relocation.min_round_samples;
            let r = relocation::rounds(&eff, round_ms, min_round);
            // the most recent third of the window (≥ 3 rounds): where the node is now
            let k = (r.len() / 3).max(3).min(r.len());
            let recent_min = r[r.len() - k..]
                .iter()
                .map(|x| x.1)
                .min_by(f64::total_cmp)
                .or(min_eff);
            if let Some(m) = recent_min {
                recent.push(joint::Obs {
                    at: site.position(),
                    rtt_ms: m,
                    model,
                    slow_tol_ms: policy.max_excess_ms,
                    fast_tol_ms: policy.fast_tolerance_ms,
                });
            }
            // Without history, difference against the landmark at the claim when this prober
            // measured it through the window (history has no landmark rounds to match).
            // Only a landmark that covers the whole window, its last rounds included, may
            // replace the raw rounds: a landmark silenced at the move would hide it.
            let differenced = (external.is_none())
                .then(|| self.landmark_rounds(s, &cal, &eff, round_ms))
                .flatten()
                .filter(|lm| covers(lm, &r));
            rounds = Some(match differenced {
                Some(lm) => SeriesRounds {
                    prober: s.prober.clone(),
                    rounds: relocation::difference(&r, &lm),
                    external: None,
                    raw: r,
                    landmark: Some(lm),
                },
                None => SeriesRounds {
                    prober: s.prober.clone(),
                    rounds: r.clone(),
                    external,
                    raw: r,
                    landmark: None,
                },
            });
        }
        self.j.distances.push(ProberDistance {
            prober: s.prober.clone(),
            site: site.name.clone(),
            samples: s.samples.len(),
            sent: s.sent,
            distance_to_claim_km: d_claim,
            min_rtt_ms: min_rtt,
            min_eff_rtt_ms: min_eff,
            max_distance_km: min_eff.map(bound::max_distance_km),
            calibrated_max_distance_km: calibrated
                .then(|| min_eff.map(|m| disc_line.max_distance_km(m)))
                .flatten(),
            expected_rtt_ms: expected,
            excess_ms: min_eff.map(|m| m - expected),
            used,
            calibrated,
            slack_ms: slack,
            reference: cal.describe(),
        });
        rounds
    }

    /// The samples a step is timed on: the node's effective RTTs, differenced less the
    /// landmark's minimum of the same round (a route change of the prober's path must not
    /// pass for the step's instant); samples in rounds without a landmark minimum are left out.
    fn timing_samples(
        &self,
        s: &ProberSeries,
        differenced: bool,
        claim: LatLon,
        round_ms: f64,
    ) -> Vec<(u64, f64)> {
        let eff = self.effective(s);
        if !differenced {
            return eff;
        }
        let (world, policy) = (self.world, self.policy);
        let Some(site) = world.prober(&s.prober).and_then(|p| world.site(&p.site)) else {
            return eff;
        };
        let cal = Calibration::of(world, policy, &s.prober, site.position(), claim);
        let (Some(lm), Some(t0)) = (
            self.landmark_rounds(s, &cal, &eff, round_ms),
            eff.iter().map(|e| e.0).min(),
        ) else {
            return eff;
        };
        let lm: std::collections::BTreeMap<u64, f64> = lm.into_iter().collect();
        let round_ns = (round_ms * 1e6).max(1.0);
        (eff.iter())
            .filter_map(|&(t, v)| {
                let r = ((t - t0) as f64 / round_ns).floor() as u64;
                Some((t, v - lm.get(&r)?))
            })
            .collect()
    }

    /// The rounds of this prober's echoes to its landmark at the claim, counted from the
    /// node series' first sample; None without such a landmark or its echoes.
    fn landmark_rounds(
        &self,
        s: &ProberSeries,
        cal: &Calibration,
        eff: &[(u64, f64)],
        round_ms: f64,
    ) -> Option<Rounds> {
        let (site, _, _) = cal.at_claim.as_ref()?;
        let series =
            (self.node.landmark_series.iter()).find(|l| l.prober == s.prober && &l.site == site)?;
        let t0 = eff.iter().map(|e| e.0).min()?;
        let cap_ns = (self.policy.max_processing_us * 1e3).max(0.0) as u64;
        let samples: Vec<(u64, f64)> = (series.samples.iter())
            .map(|x| {
                (
                    x.sent_ns,
                    ms(x.rtt_ns.saturating_sub(x.inside_ns.min(cap_ns))),
                )
            })
            .collect();
        let r = relocation::rounds_from(
            &samples,
            t0,
            round_ms,
            self.policy.relocation.min_round_samples,
        );
        (!r.is_empty()).then_some(r)
    }

    /// Anchor distances; their discs join the region.
    fn anchor_numbers(&mut self, claim: LatLon, discs: &mut Vec<Disc>) {
        let mut anchors: Vec<_> = self.node.anchors.iter().collect();
        anchors.sort_by(|a, c| a.site.cmp(&c.site).then(a.min_rtt_ns.cmp(&c.min_rtt_ns)));
        for a in anchors {
            let Some(site) = self.world.site(&a.site) else {
                continue;
            };
            let rtt = ms(a.min_rtt_ns);
            let d = distance_km(site.position(), claim);
            let expected = Bestline::inflated(self.policy.inflation).rtt_ms(d);
            let max_d = bound::max_distance_km(rtt);
            discs.push(Disc {
                label: format!("anchor {}", a.site),
                center: site.position(),
                radius_km: max_d,
            });
            self.j.anchors.push(AnchorDistance {
                site: a.site.clone(),
                min_rtt_ms: rtt,
                distance_to_claim_km: d,
                max_distance_km: max_d,
                expected_rtt_ms: expected,
                excess_ms: rtt - expected,
            });
        }
    }

    /// The decision statistics, whatever decides the verdict (for offline threshold sweeps).
    fn scores(&self, reloc: &Relocation) -> Scores {
        let excesses: Vec<f64> = (self.j.distances.iter())
            .filter(|d| d.used)
            .filter_map(|d| d.excess_ms)
            .collect();
        let mut stats: Vec<f64> = reloc.shifts.iter().map(|x| x.max_stat_ms).collect();
        stats.sort_by(|a, c| c.total_cmp(a));
        let policy = self.policy;
        Scores {
            min_excess_ms: excesses.iter().copied().min_by(f64::total_cmp),
            max_excess_ms: excesses.iter().copied().max_by(f64::total_cmp),
            max_anchor_excess_ms: self
                .j
                .anchors
                .iter()
                .map(|a| a.excess_ms)
                .max_by(f64::total_cmp),
            vtpm_cmd_rtt_min_ms: frankenstein::check(&self.node.in_td, None, policy).cmd_rtt_min_ms,
            cusum_stat_ms: stats.get(policy.relocation.min_probers - 1).copied(),
        }
    }
}

/// The landmark's rounds cover the node's: its first and last rounds and ≥ 90 % of the rest
/// (a lost round here and there is noise; echoes that stop are not).
fn covers(landmark: &Rounds, node: &Rounds) -> bool {
    let (Some(first), Some(last)) = (node.first(), node.last()) else {
        return false;
    };
    let have: std::collections::BTreeSet<u64> = landmark.iter().map(|r| r.0).collect();
    let shared = node.iter().filter(|r| have.contains(&r.0)).count();
    have.contains(&first.0) && have.contains(&last.0) && shared * 10 >= node.len() * 9
}
