//! The responder on a vTPM provisioned the way GCE provisions it: an AK template and the AK
//! certificate in NV (go-tpm-tools' indices). swtpm stands in for the cloud vTPM; tpm2-tools
//! writes the indices and openssl issues the certificate from a test CA.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use locus_analysis::evidence::ekchain;
use locus_analysis::tpm::{self, AkKey};
use locus_responder::evidence::{collect_blocking_bound, EventLogPaths};
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::{Vtpm, VtpmConfig, GCE_AK_CERT_NV_ECC, GCE_AK_TEMPLATE_NV_ECC};

/// TPMT_PUBLIC of an ECC P-256 restricted signing key with ECDSA-SHA256: fixedTPM, fixedParent,
/// sensitiveDataOrigin, userWithAuth, noDA, restricted, sign (noDA makes it differ from the
/// responder's own template, so the test sees which one was used).
fn gce_ecc_template() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&0x0023u16.to_be_bytes()); // TPM_ALG_ECC
    t.extend_from_slice(&0x000bu16.to_be_bytes()); // nameAlg SHA-256
    t.extend_from_slice(&0x0005_0472u32.to_be_bytes());
    t.extend_from_slice(&[0, 0]); // authPolicy
    t.extend_from_slice(&0x0010u16.to_be_bytes()); // symmetric NULL
    t.extend_from_slice(&0x0018u16.to_be_bytes()); // ECDSA
    t.extend_from_slice(&0x000bu16.to_be_bytes()); // SHA-256
    t.extend_from_slice(&0x0003u16.to_be_bytes()); // NIST P-256
    t.extend_from_slice(&0x0010u16.to_be_bytes()); // kdf NULL
    t.extend_from_slice(&[0, 0, 0, 0]); // unique x, y empty
    t
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nv_write(tpm: &Swtpm, index: u32, data: &[u8], dir: &Path) {
    let tcti = tpm.tcti().to_string();
    let file = dir.join(format!("{index:x}.bin"));
    std::fs::write(&file, data).unwrap();
    let index = format!("{index:#010x}");
    run(Command::new("tpm2_nvdefine")
        .args([&index, "-C", "o", "-s", &data.len().to_string()])
        .args(["-a", "ownerread|ownerwrite|authread|authwrite|no_da"])
        .args(["-T", &tcti]));
    run(Command::new("tpm2_nvwrite")
        .args([&index, "-C", "o", "-i"])
        .arg(&file)
        .args(["-T", &tcti]));
}

/// SubjectPublicKeyInfo (DER) of a P-256 point.
fn p256_spki(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.push(0x04);
    spki.extend_from_slice(x);
    spki.extend_from_slice(y);
    spki
}

fn config(tpm: &Swtpm) -> VtpmConfig {
    let mut c = VtpmConfig::new(tpm.tcti());
    c.command_timeout = Duration::from_secs(5);
    c
}

#[test]
fn the_responder_uses_the_provisioned_gce_ak_and_ships_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(SwtpmOptions::default()).unwrap();

    // Without provisioning: the responder's own AK, no certificate.
    let plain = Vtpm::open(config(&tpm)).unwrap();
    let own_ak = plain.ak_public().unwrap();
    assert_eq!(plain.ak_cert().unwrap(), None);
    drop(plain);

    // Provision the template; the AK is the primary the platform's template gives.
    nv_write(
        &tpm,
        GCE_AK_TEMPLATE_NV_ECC,
        &gce_ecc_template(),
        dir.path(),
    );
    let vtpm = Vtpm::open(config(&tpm)).unwrap();
    let ak = vtpm.ak_public().unwrap();
    assert_ne!(ak, own_ak, "the AK comes from the NV template");
    let parsed = tpm::parse_ak_public(&ak).unwrap();
    assert_eq!(parsed.attributes, 0x0005_0472);
    let AkKey::Ecc { x, y } = &parsed.key else {
        panic!("ECC template gave {:?}", parsed.key)
    };
    assert_eq!(
        vtpm.ak_cert().unwrap(),
        None,
        "no certificate provisioned yet"
    );
    drop(vtpm);

    // The "provider CA" certifies that AK, naming a zone; the certificate goes to NV.
    let d = dir.path();
    std::fs::write(d.join("ak.der"), p256_spki(x, y)).unwrap();
    run(Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(d.join("ak.der"))
        .arg("-out")
        .arg(d.join("ak.pem")));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-subj",
            "/CN=test EK-AK CA",
            "-days",
            "30",
            "-keyout",
        ])
        .arg(d.join("ca.key"))
        .arg("-out")
        .arg(d.join("ca.pem")));
    run(Command::new("openssl")
        .args([
            "x509",
            "-new",
            "-subj",
            "/CN=ak/L=europe-west3-a",
            "-days",
            "30",
        ])
        .arg("-force_pubkey")
        .arg(d.join("ak.pem"))
        .arg("-CA")
        .arg(d.join("ca.pem"))
        .arg("-CAkey")
        .arg(d.join("ca.key"))
        .args(["-outform", "DER", "-out"])
        .arg(d.join("ak.crt")));
    let cert = std::fs::read(d.join("ak.crt")).unwrap();
    run(Command::new("openssl")
        .args(["x509", "-in"])
        .arg(d.join("ca.pem"))
        .args(["-outform", "DER", "-out"])
        .arg(d.join("ca.der")));
    let ca = std::fs::read(d.join("ca.der")).unwrap();
    nv_write(&tpm, GCE_AK_CERT_NV_ECC, &cert, dir.path());

    let vtpm = Vtpm::open(config(&tpm)).unwrap();
    assert_eq!(vtpm.ak_public().unwrap(), ak, "same template, same AK");
    assert_eq!(vtpm.ak_cert().unwrap().as_deref(), Some(cert.as_slice()));

    // The evidence carries the certificate; it chains to the CA and its key signed the quote.
    let ((tpm_ev, _, _), _) = collect_blocking_bound(
        &[9; 32],
        b"session spki",
        Some(&vtpm),
        None,
        &EventLogPaths::default(),
        vec![],
        None,
        None,
    )
    .unwrap();
    let ev = tpm_ev.unwrap();
    assert_eq!(ev.ak_public, ak);
    assert_eq!(ev.ak_cert.as_deref(), Some(cert.as_slice()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    ekchain::verify_chain(&cert, &[], &[ca], now).unwrap();
    assert!(cert
        .windows(64)
        .any(|w| w[..32] == x[..] && w[32..] == y[..]));
    tpm::verify_signature(&parsed, &ev.attest, &ev.signature).unwrap();
}
