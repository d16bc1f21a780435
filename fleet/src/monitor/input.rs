//! What the verdict engine gets from the database: the world (sites, probers) and, per node,
//! one window of samples per prober with the node's baseline from the rounds before it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::store::{EvidenceRecord, Store, StoreError};
use locus_analysis::verify::bundle::nonce::NonceRecord;
use locus_analysis::verify::bundle::{verify_bundle_bytes, EvidencePolicy, VerifyInputs};
use locus_analysis::{
    BaselineMin, BundleFindings, EchoSample, EvidenceSummary, InTdTimings, LandmarkRtt, NodeInput,
    Prober, ProberSeries, Site, VerifiedKey, World,
};
use locus_proto::evidence::EvidenceBundle;

/// The stored evidence bundles the monitor verifies, and under which policy.
pub struct EvidenceConfig {
    pub policy: EvidencePolicy,
    /// How far back from a judgement the latest bundle counts.
    pub window: Duration,
}

/// Sites and probers as the probers recorded them, and each prober's smallest round trip to
/// each landmark site over `[from, to)` (the judging window): the engine's calibration.
pub(crate) fn world(store: &Store, from: i64, to: i64) -> Result<World, StoreError> {
    Ok(World {
        sites: store
            .sites()?
            .into_iter()
            .map(|s| Site {
                name: s.name,
                lat: s.lat,
                lon: s.lon,
            })
            .collect(),
        probers: store
            .probers()?
            .into_iter()
            .map(|(id, site)| Prober { id, site })
            .collect(),
        landmarks: store
            .landmark_minima_between(from, to)?
            .into_iter()
            .map(|l| LandmarkRtt {
                prober: l.prober,
                site: l.site,
                min_rtt_ns: l.min_rtt_ns,
            })
            .collect(),
    })
}

/// One node's input for `[from, to)`: samples (wall-clock `sent_ns`), challenges sent, evidence
/// round trips per prober; the baseline is the median of each prober's last `baseline_rounds`
/// round minima before `from`. A prober whose rounds all failed contributes an empty series,
/// so a node no prober reaches is judged `unreachable`.
///
/// Per prober, the series keeps the samples of one session key: one that `keys` (verified
/// bundles) vouches for that prober, else the key of its latest sample, which the verdict then
/// names as unverified; samples and evidence round trips under other keys are left out.
pub(crate) fn node_input(
    store: &Store,
    node: &str,
    claim: &str,
    window: (i64, i64),
    baseline_rounds: usize,
    keys: &[VerifiedKey],
) -> Result<NodeInput, StoreError> {
    let (from, to) = window;
    let mut series: BTreeMap<String, ProberSeries> = BTreeMap::new();
    for r in store.rounds_between(node, from, to)? {
        series_of(&mut series, &r.prober).sent += r.sent;
    }
    let samples = store.samples_between(node, from, to)?;
    let mut chosen: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    // oldest first: a later unvouched key replaces an earlier one, a vouched key stays
    for ps in &samples {
        let key = ps.spki.as_deref();
        let vouched =
            |k: Option<&str>| k.is_some_and(|k| keys.iter().any(|v| v.vouches_for(&ps.prober, k)));
        let slot = chosen.entry(ps.prober.as_str()).or_insert(key);
        if !vouched(*slot) {
            *slot = key;
        }
    }
    for ps in &samples {
        let key = chosen.get(ps.prober.as_str()).copied().flatten();
        if ps.spki.as_deref() != key {
            continue;
        }
        let s = series_of(&mut series, &ps.prober);
        s.peer_spki = key.map(str::to_owned);
        s.samples.push(EchoSample {
            sent_ns: u64::try_from(ps.sample.sent_unix_ns).unwrap_or(0),
            rtt_ns: ps.sample.rtt_ns,
            inside_ns: ps.sample.inside_ns,
        });
    }
    for (prober, rtt, peer) in store.evidence_rtts_between(node, from, to)? {
        // requests stored before schema 3 carry no key and keep counting
        let key = chosen.get(prober.as_str()).copied().flatten();
        if peer.is_some() && key.is_some() && peer.as_deref() != key {
            continue;
        }
        series_of(&mut series, &prober).evidence_rtt_ns.push(rtt);
    }
    let dropped = samples.len() - series.values().map(|s| s.samples.len()).sum::<usize>();
    if dropped > 0 {
        tracing::debug!(node, dropped, "samples under another session key left out");
    }
    let mut history: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (prober, min) in store.round_minima_before(node, from, baseline_rounds)? {
        history.entry(prober).or_default().push(min);
    }
    let baseline = history
        .iter()
        .filter_map(|(p, mins)| BaselineMin::from_history(p.clone(), mins))
        .collect();
    Ok(NodeInput {
        name: node.to_owned(),
        claim: claim.to_owned(),
        probes: series.into_values().collect(),
        baseline,
        ..NodeInput::default()
    })
}

fn series_of<'a>(m: &'a mut BTreeMap<String, ProberSeries>, prober: &str) -> &'a mut ProberSeries {
    m.entry(prober.to_owned()).or_insert_with(|| ProberSeries {
        prober: prober.to_owned(),
        samples: Vec::new(),
        sent: 0,
        evidence_rtt_ns: Vec::new(),
        peer_spki: None,
    })
}

/// Per node, each prober's latest stored bundle in the evidence window ending at `now_ns`.
pub(crate) fn latest_bundles(
    store: &Store,
    e: &EvidenceConfig,
    now_ns: i64,
) -> Result<BTreeMap<String, Vec<EvidenceRecord>>, StoreError> {
    let from = now_ns.saturating_sub(i64::try_from(e.window.as_nanos()).unwrap_or(i64::MAX));
    let mut out: BTreeMap<String, Vec<EvidenceRecord>> = BTreeMap::new();
    for r in store.evidence_bundles_between(from, now_ns)? {
        out.entry(r.target.clone()).or_default().push(r);
    }
    Ok(out)
}

/// Verifies each prober's latest stored bundle of the node as of its collection. The node's
/// latest bundle gives the evidence summary, anchors and in-TD timings; every bundle that
/// verified vouches for its prober's session key (`session_keys`). The nonce is the one the
/// prober stored with its request (the daemons are this verifier's nonce issuers); the session
/// key is the one the request's connection showed. None without a bundle: the verdict policy
/// decides (`require_evidence`).
pub(crate) fn verify_evidence(
    store: &Store,
    e: &EvidenceConfig,
    node: &str,
    recs: &[EvidenceRecord],
    now_ns: i64,
) -> Result<Option<BundleFindings>, StoreError> {
    let mut keys = Vec::new();
    let mut latest: Option<(i64, BundleFindings)> = None;
    for rec in recs {
        let Some(found) = verify_one(store, e, node, rec, now_ns)? else {
            continue;
        };
        keys.extend(found.evidence.session_keys.iter().cloned());
        if latest.as_ref().is_none_or(|(at, _)| rec.at_unix_ns > *at) {
            latest = Some((rec.at_unix_ns, found));
        }
    }
    Ok(latest.map(|(_, mut found)| {
        found.evidence.session_keys = keys;
        found
    }))
}

fn verify_one(
    store: &Store,
    e: &EvidenceConfig,
    node: &str,
    rec: &EvidenceRecord,
    now_ns: i64,
) -> Result<Option<BundleFindings>, StoreError> {
    let Some(bytes) = rec.bundle.as_ref() else {
        return Ok(None);
    };
    let collected_ns = rec
        .at_unix_ns
        .saturating_add(i64::try_from(rec.rtt_ns.unwrap_or(0)).unwrap_or(0));
    let from = now_ns.saturating_sub(i64::try_from(e.window.as_nanos()).unwrap_or(i64::MAX));
    // The key the request's own connection showed; records from before schema 3 lack it,
    // then the same prober's round closest to the request stands in.
    let recorded = rec.peer_spki.as_deref().and_then(|k| hex::decode(k).ok());
    let peer_spki = match recorded {
        Some(k) => Some(k),
        None => store
            .rounds_between(node, from, now_ns)?
            .into_iter()
            .filter(|r| r.prober == rec.prober)
            .filter_map(|r| Some((r.started_unix_ns.abs_diff(rec.at_unix_ns), r.spki?)))
            .min_by_key(|(gap, _)| *gap)
            .and_then(|(_, spki)| hex::decode(spki).ok()),
    };
    let inputs = VerifyInputs {
        now_unix: u64::try_from(collected_ns / 1_000_000_000).unwrap_or(0),
        nonce_record: rec.nonce.as_ref().map(|nonce| NonceRecord {
            nonce: nonce.clone(),
            issuer: e.policy.nonce_issuer.clone(),
            issued_at: u64::try_from(rec.at_unix_ns / 1_000_000_000).unwrap_or(0),
            used: false,
        }),
        peer_spki,
    };
    Ok(Some(match EvidenceBundle::from_cbor(bytes) {
        Ok(bundle) => {
            BundleFindings::verify(&bundle, &e.policy, &inputs).requested_over(&rec.prober)
        }
        // The report names the decoding failure (`bundle_format`).
        Err(_) => {
            let report = verify_bundle_bytes(bytes, &e.policy, &inputs);
            BundleFindings {
                evidence: EvidenceSummary::from_report(&report),
                in_td: InTdTimings::default(),
                anchors: Vec::new(),
                anchor_error: None,
                failed_anchors: Vec::new(),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LandmarkRoundRecord, SiteRecord};

    fn landmark_round(prober: &str, at: i64, min: u64) -> LandmarkRoundRecord {
        LandmarkRoundRecord {
            prober: prober.into(),
            landmark: "ref-fra".into(),
            site: "fra".into(),
            address: "127.0.0.1:4500".into(),
            spki: None,
            started_unix_ns: at,
            sent: 5,
            answered: 5,
            min_rtt_ns: Some(min + 20),
            min_eff_rtt_ns: Some(min),
            error: None,
        }
    }

    /// The monitor's world carries each prober's landmark minimum over the judging window, and
    /// a landmark the probers recorded is consistent with their sites.
    #[test]
    fn world_has_the_landmark_minima_of_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("w.db")).unwrap();
        let sites = [
            SiteRecord {
                name: "ams".into(),
                lat: 52.37,
                lon: 4.9,
            },
            SiteRecord {
                name: "fra".into(),
                lat: 50.11,
                lon: 8.68,
            },
        ];
        store.upsert_world("p-ams", "ams", &sites).unwrap();
        store.upsert_world("p-fra", "fra", &sites).unwrap();
        for r in [
            landmark_round("p-ams", 100, 5_600_000),
            landmark_round("p-ams", 200, 5_400_000),
            landmark_round("p-fra", 150, 90_000),
            // Before the window: an older route, not this window's calibration.
            landmark_round("p-ams", 10, 1_000_000),
        ] {
            store.insert_landmark_round(&r).unwrap();
        }
        let w = world(&store, 50, 300).unwrap();
        assert_eq!(
            w.landmarks,
            [
                LandmarkRtt {
                    prober: "p-ams".into(),
                    site: "fra".into(),
                    min_rtt_ns: 5_400_000
                },
                LandmarkRtt {
                    prober: "p-fra".into(),
                    site: "fra".into(),
                    min_rtt_ns: 90_000
                },
            ]
        );
        assert_eq!(w.problems(), Vec::<String>::new());
        assert!(world(&store, 300, 400).unwrap().landmarks.is_empty());
    }
}
