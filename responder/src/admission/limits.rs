//! Rate limits of admission: token buckets, and the verdict on one echo or request once its
//! IP's answers ran out (refuse while the connection's own allowance lasts, then close).

use std::time::Instant;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Echo answers of an IP: bursts of a tenth of a second's worth.
    pub(crate) fn echo(rate: f64, now: Instant) -> Self {
        Self::new(rate, rate / 10.0, now)
    }

    /// Request answers of an IP: bursts of twice the rate.
    pub(crate) fn requests(rate: f64, now: Instant) -> Self {
        Self::new(rate, 2.0 * rate, now)
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }

    /// Whether [`TokenBucket::take`] would succeed at `now` (nothing is taken).
    pub(crate) fn available(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Changes the rate (and burst) from `now` on; tokens above the new burst are dropped.
    pub(crate) fn set_rate(&mut self, rate: f64, burst: f64, now: Instant) {
        self.refill(now);
        self.rate = rate;
        self.burst = burst.max(1.0);
        self.tokens = self.tokens.min(self.burst);
    }

    /// An echo bucket's rate (its burst follows: a tenth of a second's worth).
    pub(crate) fn set_echo_rate(&mut self, rate: f64, now: Instant) {
        if self.rate != rate {
            self.set_rate(rate, rate / 10.0, now);
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full at `now` (its state can be forgotten).
    pub(crate) fn full(&self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * self.rate >= self.burst
    }
}

/// What to do with one echo challenge or stream request of a rate-limited peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    Answer,
    /// Over the rate: drop the echo unanswered, answer the request `rate-limited`.
    Refuse,
    /// Refused past its allowance for a second and still at it: close the connection, so its
    /// flood costs the responder no more than a closed connection's packets (reconnecting is
    /// rate-limited per IP).
    Close,
}

/// Which limit a refusal is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    Echo,
    Request,
}

/// One allowance of refusals, and how many it has paid for so far.
#[derive(Debug, Clone)]
struct Allowance {
    bucket: TokenBucket,
    spent: u64,
}

impl Allowance {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(rate, burst, now),
            spent: 0,
        }
    }

    /// One refusal from this allowance: `Refuse` while it lasts, then `Close`.
    fn refuse(&mut self, now: Instant) -> RateVerdict {
        if self.bucket.take(now) {
            self.spent += 1;
            RateVerdict::Refuse
        } else {
            RateVerdict::Close
        }
    }

    /// Whether this connection has paid some refusals of its own already (a tenth of its
    /// burst, at least one): only then may its IP's shared allowance close it. A neighbour's flood cannot close an
    /// honest connection's first requests or echoes (REVIEW6 R8); a flood spread over many
    /// connections pays this much on each before it is closed, and new connections are
    /// limited per IP.
    fn spent_some(&self) -> bool {
        self.spent as f64 >= (self.bucket.burst / 10.0).max(1.0)
    }
}

/// One connection's allowance of refusals once its IP's answers ran out. Answers are shared
/// by the IP's connections (more connections buy no more), refusals are not: a flooder behind
/// the same NAT or IPv6 /64 as an honest prober runs out of its own and is closed, never the
/// prober's connection (REVIEW4 R2).
#[derive(Debug, Clone)]
pub(crate) struct Refusals {
    /// A tenth of a second's worth of the per-IP echo rate, refilled at that rate a second.
    echo: Option<Allowance>,
    /// The per-IP request rate's worth, refilled at that rate.
    requests: Allowance,
}

impl Refusals {
    /// `echo_rate`/`request_rate`: the per-IP rates (`None`: echoes unlimited).
    pub(crate) fn new(echo_rate: Option<f64>, request_rate: f64, now: Instant) -> Self {
        Self {
            echo: echo_rate.map(|r| Allowance::new(r / 10.0, r / 10.0, now)),
            requests: Allowance::new(request_rate, request_rate, now),
        }
    }

    /// The allowance all of an IP's unproven connections share: twice one connection's, so a
    /// lone flooder is closed before it spends its neighbours' share (REVIEW5 M4).
    pub(crate) fn shared(echo_rate: Option<f64>, request_rate: f64, now: Instant) -> Self {
        Self::new(echo_rate.map(|r| 2.0 * r), 2.0 * request_rate, now)
    }

    fn of(&mut self, over: Over) -> Option<&mut Allowance> {
        match over {
            Over::Echo => self.echo.as_mut(),
            Over::Request => Some(&mut self.requests),
        }
    }

    /// An echo or request over its IP's rate, this allowance alone: refused while it lasts,
    /// then close (echoes unlimited: only dropped).
    #[cfg(test)]
    pub(crate) fn refuse(&mut self, over: Over, now: Instant) -> RateVerdict {
        self.of(over).map_or(RateVerdict::Refuse, |a| a.refuse(now))
    }
}

/// Answers of one pinned key, shared by every connection that proved it, at the per-IP
/// rates: neighbours behind the same NAT or /64 cannot spend them (REVIEW5 M4), and more
/// connections of the key buy no more (REVIEW6 R7). Past them it is only refused, never
/// closed.
#[derive(Debug, Clone)]
pub(crate) struct ProvedAnswers {
    echo: Option<TokenBucket>,
    requests: TokenBucket,
}

impl ProvedAnswers {
    /// `echo_rate`/`request_rate`: the per-IP rates (`None`: echoes unlimited).
    pub(crate) fn new(echo_rate: Option<f64>, request_rate: f64, now: Instant) -> Self {
        Self {
            echo: echo_rate.map(|r| TokenBucket::echo(r, now)),
            requests: TokenBucket::requests(request_rate, now),
        }
    }

    pub(crate) fn echo(&mut self, now: Instant) -> RateVerdict {
        if self.echo.as_mut().is_none_or(|b| b.take(now)) {
            RateVerdict::Answer
        } else {
            RateVerdict::Refuse
        }
    }

    pub(crate) fn request(&mut self, now: Instant) -> RateVerdict {
        if self.requests.take(now) {
            RateVerdict::Answer
        } else {
            RateVerdict::Refuse
        }
    }
}

/// A refusal of an unproven connection costs its own allowance and, once it has spent some
/// of that, its IP's, which all the IP's unproven connections share: a flood spread over many
/// connections, each within its own allowance, still runs out of the IP's and is closed
/// (REVIEW5 M4), while a newcomer is only refused (REVIEW6 R8).
pub(crate) fn refuse_from_both(
    own: &mut Refusals,
    ip: &mut Refusals,
    over: Over,
    now: Instant,
) -> RateVerdict {
    let Some(mine) = own.of(over) else {
        return RateVerdict::Refuse;
    };
    let closable = mine.spent_some();
    match mine.refuse(now) {
        RateVerdict::Refuse if closable => {
            ip.of(over).map_or(RateVerdict::Refuse, |a| a.refuse(now))
        }
        v => v,
    }
}

/// The verdict on one echo or request: `answers` (the IP's) first, then `refusals` (the
/// connection's).
pub(crate) fn verdict(
    answers: &mut TokenBucket,
    now: Instant,
    over: impl FnOnce() -> RateVerdict,
) -> RateVerdict {
    if answers.take(now) {
        RateVerdict::Answer
    } else {
        over()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_and_holds_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(!b.take(t0 + Duration::from_millis(50)));
        assert!(b.take(t0 + Duration::from_millis(100)));
        // A long pause refills the burst, not more.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 3);
    }

    #[test]
    fn an_echo_flood_is_dropped_then_closed_and_an_honest_rate_never_is() {
        let t0 = Instant::now();
        let (mut answers, mut refusals) = (
            TokenBucket::echo(1000.0, t0),
            Refusals::new(Some(1000.0), 50.0, t0),
        );
        // 900 a second for ten seconds: always answered.
        for i in 0..9000u64 {
            let at = t0 + Duration::from_micros(i * 1_111);
            let v = verdict(&mut answers, at, || refusals.refuse(Over::Echo, at));
            assert_eq!(v, RateVerdict::Answer, "challenge {i}");
        }
        let (mut answers, mut refusals) = (
            TokenBucket::echo(1000.0, t0),
            Refusals::new(Some(1000.0), 50.0, t0),
        );
        let verdicts: Vec<_> = (0..400)
            .map(|_| verdict(&mut answers, t0, || refusals.refuse(Over::Echo, t0)))
            .collect();
        // The burst (100) is answered, the next 100 dropped, then the connection is closed.
        let count = |want| verdicts.iter().filter(|v| **v == want).count();
        assert_eq!(count(RateVerdict::Answer), 100);
        assert_eq!(count(RateVerdict::Refuse), 100);
        assert_eq!(verdicts[200], RateVerdict::Close);
        // Echoes unlimited: nothing to close for.
        assert_eq!(
            Refusals::new(None, 50.0, t0).refuse(Over::Echo, t0),
            RateVerdict::Refuse
        );
    }
}
