//! The entry points of the fuzz targets, shared with `tests/fuzz_corpus.rs`, which feeds the
//! seed corpus (`fuzz/seeds/TARGET/`) through them in a plain `cargo test` (no nightly): one
//! function per target, each must never panic on any input. Where a decoder accepts an
//! input, the target also checks that the encoding round-trips.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use locus_analysis::verify::bundle::{self as bundle, EvidencePolicy, VerifyInputs};
use locus_analysis::verify::eventlog;
use locus_analysis::verify::tdx::{self, Collateral, TcbStatus, TrustRoot};
use locus_analysis::verify::tpm;
use locus_proto::anchor::AnchorReport;
use locus_proto::frame::{self, Frame, MessageKind, MAX_BODY_LEN};
use locus_proto::messages::{
    ErrorMessage, EvidenceRequest, EvidenceResponse, HelloRequest, HelloResponse, KeysRequest,
    KeysResponse, TranscriptRequest, TranscriptResponse, UdpEchoRequest, UdpEchoResponse,
};
use locus_proto::udp_echo::{self, EchoKeys, ServerSession, UdpAnswer, UdpChallenge};
use locus_proto::{EchoAnswer, EchoChallenge};

/// A target's entry point.
pub type Entry = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, Entry)] = &[
    ("bundle", bundle),
    ("frames", frames),
    ("datagrams", datagrams),
    ("anchor_report", anchor_report),
    ("event_log", event_log),
    ("tpm_attest", tpm_attest),
    ("policy_toml", policy_toml),
];

const COLLATERAL: &[u8] = include_bytes!("../../tests/vectors/dcap-qvl/tdx_quote_collateral.json");
/// Inside the sample collateral's validity, so fuzzed quotes reach the deep checks.
const AT: u64 = 1_752_919_234;

fn policy() -> &'static EvidencePolicy {
    static P: OnceLock<EvidencePolicy> = OnceLock::new();
    P.get_or_init(|| {
        let collateral: Collateral =
            tdx::collateral_from_json(COLLATERAL).expect("vendored collateral");
        EvidencePolicy {
            requirements: bundle::PolicyFile::offline_checks(),
            nonce_issuer: "fuzz".into(),
            nonce_max_age_secs: 300,
            ek_roots: Vec::new(),
            ek_intermediates: Vec::new(),
            tdx_root: TrustRoot::IntelSgx,
            tdx_collateral: Some(collateral),
            pcr_reference: BTreeMap::new(),
            mrtd_reference: None,
            rtmr_reference: BTreeMap::new(),
            td_attributes_reference: None,
            xfam_reference: None,
            mr_config_id_reference: [0; 48],
            accept_tcb: vec![TcbStatus::UpToDate],
            unpinned_code: true,
            unpinned: Vec::new(),
            max_tpm_cheap_rtt_ns: None,
            max_tpm_chain_rtt_ns: None,
            min_binding_version: 1,
            anchors: None,
        }
    })
}

/// `verify_bundle_bytes`: a stored bundle (CBOR) through every check.
pub fn bundle(data: &[u8]) {
    let inputs = VerifyInputs {
        now_unix: AT,
        nonce_record: None,
        peer_spki: None,
    };
    let report = bundle::verify_bundle_bytes(data, policy(), &inputs);
    // No nonce record: the bundle can never be valid.
    assert!(!report.checks.is_empty());
}

fn round_trip<T>(data: &[u8], kind: MessageKind)
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(m) = frame::decode::<T>(data, kind, MAX_BODY_LEN) {
        let again = frame::encode(kind, &m);
        // Strict decoding: an accepted frame has one encoding, the one it came in.
        assert_eq!(again, data, "{kind:?} re-encodes differently");
        assert_eq!(frame::decode::<T>(&again, kind, MAX_BODY_LEN).unwrap(), m);
    }
}

/// Stream frames: the header, then the body as every request and answer either end decodes.
pub fn frames(data: &[u8]) {
    let _ = Frame::decode_header(data, MAX_BODY_LEN);
    round_trip::<EvidenceRequest>(data, MessageKind::EvidenceRequest);
    round_trip::<EvidenceResponse>(data, MessageKind::EvidenceResponse);
    round_trip::<TranscriptRequest>(data, MessageKind::TranscriptRequest);
    round_trip::<TranscriptResponse>(data, MessageKind::TranscriptResponse);
    round_trip::<KeysRequest>(data, MessageKind::KeysRequest);
    round_trip::<KeysResponse>(data, MessageKind::KeysResponse);
    round_trip::<HelloRequest>(data, MessageKind::HelloRequest);
    round_trip::<HelloResponse>(data, MessageKind::HelloResponse);
    round_trip::<UdpEchoRequest>(data, MessageKind::UdpEchoRequest);
    round_trip::<UdpEchoResponse>(data, MessageKind::UdpEchoResponse);
    round_trip::<ErrorMessage>(data, MessageKind::Error);
}

/// Echo datagrams: challenges (responder) and answers (prober).
pub fn datagrams(data: &[u8]) {
    if let Ok(c) = EchoChallenge::decode(data) {
        assert_eq!(c.encode()[..], data[..]);
    }
    if let Ok(a) = EchoAnswer::decode(data) {
        assert_eq!(a.encode()[..], data[..]);
    }
    // UDP echo datagrams under the seeds' key ([7; 64]): what authenticates re-encodes.
    let keys = EchoKeys::from_exporter(&[7; udp_echo::EXPORTER_LEN]);
    let _ = udp_echo::challenge_session(data);
    let _ = udp_echo::answer_session(data);
    if let Ok(c) = UdpChallenge::decode(data, &keys) {
        assert_eq!(c.encode(&keys)[..], data[..]);
        let mut s = ServerSession::new(c.session, keys.clone());
        assert!(s.on_challenge(0, 1, data).is_ok());
    }
    if let Ok(a) = UdpAnswer::decode(data, &keys, |_| Some([0; 32])) {
        assert_eq!(a.encode(&keys, &[0; 32])[..], data[..]);
    }
}

/// Anchor reports as bundles carry them (strict CBOR), and their canonical digest.
pub fn anchor_report(data: &[u8]) {
    if let Ok(r) = locus_proto::cbor::decode_canonical::<AnchorReport>(data) {
        let _ = r.digest();
        assert_eq!(
            locus_proto::cbor::encode(&r),
            data,
            "re-encodes differently"
        );
    }
}

/// TCG (crypto-agile) event logs, which CCEL logs are too, and their replay.
pub fn event_log(data: &[u8]) {
    if let Ok(log) = eventlog::parse(data) {
        let _ = log.replay(eventlog::ALG_SHA256, 24);
        let _ = log.replay(eventlog::ALG_SHA384, 24);
        let _ = log.replay_rtmrs();
        let _ = eventlog::cross_check(&log, &log);
    }
}

/// TPMS_ATTEST of a quote, TPMT_SIGNATURE, TPM2B_PUBLIC of an AK, and a signature check over
/// the same bytes when the AK parses.
pub fn tpm_attest(data: &[u8]) {
    let _ = tpm::parse_quote_attest(data);
    let _ = tpm::parse_signature(data);
    if let Ok(ak) = tpm::parse_ak_public(data) {
        let (attest, sig) = data.split_at(data.len() / 2);
        let _ = tpm::verify_signature(&ak, attest, sig);
    }
}

/// The judge's policy TOML and the evidence policy TOML (UTF-8 or not).
pub fn policy_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = locus_analysis::policy::Policy::from_toml_str(text);
    if let Ok(p) = bundle::PolicyFile::from_toml(text) {
        let _ = p.resolve(&|_| Err("no files while fuzzing".into()));
    }
}
