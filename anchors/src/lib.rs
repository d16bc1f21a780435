//! TLS round-trip anchors, measured from inside the TEE.
//!
//! A responder that claims to run at a site times TLS 1.3 round trips to servers known to be
//! there, with the TD's own monotonic clock, and binds the [`AnchorReport`] digest into a quote
//! taken afterwards. The ClientHello.random is derived from the challenge nonce, so the anchor's
//! CertificateVerify signs over it: the handshake cannot have been recorded earlier.
//!
//! - [`measure_all`] / [`measure`]: the measurement (driver: sockets and clock only);
//!   [`measure_batch`]: one measurement shared by a batch of nonces, randoms from their root;
//! - [`config`]: anchor specs and limits, TOML loader;
//! - [`lab`]: a lab CA and local anchor servers for `locus lab` and the tests.
//!
//! The report type and its canonical digest live in `locus_proto::anchor`; the verification is
//! `locus_analysis::verify::anchor`. Layout and rationale: `docs/anchors.md`.
#![forbid(unsafe_code)]

pub mod config;
mod http;
pub mod lab;
mod measure;
mod tls;

pub use config::{
    AnchorSpec, AnchorsConfig, ClockOptions, ConfigError, Location, MeasureOptions, Trust,
    CLOCKSOURCE_PATH, MAX_ANCHORS_PER_REQUEST,
};
pub use lab::{AnchorServer, LabBehaviour, LabCa, LabError, ServerIdentity};
pub use locus_proto::anchor::{AnchorFailure, AnchorReport, AnchorResult};
pub use measure::{measure, measure_all, measure_batch};
