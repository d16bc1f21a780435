//! Measurement storage in SQLite (WAL): per-round aggregates per (prober, target), raw samples
//! with retention, evidence requests, verdicts, and the sites and probers the monitor needs.

mod export;
mod schema;

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

pub use export::{export, ExportFormat, ExportTable};
pub use schema::SCHEMA_VERSION;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the database has schema version {found}, newer than this locus supports \
         ({supported}): upgrade locus"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One round's aggregate as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRecord {
    pub prober: String,
    pub target: String,
    pub claim: String,
    pub address: String,
    /// Hex SPKI of the session key seen, when connected.
    pub spki: Option<String>,
    pub started_unix_ns: i64,
    pub duration_ns: i64,
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    pub late: u64,
    pub out_of_order: u64,
    pub violations: u64,
    pub min_rtt_ns: Option<u64>,
    pub p50_rtt_ns: Option<u64>,
    pub p99_rtt_ns: Option<u64>,
    /// Smallest round trip minus the responder's reported processing time.
    pub min_eff_rtt_ns: Option<u64>,
    pub inside_p50_ns: Option<u64>,
    /// Why no round ran (e.g. unreachable).
    pub error: Option<String>,
}

/// One answered challenge; `sent_unix_ns` is on the prober's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SampleRecord {
    pub sent_unix_ns: i64,
    pub rtt_ns: u64,
    pub inside_ns: u64,
}

/// A sample with the prober that measured it (monitor input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProberSample {
    pub prober: String,
    pub sample: SampleRecord,
}

/// One evidence request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRecord {
    pub prober: String,
    pub target: String,
    pub at_unix_ns: i64,
    pub rtt_ns: Option<u64>,
    pub ok: bool,
    pub error: Option<String>,
}

/// One stored verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictRecord {
    pub node: String,
    pub claim: String,
    pub at_unix_ns: i64,
    pub window_start_unix_ns: i64,
    pub verdict: String,
    pub reasons: Vec<String>,
    pub radius_km: Option<f64>,
    /// The full judgement, JSON.
    pub judgement: String,
}

/// A site with coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteRecord {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

/// The database. Not `Sync`: share it behind a mutex and write from blocking threads.
pub struct Store {
    conn: Connection,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the database at `path`, in WAL mode, migrated; waits up to
    /// 5 s for another writer's lock.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_busy_timeout(path, Duration::from_secs(5))
    }

    /// Like [`Store::open`]; a write waits up to `busy` for another writer (a second prober,
    /// the monitor) before it fails.
    pub fn open_with_busy_timeout(path: &Path, busy: Duration) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(busy)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        Ok(Self { conn })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Records the prober, its site and the known sites (replacing earlier values).
    pub fn upsert_world(
        &mut self,
        prober: &str,
        prober_site: &str,
        sites: &[SiteRecord],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for s in sites {
            tx.execute(
                "INSERT INTO sites (name, lat, lon) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET lat = excluded.lat, lon = excluded.lon",
                params![s.name, s.lat, s.lon],
            )?;
        }
        tx.execute(
            "INSERT INTO probers (id, site) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET site = excluded.site",
            params![prober, prober_site],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records the session key a target showed.
    pub fn upsert_target(
        &mut self,
        prober: &str,
        name: &str,
        address: &str,
        claim: &str,
        spki: Option<&str>,
        now_unix_ns: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO targets (prober, name, address, claim, spki, updated_unix_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (prober, name) DO UPDATE SET address = excluded.address,
                 claim = excluded.claim, spki = excluded.spki,
                 updated_unix_ns = excluded.updated_unix_ns",
            params![prober, name, address, claim, spki, now_unix_ns],
        )?;
        Ok(())
    }

    /// Stores a round and its samples in one transaction; returns the round's id.
    pub fn insert_round(
        &mut self,
        r: &RoundRecord,
        samples: &[SampleRecord],
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        let id = insert_round_in(&tx, r, samples)?;
        tx.commit()?;
        Ok(id)
    }

    /// Stores rounds and their samples in one transaction: all or none. A prober with
    /// thousands of targets ends hundreds of rounds a second; one commit each would cost more
    /// than the probing.
    pub fn insert_rounds(
        &mut self,
        rounds: &[(RoundRecord, Vec<SampleRecord>)],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for (r, samples) in rounds {
            insert_round_in(&tx, r, samples)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores one evidence request.
    pub fn insert_evidence(&mut self, e: &EvidenceRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO evidence (prober, target, at_unix_ns, rtt_ns, ok, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                e.prober,
                e.target,
                e.at_unix_ns,
                e.rtt_ns.map(i64_of),
                e.ok,
                e.error
            ],
        )?;
        Ok(())
    }

    /// Stores a verdict.
    pub fn insert_verdict(&mut self, v: &VerdictRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO verdicts (node, claim, at_unix_ns, window_start_unix_ns, verdict,
                 reasons, radius_km, judgement)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                v.node,
                v.claim,
                v.at_unix_ns,
                v.window_start_unix_ns,
                v.verdict,
                serde_json::to_string(&v.reasons)?,
                v.radius_km,
                v.judgement
            ],
        )?;
        Ok(())
    }

    /// Deletes raw samples sent before `before_unix_ns` (aggregates stay); returns how many.
    pub fn prune_samples(&mut self, before_unix_ns: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM samples WHERE sent_unix_ns < ?1",
            params![before_unix_ns],
        )?)
    }

    /// Writes the WAL back into the main file (on shutdown).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// SQLite's `PRAGMA integrity_check`: `"ok"` or the first problem found.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// Every known site.
    pub fn sites(&self) -> Result<Vec<SiteRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, lat, lon FROM sites ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(SiteRecord {
                name: r.get(0)?,
                lat: r.get(1)?,
                lon: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every prober with its site: `(id, site)`.
    pub fn probers(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, site FROM probers ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Nodes with a round started in `[from, to)`, with the claim of their latest round.
    pub fn nodes_between(&self, from: i64, to: i64) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT target, claim FROM rounds r
             WHERE started_unix_ns >= ?1 AND started_unix_ns < ?2
               AND id = (SELECT max(id) FROM rounds r2 WHERE r2.target = r.target
                         AND r2.started_unix_ns >= ?1 AND r2.started_unix_ns < ?2)
             ORDER BY target",
        )?;
        let rows = stmt.query_map(params![from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The rounds of `target` started in `[from, to)`, oldest first.
    pub fn rounds_between(
        &self,
        target: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<RoundRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT prober, target, claim, address, spki, started_unix_ns, duration_ns, sent,
                 answered, lost, late, out_of_order, violations, min_rtt_ns, p50_rtt_ns,
                 p99_rtt_ns, min_eff_rtt_ns, inside_p50_ns, error
             FROM rounds WHERE target = ?1 AND started_unix_ns >= ?2 AND started_unix_ns < ?3
             ORDER BY started_unix_ns, id",
        )?;
        let opt = |v: Option<i64>| v.map(u64_of);
        let rows = stmt.query_map(params![target, from, to], |r| {
            Ok(RoundRecord {
                prober: r.get(0)?,
                target: r.get(1)?,
                claim: r.get(2)?,
                address: r.get(3)?,
                spki: r.get(4)?,
                started_unix_ns: r.get(5)?,
                duration_ns: r.get(6)?,
                sent: u64_of(r.get(7)?),
                answered: u64_of(r.get(8)?),
                lost: u64_of(r.get(9)?),
                late: u64_of(r.get(10)?),
                out_of_order: u64_of(r.get(11)?),
                violations: u64_of(r.get(12)?),
                min_rtt_ns: opt(r.get(13)?),
                p50_rtt_ns: opt(r.get(14)?),
                p99_rtt_ns: opt(r.get(15)?),
                min_eff_rtt_ns: opt(r.get(16)?),
                inside_p50_ns: opt(r.get(17)?),
                error: r.get(18)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The raw samples of `target` sent in `[from, to)`, with their prober.
    pub fn samples_between(
        &self,
        target: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<ProberSample>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.prober, s.sent_unix_ns, s.rtt_ns, s.inside_ns
             FROM samples s JOIN rounds r ON r.id = s.round_id
             WHERE r.target = ?1 AND s.sent_unix_ns >= ?2 AND s.sent_unix_ns < ?3
             ORDER BY s.sent_unix_ns",
        )?;
        let rows = stmt.query_map(params![target, from, to], |r| {
            Ok(ProberSample {
                prober: r.get(0)?,
                sample: SampleRecord {
                    sent_unix_ns: r.get(1)?,
                    rtt_ns: u64_of(r.get(2)?),
                    inside_ns: u64_of(r.get(3)?),
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Evidence round trips of `target` in `[from, to)`: `(prober, rtt_ns)` of successful requests.
    pub fn evidence_rtts_between(
        &self,
        target: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT prober, rtt_ns FROM evidence
             WHERE target = ?1 AND ok = 1 AND rtt_ns IS NOT NULL
               AND at_unix_ns >= ?2 AND at_unix_ns < ?3
             ORDER BY at_unix_ns",
        )?;
        let rows = stmt.query_map(params![target, from, to], |r| {
            Ok((r.get(0)?, u64_of(r.get(1)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per-round minimum effective RTTs of `target` before `before`, the latest `limit` per
    /// prober: `(prober, min_eff_rtt_ns)`, the node's history for its baseline.
    pub fn round_minima_before(
        &self,
        target: &str,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT prober, min_eff_rtt_ns FROM (
                 SELECT prober, min_eff_rtt_ns, row_number() OVER (
                     PARTITION BY prober ORDER BY started_unix_ns DESC) AS k
                 FROM rounds
                 WHERE target = ?1 AND started_unix_ns < ?2 AND min_eff_rtt_ns IS NOT NULL)
             WHERE k <= ?3 ORDER BY prober",
        )?;
        let rows = stmt.query_map(params![target, before, i64_of(limit as u64)], |r| {
            Ok((r.get(0)?, u64_of(r.get(1)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest verdict of `node`.
    pub fn latest_verdict(&self, node: &str) -> Result<Option<VerdictRecord>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT node, claim, at_unix_ns, window_start_unix_ns, verdict, reasons,
                     radius_km, judgement
                 FROM verdicts WHERE node = ?1 ORDER BY at_unix_ns DESC, id DESC LIMIT 1",
                params![node],
                |r| {
                    Ok((
                        VerdictRecord {
                            node: r.get(0)?,
                            claim: r.get(1)?,
                            at_unix_ns: r.get(2)?,
                            window_start_unix_ns: r.get(3)?,
                            verdict: r.get(4)?,
                            reasons: Vec::new(),
                            radius_km: r.get(6)?,
                            judgement: r.get(7)?,
                        },
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((mut v, reasons)) => {
                v.reasons = serde_json::from_str(&reasons)?;
                Ok(Some(v))
            }
        }
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Inserts a round and its samples inside `tx`; returns the round's id.
fn insert_round_in(
    tx: &rusqlite::Transaction<'_>,
    r: &RoundRecord,
    samples: &[SampleRecord],
) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO rounds (prober, target, claim, address, spki, started_unix_ns,
             duration_ns, sent, answered, lost, late, out_of_order, violations, min_rtt_ns,
             p50_rtt_ns, p99_rtt_ns, min_eff_rtt_ns, inside_p50_ns, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
             ?17, ?18, ?19)",
        params![
            r.prober,
            r.target,
            r.claim,
            r.address,
            r.spki,
            r.started_unix_ns,
            r.duration_ns,
            i64_of(r.sent),
            i64_of(r.answered),
            i64_of(r.lost),
            i64_of(r.late),
            i64_of(r.out_of_order),
            i64_of(r.violations),
            r.min_rtt_ns.map(i64_of),
            r.p50_rtt_ns.map(i64_of),
            r.p99_rtt_ns.map(i64_of),
            r.min_eff_rtt_ns.map(i64_of),
            r.inside_p50_ns.map(i64_of),
            r.error,
        ],
    )?;
    let id = tx.last_insert_rowid();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO samples (round_id, sent_unix_ns, rtt_ns, inside_ns)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for s in samples {
            stmt.execute(params![
                id,
                s.sent_unix_ns,
                i64_of(s.rtt_ns),
                i64_of(s.inside_ns)
            ])?;
        }
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }

    #[test]
    fn migrates_once_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        drop(s);
        // Reopening applies nothing twice.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.conn
            .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        drop(s);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::NewerSchema { found, .. }) if found == SCHEMA_VERSION + 1
        ));
    }

    #[test]
    fn rounds_samples_retention_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("r.db")).unwrap();
        let samples = [
            SampleRecord {
                sent_unix_ns: 100,
                rtt_ns: 50,
                inside_ns: 5,
            },
            SampleRecord {
                sent_unix_ns: 200,
                rtt_ns: 60,
                inside_ns: 5,
            },
        ];
        s.insert_round(&round("n1", 100, 50), &samples).unwrap();
        s.insert_round(&round("n1", 1_000, 70), &[]).unwrap();
        s.insert_round(&round("n2", 1_000, 90), &[]).unwrap();
        assert_eq!(s.samples_between("n1", 0, 1_000).unwrap().len(), 2);
        assert_eq!(s.samples_between("n2", 0, 1_000).unwrap().len(), 0);
        assert_eq!(s.rounds_between("n1", 0, 2_000).unwrap().len(), 2);
        assert_eq!(
            s.nodes_between(500, 2_000).unwrap(),
            vec![("n1".into(), "ams".into()), ("n2".into(), "ams".into())]
        );
        assert_eq!(
            s.round_minima_before("n1", 1_000, 10).unwrap(),
            vec![("p1".to_string(), 45)]
        );
        assert_eq!(s.prune_samples(150).unwrap(), 1);
        assert_eq!(s.samples_between("n1", 0, 1_000).unwrap().len(), 1);
        // Aggregates outlive their samples.
        assert_eq!(s.rounds_between("n1", 0, 2_000).unwrap().len(), 2);
    }

    #[test]
    fn insert_rounds_is_all_or_none_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let mut s = Store::open_with_busy_timeout(&path, Duration::ZERO).unwrap();
        let sample = |t| SampleRecord {
            sent_unix_ns: t,
            rtt_ns: 50,
            inside_ns: 5,
        };
        let batch: Vec<_> = (0..3)
            .map(|k| (round("n1", 100 * k, 50 + k as u64), vec![sample(100 * k)]))
            .collect();
        let blocker = Connection::open(&path).unwrap();
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

    #[test]
    fn verdicts_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("v.db")).unwrap();
        assert_eq!(s.latest_verdict("n1").unwrap(), None);
        let v = VerdictRecord {
            node: "n1".into(),
            claim: "ams".into(),
            at_unix_ns: 5,
            window_start_unix_ns: 1,
            verdict: "relocated".into(),
            reasons: vec!["moved".into()],
            radius_km: Some(12.5),
            judgement: "{}".into(),
        };
        s.insert_verdict(&v).unwrap();
        assert_eq!(s.latest_verdict("n1").unwrap(), Some(v));
    }
}
