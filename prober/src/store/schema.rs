//! Schema migrations: an ordered list of SQL scripts; `PRAGMA user_version` counts those applied.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only: never edit one
/// that has shipped.
const MIGRATIONS: &[&str] = &[
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
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Applies the missing migrations, each in its own transaction; returns the version found.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the schema to `version` (≤ [`SCHEMA_VERSION`]); tests use it to make old databases.
pub(crate) fn migrate_to(conn: &mut Connection, version: u32) -> Result<u32, StoreError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(version as usize) {
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
