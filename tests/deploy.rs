//! Deploying: the built `locus` binary as an operator runs it. `locus responder --config` with
//! swtpm and a `locus lab pki` set, `locus prober --evidence-out`, `locus policy init`, `locus
//! verify evidence` under that policy; each backend configured but broken exits 2 naming its key.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

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

/// A running `locus responder`; killed on drop.
struct Responder {
    child: Child,
    addr: String,
    spki: String,
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_responder(config: &str) -> Responder {
    let mut child = locus()
        .args(["responder", "--config", config, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let announce: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("announce line {line:?}: {e}"));
    Responder {
        child,
        addr: announce["listen"].as_str().unwrap().to_string(),
        spki: announce["spki"].as_str().unwrap().to_string(),
    }
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
