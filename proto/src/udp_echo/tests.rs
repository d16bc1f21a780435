use proptest::prelude::*;

use super::*;

fn keys(seed: u8) -> EchoKeys {
    let mut secret = [0u8; EXPORTER_LEN];
    for (i, b) in secret.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    EchoKeys::from_exporter(&secret)
}

const SESSION: u64 = 0x0123_4567_89ab_cdef;

proptest! {
    #[test]
    fn challenge_round_trips(session: u64, counter: u64, nonce: [u8; 32]) {
        let c = UdpChallenge { session, counter, nonce };
        prop_assert_eq!(UdpChallenge::decode(&c.encode(&keys(1)), &keys(1)), Ok(c));
    }

    #[test]
    fn answer_round_trips(session: u64, counter: u64, inside_ns: u64, arrival: u64, nonce: [u8; 32]) {
        let a = UdpAnswer { session, counter, inside_ns, arrival };
        let bytes = a.encode(&keys(1), &nonce);
        prop_assert_eq!(UdpAnswer::decode(&bytes, &keys(1), |_| Some(nonce)), Ok(a));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes: Vec<u8>) {
        let _ = UdpChallenge::decode(&bytes, &keys(1));
        let _ = UdpAnswer::decode(&bytes, &keys(1), |_| Some([0; 32]));
        let _ = challenge_session(&bytes);
        let _ = answer_session(&bytes);
        let mut s = ServerSession::new(SESSION, keys(1));
        let _ = s.on_challenge(0, 0, &bytes);
    }
}

#[test]
fn every_tampered_byte_is_refused_by_name() {
    let c = UdpChallenge {
        session: SESSION,
        counter: 7,
        nonce: [9; 32],
    }
    .encode(&keys(1));
    for i in 0..c.len() {
        let mut bad = c;
        bad[i] ^= 0x01;
        let mut s = ServerSession::new(SESSION, keys(1));
        let got = s.on_challenge(0, 0, &bad);
        let expected = match i {
            0 => UdpEchoError::Decode(DecodeError::WrongVersion {
                found: VERSION ^ 1,
                supported: VERSION,
            }),
            1 => UdpEchoError::Decode(DecodeError::UnknownType {
                found: TYPE_CHALLENGE ^ 1,
            }),
            // The MAC is checked before the session is compared: a flipped id is a bad MAC
            // under the id it names.
            2..=9 => UdpEchoError::BadMac {
                session: u64::from_be_bytes(bad[2..10].try_into().unwrap()),
            },
            _ => UdpEchoError::BadMac { session: SESSION },
        };
        assert_eq!(got, Err(expected), "byte {i}");
    }
    // The same for answers, on the prober's side: nothing tampered counts.
    let nonce = [5; 32];
    let a = UdpAnswer {
        session: SESSION,
        counter: 0,
        inside_ns: 10,
        arrival: 0,
    }
    .encode(&keys(1), &nonce);
    for i in 0..a.len() {
        let mut bad = a;
        bad[i] ^= 0x01;
        let mut p = ClientSession::new(SESSION, keys(1), 1_000);
        let _ = p.issue(0, nonce);
        let got = p.on_answer(5, &bad);
        match i {
            0 => assert!(matches!(
                got,
                Err(UdpEchoError::Decode(DecodeError::WrongVersion { .. }))
            )),
            1 => assert!(matches!(
                got,
                Err(UdpEchoError::Decode(DecodeError::UnknownType { .. }))
            )),
            // A flipped counter names a challenge never sent: its nonce is unknown.
            10..=17 => assert!(
                matches!(got, Err(UdpEchoError::NotPending { .. })),
                "byte {i}: {got:?}"
            ),
            _ => assert!(
                matches!(got, Err(UdpEchoError::BadMac { .. })),
                "byte {i}: {got:?}"
            ),
        }
        assert_eq!(p.tracker().counters().answered, 0, "byte {i}");
        assert_eq!(p.tracker().counters().violations, 0, "byte {i}");
    }
}

#[test]
fn a_session_answers_once_and_the_prober_gets_a_sample() {
    let mut p = ClientSession::new(SESSION, keys(1), 1_000);
    let mut s = ServerSession::new(SESSION, keys(1));
    let c = p.issue(100, [3; 32]);
    let a = s.on_challenge(120, 125, &c).unwrap();
    assert!(a.len() < c.len(), "no amplification");
    let AnswerOutcome::Sample(sample) = p.on_answer(160, &a).unwrap() else {
        panic!("no sample")
    };
    assert_eq!(
        (sample.seq, sample.rtt_ns, sample.inside_ns, sample.nonce),
        (0, 60, 5, [3; 32])
    );
    // The replayed challenge is refused by name; a replayed answer counts for nothing.
    assert_eq!(
        s.on_challenge(130, 130, &c),
        Err(UdpEchoError::Replayed {
            session: SESSION,
            counter: 0
        })
    );
    assert_eq!(
        p.on_answer(170, &a),
        Err(UdpEchoError::NotPending { counter: 0 })
    );
    assert_eq!(p.tracker().counters().answered, 1);
}

#[test]
fn a_counter_behind_the_window_is_too_old() {
    let mut p = ClientSession::new(SESSION, keys(1), 1_000);
    let mut s = ServerSession::new(SESSION, keys(1));
    let first = p.issue(0, [0; 32]);
    let mut last = first;
    for _ in 0..300 {
        last = p.issue(0, [1; 32]);
    }
    s.on_challenge(0, 0, &last).unwrap();
    assert_eq!(
        s.on_challenge(0, 0, &first),
        Err(UdpEchoError::TooOld {
            session: SESSION,
            counter: 0
        })
    );
}

#[test]
fn the_wrong_key_is_a_bad_mac_both_ways() {
    let mut p = ClientSession::new(SESSION, keys(1), 1_000);
    let c = p.issue(0, [3; 32]);
    let mut other = ServerSession::new(SESSION, keys(2));
    assert_eq!(
        other.on_challenge(0, 0, &c),
        Err(UdpEchoError::BadMac { session: SESSION })
    );
    // An answer made with another session's keys (a relay answering from elsewhere).
    let forged = UdpAnswer {
        session: SESSION,
        counter: 0,
        inside_ns: 0,
        arrival: 0,
    }
    .encode(&keys(2), &[3; 32]);
    assert_eq!(
        p.on_answer(1, &forged),
        Err(UdpEchoError::BadMac { session: SESSION })
    );
    // Keys are per direction: a challenge's MAC key does not make answers.
    let mut swapped = [0u8; EXPORTER_LEN];
    for (i, b) in swapped.iter_mut().enumerate() {
        *b = 31u8.wrapping_add(((i + 32) % 64) as u8);
    }
    let reflected = UdpAnswer {
        session: SESSION,
        counter: 0,
        inside_ns: 0,
        arrival: 0,
    }
    .encode(&EchoKeys::from_exporter(&swapped), &[3; 32]);
    assert_eq!(
        p.on_answer(1, &reflected),
        Err(UdpEchoError::BadMac { session: SESSION })
    );
    assert_eq!(p.tracker().counters().answered, 0);
}

#[test]
fn an_answer_of_another_session_is_refused() {
    // Two sessions with the same keys (cannot happen: keys are exported per session id), so
    // the id check is what refuses it.
    let mut p = ClientSession::new(SESSION, keys(1), 1_000);
    let _ = p.issue(0, [3; 32]);
    let other = UdpAnswer {
        session: SESSION + 1,
        counter: 0,
        inside_ns: 0,
        arrival: 0,
    }
    .encode(&keys(1), &[3; 32]);
    assert_eq!(
        p.on_answer(1, &other),
        Err(UdpEchoError::WrongSession {
            expected: SESSION,
            found: SESSION + 1
        })
    );
}

#[test]
fn a_wrong_nonce_fails_the_answer_mac() {
    // The answer commits to the challenge's nonce: one made for another nonce (answered
    // before the challenge arrived) does not verify.
    let mut p = ClientSession::new(SESSION, keys(1), 1_000);
    let _ = p.issue(0, [3; 32]);
    let guessed = UdpAnswer {
        session: SESSION,
        counter: 0,
        inside_ns: 0,
        arrival: 0,
    }
    .encode(&keys(1), &[4; 32]);
    assert_eq!(
        p.on_answer(1, &guessed),
        Err(UdpEchoError::BadMac { session: SESSION })
    );
}

#[test]
fn wrong_version_truncated_and_oversized_are_named() {
    let c = UdpChallenge {
        session: SESSION,
        counter: 1,
        nonce: [0; 32],
    }
    .encode(&keys(1));
    let mut v2 = c;
    v2[0] = 2;
    assert_eq!(
        challenge_session(&v2),
        Err(DecodeError::WrongVersion {
            found: 2,
            supported: 1
        })
    );
    for n in 0..c.len() {
        let e = challenge_session(&c[..n]).unwrap_err();
        assert!(
            matches!(e, DecodeError::Truncated { .. }),
            "prefix {n}: {e:?}"
        );
    }
    let mut big = c.to_vec();
    big.extend_from_slice(&[0; 100]);
    assert_eq!(
        challenge_session(&big),
        Err(DecodeError::TrailingData { extra: 100 })
    );
    let mut s = ServerSession::new(SESSION, keys(1));
    assert_eq!(
        s.on_challenge(0, 0, &big),
        Err(UdpEchoError::Decode(DecodeError::TrailingData {
            extra: 100
        }))
    );
    // An answer is not a challenge, nor the reverse.
    let a = UdpAnswer {
        session: SESSION,
        counter: 1,
        inside_ns: 0,
        arrival: 0,
    }
    .encode(&keys(1), &[0; 32]);
    assert_eq!(
        challenge_session(&a),
        Err(DecodeError::UnknownType { found: TYPE_ANSWER })
    );
    assert_eq!(
        answer_session(&c),
        Err(DecodeError::UnknownType {
            found: TYPE_CHALLENGE
        })
    );
    assert_eq!(answer_session(&a), Ok(SESSION));
}

#[test]
fn a_lost_challenge_answered_late_is_late_not_a_violation() {
    let mut p = ClientSession::new(SESSION, keys(1), 100);
    let mut s = ServerSession::new(SESSION, keys(1));
    let c = p.issue(0, [3; 32]);
    assert_eq!(p.tracker_mut().expire(200), 1);
    let a = s.on_challenge(0, 0, &c).unwrap();
    assert_eq!(
        p.on_answer(250, &a),
        Ok(AnswerOutcome::Late {
            seq: 0,
            rtt_ns: 250
        })
    );
    let c = p.tracker().counters();
    assert_eq!((c.lost, c.late, c.violations), (1, 1, 0));
}
