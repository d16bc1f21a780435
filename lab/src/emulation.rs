//! Runs a scenario on its emulated world (`world`): probers measure every responder round by
//! round, collect evidence, and every node is judged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use locus_analysis::input::{
    EchoSample, LandmarkRtt, NodeInput, Prober, ProberSeries, SamplesFile, SAMPLES_VERSION,
};
use locus_analysis::verify::bundle::nonce::NonceLedger;
use locus_analysis::verify::bundle::VerifyInputs;
use locus_analysis::{judge, BundleFindings, Judgement, Policy};
use locus_prober::requests::request_evidence_sealed_timed;
use locus_prober::{connect, run_round_from, RoundConfig, SpkiPolicy, Target};
use locus_proto::evidence::EvidenceBundle;
use locus_proto::messages::Include;
use locus_responder::server::Server;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::sync::watch;

use crate::addr;
use crate::relay::{LinkPlan, Relay, RelayError};
use crate::scenario::{Scenario, Truth};
use crate::world::{self, anchor_name, check, unix_now, LabTrust, World};

/// Name under which the lab's verifier issues nonces.
pub(crate) const NONCE_ISSUER: &str = "locus-lab";

/// Length of one probing round (the verdict engine's change detection works per round).
const ROUND: Duration = Duration::from_secs(1);

/// Set apart the nonces' random stream from the relay's, which is seeded with the seed itself.
const NONCE_STREAM: u64 = 0x6e6f_6e63_6573_0001;

/// The evidence nonces' source: seeded from the scenario, so that one seed gives one run (lab
/// nonces are test values, not secrets).
fn nonce_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ NONCE_STREAM)
}

/// What a run produced, for the report.
pub struct Outcome {
    pub(crate) scenario: Scenario,
    pub(crate) samples: SamplesFile,
    pub(crate) nodes: Vec<NodeOutcome>,
    pub(crate) relay_error: RelayError,
    pub(crate) wall_s: f64,
}

pub(crate) struct NodeOutcome {
    pub(crate) name: String,
    pub(crate) truth: Truth,
    pub(crate) judgement: Judgement,
    pub(crate) bundle: Option<EvidenceBundle>,
    /// Unix seconds at which `bundle` was collected.
    pub(crate) collected_at: u64,
    pub(crate) evidence_error: Option<String>,
    pub(crate) failed_checks: Vec<String>,
}

/// Progress as (done, total) rounds.
pub type Progress = watch::Sender<(u64, u64)>;

/// Runs the scenario; `out` receives the lab's trust files and evidence as they are made.
pub(crate) async fn run(
    scenario: Scenario,
    out: &Path,
    progress: Progress,
    cancel: watch::Receiver<bool>,
) -> anyhow::Result<(Outcome, LabTrust)> {
    let started = Instant::now();
    let relay = Relay::start(scenario.seed);
    let result = run_inner(&scenario, out, &relay, &progress, &cancel).await;
    relay.stop();
    let (samples, nodes, trust) = result?;
    Ok((
        Outcome {
            scenario,
            samples,
            nodes,
            relay_error: relay.error(),
            wall_s: started.elapsed().as_secs_f64(),
        },
        trust,
    ))
}

type Inner = (SamplesFile, Vec<NodeOutcome>, LabTrust);

async fn run_inner(
    s: &Scenario,
    out: &Path,
    relay: &Arc<Relay>,
    progress: &Progress,
    cancel: &watch::Receiver<bool>,
) -> anyhow::Result<Inner> {
    let t0 = Instant::now();
    let world = world::build(s, out, relay, cancel).await?;
    // Phase times at info: where a lab run's wall time goes.
    tracing::info!(seconds = t0.elapsed().as_secs_f64(), "lab: world built");
    let result = probe_and_judge(s, out, relay, progress, cancel, &world).await;
    let trust = world.shutdown().await;
    let (samples, outcomes) = result?;
    Ok((samples, outcomes, trust))
}

async fn probe_and_judge(
    s: &Scenario,
    out: &Path,
    relay: &Arc<Relay>,
    progress: &Progress,
    cancel: &watch::Receiver<bool>,
    world: &World,
) -> anyhow::Result<(SamplesFile, Vec<NodeOutcome>)> {
    let nodes = &world.nodes;
    // Probers: one connection per responder, through a link with the emulated delay.
    let connect_start = Instant::now();
    // Every handshake at once: each takes a few emulated round trips of milliseconds.
    let mut connecting: Vec<Vec<_>> = Vec::new();
    for i in 0..s.probers.len() {
        check(cancel)?;
        let mut row = Vec::new();
        for (j, node) in nodes.iter().enumerate() {
            let link = (addr::prober_link(i, j), world::prober_plan(s, i, j));
            row.push(connect_through(relay, i, link, &node.server, &node.name)?);
        }
        // Then the landmarks, probed like the nodes (their index in the row follows the nodes').
        for (l, lm) in world.landmarks.iter().enumerate() {
            let link = (addr::landmark_link(i, l), world::landmark_plan(s, i, l));
            row.push(connect_through(relay, i, link, &lm.server, &lm.name)?);
        }
        connecting.push(row);
    }
    let mut targets: Vec<Vec<Target>> = Vec::new();
    for row in connecting {
        let mut connected = Vec::new();
        for c in row {
            connected.push(c.await??);
        }
        targets.push(connected);
    }

    tracing::info!(
        seconds = connect_start.elapsed().as_secs_f64(),
        "lab: probers connected"
    );
    // Probing: every prober against every responder, round by round. Each pair runs its
    // rounds on one continuous schedule in a task of its own: waiting for every pair's last
    // answer before the next round cost the longest emulated round trip each second.
    let rounds = s.duration_s.ceil() as u64;
    let per_round = (s.rate_hz * ROUND.as_secs_f64()).ceil().max(1.0) as u64;
    let cfg = RoundConfig {
        rate_hz: s.rate_hz,
        count: per_round,
        window: 64,
        timeout: Duration::from_millis(900),
        keep_samples: true,
        // Emulated paths are milliseconds long: spinning would only eat the cores the relay
        // needs.
        spin: Duration::ZERO,
    };
    let interval = Duration::from_secs_f64(1.0 / s.rate_hz);
    relay.start_clock();
    let probe_start = Instant::now();
    let mut series: BTreeMap<(usize, usize), (Vec<EchoSample>, u64)> = BTreeMap::new();
    // Rounds finished by all pairs together, for the progress bar.
    let finished = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, row) in targets.iter().enumerate() {
        for (j, t) in row.iter().enumerate() {
            let (t, cfg, finished) = (t.clone(), cfg.clone(), finished.clone());
            let mut cancel = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let mut reports = Vec::new();
                let mut schedule = probe_start;
                for _ in 0..rounds {
                    let report = tokio::select! {
                        r = run_round_from(&t, &cfg, schedule) => r,
                        Ok(_) = cancel.wait_for(|c| *c) => break,
                    };
                    schedule += interval.mul_f64(cfg.count as f64);
                    reports.push(report);
                    finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                ((i, j), reports, t.epoch())
            }));
        }
    }
    let pairs = tasks.len().max(1) as u64;
    while !tasks.iter().all(|t| t.is_finished()) {
        let done = finished.load(std::sync::atomic::Ordering::Relaxed) / pairs;
        let _ = progress.send((done, rounds + 1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(cancel)?;
    for task in tasks {
        let ((i, j), reports, epoch) = task.await?;
        let offset = epoch.saturating_duration_since(probe_start).as_nanos() as u64;
        let entry = series.entry((i, j)).or_default();
        for report in reports {
            entry.1 += report.sent;
            entry.0.extend(report.samples.iter().map(|x| EchoSample {
                sent_ns: x.sent_ns + offset,
                rtt_ns: x.rtt_ns,
                inside_ns: x.inside_ns,
            }));
        }
    }
    let _ = progress.send((rounds, rounds + 1));
    tracing::info!(
        seconds = probe_start.elapsed().as_secs_f64(),
        "lab: probing done"
    );
    let evidence_start = Instant::now();

    // Evidence: every prober asks every responder once (the round trip is evidence too); every
    // bundle is verified for the prober that asked (its session key vouches for that prober's
    // samples), the last per responder is kept.
    let mut ledger = NonceLedger::new(NONCE_ISSUER);
    let mut rng = nonce_rng(s.seed);
    let mut evidence_rtts: BTreeMap<(usize, usize), Vec<u64>> = BTreeMap::new();
    let mut last: Vec<Option<(EvidenceBundle, u64)>> = vec![None; nodes.len()];
    let mut asked: Vec<Vec<(usize, EvidenceBundle, u64)>> = vec![Vec::new(); nodes.len()];
    let mut errors: Vec<Option<String>> = vec![None; nodes.len()];
    let anchor_names: Vec<String> = s
        .anchors
        .iter()
        .enumerate()
        .map(|(k, &site)| anchor_name(s, k, site))
        .collect();
    // Nonces drawn and issued in (prober, node) order, as one seed always drew them.
    let mut nonces = vec![Vec::new(); nodes.len()];
    for _ in 0..targets.len() {
        for n in nonces.iter_mut() {
            let mut nonce = [0u8; 32];
            rng.fill_bytes(&mut nonce);
            ledger.issue(&nonce, unix_now());
            n.push(nonce);
        }
    }
    // Every request at once, as probers at different sites would ask: a node's vTPM serializes
    // its own commands, and its anchors are timed for each request over its own connections.
    let mut tasks: Vec<Vec<_>> = Vec::new();
    for (j, nonces) in nonces.into_iter().enumerate() {
        // Landmarks give no evidence (they follow the nodes in each row).
        let mut asking = Vec::new();
        for (i, nonce) in nonces.into_iter().enumerate() {
            let t = targets[i][j].clone();
            let (anchors, mut cancel) = (anchor_names.clone(), cancel.clone());
            asking.push(tokio::spawn(async move {
                let include = Include {
                    tdx: true,
                    tpm: true,
                    anchors,
                };
                let issuer = Some(NONCE_ISSUER.to_string());
                // the evidence request's own round trip, as the daemons store it
                let asked = request_evidence_sealed_timed(&t, &nonce, include, issuer);
                let answer = tokio::select! {
                    a = asked => a.map_err(|e| e.to_string()),
                    Ok(_) = cancel.wait_for(|c| *c) => Err("interrupted".to_string()),
                };
                (answer, unix_now())
            }));
        }
        tasks.push(asking);
    }
    for (j, asking) in tasks.into_iter().enumerate() {
        for (i, task) in asking.into_iter().enumerate() {
            let (answer, at) = task.await?;
            match answer {
                Ok((b, rtt)) => {
                    evidence_rtts
                        .entry((i, j))
                        .or_default()
                        .push(rtt.as_nanos() as u64);
                    asked[j].push((i, b.clone(), at));
                    last[j] = Some((b, at));
                }
                Err(e) => errors[j] = Some(e),
            }
        }
    }
    check(cancel)?;
    let _ = progress.send((rounds + 1, rounds + 1));
    tracing::info!(
        seconds = evidence_start.elapsed().as_secs_f64(),
        "lab: evidence collected"
    );
    let judge_start = Instant::now();
    for row in &targets {
        for t in row {
            t.conn.close(0u32.into(), b"lab done");
        }
    }

    // Trust files and the lab's policy.
    crate::trust::write(out, s, &world.trust, &ledger)?;
    let policy = crate::trust::evidence_policy(out)?;
    anyhow::ensure!(policy.anchors.is_some(), "the lab policy names no anchors");

    // Judge.
    let world_sites: Vec<_> = s
        .sites
        .iter()
        .map(|x| locus_analysis::Site {
            name: x.name.clone(),
            lat: x.lat,
            lon: x.lon,
        })
        .collect();
    let probers: Vec<Prober> = s
        .probers
        .iter()
        .enumerate()
        .map(|(i, &site)| Prober {
            id: prober_id(s, i, site),
            site: s.sites[site].name.clone(),
        })
        .collect();
    let landmarks = landmark_rtts(s, world, &mut series);
    let mut samples = SamplesFile {
        version: SAMPLES_VERSION,
        sites: world_sites,
        probers,
        landmarks,
        nodes: Vec::new(),
    };
    // the policy the lab writes to `VERDICT_POLICY_FILE` for re-judging
    let verdict_policy = Policy::lab();
    let mut outcomes = Vec::new();
    for (j, node) in nodes.iter().enumerate() {
        let probes = (0..s.probers.len())
            .map(|i| {
                let (samples, sent) = series.remove(&(i, j)).unwrap_or_default();
                ProberSeries {
                    prober: prober_id(s, i, s.probers[i]),
                    samples,
                    sent,
                    evidence_rtt_ns: evidence_rtts.remove(&(i, j)).unwrap_or_default(),
                    peer_spki: Some(hex::encode(&targets[i][j].spki)),
                }
            })
            .collect();
        let mut input = NodeInput {
            name: node.name.clone(),
            claim: s.sites[node.claim].name.clone(),
            probes,
            ..NodeInput::default()
        };
        let mut failed_checks = Vec::new();
        let (bundle, collected_at) = match last[j].take() {
            Some((b, at)) => (Some(b), at),
            None => (None, 0),
        };
        let verify = |i: usize, b: &EvidenceBundle, at: u64| {
            let inputs = VerifyInputs {
                now_unix: at,
                nonce_record: ledger.record(&b.nonce),
                // the key the asking prober's connection showed
                peer_spki: Some(targets[i][j].spki.clone()),
            };
            let asker = prober_id(s, i, s.probers[i]);
            BundleFindings::verify(b, &policy, &inputs).requested_over(&asker)
        };
        // Each prober's own bundle vouches for its samples' key.
        let session_keys: Vec<_> = (asked[j].iter())
            .flat_map(|(i, b, at)| verify(*i, b, *at).evidence.session_keys)
            .collect();
        if let (Some(b), Some((i, _, _))) = (&bundle, asked[j].last()) {
            // the same reduction `locus judge` and the monitor apply to a stored bundle
            let found = verify(*i, b, collected_at);
            found.apply_to(&mut input);
            failed_checks = found.failed_checks();
            if let Some(e) = &mut input.evidence {
                e.session_keys = session_keys;
            }
        }
        let world = samples.world();
        let judgement = judge(&world, &input, &verdict_policy);
        samples.nodes.push(input);
        outcomes.push(NodeOutcome {
            name: node.name.clone(),
            truth: node.truth,
            judgement,
            bundle,
            collected_at,
            evidence_error: errors[j].take(),
            failed_checks,
        });
    }
    tracing::info!(seconds = judge_start.elapsed().as_secs_f64(), "lab: judged");
    Ok((samples, outcomes))
}

/// Prober `i` connects to `server` (pinned) through a relay link `(listen address, plan)`: the
/// link now, the handshake on a task of its own.
fn connect_through(
    relay: &Arc<Relay>,
    i: usize,
    (listen, plan): (SocketAddr, LinkPlan),
    server: &Server,
    name: &str,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<Target>>> {
    let link = relay.udp_link(listen, server.local_addr()?, &plan)?;
    let pin = SpkiPolicy::Pinned(server.session_key().spki_der().to_vec());
    let name = name.to_owned();
    Ok(tokio::spawn(async move {
        connect(link, addr::prober(i), pin, Duration::from_secs(10))
            .await
            .with_context(|| format!("prober {i} connecting to {name}"))
    }))
}

/// Each prober's minimum effective RTT (the responder's reported time inside subtracted, as
/// for nodes) to each landmark, taken out of `series` (landmarks follow the nodes in each
/// prober's row). A prober that never reached a landmark gives none.
fn landmark_rtts(
    s: &Scenario,
    world: &World,
    series: &mut BTreeMap<(usize, usize), (Vec<EchoSample>, u64)>,
) -> Vec<LandmarkRtt> {
    let mut out = Vec::new();
    for (i, &psite) in s.probers.iter().enumerate() {
        for (l, lm) in world.landmarks.iter().enumerate() {
            let (samples, _) = series
                .remove(&(i, world.nodes.len() + l))
                .unwrap_or_default();
            let min = samples
                .iter()
                .map(|x| x.rtt_ns.saturating_sub(x.inside_ns))
                .min();
            match min {
                Some(min_rtt_ns) => out.push(LandmarkRtt {
                    prober: prober_id(s, i, psite),
                    site: s.sites[lm.site].name.clone(),
                    min_rtt_ns,
                }),
                None => tracing::warn!(landmark = %lm.name, prober = i, "landmark never answered"),
            }
        }
    }
    out
}

pub(crate) fn prober_id(s: &Scenario, i: usize, site: usize) -> String {
    format!("p{i}-{}", s.sites[site].name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonces(seed: u64) -> [[u8; 32]; 3] {
        let mut rng = nonce_rng(seed);
        let mut out = [[0u8; 32]; 3];
        for n in &mut out {
            rng.fill_bytes(n);
        }
        out
    }

    #[test]
    fn one_seed_draws_the_same_nonces_another_seed_others() {
        assert_eq!(nonces(7), nonces(7));
        assert_ne!(nonces(7), nonces(8));
        // Not the relay's stream (seeded with the seed itself).
        let mut relay = StdRng::seed_from_u64(7);
        let mut first = [0u8; 32];
        relay.fill_bytes(&mut first);
        assert_ne!(nonces(7)[0], first);
    }
}
