//! A sliding anti-replay window over sequence numbers (as in IPsec, RFC 4303 §3.4.3):
//! bounded memory however long a connection lives.

const WINDOW_BITS: u64 = 4096;
const WORDS: usize = (WINDOW_BITS / 64) as usize;

/// Remembers which sequence numbers in the last [`WINDOW_BITS`] below the highest were seen.
#[derive(Debug, Clone)]
pub(crate) struct SeqWindow {
    /// One past the highest sequence number seen, 0 when none was.
    top: u64,
    bits: [u64; WORDS],
}

/// What the window says about a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First time: now recorded.
    New,
    /// Already recorded.
    Replayed,
    /// Older than the window: cannot tell, treated as a replay by callers.
    TooOld,
}

impl SeqWindow {
    pub(crate) fn new() -> Self {
        Self {
            top: 0,
            bits: [0; WORDS],
        }
    }

    pub(crate) fn check_and_insert(&mut self, seq: u64) -> Seen {
        if seq >= self.top {
            // Slide forward, clearing the bits that leave the window.
            let shift = seq + 1 - self.top;
            if shift >= WINDOW_BITS {
                self.bits = [0; WORDS];
            } else {
                for s in self.top..=seq {
                    self.clear(s);
                }
            }
            self.top = seq + 1;
            self.set(seq);
            return Seen::New;
        }
        if self.top - seq > WINDOW_BITS {
            return Seen::TooOld;
        }
        if self.get(seq) {
            Seen::Replayed
        } else {
            self.set(seq);
            Seen::New
        }
    }

    fn slot(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW_BITS;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn get(&self, seq: u64) -> bool {
        let (w, m) = Self::slot(seq);
        self.bits[w] & m != 0
    }

    fn set(&mut self, seq: u64) {
        let (w, m) = Self::slot(seq);
        self.bits[w] |= m;
    }

    fn clear(&mut self, seq: u64) {
        let (w, m) = Self::slot(seq);
        self.bits[w] &= !m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_replays_in_and_out_of_order() {
        let mut w = SeqWindow::new();
        assert_eq!(w.check_and_insert(5), Seen::New);
        assert_eq!(w.check_and_insert(3), Seen::New);
        assert_eq!(w.check_and_insert(5), Seen::Replayed);
        assert_eq!(w.check_and_insert(3), Seen::Replayed);
        assert_eq!(w.check_and_insert(4), Seen::New);
        assert_eq!(w.check_and_insert(10_000), Seen::New);
        assert_eq!(w.check_and_insert(5), Seen::TooOld);
        assert_eq!(w.check_and_insert(10_000 - 4095), Seen::New);
        assert_eq!(w.check_and_insert(10_000 - 4095), Seen::Replayed);
    }

    #[test]
    fn sliding_clears_stale_bits() {
        let mut w = SeqWindow::new();
        assert_eq!(w.check_and_insert(1), Seen::New);
        // 1 + 4096 maps to the same bit as 1: it must be fresh, not a replay.
        assert_eq!(w.check_and_insert(1 + WINDOW_BITS), Seen::New);
        assert_eq!(w.check_and_insert(2 + WINDOW_BITS), Seen::New);
    }
}
