//! A host-side stub between a responder's vTPM and a real swtpm on loopback (swtpm's socket
//! server takes raw TPM commands on its data channel): each test gives the data channel's
//! behaviour; the control channel is passed through. With the bundle and the timing-only
//! policy the vTPM relay tests share.

#![allow(dead_code, unreachable_pub)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use locus_analysis::verify::bundle::{CheckId, EvidencePolicy, PolicyFile, Requirement};
use locus_proto::evidence::{EvidenceBundle, BUNDLE_VERSION};
use locus_proto::transcript::Transcript;
use locus_responder::evidence::{collect_blocking, EventLogPaths};
use locus_responder::session_key::SessionKey;
use locus_responder::tpm::{Tcti, Vtpm, VtpmConfig};

/// One round trip to the far vTPM (~3 000 km of fiber).
pub const RELAY_DELAY: Duration = Duration::from_millis(30);
/// Bound on both timings in the policy: far above a local swtpm, below the relay's delay.
pub const BOUND_US: u64 = 20_000;

pub const TPM2_CC_GET_RANDOM: u32 = 0x0000_017b;

/// What the stub answers to TPM2_GetRandom(n): success, n zero bytes.
pub fn local_get_random(command: &[u8]) -> Vec<u8> {
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
pub fn read_tpm_message(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
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

/// Copies bytes both ways between two streams until either closes.
pub fn pass_through(client: TcpStream, upstream_port: u16) -> std::io::Result<()> {
    let up = TcpStream::connect(("127.0.0.1", upstream_port))?;
    let (mut c_in, mut u_out) = (client.try_clone()?, up.try_clone()?);
    let t = thread::spawn(move || std::io::copy(&mut c_in, &mut u_out));
    let (mut u_in, mut c_out) = (up, client);
    let _ = std::io::copy(&mut u_in, &mut c_out);
    let _ = t.join();
    Ok(())
}

/// Listens on two consecutive loopback ports (the swtpm TCTI's data and control channels)
/// with `serve` on the data channel, and returns the data port.
pub fn start_stub(swtpm_port: u16, serve: fn(TcpStream, u16) -> std::io::Result<()>) -> u16 {
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
                thread::spawn(move || serve(c, swtpm_port));
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

pub fn bundle(vtpm: &Vtpm) -> EvidenceBundle {
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
pub fn timing_policy() -> EvidencePolicy {
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

/// The vTPM as the responder opens it, through a stub in front of swtpm's `swtpm_port` whose
/// data channel `serve` handles.
pub fn relayed_vtpm(swtpm_port: u16, serve: fn(TcpStream, u16) -> std::io::Result<()>) -> Vtpm {
    let stub_port = start_stub(swtpm_port, serve);
    let mut config = VtpmConfig::new(Tcti::Swtpm {
        host: "127.0.0.1".into(),
        port: stub_port,
    });
    // The relay's delay on every command adds up over a bundle.
    config.command_timeout = Duration::from_secs(10);
    Vtpm::open(config).unwrap()
}
