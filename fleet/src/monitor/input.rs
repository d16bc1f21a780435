//! What the verdict engine gets from the database: the world (sites, probers) and, per node,
//! one window of samples per prober with the node's baseline from the rounds before it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tracing::debug;

use crate::integrity::{Rejection, Trust};
use crate::store::{EvidenceRecord, ProberSample, Store, StoreError, StoredEvidence, StoredRound};
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

/// The landmark minima of `[from, to)` (the judging window): per prober and site, the smallest
/// effective round trip of the landmark rounds `trust` accepts. With `names` (the monitor's
/// `[[landmark]]`), a round counts only under a listed landmark and at the site listed there;
/// without (no config, every row unverified), at the site the row names. The others are added
/// to `rejected` (table `landmark_rounds`).
pub(crate) fn landmarks(
    store: &Store,
    trust: &Trust,
    names: Option<&BTreeMap<String, String>>,
    window: (i64, i64),
    rejected: &mut Rejected,
) -> Result<Vec<LandmarkRtt>, StoreError> {
    let mut minima: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in store.landmark_rounds_between(window.0, window.1)? {
        let site = match names {
            None => r.site.clone(),
            Some(names) => match names.get(&r.landmark) {
                None => {
                    rejected.add("landmark_rounds", Rejection::UnknownLandmark);
                    continue;
                }
                Some(site) => site.clone(),
            },
        };
        if let Err(why) = trust.check_landmark(&r) {
            rejected.add("landmark_rounds", why);
            continue;
        }
        if site != r.site {
            rejected.add("landmark_rounds", Rejection::LandmarkSite);
            continue;
        }
        let Some(min) = r.min_eff_rtt_ns else {
            continue;
        };
        let m = minima.entry((r.prober, site)).or_insert(min);
        *m = (*m).min(min);
    }
    Ok(minima
        .into_iter()
        .map(|((prober, site), min_rtt_ns)| LandmarkRtt {
            prober,
            site,
            min_rtt_ns,
        })
        .collect())
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
        landmarks: landmarks(
            store,
            &Trust::unchecked(),
            None,
            (from, to),
            &mut Rejected::default(),
        )?,
    })
}

/// Most rows of one prober (rounds, evidence records) one node's window reads: far above what a
/// prober writes (one round a second over a ten-minute window is 600), so that a flood of
/// junk rows costs a bounded number of signature checks. The rows beyond are `too_many`.
/// Rounds count against it only when they fail their check, and rows of probers the config
/// does not know count against one shared cap (REVIEW3 B2, F).
pub(crate) const MAX_ROWS_PER_PROBER: usize = 4_096;

/// The cap key of every prober the config does not know: new names buy no new cap.
const UNKNOWN: &str = "\0unknown";

/// Per prober, what this monitor remembers of a node's baseline: the smallest verified
/// baseline round trip it has seen (ns), or `None` when the prober was expected to have one
/// and had none yet. Sticky: a judgement adds to it and keeps every prober the config still
/// lists, so deleting history can neither shrink it nor raise a minimum (REVIEW4 M1); a
/// minimum rises only with a full verified history without gaps (REVIEW5 M5).
pub(crate) type Baselines = BTreeMap<String, Option<u64>>;

/// What the monitor knew of a node when it last judged it (REVIEW3 B).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Before<'a> {
    /// Never judged: no baseline is expected.
    Never,
    /// Judged before this monitor started (its verdict is stored): every prober answering now
    /// is expected to have verified history.
    Restarted,
    /// Judged by this monitor: these probers had (or were expected to have) a verified
    /// baseline, and they still must.
    Baselined(&'a Baselines),
    /// As `Baselined`, but the node was judged `relocated` since: these baselines, from
    /// before the move, are its baselines as they are (no history adopted, none lowered)
    /// until it is re-baselined (REVIEW6 R5).
    Frozen(&'a Baselines),
}

/// A prober whose newest baseline rounds have a gap, so that the smaller minimum remembered
/// from before the gap stands in for its history's (REVIEW6 R6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Carried {
    pub(crate) prober: String,
    pub(crate) remembered_ns: u64,
    pub(crate) history_ns: u64,
}

/// What [`node_input`] read for one node.
pub(crate) struct Gathered {
    pub(crate) input: NodeInput,
    /// Rounds started in the window that were accepted.
    pub(crate) accepted: usize,
    /// Why the node has no baseline it can be judged against, when it should have one: it
    /// must then not be `located` (a relocation before the window would go unseen).
    pub(crate) baseline_missing: Option<String>,
    /// What to remember for the next judgement: the previous [`Baselines`] with this
    /// judgement's added (minima lowered, probers expected now added).
    pub(crate) baselined: Baselines,
    /// Which configured probers had rounds left unread (`too_many`): their true rounds may be
    /// among them, so the node must not be `located` (REVIEW3 B2).
    pub(crate) over_cap: Option<String>,
    /// Probers whose baseline is a minimum carried across a gap in their history.
    pub(crate) carried: Vec<Carried>,
}

/// One node's input for `[from, to)`: samples (wall-clock `sent_ns`), challenges sent, evidence
/// round trips per prober; the baseline is the median of each prober's last `baseline_rounds`
/// verified round minima before `from`. A prober whose rounds all failed contributes an empty
/// series, so a node no prober reaches is judged `unreachable`.
///
/// Per prober, the series keeps the samples of one session key: one that `keys` (verified
/// bundles) vouches for that prober, else the key of its latest sample, which the verdict then
/// names as unverified; samples and evidence round trips under other keys are left out.
///
/// Only rows `trust` accepts count (each round checked with its samples), each round once (a
/// copy of a signed round is a `duplicate`, found before any signature check and counted
/// against the cap); the others are added to `rejected`. The baseline is taken from verified
/// rows only: a prober whose history rows were rejected and that has no verified history, a
/// node judged `before` without any verified history, or a prober answering now without
/// verified history that had one when the node was last judged (after a restart: any prober
/// answering now) has its baseline missing
/// ([`Gathered::baseline_missing`]).
#[expect(
    clippy::too_many_arguments,
    reason = "the judgement's parameters, one call site"
)]
pub(crate) fn node_input(
    store: &Store,
    trust: &Trust,
    node: &str,
    claim: &str,
    window: (i64, i64),
    baseline_rounds: usize,
    keys: &[VerifiedKey],
    before: Before<'_>,
    rejected: &mut Rejected,
) -> Result<Gathered, StoreError> {
    let (from, to) = window;
    let mut series: BTreeMap<String, ProberSeries> = BTreeMap::new();
    let mut accepted = 0;
    let mut samples: Vec<ProberSample> = Vec::new();
    let mut read: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut over_cap: BTreeSet<String> = BTreeSet::new();
    for StoredRound { id, round: r } in store.rounds_overlapping(node, from, to)? {
        let cap_key = cap_key(trust, &r.prober);
        if read.get(cap_key).is_some_and(|n| *n >= MAX_ROWS_PER_PROBER) {
            rejected.add("rounds", Rejection::TooMany);
            if cap_key != UNKNOWN {
                over_cap.insert(r.prober.clone());
            }
            continue;
        }
        // A copy of a round taken already costs no signature check and no sample query, but
        // counts against the cap (REVIEW4 M2). Only a verified round is marked seen: a junk
        // copy ahead of the real one cannot make the real one a duplicate.
        let round_key = (r.prober.clone(), r.started_unix_ns);
        if seen.contains(&round_key) {
            rejected.add("rounds", Rejection::Duplicate);
            *read.entry(cap_key.to_owned()).or_default() += 1;
            continue;
        }
        // The round first, its samples only if it verifies: junk rounds cost no sample query.
        let checked = match trust.check_round(&r, None) {
            Ok(()) => {
                let stored = store.samples_of_round(id)?;
                trust.check_samples(&r, &stored).map(|()| stored)
            }
            Err(why) => Err(why),
        };
        let stored = match checked {
            Ok(stored) => stored,
            Err(why) => {
                debug!(node, prober = %r.prober, round = id, reason = %why, "round rejected");
                rejected.add("rounds", why);
                *read.entry(cap_key.to_owned()).or_default() += 1;
                continue;
            }
        };
        seen.insert(round_key);
        if r.started_unix_ns >= from {
            accepted += 1;
            series_of(&mut series, &r.prober).sent += r.sent;
        }
        samples.extend(
            stored
                .into_iter()
                .filter(|x| x.sent_unix_ns >= from && x.sent_unix_ns < to)
                .map(|sample| ProberSample {
                    prober: r.prober.clone(),
                    spki: r.spki.clone(),
                    sample,
                }),
        );
    }
    // Oldest first, as the key choice below expects.
    samples.sort_by_key(|s| s.sample.sent_unix_ns);
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
    let mut rtts = Vec::new();
    let mut read: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen: BTreeSet<(String, i64)> = BTreeSet::new();
    for e in store.evidence_between(node, from, to)?.into_iter().rev() {
        if !within_cap(&mut read, cap_key(trust, &e.prober)) {
            rejected.add("evidence", Rejection::TooMany);
            continue;
        }
        // As for rounds: a copy of a record taken already is not verified again.
        let record_key = (e.prober.clone(), e.at_unix_ns);
        if seen.contains(&record_key) {
            rejected.add("evidence", Rejection::Duplicate);
            continue;
        }
        match trust.check_evidence(&e) {
            Err(why) => {
                debug!(node, prober = %e.prober, reason = %why, "evidence record rejected");
                rejected.add("evidence", why);
            }
            Ok(()) => {
                seen.insert(record_key);
                if let (true, Some(rtt)) = (e.ok, e.rtt_ns) {
                    rtts.push((e.prober, rtt, e.peer_spki));
                }
            }
        }
    }
    for (prober, rtt, peer) in rtts {
        // requests stored before schema 3 carry no key and keep counting
        let key = chosen.get(prober.as_str()).copied().flatten();
        if peer.is_some() && key.is_some() && peer.as_deref() != key {
            continue;
        }
        series_of(&mut series, &prober).evidence_rtt_ns.push(rtt);
    }
    let dropped = samples.len() - series.values().map(|s| s.samples.len()).sum::<usize>();
    if dropped > 0 {
        debug!(node, dropped, "samples under another session key left out");
    }
    // A node nobody reaches now needs no baseline (it is judged `unreachable` anyway).
    let answering: BTreeSet<&str> = (series.values())
        .filter(|s| !s.samples.is_empty())
        .map(|s| s.prober.as_str())
        .collect();
    let judged = if answering.is_empty() {
        Before::Never
    } else {
        before
    };
    let (baseline, baseline_missing, carried) = baseline(
        store,
        trust,
        node,
        from,
        baseline_rounds,
        (judged, &answering),
        rejected,
    )?;
    let baselined = remembered(trust, before, &answering, &baseline);
    let over_cap = (!over_cap.is_empty()).then(|| {
        format!(
            "rounds unread: prober(s) {} have more than {MAX_ROWS_PER_PROBER} rejected rounds \
             in the window, so their own rounds may be among the unread",
            over_cap.into_iter().collect::<Vec<_>>().join(", ")
        )
    });
    let input = NodeInput {
        name: node.to_owned(),
        claim: claim.to_owned(),
        probes: series.into_values().collect(),
        baseline,
        ..NodeInput::default()
    };
    Ok(Gathered {
        input,
        accepted,
        baseline_missing,
        baselined,
        over_cap,
        carried,
    })
}

/// The cap a row of `prober` counts against: its own, or the one all unknown probers share.
fn cap_key<'a>(trust: &Trust, prober: &'a str) -> &'a str {
    if trust.knows(prober) {
        prober
    } else {
        UNKNOWN
    }
}

/// Counts a row of `prober`; false once it is over [`MAX_ROWS_PER_PROBER`].
fn within_cap(read: &mut BTreeMap<String, usize>, prober: &str) -> bool {
    let n = read.entry(prober.to_owned()).or_default();
    *n += 1;
    *n <= MAX_ROWS_PER_PROBER
}

/// What to remember of the node's baselines after this judgement (REVIEW4 M1): what was
/// remembered (whatever answers now: a node nobody reaches forgets nothing), each prober's
/// baseline now (as [`baseline`] chose it: the remembered minimum across gaps, the history's
/// without, REVIEW5 M5), and each prober answering now that was expected
/// to have one (`None` until it has); only probers the config no longer lists are dropped.
fn remembered(
    trust: &Trust,
    before: Before<'_>,
    answering: &BTreeSet<&str>,
    baseline: &[BaselineMin],
) -> Baselines {
    let mut out = match before {
        Before::Baselined(had) | Before::Frozen(had) => had.clone(),
        Before::Never | Before::Restarted => Baselines::new(),
    };
    if matches!(before, Before::Restarted) {
        for p in answering {
            out.entry((*p).to_owned()).or_insert(None);
        }
    }
    for b in baseline {
        // frozen baselines stay as they were before the move (REVIEW6 R5)
        if matches!(before, Before::Frozen(had) if had.contains_key(&b.prober)) {
            continue;
        }
        out.insert(b.prober.clone(), Some(b.min_rtt_ns));
    }
    out.retain(|p, _| trust.knows(p));
    out
}

/// Each prober's baseline from its latest `rounds` verified rounds before `before`: rows are
/// checked first and then counted, so rejected rows (junk inserted just before the window, or
/// a history rewritten) cannot push the true history out. A smaller minimum remembered from
/// an earlier judgement stands in for the history's when the history has gaps (deleting
/// history cannot raise it), and for a prober whose history is gone (REVIEW4 M1); a full
/// history without gaps is taken as it is (REVIEW5 M5). Also says why the baseline is
/// missing when it should be there.
fn baseline(
    store: &Store,
    trust: &Trust,
    node: &str,
    before: i64,
    rounds: usize,
    (judged, answering): (Before<'_>, &BTreeSet<&str>),
    rejected: &mut Rejected,
) -> Result<BaselineFound, StoreError> {
    // Look a few baselines deep for verified rows; a prober with more rejected rows than that
    // just before the window has no verified baseline, and says so.
    let scan = rounds.saturating_mul(4).max(rounds + 16);
    // Per prober, newest first: (started, min round trip).
    let mut history: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    let mut spoiled: BTreeMap<String, BTreeSet<Rejection>> = BTreeMap::new();
    let mut seen: BTreeSet<(String, i64)> = BTreeSet::new();
    // Newest first per prober.
    for r in store.rounds_before(node, before, scan)? {
        if history.get(&r.prober).is_some_and(|h| h.len() >= rounds) {
            continue;
        }
        // A copy of a round taken already is not verified again (REVIEW4 M2).
        let round_key = (r.prober.clone(), r.started_unix_ns);
        let checked = if seen.contains(&round_key) {
            Err(Rejection::Duplicate)
        } else {
            trust.check_round(&r, None)
        };
        if checked.is_ok() {
            seen.insert(round_key);
        }
        match (checked, r.min_eff_rtt_ns) {
            (Ok(()), Some(min)) => {
                (history.entry(r.prober).or_default()).push((r.started_unix_ns, min))
            }
            (Ok(()), None) => {}
            (Err(why), _) => {
                rejected.add("rounds", why);
                // A prober the config does not know has no baseline of ours to spoil
                // (REVIEW3 E).
                if why != Rejection::UnknownProber {
                    spoiled.entry(r.prober).or_default().insert(why);
                }
            }
        }
    }
    let mut missing: Vec<String> = spoiled
        .iter()
        .filter(|(p, _)| !history.contains_key(*p))
        .map(|(p, why)| {
            let why: Vec<&str> = why.iter().map(|w| w.as_str()).collect();
            format!(
                "prober {p}'s rounds before the window were rejected ({})",
                why.join(", ")
            )
        })
        .collect();
    if missing.is_empty() && history.is_empty() && !matches!(judged, Before::Never) {
        missing.push("the node was judged before but no verified round precedes the window".into());
    }
    // REVIEW3 B: deleting some probers' history must not switch the relocation check off
    // for them while they answer.
    if missing.is_empty() {
        let expected = |p: &str| match judged {
            Before::Never => false,
            Before::Restarted => true,
            Before::Baselined(had) | Before::Frozen(had) => had.contains_key(p),
        };
        missing.extend(
            (answering.iter())
                .filter(|p| !history.contains_key(**p) && expected(p))
                .map(|p| {
                    format!(
                        "prober {p} answers in the window but no verified round of it \
                         precedes the window (the node was judged before)"
                    )
                }),
        );
    }
    let mut baseline: BTreeMap<String, u64> = history
        .iter()
        .filter_map(|(p, h)| {
            let mins: Vec<u64> = h.iter().map(|(_, m)| *m).collect();
            BaselineMin::from_history(p.clone(), &mins)
        })
        .map(|b| (b.prober, b.min_rtt_ns))
        .collect();
    let mut carried = Vec::new();
    match judged {
        Before::Baselined(had) => {
            // A full history without gaps up to the window is the prober's baseline now, so a
            // lasting honest route change is adopted once it fills the history (REVIEW5 M5).
            let whole = |p: &str| (history.get(p)).is_some_and(|h| gap_free(h, rounds, before));
            for (p, min) in (had.iter())
                .filter(|(p, _)| !whole(p))
                .filter_map(|(p, m)| Some((p, (*m)?)))
            {
                let b = baseline.entry(p.clone()).or_insert(min);
                if let Some(history_ns) = (*b > min && history.contains_key(p)).then_some(*b) {
                    carried.push(Carried {
                        prober: p.clone(),
                        remembered_ns: min,
                        history_ns,
                    });
                }
                *b = (*b).min(min);
            }
        }
        Before::Frozen(had) => {
            // After a move: the baselines from before it, whatever the history holds now
            // (REVIEW6 R5).
            for (p, min) in had.iter().filter_map(|(p, m)| Some((p, (*m)?))) {
                baseline.insert(p.clone(), min);
            }
        }
        Before::Never | Before::Restarted => {}
    }
    let baseline = baseline
        .into_iter()
        .map(|(prober, min_rtt_ns)| BaselineMin { prober, min_rtt_ns })
        .collect();
    let missing =
        (!missing.is_empty()).then(|| format!("baseline missing: {}", missing.join("; ")));
    Ok((baseline, missing, carried))
}

/// [`baseline`]'s finding: the baseline, why it is missing, the minima carried across gaps.
type BaselineFound = (Vec<BaselineMin>, Option<String>, Vec<Carried>);

/// Whether `history` (a prober's verified rounds, newest first: start and minimum) holds
/// `rounds` rounds with no gap between them nor before `before`: no round missing, so none
/// was deleted. A gap is a pause over [`GAP_FACTOR`] times the median spacing; a remembered
/// minimum stands in only across gaps (REVIEW4 M1, REVIEW5 M5).
fn gap_free(history: &[(i64, u64)], rounds: usize, before: i64) -> bool {
    if history.len() < rounds.max(2) {
        return false;
    }
    let mut spacing: Vec<i64> = history.windows(2).map(|w| w[0].0 - w[1].0).collect();
    spacing.sort_unstable();
    let most = spacing[spacing.len() / 2].max(1).saturating_mul(GAP_FACTOR);
    spacing.last().is_some_and(|s| *s <= most) && before - history[0].0 <= most
}

/// A pause between rounds over this many times their median spacing is a gap.
const GAP_FACTOR: i64 = 3;

fn series_of<'a>(m: &'a mut BTreeMap<String, ProberSeries>, prober: &str) -> &'a mut ProberSeries {
    m.entry(prober.to_owned()).or_insert_with(|| ProberSeries {
        prober: prober.to_owned(),
        samples: Vec::new(),
        sent: 0,
        evidence_rtt_ns: Vec::new(),
        peer_spki: None,
    })
}

/// One node's stored bundles to verify: per prober, its latest evidence record in the window
/// that verifies and still holds the bundle it signed; and the records newer than that one
/// that should have given a bundle and do not (withheld, altered or rejected).
#[derive(Debug, Default)]
pub(crate) struct NodeBundles {
    pub(crate) chosen: Vec<EvidenceRecord>,
    pub(crate) withheld: Vec<String>,
}

/// Per node, [`NodeBundles`] of the evidence window ending at `now_ns`. Every record is
/// checked before one is chosen (a junk or altered later row cannot hide the real bundle);
/// only the chosen records' bundles are loaded. Rejected records go to `rejected`, by node.
pub(crate) fn bundles(
    store: &Store,
    trust: &Trust,
    e: &EvidenceConfig,
    now_ns: i64,
    rejected: &mut BTreeMap<String, Rejected>,
) -> Result<BTreeMap<String, NodeBundles>, StoreError> {
    let from = now_ns.saturating_sub(i64::try_from(e.window.as_nanos()).unwrap_or(i64::MAX));
    let mut out: BTreeMap<String, NodeBundles> = BTreeMap::new();
    let mut done: BTreeSet<(String, String)> = BTreeSet::new();
    let mut read: BTreeMap<String, usize> = BTreeMap::new();
    // Newest first per target and prober.
    for StoredEvidence {
        id,
        has_bundle,
        record: mut r,
    } in store.evidence_records_between(from, now_ns)?
    {
        let key = (r.target.clone(), r.prober.clone());
        if done.contains(&key) {
            continue;
        }
        let target = r.target.clone();
        let reject = |rejected: &mut BTreeMap<String, Rejected>, why| {
            rejected
                .entry(target.clone())
                .or_default()
                .add("evidence", why);
        };
        if !within_cap(
            &mut read,
            &format!("{}\0{}", r.target, cap_key(trust, &r.prober)),
        ) {
            reject(rejected, Rejection::TooMany);
            continue;
        }
        let at_s = r.at_unix_ns / 1_000_000_000;
        let node = out.entry(r.target.clone()).or_default();
        if let Err(why) = trust.check_evidence(&r) {
            reject(rejected, why);
            // A record of a prober the config does not know withholds nothing of ours.
            if why != Rejection::UnknownProber {
                node.withheld.push(format!(
                    "prober {}'s evidence record at {at_s} s was rejected ({why})",
                    r.prober
                ));
            }
            continue;
        }
        if !has_bundle {
            // Signed with a bundle that is gone: withheld, since retention prunes bundles far
            // older than any evidence window.
            if r.seal.as_ref().is_some_and(|s| s.digest.is_some()) {
                node.withheld.push(format!(
                    "prober {}'s evidence record at {at_s} s was signed with a bundle that is \
                     not stored",
                    r.prober
                ));
            }
            continue;
        }
        r.bundle = store.evidence_bundle(id)?;
        if let Err(why) = trust.check_evidence(&r) {
            reject(rejected, why);
            node.withheld.push(format!(
                "prober {}'s evidence record at {at_s} s holds another bundle than it signed",
                r.prober
            ));
            continue;
        }
        done.insert(key);
        node.chosen.push(r);
    }
    Ok(out)
}

/// What the verified bundles of one node give its judgement.
pub(crate) struct NodeEvidence {
    /// The node-level findings (the latest verified bundle), with every verified bundle's
    /// session key.
    pub(crate) found: Option<BundleFindings>,
    /// Whether the findings' summary, anchors and in-TD times may stand for the node: the
    /// verified bundles agree on the session key and the platform.
    pub(crate) node_level: bool,
    /// Why the node must not be `located` on this evidence (each names the prober).
    pub(crate) holds: Vec<String>,
}

/// Verifies each prober's chosen bundle of the node as of its collection. Only bundles that
/// verified count: they vouch for their prober's session key (`session_keys`), and the latest
/// gives the evidence summary, anchors and in-TD timings when all of them agree on the session
/// key and the platform; a bundle that failed while others verified, or a disagreement, holds
/// the node back from `located`, naming the prober. When none verified, the latest failure
/// stands (evidence invalid). The nonce is the one the prober stored with its request (the
/// daemons are this verifier's nonce issuers); the session key is the one the request's
/// connection showed. None without a bundle: the verdict policy decides (`require_evidence`).
pub(crate) fn verify_evidence(
    store: &Store,
    trust: &Trust,
    e: &EvidenceConfig,
    node: &str,
    recs: &[EvidenceRecord],
    now_ns: i64,
) -> Result<NodeEvidence, StoreError> {
    let mut valid: Vec<(&EvidenceRecord, BundleFindings)> = Vec::new();
    let mut invalid: Vec<(&EvidenceRecord, BundleFindings)> = Vec::new();
    for rec in recs {
        if let Some(found) = verify_one(store, trust, e, node, rec, now_ns)? {
            if found.evidence.valid {
                valid.push((rec, found));
            } else {
                invalid.push((rec, found));
            }
        }
    }
    let latest = |v: &mut Vec<(&EvidenceRecord, BundleFindings)>| {
        v.sort_by_key(|(r, _)| r.at_unix_ns);
        v.pop().map(|(_, f)| f)
    };
    if valid.is_empty() {
        let found = latest(&mut invalid).map(|mut f| {
            f.evidence.session_keys.clear();
            f
        });
        return Ok(NodeEvidence {
            found,
            node_level: true,
            holds: Vec::new(),
        });
    }
    let mut holds: Vec<String> = invalid
        .iter()
        .map(|(r, f)| {
            format!(
                "evidence: prober {}'s bundle failed ({}) while {} other bundle(s) verified",
                r.prober,
                f.failed_checks().join(", "),
                valid.len()
            )
        })
        .collect();
    let keys_of = |f: &BundleFindings| -> BTreeSet<String> {
        (f.evidence.session_keys.iter())
            .map(|k| k.spki.to_ascii_lowercase())
            .collect()
    };
    let mut disagree = Vec::new();
    let (first_rec, first) = &valid[0];
    for (r, f) in &valid[1..] {
        if keys_of(f) != keys_of(first) {
            disagree.push(format!(
                "evidence: the bundles of prober {} and prober {} bind different session keys",
                first_rec.prober, r.prober
            ));
        }
        if f.evidence.platform_id != first.evidence.platform_id {
            disagree.push(format!(
                "evidence: the bundles of prober {} and prober {} name different platforms \
                 ({} vs {})",
                first_rec.prober,
                r.prober,
                first.evidence.platform_id.as_deref().unwrap_or("none"),
                f.evidence.platform_id.as_deref().unwrap_or("none"),
            ));
        }
    }
    let node_level = disagree.is_empty();
    holds.extend(disagree);
    let keys: Vec<VerifiedKey> = (valid.iter())
        .flat_map(|(_, f)| f.evidence.session_keys.iter().cloned())
        .collect();
    let found = latest(&mut valid).map(|mut f| {
        f.evidence.session_keys = keys;
        f
    });
    Ok(NodeEvidence {
        found,
        node_level,
        holds,
    })
}

fn verify_one(
    store: &Store,
    trust: &Trust,
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
            seal: None,
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

    /// F1: a configured monitor takes a landmark round only when its prober signed it, under a
    /// landmark its config lists, at the site listed there; each other row is rejected by one
    /// named check, so a database writer's faster "landmark" does not calibrate anything.
    #[test]
    fn landmark_rounds_count_only_signed_listed_and_at_the_listed_site() {
        use crate::integrity::seal_landmark;
        use locus_prober::identity::ProberIdentity;
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("l.db")).unwrap();
        let id = ProberIdentity::from_seed([5; 32]);
        let trust = Trust::new([("p-ams".to_string(), Some(id.public_key()))], false);
        let names: BTreeMap<String, String> = [("ref-fra".to_string(), "fra".to_string())].into();
        let sealed = |mut r: LandmarkRoundRecord| {
            seal_landmark(&id, &mut r);
            r
        };
        let honest = sealed(landmark_round("p-ams", 100, 5_400_000));
        // The same row with a round trip 3 ms below the truth, its seal kept.
        let mut faster = honest.clone();
        faster.min_eff_rtt_ns = Some(2_400_000);
        faster.started_unix_ns = 110;
        let unsigned = landmark_round("p-ams", 120, 2_000_000);
        let unlisted = sealed(LandmarkRoundRecord {
            landmark: "ref-claim".into(),
            ..landmark_round("p-ams", 130, 1_000_000)
        });
        let elsewhere = sealed(LandmarkRoundRecord {
            site: "ams".into(),
            ..landmark_round("p-ams", 140, 900_000)
        });
        let stranger = landmark_round("rogue", 150, 800_000);
        for r in [
            &honest, &faster, &unsigned, &unlisted, &elsewhere, &stranger,
        ] {
            store.insert_landmark_round(r).unwrap();
        }
        let mut rejected = Rejected::default();
        let got = landmarks(&store, &trust, Some(&names), (0, 1_000), &mut rejected).unwrap();
        assert_eq!(
            got,
            [LandmarkRtt {
                prober: "p-ams".into(),
                site: "fra".into(),
                min_rtt_ns: 5_400_000
            }]
        );
        let t = "landmark_rounds";
        assert_eq!(
            rejected.0,
            BTreeMap::from([
                ((t, Rejection::UnknownProber), 1),
                ((t, Rejection::Unsigned), 1),
                ((t, Rejection::BadSignature), 1),
                ((t, Rejection::UnknownLandmark), 1),
                ((t, Rejection::LandmarkSite), 1),
            ])
        );
        // Unverified (no config): every row at the site it names, as before.
        let all = landmarks(
            &store,
            &Trust::unchecked(),
            None,
            (0, 1_000),
            &mut Rejected::default(),
        )
        .unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
    }

    /// REVIEW4 M2: 10 000 copies of one signed round cost one signature check (a copy is found
    /// before verifying, and no sample query either); the copies count against the prober's
    /// cap, so past it the prober's rounds are unread and the node is held.
    #[test]
    fn copies_of_a_signed_round_cost_no_signature_check_and_count_against_the_cap() {
        use crate::integrity::seal_round;
        use crate::store::{RoundRecord, SampleRecord};
        use locus_prober::identity::ProberIdentity;
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("c.db")).unwrap();
        let id = ProberIdentity::from_seed([6; 32]);
        let trust = Trust::new([("p-ams".to_string(), Some(id.public_key()))], false);
        let samples = vec![SampleRecord {
            sent_unix_ns: 1_500,
            rtt_ns: 7_000_000,
            inside_ns: 20_000,
        }];
        let mut r = RoundRecord {
            prober: "p-ams".into(),
            target: "n".into(),
            claim: "fra".into(),
            address: "127.0.0.1:4433".into(),
            spki: None,
            started_unix_ns: 1_000,
            duration_ns: 1_000,
            sent: 1,
            answered: 1,
            lost: 0,
            late: 0,
            out_of_order: 0,
            violations: 0,
            min_rtt_ns: Some(7_000_000),
            p50_rtt_ns: Some(7_000_000),
            p99_rtt_ns: Some(7_000_000),
            min_eff_rtt_ns: Some(6_980_000),
            inside_p50_ns: Some(20_000),
            error: None,
            seal: None,
        };
        seal_round(&id, &mut r, &samples);
        let copies = 10_000;
        let rows = vec![(r, samples); copies];
        store.insert_rounds(&rows).unwrap();
        let mut rejected = Rejected::default();
        let g = node_input(
            &store,
            &trust,
            "n",
            "fra",
            (1_000, 10_000),
            4,
            &[],
            Before::Never,
            &mut rejected,
        )
        .unwrap();
        assert_eq!(trust.signature_checks(), 1);
        assert_eq!(g.accepted, 1);
        let unread = copies - 1 - MAX_ROWS_PER_PROBER;
        assert_eq!(
            rejected.0,
            BTreeMap::from([
                (("rounds", Rejection::Duplicate), MAX_ROWS_PER_PROBER as u64),
                (("rounds", Rejection::TooMany), unread as u64),
            ])
        );
        assert!(g.over_cap.is_some_and(|w| w.contains("p-ams")));
    }

    /// REVIEW4 M1: the probers remembered only grow (a prober expected stays expected)
    /// whatever history is left, also when nobody answers; only a prober the config no longer
    /// lists is forgotten. Each minimum is the baseline judged with ([`baseline`] keeps the
    /// smaller one only across gaps, REVIEW5 M5).
    #[test]
    fn remembered_baselines_are_sticky_and_take_the_judged_minimum() {
        let trust = Trust::new(["ams", "par", "waw"].map(|p| (p.to_string(), None)), true);
        let b = |p: &str, min: u64| BaselineMin {
            prober: p.into(),
            min_rtt_ns: min,
        };
        let answering: BTreeSet<&str> = ["ams", "par"].into();
        let first = remembered(&trust, Before::Restarted, &answering, &[b("ams", 500)]);
        assert_eq!(
            first,
            Baselines::from([("ams".into(), Some(500)), ("par".into(), None)])
        );
        // A lasting route change filled ams's history: its baseline rose; par stays expected.
        let mut had = first.clone();
        had.insert("gone".into(), Some(1));
        let second = remembered(
            &trust,
            Before::Baselined(&had),
            &BTreeSet::new(),
            &[b("ams", 900), b("waw", 700)],
        );
        assert_eq!(
            second,
            Baselines::from([
                ("ams".into(), Some(900)),
                ("par".into(), None),
                ("waw".into(), Some(700)),
            ])
        );
    }
}
