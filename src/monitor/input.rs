//! What the verdict engine gets from the database: the world (sites, probers) and, per node,
//! one window of samples per prober with the node's baseline from the rounds before it.

use std::collections::BTreeMap;

use locus_analysis::{BaselineMin, EchoSample, NodeInput, Prober, ProberSeries, Site, World};
use locus_prober::store::{Store, StoreError};

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
/// so a node no prober reaches is judged `unreachable`. Evidence is not attached here (the
/// daemon stores evidence requests, not verified bundles).
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
