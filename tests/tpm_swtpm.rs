//! The vTPM against a real `swtpm` on loopback: AK, quote, PCRs, EK certificates, crash and
//! reconnect.

use std::time::Duration;

use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::{Vtpm, VtpmConfig, VtpmError, EK_CERT_NV_RSA};

fn config(tpm: &Swtpm) -> VtpmConfig {
    let mut c = VtpmConfig::new(tpm.tcti());
    c.command_timeout = Duration::from_secs(5);
    c
}

#[test]
fn quotes_pcrs_and_reads_the_ek_certificate() {
    let tpm = Swtpm::start(SwtpmOptions {
        create_ek_cert: true,
        ..SwtpmOptions::default()
    })
    .unwrap();
    let vtpm = Vtpm::open(config(&tpm)).unwrap();
    let ak = vtpm.ak_public().unwrap();
    assert_eq!(
        usize::from(u16::from_be_bytes([ak[0], ak[1]])),
        ak.len() - 2
    );

    vtpm.extend_pcr(8, [0xab; 32]).unwrap();
    let q = vtpm.quote(&[7u8; 32]).unwrap();
    assert_eq!(q.ak_public, ak);
    assert_eq!(q.pcrs.len(), 16);
    assert_ne!(q.pcrs[8].digest, vec![0u8; 32]);
    // The qualifying data is in the attest verbatim.
    assert!(q.attest.windows(32).any(|w| w == [7u8; 32]));

    let rtt = vtpm.cheap_rtt().unwrap();
    assert_eq!(rtt.samples, 5);

    let certs = vtpm.ek_certs().unwrap();
    assert!(certs.iter().any(|c| c.nv_index == EK_CERT_NV_RSA));
    assert_eq!(tpm.ek_ca_certs().unwrap().len(), 2);
}

#[test]
fn a_killed_swtpm_gives_errors_then_reconnects_with_the_same_ak() {
    let mut tpm = Swtpm::start(SwtpmOptions::default()).unwrap();
    let vtpm = Vtpm::open(config(&tpm)).unwrap();
    let ak = vtpm.ak_public().unwrap();
    vtpm.quote(&[1; 32]).unwrap();

    tpm.kill();
    let e = vtpm.quote(&[2; 32]).unwrap_err();
    assert!(matches!(e, VtpmError::Command { .. }), "{e:?}");
    // Down: reconnecting fails at once, no hang.
    let e = vtpm.quote(&[3; 32]).unwrap_err();
    assert!(matches!(e, VtpmError::Connect { .. }), "{e:?}");

    tpm.restart(Duration::from_secs(10)).unwrap();
    let q = vtpm.quote(&[4; 32]).unwrap();
    assert_eq!(q.ak_public, ak, "same TPM state, same AK");
}

#[test]
fn evidence_collection_reports_a_dead_vtpm_as_an_error() {
    use std::sync::Arc;

    use locus_proto::messages::Include;
    use locus_proto::transcript::SignedTranscript;
    use locus_responder::evidence::{EvidenceError, EvidenceSource};

    let mut tpm = Swtpm::start(SwtpmOptions::default()).unwrap();
    let vtpm = Arc::new(Vtpm::open(config(&tpm)).unwrap());
    let source = EvidenceSource::new(None, Some(vtpm));
    let include = Include {
        tpm: true,
        ..Include::default()
    };
    let transcript = SignedTranscript {
        count: 0,
        digest: vec![0; 32],
        signature: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let b = rt
        .block_on(source.collect(&[1; 32], b"spki", transcript.clone(), &include))
        .unwrap();
    assert!(b.tpm.is_some());
    assert!(b.timings.tpm_quote_ns.is_some());

    tpm.kill();
    let e = rt
        .block_on(source.collect(&[2; 32], b"spki", transcript.clone(), &include))
        .unwrap_err();
    assert!(matches!(e, EvidenceError::Vtpm(_)), "{e:?}");

    // A TDX part without a TDX backend is refused by name.
    let tdx = Include {
        tdx: true,
        ..Include::default()
    };
    let e = rt
        .block_on(source.collect(&[3; 32], b"spki", transcript, &tdx))
        .unwrap_err();
    assert!(
        matches!(e, EvidenceError::Unavailable { part: "TDX" }),
        "{e:?}"
    );
}

#[test]
fn killing_swtpm_during_quotes_errors_and_recovers() {
    use std::sync::Arc;

    let mut tpm = Swtpm::start(SwtpmOptions::default()).unwrap();
    let vtpm = Arc::new(Vtpm::open(config(&tpm)).unwrap());
    let v = vtpm.clone();
    // Quote continuously on another thread; kill the emulator while it runs.
    let worker = std::thread::spawn(move || {
        for i in 0..10_000u32 {
            if let Err(e) = v.quote(&i.to_be_bytes()) {
                return Some(e);
            }
        }
        None
    });
    std::thread::sleep(Duration::from_millis(30));
    tpm.kill();
    let e = worker
        .join()
        .unwrap()
        .expect("a quote fails once swtpm is gone");
    assert!(
        matches!(e, VtpmError::Command { .. } | VtpmError::Connect { .. }),
        "{e:?}"
    );
    tpm.restart(Duration::from_secs(10)).unwrap();
    vtpm.quote(&[9; 32]).unwrap();
}

#[test]
fn a_hung_swtpm_times_out_instead_of_hanging() {
    let tpm = Swtpm::start(SwtpmOptions::default()).unwrap();
    let mut c = config(&tpm);
    c.command_timeout = Duration::from_millis(500);
    let vtpm = Vtpm::open(c).unwrap();
    let pid = tpm.pid().unwrap().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let e = vtpm.quote(&[1; 32]).unwrap_err();
    assert!(matches!(e, VtpmError::Timeout { .. }), "{e:?}");
    // Still stopped: reconnecting times out as well, it does not block.
    let e = vtpm.quote(&[2; 32]).unwrap_err();
    assert!(matches!(e, VtpmError::Timeout { .. }), "{e:?}");
    signal("-CONT");
    // The abandoned connections drain; a bounded number of attempts reconnects.
    let ok = (0..20).any(|i| vtpm.quote(&[3 + i as u8; 32]).is_ok());
    assert!(ok, "no recovery after SIGCONT");
}
