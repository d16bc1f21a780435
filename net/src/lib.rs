//! Network plumbing both ends of locus share, so that the prober and the responder (which must
//! not depend on each other) and the anchors run one copy of it: the QUIC client and server
//! configurations, the busy-polling `quinn-proto` endpoint of the precision mode, the spinning
//! datagram read of the tokio drivers, and the TLS 1.3 certificate verifier that pins or learns
//! a server key instead of trusting WebPKI.
//!
//! Decisions stay in `locus-proto`: this crate only moves bytes and checks keys.

pub mod busy;
pub mod config;
pub mod spin;
pub mod verify;

pub use config::{client_config, crypto_provider, server_config, ConfigError};
pub use spin::{read_datagram_spinning, spinning};
pub use verify::{spki_of, ServerCert, ServerKeyCheck, Tls13Verifier};
