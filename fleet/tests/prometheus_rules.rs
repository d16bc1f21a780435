//! `config/alerts.yml` passes `promtool check rules` and its unit tests
//! (`promtool test rules`); a wrong expectation makes promtool fail, so the check can fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .expect(
            "promtool not found on PATH: run scripts/setup.sh (it installs the Debian package \
             `prometheus`, which has promtool)",
        )
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn promtool_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(promtool())
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
    let dir = rules_dir();
    let check = promtool_in(&dir, &["check", "rules", "alerts.yml"]);
    assert!(check.status.success(), "{}", report(&check));
    let test = promtool_in(&dir, &["test", "rules", "alerts.test.yml"]);
    assert!(test.status.success(), "{}", report(&test));
}

#[test]
fn a_wrong_expectation_fails() {
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
    let out = promtool_in(tmp.path(), &["test", "rules", "t.yml"]);
    assert!(!out.status.success(), "{}", report(&out));
}
