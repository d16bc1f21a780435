//! What the verdict engine gets from the database: the world (sites, probers) and, per node,
//! one window of samples per prober with the node's baseline from the rounds before it.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::warn;

use crate::integrity::{Rejection, Trust};
use crate::store::{EvidenceRecord, Store, StoreError, StoredRound};
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

/// Rows a judgement did not use, by table (`rounds`, `evidence`) and reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Rejected(pub(crate) BTreeMap<(&'static str, Rejection), u64>);

impl Rejected {
    fn add(&mut self, table: &'static str, why: Rejection) {
        *self.0.entry((table, why)).or_default() += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `"3 rounds (bad_signature), 1 evidence (unknown_prober)"`.
    pub(crate) fn describe(&self) -> String {
        self.0
            .iter()
            .map(|((table, why), n)| format!("{n} {table} ({why})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One node's input for `[from, to)`, from the rows `trust` accepts: samples (wall-clock
/// `sent_ns`) of every round overlapping the window, challenges sent of the rounds started in
/// it, evidence round trips per prober; the baseline is the median of each prober's last
/// `baseline_rounds` round minima before `from`. A prober whose rounds all failed contributes
/// an empty series, so a node no prober reaches is judged `unreachable`. Evidence is attached
/// by [`attach_evidence`]. Also returns how many window rounds were accepted and what was
/// rejected.
#[expect(
    clippy::too_many_arguments,
    reason = "the judgement's parameters, one call site"
)]
pub(crate) fn node_input(
    store: &Store,
    trust: &Trust,
    node: &str,
    claim: &str,
    from: i64,
    to: i64,
    baseline_rounds: usize,
    rejected: &mut Rejected,
) -> Result<(NodeInput, usize), StoreError> {
    let mut series: BTreeMap<String, ProberSeries> = BTreeMap::new();
    let mut accepted = 0;
    for StoredRound { id, round: r } in store.rounds_overlapping(node, from, to)? {
        let samples = store.samples_of_round(id)?;
        if let Err(why) = trust.check_round(&r, Some(&samples)) {
            warn!(node, prober = %r.prober, round = id, reason = %why, "round rejected");
            rejected.add("rounds", why);
            continue;
        }
        let s = series_of(&mut series, &r.prober);
        if r.started_unix_ns >= from {
            accepted += 1;
            s.sent += r.sent;
        }
        s.samples.extend(
            samples
                .iter()
                .filter(|x| x.sent_unix_ns >= from && x.sent_unix_ns < to)
                .map(|x| EchoSample {
                    sent_ns: u64::try_from(x.sent_unix_ns).unwrap_or(0),
                    rtt_ns: x.rtt_ns,
                    inside_ns: x.inside_ns,
                }),
        );
    }
    for e in store.evidence_between(node, from, to)? {
        if let Err(why) = trust.check_evidence(&e) {
            warn!(node, prober = %e.prober, reason = %why, "evidence record rejected");
            rejected.add("evidence", why);
            continue;
        }
        if let (true, Some(rtt)) = (e.ok, e.rtt_ns) {
            series_of(&mut series, &e.prober).evidence_rtt_ns.push(rtt);
        }
    }
    // The engine wants each prober's samples in time order, as the database gave them before.
    for s in series.values_mut() {
        s.samples.sort_by_key(|x| x.sent_ns);
        s.evidence_rtt_ns.reverse();
    }
    let mut history: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in store.rounds_before(node, from, baseline_rounds)? {
        match (trust.check_round(&r, None), r.min_eff_rtt_ns) {
            (Ok(()), Some(min)) => history.entry(r.prober).or_default().push(min),
            (Ok(()), None) => {}
            (Err(why), _) => rejected.add("rounds", why),
        }
    }
    let baseline = history
        .iter()
        .filter_map(|(p, mins)| BaselineMin::from_history(p.clone(), mins))
        .collect();
    let input = NodeInput {
        name: node.to_owned(),
        claim: claim.to_owned(),
        probes: series.into_values().collect(),
        baseline,
        ..NodeInput::default()
    };
    Ok((input, accepted))
}

fn series_of<'a>(m: &'a mut BTreeMap<String, ProberSeries>, prober: &str) -> &'a mut ProberSeries {
    m.entry(prober.to_owned()).or_insert_with(|| ProberSeries {
        prober: prober.to_owned(),
        samples: Vec::new(),
        sent: 0,
        evidence_rtt_ns: Vec::new(),
    })
}

/// The node's latest evidence record with a bundle in the evidence window ending at `now_ns`
/// that `trust` accepts (a forged newer record does not hide an older genuine one).
pub(crate) fn latest_bundle(
    store: &Store,
    trust: &Trust,
    e: &EvidenceConfig,
    node: &str,
    now_ns: i64,
    rejected: &mut Rejected,
) -> Result<Option<EvidenceRecord>, StoreError> {
    let from = now_ns.saturating_sub(i64::try_from(e.window.as_nanos()).unwrap_or(i64::MAX));
    for rec in store.evidence_between(node, from, now_ns)? {
        if rec.bundle.is_none() {
            continue;
        }
        match trust.check_evidence(&rec) {
            Ok(()) => return Ok(Some(rec)),
            Err(why) => {
                warn!(node, prober = %rec.prober, reason = %why, "evidence bundle rejected");
                rejected.add("evidence", why);
            }
        }
    }
    Ok(None)
}

/// Verifies the node's latest stored bundle as of its collection and puts what it shows into
/// `input` (evidence summary, anchors, in-TD timings). The nonce is the one the prober stored
/// with its request (the daemons are this verifier's nonce issuers); the session key is the one
/// the same prober saw in its round closest to the request. Without a bundle, `input` keeps no
/// evidence and the verdict policy decides (`require_evidence`).
pub(crate) fn attach_evidence(
    store: &Store,
    trust: &Trust,
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
            .filter(|r| r.prober == rec.prober && trust.check_round(r, None).is_ok())
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
