//! `locus endorse poe`: a lab issuer, issuing and verifying a POE, each failed check named in
//! the JSON, exit codes 0 / 1 / 2.

use std::path::Path;
use std::process::Command;

fn locus(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn p(dir: &Path, rel: &str) -> String {
    dir.join(rel).to_str().unwrap().to_string()
}

#[test]
fn issue_and_verify_with_each_check_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let piid = "0f".repeat(32);
    for (out, name) in [("iss", "operator.example"), ("other", "other.example")] {
        let (code, _, err) = locus(&[
            "endorse",
            "poe",
            "issuer",
            "--out",
            &p(d, out),
            "--name",
            name,
        ]);
        assert_eq!(code, 0, "{err}");
    }
    let issue = |issuer: &str, out: &str| {
        let (code, _, err) = locus(&[
            "endorse",
            "poe",
            "issue",
            "--key",
            &p(d, &format!("{issuer}/poe-key.pem")),
            "--chain",
            &p(d, &format!("{issuer}/poe-chain.pem")),
            "--piid",
            &piid,
            "--owner",
            "operator.example",
            "--site",
            "fra",
            "--not-before",
            "2030-01-01T00:00:00Z",
            "--not-after",
            "2031-01-01T00:00:00Z",
            "--out",
            &p(d, out),
        ]);
        assert_eq!(code, 0, "{err}");
    };
    issue("iss", "good.cbor");
    issue("other", "foreign-signer.cbor");
    let verify = |poe: &str, extra: &[&str]| {
        let file = p(d, poe);
        let anchor = p(d, "iss/poe-root.pem");
        let mut args = vec![
            "endorse", "poe", "verify", &file, "--anchor", &anchor, "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = locus(&args);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{err}"));
        let failed: Vec<String> = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        (code, failed, v)
    };
    let inside = ["--at", "2030-06-01T00:00:00Z"];
    let (code, failed, v) = verify(
        "good.cbor",
        &[
            &inside[..],
            &[
                "--piid",
                &piid,
                "--expected-owner",
                "operator.example",
                "--site",
                "fra",
            ],
        ]
        .concat(),
    );
    assert_eq!((code, failed.len()), (0, 0), "{v:#}");
    assert_eq!(v["claims"]["owner"], "operator.example");
    assert_eq!(v["claims"]["site"], "fra");
    let other_piid = "f0".repeat(32);
    for (poe, extra, check) in [
        (
            "foreign-signer.cbor",
            vec!["--at", "2030-06-01T00:00:00Z"],
            "poe-chain",
        ),
        (
            "good.cbor",
            vec!["--at", "2031-01-02T00:00:00Z"],
            "poe-validity",
        ),
        (
            "good.cbor",
            vec!["--at", "2029-12-31T00:00:00Z"],
            "poe-validity",
        ),
        (
            "good.cbor",
            vec!["--at", "2030-06-01T00:00:00Z", "--piid", &other_piid],
            "poe-piid",
        ),
        (
            "good.cbor",
            vec![
                "--at",
                "2030-06-01T00:00:00Z",
                "--expected-owner",
                "rival.example",
            ],
            "poe-owner",
        ),
        (
            "good.cbor",
            vec!["--at", "2030-06-01T00:00:00Z", "--site", "waw"],
            "poe-facility",
        ),
    ] {
        let (code, failed, v) = verify(poe, &extra);
        assert_eq!(code, 1, "{poe} {extra:?}: {v:#}");
        assert_eq!(failed, [check], "{poe} {extra:?}: {v:#}");
    }
    // a file that is no POE fails poe-format; a missing file is unreadable input (2)
    std::fs::write(d.join("junk.cbor"), b"not cbor").unwrap();
    let (code, failed, _) = verify("junk.cbor", &inside);
    assert_eq!((code, failed), (1, vec!["poe-format".to_string()]));
    let (code, _, err) = locus(&[
        "endorse",
        "poe",
        "verify",
        &p(d, "missing.cbor"),
        "--anchor",
        &p(d, "iss/poe-root.pem"),
    ]);
    assert_eq!(code, 2, "{err}");
    // issuing needs a platform, and a PIID of a profile length
    let (code, _, err) = locus(&[
        "endorse",
        "poe",
        "issue",
        "--key",
        &p(d, "iss/poe-key.pem"),
        "--chain",
        &p(d, "iss/poe-chain.pem"),
        "--piid",
        "abcd",
        "--owner",
        "x",
        "--out",
        &p(d, "bad.cbor"),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("16 or 32"), "{err}");
    // the key must belong to the chain's leaf
    let (code, _, err) = locus(&[
        "endorse",
        "poe",
        "issue",
        "--key",
        &p(d, "other/poe-key.pem"),
        "--chain",
        &p(d, "iss/poe-chain.pem"),
        "--piid",
        &piid,
        "--owner",
        "x",
        "--out",
        &p(d, "bad.cbor"),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not the key of the chain's leaf"), "{err}");
}
