//! The rules on where the node is: input consistency, reachability, enough probers,
//! relocation, the feasible region, the claim's timing fit, anchors timed from inside the TD
//! and the evidence round trip; then `located` when none decided otherwise.

use super::bound::{self, Bestline};
use super::geo::distance_km;
use super::joint;
use super::reach::{self, Reach};
use super::region::{self, Disc, Region};
use super::relocation::Relocation;
use super::verdict::{ms, AnchorDistance, Decided, Judging, ProberDistance, Rule, Verdict};
use crate::check::{CheckStatus, VerdictCheck};
use crate::input::{LatLon, ProberSeries};

impl Judging<'_> {
    /// Sites, probers and anchors are known, each series once; returns the claim's position.
    pub(super) fn input(&mut self) -> Rule<LatLon> {
        let (world, node) = (self.world, self.node);
        let mut problems = world.problems();
        let claim = world.site(&node.claim).map(|s| s.position());
        if claim.is_none() {
            problems.push(format!("claimed site {} is not a known site", node.claim));
        }
        for (i, s) in node.probes.iter().enumerate() {
            if world.prober(&s.prober).is_none() {
                problems.push(format!("samples from unknown prober {}", s.prober));
            }
            if node.probes[..i].iter().any(|o| o.prober == s.prober) {
                problems.push(format!("prober {} has two sample series", s.prober));
            }
        }
        for a in &node.anchors {
            if world.site(&a.site).is_none() {
                problems.push(format!("anchor report for unknown site {}", a.site));
            }
        }
        let Some(claim) = claim.filter(|_| problems.is_empty()) else {
            let reasons = problems.iter().map(|p| format!("input: {p}")).collect();
            let d = self.fail(
                VerdictCheck::Input,
                Verdict::Inconclusive,
                problems.join("; "),
            );
            return Err(d.because(reasons));
        };
        let detail = "sites, probers and anchors known";
        self.check(VerdictCheck::Input, CheckStatus::Pass, detail);
        Ok(claim)
    }

    /// Some prober got answers.
    pub(super) fn reachability(&mut self) -> Rule {
        let probes = &self.node.probes;
        let answered: usize = probes.iter().map(|s| s.samples.len()).sum();
        if probes.is_empty() {
            let detail = "no prober measured this node";
            self.check(VerdictCheck::Reachability, CheckStatus::Skip, detail);
        } else if answered == 0 {
            let mut each: Vec<String> = (probes.iter())
                .map(|s| format!("{}: 0/{} answered", s.prober, s.sent))
                .collect();
            each.sort();
            let detail = each.join(", ");
            let reason = format!("no prober got an answer ({detail})");
            let d = self.fail(VerdictCheck::Reachability, Verdict::Unreachable, detail);
            return Err(d.because(vec![reason]));
        } else {
            let detail = format!("{answered} answers");
            self.check(VerdictCheck::Reachability, CheckStatus::Pass, detail);
        }
        Ok(())
    }

    /// At least `min_probers` probers with `min_samples` answers each; returns them.
    pub(super) fn probers(&mut self) -> Rule<Vec<ProberDistance>> {
        let policy = self.policy;
        let distances = &self.j.distances;
        let used: Vec<ProberDistance> = distances.iter().filter(|d| d.used).cloned().collect();
        let n_used = used.len();
        if n_used < policy.min_probers {
            let have = (distances.iter())
                .map(|d| format!("{} {}", d.prober, d.samples))
                .collect::<Vec<_>>()
                .join(", ");
            let detail = format!(
                "need ≥ {} probers with ≥ {} answers each, have {n_used} (answers: {})",
                policy.min_probers,
                policy.min_samples,
                if have.is_empty() { "none".into() } else { have }
            );
            let mut reasons = std::mem::take(&mut self.missing);
            reasons.insert(0, detail.clone());
            let d = self.fail(VerdictCheck::Probers, Verdict::Inconclusive, detail);
            return Err(d.because(reasons));
        }
        let detail = format!("{n_used} probers with ≥ {} answers", policy.min_samples);
        self.check(VerdictCheck::Probers, CheckStatus::Pass, detail);
        Ok(used)
    }

    /// No consistent shift of the min-RTT baseline during the window.
    pub(super) fn relocation(&mut self, reloc: &Relocation, claim: LatLon) -> Rule {
        if !reloc.detected {
            let status = if reloc.evaluated >= self.policy.relocation.min_probers {
                CheckStatus::Pass
            } else {
                CheckStatus::Skip
            };
            let mut detail = format!(
                "no consistent baseline shift ({} probers evaluated)",
                reloc.evaluated
            );
            if let Some(r) = &reloc.rejected {
                detail.push_str(&format!(": {r}"));
            }
            if let Some(s) = reloc.anchor_step.as_ref().filter(|s| s.moved) {
                detail.push_str(&format!(
                    "; the TD's RTT to anchor {} rose from {:.2} to {:.2} ms (> {:.2} ms) but no \
                     prober step at one instant fits a move away from it: the anchor server's \
                     delay, not a move",
                    s.site, s.history_ms, s.now_ms, s.bound_ms
                ));
            }
            if let Some(h) = &reloc.held {
                // Not proof of a move, but the node may have moved: not `located`.
                detail = format!("a move is not ruled out: {h}");
                self.missing.push(format!("relocation: {detail}"));
                self.check(VerdictCheck::Relocation, CheckStatus::Fail, detail);
                return Ok(());
            }
            self.check(VerdictCheck::Relocation, status, detail);
            return Ok(());
        }
        let shifts: Vec<String> = (reloc.shifts.iter())
            .filter_map(|s| {
                Some(format!(
                    "{} {:+.2} ms (from {:.2} ms, round {})",
                    s.prober, s.shift_ms?, s.baseline_ms, s.alarm_round?
                ))
            })
            .collect();
        let detail = format!(
            "min-RTT baseline shifted at {} of {} probers around round {}: {}",
            shifts.len(),
            reloc.evaluated,
            reloc.change_round.unwrap_or(0),
            shifts.join(", ")
        );
        let detail = match reloc.new_position {
            Some(at) => format!(
                "{detail}; the shifts fit one new position, ({:.2}, {:.2}), {:.0} km from the \
                 claim",
                at.lat,
                at.lon,
                distance_km(at, claim)
            ),
            None => detail,
        };
        let detail = match reloc.anchor_step.as_ref().filter(|s| s.corroborated) {
            Some(s) if reloc.new_position.is_none() => format!(
                "the TD's own RTT to anchor {} rose from {:.2} ms (its history) to {:.2} ms: \
                 more than a route change and the anchor server's jitter can add for a TD \
                 within {:.0} km of the claim (≤ {:.2} ms), and the probers' steps at one \
                 instant fit a move ≥ {:.0} km away from the anchor",
                s.site,
                s.history_ms,
                s.now_ms,
                self.policy.claim_radius_km,
                s.bound_ms,
                s.min_move_km
            ),
            Some(s) => format!(
                "{detail}; the TD's own RTT to anchor {} rose from {:.2} to {:.2} ms as well",
                s.site, s.history_ms, s.now_ms
            ),
            None => detail,
        };
        let mut d = self.fail(VerdictCheck::Relocation, Verdict::Relocated, detail);
        let world = self.world;
        let after: Vec<Disc> = (reloc.after_min_ms.iter())
            .filter_map(|(p, m)| {
                let site = world.site(&world.prober(p)?.site)?;
                Some(Disc {
                    label: format!("prober {p} (after change)"),
                    center: site.position(),
                    radius_km: bound::max_distance_km(*m),
                })
            })
            .collect();
        let after_region = region::intersect(&after, claim);
        if !after_region.claim_inside {
            d.reasons.push(format!(
                "after the change the claim is outside the disc of {}",
                after_region.claim_excluded_by.join(", ")
            ));
        }
        Err(d)
    }

    /// The discs intersect (physics holds), and the claim lies inside them.
    pub(super) fn region(&mut self, region: &Region) -> Rule {
        if region.empty {
            let detail = if region.disjoint_pairs.is_empty() {
                "no point satisfies every disc".to_string()
            } else {
                let pairs: Vec<String> = (region.disjoint_pairs.iter())
                    .map(|(a, c)| format!("{a} / {c}"))
                    .collect();
                format!("discs do not intersect: {}", pairs.join(", "))
            };
            let reason = format!(
                "timing is physically inconsistent ({detail}): check prober and anchor sites, \
                 or the responder over-reports its processing time"
            );
            let d = self.fail(VerdictCheck::Region, Verdict::Inconclusive, detail);
            return Err(d.because(vec![reason]));
        }
        let inside = region.claim_inside;
        self.check(
            VerdictCheck::Region,
            if inside { CheckStatus::Pass } else { CheckStatus::Fail },
            format!(
                "claim {} the 2/3 c region (area {:.0} km², radius {:.0} km, estimate {:.0} km from claim)",
                if inside { "inside" } else { "outside" },
                region.area_km2.unwrap_or(0.0),
                region.radius_km.unwrap_or(0.0),
                region.estimate_to_claim_km.unwrap_or(0.0)
            ),
        );
        Ok(())
    }

    /// Does the probers' timing fit a node at the claim? Returns the spread of the excesses.
    ///
    /// Only two things accuse here: the claim beyond a prober's 2/3 c bound (physics), and,
    /// with a landmark at the claim at every prober, a node slower than the landmark at every
    /// prober. A node faster than a prediction is never evidence; a node slower than the
    /// widened bounds of uncalibrated probers is not located, but not accused either.
    pub(super) fn claim_timing(&mut self, used: &[ProberDistance], region: &Region) -> Rule<f64> {
        let policy = self.policy;
        let t = Timing::of(used);
        let hard: Vec<&ProberDistance> = (used.iter())
            .filter(|d| {
                d.max_distance_km
                    .is_some_and(|m| d.distance_to_claim_km > m + policy.claim_radius_km)
            })
            .collect();
        let estimate = (region.estimate.zip(region.estimate_to_claim_km))
            .map(|(e, d)| {
                format!(
                    "; region estimate ({:.2}, {:.2}), {d:.0} km from the claim",
                    e.lat, e.lon
                )
            })
            .unwrap_or_default();
        let excess = format!(
            "excess over the prediction for the claim, ms (allowed): {}",
            t.list
        );
        let calibration = t.calibration(used, policy);
        // One prober alone does not accuse while others measure: a listed prober whose rows
        // lie (stolen key, wrong clock or site) would otherwise decide a critical verdict.
        if hard.len() == 1 && used.len() >= 2 {
            let d = hard[0];
            let detail = format!(
                "only prober {} puts the claim beyond its 2/3 c bound ({:.0} km from the claim, \
                 ≤ {:.0} km by its {:.2} ms): one prober cannot accuse while {} others measure \
                 (check its site, clock and key); {excess}",
                d.prober,
                d.distance_to_claim_km,
                d.max_distance_km.unwrap_or(0.0),
                d.min_eff_rtt_ms.unwrap_or(0.0),
                used.len() - 1
            );
            self.missing.push(format!("claim-timing: {detail}"));
            self.check(VerdictCheck::ClaimTiming, CheckStatus::Fail, detail);
            return Ok(t.spread);
        }
        if !hard.is_empty() {
            let names: Vec<String> = hard
                .iter()
                .map(|d| format!("prober {}", d.prober))
                .collect();
            let each: Vec<String> = (hard.iter())
                .map(|d| {
                    format!(
                        "{}: {:.0} km from the claim, ≤ {:.0} km by its {:.2} ms",
                        d.prober,
                        d.distance_to_claim_km,
                        d.max_distance_km.unwrap_or(0.0),
                        d.min_eff_rtt_ms.unwrap_or(0.0)
                    )
                })
                .collect();
            let detail = format!(
                "the claim is beyond the 2/3 c bound of {} by more than the {:.0} km claim \
                 radius ({}){estimate}",
                names.join(", "),
                policy.claim_radius_km,
                each.join("; ")
            );
            let away = format!("the node runs away from its claimed site: {detail}");
            let d = self.fail(VerdictCheck::ClaimTiming, Verdict::Relocated, detail);
            return Err(d.because(vec![away, excess, calibration]));
        }
        if t.all_slow() {
            // As above: `proxied` needs two probers that agree when two measure.
            if t.calibrated_at_claim && (t.rows >= 2 || used.len() < 2) {
                return Err(self.too_slow(&t, &estimate, vec![excess, calibration]));
            }
            // Real paths are inflated 1.1-3.0 and more: slowness alone is no proof without a
            // reference. Not located, but the anchors and the evidence round trip may still
            // decide; otherwise the node ends inconclusive with this reason.
            let detail = format!(
                "every prober is slower than a node at the claim could be even at inflation \
                 {:.1} and {:.0} km from the site (min excess over the allowed {:+.2} ms); no \
                 calibration: bounds widened, so a relay and unusually slow paths cannot be \
                 told apart (add a landmark at the claim); {calibration}",
                policy.inflation_ceiling, policy.claim_radius_km, t.min_over_slack
            );
            self.missing.push(format!("claim-timing: {detail}"));
            self.check(VerdictCheck::ClaimTiming, CheckStatus::Fail, detail);
            return Ok(t.spread);
        }
        let mut detail = format!("{excess}; {calibration}");
        if !t.fast.is_empty() {
            detail.push_str(&format!(
                "; faster than predicted at {} (not evidence: only the 2/3 c bound is)",
                t.fast.join(", ")
            ));
        }
        self.check(VerdictCheck::ClaimTiming, CheckStatus::Pass, detail);
        Ok(t.spread)
    }

    /// Every prober sees more than the landmark at the claim: uniformly, a relay at the claim
    /// forwarding to a TD elsewhere; unevenly, the node answers from another site.
    fn too_slow(&mut self, t: &Timing, estimate: &str, mut more: Vec<String>) -> Decided {
        let (min_r, spread, policy) = (t.min_r, t.spread, self.policy);
        let uniform = spread <= policy.relay_spread_ms + policy.relay_spread_frac * min_r.max(0.0);
        if uniform {
            let relay = self.relay_distance(t);
            let detail = format!(
                "every prober sees ≥ {min_r:.2} ms more than the landmark at the claim, \
                 uniformly (spread {spread:.2} ms): a relay near the claim forwards to a TD \
                 {relay}"
            );
            let mut reasons = vec![format!("proxied: {detail}")];
            reasons.append(&mut more);
            let d = self.fail(VerdictCheck::ClaimTiming, Verdict::Proxied, detail);
            return d.because(reasons);
        }
        let detail = format!(
            "every prober sees ≥ {min_r:.2} ms more than the landmark at the claim, unevenly \
             (spread {spread:.2} ms): the node answers from another site{estimate}"
        );
        let mut reasons = vec![format!(
            "the node runs away from its claimed site: {detail}"
        )];
        reasons.append(&mut more);
        let d = self.fail(VerdictCheck::ClaimTiming, Verdict::Relocated, detail);
        d.because(reasons)
    }

    /// The relay → TD distance from the uniform excess (median over probers) and, when an
    /// anchor sits at the claim, from the TD's own RTT to it, with its uncertainty: the detour
    /// is inflated between 1 (light in fiber, the hard upper distance) and the ceiling.
    fn relay_distance(&self, t: &Timing) -> String {
        let policy = self.policy;
        let x = t.median_r;
        let per_ms = bound::FIBER_KM_PER_MS / 2.0;
        let (mut lo, mut hi) = (x * per_ms / policy.inflation_ceiling, x * per_ms);
        let mut anchor = String::new();
        let near = (self.j.anchors.iter())
            .filter(|a| a.distance_to_claim_km <= policy.claim_radius_km)
            .min_by(|a, c| a.min_rtt_ms.total_cmp(&c.min_rtt_ms));
        if let Some(a) = near {
            let a_hi = a.max_distance_km + a.distance_to_claim_km;
            let a_lo = (a.min_rtt_ms * per_ms / policy.inflation_ceiling - a.distance_to_claim_km)
                .max(0.0);
            // both measure the same detour; keep what both allow (if they disagree, both)
            if a_lo <= hi && lo <= a_hi {
                lo = lo.max(a_lo);
                hi = hi.min(a_hi);
            }
            anchor = format!(
                "; the TD's own RTT to anchor {} ({:.2} ms) puts it {a_lo:.0}-{a_hi:.0} km away",
                a.site, a.min_rtt_ms
            );
        }
        let mid = x * per_ms / policy.inflation;
        let mid = mid.clamp(lo, hi.max(lo));
        format!(
            "≈ {mid:.0} km away ({lo:.0}-{hi:.0} km: excess {x:.2} ± {:.2} ms at inflation \
             1.0-{:.1}){anchor}",
            t.spread / 2.0,
            policy.inflation_ceiling
        )
    }

    /// The TD's own RTTs to anchors fit the claim. When they do not, the probers' recent
    /// RTTs and the anchors' either fit one other location (the node runs there) or none (a
    /// relay at the claim answers the probers).
    pub(super) fn anchors(&mut self, recent: &[joint::Obs], claim: LatLon) -> Rule {
        let policy = self.policy;
        let far: Vec<AnchorDistance> = (self.j.anchors.iter())
            .filter(|a| {
                // an anchor away from the claim may sit behind a path inflated up to the
                // ceiling: widen its allowance by what that adds over the policy's inflation
                let widen = a.distance_to_claim_km
                    * bound::PHYSICS_MS_PER_KM
                    * (policy.inflation_ceiling - policy.inflation);
                a.excess_ms > policy.max_anchor_excess_ms + widen
                    || a.distance_to_claim_km > a.max_distance_km + policy.claim_radius_km
            })
            .cloned()
            .collect();
        if far.is_empty() {
            self.anchors_near();
            return Ok(());
        }
        let list: Vec<String> = (far.iter())
            .map(|a| {
                format!(
                    "{} {:.2} ms (expected ≈ {:.2} ms for the claim, {:+.2} ms)",
                    a.site, a.min_rtt_ms, a.expected_rtt_ms, a.excess_ms
                )
            })
            .collect();
        let mut obs = recent.to_vec();
        for a in &self.j.anchors {
            if let Some(site) = self.world.site(&a.site) {
                obs.push(joint::Obs {
                    at: site.position(),
                    rtt_ms: a.min_rtt_ms,
                    model: Bestline::inflated(policy.inflation),
                    slow_tol_ms: policy.max_anchor_excess_ms,
                    fast_tol_ms: policy.fast_tolerance_ms,
                });
            }
        }
        let radius = (far.iter())
            .map(|a| a.max_distance_km + a.distance_to_claim_km)
            .fold(0.0, f64::max);
        if let Some((at, _)) = joint::consistent_location(&obs, claim, radius) {
            let off_km = distance_km(at, claim);
            if off_km <= policy.max_located_km {
                // An anchor RTT above the model is no physical bound (a slow or loaded anchor
                // server adds the same), and a location this near is within what the evidence
                // resolves: never located, never accused.
                let detail = format!(
                    "the TD's own RTT to anchors does not fit the claim: {}; prober and anchor \
                     timing both fit ({:.2}, {:.2}), {off_km:.0} km from the claim, within the \
                     {:.0} km the evidence resolves (a slow anchor server looks the same): held, \
                     not accused",
                    list.join(", "),
                    at.lat,
                    at.lon,
                    policy.max_located_km
                );
                self.missing.push(format!("anchors: {detail}"));
                self.check(VerdictCheck::Anchors, CheckStatus::Skip, detail);
                return Ok(());
            }
            let detail = format!(
                "the TD's own RTT to anchors does not fit the claim: {}; prober and anchor \
                 timing both fit one location, ({:.2}, {:.2}), {:.0} km from the claim: the \
                 node runs there (a relay at the claim would add the TD's detour to every \
                 prober RTT)",
                list.join(", "),
                at.lat,
                at.lon,
                off_km
            );
            return Err(self.fail(VerdictCheck::Anchors, Verdict::Relocated, detail));
        }
        let detail = format!(
            "prober timing fits the claim but the TD's own RTT to anchors does not: {}: no \
             single location explains both, so the TD runs elsewhere and a relay at the claim \
             answers the probers",
            list.join(", ")
        );
        Err(self.fail(VerdictCheck::Anchors, Verdict::Proxied, detail))
    }

    /// No anchor is far: enough of them, or the shortfall is missing data.
    fn anchors_near(&mut self) {
        let failed = &self.node.failed_anchors;
        if !failed.is_empty() {
            // A far TD cannot make an anchor at the claim answer fast; reporting it as down is
            // its way out, so a failed anchor is never read as an honest absence.
            let list: Vec<String> = (failed.iter())
                .map(|f| format!("{} ({})", f.name, f.reason))
                .collect();
            let detail = format!("requested anchors failed: {}", list.join(", "));
            self.missing.push(format!("anchors: {detail}"));
            self.check(VerdictCheck::Anchors, CheckStatus::Skip, detail);
            return;
        }
        let (n, need) = (self.j.anchors.len(), self.policy.min_anchors);
        if n < need {
            let mut detail = format!("{n} anchor reports, policy needs {need}");
            // anchors come only with verified evidence: say which refusal cost them
            if let Some(r) = self.node.refused_evidence.first() {
                detail.push_str(&format!(" (they come with the evidence: {r})"));
            }
            self.missing.push(format!("anchors: {detail}"));
            self.check(VerdictCheck::Anchors, CheckStatus::Skip, detail);
            return;
        }
        let list: Vec<String> = (self.j.anchors.iter())
            .map(|a| format!("{} {:.2} ms ({:+.2})", a.site, a.min_rtt_ms, a.excess_ms))
            .collect();
        let detail = format!("anchors near: {}", list.join(", "));
        self.check(VerdictCheck::Anchors, CheckStatus::Pass, detail);
    }

    /// Evidence round trip versus echo round trip. Every prober that asked for a bundle that
    /// verified (its session key carries that bundle's in-TD time) is held to the bound on its
    /// own request, since the closest prober alone would let a near box answer it while the
    /// others reach a far TD. One prober alone does not accuse while another's own bundle
    /// passes (REVIEW3 C: a listed prober with a stolen key could store any round trip with a
    /// valid bundle): the node is held back naming it; two agreeing, or the only prober with
    /// its own bundle, accuse. Without such probers (a
    /// bundle file judged offline does not say who asked for it) the node's in-TD time is held
    /// against the closest prober only: in-TD times vary by tens of ms between requests, so
    /// another request's time says nothing at the 5 ms scale. Sound only with the TD's own
    /// total time for the evidence answer: without it, quote generation, event-log reads and
    /// in-TD anchor measurements are indistinguishable from a network detour. That time is not
    /// signed, so leaving it out must not skip the check: a prober that timed an evidence
    /// answer with no in-TD time to hold it against fails the check, and the node cannot be
    /// `located`.
    pub(super) fn evidence_rtt(&mut self, probes: &[&ProberSeries]) -> Rule {
        let policy = self.policy;
        let node_inside = self.node.in_td.evidence_ns;
        // per prober: (prober, raw excess, excess beyond what a large answer's extra round
        // trips take, in-TD time, whether it is the prober's own bundle's)
        let margins: Vec<(&str, f64, f64, f64, bool)> = (probes.iter())
            .filter(|s| self.key_mismatch(s).is_none())
            .filter_map(|s| {
                let own = self.own_evidence_ns(s);
                let inside = ms(own.or(node_inside)?);
                let ev = ms(*s.evidence_rtt_ns.iter().min()?);
                let echo = ms(s.samples.iter().map(|x| x.rtt_ns).min()?);
                let x = ev - inside - echo;
                let m = x - policy.evidence_rtt_factor * echo;
                Some((s.prober.as_str(), x, m, inside, own.is_some()))
            })
            .collect();
        let untimed: Vec<&str> = (probes.iter())
            .filter(|s| self.key_mismatch(s).is_none() && !s.evidence_rtt_ns.is_empty())
            .filter(|s| self.own_evidence_ns(s).or(node_inside).is_none())
            .map(|s| s.prober.as_str())
            .collect();
        if !untimed.is_empty() && self.node.evidence.is_some() {
            let detail = format!(
                "prober(s) {} timed evidence answers but the responder did not report its \
                 in-TD evidence time (timings.evidence_ns): the evidence round trip cannot be \
                 checked",
                untimed.join(", ")
            );
            self.missing.push(format!("evidence round trip: {detail}"));
            self.check(VerdictCheck::EvidenceRtt, CheckStatus::Fail, detail);
            return Ok(());
        }
        if margins.is_empty() && node_inside.is_none() {
            let detail = "the responder did not report its in-TD evidence time";
            self.check(VerdictCheck::EvidenceRtt, CheckStatus::Skip, detail);
            return Ok(());
        }
        let held: Vec<_> = if margins.iter().any(|m| m.4) {
            margins.iter().copied().filter(|m| m.4).collect()
        } else {
            let closest = margins.iter().copied().min_by(|a, c| a.2.total_cmp(&c.2));
            closest.into_iter().collect()
        };
        let worst = held.iter().copied().max_by(|a, c| a.2.total_cmp(&c.2));
        self.j.evidence_excess_ms = worst.map(|m| m.1);
        let (factor, max) = (policy.evidence_rtt_factor, policy.max_evidence_excess_ms);
        let over: Vec<&str> = (held.iter())
            .filter(|m| m.4 && m.2 > max)
            .map(|m| m.0)
            .collect();
        if let ([p], Some((_, x, m, inside, _))) = (over.as_slice(), worst) {
            if held.len() >= 2 {
                let detail = format!(
                    "only prober {p} saw its evidence round trip exceed echo RTT + {inside:.2} \
                     ms in-TD time (by {x:.2} ms, {m:.2} ms beyond {factor:.1} extra echo round \
                     trips > {max:.2} ms) while {} other prober(s) on their own bundles stayed \
                     within the bound: one prober cannot accuse (check its site, clock and key)",
                    held.len() - 1
                );
                self.missing.push(format!("evidence round trip: {detail}"));
                self.check(VerdictCheck::EvidenceRtt, CheckStatus::Fail, detail);
                return Ok(());
            }
            // The only prober with its own bundle while others answer without one (their
            // bundles deleted from the store, say): it still cannot accuse alone (REVIEW4,
            // the C variant); those others hold the node through their keys anyway.
            let others = (probes.iter())
                .filter(|s| s.prober != *p && !s.samples.is_empty())
                .count();
            if others > 0 {
                let detail = format!(
                    "only prober {p} saw its evidence round trip exceed echo RTT + {inside:.2} \
                     ms in-TD time (by {x:.2} ms, {m:.2} ms beyond {factor:.1} extra echo round \
                     trips > {max:.2} ms), the only one on its own bundle while {others} other \
                     prober(s) answered without one: one prober cannot accuse (check its site, \
                     clock and key)"
                );
                self.missing.push(format!("evidence round trip: {detail}"));
                self.check(VerdictCheck::EvidenceRtt, CheckStatus::Fail, detail);
                return Ok(());
            }
        }
        match worst {
            Some((p, x, m, inside, _)) if m > max => {
                let detail = format!(
                    "evidence round trips exceed echo RTT + {inside:.2} ms in-TD time by \
                     {x:.2} ms at prober {p}, {m:.2} ms beyond {factor:.1} extra echo round \
                     trips (> {max:.2} ms): the evidence came from up to {:.0} km farther away \
                     than the echoes",
                    bound::max_distance_km(m)
                );
                return Err(self.fail(VerdictCheck::EvidenceRtt, Verdict::Proxied, detail));
            }
            Some((p, x, m, _, own)) => self.check(
                VerdictCheck::EvidenceRtt,
                CheckStatus::Pass,
                format!(
                    "evidence round trip excess within bound at {} (largest at {p}: {x:.2} ms, \
                     {m:.2} ms beyond {factor:.1} echo RTTs ≤ {max:.2} ms)",
                    if own {
                        format!("each of {} probers, on its own bundle", held.len())
                    } else {
                        "the closest prober".to_string()
                    }
                ),
            ),
            None => self.check(
                VerdictCheck::EvidenceRtt,
                CheckStatus::Skip,
                "no evidence round trips",
            ),
        }
        Ok(())
    }

    /// How far from the claim the TD may be; beyond `max_located_km` the node cannot be
    /// `located` (widened bounds locate nothing), whatever else passed.
    pub(super) fn reach(&mut self, used: &[ProberDistance], claim: LatLon) -> Reach {
        let world = self.world;
        let at: Vec<(LatLon, &ProberDistance)> = (used.iter())
            .filter_map(|d| Some((world.site(&world.prober(&d.prober)?.site)?.position(), d)))
            .collect();
        let anchors: Vec<(LatLon, &AnchorDistance)> = (self.j.anchors.iter())
            .filter_map(|a| Some((world.site(&a.site)?.position(), a)))
            .collect();
        let r = reach::reach(&at, &anchors, claim, self.policy);
        let max = self.policy.max_located_km;
        if r.km.is_nan() || r.km >= max {
            let mut m = format!(
                "uncertainty: the evidence leaves the TD anywhere within {} of the claim \
                 (located needs < {max:.0} km): {}",
                km(r.km),
                r.how
            );
            // anchors come only with verified evidence: say which refusal cost them
            if let Some(e) = self
                .node
                .refused_evidence
                .first()
                .filter(|_| anchors.is_empty())
            {
                m.push_str(&format!(" (anchors come with the evidence: {e})"));
            }
            self.missing.push(m);
        }
        r
    }

    /// Nothing a positive verdict needs is missing.
    pub(super) fn complete(&mut self) -> Rule {
        if self.missing.is_empty() {
            return Ok(());
        }
        let reasons = self
            .missing
            .iter()
            .map(|m| format!("missing: {m}"))
            .collect();
        Err(Decided::new(Verdict::Inconclusive, reasons))
    }

    /// Every rule passed.
    pub(super) fn located(
        &self,
        used: &[ProberDistance],
        region: &Region,
        spread: f64,
        reach: &Reach,
    ) -> Decided {
        let node = self.node;
        let best = (used.iter())
            .filter_map(|d| Some((d.prober.as_str(), d.excess_ms?)))
            .min_by(|a, c| a.1.total_cmp(&c.1));
        let mut reasons = vec![format!(
            "located at {}: claim inside the 2/3 c region of {} discs (area {:.0} km², radius {:.0} km)",
            node.claim,
            region.discs,
            region.area_km2.unwrap_or(0.0),
            region.radius_km.unwrap_or(0.0)
        )];
        if let Some((p, x)) = best {
            reasons.push(format!(
                "timing fits the claim: smallest excess {x:+.2} ms at {p}, spread {spread:.2} ms"
            ));
        }
        reasons.push(Timing::of(used).calibration(used, self.policy));
        reasons.push(format!(
            "uncertainty: the TD is within {} of the claim ({})",
            km(reach.km),
            reach.how
        ));
        if !self.j.anchors.is_empty() {
            reasons.push(format!("{} anchors near the claim", self.j.anchors.len()));
        }
        if node.evidence.is_some() {
            reasons.push("evidence valid and bound".into());
        }
        let poe = (node.poe.as_ref())
            .and_then(|p| p.poe.as_ref())
            .filter(|p| p.document_valid())
            .and_then(|p| p.claims.as_ref());
        if let Some(c) = poe {
            reasons.push(format!(
                "POE: platform {} owned by {} (signed by {})",
                c.piid,
                c.owner,
                c.signer.as_deref().unwrap_or("?")
            ));
        }
        Decided::new(Verdict::Located, reasons)
    }
}

/// The used probers' excess over the prediction for the claim, against what each allows.
struct Timing {
    min_r: f64,
    median_r: f64,
    spread: f64,
    /// Smallest `excess − slack` over the probers: > 0 when every prober is too slow.
    min_over_slack: f64,
    /// Every used prober predicts from a landmark at the claim.
    calibrated_at_claim: bool,
    /// Probers faster than predicted by more than their slack (reported, never accused).
    fast: Vec<String>,
    /// `prober +excess (slack)` for every used prober.
    list: String,
    /// Used probers with an excess (the ones the other fields are over).
    rows: usize,
}

impl Timing {
    fn of(used: &[ProberDistance]) -> Self {
        let rows: Vec<(&ProberDistance, f64)> = (used.iter())
            .filter_map(|d| Some((d, d.excess_ms?)))
            .collect();
        let min_r = rows.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        let max_r = rows.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
        let mut sorted: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let median_r = super::relocation::median(&mut sorted);
        let min_over_slack = (rows.iter())
            .map(|(d, x)| x - d.slack_ms)
            .fold(f64::INFINITY, f64::min);
        let fast = (rows.iter())
            .filter(|(d, x)| *x < -d.slack_ms)
            .map(|(d, x)| format!("{} {x:+.2} ms", d.prober))
            .collect();
        let list = (rows.iter())
            .map(|(d, x)| format!("{} {x:+.2} (≤ {:.2})", d.prober, d.slack_ms))
            .collect::<Vec<_>>()
            .join(", ");
        Timing {
            min_r,
            median_r,
            spread: max_r - min_r,
            min_over_slack,
            calibrated_at_claim: !rows.is_empty()
                && rows.iter().all(|(d, _)| {
                    d.reference
                        .as_deref()
                        .is_some_and(|r| r.starts_with("landmark"))
                }),
            fast,
            list,
            rows: rows.len(),
        }
    }

    /// Every prober slower than a node at the claim may be.
    fn all_slow(&self) -> bool {
        self.min_over_slack.is_finite() && self.min_over_slack > 0.0
    }

    /// What the predictions rest on, with the uncertainty it leaves in km.
    fn calibration(&self, used: &[ProberDistance], policy: &crate::policy::Policy) -> String {
        let at_claim = (used.iter())
            .filter(|d| (d.reference.as_deref()).is_some_and(|r| r.starts_with("landmark")))
            .count();
        let bestline = (used.iter())
            .filter(|d| (d.reference.as_deref()).is_some_and(|r| r.starts_with("bestline")))
            .count();
        let slack = (used.iter())
            .map(|d| d.slack_ms)
            .fold(f64::INFINITY, f64::min);
        // the slack at light speed in fiber: the farthest an honest node's extra delay reaches
        let km = if slack.is_finite() {
            bound::max_distance_km(slack)
        } else {
            0.0
        };
        let refs: Vec<String> = (used.iter())
            .filter_map(|d| Some(format!("{}: {}", d.prober, d.reference.as_deref()?)))
            .collect();
        if at_claim == 0 && bestline == 0 {
            return format!(
                "calibration: none (no landmarks): predictions at inflation {:.1}, bounds \
                 widened to inflation {:.1} and {:.0} km around the site; timing resolves the \
                 node to ±{km:.0} km",
                policy.inflation, policy.inflation_ceiling, policy.claim_radius_km
            );
        }
        format!(
            "calibration: landmark at the claim for {at_claim}/{n} probers, bestline for \
             {bestline} ({}); timing resolves the node to ±{km:.0} km",
            refs.join("; "),
            n = used.len()
        )
    }
}

/// A distance bound for reasons: `N km`, or "any distance" when nothing bounds it.
fn km(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0} km")
    } else {
        "any distance".into()
    }
}
