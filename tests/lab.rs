//! End-to-end: `locus lab` on a short scenario with every kind of node; verdicts must equal the
//! truth, every swtpm must be gone afterwards (also after an interrupt), and bad scenarios
//! are refused with the line named.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHORT: &str = r#"
[settings]
duration_s = 10
seed = 7
rate_hz = 50

[[site]]
name = "fra"
lat = 50.11
lon = 8.68
[[site]]
name = "ams"
lat = 52.37
lon = 4.90
[[site]]
name = "par"
lat = 48.86
lon = 2.35
[[site]]
name = "waw"
lat = 52.23
lon = 21.01
[[site]]
name = "lon"
lat = 51.51
lon = -0.13
[[site]]
name = "prg"
lat = 50.08
lon = 14.44
[[site]]
name = "iad"
lat = 39.04
lon = -77.49

[[prober]]
site = "ams"
[[prober]]
site = "lon"
[[prober]]
site = "par"
[[prober]]
site = "waw"

[[anchor]]
site = "fra"

[[responder]]
name = "honest"
claim = "fra"
site = "fra"

[[responder]]
name = "proxied"
claim = "fra"
site = "iad"
relay_via = "fra"

[[responder]]
name = "franken"
claim = "fra"
site = "fra"
tpm_site = "prg"

[[responder]]
name = "mover"
claim = "fra"
site = "fra"
move_to = "par"
move_after_s = 5
"#;

fn locus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_locus"))
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
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("short.toml");
    std::fs::write(&scenario, SHORT).unwrap();
    let out = tmp.path().join("out");
    let run = locus()
        .args(["lab", "--json", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "lab failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
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
    }
    // The anchors check is part of it: against a policy that trusts another CA for the anchor,
    // the same bundle fails exactly there.
    let policy = std::fs::read_to_string(out.join("policy.toml")).unwrap();
    assert!(policy.contains("lab-anchor-ca.pem"), "{policy}");
    std::fs::write(
        out.join("policy-wrong-anchor-ca.toml"),
        policy.replace("lab-anchor-ca.pem", "swtpm-ek-ca.pem"),
    )
    .unwrap();
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

    // The stored samples can be judged again offline.
    let judged = locus()
        .args(["judge", "--json", "--samples"])
        .arg(out.join("samples.json"))
        .output()
        .unwrap();
    assert_eq!(judged.status.code(), Some(1), "attackers make judge exit 1");
    assert!(swtpms_under(tmp.path()).is_empty(), "swtpm left running");
}

#[test]
fn interrupted_lab_cleans_up() {
    // Once while emulators are being set up, once while probing.
    for extra_wait in [Duration::ZERO, Duration::from_secs(4)] {
        interrupt_after(extra_wait);
    }
}

fn interrupt_after(extra_wait: Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("short.toml");
    std::fs::write(
        &scenario,
        SHORT.replace("duration_s = 10", "duration_s = 60"),
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
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "an interrupted lab must not report success"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        swtpms_under(tmp.path()).is_empty(),
        "swtpm left running after an interrupt"
    );
}

#[test]
fn bad_scenarios_are_refused_with_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        SHORT.replace("tpm_site = \"prg\"", "tpm_site = \"atlantis\""),
    )
    .unwrap();
    let run = locus()
        .args(["lab", "--scenario"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    let line = SHORT.lines().position(|l| l.contains("tpm_site")).unwrap() + 1;
    assert!(
        stderr.contains(&format!("line {line}")) && stderr.contains("unknown site \"atlantis\""),
        "{stderr}"
    );
    let missing = locus()
        .args(["lab", "--scenario", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}
