//! The CLI as operators meet it: `--version` names the git revision, completions and man pages,
//! `--json` errors as one JSON object with the usual exit code, each error cause said once,
//! config errors with line and column, logs without colour codes when not on a terminal.

use std::process::{Command, Output};

/// The shipped monitor config: the monitor refuses to judge without one.
const MONITOR_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/monitor.example.toml");

fn locus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version_names_the_revision() {
    let out = locus(&["--version"]);
    assert!(out.status.success());
    let v = text(&out.stdout);
    // "locus 0.1.0 (abcdef123456)" or "(unknown)" outside a checkout.
    let (_, rev) = v.trim().split_once(" (").unwrap_or_else(|| panic!("{v}"));
    assert!(rev.ends_with(')') && rev.len() > 2, "{v}");
}

#[test]
fn completions_and_man_pages() {
    let out = locus(&["completions", "bash"]);
    assert!(out.status.success());
    let script = text(&out.stdout);
    assert!(
        script.contains("_locus()") && script.contains("monitor"),
        "{script}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = locus(&["man", "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(dir.path().join("locus-monitor.1")).unwrap();
    assert!(
        page.contains(".TH") && page.contains("alertmanager"),
        "{page}"
    );
    assert!(dir.path().join("locus.1").exists());
    assert!(locus(&["completions", "cobol"]).status.code() == Some(2));
}

#[test]
fn json_errors_are_one_object_with_the_same_exit_code() {
    let out = locus(&["monitor", "--json", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(v["kind"], "usage");
    assert!(v["error"].as_str().unwrap().contains("--bogus"), "{v}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.db");
    let out = locus(&[
        "monitor",
        "--once",
        "--json",
        "--timing-only",
        "--config",
        MONITOR_CONFIG,
        "--db",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(v["kind"], "error");
    assert!(
        v["error"].as_str().unwrap().contains("does not exist"),
        "{v}"
    );
    // Without --json: a line on stderr, nothing on stdout.
    let out = locus(&[
        "monitor",
        "--once",
        "--timing-only",
        "--config",
        MONITOR_CONFIG,
        "--db",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).starts_with("error: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn errors_are_said_once_and_config_errors_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    let out = locus(&["prober", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");

    std::fs::write(
        &cfg,
        "db = \"x.db\"\n[prober]\nid = \"p\"\nsite = \"ams\"\nbogus = 1\n",
    )
    .unwrap();
    let out = locus(&["prober", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(cfg.to_str().unwrap()), "{err}");
    assert!(err.contains("line 5, column 1"), "{err}");
    assert!(err.contains("bogus"), "{err}");
    // The TOML error's excerpt once, not twice.
    assert_eq!(err.matches("bogus = 1").count(), 1, "{err}");

    // A value error (a claim that is not a site) names the place too.
    std::fs::write(
        &cfg,
        "db = \"x.db\"\n[prober]\nid = \"p\"\nsite = \"ams\"\n[[sites]]\nname = \"ams\"\nlat = 1.0\nlon = 1.0\n\
         [[targets]]\nname = \"n\"\naddress = \"127.0.0.1:1\"\nclaim = \"fra\"\n",
    )
    .unwrap();
    let out = locus(&["prober", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(cfg.to_str().unwrap()), "{err}");
    // The [[targets]] table that holds it.
    assert!(err.contains("line 9, column 1: target n"), "{err}");
    assert!(err.contains("names site \"fra\""), "{err}");
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    // The monitor logs at info by default (a daemon): here that it waits for its database.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("later.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args([
            "monitor",
            "--timing-only",
            "--config",
            MONITOR_CONFIG,
            "--listen",
            "127.0.0.1:0",
            "--db",
        ])
        .arg(&db)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.contains("waiting for a prober to create the database"),
        "{line:?}"
    );
    assert!(line.contains(" INFO "), "{line:?}");
    assert!(!line.contains('\u{1b}'), "{line:?}");

    let bad = locus(&["--log-level", "[[[", "export", "--db", "x"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("--log-level"),
        "{}",
        text(&bad.stderr)
    );
}
