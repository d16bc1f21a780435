//! The entry points of the fuzz targets, shared with `tests/fuzz_corpus.rs`, which feeds the
//! seed corpus (`fuzz/seeds/TARGET/`) through them in a plain `cargo test` (no nightly): one
//! function per target, each must never panic on any input. Where a decoder accepts an
//! input, the target also checks that the encoding round-trips.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
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
use locus_proto::prober::AnswerOutcome;
use locus_proto::udp_echo::table::{SessionTable, TableCounts, TableLimits};
use locus_proto::udp_echo::{
    self, ClientSession, EchoKeys, ServerSession, UdpAnswer, UdpChallenge, UdpEchoError,
};
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

/// The UDP echo session of the seeds (`udp-*.bin`), keyed with [`udp_keys`], granted to
/// [`PROBER`].
const UDP_SESSION: u64 = 0x0123_4567_89ab_cdef;
const PROBER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

/// The seeds' session keys (exporter output `[7; 64]`).
fn udp_keys() -> EchoKeys {
    EchoKeys::from_exporter(&[7; udp_echo::EXPORTER_LEN])
}

/// Echo datagrams: challenges (responder) and answers (prober), alone and through the session
/// state each end keeps; then the same bytes as a script of challenges ([`udp_script`]).
pub fn datagrams(data: &[u8]) {
    if let Ok(c) = EchoChallenge::decode(data) {
        assert_eq!(c.encode()[..], data[..]);
    }
    if let Ok(a) = EchoAnswer::decode(data) {
        assert_eq!(a.encode()[..], data[..]);
    }
    // UDP echo datagrams under the seeds' key: what authenticates re-encodes.
    let keys = udp_keys();
    let _ = udp_echo::challenge_session(data);
    let _ = udp_echo::answer_session(data);
    let challenge = UdpChallenge::decode(data, &keys);
    if let Ok(c) = challenge {
        assert_eq!(c.encode(&keys)[..], data[..]);
        let mut s = ServerSession::new(c.session, keys.clone());
        assert!(s.on_challenge(0, 1, data).is_ok());
    }
    if let Ok(a) = UdpAnswer::decode(data, &keys, |_| Some([0; 32])) {
        assert_eq!(a.encode(&keys, &[0; 32])[..], data[..]);
    }
    // The responder's table as it serves: session lookup, peer, MAC, replay window, rates.
    let mut table = SessionTable::new(udp_limits());
    table
        .register(0, UDP_SESSION, PROBER, keys.clone())
        .expect("an empty table grants");
    match table.on_datagram(0, 1, PROBER, data) {
        Ok(answer) => {
            let c = challenge.expect("only an authenticated challenge is answered");
            let a = UdpAnswer::decode(&answer, &keys, |_| Some(c.nonce)).expect("answer");
            assert_eq!(
                (a.session, a.counter, a.inside_ns),
                (c.session, c.counter, 1)
            );
        }
        Err(_) => {
            assert!(challenge.map_or(true, |c| c.session != UDP_SESSION || c.counter == u64::MAX))
        }
    }
    // The prober's session with counters 0 and 1 pending under nonce `[0; 32]` (the seed
    // answers 1): an authenticated answer is a sample once, then not pending; once its
    // challenge was counted lost, it is late.
    let client = || {
        let mut s = ClientSession::new(UDP_SESSION, keys.clone(), 1_000);
        for _ in 0..2 {
            s.issue(0, [0; 32]);
        }
        s
    };
    let mut on_time = client();
    let first = on_time.on_answer(10, data);
    if let Ok(outcome) = &first {
        assert!(
            matches!(outcome, AnswerOutcome::Sample(s) if s.seq < 2 && s.rtt_ns == 10),
            "{outcome:?}"
        );
        assert!(matches!(
            on_time.on_answer(11, data),
            Err(UdpEchoError::NotPending { .. })
        ));
    }
    let mut late = client();
    assert_eq!(late.tracker_mut().expire(1_000), 2);
    match late.on_answer(2_000, data) {
        Ok(outcome) => assert!(
            first.is_ok() && matches!(outcome, AnswerOutcome::Late { rtt_ns: 2_000, .. }),
            "{outcome:?}"
        ),
        Err(_) => assert!(first.is_err()),
    }
    udp_script(data);
}

/// Lifetime of a session in [`udp_script`]: about 16 of its longest steps.
const UDP_LIFETIME_NS: u64 = 4_000_000_000;
/// Counters below the newest one a responder's session tells from replays (32 bytes a
/// session, `udp_echo::SESSION_WINDOW_WORDS`).
const UDP_WINDOW: u64 = 256;

fn udp_limits() -> TableLimits {
    TableLimits {
        max_sessions: 4,
        max_sessions_per_ip: 2,
        lifetime_ns: UDP_LIFETIME_NS,
        // Bursts of 5: a few steps at one instant reach the limit.
        per_session_per_sec: Some(50.0),
        per_ip_per_sec: Some(100.0),
        unproven_per_sec: Some(1000.0),
    }
}

/// `data` as up to 128 steps of 9 bytes, `op:u8 | arg:u64` (big-endian), each one challenge
/// sent to a session table holding [`UDP_SESSION`]; every outcome is checked against a plain
/// model (an unbounded set of counters for the replay window). `op`: bits 0-1 pick the
/// datagram (0: the session's, from its peer; 1: from another address; 2: of an unknown
/// session; 3: MAC'd with other keys), bits 2-6 advance the clock by that many 2^23 ns, bit 7
/// makes the counter `arg` (as `i64`, modulo 300) relative to one past the newest counter seen
/// instead of `arg` itself. Authenticated challenges are generated here, so the fuzzer
/// reaches the window's edges (u64::MAX, the window's lower bound) that it could never MAC.
/// Returns the table's counts (checked against the model's).
pub fn udp_script(data: &[u8]) -> TableCounts {
    let keys = udp_keys();
    let forger = EchoKeys::from_exporter(&[8; udp_echo::EXPORTER_LEN]);
    let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut table = SessionTable::new(udp_limits());
    table
        .register(0, UDP_SESSION, PROBER, keys.clone())
        .expect("an empty table grants");
    let mut want = TableCounts {
        registered: 1,
        ..TableCounts::default()
    };
    // One past the newest counter seen, 0 before any; every counter seen.
    let mut top = 0u64;
    let mut seen = HashSet::new();
    let mut held = true;
    let mut now = 0u64;
    for step in data.chunks_exact(9).take(128) {
        let op = step[0];
        let mut arg = [0u8; 8];
        arg.copy_from_slice(&step[1..]);
        let arg = u64::from_be_bytes(arg);
        now += u64::from((op >> 2) & 0x1f) << 23;
        let counter = if op & 0x80 != 0 {
            top.saturating_add_signed(arg as i64 % 300)
        } else {
            arg
        };
        let nonce = [op; 32];
        let (session, from, mac) = match op & 3 {
            0 => (UDP_SESSION, PROBER, &keys),
            1 => (UDP_SESSION, elsewhere, &keys),
            2 => (UDP_SESSION ^ 1, PROBER, &keys),
            _ => (UDP_SESSION, PROBER, &forger),
        };
        let datagram = UdpChallenge {
            session,
            counter,
            nonce,
        }
        .encode(mac);
        let got = table.on_datagram(now, now + 100, from, &datagram);
        let live = now < UDP_LIFETIME_NS;
        if session != UDP_SESSION || !live {
            if held && !live && session == UDP_SESSION {
                held = false;
                want.expired += 1;
            }
            want.unknown_session += 1;
            assert_eq!(got, Err(UdpEchoError::UnknownSession { session }));
            continue;
        }
        if from != PROBER {
            want.wrong_peer += 1;
            assert!(
                matches!(got, Err(UdpEchoError::WrongPeer { .. })),
                "{got:?}"
            );
            continue;
        }
        if op & 3 == 3 {
            want.bad_mac += 1;
            assert_eq!(got, Err(UdpEchoError::BadMac { session }));
            continue;
        }
        // The window: new unless seen or more than UDP_WINDOW below `top`; u64::MAX, which
        // has no successor to become `top`, is never new.
        let new = if counter >= top {
            match counter.checked_add(1) {
                Some(next) => {
                    top = next;
                    seen.insert(counter)
                }
                None => false,
            }
        } else {
            top - counter <= UDP_WINDOW && seen.insert(counter)
        };
        match got {
            Ok(answer) => {
                assert!(new, "counter {counter} answered again (top {top})");
                let a = UdpAnswer::decode(&answer, &keys, |_| Some(nonce)).expect("answer");
                assert_eq!((a.session, a.counter, a.inside_ns), (session, counter, 100));
                assert_eq!(a.arrival, want.answered + want.rate_limited);
                want.answered += 1;
            }
            Err(UdpEchoError::RateLimited { .. }) => {
                assert!(
                    new,
                    "counter {counter} rate-limited, not refused (top {top})"
                );
                want.rate_limited += 1;
            }
            Err(UdpEchoError::Replayed { .. } | UdpEchoError::TooOld { .. }) => {
                assert!(!new, "new counter {counter} refused: {got:?} (top {top})");
                want.replayed += 1;
            }
            Err(e) => panic!("counter {counter}: {e}"),
        }
    }
    assert_eq!(table.counts(), want);
    want
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
