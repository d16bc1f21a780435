//! The responder's per-connection echo state: decode, reject replays, record, answer.

use thiserror::Error;

use crate::codec::DecodeError;
use crate::echo::{EchoAnswer, EchoChallenge};
use crate::transcript::Transcript;
use crate::window::{Seen, SeqWindow};

/// Echo state of one prober connection.
#[derive(Debug)]
pub struct EchoSession {
    window: SeqWindow,
    transcript: Transcript,
}

/// Why a challenge datagram got no answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EchoError {
    #[error("malformed challenge: {0}")]
    Decode(#[from] DecodeError),
    /// The prober reused a sequence number on this connection.
    #[error("challenge {seq} was already answered on this connection")]
    Replayed { seq: u64 },
    /// Too far behind the newest challenge to tell whether it is a replay.
    #[error("challenge {seq} is older than the replay window")]
    TooOld { seq: u64 },
}

impl Default for EchoSession {
    fn default() -> Self {
        Self::new()
    }
}

impl EchoSession {
    pub fn new() -> Self {
        Self {
            window: SeqWindow::new(),
            transcript: Transcript::new(),
        }
    }

    /// Answers one challenge datagram received at `received_ns`; `now_ns` is read just before
    /// calling, so `inside_ns` covers the whole time the challenge spent in the responder.
    pub fn on_challenge(
        &mut self,
        received_ns: u64,
        now_ns: u64,
        datagram: &[u8],
    ) -> Result<[u8; EchoAnswer::LEN], EchoError> {
        let c = EchoChallenge::decode(datagram)?;
        match self.window.check_and_insert(c.seq) {
            Seen::New => {}
            Seen::Replayed => return Err(EchoError::Replayed { seq: c.seq }),
            Seen::TooOld => return Err(EchoError::TooOld { seq: c.seq }),
        }
        let arrival = self.transcript.record(c.seq, &c.nonce);
        Ok(EchoAnswer {
            seq: c.seq,
            nonce: c.nonce,
            inside_ns: now_ns.saturating_sub(received_ns),
            arrival,
        }
        .encode())
    }

    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_then_rejects_replay() {
        let mut s = EchoSession::new();
        let c = EchoChallenge {
            seq: 3,
            nonce: [1; 32],
        }
        .encode();
        let a = EchoAnswer::decode(&s.on_challenge(100, 150, &c).unwrap()).unwrap();
        assert_eq!(
            (a.seq, a.nonce, a.inside_ns, a.arrival),
            (3, [1; 32], 50, 0)
        );
        assert_eq!(
            s.on_challenge(200, 210, &c),
            Err(EchoError::Replayed { seq: 3 })
        );
        assert_eq!(s.transcript().count(), 1);
    }

    #[test]
    fn malformed_is_typed() {
        let mut s = EchoSession::new();
        assert!(matches!(
            s.on_challenge(0, 0, &[1, 1, 0]),
            Err(EchoError::Decode(DecodeError::Truncated { .. }))
        ));
        assert_eq!(s.transcript().count(), 0);
    }
}
