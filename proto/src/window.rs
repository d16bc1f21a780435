//! A sliding anti-replay window over sequence numbers (as in IPsec, RFC 4303 §3.4.3):
//! bounded memory however long a connection lives.

/// Bits of the default window (a QUIC connection's echo).
#[cfg(test)]
const WINDOW_BITS: u64 = 4096;

/// Remembers which sequence numbers in the last `64 * WORDS` below the highest were seen
/// (4096 by default; a UDP echo session, of which a responder holds many, keeps fewer).
#[derive(Debug, Clone)]
pub(crate) struct SeqWindow<const WORDS: usize = 64> {
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

impl<const WORDS: usize> SeqWindow<WORDS> {
    const BITS: u64 = 64 * WORDS as u64;

    pub(crate) fn new() -> Self {
        Self {
            top: 0,
            bits: [0; WORDS],
        }
    }

    pub(crate) fn check_and_insert(&mut self, seq: u64) -> Seen {
        if seq >= self.top {
            // u64::MAX has no successor to become `top`: refused rather than wrapping `top`
            // to 0, which would make every earlier number new again (REVIEW7 U3).
            let Some(next) = seq.checked_add(1) else {
                return Seen::TooOld;
            };
            // Slide forward, clearing the bits that leave the window.
            let shift = next - self.top;
            if shift >= Self::BITS {
                self.bits = [0; WORDS];
            } else {
                for s in self.top..=seq {
                    self.clear(s);
                }
            }
            self.top = next;
            self.set(seq);
            return Seen::New;
        }
        if self.top - seq > Self::BITS {
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
        let i = seq % Self::BITS;
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
        let mut w: SeqWindow = SeqWindow::new();
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
        let mut w: SeqWindow = SeqWindow::new();
        assert_eq!(w.check_and_insert(1), Seen::New);
        // 1 + 4096 maps to the same bit as 1: it must be fresh, not a replay.
        assert_eq!(w.check_and_insert(1 + WINDOW_BITS), Seen::New);
        assert_eq!(w.check_and_insert(2 + WINDOW_BITS), Seen::New);
    }

    #[test]
    fn a_small_window_slides_by_its_own_size() {
        let mut w = SeqWindow::<4>::new();
        assert_eq!(w.check_and_insert(300), Seen::New);
        assert_eq!(w.check_and_insert(300 - 255), Seen::New);
        assert_eq!(w.check_and_insert(300 - 256), Seen::TooOld);
        assert_eq!(w.check_and_insert(300 - 255), Seen::Replayed);
    }

    #[test]
    fn the_largest_number_is_refused_without_reopening_the_window() {
        let mut w = SeqWindow::<4>::new();
        assert_eq!(w.check_and_insert(7), Seen::New);
        assert_eq!(w.check_and_insert(u64::MAX), Seen::TooOld);
        assert_eq!(w.check_and_insert(7), Seen::Replayed);
        assert_eq!(w.check_and_insert(u64::MAX - 1), Seen::New);
        assert_eq!(w.check_and_insert(u64::MAX), Seen::TooOld);
    }
}
