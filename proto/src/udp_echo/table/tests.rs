use std::net::Ipv4Addr;

use super::*;
use crate::udp_echo::{ClientSession, EXPORTER_LEN};

const SEC: u64 = 1_000_000_000;

fn limits() -> TableLimits {
    TableLimits {
        max_sessions: 16,
        max_sessions_per_ip: 4,
        lifetime_ns: 3600 * SEC,
        per_session_per_sec: None,
        per_ip_per_sec: None,
        unproven_per_sec: None,
    }
}

fn keys(id: u64) -> EchoKeys {
    let mut secret = [0u8; EXPORTER_LEN];
    secret[..8].copy_from_slice(&id.to_be_bytes());
    EchoKeys::from_exporter(&secret)
}

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

/// Registers `id` for `ip` at `now` and returns the prober's side of it.
fn grant(t: &mut SessionTable, now: u64, id: u64, ip: IpAddr) -> ClientSession {
    t.register(now, id, ip, keys(id)).unwrap();
    ClientSession::new(id, keys(id), SEC)
}

#[test]
fn stays_bounded_under_ten_times_its_cap_of_registrations() {
    let mut t = SessionTable::new(limits());
    for i in 0..160u64 {
        // 40 IPs, 4 registrations each: the total cap binds.
        t.register(i, 1000 + i, ip((i % 40) as u32), keys(i))
            .unwrap();
        assert!(t.len() <= 16, "{} sessions after {i}", t.len());
        assert!(t.order.len() <= 2 * 16 + 64 + 1, "queue {}", t.order.len());
        assert!(t.ips.len() <= 16);
    }
    assert_eq!(t.len(), 16);
    assert_eq!(t.counts().evicted, 160 - 16);
    // One IP alone: its own cap binds, and it evicts only its own sessions.
    let mut t = SessionTable::new(limits());
    let _keep = grant(&mut t, 0, 1, ip(1));
    for i in 0..40u64 {
        t.register(i + 1, 100 + i, ip(2), keys(i)).unwrap();
        assert!(t.ips[&ip(2)].live <= 4);
        assert!(t.ips[&ip(2)].order.len() <= 2 * 4 + 16 + 1);
    }
    assert!(t.contains(1), "another IP's session was evicted");
    assert_eq!(t.len(), 5);
}

#[test]
fn the_idlest_of_the_oldest_goes_first() {
    let mut t = SessionTable::new(TableLimits {
        max_sessions: 3,
        max_sessions_per_ip: 3,
        ..limits()
    });
    let mut a = grant(&mut t, 0, 1, ip(1));
    let _b = grant(&mut t, 1, 2, ip(1));
    let _c = grant(&mut t, 2, 3, ip(1));
    // Session 1, the oldest, is in use; 2 is not.
    let ch = a.issue(10, [0; 32]);
    t.on_datagram(10, 10, ip(1), &ch).unwrap();
    grant(&mut t, 20, 4, ip(1));
    assert!(t.contains(1) && !t.contains(2) && t.contains(3) && t.contains(4));
}

#[test]
fn unknown_sessions_get_no_answer_and_take_no_room() {
    let mut t = SessionTable::new(limits());
    let mut p = grant(&mut t, 0, 1, ip(1));
    let mut stranger = ClientSession::new(99, keys(99), SEC);
    for i in 0..1000 {
        let ch = stranger.issue(i, [1; 32]);
        assert_eq!(
            t.on_datagram(i, i, ip(1), &ch),
            Err(UdpEchoError::UnknownSession { session: 99 })
        );
    }
    assert_eq!((t.len(), t.order.len(), t.ips.len()), (1, 1, 1));
    assert_eq!(t.counts().unknown_session, 1000);
    // The registered one still answers.
    let ch = p.issue(5, [2; 32]);
    assert!(t.on_datagram(5, 6, ip(1), &ch).is_ok());
    assert_eq!(t.counts().answered, 1);
}

#[test]
fn another_ip_a_bad_mac_and_a_replay_are_dropped_and_counted() {
    let mut t = SessionTable::new(limits());
    let mut p = grant(&mut t, 0, 1, ip(1));
    let ch = p.issue(1, [2; 32]);
    assert_eq!(
        t.on_datagram(1, 1, ip(2), &ch),
        Err(UdpEchoError::WrongPeer {
            session: 1,
            expected: ip(1),
            found: ip(2)
        })
    );
    // Another session's keys (session 1's id): a relayed challenge.
    let mut forger = ClientSession::new(1, keys(7), SEC);
    let forged = forger.issue(1, [2; 32]);
    assert_eq!(
        t.on_datagram(1, 1, ip(1), &forged),
        Err(UdpEchoError::BadMac { session: 1 })
    );
    assert!(t.on_datagram(1, 1, ip(1), &ch).is_ok());
    assert_eq!(
        t.on_datagram(2, 2, ip(1), &ch),
        Err(UdpEchoError::Replayed {
            session: 1,
            counter: 0
        })
    );
    assert_eq!(t.on_datagram(2, 2, ip(1), &[1, 0x11, 0]).ok(), None);
    let c = t.counts();
    assert_eq!(
        (c.wrong_peer, c.bad_mac, c.answered, c.replayed, c.malformed),
        (1, 1, 1, 1, 1)
    );
}

#[test]
fn sessions_expire_after_their_lifetime() {
    let mut t = SessionTable::new(TableLimits {
        lifetime_ns: 10 * SEC,
        ..limits()
    });
    let mut p = grant(&mut t, 0, 1, ip(1));
    let ch = p.issue(0, [0; 32]);
    assert_eq!(
        t.on_datagram(10 * SEC, 10 * SEC, ip(1), &ch),
        Err(UdpEchoError::UnknownSession { session: 1 })
    );
    assert!(t.is_empty() && t.ips.is_empty());
    grant(&mut t, 11 * SEC, 2, ip(1));
    grant(&mut t, 30 * SEC, 3, ip(1));
    assert!(!t.contains(2) && t.contains(3));
    assert_eq!(t.counts().expired, 2);
    assert_eq!(
        t.register(30 * SEC, 3, ip(1), keys(3)),
        Err(RegisterError::IdTaken(3))
    );
}

#[test]
fn rates_per_session_and_per_ip_drop_authenticated_floods() {
    let ok = |t: &mut SessionTable, p: &mut ClientSession, now| {
        let ch = p.issue(now, [0; 32]);
        t.on_datagram(now, now, ip(1), &ch).is_ok()
    };
    // Per session: a burst of one (a tenth of a second's worth, at least one) each.
    let mut t = SessionTable::new(TableLimits {
        per_session_per_sec: Some(10.0),
        ..limits()
    });
    let mut a = grant(&mut t, 0, 1, ip(1));
    let mut b = grant(&mut t, 0, 2, ip(1));
    assert!(ok(&mut t, &mut a, 0));
    assert!(!ok(&mut t, &mut a, 0));
    assert!(ok(&mut t, &mut b, 0));
    assert!(ok(&mut t, &mut a, SEC));
    assert_eq!(t.counts().rate_limited, 1);
    // Per IP: the IP's sessions share one allowance.
    let mut t = SessionTable::new(TableLimits {
        per_ip_per_sec: Some(10.0),
        ..limits()
    });
    let mut a = grant(&mut t, 0, 1, ip(1));
    let mut b = grant(&mut t, 0, 2, ip(1));
    assert!(ok(&mut t, &mut a, 0));
    assert!(!ok(&mut t, &mut b, 0));
    assert!(ok(&mut t, &mut b, SEC));
    assert_eq!(t.counts().rate_limited, 1);
}

/// REVIEW7 U1: the default limits (4096 sessions, 64 per exact IP). An honest prober's session
/// is registered first and challenged every second; an attacker registers sessions from 65
/// addresses (one IPv6 /64 is one peer for admission, 50 requests/s, but 65 "IPs" here; or 65
/// IPv4s): each registration at the total cap evicts the idlest of the eight oldest, and the
/// honest session (older, last used up to a second ago) goes first. Grants are open to any
/// QUIC client, also under `[access] evidence = "pinned"`.
#[test]
fn review7_strangers_registering_do_not_evict_an_honest_session_in_use() {
    let mut t = SessionTable::new(TableLimits {
        max_sessions: 4096,
        max_sessions_per_ip: 64,
        ..limits()
    });
    // Under `pinned` the honest prober's connection proved its key (strangers' grants are
    // refused there; under `any` everyone is a stranger).
    t.register_for(0, 1, ip(1), keys(1), Grantee::Proved([1; 32]))
        .unwrap();
    let mut honest = ClientSession::new(1, keys(1), SEC);
    let ch = honest.issue(SEC / 2, [0; 32]);
    t.on_datagram(SEC / 2, SEC / 2, ip(1), &ch).unwrap();
    // 4160 registrations over 1.3 s (65 addresses x 50/s would take 1.3 s too).
    for i in 0..4160u64 {
        let now = SEC + i * 300_000;
        t.register(now, 10_000 + i, ip(100 + (i % 65) as u32), keys(i))
            .unwrap();
    }
    assert!(
        t.contains(1),
        "the honest session challenged 0.8 s ago was evicted by strangers' grants"
    );
}

/// REVIEW7 U2: the answers of UDP echo sessions have no total budget (the QUIC path's
/// `echo_per_sec`, 10 000/s for unproven connections, REVIEW5): one address with 64 sessions
/// is answered its whole per-IP rate, and 65 addresses (an IPv6 /64) 65 times that.
#[test]
fn review7_udp_answers_have_a_total_budget() {
    let mut t = SessionTable::new(TableLimits {
        max_sessions: 4096,
        max_sessions_per_ip: 64,
        per_session_per_sec: Some(1_000.0),
        per_ip_per_sec: Some(20_000.0),
        // The responder's default, admission's `echo_per_sec`.
        unproven_per_sec: Some(10_000.0),
        ..limits()
    });
    let mut clients: Vec<_> = (0..64u64 * 4)
        .map(|i| grant(&mut t, 0, 1 + i, ip((i / 64) as u32)))
        .collect();
    let mut answered = 0u64;
    // A quarter of a second, each session at 1 000/s.
    for k in 0..250u64 {
        let now = SEC + k * 1_000_000;
        for c in clients.iter_mut() {
            let from = ip(((c.session() - 1) / 64) as u32);
            let ch = c.issue(now, [0; 32]);
            answered += u64::from(t.on_datagram(now, now, from, &ch).is_ok());
        }
    }
    // The QUIC path's total for unproven connections: 10 000/s, 2 500 in this quarter second
    // (plus a burst).
    assert!(
        answered <= 4_000,
        "4 addresses were answered {answered} UDP echoes in a quarter of a second"
    );
}

/// REVIEW7 U3: a session's own prober sends counter u64::MAX (its MAC is valid): the replay
/// window's `seq + 1` overflows. Debug builds panic in the responder's one UDP serve task
/// (every session's echo stops); release builds wrap `top` to 0, after which every earlier
/// counter is "new" again (replays answered).
#[test]
fn review7_counter_u64_max_neither_panics_nor_reopens_the_window() {
    let k = keys(5);
    let mut s = ServerSession::new(5, k.clone());
    let c = |counter| {
        crate::udp_echo::UdpChallenge {
            session: 5,
            counter,
            nonce: [1; 32],
        }
        .encode(&k)
    };
    assert!(s.on_challenge(0, 0, &c(7)).is_ok());
    let top = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = s.on_challenge(0, 0, &c(u64::MAX));
    }));
    assert!(top.is_ok(), "counter u64::MAX panicked");
    assert!(
        s.on_challenge(0, 0, &c(7)).is_err(),
        "counter 7 answered twice"
    );
}

fn v6(last: u16) -> IpAddr {
    IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last])
}

/// REVIEW7 U1: unproven grants evict only unproven sessions and are refused when every session
/// is proved; a proved grant makes room among unproven sessions first.
#[test]
fn unproven_grants_never_evict_proved_sessions() {
    let mut t = SessionTable::new(limits());
    for i in 0..16u64 {
        t.register_for(
            i,
            1 + i,
            ip(i as u32),
            keys(i),
            Grantee::Proved([i as u8; 32]),
        )
        .unwrap();
    }
    assert_eq!(
        t.register(100, 99, ip(99), keys(99)),
        Err(RegisterError::Full)
    );
    assert_eq!(t.len(), 16);
    // A proved grant may still take the idlest proved session's place.
    t.register_for(101, 98, ip(98), keys(98), Grantee::Proved([98; 32]))
        .unwrap();
    assert_eq!((t.len(), t.counts().evicted), (16, 1));
    // With an unproven session held, a proved grant evicts it, not a proved one.
    let mut t = SessionTable::new(limits());
    t.register(0, 1, ip(1), keys(1)).unwrap();
    for i in 1..16u64 {
        t.register_for(
            i,
            1 + i,
            ip(i as u32 + 1),
            keys(i),
            Grantee::Proved([1; 32]),
        )
        .unwrap();
    }
    t.register_for(20, 50, ip(50), keys(50), Grantee::Proved([2; 32]))
        .unwrap();
    assert!(!t.contains(1));
    assert!((2..=16).all(|id| t.contains(id)));
}

/// REVIEW7 U1: the per-IP cap counts an IPv6 /64 as one peer, as admission does.
#[test]
fn the_session_cap_per_ip_counts_a_slash_64_as_one() {
    let mut t = SessionTable::new(limits());
    for i in 0..10u16 {
        t.register(u64::from(i), 1 + u64::from(i), v6(i), keys(i.into()))
            .unwrap();
    }
    assert_eq!(t.len(), 4);
    assert_eq!(t.ips.len(), 1);
}

/// REVIEW7 U2: a proved session is answered from its key's rate: unproven neighbours of the
/// same address spending theirs (and the unproven total) leave it answered.
#[test]
fn a_proved_session_is_not_starved_by_its_neighbours() {
    let mut t = SessionTable::new(TableLimits {
        per_ip_per_sec: Some(200.0),
        unproven_per_sec: Some(200.0),
        ..limits()
    });
    t.register_for(0, 1, ip(1), keys(1), Grantee::Proved([1; 32]))
        .unwrap();
    let mut honest = ClientSession::new(1, keys(1), SEC);
    let mut flood = grant(&mut t, 0, 2, ip(1));
    let mut answered = (0, 0);
    // A second: the flood asks 10 000/s, the proved session 100/s.
    for k in 0..1000u64 {
        let now = SEC + k * 1_000_000;
        for _ in 0..10 {
            let ch = flood.issue(now, [0; 32]);
            answered.1 += u64::from(t.on_datagram(now, now, ip(1), &ch).is_ok());
        }
        if k % 10 == 0 {
            let ch = honest.issue(now, [0; 32]);
            answered.0 += u64::from(t.on_datagram(now, now, ip(1), &ch).is_ok());
        }
    }
    assert_eq!(answered.0, 100, "the proved session was starved");
    // A second at 200/s plus a burst of 20.
    assert!(answered.1 <= 230, "the flood was answered {}", answered.1);
}
