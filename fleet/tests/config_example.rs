//! `config/prober.example.toml` and `config/monitor.example.toml` load, and a stray key in any
//! of their tables is rejected.

use std::path::Path;

use locus_fleet::daemon::config::Config;
use locus_fleet::monitor::MonitorConfig;
use locus_fleet::store::Database;

const EXAMPLE: &str = include_str!("../../config/prober.example.toml");
const MONITOR: &str = include_str!("../../config/monitor.example.toml");

#[test]
fn example_loads() {
    let c = Config::from_toml_str(EXAMPLE, Path::new("/etc/locus")).unwrap();
    assert_eq!(c.prober_id, "p-ams");
    assert_eq!(c.targets.len(), 2);
    assert_eq!(c.targets[0].spki, None);
    assert!(c.targets[1].spki.is_some());
    assert_eq!(c.probe.rate_hz, 1.0);
    assert_eq!(c.db, Database::from(Path::new("/etc/locus/locus.db")));
    assert_eq!(c.db_max_pending_rounds, 1000);
    assert_eq!(
        c.key_file,
        Some(Path::new("/etc/locus/prober.key").to_owned())
    );
    assert_eq!(c.landmarks.len(), 2);
    assert_eq!(c.landmarks[0].site, "fra");
    assert_eq!(c.landmarks[1].site, "par");
    assert_eq!(c.echo, Some("0.0.0.0:4433".parse().unwrap()));
}

#[test]
fn monitor_example_loads() {
    let c = MonitorConfig::from_toml_str(MONITOR, false).unwrap();
    assert_eq!(c.world.probers.len(), 2);
    assert_eq!(c.claims.len(), 2);
    assert!(!c.allow_unsigned);
    assert_eq!(c.landmarks["ref-fra"], "fra");
    assert_eq!(c.landmarks["p-par"], "par");
}

/// The example with `stray = 1` at the top level and after each table header.
fn with_stray_keys(example: &str) -> Vec<String> {
    let mut variants = vec![format!("stray = 1\n{example}")];
    let lines: Vec<&str> = example.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with('[') {
            let mut v = lines.clone();
            v.insert(i + 1, "stray = 1");
            variants.push(v.join("\n"));
        }
    }
    variants
}

#[test]
fn stray_key_in_every_table_is_rejected() {
    let variants = with_stray_keys(EXAMPLE);
    assert!(variants.len() >= 7, "{}", variants.len());
    for v in variants {
        let e = Config::from_toml_str(&v, Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("stray"), "{e}");
    }
    let variants = with_stray_keys(MONITOR);
    assert!(variants.len() >= 8, "{}", variants.len());
    for v in variants {
        let e = MonitorConfig::from_toml_str(&v, false).unwrap_err();
        assert!(e.to_string().contains("stray"), "{e}");
    }
}
