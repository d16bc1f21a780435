//! The locus wire protocol (version 1) and the evidence types both ends share.
//!
//! Sans-I/O like quinn-proto: nothing here opens a socket, reads a clock or draws randomness.
//! Time (`now_ns`, a monotonic nanosecond count chosen by the driver) and nonces come in as
//! arguments, so every state machine can be driven deterministically in tests.
#![forbid(unsafe_code)]

pub mod anchor;
pub mod binding;
pub mod cbor;
mod codec;
pub mod credential;
pub mod echo;
pub mod evidence;
pub mod frame;
pub mod hcl;
pub mod merkle;
pub mod messages;
pub mod prober;
pub mod request_auth;
pub mod responder;
pub mod transcript;
pub mod udp_echo;
mod window;

pub use codec::DecodeError;
pub use echo::{EchoAnswer, EchoChallenge};
pub use frame::{Frame, FrameError, MessageKind};

/// The protocol version this crate speaks on datagrams and stream frames.
pub const PROTOCOL_VERSION: u8 = 1;

/// ALPN of the challenge protocol.
pub const ALPN: &[u8] = b"locus/1";

/// Length of a challenge nonce.
pub const NONCE_LEN: usize = 32;

/// A challenge nonce: fresh randomness chosen by the prober or verifier.
pub type Nonce = [u8; NONCE_LEN];
