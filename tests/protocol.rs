//! End-to-end tests of the challenge protocol over loopback QUIC: a real responder, real probers.

use std::net::SocketAddr;
use std::time::Duration;

use locus_prober::requests::{
    exchange_raw, request_evidence, request_evidence_from, request_transcript, RequestError,
};
use locus_prober::{connect, run_round, RoundConfig, SpkiPolicy, Target};
use locus_proto::frame::{self, MessageKind, MAX_BODY_LEN};
use locus_proto::messages::{codes, ErrorMessage, EvidenceRequest, Include, TranscriptRequest};
use locus_proto::EchoChallenge;
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn responder() -> Server {
    Server::start(
        ServerConfig::new(loopback()),
        SessionKey::generate().unwrap(),
        EvidenceSource::default(),
    )
    .unwrap()
}

async fn prober(server: &Server) -> Target {
    connect(
        server.local_addr().unwrap(),
        loopback(),
        SpkiPolicy::Pinned(server.session_key().spki_der().to_vec()),
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

fn round(count: u64, window: usize) -> RoundConfig {
    RoundConfig {
        rate_hz: 0.0,
        count,
        window,
        timeout: Duration::from_secs(2),
        keep_samples: true,
        spin: Duration::ZERO,
    }
}

fn error_of(reply: &[u8]) -> ErrorMessage {
    frame::decode(reply, MessageKind::Error, MAX_BODY_LEN).expect("an error frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_probers_at_once_and_transcripts_verify() {
    let server = responder().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let target = prober(&server).await;
        tasks.push(tokio::spawn(async move {
            let report = run_round(&target, &round(500, 64)).await;
            let t = request_transcript(&target).await.unwrap();
            (target, report, t)
        }));
    }
    for task in tasks {
        let (target, report, t) = task.await.unwrap();
        assert_eq!(report.answered + report.lost, 500, "{report:?}");
        assert_eq!(report.violations, 0);
        // Loopback loses nothing in practice; the transcript must cover exactly the answers.
        assert_eq!(t.transcript.count, report.answered);
        let entries = report.samples.iter().map(|s| (s.seq, s.nonce, s.arrival));
        t.transcript.verify_entries(&target.spki, entries).unwrap();
        assert!(report.rtt.min_us > 0.0 && report.rtt.min_us <= report.rtt.p50_us);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_pin_is_refused_and_tofu_learns_the_key() {
    let server = responder().await;
    let addr = server.local_addr().unwrap();
    let other = SessionKey::generate().unwrap();
    let err = connect(
        addr,
        loopback(),
        SpkiPolicy::Pinned(other.spki_der().to_vec()),
        Duration::from_secs(5),
    )
    .await
    .err()
    .expect("a foreign pin must fail");
    assert!(err.to_string().contains("handshake"), "{err}");
    let tofu = connect(
        addr,
        loopback(),
        SpkiPolicy::TrustOnFirstUse,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(!tofu.pinned);
    assert_eq!(tofu.spki, server.session_key().spki_der());
}

#[tokio::test]
async fn bad_frames_get_typed_errors_and_close_only_their_stream() {
    let server = responder().await;
    let target = prober(&server).await;
    let good = frame::encode(MessageKind::TranscriptRequest, &TranscriptRequest {});

    let mut wrong_version = good.clone();
    wrong_version[0] = 2;
    let e = error_of(&exchange_raw(&target, &wrong_version).await.unwrap());
    assert_eq!(e.code, codes::WRONG_VERSION, "{e:?}");

    let oversized = [1u8, 3, 0x7f, 0xff, 0xff, 0xff];
    let e = error_of(&exchange_raw(&target, &oversized).await.unwrap());
    assert_eq!(e.code, codes::TOO_LARGE, "{e:?}");

    let e = error_of(&exchange_raw(&target, &good[..3]).await.unwrap());
    assert_eq!(e.code, codes::MALFORMED, "{e:?}");
    assert!(e.message.contains("ended early"), "{e:?}");

    let unknown = [1u8, 0x42, 0, 0, 0, 0];
    let e = error_of(&exchange_raw(&target, &unknown).await.unwrap());
    assert_eq!(e.code, codes::UNKNOWN_MESSAGE, "{e:?}");

    let not_a_request = frame::encode(
        MessageKind::Error,
        &ErrorMessage {
            code: 0,
            message: String::new(),
        },
    );
    let e = error_of(&exchange_raw(&target, &not_a_request).await.unwrap());
    assert_eq!(e.code, codes::UNKNOWN_MESSAGE, "{e:?}");

    let mut garbage_body = good.clone();
    garbage_body.truncate(6);
    garbage_body[5] = 1;
    garbage_body.push(0xff);
    let e = error_of(&exchange_raw(&target, &garbage_body).await.unwrap());
    assert_eq!(e.code, codes::MALFORMED, "{e:?}");

    let short_nonce = frame::encode(
        MessageKind::EvidenceRequest,
        &EvidenceRequest {
            nonce: vec![1; 5],
            include: Include::default(),
            issuer: None,
            sealed: None,
            auth: None,
        },
    );
    let e = error_of(&exchange_raw(&target, &short_nonce).await.unwrap());
    assert_eq!(e.code, codes::BAD_NONCE, "{e:?}");

    // The connection survived all of it.
    let report = run_round(&target, &round(50, 8)).await;
    assert_eq!(report.answered, 50);
    request_transcript(&target).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn evidence_is_bound_to_the_nonce_and_unavailable_parts_are_refused() {
    let server = responder().await;
    let target = prober(&server).await;
    run_round(&target, &round(20, 4)).await;
    let nonce = [0x5a; 32];
    let bundle = request_evidence(&target, &nonce, Include::default())
        .await
        .unwrap();
    assert_eq!(bundle.nonce, nonce);
    assert_eq!(bundle.session_spki, target.spki);
    assert_eq!(bundle.transcript.count, 20);
    bundle.transcript.verify(&target.spki).unwrap();
    assert_eq!(bundle.nonce_issuer, None);
    let named = request_evidence_from(
        &target,
        &[7; 32],
        Include::default(),
        Some("verifier-a".into()),
    )
    .await
    .unwrap();
    assert_eq!(named.nonce_issuer.as_deref(), Some("verifier-a"));

    let err = request_evidence(
        &target,
        &nonce,
        Include {
            tdx: true,
            ..Include::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Refused {
                code: codes::UNAVAILABLE,
                ..
            }
        ),
        "{err}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_and_replayed_datagrams_get_no_answer() {
    let server = responder().await;
    let target = prober(&server).await;
    let challenge = EchoChallenge {
        seq: 1_000_000,
        nonce: [3; 32],
    }
    .encode();
    let mut wrong_version = challenge;
    wrong_version[0] = 9;
    for d in [
        &challenge[..],
        &challenge[..],
        &challenge[..10],
        &wrong_version[..],
        &[0u8; 300][..],
    ] {
        target.conn.send_datagram(d.to_vec().into()).unwrap();
    }
    // Exactly one answer (to the first copy) arrives; replay, truncated, wrong version and
    // junk are dropped by the responder, which keeps serving.
    let first = tokio::time::timeout(Duration::from_secs(2), target.conn.read_datagram())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        locus_proto::EchoAnswer::decode(&first).unwrap().seq,
        1_000_000
    );
    let more = tokio::time::timeout(Duration::from_millis(300), target.conn.read_datagram()).await;
    assert!(more.is_err(), "a second answer arrived: {more:?}");
    let t = request_transcript(&target).await.unwrap();
    assert_eq!(t.transcript.count, 1);
    server.shutdown().await;
}
