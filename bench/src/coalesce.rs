//! `locus bench evidence --concurrency N`: evidence at cloud speed. N requesters ask one
//! responder's evidence source for fresh bundles (TDX quote and `--anchors` lab anchors, two by
//! default, pinned by SPKI as production anchors must be, each bundle bound to its own nonce)
//! while every TDX quote takes `--quote-delay-ms`, one at a time, as the host's quoting service
//! does on a cloud TD. Measured alternately in the same run:
//! bundles with coalescing (one quote over a Merkle root of the waiting REPORTDATA values),
//! the same bundles without it, and a bare serialized quoter asked by the same N requesters.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use locus_anchors::lab::{AnchorServer, LabBehaviour, LabCa};
use locus_anchors::{AnchorSpec, AnchorsConfig, ClockOptions, MeasureOptions, Trust};
use locus_proto::messages::Include;
use locus_proto::transcript::Transcript;
use locus_responder::config::TdxSection;
use locus_responder::evidence::EvidenceSource;
use locus_responder::session_key::SessionKey;
use locus_responder::tdx::lab::{LabOptions, LabTdx, PacedQuoter};
use locus_responder::tdx::TdxQuoter;
use serde::Serialize;

use locus_fleet::time::unix_now;

/// What one load run asks for.
pub(crate) struct LoadArgs {
    pub(crate) concurrency: u32,
    pub(crate) quote_delay_ms: u64,
    /// Lab anchors timed in each bundle (at most 2).
    pub(crate) anchors: usize,
    pub(crate) duration: Duration,
    pub(crate) json: bool,
}

#[derive(Serialize)]
struct LoadReport {
    concurrency: u32,
    quote_delay_ms: u64,
    /// Most bundles per TDX quote (the responder's default `tdx.coalesce_max_batch`).
    max_batch: usize,
    /// Anchors timed in each bundle.
    anchors: usize,
    /// Fresh bundles per second with coalescing (goal ≥ 500 at 100 requesters, 40 ms quotes).
    coalesced_bundles_per_s: f64,
    coalesced_p50_ms: f64,
    /// Goal ≤ 150 ms.
    coalesced_p99_ms: f64,
    /// Bundles per TDX quote with coalescing.
    coalesced_mean_batch: f64,
    /// The same bundles, a TDX quote each.
    serial_bundles_per_s: f64,
    serial_p50_ms: f64,
    serial_p99_ms: f64,
    /// A bare serialized quoter asked by the same requesters: the baseline (≈ 1000 / delay).
    bare_quotes_per_s: f64,
    bare_p99_ms: f64,
    /// coalesced / bare.
    ratio: f64,
}

/// Latencies and rate of one run.
struct Run {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Run {
    fn of(mut lat: Vec<Duration>, wall: Duration) -> Self {
        lat.sort_unstable();
        let at = |q: f64| {
            lat.get(((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len().max(1)) - 1)
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        Self {
            per_s: lat.len() as f64 / wall.as_secs_f64(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
        }
    }
}

pub(crate) fn run(args: LoadArgs) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(measure(&args))?;
    render(&report, args.json)
}

async fn measure(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    let now = unix_now()?;
    let lab =
        tokio::task::spawn_blocking(move || LabTdx::generate_with(&LabOptions::at(now))).await??;
    let delay = Duration::from_millis(args.quote_delay_ms);
    let paced: Arc<dyn TdxQuoter> = Arc::new(PacedQuoter::new(lab.quoter(), delay));
    let ca = LabCa::generate()?;
    let mut servers = Vec::new();
    let mut specs = Vec::new();
    for name in ["a1", "a2"].into_iter().take(args.anchors) {
        let sni = format!("{name}.lab");
        let identity = ca.issue(&sni)?;
        let pin = identity.spki_sha256();
        let server =
            AnchorServer::start_with("127.0.0.1:0".parse()?, &sni, identity, LabBehaviour::Honest)
                .await?;
        // Pinned, as outside a lab every anchor must be (a CA-trusted anchor file is refused
        // without `allow_unpinned`): the handshake checks the pin, not a chain.
        let mut spec = AnchorSpec::lab(name, server.local_addr(), server.name(), &ca)?;
        spec.trust = Trust::PinnedSpki(pin);
        specs.push(spec);
        servers.push(server);
    }
    let anchors = AnchorsConfig {
        options: MeasureOptions {
            // This machine's own clock, as the lab allows it by name.
            clock: ClockOptions::lab(),
            ..MeasureOptions::default()
        },
        anchors: specs,
    };
    let include = Include {
        tdx: true,
        tpm: false,
        anchors: anchors.anchors.iter().map(|a| a.name.clone()).collect(),
    };
    let max_batch = TdxSection::default().coalesce_max_batch;
    let coalescing = Arc::new(
        EvidenceSource::new(Some(paced.clone()), None)
            .with_anchors(anchors.clone())
            .with_coalescing(max_batch),
    );
    let serial = Arc::new(EvidenceSource::new(Some(paced.clone()), None).with_anchors(anchors));
    let key = SessionKey::generate()?;

    // One after the other in the same run, under the same machine load.
    let (lat, wall, batches) = bundles(&coalescing, &key, &include, args).await?;
    let coalesced = Run::of(lat, wall);
    let (lat, wall, _) = bundles(&serial, &key, &include, args).await?;
    let serial = Run::of(lat, wall);
    let (lat, wall) = bare(&paced, args).await?;
    let bare = Run::of(lat, wall);
    for s in servers {
        s.shutdown();
    }
    Ok(LoadReport {
        concurrency: args.concurrency,
        quote_delay_ms: args.quote_delay_ms,
        max_batch,
        anchors: include.anchors.len(),
        coalesced_bundles_per_s: coalesced.per_s,
        coalesced_p50_ms: coalesced.p50_ms,
        coalesced_p99_ms: coalesced.p99_ms,
        coalesced_mean_batch: batches,
        serial_bundles_per_s: serial.per_s,
        serial_p50_ms: serial.p50_ms,
        serial_p99_ms: serial.p99_ms,
        bare_quotes_per_s: bare.per_s,
        bare_p99_ms: bare.p99_ms,
        ratio: coalesced.per_s / bare.per_s,
    })
}

/// `concurrency` requesters each asking for bundles until `duration` has passed; returns the
/// latencies, the wall time until the last one finished and the mean bundles per TDX quote.
async fn bundles(
    source: &Arc<EvidenceSource>,
    key: &Arc<SessionKey>,
    include: &Include,
    args: &LoadArgs,
) -> anyhow::Result<(Vec<Duration>, Duration, f64)> {
    let start = Instant::now();
    let until = start + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (source, key, include) = (source.clone(), key.clone(), include.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut quotes = std::collections::HashSet::new();
            while Instant::now() < until {
                let nonce: [u8; 32] = rand::random();
                let transcript = Transcript::new().sign(key.signing_key());
                let t = Instant::now();
                let b = source
                    .collect(&nonce, key.spki_der(), transcript, &include)
                    .await?;
                lat.push(t.elapsed());
                let tdx = b
                    .tdx
                    .ok_or_else(|| anyhow::anyhow!("a bundle without its TDX part"))?;
                let anchors_ok = match &b.anchors {
                    None => include.anchors.is_empty(),
                    Some(a) => {
                        a.anchors.len() == include.anchors.len()
                            && a.anchors.iter().all(|r| r.failure.is_none())
                    }
                };
                anyhow::ensure!(
                    anchors_ok,
                    "a bundle without its anchors, or an anchor failed"
                );
                quotes.insert(tdx.quote);
            }
            anyhow::Ok((lat, quotes))
        });
    }
    let mut all = Vec::new();
    let mut quotes = std::collections::HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let (lat, q) = r??;
        all.extend(lat);
        quotes.extend(q);
    }
    let batch = all.len() as f64 / quotes.len().max(1) as f64;
    Ok((all, start.elapsed(), batch))
}

/// The baseline: the same requesters asking the bare serialized quoter.
async fn bare(
    quoter: &Arc<dyn TdxQuoter>,
    args: &LoadArgs,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let start = Instant::now();
    let until = start + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let quoter = quoter.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let q = quoter.clone();
                let t = Instant::now();
                let mut report_data = [0u8; 64];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut report_data);
                tokio::task::spawn_blocking(move || q.quote(report_data)).await??;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    Ok((all, start.elapsed()))
}

fn render(r: &LoadReport, json: bool) -> anyhow::Result<String> {
    crate::render(r, json, true, |out| {
        _ = writeln!(
            out,
            "{} requesters, TDX quotes of {} ms one at a time, {} anchors per bundle",
            r.concurrency, r.quote_delay_ms, r.anchors
        );
        _ = writeln!(
            out,
            "coalesced (≤ {} per quote, {:.1} on average): {:.0} bundles/s (goal ≥ 500), p50 {:.1} ms, p99 {:.1} ms (goal ≤ 150)",
            r.max_batch,
            r.coalesced_mean_batch,
            r.coalesced_bundles_per_s,
            r.coalesced_p50_ms,
            r.coalesced_p99_ms
        );
        _ = writeln!(
            out,
            "a quote per bundle: {:.0} bundles/s, p50 {:.1} ms, p99 {:.1} ms",
            r.serial_bundles_per_s, r.serial_p50_ms, r.serial_p99_ms
        );
        _ = writeln!(
            out,
            "bare serialized quoter: {:.0} quotes/s, p99 {:.1} ms; coalesced / bare {:.1}",
            r.bare_quotes_per_s, r.bare_p99_ms, r.ratio
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run with fast quotes prints the contract's keys; rates are not asserted.
    #[test]
    fn small_run_reports_the_keys() {
        let out = run(LoadArgs {
            concurrency: 4,
            quote_delay_ms: 5,
            anchors: 2,
            duration: Duration::from_millis(200),
            json: true,
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["concurrency"].as_u64(), Some(4), "{v}");
        assert_eq!(v["quote_delay_ms"].as_u64(), Some(5), "{v}");
        assert_eq!(v["anchors"].as_u64(), Some(2), "{v}");
        for key in [
            "coalesced_bundles_per_s",
            "serial_bundles_per_s",
            "coalesced_p50_ms",
            "coalesced_p99_ms",
            "bare_quotes_per_s",
        ] {
            let x = v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"));
            assert!(x.is_finite() && x > 0.0, "{key} = {x} in {v}");
        }
    }
}
