//! Which sample series count: only those taken under a session key that verified evidence
//! binds, so fast answers from one box cannot borrow the evidence of another.

use super::verdict::{Decided, Judging, Rule, Verdict};
use crate::check::{CheckStatus, VerdictCheck};
use crate::input::{ProberSeries, VerifiedKey};

/// A key as reasons show it: the first 8 bytes of its SHA-256 (what binding hashes), or the
/// text itself when it is not hex.
pub(super) fn short_key(spki_hex: &str) -> String {
    match hex::decode(spki_hex) {
        Ok(der) => format!(
            "sha256:{}…",
            hex::encode(&locus_proto::binding::spki_hash(&der)[..8])
        ),
        Err(_) => spki_hex.to_string(),
    }
}

impl Judging<'_> {
    /// The session keys the node's verified evidence binds; empty when there is no evidence
    /// or it names none (a summary from before session keys were recorded): the rule is off.
    fn verified_keys(&self) -> &[VerifiedKey] {
        self.node
            .evidence
            .as_ref()
            .map_or(&[], |e| e.session_keys.as_slice())
    }

    /// The in-TD evidence time of the bundle verified over `s`'s own connection, when known.
    pub(super) fn own_evidence_ns(&self, s: &ProberSeries) -> Option<u64> {
        let peer = s.peer_spki.as_deref()?;
        (self.verified_keys().iter())
            .filter(|k| k.prober.as_deref() == Some(s.prober.as_str()))
            .find(|k| k.vouches_for(&s.prober, peer))?
            .evidence_ns
    }

    /// Why `s`'s samples do not count, or None when they do.
    pub(super) fn key_mismatch(&self, s: &ProberSeries) -> Option<String> {
        let keys = self.verified_keys();
        if keys.is_empty() || s.samples.is_empty() {
            return None;
        }
        let Some(peer) = &s.peer_spki else {
            return Some(format!(
                "{}: its {} samples carry no session key",
                s.prober,
                s.samples.len()
            ));
        };
        if keys.iter().any(|k| k.vouches_for(&s.prober, peer)) {
            return None;
        }
        let verified: Vec<String> = (keys.iter())
            .map(|k| match &k.prober {
                Some(p) => format!("{} over {p}", short_key(&k.spki)),
                None => short_key(&k.spki),
            })
            .collect();
        Some(format!(
            "{}: its {} samples came from session key {}, which no bundle verified for it binds \
             (verified: {})",
            s.prober,
            s.samples.len(),
            short_key(peer),
            verified.join(", ")
        ))
    }

    /// Samples count only under a session key that a bundle verified for the same prober
    /// binds; when too few probers are left, `inconclusive` naming each mismatch.
    pub(super) fn session_key(&mut self, probes: &[&ProberSeries]) -> Rule {
        if self.verified_keys().is_empty() {
            let detail = "no verified evidence names a session key: samples are not matched";
            self.check(VerdictCheck::SessionKey, CheckStatus::Skip, detail);
            return Ok(());
        }
        let mismatched: Vec<String> = probes.iter().filter_map(|s| self.key_mismatch(s)).collect();
        let counted = probes.len() - mismatched.len();
        if mismatched.is_empty() {
            let detail = format!("all {counted} sample series under verified session keys");
            self.check(VerdictCheck::SessionKey, CheckStatus::Pass, detail);
            return Ok(());
        }
        let used = self.j.distances.iter().filter(|d| d.used).count();
        let need = self.policy.min_probers;
        let detail = format!(
            "samples not counted (session key mismatch): {}",
            mismatched.join("; ")
        );
        if used < need {
            let reasons = vec![
                format!(
                    "inconclusive: {used} probers count, need {need}: samples under a session \
                     key no verified bundle binds do not count"
                ),
                format!("session key mismatch: {}", mismatched.join("; ")),
            ];
            let d = self.fail(VerdictCheck::SessionKey, Verdict::Inconclusive, detail);
            return Err(Decided::because(d, reasons));
        }
        self.check(VerdictCheck::SessionKey, CheckStatus::Pass, detail);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::check::{CheckName, CheckStatus, VerdictCheck};
    use crate::input::{
        AnchorReport, EchoSample, EvidenceSummary, NodeInput, Prober, ProberSeries, Site,
        VerifiedKey, World,
    };
    use crate::judge::geo::distance_km;
    use crate::{judge, Judgement, Policy, Verdict};

    const TD_KEY: &str = "aa01";
    const NEAR_KEY: &str = "bb02";
    const PROBERS: [&str; 4] = ["ams", "lon", "par", "waw"];
    /// The claim (fra) and the probers' sites.
    const SITES: [(&str, f64, f64); 5] = [
        ("fra", 50.11, 8.68),
        ("ams", 52.37, 4.90),
        ("lon", 51.51, -0.13),
        ("par", 48.86, 2.35),
        ("waw", 52.23, 21.01),
    ];

    fn world() -> World {
        World {
            sites: (SITES.iter())
                .map(|&(name, lat, lon)| Site {
                    name: name.into(),
                    lat,
                    lon,
                })
                .collect(),
            probers: (PROBERS.iter())
                .map(|s| Prober {
                    id: format!("p-{s}"),
                    site: s.to_string(),
                })
                .collect(),
            landmarks: Vec::new(),
        }
    }

    /// A node answering as if at `fra` (the claim), each prober's samples under `keys[i]`;
    /// the verified evidence vouches for `vouched`.
    fn node(keys: [Option<&str>; 4], vouched: Vec<VerifiedKey>) -> NodeInput {
        let w = world();
        let fra = w.site("fra").unwrap().position();
        let probes = (PROBERS.iter().zip(keys))
            .map(|(p, key)| {
                let d = distance_km(w.site(p).unwrap().position(), fra);
                let rtt_ms = 2.0 * d * 1.5 / 200.0 + 0.1;
                let samples: Vec<EchoSample> = (0..200u64)
                    .map(|k| EchoSample {
                        sent_ns: k * 100_000_000,
                        rtt_ns: ((rtt_ms + (k % 5) as f64 * 0.01) * 1e6) as u64,
                        inside_ns: 20_000,
                    })
                    .collect();
                ProberSeries {
                    prober: format!("p-{p}"),
                    sent: samples.len() as u64,
                    evidence_rtt_ns: vec![samples[0].rtt_ns + 11_000_000],
                    samples,
                    peer_spki: key.map(str::to_owned),
                }
            })
            .collect();
        let mut n = NodeInput {
            name: "n".into(),
            claim: "fra".into(),
            probes,
            anchors: vec![AnchorReport {
                site: "fra".into(),
                min_rtt_ns: 300_000,
                samples: 10,
            }],
            evidence: Some(EvidenceSummary {
                valid: true,
                tdx_vtpm_bound: Some(true),
                session_keys: vouched,
                ..EvidenceSummary::default()
            }),
            ..NodeInput::default()
        };
        n.in_td.evidence_ns = Some(10_000_000);
        n
    }

    fn key(spki: &str, prober: Option<&str>) -> VerifiedKey {
        VerifiedKey {
            spki: spki.into(),
            prober: prober.map(str::to_owned),
            // the in-TD time of the prober's own bundle (the node's in this fixture)
            evidence_ns: prober.map(|_| 10_000_000),
        }
    }

    fn each_own(spki: &str) -> Vec<VerifiedKey> {
        (PROBERS.iter())
            .map(|p| key(spki, Some(&format!("p-{p}"))))
            .collect()
    }

    fn status(j: &Judgement, c: VerdictCheck) -> Option<CheckStatus> {
        let c = CheckName::from(c);
        j.checks.iter().find(|x| x.name == c).map(|x| x.status)
    }

    fn judged(n: &NodeInput) -> Judgement {
        judge(&world(), n, &Policy::default())
    }

    #[test]
    fn every_prober_under_its_verified_key_is_located() {
        let j = judged(&node([Some(TD_KEY); 4], each_own(TD_KEY)));
        assert_eq!(j.verdict, Verdict::Located, "{:?}", j.reasons);
        assert_eq!(
            status(&j, VerdictCheck::SessionKey),
            Some(CheckStatus::Pass)
        );
        // A key with no prober (a bundle file judged offline) vouches for every prober.
        let j = judged(&node([Some(TD_KEY); 4], vec![key(TD_KEY, None)]));
        assert_eq!(j.verdict, Verdict::Located, "{:?}", j.reasons);
    }

    #[test]
    fn samples_under_another_key_do_not_count_and_the_reason_names_it() {
        // Prober ams reached the TD (its bundle verified); the others reached a near box
        // under its own key, which no bundle binds.
        let keys = [Some(TD_KEY), Some(NEAR_KEY), Some(NEAR_KEY), None];
        let j = judged(&node(keys, vec![key(TD_KEY, Some("p-ams"))]));
        assert_eq!(j.verdict, Verdict::Inconclusive, "{:?}", j.reasons);
        assert_eq!(
            status(&j, VerdictCheck::SessionKey),
            Some(CheckStatus::Fail)
        );
        let text = j.reasons.join("\n");
        assert!(text.contains("session key mismatch"), "{text}");
        assert!(
            text.contains("p-lon: its 200 samples came from session key"),
            "{text}"
        );
        assert!(
            text.contains("p-waw: its 200 samples carry no session key"),
            "{text}"
        );
        assert_eq!(j.distances.iter().filter(|d| d.used).count(), 1);
    }

    #[test]
    fn a_key_verified_for_another_prober_does_not_vouch() {
        let j = judged(&node([Some(TD_KEY); 4], vec![key(TD_KEY, Some("p-ams"))]));
        assert_eq!(j.verdict, Verdict::Inconclusive, "{:?}", j.reasons);
        // one extra prober under an unverified key leaves three that count: located
        let mut vouched = each_own(TD_KEY);
        vouched.pop();
        let j = judged(&node([Some(TD_KEY); 4], vouched));
        assert_eq!(j.verdict, Verdict::Located, "{:?}", j.reasons);
        let detail = &j
            .checks
            .iter()
            .find(|c| c.name == CheckName::from(VerdictCheck::SessionKey));
        assert!(detail.unwrap().detail.contains("p-waw"), "{detail:?}");
    }

    #[test]
    fn evidence_without_session_keys_leaves_the_rule_off() {
        let j = judged(&node([None; 4], Vec::new()));
        assert_eq!(j.verdict, Verdict::Located, "{:?}", j.reasons);
        assert_eq!(
            status(&j, VerdictCheck::SessionKey),
            Some(CheckStatus::Skip)
        );
    }

    #[test]
    fn the_evidence_round_trip_bound_holds_at_every_prober_not_only_the_closest() {
        let mut n = node([Some(TD_KEY); 4], each_own(TD_KEY));
        assert_eq!(judged(&n).verdict, Verdict::Located);
        // waw's evidence took a 70 ms detour (beyond 3 echo RTTs); the closest prober's did not.
        // REVIEW3 C: one prober alone does not accuse while others' own bundles pass: held.
        n.probes[3].evidence_rtt_ns = vec![n.probes[3].samples[0].rtt_ns + 80_000_000];
        let j = judged(&n);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{:?}", j.reasons);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{:?}", j.reasons);
        // REVIEW4 M3: the reason reads as one sentence (no runs of spaces from a split literal).
        assert!(
            j.reasons.iter().all(|r| !r.contains("  ")),
            "{:?}",
            j.reasons
        );
        // a second prober agreeing accuses
        n.probes[2].evidence_rtt_ns = vec![n.probes[2].samples[0].rtt_ns + 80_000_000];
        let j = judged(&n);
        assert_eq!(j.verdict, Verdict::Proxied, "{:?}", j.reasons);
        assert!(j.reasons[0].contains("at prober p-"), "{:?}", j.reasons);
        n.probes[2].evidence_rtt_ns = vec![n.probes[2].samples[0].rtt_ns + 11_000_000];
        // a prober whose samples do not count is not held to it either
        let mut vouched = each_own(TD_KEY);
        vouched.pop();
        n.probes[3].peer_spki = Some(NEAR_KEY.into());
        let j = judged(&NodeInput {
            evidence: Some(EvidenceSummary {
                session_keys: vouched,
                ..n.evidence.clone().unwrap()
            }),
            ..n.clone()
        });
        assert_eq!(j.verdict, Verdict::Located, "{:?}", j.reasons);
        // offline, a bundle file names no prober: only the closest is held to the node's time
        n.probes[3].peer_spki = Some(TD_KEY.into());
        let offline = NodeInput {
            evidence: Some(EvidenceSummary {
                session_keys: vec![key(TD_KEY, None)],
                ..n.evidence.clone().unwrap()
            }),
            ..n
        };
        let j = judged(&offline);
        assert_eq!(j.verdict, Verdict::Located, "{:?}", j.reasons);
    }

    /// REVIEW4 (the reviewer's PoC, a REVIEW3 C variant): with the others' evidence records
    /// deleted, a stolen-key prober is "the only prober with its own bundle"; while the others
    /// answer echoes it still does not accuse alone.
    #[test]
    fn review4_one_prober_does_not_accuse_alone_once_the_others_bundles_are_gone() {
        let mut n = node([Some(TD_KEY); 4], each_own(TD_KEY));
        n.probes[3].evidence_rtt_ns = vec![n.probes[3].samples[0].rtt_ns + 80_000_000];
        // the others keep a key vouched by an older bundle (offline-like), waw alone its own
        let mut keys = vec![key(TD_KEY, Some("p-waw"))];
        keys.push(key(TD_KEY, None));
        n.evidence.as_mut().unwrap().session_keys = keys;
        let j = judged(&n);
        assert_ne!(j.verdict, Verdict::Proxied, "{:?}", j.reasons);
        // only waw's own bundle left
        n.evidence.as_mut().unwrap().session_keys = vec![key(TD_KEY, Some("p-waw"))];
        let j = judged(&n);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{:?}", j.reasons);
    }
}
