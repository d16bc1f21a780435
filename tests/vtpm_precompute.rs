//! Security review finding 1: the vTPM transport precomputes the AK-signed chain. The host
//! relays the real vTPM from far away; when it sees the main quote's response, the far side
//! asks the real TPM for every chain link itself (no round trip to the TD), and a host-side
//! stub answers each link the TD asks for at once from that cache. Under binding version 2 each
//! link's qualifying data came from the nonce, the link index and the previous signature, all
//! visible to the transport (the nonce even when it came sealed: TPM2_ActivateCredential's
//! response crosses unencrypted), so the chain passed with a 30 ms relay. Binding version 3
//! mixes a secret the TD draws and reveals only in the bundle into every link: the cached
//! links are over other qualifying data and `vtpm_chain` fails (`VtpmChainBroken`). A relay
//! that forwards every link instead shows its delay in each (`tests/vtpm_stub.rs`).
//!
//! The stub sits between the responder's vTPM and a real swtpm on loopback (swtpm's socket
//! server takes raw TPM commands on its data channel); the control channel is passed through.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use locus_analysis::verify::bundle::{
    self as evidence, CheckId, EvidenceError, EvidencePolicy, Outcome, PolicyFile, Requirement,
    VerifyInputs,
};
use locus_proto::evidence::{EvidenceBundle, BUNDLE_VERSION};
use locus_proto::transcript::Transcript;
use locus_responder::evidence::{collect_blocking, EventLogPaths};
use locus_responder::session_key::SessionKey;
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::{Tcti, Vtpm, VtpmConfig};

/// One round trip to the far vTPM (~3 000 km of fiber).
const RELAY_DELAY: Duration = Duration::from_millis(30);
/// Bound on both timings in the policy: far above a local swtpm, below the relay's delay.
const BOUND_US: u64 = 20_000;

const TPM2_CC_GET_RANDOM: u32 = 0x0000_017b;

/// What the stub answers to TPM2_GetRandom(n): success, n zero bytes.
fn local_get_random(command: &[u8]) -> Vec<u8> {
    let n = command
        .get(10..12)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let mut r = Vec::new();
    r.extend_from_slice(&0x8001u16.to_be_bytes());
    r.extend_from_slice(&(12 + u32::from(n)).to_be_bytes());
    r.extend_from_slice(&0u32.to_be_bytes());
    r.extend_from_slice(&n.to_be_bytes());
    r.resize(r.len() + usize::from(n), 0);
    r
}

/// Reads one TPM command or response: the 10-byte header (tag, size, code) and the rest.
fn read_tpm_message(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut m = vec![0u8; 10];
    s.read_exact(&mut m)?;
    let size = u32::from_be_bytes([m[2], m[3], m[4], m[5]]) as usize;
    if !(10..=1 << 16).contains(&size) {
        return Err(std::io::Error::other(format!(
            "TPM message of {size} bytes"
        )));
    }
    m.resize(size, 0);
    s.read_exact(&mut m[10..])?;
    Ok(m)
}

const TPM2_CC_QUOTE: u32 = 0x0000_0158;
const TPM2_CC_START_AUTH_SESSION: u32 = 0x0000_0176;
const TPM2_CC_FLUSH_CONTEXT: u32 = 0x0000_0165;
/// The nonce the relay learned (in a sealed request: from the clear TPM2_ActivateCredential
/// response on the vTPM transport).
const NONCE: [u8; 32] = [9u8; 32];
/// Links the far side precomputes.
const PRECOMPUTED: u32 = 2;
const FAKE_SESSION: u32 = 0x0200_00f0;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be16(b: &[u8], at: usize) -> usize {
    u16::from_be_bytes([b[at], b[at + 1]]) as usize
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Quote command: (session handle, nonceCaller, attributes, params offset).
fn quote_session(c: &[u8]) -> (u32, Vec<u8>, u8, usize) {
    let auth_size = be32(c, 14) as usize;
    let mut at = 18;
    let handle = be32(c, at);
    at += 4;
    let n = be16(c, at);
    let nonce = c[at + 2..at + 2 + n].to_vec();
    at += 2 + n;
    let attrs = c[at];
    (handle, nonce, attrs, 18 + auth_size)
}

/// The marshalled TPMT_SIGNATURE of a TPM2_Quote response (ECDSA).
fn quote_sig(r: &[u8]) -> Vec<u8> {
    let mut at = 14; // header + parameterSize
    at += 2 + be16(r, at); // TPM2B_ATTEST
    let start = at;
    at += 4; // sigAlg, hashAlg
    for _ in 0..2 {
        at += 2 + be16(r, at);
    }
    r[start..at].to_vec()
}

/// A TPM2_Quote command under a password session for the AK `handle` over `qd`, with the
/// scheme and PCR selection bytes `tail`.
fn password_quote(handle: u32, qd: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&0x8002u16.to_be_bytes());
    c.extend_from_slice(&[0; 4]);
    c.extend_from_slice(&TPM2_CC_QUOTE.to_be_bytes());
    c.extend_from_slice(&handle.to_be_bytes());
    c.extend_from_slice(&9u32.to_be_bytes());
    c.extend_from_slice(&0x4000_0009u32.to_be_bytes());
    c.extend_from_slice(&[0, 0, 0, 0, 0]);
    c.extend_from_slice(&(qd.len() as u16).to_be_bytes());
    c.extend_from_slice(qd);
    c.extend_from_slice(tail);
    let n = c.len() as u32;
    c[2..6].copy_from_slice(&n.to_be_bytes());
    c
}

/// Re-wraps a plain quote response for the TD's (unsalted, unbound, empty-auth) HMAC session:
/// the attest encrypted with AES-128-CFB, the response HMAC computed; both keys derive from
/// the two nonces only, which the transport sees.
fn wrap_quote_response(plain: &[u8], nonce_caller: &[u8], attrs: u8) -> Vec<u8> {
    use aes::cipher::{AsyncStreamCipher, KeyIvInit};
    let nonce_tpm = [0x5au8; 32];
    let at = 14;
    let n = be16(plain, at);
    let mut attest = plain[at + 2..at + 2 + n].to_vec();
    let sig = quote_sig(plain);
    let kiv = locus_proto::credential::kdfa(&[], b"CFB", &nonce_tpm, nonce_caller, 256);
    cfb_mode::Encryptor::<aes::Aes128>::new(kiv[..16].into(), kiv[16..32].into())
        .encrypt(&mut attest);
    let mut params = Vec::new();
    params.extend_from_slice(&(attest.len() as u16).to_be_bytes());
    params.extend_from_slice(&attest);
    params.extend_from_slice(&sig);
    let mut rp = Vec::new();
    rp.extend_from_slice(&0u32.to_be_bytes());
    rp.extend_from_slice(&TPM2_CC_QUOTE.to_be_bytes());
    rp.extend_from_slice(&params);
    use sha2::Digest;
    let rp_hash = sha2::Sha256::digest(&rp);
    let mut m = rp_hash.to_vec();
    m.extend_from_slice(&nonce_tpm);
    m.extend_from_slice(nonce_caller);
    m.push(attrs);
    let hmac = hmac_sha256(&[], &m);
    let mut r = Vec::new();
    r.extend_from_slice(&0x8002u16.to_be_bytes());
    r.extend_from_slice(&[0; 4]);
    r.extend_from_slice(&0u32.to_be_bytes());
    r.extend_from_slice(&(params.len() as u32).to_be_bytes());
    r.extend_from_slice(&params);
    r.extend_from_slice(&32u16.to_be_bytes());
    r.extend_from_slice(&nonce_tpm);
    r.push(attrs);
    r.extend_from_slice(&32u16.to_be_bytes());
    r.extend_from_slice(&hmac);
    let len = r.len() as u32;
    r[2..6].copy_from_slice(&len.to_be_bytes());
    r
}

fn ok_response() -> Vec<u8> {
    let mut r = 0x8001u16.to_be_bytes().to_vec();
    r.extend_from_slice(&10u32.to_be_bytes());
    r.extend_from_slice(&0u32.to_be_bytes());
    r
}

/// The relay at the far vTPM: on the main quote it asks the real TPM for every chain link
/// itself (no round trip to the TD), and the host-side stub answers each link's session and
/// quote from that cache at once.
fn serve_data(mut client: TcpStream, upstream_port: u16) -> std::io::Result<()> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream_port))?;
    // the swtpm TCTI opens one connection per command: the cache outlives them
    static CACHE: std::sync::Mutex<std::collections::VecDeque<Vec<u8>>> =
        std::sync::Mutex::new(std::collections::VecDeque::new());
    let cache = || CACHE.lock().unwrap();
    loop {
        let command = read_tpm_message(&mut client)?;
        let code = be32(&command, 6);
        if code == TPM2_CC_GET_RANDOM {
            client.write_all(&local_get_random(&command))?;
            continue;
        }
        if code == TPM2_CC_FLUSH_CONTEXT && be32(&command, 10) == FAKE_SESSION {
            client.write_all(&ok_response())?;
            continue;
        }
        if !cache().is_empty() {
            match code {
                TPM2_CC_START_AUTH_SESSION => {
                    let mut r = 0x8001u16.to_be_bytes().to_vec();
                    r.extend_from_slice(&0u32.to_be_bytes());
                    r.extend_from_slice(&0u32.to_be_bytes());
                    r.extend_from_slice(&FAKE_SESSION.to_be_bytes());
                    r.extend_from_slice(&32u16.to_be_bytes());
                    r.extend_from_slice(&[0x33u8; 32]);
                    let n = r.len() as u32;
                    r[2..6].copy_from_slice(&n.to_be_bytes());
                    client.write_all(&r)?;
                    continue;
                }
                TPM2_CC_QUOTE => {
                    let (handle, nonce_caller, attrs, _) = quote_session(&command);
                    assert_eq!(handle, FAKE_SESSION);
                    let plain = cache().pop_front().unwrap();
                    client.write_all(&wrap_quote_response(&plain, &nonce_caller, attrs))?;
                    continue;
                }
                TPM2_CC_FLUSH_CONTEXT if be32(&command, 10) == FAKE_SESSION => {
                    client.write_all(&ok_response())?;
                    continue;
                }
                _ => {}
            }
        }
        thread::sleep(RELAY_DELAY);
        up.write_all(&command)?;
        let response = read_tpm_message(&mut up)?;
        if code == TPM2_CC_QUOTE && response.len() > 10 && be32(&response, 6) == 0 {
            // far side: precompute the chain from the main quote's signature
            let ak = be32(&command, 10);
            let (_, _, _, params) = quote_session(&command);
            let qd_len = be16(&command, params);
            let tail = command[params + 2 + qd_len..].to_vec();
            let mut previous = quote_sig(&response);
            for i in 0..PRECOMPUTED {
                // Everything the transport sees: the nonce, the index, the previous signature.
                let qd = locus_proto::binding::chain_qualifying_data(&NONCE, i, &previous).unwrap();
                up.write_all(&password_quote(ak, &qd, &tail))?;
                let r = read_tpm_message(&mut up)?;
                assert_eq!(be32(&r, 6), 0, "link {i}: rc {:#x}", be32(&r, 6));
                previous = quote_sig(&r);
                cache().push_back(r);
            }
        }
        client.write_all(&response)?;
    }
}

/// Copies bytes both ways between two streams until either closes.
fn pass_through(client: TcpStream, upstream_port: u16) -> std::io::Result<()> {
    let up = TcpStream::connect(("127.0.0.1", upstream_port))?;
    let (mut c_in, mut u_out) = (client.try_clone()?, up.try_clone()?);
    let t = thread::spawn(move || std::io::copy(&mut c_in, &mut u_out));
    let (mut u_in, mut c_out) = (up, client);
    let _ = std::io::copy(&mut u_in, &mut c_out);
    let _ = t.join();
    Ok(())
}

/// Listens on two consecutive loopback ports (the swtpm TCTI's data and control channels)
/// and returns the data port.
fn start_stub(swtpm_port: u16) -> u16 {
    for _ in 0..100 {
        let data = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = data.local_addr().unwrap().port();
        let Some(ctrl_port) = port.checked_add(1) else {
            continue;
        };
        let Ok(ctrl) = TcpListener::bind(("127.0.0.1", ctrl_port)) else {
            continue;
        };
        thread::spawn(move || {
            for c in data.incoming().flatten() {
                thread::spawn(move || serve_data(c, swtpm_port));
            }
        });
        thread::spawn(move || {
            for c in ctrl.incoming().flatten() {
                thread::spawn(move || pass_through(c, swtpm_port + 1));
            }
        });
        return port;
    }
    panic!("no two consecutive free loopback ports");
}

fn bundle(vtpm: &Vtpm) -> EvidenceBundle {
    let key = SessionKey::generate().unwrap();
    let spki = key.spki_der().to_vec();
    let nonce = [9u8; 32];
    let ((tpm, tdx, timings), _) = collect_blocking(
        &nonce,
        &spki,
        Some(vtpm),
        None,
        &EventLogPaths::default(),
        Vec::new(),
        None,
    )
    .unwrap();
    EvidenceBundle {
        version: BUNDLE_VERSION,
        nonce: nonce.to_vec(),
        nonce_issuer: None,
        session_spki: spki,
        transcript: Transcript::new().sign(key.signing_key()),
        tdx,
        tpm,
        timings,
        anchors: None,
    }
}

/// Only the two timing checks and the chain's signatures matter here.
fn timing_policy() -> EvidencePolicy {
    // No TD here: the TD's code pins are not this test's business.
    let mut p = PolicyFile {
        allow_unpinned_code: true,
        ..PolicyFile::default()
    };
    for c in CheckId::ALL {
        p.checks.insert(c, Requirement::Off);
    }
    for c in [
        CheckId::TpmSignature,
        CheckId::VtpmTiming,
        CheckId::VtpmChain,
    ] {
        p.checks.insert(c, Requirement::Required);
    }
    p.timing.max_tpm_cheap_rtt_us = Some(BOUND_US);
    p.timing.max_tpm_chain_rtt_us = Some(BOUND_US);
    p.resolve(&|f| Err(format!("{f}: no files here"))).unwrap()
}

#[test]
fn a_chain_the_transport_precomputes_fails_vtpm_chain() {
    let swtpm = Swtpm::start(SwtpmOptions::default()).unwrap();
    let Tcti::Swtpm { port, .. } = swtpm.tcti() else {
        unreachable!("swtpm has a socket TCTI")
    };
    let policy = timing_policy();
    let inputs = VerifyInputs::default();
    let stub_port = start_stub(port);
    let mut config = VtpmConfig::new(Tcti::Swtpm {
        host: "127.0.0.1".into(),
        port: stub_port,
    });
    config.command_timeout = Duration::from_secs(10);
    let relayed = Vtpm::open(config).unwrap();
    let b = bundle(&relayed);
    drop(relayed);
    // The relay is real (the main quote went the long way) and every link came back fast:
    // the attack ran as it did against binding version 2.
    assert!(b.timings.tpm_quote_ns.unwrap() >= RELAY_DELAY.as_nanos() as u64);
    assert_eq!(b.timings.tpm_chain_ns.len(), PRECOMPUTED as usize);
    assert!(b
        .timings
        .tpm_chain_ns
        .iter()
        .all(|&ns| ns < BOUND_US * 1000));
    let r = evidence::verify_bundle(&b, &policy, &inputs);
    assert!(
        matches!(
            r.outcome(CheckId::VtpmChain),
            Some(Outcome::Fail(EvidenceError::VtpmChainBroken {
                index: 0,
                ..
            }))
        ),
        "{:#}",
        r.to_json()
    );
    assert!(!r.valid());
}
