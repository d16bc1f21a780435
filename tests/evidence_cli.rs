//! `locus verify evidence`: exit 0 valid, 1 invalid naming every failed check, 2 unreadable.

mod evidence_lab;

use std::path::Path;
use std::process::Command;

use evidence_lab::lab;

fn run(dir: &Path, bundle: &[u8], extra: &[&str]) -> (i32, String) {
    let l = lab();
    let policy = l.write_policy(dir);
    let bundle_path = dir.join("bundle.cbor");
    std::fs::write(&bundle_path, bundle).unwrap();
    let ledger = dir.join("ledger.json");
    std::fs::write(&ledger, serde_json::to_vec(&l.ledger.records()).unwrap()).unwrap();
    let spki = dir.join("peer.spki.der");
    std::fs::write(&spki, &l.peer_spki).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["verify", "evidence"])
        .arg(&bundle_path)
        .arg("--policy")
        .arg(&policy)
        .arg("--nonce-ledger")
        .arg(&ledger)
        .arg("--peer-spki")
        .arg(&spki)
        .args(["--at", &l.now.to_string()])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn valid_bundle_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(dir.path(), &lab().bundle.to_cbor(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid evidence bundle"), "{out}");
}

#[test]
fn invalid_bundle_exits_1_and_names_every_failed_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = lab().bundle.clone();
    b.tpm.as_mut().unwrap().pcrs[0].digest[0] ^= 1;
    b.transcript.count += 1;
    let (code, out) = run(dir.path(), &b.to_cbor(), &["--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    let failed: Vec<&str> = v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(failed.contains(&"pcr_digest"), "{failed:?}");
    assert!(failed.contains(&"transcript"), "{failed:?}");
}

#[test]
fn truncated_bundle_exits_1_on_bundle_format() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = lab().bundle.to_cbor();
    let (code, out) = run(dir.path(), &bytes[..bytes.len() / 2], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("failed checks: bundle_format"), "{out}");
}

#[test]
fn unreadable_inputs_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["verify", "evidence"])
        .arg(dir.path().join("missing.cbor"))
        .arg("--policy")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // A policy with an unknown key is refused, not ignored.
    let bundle = dir.path().join("b.cbor");
    std::fs::write(&bundle, lab().bundle.to_cbor()).unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "[ek]\nroots = []\nsurprise = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["verify", "evidence"])
        .arg(&bundle)
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `locus bench evidence` builds bundles the way a responder answers a sealed request, and
/// they verify under the bench's own policy (it exits 2 when its bundle does not verify).
#[test]
fn bench_evidence_builds_bundles_that_verify() {
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args([
            "bench",
            "evidence",
            "--iterations",
            "2",
            "--verify-iterations",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "bundle_p50_us",
        "bare_quote_p50_us",
        "bundle_ratio_p50",
        "verify_ratio_p50",
    ] {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"));
        assert!(x.is_finite() && x > 0.0, "{key} = {x} in {v}");
    }
}
