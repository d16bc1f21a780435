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
