//! What the verdict engine gets from the database: the world (sites, probers) and, per node,
//! one window of samples per prober with the node's baseline from the rounds before it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::store::{EvidenceRecord, Store, StoreError};
use locus_analysis::verify::bundle::nonce::NonceRecord;
use locus_analysis::verify::bundle::{verify_bundle_bytes, EvidencePolicy, VerifyInputs};
use locus_analysis::{
    BaselineMin, BundleFindings, EchoSample, EvidenceSummary, NodeInput, Prober, ProberSeries,
    Site, World,
};
use locus_proto::evidence::EvidenceBundle;

/// The stored evidence bundles the monitor verifies, and under which policy.
pub struct EvidenceConfig {
    pub policy: EvidencePolicy,
    /// How far back from a judgement the latest bundle counts.
    pub window: Duration,
}

/// Sites and probers as the probers recorded them.
pub(crate) fn world(store: &Store) -> Result<World, StoreError> {
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
        landmarks: Vec::new(),
    })
}

/// One node's input for `[from, to)`: samples (wall-clock `sent_ns`), challenges sent, evidence
/// round trips per prober; the baseline is the median of each prober's last `baseline_rounds`
/// round minima before `from`. A prober whose rounds all failed contributes an empty series,
/// so a node no prober reaches is judged `unreachable`. Evidence is attached by
/// [`attach_evidence`].
pub(crate) fn node_input(
    store: &Store,
    node: &str,
    claim: &str,
    from: i64,
    to: i64,
    baseline_rounds: usize,
) -> Result<NodeInput, StoreError> {
    let mut series: BTreeMap<String, ProberSeries> = BTreeMap::new();
    for r in store.rounds_between(node, from, to)? {
        series_of(&mut series, &r.prober).sent += r.sent;
    }
    for ps in store.samples_between(node, from, to)? {
        series_of(&mut series, &ps.prober).samples.push(EchoSample {
            sent_ns: u64::try_from(ps.sample.sent_unix_ns).unwrap_or(0),
            rtt_ns: ps.sample.rtt_ns,
            inside_ns: ps.sample.inside_ns,
        });
    }
    for (prober, rtt) in store.evidence_rtts_between(node, from, to)? {
        series_of(&mut series, &prober).evidence_rtt_ns.push(rtt);
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
    })
}

/// Per node, its latest stored bundle in the evidence window ending at `now_ns`.
pub(crate) fn latest_bundles(
    store: &Store,
    e: &EvidenceConfig,
    now_ns: i64,
) -> Result<BTreeMap<String, EvidenceRecord>, StoreError> {
    let from = now_ns.saturating_sub(i64::try_from(e.window.as_nanos()).unwrap_or(i64::MAX));
    Ok(store
        .evidence_bundles_between(from, now_ns)?
        .into_iter()
        .map(|r| (r.target.clone(), r))
        .collect())
}

/// Verifies the node's latest stored bundle as of its collection and puts what it shows into
/// `input` (evidence summary, anchors, in-TD timings). The nonce is the one the prober stored
/// with its request (the daemons are this verifier's nonce issuers); the session key is the one
/// the same prober saw in its round closest to the request. Without a bundle, `input` keeps no
/// evidence and the verdict policy decides (`require_evidence`).
pub(crate) fn attach_evidence(
    store: &Store,
    e: &EvidenceConfig,
    rec: Option<&EvidenceRecord>,
    input: &mut NodeInput,
    now_ns: i64,
) -> Result<(), StoreError> {
    let Some((rec, bytes)) = rec.and_then(|r| Some((r, r.bundle.as_ref()?))) else {
        return Ok(());
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
            .rounds_between(&input.name, from, now_ns)?
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
    match EvidenceBundle::from_cbor(bytes) {
        Ok(bundle) => BundleFindings::verify(&bundle, &e.policy, &inputs).apply_to(input),
        // The report names the decoding failure (`bundle_format`).
        Err(_) => {
            let report = verify_bundle_bytes(bytes, &e.policy, &inputs);
            input.evidence = Some(EvidenceSummary::from_report(&report));
        }
    }
    Ok(())
}
