//! Echoes over plain UDP, authenticated with keys exported from a QUIC/TLS connection: a prober
//! fleet needs one handshake per target, not a QUIC connection per target (issue 22).
//!
//! The prober asks for a session on a QUIC connection ([`crate::messages::UdpEchoRequest`]);
//! the responder picks the session id, and both ends export [`EXPORTER_LEN`] bytes with
//! [`EXPORTER_LABEL`] and the session id as context (RFC 8446 §7.5): the first half keys the
//! challenges' MAC, the second half the answers'. Only the TD's TLS endpoint and this prober
//! hold them, so an authenticated answer proves what a QUIC datagram answer proves
//! (`docs/binding.md`, "UDP echo sessions").
//!
//! Layout (version 1, big-endian), MAC = HMAC-SHA-256 truncated to [`MAC_LEN`] bytes:
//! - challenge: `version:u8 = 1 | type:u8 = 0x11 | session:u64 | counter:u64 | nonce:[u8; 32] |
//!   mac:[u8; 16]` ([`CHALLENGE_LEN`] = 66 bytes), MAC with the challenge key over the bytes
//!   before it;
//! - answer: `version:u8 = 1 | type:u8 = 0x12 | session:u64 | counter:u64 | inside_ns:u64 |
//!   arrival:u64 | mac:[u8; 16]` ([`ANSWER_LEN`] = 50 bytes), MAC with the answer key over the
//!   bytes before it and then the challenge's nonce: the answer commits to a nonce it does not
//!   carry, so it cannot be made before the challenge arrived, and it is smaller than the
//!   challenge (no amplification).
//!
//! A datagram of the wrong length, version or type, of an unknown session, with a bad MAC or a
//! replayed or stale counter is dropped and counted, never answered.

pub mod table;

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::codec::{DecodeError, Reader};
use crate::echo::EchoAnswer;
use crate::prober::{AnswerOutcome, ChallengeTracker};
use crate::window::{Seen, SeqWindow};
use crate::Nonce;

/// Version byte of UDP echo datagrams.
pub const VERSION: u8 = 1;
const TYPE_CHALLENGE: u8 = 0x11;
const TYPE_ANSWER: u8 = 0x12;
/// Bytes of a truncated MAC.
pub const MAC_LEN: usize = 16;
/// Bytes of a challenge datagram.
pub const CHALLENGE_LEN: usize = 2 + 8 + 8 + 32 + MAC_LEN;
/// Bytes of an answer datagram.
pub const ANSWER_LEN: usize = 2 + 8 + 8 + 8 + 8 + MAC_LEN;
const _: () = assert!(ANSWER_LEN <= CHALLENGE_LEN, "an answer must not amplify");

/// TLS exporter label of the echo keys; the context is the session id (8 bytes, big-endian).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-locus-udp-echo";
/// Bytes exported: the challenge key, then the answer key.
pub const EXPORTER_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// The exporter context of session `session`.
pub fn exporter_context(session: u64) -> [u8; 8] {
    session.to_be_bytes()
}

/// One session's keys, one per direction.
#[derive(Clone)]
pub struct EchoKeys {
    challenge: [u8; 32],
    answer: [u8; 32],
}

impl std::fmt::Debug for EchoKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EchoKeys(..)")
    }
}

impl EchoKeys {
    /// Splits the exporter output: challenge key first, answer key second.
    pub fn from_exporter(secret: &[u8; EXPORTER_LEN]) -> Self {
        let mut challenge = [0u8; 32];
        let mut answer = [0u8; 32];
        challenge.copy_from_slice(&secret[..32]);
        answer.copy_from_slice(&secret[32..]);
        Self { challenge, answer }
    }

    fn challenge_mac(&self, body: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.challenge).expect("HMAC takes any key");
        m.update(body);
        m
    }

    fn answer_mac(&self, body: &[u8], nonce: &Nonce) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.answer).expect("HMAC takes any key");
        m.update(body);
        m.update(nonce);
        m
    }
}

/// Why a UDP echo datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UdpEchoError {
    /// Wrong length, version or type.
    #[error("malformed UDP echo datagram: {0}")]
    Decode(#[from] DecodeError),
    /// No such session (never registered, expired or evicted): the prober asks for a new one.
    #[error("unknown UDP echo session {session:016x}")]
    UnknownSession { session: u64 },
    /// The session was registered by another IP address.
    #[error("UDP echo session {session:016x} belongs to {expected}, not {found}")]
    WrongPeer {
        session: u64,
        expected: IpAddr,
        found: IpAddr,
    },
    /// The MAC does not verify under this session's key: forged, corrupted, or from another
    /// session.
    #[error("bad MAC on UDP echo session {session:016x}")]
    BadMac { session: u64 },
    /// This counter was already answered on this session.
    #[error("counter {counter} was already answered on session {session:016x}")]
    Replayed { session: u64, counter: u64 },
    /// Too far behind the newest counter to tell whether it is a replay.
    #[error("counter {counter} is older than session {session:016x}'s replay window")]
    TooOld { session: u64, counter: u64 },
    /// Past this session's or its IP's echo rate.
    #[error("UDP echo session {session:016x} is over its echo rate")]
    RateLimited { session: u64 },
    /// An answer of another session reached this one's state (prober side).
    #[error("answer of session {found:016x}, expected {expected:016x}")]
    WrongSession { expected: u64, found: u64 },
    /// An answer for a counter this prober has no record of (never sent, already answered, or
    /// lost too long ago): its MAC cannot be checked, so it counts for nothing (prober side).
    #[error("answer to counter {counter}, which is not pending")]
    NotPending { counter: u64 },
}

/// The fields of a challenge, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpChallenge {
    pub session: u64,
    pub counter: u64,
    pub nonce: Nonce,
}

/// The fields of an answer, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpAnswer {
    pub session: u64,
    pub counter: u64,
    pub inside_ns: u64,
    pub arrival: u64,
}

impl UdpChallenge {
    /// The challenge datagram, MAC'd with `keys`.
    pub fn encode(&self, keys: &EchoKeys) -> [u8; CHALLENGE_LEN] {
        let mut out = [0u8; CHALLENGE_LEN];
        out[0] = VERSION;
        out[1] = TYPE_CHALLENGE;
        out[2..10].copy_from_slice(&self.session.to_be_bytes());
        out[10..18].copy_from_slice(&self.counter.to_be_bytes());
        out[18..50].copy_from_slice(&self.nonce);
        let tag = keys.challenge_mac(&out[..50]).finalize().into_bytes();
        out[50..].copy_from_slice(&tag[..MAC_LEN]);
        out
    }

    /// Decodes and authenticates a challenge datagram with `keys`.
    pub fn decode(datagram: &[u8], keys: &EchoKeys) -> Result<Self, UdpEchoError> {
        let mut r = header(datagram, TYPE_CHALLENGE, CHALLENGE_LEN)?;
        let session = r.u64()?;
        let counter = r.u64()?;
        let nonce: Nonce = r.array()?;
        let mac: [u8; MAC_LEN] = r.array()?;
        r.finish()?;
        // In bounds: `header` checked the exact length.
        keys.challenge_mac(datagram.get(..CHALLENGE_LEN - MAC_LEN).unwrap_or(datagram))
            .verify_truncated_left(&mac)
            .map_err(|_| UdpEchoError::BadMac { session })?;
        Ok(Self {
            session,
            counter,
            nonce,
        })
    }
}

impl UdpAnswer {
    /// The answer datagram, MAC'd with `keys` over its fields and the challenge's `nonce`.
    pub fn encode(&self, keys: &EchoKeys, nonce: &Nonce) -> [u8; ANSWER_LEN] {
        let mut out = [0u8; ANSWER_LEN];
        out[0] = VERSION;
        out[1] = TYPE_ANSWER;
        out[2..10].copy_from_slice(&self.session.to_be_bytes());
        out[10..18].copy_from_slice(&self.counter.to_be_bytes());
        out[18..26].copy_from_slice(&self.inside_ns.to_be_bytes());
        out[26..34].copy_from_slice(&self.arrival.to_be_bytes());
        let tag = keys.answer_mac(&out[..34], nonce).finalize().into_bytes();
        out[34..].copy_from_slice(&tag[..MAC_LEN]);
        out
    }

    /// Decodes an answer datagram and authenticates it with `keys` and the `nonce` its counter
    /// was sent with, looked up by `nonce_of` (`None`: [`UdpEchoError::NotPending`]).
    pub fn decode(
        datagram: &[u8],
        keys: &EchoKeys,
        nonce_of: impl FnOnce(u64) -> Option<Nonce>,
    ) -> Result<Self, UdpEchoError> {
        let mut r = header(datagram, TYPE_ANSWER, ANSWER_LEN)?;
        let session = r.u64()?;
        let counter = r.u64()?;
        let inside_ns = r.u64()?;
        let arrival = r.u64()?;
        let mac: [u8; MAC_LEN] = r.array()?;
        r.finish()?;
        let nonce = nonce_of(counter).ok_or(UdpEchoError::NotPending { counter })?;
        keys.answer_mac(
            datagram.get(..ANSWER_LEN - MAC_LEN).unwrap_or(datagram),
            &nonce,
        )
        .verify_truncated_left(&mac)
        .map_err(|_| UdpEchoError::BadMac { session })?;
        Ok(Self {
            session,
            counter,
            inside_ns,
            arrival,
        })
    }
}

/// The session id of a challenge datagram, checking only its version, type and length: what a
/// responder looks the session up by before any MAC work.
pub fn challenge_session(datagram: &[u8]) -> Result<u64, DecodeError> {
    header(datagram, TYPE_CHALLENGE, CHALLENGE_LEN)?.u64()
}

/// The session id of an answer datagram (version, type and length checked): what a prober
/// demultiplexes its shared socket by.
pub fn answer_session(datagram: &[u8]) -> Result<u64, DecodeError> {
    header(datagram, TYPE_ANSWER, ANSWER_LEN)?.u64()
}

/// Checks version, type and exact length (before any field is read).
fn header(buf: &[u8], expected_type: u8, len: usize) -> Result<Reader<'_>, DecodeError> {
    let mut r = Reader::new(buf);
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::WrongVersion {
            found: version,
            supported: VERSION,
        });
    }
    let ty = r.u8()?;
    if ty != expected_type {
        return Err(DecodeError::UnknownType { found: ty });
    }
    if buf.len() < len {
        return Err(DecodeError::Truncated {
            need: len,
            have: buf.len(),
        });
    }
    if buf.len() > len {
        return Err(DecodeError::TrailingData {
            extra: buf.len() - len,
        });
    }
    Ok(r)
}

/// Counters past the newest one a responder's session still tells from replays: far more
/// than a prober has in flight, and 32 bytes a session.
const SESSION_WINDOW_WORDS: usize = 4;

/// The responder's state of one session: keys, replay window, arrival count.
#[derive(Debug, Clone)]
pub struct ServerSession {
    session: u64,
    keys: EchoKeys,
    window: SeqWindow<SESSION_WINDOW_WORDS>,
    arrivals: u64,
}

impl ServerSession {
    pub fn new(session: u64, keys: EchoKeys) -> Self {
        Self {
            session,
            keys,
            window: SeqWindow::new(),
            arrivals: 0,
        }
    }

    /// Answers one challenge received at `received_ns`; `now_ns` is read just before calling,
    /// so `inside_ns` covers the whole time the challenge spent in the responder.
    pub fn on_challenge(
        &mut self,
        received_ns: u64,
        now_ns: u64,
        datagram: &[u8],
    ) -> Result<[u8; ANSWER_LEN], UdpEchoError> {
        let c = UdpChallenge::decode(datagram, &self.keys)?;
        if c.session != self.session {
            // A valid MAC under this session's keys names its own session.
            return Err(UdpEchoError::BadMac { session: c.session });
        }
        match self.window.check_and_insert(c.counter) {
            Seen::New => {}
            Seen::Replayed => {
                return Err(UdpEchoError::Replayed {
                    session: c.session,
                    counter: c.counter,
                })
            }
            Seen::TooOld => {
                return Err(UdpEchoError::TooOld {
                    session: c.session,
                    counter: c.counter,
                })
            }
        }
        let arrival = self.arrivals;
        self.arrivals += 1;
        Ok(UdpAnswer {
            session: c.session,
            counter: c.counter,
            inside_ns: now_ns.saturating_sub(received_ns),
            arrival,
        }
        .encode(&self.keys, &c.nonce))
    }
}

/// The prober's state of one session: its keys and the challenge bookkeeping.
#[derive(Debug)]
pub struct ClientSession {
    session: u64,
    keys: EchoKeys,
    tracker: ChallengeTracker,
}

impl ClientSession {
    /// A session granted by the responder, answers timing out after `timeout_ns`.
    pub fn new(session: u64, keys: EchoKeys, timeout_ns: u64) -> Self {
        Self {
            session,
            keys,
            tracker: ChallengeTracker::new(timeout_ns),
        }
    }

    pub fn session(&self) -> u64 {
        self.session
    }

    /// Issues the next challenge with the caller's fresh `nonce`, sent at `now_ns`.
    pub fn issue(&mut self, now_ns: u64, nonce: Nonce) -> [u8; CHALLENGE_LEN] {
        let counter = self.tracker.issue_seq(now_ns, nonce);
        UdpChallenge {
            session: self.session,
            counter,
            nonce,
        }
        .encode(&self.keys)
    }

    /// Classifies one answer datagram received at `now_ns`. An answer that does not
    /// authenticate is an `Err` and counts for nothing: anyone can send a datagram.
    pub fn on_answer(
        &mut self,
        now_ns: u64,
        datagram: &[u8],
    ) -> Result<AnswerOutcome, UdpEchoError> {
        let tracker = &self.tracker;
        let a = UdpAnswer::decode(datagram, &self.keys, |c| tracker.nonce_of(c))?;
        if a.session != self.session {
            return Err(UdpEchoError::WrongSession {
                expected: self.session,
                found: a.session,
            });
        }
        let nonce = self
            .tracker
            .nonce_of(a.counter)
            .ok_or(UdpEchoError::NotPending { counter: a.counter })?;
        Ok(self.tracker.on_decoded_answer(
            now_ns,
            EchoAnswer {
                seq: a.counter,
                nonce,
                inside_ns: a.inside_ns,
                arrival: a.arrival,
            },
        ))
    }

    pub fn tracker(&self) -> &ChallengeTracker {
        &self.tracker
    }

    pub fn tracker_mut(&mut self) -> &mut ChallengeTracker {
        &mut self.tracker
    }
}

#[cfg(test)]
mod tests;
