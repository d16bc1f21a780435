//! `config/prober.example.toml` loads, and a stray key in any of its tables is rejected.

use std::path::Path;

use locus_fleet::daemon::config::Config;
use locus_fleet::store::Database;

const EXAMPLE: &str = include_str!("../../config/prober.example.toml");

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
    assert_eq!(c.landmarks.len(), 1);
    assert_eq!(c.landmarks[0].site, "fra");
}

#[test]
fn stray_key_in_every_table_is_rejected() {
    // Insert `stray = 1` after each table header and at the top level.
    let mut variants = vec![format!("stray = 1\n{EXAMPLE}")];
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with('[') {
            let mut v = lines.clone();
            v.insert(i + 1, "stray = 1");
            variants.push(v.join("\n"));
        }
    }
    assert!(variants.len() >= 7, "{}", variants.len());
    for v in variants {
        let e = Config::from_toml_str(&v, Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("stray"), "{e}");
    }
}
