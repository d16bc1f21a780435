//! A request that waits in the responder's evidence queue behind another prober's is still in
//! the TD while it waits: its `evidence_ns` covers the wait, so the prober's round trip minus
//! the in-TD time stays a network time (the lab judged an honest node proxied when it did not).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use locus_prober::requests::request_evidence_sealed_timed;
use locus_prober::{connect, SpkiPolicy};
use locus_proto::messages::Include;
use locus_responder::admission::Limits;
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;
use locus_responder::tdx::lab::{LabOptions, LabTdx};
use locus_responder::tdx::{QuoteError, TdxQuoter};

/// Each quote takes this long: the second request waits about as long in the queue.
const QUOTE: Duration = Duration::from_millis(300);

struct Slow(Arc<dyn TdxQuoter>);

impl TdxQuoter for Slow {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        std::thread::sleep(QUOTE);
        self.0.quote(report_data)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_count_their_wait_as_in_td_time() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lab = LabTdx::generate_with(&LabOptions::at(now)).unwrap();
    let quoter: Arc<dyn TdxQuoter> = Arc::new(Slow(lab.quoter()));
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Server::start(
        ServerConfig {
            // One request at a time: the other queues.
            limits: Limits {
                evidence_concurrency: 1,
                ..Limits::default()
            },
            ..ServerConfig::new(loopback)
        },
        SessionKey::generate().unwrap(),
        EvidenceSource::new(Some(quoter), None),
    )
    .unwrap();
    let mut asking = Vec::new();
    for i in 0..2u8 {
        let target = connect(
            server.local_addr().unwrap(),
            loopback,
            SpkiPolicy::Pinned(server.session_key().spki_der().to_vec()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        asking.push(tokio::spawn(async move {
            let include = Include {
                tdx: true,
                ..Include::default()
            };
            request_evidence_sealed_timed(&target, &[i; 32], include, None).await
        }));
    }
    let mut in_td = Vec::new();
    for a in asking {
        let (bundle, rtt) = a.await.unwrap().unwrap();
        let inside = Duration::from_nanos(bundle.timings.evidence_ns.unwrap());
        // Loopback: what is not in-TD time is a few scheduler passes, far below a quote.
        let outside = rtt.saturating_sub(inside);
        assert!(
            outside < QUOTE / 2,
            "round trip {rtt:?}, in-TD {inside:?}: {outside:?} unaccounted for"
        );
        in_td.push(inside);
    }
    // One of the two waited for the other's quote, and says so.
    in_td.sort();
    assert!(in_td[1] >= QUOTE * 2 - QUOTE / 10, "in-TD times {in_td:?}");
    server.shutdown().await;
}
