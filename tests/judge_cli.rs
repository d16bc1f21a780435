//! `locus judge` on stored files: verdicts, evidence directory, exit codes 0 / 1 / 2.

use std::path::Path;
use std::process::Command;

use locus_analysis::check::VerdictCheck;
use locus_analysis::judge::geo::distance_km;
use locus_analysis::{
    AnchorReport, EchoSample, EvidenceSummary, InTdTimings, NodeInput, Prober, ProberSeries,
    SamplesFile, Site,
};

fn site(name: &str, lat: f64, lon: f64) -> Site {
    Site {
        name: name.into(),
        lat,
        lon,
    }
}

/// A node at `td` claiming `fra`, seen from three probers at inflation 1.5.
fn node(file: &SamplesFile, name: &str, td: &str) -> NodeInput {
    let at = |s: &str| file.sites.iter().find(|x| x.name == s).unwrap().position();
    let ms = |a: &str, b: &str| 2.0 * distance_km(at(a), at(b)) * 1.5 / 200.0;
    let probes = file
        .probers
        .iter()
        .map(|p| ProberSeries {
            prober: p.id.clone(),
            sent: 100,
            samples: (0..100u64)
                .map(|i| EchoSample {
                    sent_ns: i * 100_000_000,
                    rtt_ns: ((ms(&p.site, td) + 0.05 + (i % 7) as f64 * 0.01) * 1e6) as u64,
                    inside_ns: 20_000,
                })
                .collect(),
            evidence_rtt_ns: vec![],
            peer_spki: None,
        })
        .collect();
    NodeInput {
        name: name.into(),
        claim: "fra".into(),
        probes,
        in_td: InTdTimings::default(),
        anchors: vec![AnchorReport {
            site: "fra".into(),
            min_rtt_ns: ((ms(td, "fra") + 0.3) * 1e6) as u64,
            samples: 5,
        }],
        evidence: None,
        baseline: vec![],
        endorsement: None,
        poe: None,
        ..NodeInput::default()
    }
}

fn world() -> SamplesFile {
    SamplesFile {
        version: 1,
        sites: vec![
            site("fra", 50.11, 8.68),
            site("ams", 52.37, 4.90),
            site("par", 48.86, 2.35),
            site("waw", 52.23, 21.01),
        ],
        probers: ["ams", "par", "waw"]
            .iter()
            .map(|s| Prober {
                id: s.to_string(),
                site: s.to_string(),
            })
            .collect(),
        landmarks: vec![],
        nodes: vec![],
    }
}

fn valid() -> EvidenceSummary {
    EvidenceSummary {
        valid: true,
        failed_checks: vec![],
        tdx_vtpm_bound: Some(true),
        lab_root: false,
        platform_id: None,
        zone: None,
        unpinned_code: false,
        session_keys: vec![],
    }
}

/// `locus judge` on `dir`'s samples and evidence summaries, which these tests trust
/// (`--trust-summaries`; without it, see `unsigned_summaries_are_refused_unless_trusted`).
fn locus_judge(dir: &Path, extra: &[&str]) -> (i32, String) {
    locus_judge_untrusted(dir, &[&["--trust-summaries"], extra].concat())
}

fn locus_judge_untrusted(dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .arg("judge")
        .arg("--samples")
        .arg(dir.join("samples.json"))
        .arg("--evidence")
        .arg(dir.join("evidence"))
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn write(dir: &Path, file: &SamplesFile, evidence: &[(&str, EvidenceSummary)]) {
    std::fs::write(
        dir.join("samples.json"),
        serde_json::to_string(file).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("evidence")).unwrap();
    for (name, ev) in evidence {
        std::fs::write(
            dir.join("evidence").join(format!("{name}.json")),
            serde_json::to_string(ev).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn honest_node_exits_zero_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = world();
    f.nodes.push(node(&f, "honest", "fra"));
    write(dir.path(), &f, &[("honest", valid())]);
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy.example.toml");
    let (code, out) = locus_judge(dir.path(), &["--policy", policy, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["nodes"][0]["verdict"], "located", "{out}");
    assert_eq!(code, 0);
}

/// The node's check named `check` (a `VerdictCheck` id) in a judgement.
fn check(node: &serde_json::Value, check: VerdictCheck) -> &serde_json::Value {
    node["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == check.name())
        .unwrap_or_else(|| panic!("no {check:?} check: {node:#}"))
}

/// Issue 18, item 5: an evidence summary is unsigned JSON that anyone can write, in a file next
/// to the data or in the samples file itself. Without `--trust-summaries` neither is used (nor
/// the samples file's in-TD timings and anchors): the `evidence` check names the refusal and
/// the node is `inconclusive`, every reason naming the flag.
#[test]
fn unsigned_summaries_are_refused_unless_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = world();
    f.nodes.push(node(&f, "from-file", "fra"));
    let mut inline = node(&f, "inline", "fra");
    inline.evidence = Some(valid());
    f.nodes.push(inline);
    write(dir.path(), &f, &[("from-file", valid())]);
    let (code, out) = locus_judge_untrusted(dir.path(), &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 1, "{out}");
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(n["verdict"], "inconclusive", "{n:#}");
        let ev = check(n, VerdictCheck::Evidence);
        assert_eq!(ev["status"], "skip", "{ev}");
        assert!(ev["detail"].as_str().unwrap().contains("unsigned"), "{ev}");
        for r in n["reasons"].as_array().unwrap() {
            assert!(r.as_str().unwrap().contains("--trust-summaries"), "{r}");
        }
        // the samples file's anchors were dropped with its summary
        assert_eq!(n["anchors"].as_array().unwrap().len(), 0, "{n:#}");
    }
    // trusted, each says where it came from
    let (code, out) = locus_judge(dir.path(), &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0, "{out}");
    for n in v["nodes"].as_array().unwrap() {
        let ev = check(n, VerdictCheck::Evidence);
        assert!(
            ev["detail"].as_str().unwrap().contains("--trust-summaries"),
            "{ev}"
        );
    }
}

/// Issue 18, item 5: evidence under the lab root fails the `evidence` check under the default
/// verdict policy (`accept_lab_root = false`), even from a trusted summary.
#[test]
fn lab_root_is_refused_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = world();
    f.nodes.push(node(&f, "lab", "fra"));
    let mut ev = valid();
    ev.lab_root = true;
    write(dir.path(), &f, &[("lab", ev)]);
    let (code, out) = locus_judge(dir.path(), &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let n = &v["nodes"][0];
    assert_eq!(n["verdict"], "evidence-invalid", "{n:#}");
    assert_eq!(check(n, VerdictCheck::Evidence)["status"], "fail", "{n:#}");
    assert_eq!(code, 1);
    std::fs::write(dir.path().join("lab.toml"), "accept_lab_root = true\n").unwrap();
    let lab = dir.path().join("lab.toml");
    let (code, out) = locus_judge(dir.path(), &["--policy", lab.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn negative_verdict_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = world();
    f.nodes.push(node(&f, "honest", "fra"));
    f.nodes.push(node(&f, "elsewhere", "waw"));
    let mut bad = valid();
    bad.valid = false;
    bad.failed_checks = vec!["tdx-quote-signature".into()];
    write(dir.path(), &f, &[("honest", valid()), ("elsewhere", bad)]);
    let (code, out) = locus_judge(dir.path(), &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["nodes"][0]["verdict"], "located", "{out}");
    assert_eq!(v["nodes"][1]["verdict"], "evidence-invalid", "{out}");
    assert_eq!(code, 1);
    // without its evidence summary the same node's timing still gives it away
    std::fs::remove_file(dir.path().join("evidence/elsewhere.json")).unwrap();
    let (code, out) = locus_judge(dir.path(), &["--node", "elsewhere"]);
    assert!(
        out.contains("elsewhere") && out.contains("relocated"),
        "{out}"
    );
    assert_eq!(code, 1);
}

#[test]
fn unreadable_input_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("evidence")).unwrap();
    std::fs::write(dir.path().join("samples.json"), "{not json").unwrap();
    assert_eq!(locus_judge(dir.path(), &[]).0, 2);
    let mut f = world();
    f.nodes.push(node(&f, "honest", "fra"));
    write(dir.path(), &f, &[]);
    std::fs::write(dir.path().join("bad.toml"), "no_such_threshold = 1\n").unwrap();
    let bad = dir.path().join("bad.toml");
    assert_eq!(
        locus_judge(dir.path(), &["--policy", bad.to_str().unwrap()]).0,
        2
    );
    std::fs::write(dir.path().join("evidence/honest.json"), "[]").unwrap();
    assert_eq!(locus_judge(dir.path(), &[]).0, 2);
}

#[test]
fn inventory_endorsement_moves_the_verdict() {
    use locus_analysis::verify::endorse::{
        public_key_pem, Inventory, InventoryEntry, SignedInventory, SigningKey,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut f = world();
    f.nodes.push(node(&f, "honest", "fra"));
    let mut ev = valid();
    ev.platform_id = Some("00aa11".into());
    write(dir.path(), &f, &[("honest", ev)]);
    let key = SigningKey::from_slice(&[7; 32]).unwrap();
    let inventory = |site: &str| Inventory {
        version: 1,
        issuer: "test registry".into(),
        not_before: 0,
        not_after: 4_000_000_000,
        entries: vec![InventoryEntry {
            platform_id: "00aa11".into(),
            owner: "acme".into(),
            facility: format!("{site}-1"),
            site: site.into(),
        }],
    };
    let key_path = dir.path().join("registry.pem");
    std::fs::write(&key_path, public_key_pem(key.verifying_key())).unwrap();
    let inv_path = dir.path().join("inventory.json");
    let args = [
        "--inventory",
        inv_path.to_str().unwrap(),
        "--inventory-key",
        key_path.to_str().unwrap(),
        "--at",
        "1800000000",
        "--json",
    ];
    for (site, verdict, code) in [("fra", "located", 0), ("waw", "relocated", 1)] {
        let signed = SignedInventory::sign(&inventory(site), &key);
        std::fs::write(&inv_path, serde_json::to_string(&signed).unwrap()).unwrap();
        let (c, out) = locus_judge(dir.path(), &args);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["nodes"][0]["verdict"], verdict, "{out}");
        assert_eq!(c, code);
    }
}

fn locus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn poe_owner_and_facility_move_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    let piid = "a5".repeat(16);
    let mut f = world();
    f.nodes.push(node(&f, "honest", "fra"));
    let mut ev = valid();
    ev.platform_id = Some(piid.clone());
    write(dir.path(), &f, &[("honest", ev)]);
    for (issuer, name) in [("iss", "acme.example"), ("intruder", "intruder.example")] {
        let out = locus(&[
            "endorse",
            "poe",
            "issuer",
            "--out",
            &d(issuer),
            "--name",
            name,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let issue = |issuer: &str, piid: &str, site: &str, extra: &[&str]| {
        let mut args = vec![
            "endorse".to_string(),
            "poe".into(),
            "issue".into(),
            "--key".into(),
            d(&format!("{issuer}/poe-key.pem")),
            "--chain".into(),
            d(&format!("{issuer}/poe-chain.pem")),
            "--piid".into(),
            piid.into(),
            "--owner".into(),
            "acme.example".into(),
            "--facility".into(),
            format!("{site}-1"),
            "--site".into(),
            site.into(),
            "--out".into(),
            d("poe.cbor"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = locus(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let policy = |owner: &str| {
        std::fs::write(
            dir.path().join("policy.toml"),
            format!("require_endorsement = true\nexpected_owner = \"{owner}\"\n"),
        )
        .unwrap();
    };
    let judge = || {
        let poe = d("poe.cbor");
        let anchor = d("iss/poe-root.pem");
        let pol = d("policy.toml");
        let args = [
            "--json",
            "--policy",
            &pol,
            "--poe",
            &poe,
            "--poe-anchor",
            &anchor,
        ];
        let (code, out) = locus_judge(dir.path(), &args);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (code, v["nodes"][0].clone())
    };
    let status = |n: &serde_json::Value, check: &str| {
        n["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .map(|c| c["status"].as_str().unwrap().to_string())
    };
    let other_piid = "5a".repeat(16);
    let expired: &[&str] = &["--not-before", "2020-01-01T00:00:00Z", "--days", "30"];
    /// issuer, PIID, site, issue flags, expected owner, verdict, deciding check
    struct Case<'a>(
        &'a str,
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a str,
        &'a str,
        &'a str,
    );
    let cases = [
        Case(
            "iss",
            &piid,
            "fra",
            &[],
            "acme.example",
            "located",
            "poe-facility",
        ),
        Case(
            "iss",
            &piid,
            "waw",
            &[],
            "acme.example",
            "relocated",
            "poe-facility",
        ),
        Case(
            "intruder",
            &piid,
            "fra",
            &[],
            "acme.example",
            "evidence-invalid",
            "poe-chain",
        ),
        Case(
            "iss",
            &other_piid,
            "fra",
            &[],
            "acme.example",
            "evidence-invalid",
            "poe-piid",
        ),
        Case(
            "iss",
            &piid,
            "fra",
            expired,
            "acme.example",
            "evidence-invalid",
            "poe-validity",
        ),
        Case(
            "iss",
            &piid,
            "fra",
            &[],
            "rival.example",
            "evidence-invalid",
            "poe-owner",
        ),
    ];
    for Case(issuer, p, site, issue_extra, owner, verdict, check) in cases {
        issue(issuer, p, site, issue_extra);
        policy(owner);
        let (code, n) = judge();
        assert_eq!(n["verdict"], verdict, "{issuer} {site}: {n:#}");
        assert_eq!(code, if verdict == "located" { 0 } else { 1 });
        let want = if verdict == "located" { "pass" } else { "fail" };
        assert_eq!(status(&n, check).as_deref(), Some(want), "{check}: {n:#}");
        if verdict != "located" {
            assert!(
                n["reasons"][0].as_str().unwrap().contains(check),
                "{}",
                n["reasons"]
            );
        }
    }
    // --poe without a trust anchor is a usage error
    let (code, _) = locus_judge(dir.path(), &["--poe", &d("poe.cbor")]);
    assert_eq!(code, 2);
}
