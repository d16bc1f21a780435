//! The store's behaviour, checked on both backends: SQLite in a temporary file, PostgreSQL in a
//! fresh database on this test binary's shared server.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::*;
use locus_test_support::pg_server::{self, PgServer, USER};

const WAIT: Duration = Duration::from_secs(5);

/// Runs the check `$name(&mut Store)` once per backend.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                let (_dir, mut s) = super::sqlite();
                super::$name(&mut s);
            }

            #[test]
            fn postgres() {
                super::$name(&mut super::postgres());
            }
        }
    )*};
}

on_both!(
    rounds_samples_retention_and_history,
    latest_bundle_per_target_in_window,
    bundles_are_pruned_with_samples_and_records_stay,
    verdicts_round_trip,
    many_samples_in_one_round,
    landmark_minima_per_prober_and_site_in_window_and_pruned,
);

fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("t.db")).unwrap();
    (dir, s)
}

fn pg_url() -> String {
    pg_server::shared().unwrap().fresh_database().unwrap()
}

fn postgres() -> Store {
    Store::connect(&Database::Postgres(pg_url()), WAIT).unwrap()
}

fn round(target: &str, started: i64, min: u64) -> RoundRecord {
    RoundRecord {
        prober: "p1".into(),
        target: target.into(),
        claim: "ams".into(),
        address: "127.0.0.1:1".into(),
        spki: None,
        started_unix_ns: started,
        duration_ns: 1_000,
        sent: 3,
        answered: 2,
        lost: 1,
        late: 0,
        out_of_order: 0,
        violations: 0,
        min_rtt_ns: Some(min),
        p50_rtt_ns: Some(min + 10),
        p99_rtt_ns: Some(min + 20),
        min_eff_rtt_ns: Some(min - 5),
        inside_p50_ns: Some(5),
        error: None,
        seal: None,
    }
}

fn evidence(target: &str, at: i64, bundle: Option<&[u8]>) -> EvidenceRecord {
    EvidenceRecord {
        prober: "p1".into(),
        target: target.into(),
        at_unix_ns: at,
        rtt_ns: Some(900),
        ok: bundle.is_some(),
        error: bundle.is_none().then(|| "timeout".into()),
        nonce: Some(vec![at as u8; 32]),
        bundle: bundle.map(<[u8]>::to_vec),
        peer_spki: bundle.map(|_| format!("{at:02x}")),
        seal: None,
    }
}

fn from_p2(e: EvidenceRecord) -> EvidenceRecord {
    EvidenceRecord {
        prober: "p2".into(),
        ..e
    }
}

fn verdict(node: &str, at: i64) -> VerdictRecord {
    VerdictRecord {
        node: node.into(),
        claim: "ams".into(),
        at_unix_ns: at,
        window_start_unix_ns: 1,
        verdict: "relocated".into(),
        reasons: vec!["moved, \"far\"".into()],
        radius_km: Some(12.5),
        judgement: "{}".into(),
    }
}

fn sample(sent: i64, rtt: u64) -> SampleRecord {
    SampleRecord {
        sent_unix_ns: sent,
        rtt_ns: rtt,
        inside_ns: 5,
    }
}

fn rounds_samples_retention_and_history(s: &mut Store) {
    s.insert_round(&round("n1", 100, 50), &[sample(100, 50), sample(200, 60)])
        .unwrap();
    s.insert_round(&round("n1", 1_000, 70), &[]).unwrap();
    s.insert_round(&round("n2", 1_000, 90), &[]).unwrap();
    assert_eq!(s.samples_between("n1", 0, 1_000).unwrap().len(), 2);
    assert_eq!(s.samples_between("n2", 0, 1_000).unwrap().len(), 0);
    assert_eq!(
        s.rounds_between("n1", 0, 2_000).unwrap(),
        vec![round("n1", 100, 50), round("n1", 1_000, 70)]
    );
    assert_eq!(
        s.nodes_between(500, 2_000).unwrap(),
        vec![("n1".into(), "ams".into()), ("n2".into(), "ams".into())]
    );
    assert_eq!(
        s.round_minima_before("n1", 1_000, 10).unwrap(),
        vec![("p1".to_string(), 45)]
    );
    assert_eq!(s.prune_raw(150).unwrap().samples, 1);
    assert_eq!(
        s.samples_between("n1", 0, 1_000).unwrap(),
        vec![ProberSample {
            prober: "p1".into(),
            spki: None,
            sample: sample(200, 60)
        }]
    );
    // Aggregates outlive their samples.
    assert_eq!(s.rounds_between("n1", 0, 2_000).unwrap().len(), 2);
}

fn latest_bundle_per_target_in_window(s: &mut Store) {
    for e in [
        evidence("n1", 10, Some(b"old")),
        evidence("n1", 20, Some(b"new")),
        // Later, but no bundle: the request failed.
        evidence("n1", 30, None),
        evidence("n2", 15, Some(b"n2")),
        // Outside the window.
        evidence("n2", 50, Some(b"late")),
        evidence("n3", 5, Some(b"early")),
        // Another prober's bundle for n1: each prober's latest is kept.
        from_p2(evidence("n1", 12, Some(b"p2"))),
    ] {
        s.insert_evidence(&e).unwrap();
    }
    assert_eq!(
        s.evidence_bundles_between(10, 50).unwrap(),
        vec![
            evidence("n1", 20, Some(b"new")),
            from_p2(evidence("n1", 12, Some(b"p2"))),
            evidence("n2", 15, Some(b"n2"))
        ]
    );
    assert_eq!(s.evidence_bundles_between(60, 70).unwrap(), vec![]);
}

fn bundles_are_pruned_with_samples_and_records_stay(s: &mut Store) {
    s.insert_evidence(&evidence("n1", 10, Some(b"old")))
        .unwrap();
    s.insert_evidence(&evidence("n1", 20, Some(b"new")))
        .unwrap();
    s.insert_round(&round("n1", 10, 50), &[sample(10, 50)])
        .unwrap();
    assert_eq!(
        s.prune_raw(15).unwrap(),
        Pruned {
            samples: 1,
            bundles: 1,
            landmark_rounds: 0,
        }
    );
    assert_eq!(
        s.evidence_bundles_between(0, 15).unwrap(),
        vec![],
        "the old bundle is gone"
    );
    assert_eq!(
        s.evidence_bundles_between(0, 30).unwrap(),
        vec![evidence("n1", 20, Some(b"new"))]
    );
    // The request's record (and its round trip) outlives the bundle.
    assert_eq!(
        s.evidence_rtts_between("n1", 0, 30).unwrap(),
        vec![
            ("p1".to_string(), 900, Some("0a".to_string())),
            ("p1".to_string(), 900, Some("14".to_string()))
        ]
    );
    assert_eq!(s.prune_raw(15).unwrap(), Pruned::default());
}

fn landmark_round(
    prober: &str,
    landmark: &str,
    site: &str,
    at: i64,
    min: Option<u64>,
) -> LandmarkRoundRecord {
    LandmarkRoundRecord {
        prober: prober.into(),
        landmark: landmark.into(),
        site: site.into(),
        address: "127.0.0.1:4500".into(),
        spki: Some("3059".into()),
        started_unix_ns: at,
        sent: 10,
        answered: u64::from(min.is_some()) * 10,
        min_rtt_ns: min.map(|m| m + 30),
        min_eff_rtt_ns: min,
        error: min.is_none().then(|| "unreachable".into()),
        seal: None,
    }
}

fn landmark_minima_per_prober_and_site_in_window_and_pruned(s: &mut Store) {
    for r in [
        landmark_round("p1", "ref-fra", "fra", 10, Some(5_000)),
        landmark_round("p1", "ref-fra", "fra", 20, Some(4_000)),
        // A second landmark at the same site: the site's minimum counts.
        landmark_round("p1", "ref-fra-2", "fra", 25, Some(4_500)),
        // A failed round has no minimum.
        landmark_round("p1", "ref-ams", "ams", 30, None),
        landmark_round("p1", "ref-ams", "ams", 31, Some(900)),
        landmark_round("p2", "ref-fra", "fra", 22, Some(7_000)),
        // Outside the window on both sides.
        landmark_round("p2", "ref-fra", "fra", 5, Some(1)),
        landmark_round("p2", "ref-fra", "fra", 50, Some(1)),
    ] {
        s.insert_landmark_round(&r).unwrap();
    }
    let min = |prober: &str, site: &str, min_rtt_ns| LandmarkMin {
        prober: prober.into(),
        site: site.into(),
        min_rtt_ns,
    };
    assert_eq!(
        s.landmark_minima_between(10, 50).unwrap(),
        [
            min("p1", "ams", 900),
            min("p1", "fra", 4_000),
            min("p2", "fra", 7_000)
        ]
    );
    assert_eq!(s.landmark_minima_between(60, 70).unwrap(), []);
    // Retention: landmark rounds go with the raw samples.
    assert_eq!(s.prune_raw(21).unwrap().landmark_rounds, 3);
    assert_eq!(
        s.landmark_minima_between(0, 100).unwrap(),
        [
            min("p1", "ams", 900),
            min("p1", "fra", 4_500),
            min("p2", "fra", 1)
        ]
    );
}

fn verdicts_round_trip(s: &mut Store) {
    assert_eq!(s.latest_verdict("n1").unwrap(), None);
    s.insert_verdict(&verdict("n1", 5)).unwrap();
    s.insert_verdict(&verdict("n1", 9)).unwrap();
    s.insert_verdict(&verdict("n2", 20)).unwrap();
    assert_eq!(s.latest_verdict("n1").unwrap(), Some(verdict("n1", 9)));
    // The last verdict of one kind, earlier than the latest.
    let located = VerdictRecord {
        verdict: "located".into(),
        ..verdict("n1", 7)
    };
    s.insert_verdict(&located).unwrap();
    assert_eq!(
        s.latest_verdict_of("n1", Some("located")).unwrap(),
        Some(located)
    );
    assert_eq!(s.latest_verdict_of("n1", Some("proxied")).unwrap(), None);
    assert_eq!(
        s.latest_verdict_of("n1", None).unwrap(),
        Some(verdict("n1", 9))
    );
    // n1 at 5 and 9 has the helper's verdict, located at 7: its run began at 9.
    let v = verdict("n1", 9).verdict;
    assert_eq!(s.verdict_since("n1", &v, i64::MAX).unwrap(), Some(9));
    assert_eq!(s.verdict_since("n2", &v, i64::MAX).unwrap(), Some(20));
    s.insert_verdict(&verdict("n2", 30)).unwrap();
    assert_eq!(s.verdict_since("n2", &v, i64::MAX).unwrap(), Some(20));
    assert_eq!(s.verdict_since("n1", "located", i64::MAX).unwrap(), None);
    assert_eq!(s.verdict_since("n3", &v, i64::MAX).unwrap(), None);
}

/// Probers started together open one new database at once: every one must get a migrated
/// store (a migration step read outside its write lock ran twice and failed).
#[test]
fn concurrent_first_sqlite_opens_all_succeed() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let barrier = Arc::new(Barrier::new(6));
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Store::open(&path).map(|s| s.schema_version().unwrap())
                })
            })
            .collect();
        for o in opens {
            assert_eq!(o.join().unwrap().unwrap(), SCHEMA_VERSION);
        }
    }
}

/// More samples than one INSERT statement carries.
fn many_samples_in_one_round(s: &mut Store) {
    let n = SAMPLES_PER_INSERT * 2 + 7;
    let samples: Vec<SampleRecord> = (0..n as i64).map(|i| sample(i, 100 + i as u64)).collect();
    s.insert_round(&round("n1", 0, 100), &samples).unwrap();
    let got: Vec<SampleRecord> = s
        .samples_between("n1", 0, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|p| p.sample)
        .collect();
    assert_eq!(got, samples);
}

/// Both backends export the same rows, columns and text.
#[test]
fn exports_are_the_same_on_both_backends() {
    let (_dir, mut lite) = sqlite();
    let mut pg = postgres();
    for s in [&mut lite, &mut pg] {
        s.upsert_world(
            "p1",
            "ams",
            &[SiteRecord {
                name: "ams".into(),
                lat: 52.37,
                lon: 4.9,
            }],
        )
        .unwrap();
        s.insert_round(&round("n,1", 100, 50), &[sample(100, 50)])
            .unwrap();
        let mut failed = round("n2", 200, 60);
        failed.error = Some("unreachable: \"refused\"".into());
        failed.min_rtt_ns = None;
        s.insert_round(&failed, &[]).unwrap();
        s.insert_evidence(&evidence("n2", 10, Some(&[0, 1, 0xff])))
            .unwrap();
        s.insert_evidence(&evidence("n2", 11, None)).unwrap();
        s.insert_verdict(&verdict("n,1", 5)).unwrap();
        s.insert_landmark_round(&landmark_round("p1", "ref,fra", "fra", 7, Some(4_000)))
            .unwrap();
        s.insert_landmark_round(&landmark_round("p1", "ref,fra", "fra", 8, None))
            .unwrap();
    }
    for table in [
        ExportTable::Rounds,
        ExportTable::Samples,
        ExportTable::Evidence,
        ExportTable::Verdicts,
        ExportTable::Landmarks,
    ] {
        for format in [ExportFormat::Csv, ExportFormat::Jsonl] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let na = export(&lite, table, format, &mut a).unwrap();
            let nb = export(&pg, table, format, &mut b).unwrap();
            let (a, b) = (String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
            assert!(na > 0, "{table:?}: nothing exported");
            assert_eq!((na, &a), (nb, &b), "{table:?} {format:?}");
        }
    }
}

#[test]
fn sqlite_migrates_once_and_refuses_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    drop(s);
    // Reopening applies nothing twice.
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    s.with(|c| {
        c.execute(
            &format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1),
            &[],
        )
    })
    .unwrap();
    drop(s);
    assert!(matches!(
        Store::open(&path),
        Err(StoreError::NewerSchema { found, .. }) if found == SCHEMA_VERSION + 1
    ));
}

#[test]
fn postgres_migrates_once_and_refuses_newer_schema() {
    let db = Database::Postgres(pg_url());
    let s = Store::connect(&db, WAIT).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    drop(s);
    let s = Store::connect(&db, WAIT).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    s.with(|c| {
        c.execute(
            "UPDATE locus_schema SET version = ?1",
            params![i64::from(SCHEMA_VERSION + 1)],
        )
    })
    .unwrap();
    drop(s);
    let e = Store::connect(&db, WAIT).err().unwrap();
    assert!(
        matches!(e, StoreError::NewerSchema { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade locus"), "{e}");
}

/// Old rows read back after the migration; new rows carry the nonce and bundle.
fn check_migrated_v1(s: &mut Store) {
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        s.evidence_rtts_between("n1", 0, 10).unwrap(),
        vec![("p1".to_string(), 900, None)]
    );
    assert_eq!(s.evidence_bundles_between(0, 10).unwrap(), vec![]);
    s.insert_evidence(&evidence("n1", 8, Some(b"cbor")))
        .unwrap();
    assert_eq!(
        s.evidence_bundles_between(0, 10).unwrap(),
        vec![evidence("n1", 8, Some(b"cbor"))]
    );
}

const V1_EVIDENCE: &str = "INSERT INTO evidence (prober, target, at_unix_ns, rtt_ns, ok, error)
                           VALUES ('p1', 'n1', 7, 900, 1, NULL)";

#[test]
fn sqlite_migrates_a_version_1_database_keeping_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        schema::migrate_sqlite_to(&mut conn, 1).unwrap();
        conn.execute(V1_EVIDENCE, []).unwrap();
    }
    check_migrated_v1(&mut Store::open(&path).unwrap());
}

#[test]
fn postgres_migrates_a_version_1_database_keeping_its_evidence() {
    let url = pg_url();
    {
        let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        schema::migrate_postgres_to(&mut c, 1).unwrap();
        assert_eq!(schema::postgres_version(&mut c).unwrap(), 1);
        c.batch_execute(V1_EVIDENCE).unwrap();
    }
    check_migrated_v1(&mut Store::connect(&Database::Postgres(url), WAIT).unwrap());
}

#[test]
fn postgres_wrong_password_is_an_authentication_error() {
    let server = pg_server::shared().unwrap();
    let url = server.url_as(USER, "not-the-password", "postgres");
    let e = Store::connect(&Database::Postgres(url), WAIT)
        .err()
        .unwrap();
    assert!(
        matches!(&e, StoreError::PgAuth { user, .. } if user == USER),
        "{e}"
    );
    let text = e.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(
        !text.contains("not-the-password"),
        "the password shows: {text}"
    );
}

#[test]
fn postgres_unreachable_and_missing_database_are_connection_errors() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://{USER}:pw@127.0.0.1:{port}/x");
    let e = Store::connect(&Database::Postgres(url), WAIT)
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::PgConnect { .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.to_string().contains(":pw@"), "{e}");

    let url = pg_server::shared().unwrap().url("no_such_db");
    let e = Store::connect(&Database::Postgres(url), WAIT)
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::PgConnect { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[test]
fn postgres_readers_need_no_file_and_sqlite_readers_need_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(matches!(
        Store::connect_existing(&Database::Sqlite(missing.clone()), WAIT),
        Err(StoreError::NoSuchFile(p)) if p == missing
    ));
    assert!(!missing.exists(), "a reader created the file");
    Store::connect_existing(&Database::Postgres(pg_url()), WAIT).unwrap();
}

/// Probers started together migrate one new database once, write concurrently with the same
/// sites in different orders (no deadlock), and a reader sees every row.
#[test]
fn postgres_concurrent_writers_share_one_database() {
    let db = Database::Postgres(pg_url());
    let writers = 3;
    let rounds = 40;
    let barrier = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut s = Store::connect(&db, WAIT).unwrap();
                let prober = format!("p{w}");
                let mut sites: Vec<SiteRecord> = ["ams", "fra", "par"]
                    .iter()
                    .map(|n| SiteRecord {
                        name: n.to_string(),
                        lat: 50.0,
                        lon: 5.0,
                    })
                    .collect();
                if w % 2 == 1 {
                    sites.reverse();
                }
                for i in 0..rounds {
                    s.upsert_world(&prober, "ams", &sites).unwrap();
                    let mut r = round("n1", i, 50);
                    r.prober = prober.clone();
                    s.insert_round(&r, &[sample(i, 50), sample(i + 1, 51)])
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = Store::connect_existing(&db, WAIT).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let stored = s.rounds_between("n1", 0, i64::MAX).unwrap();
    assert_eq!(stored.len(), writers * rounds as usize);
    assert_eq!(
        s.samples_between("n1", 0, i64::MAX).unwrap().len(),
        writers * rounds as usize * 2
    );
    assert_eq!(
        s.probers().unwrap(),
        (0..writers)
            .map(|w| (format!("p{w}"), "ams".to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(s.sites().unwrap().len(), 3);
}

/// A server that goes away fails writes with a clear error; once it is back, the store
/// reconnects by itself.
#[test]
fn postgres_store_reconnects_after_the_server_restarts() {
    let mut server = PgServer::start().unwrap();
    let url = server.fresh_database().unwrap();
    let mut s = Store::connect(&Database::Postgres(url), WAIT).unwrap();
    s.insert_round(&round("n1", 1, 50), &[]).unwrap();
    server.stop().unwrap();
    let errors: Vec<StoreError> = (0..3)
        .map(|_| s.insert_round(&round("n1", 2, 50), &[]).err().unwrap())
        .collect();
    assert!(
        errors.iter().all(|e| matches!(
            e,
            StoreError::Postgres(_) | StoreError::PgConnect { .. } | StoreError::PgDown { .. }
        )),
        "{errors:?}"
    );
    // Within the reconnect interval: refused at once, naming the last failure.
    assert!(matches!(errors[2], StoreError::PgDown { .. }), "{errors:?}");
    server.start_again().unwrap();
    std::thread::sleep(postgres::RECONNECT_EVERY);
    s.insert_round(&round("n1", 3, 50), &[]).unwrap();
    let starts: Vec<i64> = s
        .rounds_between("n1", 0, 10)
        .unwrap()
        .iter()
        .map(|r| r.started_unix_ns)
        .collect();
    assert_eq!(starts, vec![1, 3]);
}

/// A batch of rounds is stored all or none, in order (the daemon's writer commits batches).
#[test]
fn insert_rounds_is_all_or_none_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let mut s = Store::open_with_busy_timeout(&path, Duration::ZERO).unwrap();
    let batch: Vec<_> = (0..3)
        .map(|k| {
            (
                round("n1", 100 * k, 50 + k as u64),
                vec![sample(100 * k, 50)],
            )
        })
        .collect();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    assert!(s.insert_rounds(&batch).is_err());
    blocker.execute_batch("COMMIT").unwrap();
    assert!(s.rounds_between("n1", 0, i64::MAX).unwrap().is_empty());
    s.insert_rounds(&batch).unwrap();
    let stored = s.rounds_between("n1", 0, i64::MAX).unwrap();
    let mins: Vec<_> = stored.iter().map(|r| r.min_rtt_ns).collect();
    assert_eq!(mins, vec![Some(50), Some(51), Some(52)]);
    assert_eq!(s.samples_between("n1", 0, i64::MAX).unwrap().len(), 3);
}

/// A read-only open creates, migrates and writes nothing, and names what it cannot read: a
/// missing file, a file that is no SQLite database, an SQLite database without locus tables
/// (left unchanged), an older schema; a current store reads, and refuses writes.
#[test]
fn sqlite_read_only_opens_only_current_locus_stores() {
    let dir = tempfile::tempdir().unwrap();
    let ro = |p: &std::path::Path| Store::open_read_only(&Database::Sqlite(p.to_owned()), WAIT);
    let missing = dir.path().join("missing.db");
    assert!(matches!(ro(&missing), Err(StoreError::NoSuchFile(p)) if p == missing));
    assert!(!missing.exists());

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, just some text that is long enough\n".repeat(20),
    )
    .unwrap();
    let e = ro(&text).err().unwrap();
    assert!(matches!(&e, StoreError::NotAStore { .. }), "{e}");
    assert!(e.to_string().contains("not an SQLite database"), "{e}");

    let foreign = dir.path().join("other-app.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('x');")
            .unwrap();
    }
    let before = std::fs::read(&foreign).unwrap();
    let e = ro(&foreign).err().unwrap();
    assert!(matches!(&e, StoreError::NotAStore { .. }), "{e}");
    assert!(e.to_string().contains("no locus tables"), "{e}");
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        before,
        "the file was changed"
    );

    let old = dir.path().join("v1.db");
    {
        let mut conn = rusqlite::Connection::open(&old).unwrap();
        schema::migrate_sqlite_to(&mut conn, 1).unwrap();
    }
    assert!(matches!(
        ro(&old),
        Err(StoreError::OlderSchema { found: 1, supported, .. }) if supported == SCHEMA_VERSION
    ));

    let current = dir.path().join("m.db");
    let mut s = Store::open(&current).unwrap();
    s.insert_round(&round("n1", 10, 500), &[]).unwrap();
    drop(s);
    let mut s = ro(&current).unwrap();
    assert_eq!(s.rounds_between("n1", 0, 100).unwrap().len(), 1);
    assert!(s.insert_verdict(&verdict("n1", 20)).is_err());
}

/// On PostgreSQL a read-only store refuses writes in the server and migrates nothing.
#[test]
fn postgres_read_only_opens_only_current_locus_stores() {
    let url = pg_url();
    let db = Database::Postgres(url.clone());
    let e = Store::open_read_only(&db, WAIT).err().unwrap();
    assert!(matches!(&e, StoreError::NotAStore { .. }), "{e}");
    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    assert_eq!(
        schema::postgres_version(&mut c).unwrap(),
        0,
        "migrated by a reader"
    );
    drop(c);
    let mut s = Store::connect(&db, WAIT).unwrap();
    s.insert_round(&round("n1", 10, 500), &[]).unwrap();
    drop(s);
    let mut s = Store::open_read_only(&db, WAIT).unwrap();
    assert_eq!(s.rounds_between("n1", 0, 100).unwrap().len(), 1);
    assert!(s.insert_verdict(&verdict("n1", 20)).is_err());
}
