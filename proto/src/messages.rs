//! Stream messages of protocol version 1. Optional fields default; unknown fields and
//! non-canonical encodings are refused (`crate::cbor`).

use serde::{Deserialize, Serialize};

use crate::evidence::{EkCert, EvidenceBundle, SealedNonce};
use crate::transcript::SignedTranscript;

/// Asks the responder for fresh evidence bound to `nonce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRequest {
    /// The verifier's fresh nonce ([`crate::NONCE_LEN`] bytes); empty when it is `sealed`.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    #[serde(default)]
    pub include: Include,
    /// Who issued the nonce (the verifier's name in its nonce ledger); copied into the bundle.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The nonce sealed to the vTPM's certified EK for its AK: the responder learns it only
    /// through TPM2_ActivateCredential (`docs/binding.md`, "Credential activation"). Omitted
    /// when absent, so plain requests encode as before; a responder that predates the field
    /// refuses a sealed request as malformed rather than ignoring it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedNonce>,
    /// The prober's signature over this request, bound to the connection
    /// ([`crate::request_auth`]): required by a responder with `[access] evidence = "pinned"`.
    /// Omitted when absent, so unsigned requests encode as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RequestAuth>,
}

/// A prober's Ed25519 signature over an [`EvidenceRequest`] (`auth` left out) and the
/// connection's TLS exporter value ([`crate::request_auth::signed_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestAuth {
    /// The prober's Ed25519 public key (32 bytes).
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    /// Ed25519 signature (64 bytes).
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Asks for the vTPM's AK and EK certificates, to seal the next evidence request's nonce.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysRequest {
    /// Under the responder's `[access] evidence = "pinned"`: the prober's signature over
    /// [`crate::request_auth::signed_keys_message`] (the keys name the platform and cost vTPM
    /// work, so they are gated like evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RequestAuth>,
}

/// A pinned prober proves its key right after the handshake (REVIEW3 A): a responder with
/// `[access] evidence = "pinned"` then never evicts the connection at its connection cap. It
/// costs the responder one signature check and no evidence work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloRequest {
    /// The prober's signature over [`crate::request_auth::signed_hello_message`].
    pub auth: RequestAuth,
}

/// The responder's answer to a [`HelloRequest`] it accepted (a refusal is an error frame).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloResponse {}

/// The vTPM's keys as the responder states them (unauthenticated: the bundle's checks decide
/// whether they are genuine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysResponse {
    /// The AK's TPM2B_PUBLIC.
    #[serde(with = "serde_bytes")]
    pub ak_public: Vec<u8>,
    pub ek_certs: Vec<EkCert>,
}

/// Which parts of the evidence to produce. Session keys and the transcript are always included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Include {
    #[serde(default)]
    pub tdx: bool,
    #[serde(default)]
    pub tpm: bool,
    /// Names of anchors to time before quoting.
    #[serde(default)]
    pub anchors: Vec<String>,
}

/// The responder's answer to an [`EvidenceRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceResponse {
    pub bundle: EvidenceBundle,
}

/// Asks for the signed transcript of this connection so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptRequest {}

/// The signed transcript of this connection so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptResponse {
    pub transcript: SignedTranscript,
    /// The session key's SubjectPublicKeyInfo (DER) that signed it.
    #[serde(with = "serde_bytes")]
    pub session_spki: Vec<u8>,
}

/// Asks for a UDP echo session ([`crate::udp_echo`]): echoes over plain UDP authenticated with
/// keys both ends export from this connection, so the connection itself can be closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpEchoRequest {}

/// A granted UDP echo session (a responder without one refuses with
/// [`codes::UNAVAILABLE`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpEchoResponse {
    /// The session id, chosen by the responder: the exporter context of the keys and the id
    /// every datagram of the session carries.
    pub session: u64,
    /// UDP port of the echo, at the connection's responder address.
    pub port: u16,
    /// Seconds the session lives from now (the responder may evict it sooner: the prober asks
    /// for a new one when answers stop).
    pub lifetime_s: u32,
}

/// Sent instead of a response when a request is refused; the stream then closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorMessage {
    pub code: u16,
    pub message: String,
}

/// Error codes of [`ErrorMessage`] (also used as QUIC application close codes).
pub mod codes {
    pub const MALFORMED: u16 = 1;
    pub const WRONG_VERSION: u16 = 2;
    pub const TOO_LARGE: u16 = 3;
    pub const UNKNOWN_MESSAGE: u16 = 4;
    pub const BAD_NONCE: u16 = 5;
    pub const UNAVAILABLE: u16 = 6;
    pub const INTERNAL: u16 = 7;
    /// The responder is at its evidence capacity (queue full, or this connection already has
    /// a request in flight): nothing was done; ask again later.
    pub const BUSY: u16 = 8;
    /// The responder answers evidence only to pinned probers (`[access] evidence = "pinned"`)
    /// and this request's signature is missing, invalid, or by a key it does not know.
    pub const UNAUTHORIZED: u16 = 9;
    /// This peer exceeded its request rate: nothing was done.
    pub const RATE_LIMITED: u16 = 10;
}
