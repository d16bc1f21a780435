//! Peers (IPv4 addresses, IPv6 /64s) that recently proved a pinned key: their reconnects pass
//! the total handshake budget, so a flood of handshakes from other peers cannot keep a known
//! prober out after its connection dropped (REVIEW4 R4). Bounded in memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a peer is remembered after it last proved a key (or its proved connection closed).
pub(crate) const REMEMBER_FOR: Duration = Duration::from_secs(10 * 60);

/// Most peers remembered: far above the probers of one responder (a few hundred); beyond it
/// the one remembered longest ago is forgotten, so the table stays bounded whatever proves.
pub(crate) const MAX_REMEMBERED: usize = 4_096;

/// Peers that proved a pinned key, with when they were last seen proved.
#[derive(Debug, Default)]
pub(crate) struct RecentlyProved(HashMap<IpAddr, Instant>);

impl RecentlyProved {
    /// `peer` proved a key (or held a proved connection) at `now`.
    pub(crate) fn saw(&mut self, peer: IpAddr, now: Instant) {
        if !self.0.contains_key(&peer) && self.0.len() >= MAX_REMEMBERED {
            self.0
                .retain(|_, at| now.saturating_duration_since(*at) < REMEMBER_FOR);
            if self.0.len() >= MAX_REMEMBERED {
                let oldest = self.0.iter().min_by_key(|(_, at)| **at).map(|(p, _)| *p);
                if let Some(oldest) = oldest {
                    self.0.remove(&oldest);
                }
            }
        }
        let at = self.0.entry(peer).or_insert(now);
        *at = (*at).max(now);
    }

    /// Whether `peer` proved a key within [`REMEMBER_FOR`] before `now`.
    pub(crate) fn contains(&self, peer: IpAddr, now: Instant) -> bool {
        self.0
            .get(&peer)
            .is_some_and(|at| now.saturating_duration_since(*at) < REMEMBER_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn a_peer_is_remembered_for_a_while_and_the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut r = RecentlyProved::default();
        r.saw(ip(0), t0);
        assert!(r.contains(ip(0), t0 + REMEMBER_FOR - Duration::from_secs(1)));
        assert!(!r.contains(ip(0), t0 + REMEMBER_FOR));
        assert!(!r.contains(ip(1), t0));
        // A full table forgets the peer seen longest ago, never more than it holds.
        for i in 1..=MAX_REMEMBERED as u32 {
            r.saw(ip(i), t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(r.0.len(), MAX_REMEMBERED);
        assert!(!r.contains(ip(0), t0 + Duration::from_secs(5)));
        assert!(r.contains(ip(1), t0 + Duration::from_secs(5)));
        assert!(r.contains(ip(MAX_REMEMBERED as u32), t0 + Duration::from_secs(5)));
    }
}
