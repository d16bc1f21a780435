//! The fleet side of locus: the continuous prober daemon, the store it writes (SQLite or
//! PostgreSQL), its Prometheus metrics, and the monitor that judges what the daemons stored.
//! Offline verification of stored evidence (policy files, nonce ledgers, times) lives here
//! too: the monitor, `locus judge`, `locus verify evidence` and the lab share it.
//!
//! The client side (connecting, rounds, pinning) is `locus_prober`; decisions are
//! `locus_analysis` (pure). This crate must never import the lab or the responder.

pub mod daemon;
pub mod integrity;
pub mod metrics;
pub mod monitor;
pub mod self_metrics;
pub mod store;
pub mod time;
pub mod verifier;
