//! The emulated world of a scenario: TLS anchors and TDs (QUIC responders with lab TDX and
//! swtpm vTPMs, maybe far from their vTPM), each on its own loopback host behind the delay
//! relay. The lab's own probing run and `locus lab --serve` both stand on it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use locus_anchors::lab::{AnchorServer, LabBehaviour, LabCa};
use locus_anchors::{AnchorSpec, AnchorsConfig, ClockOptions, MeasureOptions};
use locus_responder::config::{Backends, TdxBackendKind};
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;
use locus_responder::tdx::lab::{LabOptions, LabTdx, PacedQuoter};
use locus_responder::tdx::TdxQuoter;
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::{Tcti, Vtpm, VtpmConfig};
use tokio::sync::watch;

use crate::addr;
use crate::geo::one_way;
use crate::relay::{DelayPlan, Jitter, LinkPlan, Relay};
use crate::scenario::{Scenario, Truth};

/// One responder's emulated parts, kept alive for the run.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) claim: usize,
    pub(crate) truth: Truth,
    pub(crate) server: Server,
    // Fields drop in order: the vTPM connection before its emulator process.
    _vtpm: Arc<Vtpm>,
    _swtpm: Swtpm,
}

/// A landmark: an honest responder at a known site with a known key, answering echoes only
/// (no evidence, never judged), for the probers' calibration.
pub(crate) struct Landmark {
    pub(crate) name: String,
    pub(crate) site: usize,
    pub(crate) server: Server,
}

/// Files the lab's verification policy refers to (written beside `policy.toml`).
pub(crate) struct LabTrust {
    pub(crate) tdx: LabTdx,
    pub(crate) ek_ca_pem: String,
    pub(crate) anchor_ca: LabCa,
    /// SHA-256 of each anchor's leaf SPKI, in scenario order: the lab policy pins them.
    pub(crate) anchor_pins: Vec<[u8; 32]>,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The run was interrupted (Ctrl-C, SIGTERM).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Stops between steps when asked: a step in flight (an emulator being started) finishes
/// first, so everything it made is owned, and dropped, by the run.
pub(crate) fn check(cancel: &watch::Receiver<bool>) -> anyhow::Result<()> {
    if *cancel.borrow() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// The running world; dropping it kills every emulator it started.
pub(crate) struct World {
    pub(crate) nodes: Vec<Node>,
    pub(crate) landmarks: Vec<Landmark>,
    anchor_servers: Vec<AnchorServer>,
    pub(crate) trust: LabTrust,
}

impl World {
    /// Stops every server and emulator; the trust material outlives them.
    pub(crate) async fn shutdown(self) -> LabTrust {
        for node in &self.nodes {
            node.server.shutdown().await;
        }
        for l in &self.landmarks {
            l.server.shutdown().await;
        }
        for a in self.anchor_servers {
            a.shutdown();
        }
        self.trust
    }
}

/// Starts the anchors and the responders of `s` behind `relay`; boot event logs go to
/// `out/td-logs`.
pub(crate) async fn build(
    s: &Scenario,
    out: &Path,
    relay: &Arc<Relay>,
    cancel: &watch::Receiver<bool>,
) -> anyhow::Result<World> {
    let boot = crate::boot::write_logs(&out.join("td-logs"))?;
    let mut tdx_opts = LabOptions::at(unix_now());
    tdx_opts.measurements.rtmr = boot.rtmrs;
    let lab_tdx = tokio::task::spawn_blocking(move || LabTdx::generate_with(&tdx_opts))
        .await?
        .context("generating the lab TDX keys and collateral")?;
    let anchor_ca = LabCa::generate().context("generating the lab anchor CA")?;

    // Anchors, each on its own host.
    let mut anchor_servers = Vec::new();
    let mut anchor_pins = Vec::new();
    for (k, &site) in s.anchors.iter().enumerate() {
        let name = anchor_name(s, k, site);
        let sni = format!("{name}.lab");
        let identity = anchor_ca
            .issue(&sni)
            .with_context(|| format!("issuing anchor {name}'s certificate"))?;
        anchor_pins.push(identity.spki_sha256());
        let server =
            AnchorServer::start_with(addr::anchor(k), &sni, identity, LabBehaviour::Honest)
                .await
                .with_context(|| format!("starting anchor {name}"))?;
        anchor_servers.push(server);
    }

    // Responders: a TD with its vTPM (maybe far away) and anchors seen from where it runs.
    let mut nodes = Vec::new();
    let mut ek_roots_pem = Vec::new();
    // Emulators are made in parallel, one per core: each spends most of a second making its EK
    // and EK certificate, which one after another was most of the world's start-up. All are
    // made before any is used: a TPM command (5 s timeout) sent while others still generate
    // keys on the same cores could time out.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let permits = Arc::new(tokio::sync::Semaphore::new(cores));
    let making: Vec<_> = (s.responders.iter())
        .map(|_| {
            let permits = permits.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                tokio::task::spawn_blocking(|| {
                    Swtpm::start(SwtpmOptions {
                        create_ek_cert: true,
                        ..SwtpmOptions::default()
                    })
                })
                .await
            })
        })
        .collect();
    let mut swtpms = Vec::new();
    for (r, swtpm) in s.responders.iter().zip(making) {
        let swtpm = swtpm.await??;
        swtpms.push(swtpm.with_context(|| format!("starting swtpm for {}", r.name))?);
    }
    for ((j, r), swtpm) in s.responders.iter().enumerate().zip(swtpms) {
        check(cancel)?;
        // Each emulator has its own local EK CA: [issuing CA, root] in PEM.
        let ek_ca = swtpm.ek_ca_certs()?;
        ek_roots_pem.extend(ek_ca.get(1).cloned());
        let tcti = match r.tpm_site {
            Some(t) if t != r.site => {
                let site = r.site;
                let plan = route(s, |_| vec![(site, t)]);
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
            let plan = route(s, |t| vec![(site_at(s, j, t), asite)]);
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
            tokio::task::spawn_blocking(move || crate::boot::measure_into(&vtpm)).await??;
        }
        let issuing_ca = pem_certs(ek_ca.first().map_or("", String::as_str));
        // The same wiring as `locus responder --config` (tdx.backend = "lab", [tpm] on swtpm).
        let quoter: Arc<dyn TdxQuoter> = match s.quote_delay_ms {
            0 => lab_tdx.quoter(),
            ms => Arc::new(PacedQuoter::new(
                lab_tdx.quoter(),
                Duration::from_millis(ms),
            )),
        };
        let source = Backends {
            tdx: Some(quoter),
            tdx_kind: TdxBackendKind::Lab,
            lab: None,
            coalesce_max_batch: 16,
            vtpm: Some(vtpm.clone()),
            ek_ca_certs: issuing_ca,
            logs: boot.logs.clone(),
            anchors: Some(AnchorsConfig {
                options: MeasureOptions {
                    // The minimum of several: a first TLS round trip under load can take ms.
                    round_trips: 10,
                    // the lab machine's own clock (its policy allows it by name)
                    clock: ClockOptions::lab(),
                    ..MeasureOptions::default()
                },
                anchors: specs,
            }),
        }
        .into_source();
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
    let mut landmarks = Vec::new();
    for (l, &site) in s.landmarks.iter().enumerate() {
        let name = landmark_name(s, l, site);
        let config = ServerConfig {
            spin_after_answer: Duration::ZERO,
            ..ServerConfig::new(addr::landmark(l))
        };
        // No evidence backends: a landmark only answers echoes, which costs no start-up time.
        let server = Server::start(
            config,
            SessionKey::generate()?,
            EvidenceSource::new(None, None),
        )
        .with_context(|| format!("starting landmark {name}"))?;
        landmarks.push(Landmark { name, site, server });
    }
    Ok(World {
        nodes,
        landmarks,
        anchor_servers,
        trust: LabTrust {
            tdx: lab_tdx,
            ek_ca_pem: ek_roots_pem.join("\n"),
            anchor_ca,
            anchor_pins,
        },
    })
}

/// The path from prober `i` to responder `j`: through the relay's entry site when it has one,
/// and to the new site once the TD moves.
pub(crate) fn prober_plan(s: &Scenario, i: usize, j: usize) -> LinkPlan {
    let r = &s.responders[j];
    let psite = s.probers[i];
    let entry = r.relay_via.unwrap_or(r.site);
    route(s, |t| match r.moves {
        Some((to, after)) if t >= after => vec![(psite, to)],
        _ => vec![(psite, entry), (entry, r.site)],
    })
}

/// The path from prober `i` to landmark `l`.
pub(crate) fn landmark_plan(s: &Scenario, i: usize, l: usize) -> LinkPlan {
    let (psite, lsite) = (s.probers[i], s.landmarks[l]);
    route(s, |_| vec![(psite, lsite)])
}

/// The path from prober `i` to prober `k` (whose daemon answers its peers' echoes).
pub(crate) fn peer_plan(s: &Scenario, i: usize, k: usize) -> LinkPlan {
    let (from, to) = (s.probers[i], s.probers[k]);
    route(s, |_| vec![(from, to)])
}

/// Where responder `j`'s TD runs `t_s` seconds into the run.
fn site_at(s: &Scenario, j: usize, t_s: f64) -> usize {
    let r = &s.responders[j];
    match r.moves {
        Some((to, after)) if t_s >= after => to,
        _ => r.site,
    }
}

/// The scenario's jitter model.
fn jitter(s: &Scenario) -> Jitter {
    let scale = Duration::from_secs_f64(s.jitter_us / 1e6);
    match s.jitter_tail {
        None => Jitter::Uniform(scale),
        Some(shape) => Jitter::Pareto {
            scale,
            shape,
            cap: scale * JITTER_CAP_SCALES,
        },
    }
}

/// Heavy-tailed jitter is cut at this many scales (5 ms at the default 50 µs): the relay keeps
/// each direction FIFO, so one huge draw would hold up every packet behind it.
const JITTER_CAP_SCALES: u32 = 100;

/// Both directions of a route whose legs (pairs of sites, client side first) may change over
/// the run: each direction's delay is the sum of its legs' one-way delays, recomputed at every
/// time a route event or a move may change it. Reversed legs give the way back, so an
/// asymmetric `[[path]]` or event applies to one direction only.
fn route(s: &Scenario, legs: impl Fn(f64) -> Vec<(usize, usize)>) -> LinkPlan {
    let plan = |reverse: bool| {
        let delay = |t: f64| -> Duration {
            legs(t)
                .into_iter()
                .map(|(a, b)| {
                    if reverse {
                        one_way(s, b, a, t)
                    } else {
                        one_way(s, a, b, t)
                    }
                })
                .sum()
        };
        let mut last = delay(0.0);
        let mut plan = DelayPlan::fixed(last, jitter(s));
        for t in s.change_times() {
            let d = delay(t);
            if d != last {
                plan = plan.then_at(Duration::from_secs_f64(t), d);
                last = d;
            }
        }
        plan
    };
    LinkPlan {
        there: plan(false),
        back: plan(true),
    }
}

/// Relays swtpm's TPM port and control port (port + 1) through a pair of adjacent ports on
/// the relay host; returns the TPM port.
fn tpm_relay_ports(
    relay: &Arc<Relay>,
    host: std::net::IpAddr,
    swtpm_port: u16,
    plan: &LinkPlan,
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

pub(crate) fn landmark_name(s: &Scenario, l: usize, site: usize) -> String {
    format!("landmark-{}-{l}", s.sites[site].name)
}

pub(crate) fn anchor_name(s: &Scenario, k: usize, site: usize) -> String {
    format!("anchor-{}-{k}", s.sites[site].name)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Instant;

    use super::*;

    /// Two sites 300 km apart (1.5 ms one way at inflation 1), one prober, one node.
    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            r#"
[settings]
inflation = 1.0
jitter_us = 0
[[site]]
name = "a"
lat = 50.0
lon = 8.0
[[site]]
name = "b"
lat = 52.6978
lon = 8.0
[[prober]]
site = "a"
[[responder]]
name = "n"
claim = "b"
site = "b"
{extra}
"#
        );
        Scenario::parse(&text, "t").unwrap()
    }

    /// The smallest of `n` round trips through `link`.
    fn min_rtt(client: &UdpSocket, link: SocketAddr, n: usize) -> Duration {
        let mut buf = [0u8; 64];
        (0..n)
            .map(|_| {
                let t = Instant::now();
                client.send_to(b"ping", link).unwrap();
                client.recv_from(&mut buf).unwrap();
                t.elapsed()
            })
            .min()
            .unwrap()
    }

    /// A one-way `[[path]]` override stretches one direction only; a route `[[event]]` changes
    /// the path's delay on schedule; both measured through the relay on loopback.
    #[test]
    fn relay_follows_path_overrides_and_route_events() {
        let s = scenario(
            r#"
[[path]]
between = ["a", "b"]
inflation = 2.0
one_way = true
[[event]]
at_s = 0.4
between = ["a", "b"]
inflation = 1.0
"#,
        );
        let km = crate::geo::km(&s.sites[0], &s.sites[1]);
        assert!((295.0..305.0).contains(&km), "{km}");
        let relay = Relay::start(1);
        let link = relay
            .udp_link(
                "127.0.0.1:0".parse().unwrap(),
                crate::relay::tests::udp_echo().0,
                &prober_plan(&s, 0, 0),
            )
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        relay.start_clock();
        // There 3 ms (inflation 2), back 1.5 ms (the drawn inflation, 1): 4.5 ms.
        let before = min_rtt(&client, link, 5);
        assert!(before >= Duration::from_micros(4_500), "{before:?}");
        assert!(before < Duration::from_micros(5_900), "{before:?}");
        std::thread::sleep(Duration::from_millis(450));
        // After the route change: 1.5 ms each way.
        let after = min_rtt(&client, link, 5);
        assert!(after >= Duration::from_micros(3_000), "{after:?}");
        assert!(
            after < Duration::from_micros(4_400),
            "the event did not apply: {after:?}"
        );
        relay.stop();
    }

    #[test]
    fn heavy_tailed_jitter_is_pareto_and_capped() {
        let s = scenario("");
        assert_eq!(jitter(&s), Jitter::Uniform(Duration::ZERO));
        let mut tailed = s.clone();
        tailed.jitter_us = 50.0;
        tailed.jitter_tail = Some(1.5);
        let Jitter::Pareto { scale, shape, cap } = jitter(&tailed) else {
            panic!("not heavy-tailed: {:?}", jitter(&tailed));
        };
        assert_eq!((scale, shape), (Duration::from_micros(50), 1.5));
        assert_eq!(cap, Duration::from_millis(5));
    }
}
