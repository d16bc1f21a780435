//! The prober's per-target challenge bookkeeping: issue, match answers, expire, classify.
//!
//! Nothing is dropped silently: every answer is a [`Sample`], a late answer, or a
//! [`Violation`]; every unanswered challenge ends as lost.

use std::collections::{HashMap, VecDeque};

use thiserror::Error;

use crate::codec::DecodeError;
use crate::echo::{EchoAnswer, EchoChallenge};
use crate::Nonce;

/// How many expired sequence numbers are remembered to recognise late answers.
const EXPIRED_MEMORY: usize = 65_536;

/// One matched round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub seq: u64,
    pub nonce: Nonce,
    pub sent_ns: u64,
    pub rtt_ns: u64,
    /// The responder's own processing time, as it reported it.
    pub inside_ns: u64,
    /// Arrival index at the responder (for the signed transcript).
    pub arrival: u64,
    /// An answer to an older challenge arrived after one to a newer challenge.
    pub out_of_order: bool,
}

/// An answer that breaks the protocol: a sign of a buggy or malicious responder.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Violation {
    #[error("malformed answer: {0}")]
    Malformed(#[from] DecodeError),
    #[error("answer to challenge {seq}, which was never issued")]
    NeverIssued { seq: u64 },
    #[error("answer to challenge {seq} carries a nonce that was not issued with it")]
    NonceMismatch { seq: u64 },
    #[error("challenge {seq} was already answered")]
    Duplicate { seq: u64 },
}

/// What became of one answer datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerOutcome {
    Sample(Sample),
    /// Answer to a challenge already counted as lost.
    Late {
        seq: u64,
        rtt_ns: u64,
    },
    Violation(Violation),
}

/// Running counters for one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    pub late: u64,
    pub out_of_order: u64,
    pub violations: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    nonce: Nonce,
    sent_ns: u64,
}

/// Challenge bookkeeping for one target connection.
#[derive(Debug)]
pub struct ChallengeTracker {
    next_seq: u64,
    timeout_ns: u64,
    pending: HashMap<u64, Pending>,
    /// Issue order of pending challenges, for expiry without scanning the map.
    order: VecDeque<u64>,
    /// Lost challenges: send time and nonce (a UDP echo answer's MAC covers the nonce).
    expired: HashMap<u64, (u64, Nonce)>,
    expired_order: VecDeque<u64>,
    highest_answered: Option<u64>,
    counters: Counters,
}

impl ChallengeTracker {
    pub fn new(timeout_ns: u64) -> Self {
        Self {
            next_seq: 0,
            timeout_ns,
            pending: HashMap::new(),
            order: VecDeque::new(),
            expired: HashMap::new(),
            expired_order: VecDeque::new(),
            highest_answered: None,
            counters: Counters::default(),
        }
    }

    /// Issues the next challenge with the caller's fresh `nonce`, sent at `now_ns`.
    pub fn issue(&mut self, now_ns: u64, nonce: Nonce) -> [u8; EchoChallenge::LEN] {
        let seq = self.issue_seq(now_ns, nonce);
        EchoChallenge { seq, nonce }.encode()
    }

    /// Records the next challenge as sent at `now_ns` and returns its sequence number, for a
    /// driver that encodes it itself (the UDP echo, [`crate::udp_echo`]).
    pub fn issue_seq(&mut self, now_ns: u64, nonce: Nonce) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(
            seq,
            Pending {
                nonce,
                sent_ns: now_ns,
            },
        );
        self.order.push_back(seq);
        self.counters.sent += 1;
        seq
    }

    /// The nonce challenge `seq` was issued with, while it is pending or remembered as lost.
    pub fn nonce_of(&self, seq: u64) -> Option<Nonce> {
        self.pending
            .get(&seq)
            .map(|p| p.nonce)
            .or_else(|| self.expired.get(&seq).map(|e| e.1))
    }

    /// Changes the timeout for challenges issued or expired from now on.
    pub fn set_timeout(&mut self, timeout_ns: u64) {
        self.timeout_ns = timeout_ns;
    }

    /// Challenges still waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// When the oldest pending challenge expires (its send time plus the timeout); `None` when
    /// nothing is pending. Lets a driver sleep until then instead of polling.
    pub fn next_expiry_ns(&mut self) -> Option<u64> {
        while let Some(&seq) = self.order.front() {
            match self.pending.get(&seq) {
                Some(p) => return Some(p.sent_ns.saturating_add(self.timeout_ns)),
                None => {
                    self.order.pop_front(); // answered already
                }
            }
        }
        None
    }

    /// Classifies one answer datagram received at `now_ns`.
    pub fn on_answer(&mut self, now_ns: u64, datagram: &[u8]) -> AnswerOutcome {
        let outcome = match EchoAnswer::decode(datagram) {
            Ok(a) => self.classify(now_ns, a),
            Err(e) => AnswerOutcome::Violation(e.into()),
        };
        self.count(outcome)
    }

    /// Classifies one answer decoded (and authenticated) by the driver, received at `now_ns`.
    pub fn on_decoded_answer(&mut self, now_ns: u64, a: EchoAnswer) -> AnswerOutcome {
        let outcome = self.classify(now_ns, a);
        self.count(outcome)
    }

    fn count(&mut self, outcome: AnswerOutcome) -> AnswerOutcome {
        match &outcome {
            AnswerOutcome::Sample(s) => {
                self.counters.answered += 1;
                self.counters.out_of_order += u64::from(s.out_of_order);
            }
            AnswerOutcome::Late { .. } => self.counters.late += 1,
            AnswerOutcome::Violation(_) => self.counters.violations += 1,
        }
        outcome
    }

    fn classify(&mut self, now_ns: u64, a: EchoAnswer) -> AnswerOutcome {
        if a.seq >= self.next_seq {
            return AnswerOutcome::Violation(Violation::NeverIssued { seq: a.seq });
        }
        if let Some(p) = self.pending.get(&a.seq) {
            if p.nonce != a.nonce {
                // Keep it pending: the genuine answer may still come.
                return AnswerOutcome::Violation(Violation::NonceMismatch { seq: a.seq });
            }
            let p = *p;
            self.pending.remove(&a.seq);
            let out_of_order = self.highest_answered.is_some_and(|h| a.seq < h);
            self.highest_answered = Some(self.highest_answered.map_or(a.seq, |h| h.max(a.seq)));
            return AnswerOutcome::Sample(Sample {
                seq: a.seq,
                nonce: a.nonce,
                sent_ns: p.sent_ns,
                rtt_ns: now_ns.saturating_sub(p.sent_ns),
                inside_ns: a.inside_ns,
                arrival: a.arrival,
                out_of_order,
            });
        }
        if let Some((sent_ns, _)) = self.expired.remove(&a.seq) {
            return AnswerOutcome::Late {
                seq: a.seq,
                rtt_ns: now_ns.saturating_sub(sent_ns),
            };
        }
        AnswerOutcome::Violation(Violation::Duplicate { seq: a.seq })
    }

    /// Moves challenges older than the timeout to lost; returns how many were lost now.
    pub fn expire(&mut self, now_ns: u64) -> u64 {
        let mut lost = 0;
        while let Some(&seq) = self.order.front() {
            let Some(p) = self.pending.get(&seq) else {
                self.order.pop_front(); // answered already
                continue;
            };
            if now_ns.saturating_sub(p.sent_ns) < self.timeout_ns {
                break;
            }
            let p = *p;
            self.pending.remove(&seq);
            self.order.pop_front();
            self.remember_expired(seq, p);
            lost += 1;
        }
        self.counters.lost += lost;
        lost
    }

    /// Counts every challenge still pending as lost (end of a round).
    pub fn expire_all(&mut self) -> u64 {
        let pending: Vec<_> = self.pending.drain().collect();
        self.order.clear();
        for (seq, p) in &pending {
            self.remember_expired(*seq, *p);
        }
        self.counters.lost += pending.len() as u64;
        pending.len() as u64
    }

    fn remember_expired(&mut self, seq: u64, p: Pending) {
        if self.expired_order.len() == EXPIRED_MEMORY {
            if let Some(old) = self.expired_order.pop_front() {
                self.expired.remove(&old);
            }
        }
        self.expired.insert(seq, (p.sent_ns, p.nonce));
        self.expired_order.push_back(seq);
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responder::EchoSession;

    #[test]
    fn round_trip_through_a_session() {
        let mut t = ChallengeTracker::new(1_000);
        let mut r = EchoSession::new();
        let c0 = t.issue(10, [1; 32]);
        let c1 = t.issue(20, [2; 32]);
        let a1 = r.on_challenge(25, 26, &c1).unwrap();
        let a0 = r.on_challenge(27, 27, &c0).unwrap();
        let AnswerOutcome::Sample(s1) = t.on_answer(40, &a1) else {
            panic!()
        };
        assert_eq!(
            (s1.seq, s1.rtt_ns, s1.inside_ns, s1.out_of_order),
            (1, 20, 1, false)
        );
        let AnswerOutcome::Sample(s0) = t.on_answer(41, &a0) else {
            panic!()
        };
        assert_eq!((s0.seq, s0.rtt_ns, s0.out_of_order), (0, 31, true));
        assert_eq!(t.counters().answered, 2);
        assert_eq!(t.counters().out_of_order, 1);
        // Replayed answer.
        assert_eq!(
            t.on_answer(50, &a0),
            AnswerOutcome::Violation(Violation::Duplicate { seq: 0 })
        );
        assert_eq!(t.counters().violations, 1);
    }

    #[test]
    fn never_issued_and_wrong_nonce_are_violations() {
        let mut t = ChallengeTracker::new(1_000);
        let _ = t.issue(0, [1; 32]);
        let forged = EchoAnswer {
            seq: 5,
            nonce: [1; 32],
            inside_ns: 0,
            arrival: 0,
        }
        .encode();
        assert_eq!(
            t.on_answer(1, &forged),
            AnswerOutcome::Violation(Violation::NeverIssued { seq: 5 })
        );
        let wrong = EchoAnswer {
            seq: 0,
            nonce: [2; 32],
            inside_ns: 0,
            arrival: 0,
        }
        .encode();
        assert_eq!(
            t.on_answer(1, &wrong),
            AnswerOutcome::Violation(Violation::NonceMismatch { seq: 0 })
        );
        // The genuine answer still counts.
        let right = EchoAnswer {
            seq: 0,
            nonce: [1; 32],
            inside_ns: 0,
            arrival: 0,
        }
        .encode();
        assert!(matches!(t.on_answer(2, &right), AnswerOutcome::Sample(_)));
        assert!(matches!(
            t.on_answer(2, &[9, 9]),
            AnswerOutcome::Violation(Violation::Malformed(_))
        ));
    }

    #[test]
    fn lost_then_late() {
        let mut t = ChallengeTracker::new(100);
        let _ = t.issue(0, [1; 32]);
        let _ = t.issue(50, [2; 32]);
        assert_eq!(t.expire(120), 1);
        assert_eq!(t.in_flight(), 1);
        let late = EchoAnswer {
            seq: 0,
            nonce: [1; 32],
            inside_ns: 0,
            arrival: 0,
        }
        .encode();
        assert_eq!(
            t.on_answer(130, &late),
            AnswerOutcome::Late {
                seq: 0,
                rtt_ns: 130
            }
        );
        assert_eq!(t.expire_all(), 1);
        let c = t.counters();
        assert_eq!((c.sent, c.lost, c.late, c.answered), (2, 2, 1, 0));
    }

    #[test]
    fn next_expiry_is_the_oldest_pending_challenge() {
        let mut t = ChallengeTracker::new(100);
        let mut r = EchoSession::new();
        assert_eq!(t.next_expiry_ns(), None);
        let c0 = t.issue(10, [1; 32]);
        let _ = t.issue(30, [2; 32]);
        assert_eq!(t.next_expiry_ns(), Some(110));
        // Answering the oldest moves the deadline to the next one.
        let a0 = r.on_challenge(12, 12, &c0).unwrap();
        assert!(matches!(t.on_answer(20, &a0), AnswerOutcome::Sample(_)));
        assert_eq!(t.next_expiry_ns(), Some(130));
        assert_eq!(t.expire(130), 1);
        assert_eq!(t.next_expiry_ns(), None);
    }
}
