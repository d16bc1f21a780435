//! The locus responder: runs inside the confidential VM, answers echo challenges at once over
//! QUIC datagrams, and answers evidence requests on QUIC streams.
//!
//! This crate is the driver: decisions (decoding, replay checks, transcript) live in
//! `locus-proto`; here we own the sockets, the clock and the hardware.

pub mod access;
pub mod admission;
mod anchor_batch;
pub mod busy;
pub mod config;
pub mod doctor;
pub mod evidence;
mod evidence_queue;
pub mod server;
pub mod session_key;
pub mod tdx;
pub mod tpm;
pub mod udp_echo;
