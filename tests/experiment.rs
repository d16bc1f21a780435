//! `locus experiment` end to end on tiny sweeps: outputs, resume, determinism, bad files
//! refused with the line named, and a sane headline distance.

use std::path::Path;
use std::process::{Command, Output};

const WORLD: &str = r#"
[base]
claim = "fra"

[[base.site]]
name = "fra"
lat = 50.11
lon = 8.68
[[base.site]]
name = "ams"
lat = 52.37
lon = 4.90
[[base.site]]
name = "lon"
lat = 51.51
lon = -0.13
[[base.site]]
name = "par"
lat = 48.86
lon = 2.35
[[base.site]]
name = "waw"
lat = 52.23
lon = 21.01

[[base.prober]]
site = "ams"
[[base.prober]]
site = "lon"
[[base.prober]]
site = "par"
[[base.prober]]
site = "waw"

[[base.anchor]]
site = "fra"

[emulation]
delay_error_p90_us = 27.6
delay_error_p99_us = 155.3
source = "test"
"#;

/// A tiny experiment: 12 s windows, 10 samples per round, every kind at 0 and 2000 km.
fn tiny(seed: u64) -> String {
    format!(
        r#"
[experiment]
name = "tiny"
seed = {seed}
reps = 6
honest_reps = 10
duration_s = 12
{WORLD}
[sweep]
kinds = ["proxy", "frankenstein", "relocation"]
distance_km = [0, 2000]
samples_per_round = [10]
"#
    )
}

/// Trials of `tiny`: 10 honest + 3 kinds × 2 distances × 6.
const TINY_TRIALS: usize = 10 + 3 * 2 * 6;

fn run(file: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locus"))
        .arg("experiment")
        .arg(file)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .output()
        .expect("running locus")
}

/// With `--json` a failure is one `{"error": …, "kind": …}` object on stdout.
fn json_error(o: &Output) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("a JSON error object on stdout");
    v["error"].as_str().expect("an error string").to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn csv(out: &Path) -> String {
    std::fs::read_to_string(out.join("trials.csv")).unwrap()
}

#[test]
fn tiny_experiment_writes_csv_summary_and_plots_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "tiny.toml", &tiny(3));
    let out = dir.path().join("out");
    let o = run(&file, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = csv(&out);
    assert_eq!(first.lines().count(), 1 + TINY_TRIALS, "{first}");

    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["mode"], "simulation");
    assert_eq!(summary["trials"], TINY_TRIALS as u64);
    for kind in ["proxy", "frankenstein", "relocation"] {
        let k = &summary[kind];
        assert_eq!(k["swept"], true, "{kind}");
        assert!(
            k["tpr_ci"].is_array() && k["fpr_ci"].is_array(),
            "{kind}: {k}"
        );
        assert!(k["trials"].as_u64().unwrap() > 0);
    }
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(on_disk, summary);
    for plot in [
        "detection-vs-distance.svg",
        "roc-proxy.svg",
        "roc-frankenstein.svg",
        "roc-relocation.svg",
        "threshold-proxy.svg",
        "latency-relocation.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(svg.contains("<svg"), "{plot}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("SIMULATION") && report.contains("flagged"));

    // Re-running finds every trial done: no new trial, the CSV is unchanged.
    let o = run(&file, &out);
    assert!(o.status.success());
    assert_eq!(csv(&out), first);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("(0 run now"), "{report}");

    // An interrupted run (half the lines and a torn one) is completed to the same file.
    let keep: Vec<&str> = first.lines().take(1 + TINY_TRIALS / 2).collect();
    std::fs::write(
        out.join("trials.csv"),
        format!("{}\nproxy/d2000/j5", keep.join("\n")),
    )
    .unwrap();
    let o = run(&file, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(csv(&out), first);

    // Another seed's results are not mixed into this directory.
    let other = write(dir.path(), "other.toml", &tiny(4));
    let o = run(&other, &out);
    assert_eq!(o.status.code(), Some(2));
    assert!(json_error(&o).contains("another seed"));
}

#[test]
fn same_seed_same_csv_other_seed_other_csv() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.toml", &tiny(11));
    let b = write(dir.path(), "b.toml", &tiny(12));
    let (oa, oa2, ob) = (
        dir.path().join("a1"),
        dir.path().join("a2"),
        dir.path().join("b"),
    );
    for (f, o) in [(&a, &oa), (&a, &oa2), (&b, &ob)] {
        let r = run(f, o);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    assert_eq!(csv(&oa), csv(&oa2));
    assert_ne!(csv(&oa), csv(&ob));
}

#[test]
fn proxy_headline_distance_is_sane() {
    // 0 km is indistinguishable from honest (never caught); 2000 km always is.
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[experiment]
name = "sane"
seed = 5
reps = 8
honest_reps = 10
duration_s = 12
{WORLD}
[sweep]
kinds = ["proxy"]
distance_km = [0, 20, 2000]
samples_per_round = [10]
"#
    );
    let file = write(dir.path(), "sane.toml", &text);
    let out = dir.path().join("out");
    let o = run(&file, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["proxy"]["min_distance_km"], 2000.0, "{}", s["proxy"]);
    assert_eq!(s["proxy"]["tpr"], 1.0);
    assert_eq!(s["proxy"]["fpr"], 0.0);
    assert_eq!(s["frankenstein"]["swept"], false);
    assert!(s["frankenstein"]["min_distance_km"].is_null());
    let at = |d: f64| {
        s["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["kind"] == "proxy" && p["distance_km"] == d)
            .unwrap()["tpr"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(at(0.0), 0.0);
    assert_eq!(at(20.0), 0.0);
    assert_eq!(at(2000.0), 1.0);
}

/// "line N" of the first line containing `needle`.
fn line(text: &str, needle: &str) -> String {
    format!(
        "line {}",
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    )
}

#[test]
fn bad_experiment_files_are_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny(1);
    let cases = [
        (
            good.replace(
                "samples_per_round = [10]",
                "samples_per_round = [10]\ncolour = 3",
            ),
            "colour",
            "unknown field",
        ),
        (
            good.replace("distance_km = [0, 2000]", "distance_km = [0, -5]"),
            "distance_km",
            "outside",
        ),
        (
            good.replace("\"relocation\"]", "\"teleport\"]"),
            "teleport",
            "unknown attacker kind",
        ),
        (
            good.replace("claim = \"fra\"", "claim = \"nowhere\""),
            "nowhere",
            "unknown site",
        ),
        (good.replace("reps = 6", "reps = 0"), "reps = 0", "outside"),
        (
            good.replace("[sweep]", "[policy]\nmax_excess_ms = -1\n[sweep]"),
            "[policy]",
            "max_excess_ms",
        ),
    ];
    for (i, (text, needle, what)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("bad{i}.toml"), text);
        let o = run(&file, &dir.path().join(format!("out{i}")));
        assert_eq!(o.status.code(), Some(2), "case {i}");
        let err = json_error(&o);
        assert!(
            err.contains(&line(text, needle)) && err.contains(what),
            "case {i}: {err}"
        );
        assert!(!dir.path().join(format!("out{i}")).exists(), "case {i}");
    }
}

#[test]
fn every_shipped_experiment_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/experiments");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = tempfile::tempdir().unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_locus"))
            .arg("experiment")
            .arg(&path)
            .arg("--out")
            .arg(out.path().join("never"))
            .arg("--dry-run")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("trials"));
        assert!(!out.path().join("never").exists());
        n += 1;
    }
    assert!(n >= 2, "config/experiments holds {n} experiments");
}
