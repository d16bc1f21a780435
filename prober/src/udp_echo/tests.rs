use std::net::UdpSocket as StdSocket;

use locus_proto::udp_echo::{ServerSession, UdpAnswer, UdpChallenge};

use super::*;

fn keys(seed: u8) -> EchoKeys {
    EchoKeys::from_exporter(&[seed; EXPORTER_LEN])
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A fake responder: one blocking socket answering `rounds` challenges with `answer`.
fn fake_responder(
    answer: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
    challenges: usize,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let s = StdSocket::bind(loopback()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = s.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        for _ in 0..challenges {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                return;
            };
            for a in answer(&buf[..n]) {
                s.send_to(&a, from).unwrap();
            }
        }
    });
    (addr, t)
}

fn cfg(count: u64) -> RoundConfig {
    RoundConfig {
        rate_hz: 0.0,
        count,
        window: 1,
        timeout: Duration::from_millis(300),
        keep_samples: true,
        spin: Duration::ZERO,
    }
}

#[tokio::test]
async fn genuine_answers_count_and_answers_under_another_sessions_key_do_not() {
    const SESSION: u64 = 42;
    let server = Mutex::new(ServerSession::new(SESSION, keys(1)));
    let (addr, fake) = fake_responder(
        move |c| {
            let mut s = server.lock().unwrap();
            let genuine = s.on_challenge(0, 10, c).unwrap().to_vec();
            // A relay's answer: right session id and counter, MAC'd with another session's key.
            let parsed = UdpChallenge::decode(c, &keys(1)).unwrap();
            let relayed = UdpAnswer {
                session: SESSION,
                counter: parsed.counter,
                inside_ns: 0,
                arrival: 0,
            }
            .encode(&keys(2), &parsed.nonce)
            .to_vec();
            // The relayed one first: if it counted, the genuine one would be a duplicate.
            vec![relayed, genuine]
        },
        3,
    );
    let socket = UdpEchoSocket::bind(loopback()).unwrap();
    let grant = UdpEchoGrant::new(SESSION, addr, Duration::from_secs(60), keys(1));
    let target = (socket.open(grant, vec![1, 2, 3], Duration::from_millis(300))).unwrap();
    let r = run_udp_round_from(&target, &cfg(3), Instant::now()).await;
    fake.join().unwrap();
    assert_eq!((r.sent, r.answered, r.lost, r.violations), (3, 3, 0, 0));
    assert_eq!(r.samples.len(), 3);
    assert!(r.samples.iter().all(|s| s.inside_ns == 10));
    assert_eq!(target.rejected(), 3);
    assert_eq!(socket.rejected(), 3);
}

#[tokio::test]
async fn strangers_and_unknown_sessions_are_dropped_and_unanswered_challenges_lost() {
    let (addr, fake) = fake_responder(|_| Vec::new(), 2);
    let socket = UdpEchoSocket::bind(loopback()).unwrap();
    let grant = UdpEchoGrant::new(7, addr, Duration::from_secs(60), keys(1));
    let target = (socket.open(grant, Vec::new(), Duration::from_millis(100))).unwrap();
    // Someone else sends a well-formed answer of another session to the prober's socket.
    let stranger = StdSocket::bind(loopback()).unwrap();
    let bogus = UdpAnswer {
        session: 8,
        counter: 0,
        inside_ns: 0,
        arrival: 0,
    }
    .encode(&keys(1), &[0; 32]);
    stranger
        .send_to(&bogus, socket.local_addr().unwrap())
        .unwrap();
    let r = run_udp_round_from(&target, &cfg(2), Instant::now()).await;
    fake.join().unwrap();
    assert_eq!((r.sent, r.answered, r.lost), (2, 0, 2));
    assert_eq!(socket.rejected(), 1);
    // The session is forgotten with its target.
    drop(target);
    assert!(lock_map(&socket.shared.sessions).is_empty());
}

/// REVIEW7 U4: two responders grant the same session id (a hostile one copying the other's,
/// which every datagram shows): both sessions keep being answered, a second open of one
/// address and id is refused, and dropping one target leaves the other's entry.
#[tokio::test]
async fn one_session_id_granted_by_two_responders_keeps_both_answered() {
    const SESSION: u64 = 42;
    let responder = |seed, challenges| {
        let server = Mutex::new(ServerSession::new(SESSION, keys(seed)));
        fake_responder(
            move |c| {
                vec![server
                    .lock()
                    .unwrap()
                    .on_challenge(0, 10, c)
                    .unwrap()
                    .to_vec()]
            },
            challenges,
        )
    };
    let ((a, fake_a), (b, fake_b)) = (responder(1, 4), responder(2, 2));
    let socket = UdpEchoSocket::bind(loopback()).unwrap();
    let grant = |addr, seed| UdpEchoGrant::new(SESSION, addr, Duration::from_secs(60), keys(seed));
    let ta = socket
        .open(grant(a, 1), Vec::new(), Duration::from_millis(300))
        .unwrap();
    let tb = socket
        .open(grant(b, 2), Vec::new(), Duration::from_millis(300))
        .unwrap();
    assert!(socket
        .open(grant(a, 1), Vec::new(), Duration::from_millis(300))
        .is_err());
    for t in [&ta, &tb] {
        let r = run_udp_round_from(t, &cfg(2), Instant::now()).await;
        assert_eq!((r.sent, r.answered, r.lost), (2, 2, 0));
    }
    drop(tb);
    let r = run_udp_round_from(&ta, &cfg(2), Instant::now()).await;
    assert_eq!((r.sent, r.answered, r.lost), (2, 2, 0));
    fake_a.join().unwrap();
    fake_b.join().unwrap();
    assert_eq!(socket.rejected(), 0);
}
