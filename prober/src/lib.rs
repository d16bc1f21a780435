//! The locus prober: connects to responders over QUIC, sends concurrent echo challenges at a
//! set rate, and measures their round trips. Decisions (matching, loss, violations) live in
//! `locus_proto::prober`; this crate owns sockets, clock and randomness.

pub mod busy;
pub mod client;
pub mod identity;
pub mod once;
pub mod pin;
pub mod requests;
pub mod round;
pub mod stats;
pub mod udp_echo;

pub use client::{client_endpoint, connect, connect_on, ConnectError, Target};
pub use pin::SpkiPolicy;
pub use round::{run_round, run_round_from, RoundConfig, RoundReport};
pub use stats::RttStats;
