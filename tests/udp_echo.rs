//! The UDP echo end to end on loopback: a session granted over QUIC answers after its
//! connection is closed; datagrams of unknown sessions or from another IP get no answer; a
//! responder without `[echo] udp_listen` refuses the request by name.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use locus_prober::requests::RequestError;
use locus_prober::udp_echo::{request_udp_echo, run_udp_round_from, UdpEchoSocket};
use locus_prober::{connect, RoundConfig, SpkiPolicy};
use locus_proto::messages::codes;
use locus_proto::udp_echo::{ClientSession, EchoKeys};
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;
use locus_responder::udp_echo::UdpEchoConfig;

fn at(ip: [u8; 4]) -> SocketAddr {
    SocketAddr::from((ip, 0))
}

fn server(udp: bool) -> Server {
    let config = ServerConfig {
        udp_echo: udp.then(|| UdpEchoConfig {
            listen: at([127, 0, 0, 1]),
            lifetime: Duration::from_secs(60),
        }),
        spin_after_answer: Duration::ZERO,
        ..ServerConfig::new(at([127, 0, 0, 1]))
    };
    Server::start(
        config,
        SessionKey::generate().unwrap(),
        EvidenceSource::default(),
    )
    .unwrap()
}

/// Whether `socket` gets any datagram within 300 ms.
fn answered(socket: &UdpSocket) -> bool {
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket.recv_from(&mut [0u8; 256]).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_answers_after_its_connection_closed_and_strangers_get_nothing() {
    let s = server(true);
    let udp_addr = s.udp_echo_addr().unwrap();
    let spki = s.session_key().spki_der().to_vec();
    let target = connect(
        s.local_addr().unwrap(),
        at([127, 0, 0, 1]),
        SpkiPolicy::Pinned(spki.clone()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let grant = request_udp_echo(&target).await.unwrap();
    assert_eq!(grant.addr, udp_addr);
    assert_eq!(grant.lifetime, Duration::from_secs(60));
    let session = grant.session;
    target.conn.close(0u32.into(), b"done");
    let socket = UdpEchoSocket::bind(at([127, 0, 0, 1])).unwrap();
    let t = (socket.open(grant, target.spki.clone(), Duration::from_secs(1))).unwrap();
    let cfg = RoundConfig {
        rate_hz: 0.0,
        count: 20,
        window: 4,
        ..RoundConfig::default()
    };
    let r = run_udp_round_from(&t, &cfg, Instant::now()).await;
    assert_eq!((r.sent, r.answered, r.lost, r.violations), (20, 20, 0, 0));
    assert_eq!(t.spki, spki);

    // An unknown session, and this session's id with the wrong keys.
    let stranger = UdpSocket::bind(at([127, 0, 0, 1])).unwrap();
    let mut unknown = ClientSession::new(session ^ 1, EchoKeys::from_exporter(&[1; 64]), 1);
    stranger
        .send_to(&unknown.issue(0, [0; 32]), udp_addr)
        .unwrap();
    assert!(!answered(&stranger));
    let mut forged = ClientSession::new(session, EchoKeys::from_exporter(&[1; 64]), 1);
    stranger
        .send_to(&forged.issue(0, [0; 32]), udp_addr)
        .unwrap();
    assert!(!answered(&stranger));
    // The granted IP is 127.0.0.1: from 127.0.0.2 even a datagram that would verify is
    // dropped before its MAC is checked.
    let elsewhere = UdpSocket::bind(at([127, 0, 0, 2])).unwrap();
    let mut other_ip = ClientSession::new(session, EchoKeys::from_exporter(&[1; 64]), 1);
    elsewhere
        .send_to(&other_ip.issue(0, [0; 32]), udp_addr)
        .unwrap();
    assert!(!answered(&elsewhere));
    let c = s.udp_echo_counts().unwrap();
    assert_eq!(
        (c.answered, c.unknown_session, c.bad_mac, c.wrong_peer),
        (20, 1, 1, 1),
        "{c:?}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_without_udp_echo_refuses_the_request() {
    let s = server(false);
    assert_eq!(s.udp_echo_addr(), None);
    let target = connect(
        s.local_addr().unwrap(),
        at([127, 0, 0, 1]),
        SpkiPolicy::TrustOnFirstUse,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    match request_udp_echo(&target).await {
        Err(RequestError::Refused { code, message }) => {
            assert_eq!(code, codes::UNAVAILABLE);
            assert!(message.contains("udp_listen"), "{message}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|g| g.session)),
    }
    s.shutdown().await;
}
