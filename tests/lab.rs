//! End-to-end: `locus lab` on a short scenario with every kind of node; verdicts must equal the
//! truth, every swtpm must be gone afterwards (also after an interrupt), and bad scenarios
//! are refused with the line named.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod browser;
mod fixtures;

fn short() -> String {
    fixtures::scenario("short")
}

/// One lab at a time: each runs a whole world (relay, swtpms, responders, probers) whose
/// timing bounds a second lab beside it on a 2-core CI host can break (an evidence round trip
/// 58 ms over its bound once made the short scenario's honest node `inconclusive`).
fn one_lab_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LAB.lock().unwrap_or_else(|e| e.into_inner())
}

fn locus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_locus"))
}

/// `locus lab --json` on the fixture scenario `name`, its output and swtpm state in `tmp`: the
/// report, and the output directory.
fn run_lab(tmp: &Path, name: &str) -> (serde_json::Value, std::path::PathBuf) {
    let scenario = tmp.join(format!("{name}.toml"));
    std::fs::write(&scenario, fixtures::scenario(name)).unwrap();
    let out = tmp.join("out");
    let run = locus()
        .args(["lab", "--json", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .env("TMPDIR", tmp)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "lab failed: {stderr}");
    (serde_json::from_slice(&run.stdout).unwrap(), out)
}

/// swtpm processes whose command line mentions `dir` (their state lives under our TMPDIR).
fn swtpms_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("swtpm") && cmdline.contains(&needle) {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn short_scenario_verdicts_equal_truth_and_everything_is_cleaned_up() {
    let _one_lab = one_lab_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let (report, out) = run_lab(tmp.path(), "short");
    let responders = report["responders"].as_array().unwrap();
    assert_eq!(responders.len(), 4);
    for r in responders {
        assert_eq!(
            r["verdict"], r["truth"],
            "{} judged {} (truth {}): {}",
            r["name"], r["verdict"], r["truth"], r["reasons"]
        );
        assert!(r["collected_at"].as_u64().unwrap() > 0);
        assert_eq!(r["probers"].as_array().unwrap().len(), 4);
    }
    assert!(report["emulation"]["delay_error_p50_us"].as_f64().is_some());
    for f in [
        "report.json",
        "samples.csv",
        "samples.json",
        "index.html",
        "policy.toml",
        "rtt-vs-distance.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    report_renders_in_a_browser(&out, responders);
    // Each stored bundle re-verifies offline under the stored policy at its collection time.
    for r in responders {
        let name = r["name"].as_str().unwrap();
        let status = locus()
            .args(["verify", "evidence"])
            .arg(out.join(format!("evidence/{name}.bundle")))
            .arg("--policy")
            .arg(out.join("policy.toml"))
            .args(["--at", &r["collected_at"].to_string()])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "bundle of {name} does not verify offline");
        // Binding v2: the in-TD vTPM timings come from an AK-signed chain (a relayed vTPM
        // cannot answer it locally) and are bound into REPORTDATA.
        let bytes = std::fs::read(out.join(format!("evidence/{name}.bundle"))).unwrap();
        let b = locus_proto::evidence::EvidenceBundle::from_cbor(&bytes).unwrap();
        assert_eq!(b.version, locus_proto::evidence::BUNDLE_VERSION, "{name}");
        let links = b.tpm.as_ref().map_or(0, |t| t.chain.len());
        assert!(links > 0, "{name}: no signed vTPM chain");
        assert_eq!(b.timings.tpm_chain_ns.len(), links, "{name}");
    }
    // The anchors check is part of it: against a policy that pins another key for each anchor
    // (the lab pins its anchors like a production policy), the same bundle fails exactly there.
    let policy = std::fs::read_to_string(out.join("policy.toml")).unwrap();
    let pins: Vec<&str> = policy.split("spki_sha256 = \"").skip(1).collect();
    assert!(!pins.is_empty(), "the lab policy pins no anchor: {policy}");
    let mut wrong_pins = policy.clone();
    for p in pins {
        wrong_pins = wrong_pins.replace(&p[..64], &"0".repeat(64));
    }
    std::fs::write(out.join("policy-wrong-anchor-ca.toml"), wrong_pins).unwrap();
    let honest = &responders[0];
    let wrong = locus()
        .args(["verify", "evidence", "--json"])
        .arg(out.join("evidence/honest.bundle"))
        .arg("--policy")
        .arg(out.join("policy-wrong-anchor-ca.toml"))
        .args(["--at", &honest["collected_at"].to_string()])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&wrong.stdout).unwrap();
    let failed: Vec<String> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["check"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(failed, ["anchors"], "{report}");
    // The lab's nonces travel sealed to the swtpm's certified EK: the AK is proven to share
    // the EK's TPM.
    let binding = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "ak_ek_binding")
        .unwrap();
    assert_eq!(binding["status"], "pass", "{binding}");
    assert_eq!(binding["requirement"], "required", "{binding}");
    anchor_clock_is_bound(&out, honest);

    // The stored samples can be judged again offline, but only under trust the caller names.
    trust_is_not_taken_from_the_data(&out);
    judge_from_bundles(&out, responders);
    poe_on_lab_data(&out);
    assert!(swtpms_under(tmp.path()).is_empty(), "swtpm left running");
}

/// Issue 21: `index.html`, opened from disk in headless Chromium, renders without a console
/// message (the page has no script: any message is an error), has one table row per node
/// (named for it, with its verdict badge) and a card per node, and every image it shows is
/// there and parses as SVG in the browser.
fn report_renders_in_a_browser(out: &Path, responders: &[serde_json::Value]) {
    let Some(chromium) = browser::chromium() else {
        return;
    };
    let page = browser::load(&chromium, &out.join("index.html"));
    assert!(page.console.is_empty(), "console: {:#?}", page.console);
    let dom = &page.dom;
    let tbody = dom
        .split("<table id=\"verdicts\">")
        .nth(1)
        .and_then(|t| t.split("<tbody>").nth(1))
        .and_then(|t| t.split("</tbody>").next())
        .unwrap_or_else(|| panic!("no verdict table in the rendered page: {dom}"));
    assert_eq!(
        tbody.matches("<tr ").count(),
        responders.len(),
        "one row per node: {tbody}"
    );
    for r in responders {
        let name = r["name"].as_str().unwrap();
        let row = tbody
            .split(&format!("<tr class=\"node\" id=\"row-{name}\">"))
            .nth(1)
            .and_then(|t| t.split("</tr>").next())
            .unwrap_or_else(|| panic!("no row for {name}: {tbody}"));
        let verdict = r["verdict"].as_str().unwrap();
        assert!(
            row.contains(&format!("class=\"badge v-{verdict}\">{verdict}</span>")),
            "{name}: no {verdict} badge in {row}"
        );
        assert!(
            dom.contains(&format!("id=\"node-{name}\"")),
            "no card for {name}"
        );
        assert!(
            dom.contains(&format!("src=\"map-{name}.svg\"")),
            "no map for {name}"
        );
    }
    assert!(dom.contains("<footer>") && dom.contains("relay delay error"));
    // No fetch leaves the output directory: every link and image is relative.
    for external in ["http://", "https://", "src=\"//"] {
        assert!(
            !dom.contains(external),
            "external reference {external} in the page"
        );
    }
    let images: Vec<&str> = dom
        .split("<img src=\"")
        .skip(1)
        .filter_map(|t| t.split('"').next())
        .collect();
    // The overview, a map per node, and the RTT over time of the fixture's one mover.
    assert_eq!(images.len(), 1 + responders.len() + 1, "{images:?}");
    for img in images {
        let svg = browser::load(&chromium, &out.join(img));
        assert!(svg.console.is_empty(), "{img}: {:#?}", svg.console);
        assert!(
            svg.dom.contains("<svg") && !svg.dom.contains("parsererror"),
            "{img} does not render: {}",
            svg.dom
        );
    }
}

/// Issue 18, item 7: the anchor report names the clocksource it was timed with, and the quote
/// binds it. Changed to `hpet` it breaks the binding and fails `anchor_clocksource` by name;
/// turned back into a version 1 report (no clocksource) it fails `anchor_clocksource` under the
/// lab's policy, which requires one.
fn anchor_clock_is_bound(out: &Path, honest: &serde_json::Value) {
    let bytes = std::fs::read(out.join("evidence/honest.bundle")).unwrap();
    let b = locus_proto::evidence::EvidenceBundle::from_cbor(&bytes).unwrap();
    let report = b.anchors.as_ref().expect("the lab's bundles carry anchors");
    assert_eq!(report.version, locus_proto::anchor::ANCHOR_REPORT_VERSION);
    assert!(report.clocksource.is_some(), "{report:?}");
    let verify = |name: &str, b: &locus_proto::evidence::EvidenceBundle| {
        let path = out.join(format!("evidence/{name}.bundle-tampered"));
        std::fs::write(&path, b.to_cbor()).unwrap();
        let run = locus()
            .args(["verify", "evidence", "--json"])
            .arg(&path)
            .arg("--policy")
            .arg(out.join("policy.toml"))
            .args(["--at", &honest["collected_at"].to_string()])
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(1), "{name} verified");
        let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        let failed: Vec<(String, String)> = (v["checks"].as_array().unwrap().iter())
            .filter(|c| c["status"] == "fail")
            .map(|c| (c["check"].to_string(), c["detail"].to_string()))
            .collect();
        failed
    };
    let mut hpet = b.clone();
    hpet.anchors.as_mut().unwrap().clocksource = Some("hpet".into());
    let failed = verify("hpet", &hpet);
    let names: Vec<&str> = failed.iter().map(|f| f.0.trim_matches('"')).collect();
    assert!(
        names.contains(&"report_data"),
        "binding not broken: {failed:?}"
    );
    let clock = failed.iter().find(|f| f.0 == "\"anchor_clocksource\"");
    assert!(
        clock.is_some_and(|c| c.1.contains("hpet")),
        "hpet not refused by name: {failed:?}"
    );
    let mut v1 = b.clone();
    let r = v1.anchors.as_mut().unwrap();
    r.version = locus_proto::anchor::ANCHOR_REPORT_V1;
    r.clocksource = None;
    let failed = verify("v1", &v1);
    let clock = failed.iter().find(|f| f.0 == "\"anchor_clocksource\"");
    assert!(
        clock.is_some_and(|c| c.1.contains("does not name the clocksource")),
        "version 1 accepted: {failed:?}"
    );
}

/// Issue 18, item 5: the lab's output carries its own (lab) root, trust files, nonce ledger,
/// evidence policy, bundles and summaries in `samples.json`. Judged without flags no node is
/// `located`: the samples file's summaries are unsigned (`--trust-summaries`), the bundles
/// unverified (`--evidence-policy`), and the `evidence` check names why. Under the lab's
/// evidence policy but the default verdict policy, the lab root fails the `evidence` check.
fn trust_is_not_taken_from_the_data(out: &Path) {
    use locus_analysis::check::VerdictCheck;
    let evidence_check = |n: &serde_json::Value| {
        n["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == VerdictCheck::Evidence.name())
            .cloned()
            .unwrap_or_else(|| panic!("no evidence check: {n:#}"))
    };
    let samples = out.join("samples.json");
    for extra in [&[][..], &["--evidence".as_ref(), out.as_os_str()][..]] {
        let js = judge(&samples, extra);
        assert!(!js.is_empty());
        for j in &js {
            assert_ne!(j["verdict"], "located", "{:#}", j["reasons"]);
            let ev = evidence_check(j);
            assert_ne!(ev["status"], "pass", "{ev}");
        }
        let honest = js.iter().find(|j| j["name"] == "honest").unwrap();
        assert_eq!(honest["verdict"], "inconclusive", "{honest:#}");
        let flag = if extra.is_empty() {
            "--trust-summaries"
        } else {
            "--evidence-policy"
        };
        for r in honest["reasons"].as_array().unwrap() {
            assert!(r.as_str().unwrap().contains(flag), "{r}");
        }
    }
    let run = locus()
        .args(["judge", "--json", "--samples"])
        .arg(&samples)
        .arg("--evidence")
        .arg(out)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "nothing located: judge exits 1");
    let js = judge(
        &samples,
        &[
            "--evidence".as_ref(),
            out.as_os_str(),
            "--evidence-policy".as_ref(),
            out.join("policy.toml").as_os_str(),
        ],
    );
    let honest = js.iter().find(|j| j["name"] == "honest").unwrap();
    assert_eq!(honest["verdict"], "evidence-invalid", "{honest:#}");
    let ev = evidence_check(honest);
    assert_eq!(ev["status"], "fail", "{ev}");
    assert!(ev["detail"].as_str().unwrap().contains("lab-root"), "{ev}");
}

/// `locus judge --json` on `samples` with `extra` arguments; the per-node judgements.
fn judge(samples: &Path, extra: &[&std::ffi::OsStr]) -> Vec<serde_json::Value> {
    let run = locus()
        .args(["judge", "--json", "--samples"])
        .arg(samples)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "judge printed no JSON: {stdout} {}",
            String::from_utf8_lossy(&run.stderr)
        )
    });
    v["nodes"].as_array().unwrap().clone()
}

/// The stored samples stripped of everything the bundles carry (evidence, in-TD timings,
/// anchors) and judged offline from `OUT/evidence/*.bundle`: the lab's verdicts again. A
/// tampered bundle gives `evidence-invalid` naming the failed check.
fn judge_from_bundles(out: &Path, responders: &[serde_json::Value]) {
    let mut samples: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("samples.json")).unwrap()).unwrap();
    for n in samples["nodes"].as_array_mut().unwrap() {
        let n = n.as_object_mut().unwrap();
        for k in ["evidence", "in_td", "anchors"] {
            n.remove(k);
        }
    }
    let bare = out.join("samples-bare.json");
    std::fs::write(&bare, samples.to_string()).unwrap();
    let without = judge(&bare, &[]);
    let with = judge(
        &bare,
        &[
            "--evidence".as_ref(),
            out.as_os_str(),
            "--evidence-policy".as_ref(),
            out.join("policy.toml").as_os_str(),
            "--policy".as_ref(),
            out.join("verdict-policy.toml").as_os_str(),
        ],
    );
    for (r, j) in responders.iter().zip(&with) {
        assert_eq!(j["name"], r["name"]);
        assert_eq!(
            j["verdict"], r["verdict"],
            "{}: {:#}",
            r["name"], j["reasons"]
        );
    }
    // Without the bundles the evidence is unknown: honest is no longer `located`, and the
    // relayed vTPM (seen in the bundle's in-TD timings) is no longer found.
    let verdict_of = |js: &[serde_json::Value], name: &str| {
        js.iter().find(|j| j["name"] == name).unwrap()["verdict"].clone()
    };
    assert_eq!(verdict_of(&without, "honest"), "inconclusive");
    assert_ne!(verdict_of(&without, "franken"), "frankenstein");

    // Flip one byte of the honest node's TD report (MRTD, offset 48 + 136): the quote's
    // signature no longer holds.
    let tampered = out.join("tampered");
    std::fs::create_dir_all(&tampered).unwrap();
    let bytes = std::fs::read(out.join("evidence/honest.bundle")).unwrap();
    let mut b = locus_proto::evidence::EvidenceBundle::from_cbor(&bytes).unwrap();
    b.tdx.as_mut().unwrap().quote[184] ^= 1;
    std::fs::write(tampered.join("honest.bundle"), b.to_cbor()).unwrap();
    let j = judge(
        &bare,
        &[
            "--node".as_ref(),
            "honest".as_ref(),
            "--evidence".as_ref(),
            tampered.as_os_str(),
            "--evidence-policy".as_ref(),
            out.join("policy.toml").as_os_str(),
        ],
    );
    assert_eq!(j[0]["verdict"], "evidence-invalid", "{:#}", j[0]["reasons"]);
    let reason = j[0]["reasons"][0].as_str().unwrap();
    assert!(reason.contains("tdx_quote"), "{reason}");
}

/// A POE for the lab platform's PIID (read from a bundle's PCK certificate) feeds the
/// verdict: at the claimed site the honest node stays `located`, at another `relocated`.
fn poe_on_lab_data(out: &Path) {
    let run = |args: &[&std::ffi::OsStr]| {
        let r = locus().args(args).output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    };
    let iss = out.join("poe-issuer");
    run(&[
        "endorse".as_ref(),
        "poe".as_ref(),
        "issuer".as_ref(),
        "--out".as_ref(),
        iss.as_os_str(),
    ]);
    std::fs::write(
        out.join("verdict-policy-poe.toml"),
        "accept_lab_root = true\nrequire_endorsement = true\n\
         expected_owner = \"lab-operator.example\"\n",
    )
    .unwrap();
    for (site, verdict, check_status) in [("fra", "located", "pass"), ("par", "relocated", "fail")]
    {
        let poe = out.join(format!("poe-{site}.cbor"));
        run(&[
            "endorse".as_ref(),
            "poe".as_ref(),
            "issue".as_ref(),
            "--key".as_ref(),
            iss.join("poe-key.pem").as_os_str(),
            "--chain".as_ref(),
            iss.join("poe-chain.pem").as_os_str(),
            "--bundle".as_ref(),
            out.join("evidence/honest.bundle").as_os_str(),
            "--owner".as_ref(),
            "lab-operator.example".as_ref(),
            "--site".as_ref(),
            site.as_ref(),
            "--out".as_ref(),
            poe.as_os_str(),
        ]);
        let j = judge(
            &out.join("samples.json"),
            &[
                "--node".as_ref(),
                "honest".as_ref(),
                "--evidence".as_ref(),
                out.as_os_str(),
                "--evidence-policy".as_ref(),
                out.join("policy.toml").as_os_str(),
                "--policy".as_ref(),
                out.join("verdict-policy-poe.toml").as_os_str(),
                "--poe".as_ref(),
                poe.as_os_str(),
                "--poe-anchor".as_ref(),
                iss.join("poe-root.pem").as_os_str(),
            ],
        );
        assert_eq!(j[0]["verdict"], verdict, "{:#}", j[0]["reasons"]);
        let facility = j[0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "poe-facility")
            .unwrap();
        assert_eq!(facility["status"], check_status, "{facility}");
    }
}

#[test]
fn interrupted_lab_cleans_up() {
    let _one_lab = one_lab_at_a_time();
    use nix::sys::signal::Signal;
    // Once while emulators are being set up (Ctrl-C), once while probing (SIGTERM, as from
    // `kill` or systemd): both are an interrupt.
    for (extra_wait, signal) in [
        (Duration::ZERO, Signal::SIGINT),
        (Duration::from_secs(4), Signal::SIGTERM),
    ] {
        interrupt_after(extra_wait, signal);
    }
}

fn interrupt_after(extra_wait: Duration, signal: nix::sys::signal::Signal) {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("short.toml");
    std::fs::write(
        &scenario,
        short().replace("duration_s = 10", "duration_s = 60"),
    )
    .unwrap();
    let mut child = locus()
        .args(["lab", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the emulators run, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    while swtpms_under(tmp.path()).len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !swtpms_under(tmp.path()).is_empty(),
        "the lab never started its emulators"
    );
    std::thread::sleep(extra_wait);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
    let status = child.wait().unwrap();
    // README: an interrupted run exits 2, like any run that could not complete.
    assert_eq!(status.code(), Some(2), "{signal}: {status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        stderr.matches("interrupted").count(),
        1,
        "{signal}: {stderr}"
    );
    assert!(
        swtpms_under(tmp.path()).is_empty(),
        "swtpm left running after an interrupt"
    );
}

#[test]
fn bad_scenarios_are_refused_with_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    let text = short().replace("tpm_site = \"prg\"", "tpm_site = \"atlantis\"");
    // The scenario refused: exit 2 and its stderr.
    let refused = |text: &str| {
        std::fs::write(&bad, text).unwrap();
        let run = locus()
            .args(["lab", "--scenario"])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(2));
        String::from_utf8_lossy(&run.stderr).into_owned()
    };
    let stderr = refused(&text);
    let line = text.lines().position(|l| l.contains("tpm_site")).unwrap() + 1;
    assert!(
        stderr.contains(&format!("line {line}")) && stderr.contains("unknown site \"atlantis\""),
        "{stderr}"
    );
    // Said once: the TOML error's message and excerpt are not repeated by its context.
    assert_eq!(stderr.matches("unknown site").count(), 1, "{stderr}");
    // A syntax error, too.
    let stderr = refused("[settings\n");
    assert_eq!(stderr.matches("TOML parse error").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("[settings").count(), 1, "{stderr}");
    let missing = locus()
        .args(["lab", "--scenario", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

/// Issue 19: on a network that matches no model (per-path inflation 1.1 to 3.0, one of them
/// one way, a route change, heavy-tailed jitter) the honest node is not accused: `located`,
/// or `inconclusive` with a reason. The lab's landmark at the claimed site is measured by every
/// prober, shown in the report, carried by `samples.json`, and `locus judge` re-judges that
/// file to the lab's verdicts.
#[test]
fn network_like_scenario_accuses_no_honest_node_and_carries_landmarks_to_judge() {
    let _one_lab = one_lab_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let (report, out) = run_lab(tmp.path(), "networks");
    let responders = report["responders"].as_array().unwrap();
    // One landmark RTT per prober, to Frankfurt, within what the scenario's paths allow: at
    // least the straight fiber path's round trip, at most the slowest inflation's (4.0) plus
    // jitter and scheduling.
    let landmarks = report["landmarks"].as_array().unwrap();
    let probers: Vec<&str> = landmarks
        .iter()
        .map(|l| l["prober"].as_str().unwrap())
        .collect();
    assert_eq!(
        probers,
        ["p0-ams", "p1-lon", "p2-par", "p3-waw"],
        "{landmarks:?}"
    );
    for (l, km) in landmarks.iter().zip([363.8, 637.9, 477.7, 890.2]) {
        assert_eq!(l["site"], "fra");
        let ms = l["min_rtt_ms"].as_f64().unwrap();
        let fiber = 2.0 * km / 200.0;
        assert!(ms >= fiber * 0.98 && ms <= fiber * 4.0 + 5.0, "{l}");
    }
    let samples: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("samples.json")).unwrap()).unwrap();
    assert_eq!(samples["landmarks"].as_array().unwrap().len(), 4);

    // `locus judge` on the lab's own output reaches the lab's verdicts: same calibration.
    let js = judge(
        &out.join("samples.json"),
        &[
            "--trust-summaries".as_ref(),
            "--policy".as_ref(),
            out.join("verdict-policy.toml").as_os_str(),
        ],
    );
    for r in responders {
        let j = js.iter().find(|j| j["name"] == r["name"]).unwrap();
        assert_eq!(
            j["verdict"], r["verdict"],
            "{}: {:#}",
            r["name"], j["reasons"]
        );
    }

    let honest = responders.iter().find(|r| r["name"] == "honest").unwrap();
    let verdict = honest["verdict"].as_str().unwrap();
    assert!(
        verdict == "located"
            || (verdict == "inconclusive" && !honest["reasons"].as_array().unwrap().is_empty()),
        "honest node accused: {verdict}: {:#}",
        honest["reasons"]
    );
}
