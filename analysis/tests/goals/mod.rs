//! Issue 19's goals as assertions, shared by the held-out and the measured data sets.

use locus_analysis::{EvidenceSummary, NodeInput, ProberSeries, Verdict};

/// A node judged on its samples: evidence valid and bound, no anchors, no history.
pub(crate) fn timing_node(name: &str, claim: &str, probes: Vec<ProberSeries>) -> NodeInput {
    NodeInput {
        name: name.into(),
        claim: claim.into(),
        probes,
        evidence: Some(EvidenceSummary {
            valid: true,
            tdx_vtpm_bound: Some(true),
            ..EvidenceSummary::default()
        }),
        ..NodeInput::default()
    }
}

/// Accused: a negative verdict about the node (not `located`, `inconclusive`, `unreachable`).
fn accused(v: Verdict) -> bool {
    matches!(
        v,
        Verdict::Proxied | Verdict::Relocated | Verdict::Frankenstein | Verdict::EvidenceInvalid
    )
}

/// Honest nodes: ≥ `located_pct` % located and none accused with a landmark; ≤ 1 % accused
/// without one.
pub(crate) fn honest(with: &[Verdict], located_pct: usize, without: &[Verdict]) {
    let located = with.iter().filter(|v| **v == Verdict::Located).count();
    assert!(
        located * 100 >= with.len() * located_pct,
        "{located}/{}: {with:?}",
        with.len()
    );
    assert!(with.iter().all(|v| !accused(*v)), "{with:?}");
    let acc = without.iter().filter(|v| accused(**v)).count();
    assert!(
        acc * 100 <= without.len(),
        "{acc}/{}: {without:?}",
        without.len()
    );
}

/// Relays `km` away with a landmark: ≥ 95 % proxied; from 200 km never located.
pub(crate) fn relayed(km: f64, v: &[Verdict]) {
    let proxied = v.iter().filter(|x| **x == Verdict::Proxied).count();
    assert!(
        proxied * 100 >= v.len() * 95,
        "{km} km: {proxied}/{}: {v:?}",
        v.len()
    );
    never_located(km, v);
}

/// Nodes `km` away (relayed or sitting there): from 200 km never located.
pub(crate) fn never_located(km: f64, v: &[Verdict]) {
    if km >= 200.0 {
        assert!(v.iter().all(|x| *x != Verdict::Located), "{km} km: {v:?}");
    }
}
