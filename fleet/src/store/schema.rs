//! Schema migrations: an ordered list of SQL scripts per backend, the same tables and columns in
//! the same order in both. SQLite counts those applied in `PRAGMA user_version`, PostgreSQL in
//! the one-row table `locus_schema`.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only: never edit one
/// that has shipped.
const SQLITE: &[&str] = &[
    r#"
CREATE TABLE sites (
    name TEXT PRIMARY KEY,
    lat REAL NOT NULL,
    lon REAL NOT NULL
);
CREATE TABLE probers (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL
);
CREATE TABLE targets (
    prober TEXT NOT NULL,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    claim TEXT NOT NULL,
    spki TEXT,
    updated_unix_ns INTEGER NOT NULL,
    PRIMARY KEY (prober, name)
);
CREATE TABLE rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prober TEXT NOT NULL,
    target TEXT NOT NULL,
    claim TEXT NOT NULL,
    address TEXT NOT NULL,
    spki TEXT,
    started_unix_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    answered INTEGER NOT NULL,
    lost INTEGER NOT NULL,
    late INTEGER NOT NULL,
    out_of_order INTEGER NOT NULL,
    violations INTEGER NOT NULL,
    min_rtt_ns INTEGER,
    p50_rtt_ns INTEGER,
    p99_rtt_ns INTEGER,
    min_eff_rtt_ns INTEGER,
    inside_p50_ns INTEGER,
    error TEXT
);
CREATE INDEX rounds_target_time ON rounds (target, started_unix_ns);
CREATE TABLE samples (
    round_id INTEGER NOT NULL REFERENCES rounds (id) ON DELETE CASCADE,
    sent_unix_ns INTEGER NOT NULL,
    rtt_ns INTEGER NOT NULL,
    inside_ns INTEGER NOT NULL
);
CREATE INDEX samples_round ON samples (round_id);
CREATE INDEX samples_time ON samples (sent_unix_ns);
CREATE TABLE evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prober TEXT NOT NULL,
    target TEXT NOT NULL,
    at_unix_ns INTEGER NOT NULL,
    rtt_ns INTEGER,
    ok INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX evidence_target_time ON evidence (target, at_unix_ns);
CREATE TABLE verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    claim TEXT NOT NULL,
    at_unix_ns INTEGER NOT NULL,
    window_start_unix_ns INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    reasons TEXT NOT NULL,
    radius_km REAL,
    judgement TEXT NOT NULL
);
CREATE INDEX verdicts_node_time ON verdicts (node, at_unix_ns);
"#,
    // 2: the nonce asked and the evidence bundle as received (CBOR), for the monitor to verify.
    r#"
ALTER TABLE evidence ADD COLUMN nonce BLOB;
ALTER TABLE evidence ADD COLUMN bundle BLOB;
CREATE INDEX evidence_bundle_time ON evidence (at_unix_ns) WHERE bundle IS NOT NULL;
"#,
    // 3: the hex SPKI of the QUIC peer the evidence request went to, so the monitor counts
    // only samples taken under the key a verified bundle binds (issue 18, item 6).
    r#"
ALTER TABLE evidence ADD COLUMN peer_spki TEXT;
"#,
    // 4: rounds against landmarks (responders at known sites), the judge's calibration.
    r#"
CREATE TABLE landmark_rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prober TEXT NOT NULL,
    landmark TEXT NOT NULL,
    site TEXT NOT NULL,
    address TEXT NOT NULL,
    spki TEXT,
    started_unix_ns INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    answered INTEGER NOT NULL,
    min_rtt_ns INTEGER,
    min_eff_rtt_ns INTEGER,
    error TEXT
);
CREATE INDEX landmark_rounds_time ON landmark_rounds (started_unix_ns);
"#,
    // 5: each prober's signature over its rounds and evidence records (crate::integrity), with
    // the digest of the samples or bundle it signed, so that rows altered on the database or its
    // link are not judged (issue 20).
    r#"
ALTER TABLE rounds ADD COLUMN samples_sha256 BLOB;
ALTER TABLE rounds ADD COLUMN key_id TEXT;
ALTER TABLE rounds ADD COLUMN signature BLOB;
ALTER TABLE evidence ADD COLUMN bundle_sha256 BLOB;
ALTER TABLE evidence ADD COLUMN key_id TEXT;
ALTER TABLE evidence ADD COLUMN signature BLOB;
"#,
    // 6: each prober's signature over its landmark rounds (crate::integrity::seal_landmark):
    // they calibrate the judge, so a row written by anyone else must not count (issue 20).
    r#"
ALTER TABLE landmark_rounds ADD COLUMN key_id TEXT;
ALTER TABLE landmark_rounds ADD COLUMN signature BLOB;
"#,
];

/// The same migrations in PostgreSQL's types: `BIGINT` for integers (64-bit like SQLite's),
/// `DOUBLE PRECISION`, `BYTEA`, `BIGSERIAL` ids; `ok` stays an integer so both export alike.
const POSTGRES: &[&str] = &[
    r#"
CREATE TABLE sites (
    name TEXT PRIMARY KEY,
    lat DOUBLE PRECISION NOT NULL,
    lon DOUBLE PRECISION NOT NULL
);
CREATE TABLE probers (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL
);
CREATE TABLE targets (
    prober TEXT NOT NULL,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    claim TEXT NOT NULL,
    spki TEXT,
    updated_unix_ns BIGINT NOT NULL,
    PRIMARY KEY (prober, name)
);
CREATE TABLE rounds (
    id BIGSERIAL PRIMARY KEY,
    prober TEXT NOT NULL,
    target TEXT NOT NULL,
    claim TEXT NOT NULL,
    address TEXT NOT NULL,
    spki TEXT,
    started_unix_ns BIGINT NOT NULL,
    duration_ns BIGINT NOT NULL,
    sent BIGINT NOT NULL,
    answered BIGINT NOT NULL,
    lost BIGINT NOT NULL,
    late BIGINT NOT NULL,
    out_of_order BIGINT NOT NULL,
    violations BIGINT NOT NULL,
    min_rtt_ns BIGINT,
    p50_rtt_ns BIGINT,
    p99_rtt_ns BIGINT,
    min_eff_rtt_ns BIGINT,
    inside_p50_ns BIGINT,
    error TEXT
);
CREATE INDEX rounds_target_time ON rounds (target, started_unix_ns);
CREATE TABLE samples (
    round_id BIGINT NOT NULL REFERENCES rounds (id) ON DELETE CASCADE,
    sent_unix_ns BIGINT NOT NULL,
    rtt_ns BIGINT NOT NULL,
    inside_ns BIGINT NOT NULL
);
CREATE INDEX samples_round ON samples (round_id);
CREATE INDEX samples_time ON samples (sent_unix_ns);
CREATE TABLE evidence (
    id BIGSERIAL PRIMARY KEY,
    prober TEXT NOT NULL,
    target TEXT NOT NULL,
    at_unix_ns BIGINT NOT NULL,
    rtt_ns BIGINT,
    ok BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX evidence_target_time ON evidence (target, at_unix_ns);
CREATE TABLE verdicts (
    id BIGSERIAL PRIMARY KEY,
    node TEXT NOT NULL,
    claim TEXT NOT NULL,
    at_unix_ns BIGINT NOT NULL,
    window_start_unix_ns BIGINT NOT NULL,
    verdict TEXT NOT NULL,
    reasons TEXT NOT NULL,
    radius_km DOUBLE PRECISION,
    judgement TEXT NOT NULL
);
CREATE INDEX verdicts_node_time ON verdicts (node, at_unix_ns);
"#,
    r#"
ALTER TABLE evidence ADD COLUMN nonce BYTEA;
ALTER TABLE evidence ADD COLUMN bundle BYTEA;
CREATE INDEX evidence_bundle_time ON evidence (at_unix_ns) WHERE bundle IS NOT NULL;
"#,
    r#"
ALTER TABLE evidence ADD COLUMN peer_spki TEXT;
"#,
    r#"
CREATE TABLE landmark_rounds (
    id BIGSERIAL PRIMARY KEY,
    prober TEXT NOT NULL,
    landmark TEXT NOT NULL,
    site TEXT NOT NULL,
    address TEXT NOT NULL,
    spki TEXT,
    started_unix_ns BIGINT NOT NULL,
    sent BIGINT NOT NULL,
    answered BIGINT NOT NULL,
    min_rtt_ns BIGINT,
    min_eff_rtt_ns BIGINT,
    error TEXT
);
CREATE INDEX landmark_rounds_time ON landmark_rounds (started_unix_ns);
"#,
    r#"
ALTER TABLE rounds ADD COLUMN samples_sha256 BYTEA;
ALTER TABLE rounds ADD COLUMN key_id TEXT;
ALTER TABLE rounds ADD COLUMN signature BYTEA;
ALTER TABLE evidence ADD COLUMN bundle_sha256 BYTEA;
ALTER TABLE evidence ADD COLUMN key_id TEXT;
ALTER TABLE evidence ADD COLUMN signature BYTEA;
"#,
    r#"
ALTER TABLE landmark_rounds ADD COLUMN key_id TEXT;
ALTER TABLE landmark_rounds ADD COLUMN signature BYTEA;
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = SQLITE.len() as u32;

const _: () = assert!(
    SQLITE.len() == POSTGRES.len(),
    "every migration exists for both backends"
);

/// Arbitrary key of the advisory lock that serialises migrations of one PostgreSQL database.
const PG_MIGRATION_LOCK: i64 = 0x6c6f_6375_735f_6462; // "locus_db"

fn check_not_newer(found: u32) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// A read-only reader's check of the version `found` in `db`: 0 is no locus store, another
/// version than [`SCHEMA_VERSION`] cannot be read without migrating.
pub(crate) fn check_readable(db: &str, found: u32) -> Result<(), StoreError> {
    check_not_newer(found)?;
    if found == 0 {
        return Err(StoreError::NotAStore {
            db: db.to_owned(),
            reason: "it has no locus tables (schema version 0)".to_owned(),
        });
    }
    if found < SCHEMA_VERSION {
        return Err(StoreError::OlderSchema {
            db: db.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The SQLite schema version.
pub(crate) fn sqlite_version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Applies the missing SQLite migrations, each in its own transaction; returns the version found.
pub(crate) fn migrate_sqlite(conn: &mut Connection) -> Result<u32, StoreError> {
    migrate_sqlite_to(conn, SCHEMA_VERSION)
}

/// Brings an SQLite schema to `version` (≤ [`SCHEMA_VERSION`]); tests use it to make old
/// databases.
pub(crate) fn migrate_sqlite_to(conn: &mut Connection, version: u32) -> Result<u32, StoreError> {
    let found = sqlite_version(conn)?;
    check_not_newer(found)?;
    for (i, sql) in SQLITE.iter().enumerate().take(version as usize) {
        // Several probers may open a new database at once: take the write lock first (waiting
        // for the busy timeout), then re-read the version, so each step runs exactly once.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now as usize > i {
            continue;
        }
        tx.execute_batch(sql)?;
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(found)
}

/// The PostgreSQL schema version (0 when no locus table exists yet).
pub(crate) fn postgres_version(c: &mut impl postgres::GenericClient) -> Result<u32, StoreError> {
    let exists: bool = c
        .query_one("SELECT to_regclass('locus_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> = c
        .query_opt("SELECT version FROM locus_schema", &[])?
        .map(|r| r.get(0));
    Ok(u32::try_from(v.unwrap_or(0)).unwrap_or(u32::MAX))
}

/// Applies the missing PostgreSQL migrations; returns the version found.
pub(crate) fn migrate_postgres(c: &mut postgres::Client) -> Result<u32, StoreError> {
    migrate_postgres_to(c, SCHEMA_VERSION)
}

/// Brings a PostgreSQL schema to `version` in one transaction (PostgreSQL's DDL is
/// transactional) under an advisory lock, so probers starting together migrate once. A current
/// schema is only read: a user without CREATE rights can open it.
pub(crate) fn migrate_postgres_to(
    c: &mut postgres::Client,
    version: u32,
) -> Result<u32, StoreError> {
    let mut tx = c.transaction()?;
    // Lock before the first look at the catalog: a session that looked before waiting could
    // keep a stale "no such table" in its cache and migrate a second time.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_MIGRATION_LOCK])?;
    let found = postgres_version(&mut tx)?;
    check_not_newer(found)?;
    if found >= version {
        return Ok(found);
    }
    for sql in POSTGRES.iter().take(version as usize).skip(found as usize) {
        tx.batch_execute(sql)?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS locus_schema (version BIGINT NOT NULL);
         DELETE FROM locus_schema;",
    )?;
    tx.execute(
        "INSERT INTO locus_schema (version) VALUES ($1)",
        &[&i64::from(version)],
    )?;
    tx.commit()?;
    Ok(found)
}
