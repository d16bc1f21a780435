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

mod vtpm_relay;

use std::io::Write;
use std::net::TcpStream;
use std::thread;

use locus_analysis::verify::bundle::{
    self as evidence, CheckId, EvidenceError, Outcome, VerifyInputs,
};
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::Tcti;
use vtpm_relay::{
    bundle, local_get_random, read_tpm_message, relayed_vtpm, timing_policy, BOUND_US, RELAY_DELAY,
    TPM2_CC_GET_RANDOM,
};

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

#[test]
fn a_chain_the_transport_precomputes_fails_vtpm_chain() {
    let swtpm = Swtpm::start(SwtpmOptions::default()).unwrap();
    let Tcti::Swtpm { port, .. } = swtpm.tcti() else {
        unreachable!("swtpm has a socket TCTI")
    };
    let policy = timing_policy();
    let inputs = VerifyInputs::default();
    let relayed = relayed_vtpm(port, serve_data);
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
