//! Measurements against lab anchors over loopback: the honest case and every recorded failure.
//! Assertions are on structure and reasons, never on durations.

use std::net::SocketAddr;
use std::time::Duration;

use locus_anchors::{
    measure, measure_all, AnchorFailure, AnchorServer, AnchorSpec, ClockOptions, LabBehaviour,
    LabCa, MeasureOptions, Trust,
};
use locus_proto::anchor::derive_client_random;
use rustls::pki_types::ServerName;

const NONCE: [u8; 32] = [0x42; 32];

fn any(ip: &str) -> SocketAddr {
    format!("{ip}:0").parse().unwrap()
}

fn options(k: u32) -> MeasureOptions {
    MeasureOptions {
        round_trips: k,
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_millis(400),
        round_trip_timeout: Duration::from_millis(400),
        // this machine's clock, whatever it is (CI runners may use kvm-clock)
        clock: ClockOptions::lab(),
        ..MeasureOptions::default()
    }
}

async fn honest(ca: &LabCa, ip: &str, name: &str) -> (AnchorServer, AnchorSpec) {
    let server = AnchorServer::start(any(ip), ca, name).await.unwrap();
    let spec = AnchorSpec::lab(name, server.local_addr(), name, ca).unwrap();
    (server, spec)
}

#[tokio::test]
async fn honest_anchor_gives_k_samples_bound_to_the_nonce() {
    let ca = LabCa::generate().unwrap();
    let (_server, spec) = honest(&ca, "127.77.0.1", "anchor-fra.lab").await;
    let r = measure(&spec, &NONCE, 3, &options(5)).await;
    assert_eq!(r.failure, None);
    assert_eq!(r.round_trips_ns.len(), 5);
    let min = r.min_rtt_ns.unwrap();
    assert!(r.round_trips_ns.iter().all(|&s| min <= s));
    assert!(r.round_trips_ns.contains(&min));
    assert_eq!(r.good_min_rtt_ns(), Some(min));
    assert!(r.tcp_connect_ns.is_some() && r.handshake_rtt_ns.is_some());
    let tls = r.tls.as_ref().unwrap();
    let expected = derive_client_random(&NONCE, 3, "anchor-fra.lab");
    assert_eq!(tls.client_random, expected);
    // The random is on the wire: record header 5, handshake header 4, version 2.
    assert_eq!(tls.client_hello[0], 22);
    assert_eq!(&tls.client_hello[11..43], &expected);
    assert_eq!(tls.cipher_suite & 0xff00, 0x1300, "a TLS 1.3 suite");
    assert!(!tls.server_handshake_secret.is_empty());
    assert!(!tls.server_flight.is_empty());
    assert_eq!(tls.cert_chain.len(), 1);
    let cv = tls.cert_verify.as_ref().unwrap();
    assert!(cv.signed_message.starts_with(&[0x20; 64]));
    assert!(!cv.signature.is_empty());
}

#[tokio::test]
async fn same_nonce_same_random_but_fresh_key_shares() {
    let ca = LabCa::generate().unwrap();
    let (_server, spec) = honest(&ca, "127.77.0.2", "anchor-ams.lab").await;
    let a = measure(&spec, &NONCE, 0, &options(1)).await;
    let b = measure(&spec, &NONCE, 0, &options(1)).await;
    let (ta, tb) = (a.tls.unwrap(), b.tls.unwrap());
    assert_eq!(ta.client_random, tb.client_random);
    // Same random, yet the ClientHellos differ: the session id and the key shares come from the
    // OS random source, not from the nonce.
    assert_ne!(ta.client_hello, tb.client_hello);
    assert_ne!(ta.client_hello[43..], tb.client_hello[43..]);
}

#[tokio::test]
async fn measure_all_keeps_order_and_indexes() {
    let ca = LabCa::generate().unwrap();
    let (_s1, a) = honest(&ca, "127.77.1.1", "anchor-a.lab").await;
    let (_s2, b) = honest(&ca, "127.77.1.2", "anchor-b.lab").await;
    let report = measure_all(&[a, b], &NONCE, &options(2)).await;
    assert_eq!(report.nonce, NONCE);
    assert_eq!(report.anchors.len(), 2);
    for (i, r) in report.anchors.iter().enumerate() {
        assert_eq!(r.failure, None);
        let expected = derive_client_random(&NONCE, i as u32, &r.name);
        assert_eq!(r.tls.as_ref().unwrap().client_random, expected);
    }
}

#[tokio::test]
async fn anchor_down_is_refused() {
    let ca = LabCa::generate().unwrap();
    let listener = std::net::TcpListener::bind(any("127.77.2.1")).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let spec = AnchorSpec::lab("down", addr, "anchor-down.lab", &ca).unwrap();
    let r = measure(&spec, &NONCE, 0, &options(3)).await;
    assert_eq!(r.failure, Some(AnchorFailure::Refused));
    assert!(r.tls.is_none(), "no handshake was attempted");
    assert!(r.round_trips_ns.is_empty());
    assert_eq!(r.min_rtt_ns, None);
    assert_eq!(r.good_min_rtt_ns(), None);
}

#[tokio::test]
async fn silent_anchor_times_out_in_the_handshake() {
    let ca = LabCa::generate().unwrap();
    let name = "anchor-slow.lab";
    let server = AnchorServer::start_with(
        any("127.77.3.1"),
        name,
        ca.issue(name).unwrap(),
        LabBehaviour::StallHandshake,
    )
    .await
    .unwrap();
    let spec = AnchorSpec::lab(name, server.local_addr(), name, &ca).unwrap();
    let r = measure(&spec, &NONCE, 0, &options(3)).await;
    assert_eq!(
        r.failure,
        Some(AnchorFailure::HandshakeTimeout { timeout_ms: 400 })
    );
    assert!(r.tcp_connect_ns.is_some());
    assert!(r.round_trips_ns.is_empty());
    assert_eq!(r.good_min_rtt_ns(), None);
}

#[tokio::test]
async fn slow_answers_time_out_per_round_trip() {
    let ca = LabCa::generate().unwrap();
    let name = "anchor-stall.lab";
    let server = AnchorServer::start_with(
        any("127.77.3.2"),
        name,
        ca.issue(name).unwrap(),
        LabBehaviour::StallResponses,
    )
    .await
    .unwrap();
    let spec = AnchorSpec::lab(name, server.local_addr(), name, &ca).unwrap();
    let r = measure(&spec, &NONCE, 0, &options(3)).await;
    assert_eq!(
        r.failure,
        Some(AnchorFailure::RoundTripTimeout {
            index: 0,
            timeout_ms: 400
        })
    );
    assert!(r.round_trips_ns.is_empty());
    assert_eq!(r.good_min_rtt_ns(), None);
}

fn assert_certificate_failure(r: &locus_anchors::AnchorResult, needle: &str) {
    match &r.failure {
        Some(AnchorFailure::Certificate { detail }) => {
            assert!(detail.contains(needle), "{detail:?} lacks {needle:?}")
        }
        other => panic!("expected a certificate failure, got {other:?}"),
    }
    assert!(r.round_trips_ns.is_empty());
    assert_eq!(r.good_min_rtt_ns(), None);
}

#[tokio::test]
async fn certificate_from_another_ca_is_rejected() {
    let lab = LabCa::generate().unwrap();
    let rogue = LabCa::generate().unwrap();
    let (_server, _) = honest(&rogue, "127.77.4.1", "anchor-fra.lab").await;
    let spec = AnchorSpec::lab("fra", _server.local_addr(), "anchor-fra.lab", &lab).unwrap();
    let r = measure(&spec, &NONCE, 0, &options(3)).await;
    assert_certificate_failure(&r, "UnknownIssuer");
    // The chain the server showed is kept for the record.
    assert_eq!(r.tls.unwrap().cert_chain.len(), 1);
}

#[tokio::test]
async fn certificate_for_another_name_is_rejected() {
    let ca = LabCa::generate().unwrap();
    let server = AnchorServer::start(any("127.77.4.2"), &ca, "anchor-ams.lab")
        .await
        .unwrap();
    let spec = AnchorSpec::lab("fra", server.local_addr(), "anchor-fra.lab", &ca).unwrap();
    let r = measure(&spec, &NONCE, 0, &options(3)).await;
    assert_certificate_failure(&r, "not valid for name");
}

#[tokio::test]
async fn pinned_spki_accepts_the_pinned_key_only() {
    let ca = LabCa::generate().unwrap();
    let name = "anchor-pin.lab";
    let identity = ca.issue(name).unwrap();
    let pin = identity.spki_sha256();
    let server = AnchorServer::start_with(any("127.77.4.3"), name, identity, LabBehaviour::Honest)
        .await
        .unwrap();
    let mut spec = AnchorSpec::lab(name, server.local_addr(), name, &ca).unwrap();
    spec.trust = Trust::PinnedSpki(pin);
    let r = measure(&spec, &NONCE, 0, &options(2)).await;
    assert_eq!(r.failure, None);
    assert_eq!(r.round_trips_ns.len(), 2);

    let mut wrong = pin;
    wrong[0] ^= 1;
    spec.trust = Trust::PinnedSpki(wrong);
    spec.sni = ServerName::try_from("anchor-pin.lab").unwrap();
    let r = measure(&spec, &NONCE, 0, &options(2)).await;
    assert_certificate_failure(&r, "SPKI pin mismatch");
}

#[tokio::test]
async fn oversized_response_is_recorded_not_sampled() {
    let ca = LabCa::generate().unwrap();
    let name = "anchor-big.lab";
    let server = AnchorServer::start_with(
        any("127.77.5.1"),
        name,
        ca.issue(name).unwrap(),
        LabBehaviour::Oversized { bytes: 100_000 },
    )
    .await
    .unwrap();
    let spec = AnchorSpec::lab(name, server.local_addr(), name, &ca).unwrap();
    let r = measure(&spec, &NONCE, 0, &options(3)).await;
    assert_eq!(
        r.failure,
        Some(AnchorFailure::Oversized {
            phase: "response".into(),
            limit: 16 * 1024
        })
    );
    assert!(r.round_trips_ns.is_empty());
    assert_eq!(r.good_min_rtt_ns(), None);
}

#[tokio::test]
async fn oversized_handshake_is_recorded() {
    let ca = LabCa::generate().unwrap();
    let (_server, spec) = honest(&ca, "127.77.5.2", "anchor-hs.lab").await;
    let opts = MeasureOptions {
        max_handshake_bytes: 64,
        ..options(3)
    };
    let r = measure(&spec, &NONCE, 0, &opts).await;
    assert_eq!(
        r.failure,
        Some(AnchorFailure::Oversized {
            phase: "handshake".into(),
            limit: 64
        })
    );
    assert!(r.round_trips_ns.is_empty());
}
