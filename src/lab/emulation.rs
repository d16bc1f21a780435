//! Builds the emulated world of a scenario and runs it: relays, TDs (QUIC responders with lab
//! TDX and swtpm vTPMs), anchors and probers, then collects evidence and judges every node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use locus_analysis::evidence::nonce::NonceLedger;
use locus_analysis::evidence::{verify_bundle, VerifyInputs};
use locus_analysis::input::{
    EchoSample, NodeInput, Prober, ProberSeries, SamplesFile, SAMPLES_VERSION,
};
use locus_analysis::{judge, BundleFindings, Judgement, Policy};
use locus_anchors::lab::{AnchorServer, LabCa};
use locus_anchors::{AnchorSpec, AnchorsConfig, MeasureOptions};
use locus_prober::requests::request_evidence_from;
use locus_prober::{connect, run_round, RoundConfig, SpkiPolicy, Target};
use locus_proto::evidence::EvidenceBundle;
use locus_proto::messages::Include;
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;
use locus_responder::tdx::lab::{LabOptions, LabTdx};
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::{Tcti, Vtpm, VtpmConfig};
use rand::{RngCore, SeedableRng};
use tokio::sync::watch;

use super::addr;
use super::geo::one_way;
use super::relay::{DelayPlan, Relay, RelayError};
use super::scenario::{Scenario, Truth};

/// Name under which the lab's verifier issues nonces.
pub(crate) const NONCE_ISSUER: &str = "locus-lab";

/// Length of one probing round (the verdict engine's change detection works per round).
const ROUND: Duration = Duration::from_secs(1);

/// One responder's emulated parts, kept alive for the run.
struct Node {
    name: String,
    claim: usize,
    truth: Truth,
    server: Server,
    // Fields drop in order: the vTPM connection before its emulator process.
    _vtpm: Arc<Vtpm>,
    _swtpm: Swtpm,
}

/// What a run produced, for the report.
pub(crate) struct Outcome {
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

/// Files the lab's verification policy refers to (written beside `policy.toml`).
pub(crate) struct LabTrust {
    pub(crate) tdx: LabTdx,
    pub(crate) ek_ca_pem: String,
    pub(crate) anchor_ca: LabCa,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Progress as (done, total) rounds.
pub(crate) type Progress = watch::Sender<(u64, u64)>;

/// The run was interrupted (Ctrl-C, SIGTERM).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub(crate) struct Interrupted;

/// Stops between steps when asked: a step in flight (an emulator being started) finishes
/// first, so everything it made is owned, and dropped, by the run.
fn check(cancel: &watch::Receiver<bool>) -> anyhow::Result<()> {
    if *cancel.borrow() {
        return Err(Interrupted.into());
    }
    Ok(())
}

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
    let jitter = Duration::from_secs_f64(s.jitter_us / 1e6);
    let boot = super::boot::write_logs(&out.join("td-logs"))?;
    let mut tdx_opts = LabOptions::at(unix_now());
    tdx_opts.measurements.rtmr = boot.rtmrs;
    let lab_tdx = tokio::task::spawn_blocking(move || LabTdx::generate_with(&tdx_opts))
        .await?
        .context("generating the lab TDX keys and collateral")?;
    let anchor_ca = LabCa::generate().context("generating the lab anchor CA")?;

    // Anchors, each on its own host.
    let mut anchor_servers = Vec::new();
    for (k, &site) in s.anchors.iter().enumerate() {
        let name = anchor_name(s, k, site);
        let server = AnchorServer::start(addr::anchor(k), &anchor_ca, &format!("{name}.lab"))
            .await
            .with_context(|| format!("starting anchor {name}"))?;
        anchor_servers.push(server);
    }

    // Responders: a TD with its vTPM (maybe far away) and anchors seen from where it runs.
    let mut nodes = Vec::new();
    let mut ek_roots_pem = Vec::new();
    for (j, r) in s.responders.iter().enumerate() {
        check(cancel)?;
        let swtpm = tokio::task::spawn_blocking(|| {
            Swtpm::start(SwtpmOptions {
                create_ek_cert: true,
                ..SwtpmOptions::default()
            })
        })
        .await?
        .with_context(|| format!("starting swtpm for {}", r.name))?;
        // Each emulator has its own local EK CA: [issuing CA, root] in PEM.
        let ek_ca = swtpm.ek_ca_certs()?;
        ek_roots_pem.extend(ek_ca.get(1).cloned());
        let tcti = match r.tpm_site {
            Some(t) if t != r.site => {
                let plan = DelayPlan::fixed(one_way(s, r.site, t), jitter);
                let port = tpm_relay_ports(relay, addr::tpm_link(j), swtpm.port(), &plan)?;
                Tcti::Swtpm {
                    host: addr::tpm_link(j).to_string(),
                    port,
                }
            }
            _ => swtpm.tcti(),
        };
        let vtpm = Arc::new(
            tokio::task::spawn_blocking(move || Vtpm::open(VtpmConfig::new(tcti)))
                .await?
                .with_context(|| format!("opening the vTPM of {}", r.name))?,
        );
        let mut specs = Vec::new();
        for (k, &asite) in s.anchors.iter().enumerate() {
            let plan = moving_plan(s, j, asite, jitter);
            let server = &anchor_servers[k];
            let link = relay.tcp_link(addr::anchor_link(j, k), server.local_addr(), &plan)?;
            specs.push(AnchorSpec::lab(
                &anchor_name(s, k, asite),
                link,
                server.name(),
                &anchor_ca,
            )?);
        }
        {
            let vtpm = vtpm.clone();
            tokio::task::spawn_blocking(move || super::boot::measure_into(&vtpm)).await??;
        }
        let issuing_ca = pem_certs(ek_ca.first().map_or("", String::as_str));
        let source = EvidenceSource::new(Some(lab_tdx.quoter()), Some(vtpm.clone()))
            .with_coalescing(16)
            .with_ek_ca_certs(issuing_ca)
            .with_event_logs(boot.logs.clone())
            .with_anchors(AnchorsConfig {
                options: MeasureOptions {
                    round_trips: 5,
                    ..MeasureOptions::default()
                },
                anchors: specs,
            });
        let server_config = ServerConfig {
            // Emulated paths are milliseconds long: no spinning (see RoundConfig::spin).
            spin_after_answer: Duration::ZERO,
            ..ServerConfig::new(addr::td(j))
        };
        let server = Server::start(server_config, SessionKey::generate()?, source)
            .with_context(|| format!("starting responder {}", r.name))?;
        nodes.push(Node {
            name: r.name.clone(),
            claim: r.claim,
            truth: r.truth(),
            server,
            _vtpm: vtpm,
            _swtpm: swtpm,
        });
    }

    // Probers: one connection per responder, through a link with the emulated delay.
    let mut targets: Vec<Vec<Target>> = Vec::new();
    for (i, &psite) in s.probers.iter().enumerate() {
        check(cancel)?;
        let mut row = Vec::new();
        for (j, node) in nodes.iter().enumerate() {
            let r = &s.responders[j];
            let entry = r.relay_via.unwrap_or(r.site);
            let base = one_way(s, psite, entry) + one_way(s, entry, r.site);
            let mut plan = DelayPlan::fixed(base, jitter);
            if let Some((to, after)) = r.moves {
                plan = plan.then_at(Duration::from_secs_f64(after), one_way(s, psite, to));
            }
            let link = relay.udp_link(addr::prober_link(i, j), node.server.local_addr()?, &plan)?;
            let pin = SpkiPolicy::Pinned(node.server.session_key().spki_der().to_vec());
            let target = connect(link, addr::prober(i), pin, Duration::from_secs(10))
                .await
                .with_context(|| format!("prober {i} connecting to {}", node.name))?;
            row.push(target);
        }
        targets.push(row);
    }

    // Probing: every prober against every responder, round by round.
    let rounds = s.duration_s.ceil() as u64;
    let per_round = (s.rate_hz * ROUND.as_secs_f64()).ceil().max(1.0) as u64;
    relay.start_clock();
    let probe_start = Instant::now();
    let mut series: BTreeMap<(usize, usize), (Vec<EchoSample>, u64)> = BTreeMap::new();
    for round in 0..rounds {
        check(cancel)?;
        let _ = progress.send((round, rounds + 1));
        let mut tasks = Vec::new();
        for (i, row) in targets.iter().enumerate() {
            for (j, t) in row.iter().enumerate() {
                let t = t.clone();
                let cfg = RoundConfig {
                    rate_hz: s.rate_hz,
                    count: per_round,
                    window: 64,
                    timeout: Duration::from_millis(900),
                    keep_samples: true,
                    // Emulated paths are milliseconds long: spinning would only eat the cores
                    // the relay needs.
                    spin: Duration::ZERO,
                };
                tasks.push(tokio::spawn(async move {
                    ((i, j), run_round(&t, &cfg).await, t.epoch())
                }));
            }
        }
        for task in tasks {
            let ((i, j), report, epoch) = task.await?;
            let offset = epoch.saturating_duration_since(probe_start).as_nanos() as u64;
            let entry = series.entry((i, j)).or_default();
            entry.1 += report.sent;
            entry.0.extend(report.samples.iter().map(|x| EchoSample {
                sent_ns: x.sent_ns + offset,
                rtt_ns: x.rtt_ns,
                inside_ns: x.inside_ns,
            }));
        }
    }
    let _ = progress.send((rounds, rounds + 1));

    // Evidence: every prober asks every responder once (the round trip is evidence too); the
    // last bundle per responder is verified and kept.
    let mut ledger = NonceLedger::new(NONCE_ISSUER);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut evidence_rtts: BTreeMap<(usize, usize), Vec<u64>> = BTreeMap::new();
    let mut last: Vec<Option<(EvidenceBundle, u64)>> = vec![None; nodes.len()];
    let mut errors: Vec<Option<String>> = vec![None; nodes.len()];
    let anchor_names: Vec<String> = s
        .anchors
        .iter()
        .enumerate()
        .map(|(k, &site)| anchor_name(s, k, site))
        .collect();
    for (i, row) in targets.iter().enumerate() {
        for (j, t) in row.iter().enumerate() {
            check(cancel)?;
            let mut nonce = [0u8; 32];
            rng.fill_bytes(&mut nonce);
            ledger.issue(&nonce, unix_now());
            let include = Include {
                tdx: true,
                tpm: true,
                anchors: anchor_names.clone(),
            };
            let sent = Instant::now();
            match request_evidence_from(t, &nonce, include, Some(NONCE_ISSUER.to_string())).await {
                Ok(b) => {
                    evidence_rtts
                        .entry((i, j))
                        .or_default()
                        .push(sent.elapsed().as_nanos() as u64);
                    last[j] = Some((b, unix_now()));
                }
                Err(e) => errors[j] = Some(e.to_string()),
            }
        }
    }
    let _ = progress.send((rounds + 1, rounds + 1));
    for row in &targets {
        for t in row {
            t.conn.close(0u32.into(), b"lab done");
        }
    }

    // Trust files and the lab's policy.
    let trust = LabTrust {
        tdx: lab_tdx,
        ek_ca_pem: ek_roots_pem.join("\n"),
        anchor_ca,
    };
    super::trust::write(out, s, &trust, &ledger)?;
    let policy = super::trust::evidence_policy(out)?;
    let anchor_policy = policy
        .anchors
        .clone()
        .context("the lab policy names no anchors")?;

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
    let mut samples = SamplesFile {
        version: SAMPLES_VERSION,
        sites: world_sites,
        probers,
        landmarks: Vec::new(),
        nodes: Vec::new(),
    };
    let verdict_policy = Policy::default();
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
        if let Some(b) = &bundle {
            let inputs = VerifyInputs {
                now_unix: collected_at,
                nonce_record: ledger.record(&b.nonce),
                peer_spki: Some(node.server.session_key().spki_der().to_vec()),
            };
            let report = verify_bundle(b, &policy, &inputs);
            failed_checks = report
                .failed()
                .iter()
                .map(|c| c.name().to_string())
                .collect();
            // the same reduction `locus judge` applies to the stored bundle
            let found = BundleFindings::new(b, &report, Some(&anchor_policy), collected_at);
            if let Some(e) = found.anchor_error {
                failed_checks.push(format!("anchors: {e}"));
            }
            input.evidence = Some(found.evidence);
            input.in_td = found.in_td;
            input.anchors = found.anchors;
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
    for node in &nodes {
        node.server.shutdown().await;
    }
    for a in anchor_servers {
        a.shutdown();
    }
    Ok((samples, outcomes, trust))
}

/// A TD's path to a site that may change when the TD moves.
fn moving_plan(s: &Scenario, j: usize, to_site: usize, jitter: Duration) -> DelayPlan {
    let r = &s.responders[j];
    let plan = DelayPlan::fixed(one_way(s, r.site, to_site), jitter);
    match r.moves {
        Some((m, after)) => plan.then_at(Duration::from_secs_f64(after), one_way(s, m, to_site)),
        None => plan,
    }
}

/// Relays swtpm's TPM port and control port (port + 1) through a pair of adjacent ports on
/// the relay host; returns the TPM port.
fn tpm_relay_ports(
    relay: &Arc<Relay>,
    host: std::net::IpAddr,
    swtpm_port: u16,
    plan: &DelayPlan,
) -> anyhow::Result<u16> {
    let target = |p: u16| SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), p);
    for port in (20_000u16..60_000).step_by(2) {
        let a = SocketAddr::new(host, port);
        let b = SocketAddr::new(host, port + 1);
        if std::net::TcpListener::bind(a).is_err() || std::net::TcpListener::bind(b).is_err() {
            continue;
        }
        relay.tcp_link(a, target(swtpm_port), plan)?;
        relay.tcp_link(b, target(swtpm_port + 1), plan)?;
        return Ok(port);
    }
    anyhow::bail!("no free port pair on {host} for the vTPM relay")
}

fn pem_certs(pem_text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text.as_bytes())
        .map(|v| v.into_iter().map(|p| p.into_contents()).collect())
        .unwrap_or_default()
}

pub(crate) fn anchor_name(s: &Scenario, k: usize, site: usize) -> String {
    format!("anchor-{}-{k}", s.sites[site].name)
}

pub(crate) fn prober_id(s: &Scenario, i: usize, site: usize) -> String {
    format!("p{i}-{}", s.sites[site].name)
}
