//! Deploying: the built `locus` binary as an operator runs it. `locus responder --config` with
//! swtpm and a `locus lab pki` set, `locus prober --evidence-out`, `locus policy init`, `locus
//! verify evidence` under that policy; each backend configured but broken exits 2 naming its key.

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod responder_proc;
use responder_proc::Responder;

use locus_proto::evidence::EvidenceBundle;
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};

/// MRTD of a bundle's TD quote (TD report body offset 136).
trait Mrtd {
    fn tdx_mrtd(&self) -> Vec<u8>;
}

impl Mrtd for EvidenceBundle {
    fn tdx_mrtd(&self) -> Vec<u8> {
        self.tdx.as_ref().unwrap().quote[48 + 136..48 + 184].to_vec()
    }
}

fn locus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_locus"))
}

fn run(args: &[&str]) -> Output {
    locus().args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

fn start_responder(config: &str) -> Responder {
    Responder::start(
        &["--config", config, "--listen", "127.0.0.1:0"],
        Stdio::inherit(),
    )
}

/// A loopback port nothing listens on (bound, then released).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn each_broken_backend_exits_2_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = dead_port();
    let cases = [
        (
            "[tdx]\nbackend = \"configfs\"\nconfigfs_root = \"/nonexistent/tsm/report\"\n"
                .to_string(),
            "tdx.configfs_root",
            "/nonexistent/tsm/report",
        ),
        (
            "[tdx]\nbackend = \"lab\"\nlab_dir = \"missing-pki\"\n".to_string(),
            "tdx.lab_dir",
            "missing-pki",
        ),
        (
            format!("[tpm]\ntcti = \"swtpm:host=127.0.0.1,port={port}\"\n"),
            "tpm.tcti",
            "swtpm:host=127.0.0.1",
        ),
        (
            "[event_logs]\nccel_table = \"missing-ccel\"\n".to_string(),
            "event_logs.ccel_table",
            "missing-ccel",
        ),
        (
            "[anchors]\nfile = \"missing-anchors.toml\"\n".to_string(),
            "anchors.file",
            "missing-anchors.toml",
        ),
    ];
    for (body, key, path) in cases {
        let config = write(d, "responder.toml", &body);
        let out = run(&["responder", "--config", &config, "--listen", "127.0.0.1:0"]);
        assert_eq!(out.status.code(), Some(2), "{body}\n{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key) && err.contains(path), "{body}\n{err}");
    }
    // Unknown keys are refused before anything starts.
    let config = write(
        d,
        "responder.toml",
        "[tdx]\nbackend = \"none\"\nbakend = 1\n",
    );
    let out = run(&["responder", "--config", &config]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bakend"));
}

/// `locus prober --evidence-out` against `r`; returns the bundle path.
fn fetch_bundle(r: &Responder, dir: &Path, name: &str, parts: &str) -> String {
    let bundle = dir.join(name).display().to_string();
    let out = run(&[
        "prober",
        "--json",
        "--count",
        "20",
        "--rate",
        "0",
        "--target",
        &r.addr,
        "--pin-spki",
        &r.spki,
        "--evidence-out",
        &bundle,
        "--evidence-parts",
        parts,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ev = &report["targets"][0]["evidence"];
    assert_eq!(ev["file"].as_str(), Some(bundle.as_str()), "{report}");
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{bundle}.nonces.json")).unwrap()).unwrap();
    let nonces: Vec<&str> = ledger
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["nonce"].as_str().unwrap())
        .collect();
    assert!(nonces.contains(&ev["nonce"].as_str().unwrap()), "{ledger}");
    bundle
}

fn verify(bundle: &str, policy: &str) -> Output {
    let ledger = format!("{bundle}.nonces.json");
    run(&[
        "verify",
        "evidence",
        bundle,
        "--policy",
        policy,
        "--nonce-ledger",
        &ledger,
        "--json",
    ])
}

fn failed_checks(out: &Output) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["check"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn swtpm_and_a_lab_pki_give_a_bundle_that_verifies_under_its_captured_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = d.join("pki").display().to_string();
    let out = run(&["lab", "pki", "--out", &pki, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for f in [
        "root.pem",
        "collateral.json",
        "pck-chain.pem",
        "pck-key.pem",
    ] {
        assert!(d.join("pki").join(f).is_file(), "{f} missing");
    }
    let tpm = Swtpm::start(SwtpmOptions {
        create_ek_cert: true,
        ..SwtpmOptions::default()
    })
    .expect("swtpm (Debian: swtpm swtpm-tools; scripts/setup.sh installs them)");
    write(d, "ek-ca.pem", &tpm.ek_ca_certs().unwrap().concat());
    let config = write(
        d,
        "responder.toml",
        &format!(
            "listen = \"127.0.0.1:1\"\nspki_out = \"responder.spki\"\n\n\
             [tdx]\nbackend = \"lab\"\nlab_dir = \"pki\"\n\n[tpm]\ntcti = \"{}\"\nak = \"create\"\n\
             ek_ca_certs = [\"ek-ca.pem\"]\n",
            tpm.tcti()
        ),
    );
    // --listen overrides the config's; spki_out is relative to the config file.
    let r = start_responder(&config);
    assert_ne!(r.addr, "127.0.0.1:1");
    assert_eq!(
        hex::encode(std::fs::read(d.join("responder.spki")).unwrap()),
        r.spki
    );
    let bundle = fetch_bundle(&r, d, "golden.cbor", "tdx,tpm");

    // Its TDX quote verifies on its own under the lab set.
    let b = EvidenceBundle::from_cbor(&std::fs::read(&bundle).unwrap()).unwrap();
    let quote = d.join("quote.bin");
    std::fs::write(&quote, &b.tdx.as_ref().unwrap().quote).unwrap();
    let collateral = format!("{pki}/collateral.json");
    let root = format!("{pki}/root.pem");
    let out = run(&[
        "verify",
        "tdx-quote",
        quote.to_str().unwrap(),
        "--collateral",
        &collateral,
        "--root-ca",
        &root,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let policy = d.join("policy.toml").display().to_string();
    let out = run(&[
        "policy",
        "init",
        "--from-bundle",
        &bundle,
        "--collateral",
        &collateral,
        "--root-ca",
        &root,
        "--out",
        &policy,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let toml = std::fs::read_to_string(&policy).unwrap();
    // Golden values pinned, each with where it came from.
    for key in [
        "mrtd = ",
        "td_attributes = ",
        "xfam = ",
        "max_tpm_cheap_rtt_us = ",
    ] {
        assert!(toml.contains(key), "{key} not pinned:\n{toml}");
    }
    assert!(toml.contains("[[reference.pcrs]]") && toml.contains("[[reference.rtmrs]]"));
    assert!(toml.contains("# Frankenstein baseline"), "{toml}");
    for required in [
        "tdx_quote",
        "td_reference",
        "pcr_reference",
        "ek_chain",
        "vtpm_timing",
    ] {
        assert!(
            toml.contains(&format!("{required} = \"required\"")),
            "{required} not required:\n{toml}"
        );
    }
    assert!(d.join("policy.toml.ek-roots.pem").is_file());

    let out = verify(&bundle, &policy);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A second fetch (a new nonce in the same ledger) verifies too.
    let again = fetch_bundle(&r, d, "golden.cbor", "tdx,tpm");
    assert_eq!(verify(&again, &policy).status.code(), Some(0));

    // A TD with another MRTD fails td_reference (and nothing else).
    let other = toml.replace(
        &format!("mrtd = \"{}\"", hex::encode(b.tdx_mrtd())),
        &format!("mrtd = \"{}\"", "ab".repeat(48)),
    );
    assert_ne!(other, toml);
    let other_policy = write(d, "other.toml", &other);
    let out = verify(&again, &other_policy);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(failed_checks(&out), ["td_reference"], "{}", text(&out));

    // The doctor reports every backend, and a bundle valid under the captured policy.
    let (code, report) = doctor(&config, Some(&policy));
    assert_eq!(code, 0, "{report:#}");
    for (check, status) in [
        ("tdx", "ok"),
        ("vtpm", "ok"),
        ("tpm_quote", "ok"),
        ("vtpm_time", "ok"),
        ("ek_cert", "ok"),
        ("ek_ca_certs", "ok"),
        ("ek_activate", "ok"),
        ("bundle", "ok"),
        ("policy", "ok"),
    ] {
        assert_eq!(row(&report, check)["status"], status, "{check}: {report:#}");
    }
    // Without the vTPM the policy's vTPM checks are named.
    let tdx_only = write(
        d,
        "tdx-only.toml",
        "[tdx]\nbackend = \"lab\"\nlab_dir = \"pki\"\n",
    );
    let (code, report) = doctor(&tdx_only, Some(&policy));
    assert_eq!(code, 1, "{report:#}");
    let failed: Vec<&str> = report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(failed.contains(&"policy.tpm_signature"), "{report:#}");
    assert!(!failed.contains(&"tdx"), "{report:#}");
    // swtpm down: the vtpm row fails, naming the key.
    drop(r);
    let port = tpm.port();
    drop(tpm);
    let down = write(
        d,
        "down.toml",
        &format!("[tpm]\ntcti = \"swtpm:host=127.0.0.1,port={port}\"\n"),
    );
    let (code, report) = doctor(&down, None);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(row(&report, "vtpm")["status"], "fail", "{report:#}");
    assert!(row(&report, "vtpm")["detail"]
        .as_str()
        .unwrap()
        .contains("tpm.tcti"));
}

fn doctor(config: &str, policy: Option<&str>) -> (i32, serde_json::Value) {
    let mut args = vec!["responder", "doctor", "--config", config, "--json"];
    if let Some(p) = policy {
        args.extend(["--policy", p]);
    }
    let out = run(&args);
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out.status.code().unwrap(), report)
}

fn row<'a>(report: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == check)
        .unwrap_or_else(|| panic!("no {check} row: {report:#}"))
}
