//! `config/alerts.yml` passes `promtool check rules` and its unit tests
//! (`promtool test rules`); a wrong expectation makes promtool fail, so the check can fail.
//! `config/prometheus/prometheus.yml` passes `promtool check config` and
//! `config/prometheus/alertmanager.yml` `amtool check-config`; every alert carries what an
//! operator needs and has its section in docs/runbook.md.
//!
//! Without promtool or amtool on PATH these tests pass vacuously, unless
//! `LOCUS_REQUIRE_TOOLS` is set (scripts/test.sh, hence CI, sets it): then they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `name` on PATH; None (skip) when absent and `LOCUS_REQUIRE_TOOLS` is unset.
fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() && std::env::var_os("LOCUS_REQUIRE_TOOLS").is_some() {
        panic!(
            "{name} not found on PATH and LOCUS_REQUIRE_TOOLS is set: run scripts/setup.sh \
             (it installs the Debian package `{package}`)"
        );
    }
    found
}

fn promtool() -> Option<PathBuf> {
    tool("promtool", "prometheus")
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn promtool_in(promtool: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn report(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn rules_check_and_unit_tests_pass() {
    let Some(promtool) = promtool() else { return };
    let dir = rules_dir();
    let check = promtool_in(&promtool, &dir, &["check", "rules", "alerts.yml"]);
    assert!(check.status.success(), "{}", report(&check));
    let test = promtool_in(&promtool, &dir, &["test", "rules", "alerts.test.yml"]);
    assert!(test.status.success(), "{}", report(&test));
}

#[test]
fn shipped_prometheus_and_alertmanager_configs_pass_their_checkers() {
    let dir = rules_dir().join("prometheus");
    if let Some(promtool) = promtool() {
        let out = promtool_in(&promtool, &dir, &["check", "config", "prometheus.yml"]);
        assert!(out.status.success(), "{}", report(&out));
        // The rules it loads are ours.
        assert!(report(&out).contains("alerts.yml"), "{}", report(&out));
    }
    if let Some(amtool) = tool("amtool", "prometheus-alertmanager") {
        let check = |file: &Path| {
            Command::new(&amtool)
                .arg("check-config")
                .arg(file)
                .output()
                .unwrap()
        };
        let out = check(&dir.join("alertmanager.yml"));
        assert!(out.status.success(), "{}", report(&out));
        // The checker rejects what is wrong: an inhibit rule naming a bad matcher.
        let tmp = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(dir.join("alertmanager.yml")).unwrap();
        let broken = text.replacen("alertname=\"LocusProberDown\"", "alertname=~\"(\"", 1);
        assert_ne!(broken, text);
        std::fs::write(tmp.path().join("am.yml"), broken).unwrap();
        let out = check(&tmp.path().join("am.yml"));
        assert!(!out.status.success(), "{}", report(&out));
    }
}

/// Each alert's block in alerts.yml: (name, text up to the next alert or group).
fn alert_blocks(rules: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            out.push((name.trim().to_owned(), String::new()));
        } else if line.trim_start().starts_with("- name:")
            || line.trim_start().starts_with("- record:")
        {
            out.push((String::new(), String::new()));
        } else if let Some((_, block)) = out.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    out.retain(|(name, _)| !name.is_empty());
    out
}

#[test]
fn every_alert_has_severity_summary_description_runbook_and_a_runbook_section() {
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yml")).unwrap();
    let runbook = std::fs::read_to_string(rules_dir().join("../docs/runbook.md")).unwrap();
    let alerts = alert_blocks(&rules);
    assert!(alerts.len() >= 15, "{alerts:?}");
    for (name, block) in &alerts {
        for key in ["severity:", "summary:", "description:", "runbook_url:"] {
            assert!(block.contains(key), "{name} has no {key}");
        }
        let anchor = name.to_ascii_lowercase();
        assert!(
            block.contains(&format!("runbook_url: \"docs/runbook.md#{anchor}\"")),
            "{name}'s runbook_url"
        );
        // GitHub-style anchors: the heading is the alert name.
        assert!(
            runbook.contains(&format!("\n## {name}\n")),
            "docs/runbook.md has no section `## {name}`"
        );
    }
    // The parser finds what it must: a block without runbook_url would be caught.
    let one = alert_blocks("  - alert: X\n    labels:\n      severity: warning\n");
    assert_eq!(one.len(), 1);
    assert!(!one[0].1.contains("runbook_url:"));
}

#[test]
fn a_wrong_expectation_fails() {
    let Some(promtool) = promtool() else { return };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        rules_dir().join("alerts.yml"),
        tmp.path().join("alerts.yml"),
    )
    .unwrap();
    // The relocated node must alert at 2m; expecting silence must fail.
    let tests = std::fs::read_to_string(rules_dir().join("alerts.test.yml")).unwrap();
    let broken = tests.replacen(
        "      - eval_time: 2m\n        alertname: LocusNodeRelocated\n        exp_alerts:\n",
        "      - eval_time: 2m\n        alertname: LocusNodeRelocated\n        exp_alerts: []\n      - eval_time: 2m\n        alertname: LocusNodeRelocated\n        exp_alerts:\n",
        1,
    );
    assert_ne!(broken, tests, "the test file changed: update this test");
    std::fs::write(tmp.path().join("t.yml"), broken).unwrap();
    let out = promtool_in(&promtool, tmp.path(), &["test", "rules", "t.yml"]);
    assert!(!out.status.success(), "{}", report(&out));
}
