//! The `locus responder` and `locus prober` binaries talking over loopback, several probers
//! at once; unreachable and wrongly pinned targets are reported, not hidden.

use std::process::{Command, Stdio};

mod responder_proc;
use responder_proc::Responder;

fn locus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_locus"))
}

fn start_responder() -> Responder {
    Responder::start(&["--listen", "127.0.0.1:0"], Stdio::null())
}

#[test]
fn several_prober_processes_measure_one_responder() {
    let r = start_responder();
    let probers: Vec<_> = (0..3)
        .map(|_| {
            locus()
                .args([
                    "prober", "--json", "--rate", "0", "--count", "300", "--window", "16",
                ])
                .args(["--target", &r.addr, "--pin-spki", &r.spki])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in probers {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let t = &v["targets"][0];
        assert_eq!(t["key"], "pinned");
        assert_eq!(t["spki"], r.spki.as_str());
        assert_eq!(t["transcript_verified"], true, "{t}");
        assert_eq!(t["sent"], 300);
        assert_eq!(
            t["answered"].as_u64().unwrap() + t["lost"].as_u64().unwrap(),
            300
        );
        assert_eq!(t["violations"], 0);
        assert!(t["rtt"]["min_us"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn unreachable_and_mispinned_targets_are_reported() {
    let r = start_responder();
    // A second responder's key pinned against the first: the handshake must fail.
    let other = start_responder();
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    let out = locus()
        .args([
            "prober",
            "--json",
            "--count",
            "10",
            "--connect-timeout-ms",
            "500",
        ])
        .args(["--target", &r.addr, "--pin-spki", &other.spki])
        .args(["--target", &dead_addr, "--pin-spki", &other.spki])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<String> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["error"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(errors[0].contains("handshake"), "{errors:?}");
    assert!(errors[1].contains("did not answer"), "{errors:?}");
    drop(dead);

    let bad = locus()
        .args(["prober", "--target", &r.addr, "--pin-spki", "zz"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not hex"));
}
