//! The anchor report: TLS round trips that the responder timed from inside the TEE to anchor
//! servers of its claimed site, as carried in the evidence bundle, and its digest for REPORTDATA.
//!
//! The digest is SHA-256 over a canonical byte encoding defined here (and in `docs/anchors.md`),
//! not over the serde output, so that reordering struct fields or changing the bundle's
//! serialization never changes what a quote binds.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Version of the anchor report layout and of its canonical encoding that responders write:
/// 2 names the clocksource the round trips were timed with.
pub const ANCHOR_REPORT_VERSION: u16 = 2;

/// The first version, without the clocksource; verifiers refuse it unless their policy says
/// otherwise.
pub const ANCHOR_REPORT_V1: u16 = 1;

/// A report whose measurement was shared by a batch of evidence requests: version 2 plus
/// [`AnchorReport::batch`], the proof that this report's nonce is in the batch root the
/// ClientHello randoms were derived from (`docs/binding.md`, "Batched anchor measurements").
/// A batch of one is written as version 2, exactly as before batching existed.
pub const ANCHOR_REPORT_BATCHED: u16 = 3;

/// The one clocksource whose readings the host cannot make shorter inside a TD: the TDX module
/// virtualises the TSC, while `kvm-clock`, `hpet` and the like are host-controlled.
pub const TSC_CLOCKSOURCE: &str = "tsc";

/// Domain tag that starts the canonical encoding hashed by [`AnchorReport::digest`].
pub const REPORT_DIGEST_TAG: &[u8] = b"locus/anchor-report/v1\0";

/// Domain tag of the ClientHello.random derivation, see [`derive_client_random`].
pub const CLIENT_RANDOM_TAG: &[u8] = b"locus/anchor-client-random/v1\0";

/// Domain tag of the ClientHello.random derivation from a batch root, see
/// [`derive_batch_client_random`].
pub const BATCH_CLIENT_RANDOM_TAG: &[u8] = b"locus/anchor-client-random/batch/v1\0";

/// Domain tag of a nonce's leaf value in a batch, see [`batch_leaf`].
pub const BATCH_LEAF_TAG: &[u8] = b"locus/anchor-batch/leaf/v1\0";

/// The ClientHello.random the responder must send to anchor number `index` (position in the
/// report) named `name`, for challenge `nonce`:
/// `SHA-256(CLIENT_RANDOM_TAG | len(nonce):u32 | nonce | index:u32 | len(name):u32 | name)`.
///
/// The anchor's CertificateVerify signs a transcript that starts with this ClientHello, so a
/// valid signature shows the handshake happened after the nonce was issued.
pub fn derive_client_random(nonce: &[u8], index: u32, name: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CLIENT_RANDOM_TAG);
    put_bytes_into(&mut h, nonce);
    h.update(index.to_be_bytes());
    put_bytes_into(&mut h, name.as_bytes());
    h.finalize().into()
}

/// The ClientHello.random for anchor `index` named `name` in a measurement shared by a batch
/// whose Merkle root ([`crate::merkle`] over [`batch_leaf`] values) is `root`:
/// `SHA-256(BATCH_CLIENT_RANDOM_TAG | 64:u32 | root | index:u32 | len(name):u32 | name)`.
///
/// The root commits to every nonce of the batch, so the anchor's signature over a ClientHello
/// carrying this random shows the handshake happened after each of them was issued. Its own
/// tag keeps it apart from [`derive_client_random`] of a nonce that happens to equal a root.
pub fn derive_batch_client_random(root: &[u8; 64], index: u32, name: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(BATCH_CLIENT_RANDOM_TAG);
    put_bytes_into(&mut h, root);
    h.update(index.to_be_bytes());
    put_bytes_into(&mut h, name.as_bytes());
    h.finalize().into()
}

/// A nonce's 64-byte value in a batch: `SHA-512(BATCH_LEAF_TAG | len(nonce):u32 | nonce)`.
pub fn batch_leaf(nonce: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(BATCH_LEAF_TAG);
    h.update(len_u32(nonce.len()).to_be_bytes());
    h.update(nonce);
    h.finalize().into()
}

/// What the ClientHello randoms of a measurement were derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness<'a> {
    /// One request's challenge nonce ([`derive_client_random`]).
    Nonce(&'a [u8]),
    /// The Merkle root over a batch's nonces ([`derive_batch_client_random`]).
    BatchRoot(&'a [u8; 64]),
}

impl Freshness<'_> {
    /// The ClientHello.random for anchor `index` named `name`.
    pub fn client_random(&self, index: u32, name: &str) -> [u8; 32] {
        match self {
            Self::Nonce(n) => derive_client_random(n, index, name),
            Self::BatchRoot(r) => derive_batch_client_random(r, index, name),
        }
    }
}

fn put_bytes_into(h: &mut Sha256, bytes: &[u8]) {
    h.update(len_u32(bytes.len()).to_be_bytes());
    h.update(bytes);
}

/// Lengths in the canonical encoding are u32; a report is capped far below that by the bundle's
/// size limit, so saturating can only merge lengths of inputs that could never be stored.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Every anchor measurement made for one challenge nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorReport {
    pub version: u16,
    /// The challenge nonce the ClientHello randoms were derived from.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// The kernel clocksource the round trips were timed with
    /// (`/sys/devices/system/clocksource/clocksource0/current_clocksource`). Version 2 on;
    /// absent (not null) in version 1, so version 1 reports keep their one encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clocksource: Option<String>,
    /// One entry per requested anchor, in request order (the index feeds the random derivation).
    pub anchors: Vec<AnchorResult>,
    /// Version 3 only: the measurement was shared by a batch, and the randoms were derived
    /// from its root, which this proof shows to include `nonce`. Absent (not null) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<AnchorBatch>,
}

/// Where a report's nonce sits in the batch that shared one anchor measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorBatch {
    /// The Merkle root ([`crate::merkle`]) over the batch's [`batch_leaf`] values, in arrival
    /// order: what the ClientHello randoms were derived from. 64 bytes.
    #[serde(with = "serde_bytes")]
    pub root: Vec<u8>,
    /// Index of this report's nonce in the batch.
    pub index: u64,
    /// Number of nonces in the batch.
    pub size: u64,
    /// Sibling hashes (64 bytes each), leaf level first.
    pub path: Vec<serde_bytes::ByteBuf>,
}

/// The measurement of one anchor. A failed anchor keeps what was measured before it failed, and
/// `failure` says why; its round trips are never good samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorResult {
    /// Anchor name from the configuration (the verifier looks up its location by this name).
    pub name: String,
    /// `host:port` as configured (the address connected to, e.g. a lab relay).
    pub target: String,
    /// The socket address actually connected to, once resolved.
    #[serde(default)]
    pub peer_addr: Option<String>,
    /// Server name sent in SNI and checked in the certificate.
    pub sni: String,
    /// How many application round trips were asked for.
    pub round_trips_requested: u32,
    /// TCP connect time (SYN to SYN-ACK, as the kernel reports it). Not authenticated: a TCP
    /// proxy next to the TD could answer it, so verifiers must not use it as a distance bound.
    #[serde(default)]
    pub tcp_connect_ns: Option<u64>,
    /// ClientHello written to the first byte of the server's first flight read.
    #[serde(default)]
    pub handshake_rtt_ns: Option<u64>,
    /// Authenticated HTTP/1.1 `HEAD` round trips on the established TLS connection, in order.
    #[serde(default)]
    pub round_trips_ns: Vec<u64>,
    /// Minimum of `round_trips_ns` (None when there is none).
    #[serde(default)]
    pub min_rtt_ns: Option<u64>,
    /// What a verifier needs to re-check the handshake offline.
    #[serde(default)]
    pub tls: Option<TlsCapture>,
    /// Why this anchor did not yield a complete measurement.
    #[serde(default)]
    pub failure: Option<AnchorFailure>,
}

/// The handshake as recorded by the responder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCapture {
    /// ClientHello.random as sent (must equal [`derive_client_random`]).
    #[serde(with = "serde_bytes")]
    pub client_random: Vec<u8>,
    /// Negotiated TLS 1.3 cipher suite (IANA code).
    pub cipher_suite: u16,
    /// Raw TLS records the client wrote before the server answered (the ClientHello).
    #[serde(with = "serde_bytes")]
    pub client_hello: Vec<u8>,
    /// Raw TLS records read from the server until the handshake completed (ServerHello, and the
    /// encrypted EncryptedExtensions, Certificate, CertificateVerify, Finished).
    #[serde(with = "serde_bytes")]
    pub server_flight: Vec<u8>,
    /// SERVER_HANDSHAKE_TRAFFIC_SECRET from the key log: decrypts the server's handshake
    /// messages only (no application data).
    #[serde(with = "serde_bytes")]
    pub server_handshake_secret: Vec<u8>,
    /// Server certificate chain, DER, leaf first.
    #[serde(default)]
    pub cert_chain: Vec<serde_bytes::ByteBuf>,
    /// The CertificateVerify the client checked.
    #[serde(default)]
    pub cert_verify: Option<CertVerify>,
}

/// A TLS 1.3 CertificateVerify as the client verified it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertVerify {
    /// SignatureScheme (IANA code).
    pub scheme: u16,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// The signed content: 64 spaces, the context string, 0, transcript hash.
    #[serde(with = "serde_bytes")]
    pub signed_message: Vec<u8>,
}

/// Why an anchor measurement is incomplete. Recorded, never turned into a sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnchorFailure {
    /// The host name did not resolve.
    Resolve { detail: String },
    /// The anchor refused the TCP connection.
    Refused,
    /// No TCP connection within the connect timeout.
    ConnectTimeout { timeout_ms: u64 },
    /// Another TCP connect error.
    Connect { detail: String },
    /// The handshake did not finish within its timeout.
    HandshakeTimeout { timeout_ms: u64 },
    /// The server's certificate (chain, pin, name or signature) was rejected.
    Certificate { detail: String },
    /// Another TLS error (alert, protocol violation, no TLS 1.3).
    Tls { detail: String },
    /// The ClientHello did not carry the nonce-derived random: no freshness, no samples.
    FreshnessNotBound,
    /// Round trip `index` got no complete answer within its timeout.
    RoundTripTimeout { index: u32, timeout_ms: u64 },
    /// The server sent more than `limit` bytes in `phase` ("handshake" or "response").
    Oversized { phase: String, limit: u32 },
    /// The server's answer to round trip `index` is not a usable HTTP/1.1 response.
    BadResponse { index: u32, detail: String },
    /// The server closed the connection during round trip `index`.
    Closed { index: u32 },
    /// Any other I/O error.
    Io { detail: String },
    /// The TD's clocksource is not one the responder may time anchors with (not `tsc`, and not
    /// allowed in its configuration): nothing was measured.
    Clocksource { found: String },
}

impl AnchorFailure {
    /// Stable code of the variant in the canonical encoding.
    pub fn code(&self) -> u8 {
        match self {
            Self::Resolve { .. } => 1,
            Self::Refused => 2,
            Self::ConnectTimeout { .. } => 3,
            Self::Connect { .. } => 4,
            Self::HandshakeTimeout { .. } => 5,
            Self::Certificate { .. } => 6,
            Self::Tls { .. } => 7,
            Self::FreshnessNotBound => 8,
            Self::RoundTripTimeout { .. } => 9,
            Self::Oversized { .. } => 10,
            Self::BadResponse { .. } => 11,
            Self::Closed { .. } => 12,
            Self::Io { .. } => 13,
            Self::Clocksource { .. } => 14,
        }
    }

    fn encode(&self, e: &mut Encoder) {
        e.u8(self.code());
        match self {
            Self::Refused | Self::FreshnessNotBound => {}
            Self::Resolve { detail }
            | Self::Connect { detail }
            | Self::Certificate { detail }
            | Self::Tls { detail }
            | Self::Io { detail }
            | Self::Clocksource { found: detail } => e.str(detail),
            Self::ConnectTimeout { timeout_ms } | Self::HandshakeTimeout { timeout_ms } => {
                e.u64(*timeout_ms)
            }
            Self::RoundTripTimeout { index, timeout_ms } => {
                e.u32(*index);
                e.u64(*timeout_ms);
            }
            Self::Oversized { phase, limit } => {
                e.str(phase);
                e.u32(*limit);
            }
            Self::BadResponse { index, detail } => {
                e.u32(*index);
                e.str(detail);
            }
            Self::Closed { index } => e.u32(*index),
        }
    }
}

impl std::fmt::Display for AnchorFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Resolve { detail } => write!(f, "name did not resolve: {detail}"),
            Self::Refused => write!(f, "connection refused"),
            Self::ConnectTimeout { timeout_ms } => {
                write!(f, "no TCP connection within {timeout_ms} ms")
            }
            Self::Connect { detail } => write!(f, "TCP connect failed: {detail}"),
            Self::HandshakeTimeout { timeout_ms } => {
                write!(f, "TLS handshake did not finish within {timeout_ms} ms")
            }
            Self::Certificate { detail } => write!(f, "server certificate rejected: {detail}"),
            Self::Tls { detail } => write!(f, "TLS error: {detail}"),
            Self::FreshnessNotBound => {
                write!(f, "the ClientHello did not carry the nonce-derived random")
            }
            Self::RoundTripTimeout { index, timeout_ms } => {
                write!(f, "round trip {index} unanswered within {timeout_ms} ms")
            }
            Self::Oversized { phase, limit } => {
                write!(f, "server sent more than {limit} bytes in the {phase}")
            }
            Self::BadResponse { index, detail } => {
                write!(f, "bad HTTP response to round trip {index}: {detail}")
            }
            Self::Closed { index } => {
                write!(f, "server closed the connection during round trip {index}")
            }
            Self::Io { detail } => write!(f, "I/O error: {detail}"),
            Self::Clocksource { found } => write!(
                f,
                "the TD's clocksource is {found}, not one anchors may be timed with"
            ),
        }
    }
}

impl AnchorResult {
    /// The anchor's usable minimum RTT: only when it completed without failure and the TLS
    /// capture is present.
    pub fn good_min_rtt_ns(&self) -> Option<u64> {
        if self.failure.is_some() || self.tls.is_none() {
            return None;
        }
        self.min_rtt_ns
    }

    fn encode(&self, e: &mut Encoder) {
        e.str(&self.name);
        e.str(&self.target);
        e.opt(self.peer_addr.as_ref(), |e, s| e.str(s));
        e.str(&self.sni);
        e.u32(self.round_trips_requested);
        e.opt(self.tcp_connect_ns.as_ref(), |e, v| e.u64(*v));
        e.opt(self.handshake_rtt_ns.as_ref(), |e, v| e.u64(*v));
        e.u32(len_u32(self.round_trips_ns.len()));
        for v in &self.round_trips_ns {
            e.u64(*v);
        }
        e.opt(self.min_rtt_ns.as_ref(), |e, v| e.u64(*v));
        e.opt(self.tls.as_ref(), |e, t| t.encode(e));
        e.opt(self.failure.as_ref(), |e, f| f.encode(e));
    }
}

impl TlsCapture {
    /// SHA-256 of each certificate of the chain, leaf first.
    pub fn cert_chain_sha256(&self) -> Vec<[u8; 32]> {
        self.cert_chain
            .iter()
            .map(|c| Sha256::digest(c).into())
            .collect()
    }

    fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.client_random);
        e.u16(self.cipher_suite);
        e.bytes(&self.client_hello);
        e.bytes(&self.server_flight);
        e.bytes(&self.server_handshake_secret);
        e.u32(len_u32(self.cert_chain.len()));
        for c in &self.cert_chain {
            e.bytes(c);
        }
        e.opt(self.cert_verify.as_ref(), |e, cv| {
            e.u16(cv.scheme);
            e.bytes(&cv.signature);
            e.bytes(&cv.signed_message);
        });
    }
}

impl AnchorReport {
    /// An empty report for `nonce`, timed with `clocksource`.
    pub fn new(nonce: &[u8], clocksource: &str) -> Self {
        Self {
            version: ANCHOR_REPORT_VERSION,
            nonce: nonce.to_vec(),
            clocksource: Some(clocksource.to_string()),
            anchors: Vec::new(),
            batch: None,
        }
    }

    /// One batch member's report of a measurement shared by the batch: `shared`'s clocksource
    /// and anchors, with `nonce` and its proof of inclusion in `root` (version 3).
    pub fn batch_member(
        shared: &AnchorReport,
        nonce: &[u8],
        root: &[u8; 64],
        proof: crate::merkle::InclusionProof,
    ) -> Self {
        Self {
            version: ANCHOR_REPORT_BATCHED,
            nonce: nonce.to_vec(),
            clocksource: shared.clocksource.clone(),
            anchors: shared.anchors.clone(),
            batch: Some(AnchorBatch {
                root: root.to_vec(),
                index: proof.index,
                size: proof.size,
                path: proof
                    .path
                    .iter()
                    .map(|h| serde_bytes::ByteBuf::from(h.to_vec()))
                    .collect(),
            }),
        }
    }

    /// The canonical encoding (layout in the module docs of `docs/anchors.md`): the domain tag,
    /// then every field in declaration order, integers big-endian, byte and text strings as
    /// `len:u32 | bytes`, lists as `count:u32 | items`, options as `0x00` or `0x01 | value`,
    /// failures as `code:u8 | fields`. From version 2 the clocksource follows the nonce (a
    /// version 2 report without one encodes it as empty; verifiers refuse that). From version 3
    /// the batch proof follows the anchors, as an option (`root | index:u64 | size:u64 |
    /// count:u32 | hashes`); earlier versions encode no batch (verifiers refuse one there).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut e = Encoder(Vec::with_capacity(4096));
        e.raw(REPORT_DIGEST_TAG);
        e.u16(self.version);
        e.bytes(&self.nonce);
        if self.version >= 2 {
            e.str(self.clocksource.as_deref().unwrap_or_default());
        }
        e.u32(len_u32(self.anchors.len()));
        for a in &self.anchors {
            a.encode(&mut e);
        }
        if self.version >= ANCHOR_REPORT_BATCHED {
            e.opt(self.batch.as_ref(), |e, b| {
                e.bytes(&b.root);
                e.u64(b.index);
                e.u64(b.size);
                e.u32(len_u32(b.path.len()));
                for h in &b.path {
                    e.bytes(h);
                }
            });
        }
        e.0
    }

    /// SHA-256 of [`Self::canonical_bytes`]: the value bound into REPORTDATA.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }
}

struct Encoder(Vec<u8>);

impl Encoder {
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.raw(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.raw(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.raw(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(len_u32(b.len()));
        self.raw(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AnchorReport {
        let nonce = [7u8; 32];
        let mut r = AnchorReport::new(&nonce, TSC_CLOCKSOURCE);
        r.anchors.push(AnchorResult {
            name: "fra-1".into(),
            target: "127.0.1.1:443".into(),
            peer_addr: Some("127.0.1.1:443".into()),
            sni: "fra-1.anchor.lab".into(),
            round_trips_requested: 2,
            tcp_connect_ns: Some(100_000),
            handshake_rtt_ns: Some(900_000),
            round_trips_ns: vec![300_000, 250_000],
            min_rtt_ns: Some(250_000),
            tls: Some(TlsCapture {
                client_random: derive_client_random(&nonce, 0, "fra-1").to_vec(),
                cipher_suite: 0x1301,
                client_hello: vec![22, 3, 1, 0, 1, 1],
                server_flight: vec![22, 3, 3, 0, 1, 2],
                server_handshake_secret: vec![9; 32],
                cert_chain: vec![serde_bytes::ByteBuf::from(vec![0x30, 0])],
                cert_verify: Some(CertVerify {
                    scheme: 0x0403,
                    signature: vec![1, 2, 3],
                    signed_message: vec![0x20; 64],
                }),
            }),
            failure: None,
        });
        r.anchors.push(AnchorResult {
            name: "ams-1".into(),
            target: "127.0.2.1:443".into(),
            peer_addr: None,
            sni: "ams-1.anchor.lab".into(),
            round_trips_requested: 2,
            tcp_connect_ns: None,
            handshake_rtt_ns: None,
            round_trips_ns: vec![],
            min_rtt_ns: None,
            tls: None,
            failure: Some(AnchorFailure::Refused),
        });
        r
    }

    #[test]
    fn digest_is_stable_and_changes_with_every_field() {
        let r = sample();
        assert_eq!(r.digest(), sample().digest());
        let mut t = r.clone();
        t.anchors[0].round_trips_ns[1] = 1;
        assert_ne!(t.digest(), r.digest());
        let mut t = r.clone();
        t.nonce[0] ^= 1;
        assert_ne!(t.digest(), r.digest());
        let mut t = r.clone();
        t.anchors[1].failure = Some(AnchorFailure::Closed { index: 0 });
        assert_ne!(t.digest(), r.digest());
        let mut t = r.clone();
        t.anchors[1].failure = Some(AnchorFailure::Clocksource {
            found: "hpet".into(),
        });
        assert_ne!(t.digest(), r.digest());
        let mut t = r.clone();
        t.anchors[0].tls.as_mut().unwrap().cert_chain[0][1] = 1;
        assert_ne!(t.digest(), r.digest());
    }

    #[test]
    fn length_prefixes_keep_adjacent_strings_apart() {
        let mut a = sample();
        let mut b = sample();
        a.anchors[0].name = "ab".into();
        a.anchors[0].target = "c".into();
        b.anchors[0].name = "a".into();
        b.anchors[0].target = "bc".into();
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn canonical_prefix_layout() {
        let r = AnchorReport::new(&[1, 2], "tsc");
        let bytes = r.canonical_bytes();
        let mut expected = REPORT_DIGEST_TAG.to_vec();
        // version 2, nonce, clocksource "tsc", no anchors
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 2, 1, 2, 0, 0, 0, 3, b't', b's', b'c']);
        expected.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(bytes, expected);
        // version 1 has no clocksource
        let v1 = AnchorReport {
            version: ANCHOR_REPORT_V1,
            clocksource: None,
            ..r
        };
        let mut expected = REPORT_DIGEST_TAG.to_vec();
        expected.extend_from_slice(&[0, 1, 0, 0, 0, 2, 1, 2, 0, 0, 0, 0]);
        assert_eq!(v1.canonical_bytes(), expected);
    }

    #[test]
    fn the_clocksource_is_bound_and_absent_from_version_1_encodings() {
        let r = sample();
        let mut t = r.clone();
        t.clocksource = Some("kvm-clock".into());
        assert_ne!(
            t.digest(),
            r.digest(),
            "a changed clocksource changes the digest"
        );
        let v1 = AnchorReport {
            version: ANCHOR_REPORT_V1,
            clocksource: None,
            ..r.clone()
        };
        let cbor = crate::cbor::encode(&v1);
        let back: AnchorReport = crate::cbor::decode_canonical(&cbor).unwrap();
        assert_eq!(back, v1);
        let text = String::from_utf8_lossy(&cbor);
        assert!(!text.contains("clocksource"), "no null field in version 1");
    }

    #[test]
    fn client_random_depends_on_nonce_index_and_name() {
        let n = [1u8; 32];
        let base = derive_client_random(&n, 0, "a");
        assert_ne!(base, derive_client_random(&[2u8; 32], 0, "a"));
        assert_ne!(base, derive_client_random(&n, 1, "a"));
        assert_ne!(base, derive_client_random(&n, 0, "b"));
    }

    fn batched() -> AnchorReport {
        let leaves = [batch_leaf(&[7; 32]), batch_leaf(&[8; 32])];
        let (root, paths) = crate::merkle::batch_root(&leaves).unwrap();
        let proof = crate::merkle::InclusionProof {
            index: 0,
            size: 2,
            path: paths[0].clone(),
        };
        AnchorReport::batch_member(&sample(), &[7; 32], &root, proof)
    }

    #[test]
    fn the_batch_proof_is_bound_and_absent_from_version_2_encodings() {
        let r = batched();
        assert_eq!(r.version, ANCHOR_REPORT_BATCHED);
        assert_eq!(r.anchors, sample().anchors);
        for tamper in [
            |b: &mut AnchorBatch| b.root[0] ^= 1,
            |b: &mut AnchorBatch| b.index = 1,
            |b: &mut AnchorBatch| b.size = 3,
            |b: &mut AnchorBatch| b.path[0][0] ^= 1,
        ] {
            let mut t = r.clone();
            tamper(t.batch.as_mut().unwrap());
            assert_ne!(t.digest(), r.digest());
        }
        let mut no_batch = r.clone();
        no_batch.batch = None;
        assert_ne!(no_batch.digest(), r.digest());
        // Version 2 encodes as before batching: no key, nothing in the canonical bytes.
        let v2 = sample();
        let cbor = crate::cbor::encode(&v2);
        assert!(!String::from_utf8_lossy(&cbor).contains("batch"));
        let back: AnchorReport = crate::cbor::decode_canonical(&crate::cbor::encode(&r)).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn batch_randoms_are_apart_from_nonce_randoms() {
        let root = [1u8; 64];
        let base = derive_batch_client_random(&root, 0, "a");
        // The same bytes as a nonce give another random: the tags differ.
        assert_ne!(base, derive_client_random(&root, 0, "a"));
        assert_ne!(base, derive_batch_client_random(&[2; 64], 0, "a"));
        assert_ne!(base, derive_batch_client_random(&root, 1, "a"));
        assert_ne!(base, derive_batch_client_random(&root, 0, "b"));
        assert_eq!(Freshness::BatchRoot(&root).client_random(0, "a"), base);
        assert_ne!(batch_leaf(&[1; 32]), batch_leaf(&[1; 31]));
    }

    #[test]
    fn cbor_round_trip() {
        let r = sample();
        let mut buf = Vec::new();
        ciborium::into_writer(&r, &mut buf).unwrap();
        let back: AnchorReport = ciborium::from_reader(buf.as_slice()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.digest(), r.digest());
    }
}
