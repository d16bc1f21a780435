//! `locus verify az-tdx-vtpm` and `cloud::azure` on real Azure TDX CVM evidence
//! (`vectors/azure-tdx-vtpm/evidence-v{0,1}.json`): both encodings verify, every tampered
//! region is rejected by its named check.

use std::process::Command;

use locus_analysis::check::AzureCheck;
use locus_analysis::verify::cloud::azure;
use serde_json::{json, Value};

const V1: &[u8] = include_bytes!("vectors/azure-tdx-vtpm/evidence-v1.json");
const V0: &[u8] = include_bytes!("vectors/azure-tdx-vtpm/evidence-v0.json");
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");
/// 2025-01-01, inside the PCK chain's validity (2023-09-13 .. 2030-09-13).
const AT: u64 = 1_735_689_600;
const NONCE: &[u8] = b"challenge";

/// The evidence's parts, decoded from the v1 file.
#[derive(Clone)]
struct Parts {
    signature: Vec<u8>,
    message: Vec<u8>,
    pcrs: Vec<Vec<u8>>,
    hcl: Vec<u8>,
    td: Vec<u8>,
}

fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.trim_end_matches('=').bytes() {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn b64url_encode(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn parts() -> Parts {
    let v: Value = serde_json::from_slice(V1).unwrap();
    let hx = |v: &Value| hex::decode(v.as_str().unwrap()).unwrap();
    Parts {
        signature: hx(&v["tpm_quote"]["signature"]),
        message: hx(&v["tpm_quote"]["message"]),
        pcrs: v["tpm_quote"]["pcrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(hx)
            .collect(),
        hcl: b64url_decode(v["hcl_report"].as_str().unwrap()),
        td: b64url_decode(v["td_quote"].as_str().unwrap()),
    }
}

fn v1(p: &Parts) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": 1,
        "tpm_quote": {
            "signature": hex::encode(&p.signature),
            "message": hex::encode(&p.message),
            "pcrs": p.pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
        },
        "hcl_report": b64url_encode(&p.hcl),
        "td_quote": b64url_encode(&p.td),
    }))
    .unwrap()
}

fn v0(p: &Parts) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "tpm_quote": { "signature": p.signature, "message": p.message, "pcrs": p.pcrs },
        "hcl_report": p.hcl,
        "td_quote": p.td,
    }))
    .unwrap()
}

fn failed(evidence: &[u8]) -> Vec<AzureCheck> {
    let r = azure::verify(evidence, NONCE, AT, None);
    assert_eq!(r.valid, r.failed_checks.is_empty());
    r.failed_checks
}

/// Start of the HCL variable data (after the 32-byte header, the 1184-byte hardware report
/// and the 20-byte runtime data header).
const VAR_AT: usize = 0x4d4;

#[test]
fn both_encodings_and_our_re_encodings_verify() {
    for (name, ev) in [
        ("v1 file", V1.to_vec()),
        ("v0 file", V0.to_vec()),
        ("v1 re-encoded", v1(&parts())),
        ("v0 re-encoded", v0(&parts())),
    ] {
        let r = azure::verify(&ev, NONCE, AT, None);
        assert!(r.valid, "{name}: {:?}", r.checks);
        let id = r.identity.as_ref().unwrap();
        assert_eq!(id.tcb_status, "Unknown", "{name}");
        assert_eq!(id.fmspc, "00806f050000");
        assert_eq!(r.pcrs.len(), 24);
        assert!(r.ak_modulus_sha256.is_some());
    }
}

#[test]
fn nonces_are_compared() {
    for ev in [V1, V0] {
        assert_eq!(
            azure::verify(ev, b"challengE", AT, None).failed_checks,
            [AzureCheck::Nonce]
        );
        assert_eq!(
            azure::verify(ev, b"", AT, None).failed_checks,
            [AzureCheck::NonceRequired]
        );
    }
}

#[test]
fn every_tampered_region_is_rejected_by_its_check() {
    let p = parts();
    let var_len = u32::from_le_bytes(p.hcl[0x4d0..0x4d4].try_into().unwrap()) as usize;
    let var = &p.hcl[VAR_AT..VAR_AT + var_len];
    let n_at = VAR_AT + var.windows(5).position(|w| w == b"\"n\":\"").unwrap() + 10;
    let cfg_at = VAR_AT
        + var
            .windows(16)
            .position(|w| w == b"vm-configuration")
            .unwrap()
        + 1;
    let body = 48;
    type Edit = Box<dyn Fn(&mut Parts)>;
    let cases: Vec<(&str, Edit, Vec<AzureCheck>)> = vec![
        // vTPM quote: TPMS_ATTEST regions, signature, PCR values
        (
            "attest magic",
            Box::new(|p| p.message[0] ^= 1),
            vec![AzureCheck::TpmQuoteParse, AzureCheck::TpmQuoteSignature],
        ),
        // extraData starts after magic, type and qualifiedSigner (2 + 34 bytes)
        (
            "attest extraData",
            Box::new(|p| p.message[4 + 2 + 36 + 2] ^= 1),
            vec![AzureCheck::TpmQuoteSignature, AzureCheck::Nonce],
        ),
        (
            "attest clock",
            Box::new(|p| p.message[60] ^= 1),
            vec![AzureCheck::TpmQuoteSignature],
        ),
        (
            "attest pcrDigest",
            Box::new(|p| *p.message.last_mut().unwrap() ^= 1),
            vec![AzureCheck::TpmQuoteSignature, AzureCheck::PcrDigest],
        ),
        (
            "signature",
            Box::new(|p| p.signature[100] ^= 1),
            vec![AzureCheck::TpmQuoteSignature],
        ),
        (
            "PCR7 value",
            Box::new(|p| p.pcrs[7][0] ^= 1),
            vec![AzureCheck::PcrDigest],
        ),
        (
            "PCR23 missing",
            Box::new(|p| {
                p.pcrs.pop();
            }),
            vec![AzureCheck::PcrSelection],
        ),
        // HCL report: header, hardware report (TDREPORT), runtime header, variable data
        (
            "HCL signature",
            Box::new(|p| p.hcl[0] ^= 1),
            vec![AzureCheck::HclReport],
        ),
        (
            "HCL status",
            Box::new(|p| p.hcl[16] ^= 1),
            vec![AzureCheck::HclReport],
        ),
        (
            "HCL report size",
            Box::new(|p| p.hcl[8] ^= 1),
            vec![AzureCheck::HclReport],
        ),
        (
            "HCL TDREPORT REPORTDATA",
            Box::new(|p| p.hcl[0x20 + 128] ^= 1),
            vec![AzureCheck::HclTdReport],
        ),
        (
            "HCL TDREPORT MRSEAM",
            Box::new(|p| p.hcl[0x20 + 256 + 8 + 20] ^= 1),
            vec![AzureCheck::HclTdReport],
        ),
        (
            "HCL TDREPORT MRTD",
            Box::new(|p| p.hcl[0x20 + 512 + 16] ^= 1),
            vec![AzureCheck::HclTdReport],
        ),
        (
            "HCL TDREPORT RTMR2",
            Box::new(|p| p.hcl[0x20 + 512 + 208 + 96] ^= 1),
            vec![AzureCheck::HclTdReport],
        ),
        (
            "HCL report type",
            Box::new(|p| p.hcl[0x4c0 + 8] ^= 1),
            vec![AzureCheck::HclReport],
        ),
        (
            "HCL hash type",
            Box::new(|p| p.hcl[0x4c0 + 12] ^= 1),
            vec![AzureCheck::HclReport],
        ),
        (
            "HCL variable size",
            Box::new(|p| p.hcl[0x4d0] ^= 1),
            vec![AzureCheck::HclReport],
        ),
        // a base64url letter of the AK modulus: another key, another hash
        (
            "HCL AK modulus",
            Box::new(move |p| p.hcl[n_at] = if p.hcl[n_at] == b'A' { b'B' } else { b'A' }),
            vec![AzureCheck::TpmQuoteSignature, AzureCheck::ReportData],
        ),
        (
            "HCL vm-configuration",
            Box::new(move |p| p.hcl[cfg_at] ^= 0x20),
            vec![AzureCheck::ReportData],
        ),
        (
            "HCL variable data not JSON",
            Box::new(|p| p.hcl[VAR_AT] = b'['),
            vec![AzureCheck::HclAkPub, AzureCheck::ReportData],
        ),
        (
            "HCL trailing bytes",
            Box::new(|p| *p.hcl.last_mut().unwrap() = 1),
            vec![AzureCheck::HclReport],
        ),
        // TD quote: header, body fields, REPORTDATA, signature, certification data
        (
            "TD quote version",
            Box::new(|p| p.td[0] ^= 2),
            vec![AzureCheck::TdQuote],
        ),
        // Version 5 puts the body after a 6-byte descriptor: the raw binding reads move with it.
        (
            "TD quote version 5",
            Box::new(|p| p.td[0] ^= 1),
            vec![
                AzureCheck::TdQuote,
                AzureCheck::ReportData,
                AzureCheck::HclTdReport,
            ],
        ),
        (
            "TD quote MRTD",
            Box::new(move |p| p.td[body + 136] ^= 1),
            vec![AzureCheck::TdQuote, AzureCheck::HclTdReport],
        ),
        (
            "TD quote RTMR0",
            Box::new(move |p| p.td[body + 328] ^= 1),
            vec![AzureCheck::TdQuote, AzureCheck::HclTdReport],
        ),
        (
            "TD quote REPORTDATA",
            Box::new(move |p| p.td[body + 520] ^= 1),
            vec![
                AzureCheck::TdQuote,
                AzureCheck::ReportData,
                AzureCheck::HclTdReport,
            ],
        ),
        (
            "TD quote REPORTDATA tail",
            Box::new(move |p| p.td[body + 560] ^= 1),
            vec![AzureCheck::TdQuote, AzureCheck::HclTdReport],
        ),
        (
            "TD quote signature",
            Box::new(|p| p.td[640] ^= 1),
            vec![AzureCheck::TdQuote],
        ),
        (
            "TD quote QE report",
            Box::new(|p| p.td[800] ^= 1),
            vec![AzureCheck::TdQuote],
        ),
        (
            "TD quote PCK chain",
            Box::new(|p| {
                let n = p.td.len();
                p.td[n - 100] ^= 1;
            }),
            vec![AzureCheck::TdQuote],
        ),
        (
            "TD quote truncated",
            Box::new(|p| p.td.truncate(1000)),
            vec![AzureCheck::TdQuote],
        ),
        (
            "TD quote short",
            Box::new(|p| p.td.truncate(600)),
            vec![AzureCheck::TdQuote],
        ),
    ];
    for (name, edit, want) in &cases {
        let mut q = p.clone();
        edit(&mut q);
        assert_eq!(failed(&v1(&q)), *want, "{name} (v1)");
        assert_eq!(failed(&v0(&q)), *want, "{name} (v0)");
    }
}

#[test]
fn no_byte_of_the_signed_or_bound_parts_can_change() {
    let p = parts();
    let var_len = u32::from_le_bytes(p.hcl[0x4d0..0x4d4].try_into().unwrap()) as usize;
    type Region = (
        &'static str,
        fn(&mut Parts) -> &mut Vec<u8>,
        std::ops::Range<usize>,
        usize,
    );
    let regions: [Region; 4] = [
        ("TPMS_ATTEST", |p| &mut p.message, 0..p.message.len(), 3),
        ("signature", |p| &mut p.signature, 0..p.signature.len(), 32),
        (
            "HCL variable data",
            |p| &mut p.hcl,
            VAR_AT..VAR_AT + var_len,
            50,
        ),
        // header, body, signature, attestation key, QE report and its signature. Sampled (each
        // verification re-encodes and re-verifies everything): every byte of these regions is
        // covered by a signature or a hash, the table above names the check per region.
        ("TD quote", |p| &mut p.td, 0..1218, 31),
    ];
    for (name, part, range, step) in regions {
        for at in range.step_by(step) {
            let mut q = p.clone();
            part(&mut q)[at] ^= 0x01;
            let r = azure::verify(&v1(&q), NONCE, AT, None);
            assert!(!r.valid, "{name} offset {at}");
        }
    }
}

#[test]
fn the_td_quote_failure_names_the_inner_check() {
    let mut p = parts();
    p.td[640] ^= 1;
    let r = azure::verify(&v1(&p), NONCE, AT, None);
    let e = r.checks.errors().next().unwrap();
    assert!(
        matches!(e, azure::AzureError::TdQuote(t) if t.check() == "QuoteSignature"),
        "{e}"
    );
    // Before the PCK certificate's validity.
    let r = azure::verify(V1, NONCE, 1_600_000_000, None);
    assert_eq!(r.failed_checks, [AzureCheck::TdQuote]);
}

#[test]
fn malformed_truncated_and_oversized_files_are_rejected() {
    for n in (0..V1.len()).step_by(97) {
        assert_eq!(failed(&V1[..n]), [AzureCheck::Decode], "v1 prefix {n}");
    }
    for n in (0..V0.len()).step_by(211) {
        assert_eq!(failed(&V0[..n]), [AzureCheck::Decode], "v0 prefix {n}");
    }
    let mut v: Value = serde_json::from_slice(V1).unwrap();
    v["version"] = 2.into();
    assert_eq!(
        failed(&serde_json::to_vec(&v).unwrap()),
        [AzureCheck::Decode]
    );
    let mut v: Value = serde_json::from_slice(V0).unwrap();
    v["hcl_report"][0] = 256.into();
    assert_eq!(
        failed(&serde_json::to_vec(&v).unwrap()),
        [AzureCheck::Decode]
    );
    let mut v: Value = serde_json::from_slice(V1).unwrap();
    v["td_quote"] = "not base64!".into();
    assert_eq!(
        failed(&serde_json::to_vec(&v).unwrap()),
        [AzureCheck::Decode]
    );
    let mut big = V1.to_vec();
    big.resize(locus_analysis::verify::cloud::MAX_EVIDENCE_LEN + 1, b' ');
    assert_eq!(failed(&big), [AzureCheck::Oversized]);
}

// ---------------------------------------------------------------- CLI

fn locus(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["verify", "az-tdx-vtpm"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_verifies_both_encodings() {
    for f in ["evidence-v1.json", "evidence-v0.json"] {
        let path = format!("{DIR}/azure-tdx-vtpm/{f}");
        let (code, out, err) = locus(&[
            &path,
            "--nonce",
            "challenge",
            "--at",
            "2025-01-01T00:00:00Z",
            "--json",
        ]);
        assert_eq!(code, 0, "{f}: {out}{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["identity"]["tcb_status"], "Unknown");
        assert_eq!(v["identity"]["collateral_checked"], false);
        assert_eq!(v["pcrs"].as_array().unwrap().len(), 24);
        let (code, out, _) = locus(&[
            &path,
            "--nonce-hex",
            "6368616c6c656e6765",
            "--at",
            "1735689600",
        ]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("NO COLLATERAL"), "{out}");
    }
}

#[test]
fn cli_names_failed_checks_and_exits_2_on_bad_usage() {
    let path = format!("{DIR}/azure-tdx-vtpm/evidence-v1.json");
    let (code, out, _) = locus(&[&path, "--nonce", "other", "--at", "1735689600"]);
    assert_eq!(code, 1);
    // `--accept-tcb` takes Intel's names; without collateral `TdTcb` is skipped, not failed.
    let (code, out2, _) = locus(&[
        &path,
        "--nonce",
        "challenge",
        "--at",
        "1735689600",
        "--accept-tcb",
        "UpToDate",
    ]);
    assert_eq!(code, 0, "{out2}");
    assert!(out.contains("failed checks Nonce\n"), "{out}");

    // Collateral for another platform: the TD quote check fails, and says why.
    let coll = format!("{DIR}/dcap-qvl/tdx_quote_collateral.json");
    let (code, out, _) = locus(&[
        &path,
        "--nonce",
        "challenge",
        "--collateral",
        &coll,
        "--at",
        "1752919234",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("failed checks TdQuote"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let bad_coll = dir.path().join("coll.json");
    std::fs::write(&bad_coll, "{}").unwrap();
    for args in [
        vec![path.as_str(), "--at", "1735689600"],
        vec![missing.to_str().unwrap(), "--nonce", "challenge"],
        vec![path.as_str(), "--nonce-hex", "xyz"],
        vec![path.as_str(), "--nonce", "a", "--nonce-hex", "61"],
        vec![
            path.as_str(),
            "--nonce",
            "challenge",
            "--accept-tcb",
            "Fine",
        ],
        vec![
            path.as_str(),
            "--nonce",
            "challenge",
            "--collateral",
            bad_coll.to_str().unwrap(),
        ],
    ] {
        let (code, out, err) = locus(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
    }
    let big = dir.path().join("big.json");
    let mut b = V1.to_vec();
    b.resize(2 << 20, b' ');
    std::fs::write(&big, b).unwrap();
    let (code, out, _) = locus(&[big.to_str().unwrap(), "--nonce", "challenge"]);
    assert_eq!(code, 1);
    assert!(out.contains("failed checks Oversized"), "{out}");
}
