//! `locus verify tdx-quote` end to end: exit codes 0 / 1 / 2, text and JSON output, real
//! samples at pinned times, lab quotes under an explicit lab root.

use std::path::Path;
use std::process::{Command, Output};

use locus_responder::tdx::lab::{LabOptions, LabTcbStatus, LabTdx};
use locus_responder::tdx::TdxQuoter;

const V: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/dcap-qvl");

fn locus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sample(name: &str) -> String {
    format!("{V}/{name}")
}

#[test]
fn real_sample_is_valid_at_its_pinned_time() {
    let o = locus(&[
        "verify",
        "tdx-quote",
        &sample("tdx_quote"),
        "--collateral",
        &sample("tdx_quote_collateral.json"),
        "--at",
        "1752919234",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("under Intel SGX Root CA"), "{out}");
    assert!(out.contains("tcb_status:   UpToDate"), "{out}");
    assert!(out.contains("fmspc:        B0C06F000000"), "{out}");
}

#[test]
fn real_sample_one_second_later_is_invalid_and_names_the_check() {
    let o = locus(&[
        "verify",
        "tdx-quote",
        &sample("tdx_quote"),
        "--collateral",
        &sample("tdx_quote_collateral.json"),
        "--at",
        "2025-07-19T10:00:35Z",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["check"], "CrlExpired");
}

#[test]
fn json_output_carries_the_fields() {
    let o = locus(&[
        "verify",
        "tdx-quote",
        &sample("tdx_quote"),
        "--collateral",
        &sample("tdx_quote_collateral.json"),
        "--at",
        "2025-07-19T10:00:34Z",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let q = &v["quote"];
    assert_eq!(q["root"]["kind"], "intel_sgx");
    assert_eq!(q["tcb_status"], "UpToDate");
    assert_eq!(q["fmspc"], "b0c06f000000");
    assert_eq!(q["rtmr"].as_array().unwrap().len(), 4);
    assert_eq!(q["report_data"].as_str().unwrap().len(), 128);
    assert_eq!(q["mr_td"].as_str().unwrap().len(), 96);
    // The earliest expiry of the collateral: the sample's PCK CRL, one second after.
    assert_eq!(v["collateral_expires_at"], "2025-07-19T10:00:35Z");
    assert_eq!(q["collateral_expires_unix"], 1_752_919_235);
}

#[test]
fn tampered_quote_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = std::fs::read(sample("tdx_quote")).unwrap();
    q[764] = 5;
    let path = dir.path().join("q");
    std::fs::write(&path, q).unwrap();
    let o = locus(&[
        "verify",
        "tdx-quote",
        path.to_str().unwrap(),
        "--collateral",
        &sample("tdx_quote_collateral.json"),
        "--at",
        "1752919234",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("CertificationDataType"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn unreadable_inputs_and_bad_usage_exit_2() {
    let coll = sample("tdx_quote_collateral.json");
    let quote = sample("tdx_quote");
    for args in [
        vec![
            "verify",
            "tdx-quote",
            "/no/such/quote",
            "--collateral",
            &coll,
        ],
        vec![
            "verify",
            "tdx-quote",
            &quote,
            "--collateral",
            "/no/such/file",
        ],
        vec!["verify", "tdx-quote", &quote, "--collateral", &quote], // not JSON
        vec![
            "verify",
            "tdx-quote",
            &quote,
            "--collateral",
            &coll,
            "--at",
            "soon",
        ],
        vec!["verify", "tdx-quote", &quote], // missing --collateral
    ] {
        let o = locus(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}

fn lab_dir(dir: &Path) -> (LabTdx, std::path::PathBuf) {
    lab_dir_with(dir, LabTcbStatus::UpToDate)
}

fn lab_dir_with(dir: &Path, tcb_status: LabTcbStatus) -> (LabTdx, std::path::PathBuf) {
    let lab = LabTdx::generate_with(&LabOptions {
        tcb_status,
        ..LabOptions::at(1_780_000_000)
    })
    .unwrap();
    lab.save(dir).unwrap();
    let q = lab.quoter().quote([0xAB; 64]).unwrap();
    let qp = dir.join("quote.bin");
    std::fs::write(&qp, q).unwrap();
    (lab, qp)
}

#[test]
fn lab_quote_is_valid_only_under_the_lab_root_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (_lab, qp) = lab_dir(dir.path());
    let coll = dir.path().join("lab-collateral.json");
    let root = dir.path().join("lab-root-ca.der");
    let base = [
        "verify",
        "tdx-quote",
        qp.to_str().unwrap(),
        "--collateral",
        coll.to_str().unwrap(),
        "--at",
        "1780000000",
    ];
    let mut with_root = base.to_vec();
    with_root.extend(["--root-ca", root.to_str().unwrap()]);
    let o = locus(&with_root);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("NOT Intel"), "{}", stdout(&o));
    assert!(stdout(&o).contains(&"ab".repeat(64)), "{}", stdout(&o));

    let o = locus(&base);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("EmbeddedRootMismatch"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn pem_root_and_collateral_cache_directory_work() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, qp) = lab_dir(dir.path());
    let b64 = base64_encode(lab.root_ca_der());
    let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
    let pem_path = dir.path().join("root.pem");
    std::fs::write(&pem_path, pem).unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::copy(
        dir.path().join("lab-collateral.json"),
        cache.join(format!("{}.json", "4C4F43555300")),
    )
    .unwrap();
    let o = locus(&[
        "verify",
        "tdx-quote",
        qp.to_str().unwrap(),
        "--collateral",
        cache.to_str().unwrap(),
        "--root-ca",
        pem_path.to_str().unwrap(),
        "--at",
        "1780000000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

fn base64_encode(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn chain_only_verifies_a_real_gce_quote_and_says_what_is_unknown() {
    let gce = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/gce-tdx-ccel/cos-113-tdx-quote.dat"
    );
    let o = locus(&[
        "verify",
        "tdx-quote",
        gce,
        "--chain-only",
        "--at",
        "2025-01-01T00:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("NO COLLATERAL"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("tcb_status:   Unknown"),
        "{}",
        stdout(&o)
    );
    let both = locus(&[
        "verify",
        "tdx-quote",
        gce,
        "--chain-only",
        "--collateral",
        gce,
    ]);
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn an_out_of_date_platform_fails_unless_its_status_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    lab_dir_with(dir.path(), LabTcbStatus::OutOfDate);
    let with_root = |extra: &[&str]| {
        let dir = dir.path().to_str().unwrap();
        let (qp, coll, root) = (
            format!("{dir}/quote.bin"),
            format!("{dir}/lab-collateral.json"),
            format!("{dir}/lab-root-ca.der"),
        );
        let mut args = vec!["verify", "tdx-quote", &qp, "--collateral", &coll];
        args.extend(["--root-ca", &root, "--at", "1780000000", "--json"]);
        args.extend(extra);
        locus(&args)
    };
    let o = with_root(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["check"], "TcbStatusNotAccepted");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("OutOfDate"), "{e}");
    assert!(
        e.contains("SGX component 0 (CPUSVN[0]) have 3 need 4"),
        "{e}"
    );
    assert!(e.contains("LOCUS-LAB-SA-0002"), "{e}");

    let o = with_root(&["--accept-tcb", "UpToDate,OutOfDate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["quote"]["tcb_status"], "OutOfDate");
    assert_eq!(
        v["quote"]["tcb_detail"]["behind"][0]["component"],
        "SGX component 0 (CPUSVN[0])"
    );

    let unknown = with_root(&["--accept-tcb", "UpToDate,Stale"]);
    assert_eq!(unknown.status.code(), Some(2));
}
