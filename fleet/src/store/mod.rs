//! Measurement storage: per-round aggregates per (prober, target), raw samples and evidence
//! bundles with retention, evidence requests, verdicts, and the sites and probers the monitor
//! needs. Two backends behind one API: an SQLite file (WAL) for one host, PostgreSQL for a
//! fleet of probers writing to one database.

mod export;
mod location;
mod pg_tls;
mod postgres;
mod schema;
mod sql;
mod sqlite;
mod value;

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use self::postgres::Pg;
use self::sql::Sql;
use self::sqlite::Lite;
use self::value::{params, Param, Row};

pub use export::{export, export_filtered, ExportFilter, ExportFormat, ExportTable};
pub use location::{Database, PasswordFileError};
pub use schema::SCHEMA_VERSION;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    // The PostgreSQL errors are shown whole (with their causes) and are not `source`s, so a
    // report that prints the chain does not repeat them.
    #[error("PostgreSQL: {}", postgres::describe(.0))]
    Postgres(::postgres::Error),
    #[error("{url} is not a usable PostgreSQL URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to PostgreSQL at {url}: {}", postgres::describe(.error))]
    PgConnect {
        url: String,
        error: ::postgres::Error,
    },
    #[error(
        "PostgreSQL at {url} refused user {user:?}: {} (check the user and password in the \
         URL)",
        postgres::describe(.error)
    )]
    PgAuth {
        url: String,
        user: String,
        error: ::postgres::Error,
    },
    /// The server's certificate does not verify against `sslrootcert` (wrong CA, or a
    /// certificate for another host name, or expired).
    #[error(
        "PostgreSQL at {url} presented a certificate that does not verify against sslrootcert: \
         {} (is sslrootcert the CA that signed the server's certificate, and does that \
         certificate name the host of the URL?)",
        postgres::describe(.error)
    )]
    PgCertificate {
        url: String,
        error: ::postgres::Error,
    },
    #[error("PostgreSQL at {url} is unreachable (last attempt: {last}); retrying")]
    PgDown { url: String, last: String },
    #[error(
        "the database has schema version {found}, newer than this locus supports \
         ({supported}): upgrade locus"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error("column {index}: expected {expected}, found {found}")]
    Column {
        index: usize,
        expected: &'static str,
        found: &'static str,
    },
    #[error("column {column} has type {found}, which locus does not read")]
    ColumnType { column: String, found: String },
    #[error("database {} does not exist", .0.display())]
    NoSuchFile(std::path::PathBuf),
    /// Opened read-only, the database holds no locus tables (or is no SQLite file at all):
    /// point at the `db` a prober writes.
    #[error("{db} is not a locus store: {reason}")]
    NotAStore { db: String, reason: String },
    /// Opened read-only, the database has an older schema than this locus reads; a read-only
    /// reader does not migrate it: run `locus prober --config` or `locus monitor` on it once.
    #[error(
        "{db} has schema version {found}, older than this locus reads ({supported}); a read-only \
         look does not migrate it: open it once with `locus prober --config` or `locus monitor`"
    )]
    OlderSchema {
        db: String,
        found: u32,
        supported: u32,
    },
    #[error("{0} is an SQLite operation")]
    SqliteOnly(&'static str),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        StoreError::Postgres(e)
    }
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
    /// The prober's signature (`crate::integrity`); None for rows of unkeyed probers and of
    /// schemas before 4.
    #[serde(skip)]
    pub seal: Option<Seal>,
}

/// A prober's signature over a stored row (`crate::integrity` defines what is signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// SHA-256 of the round's samples, or of the evidence bundle (None: no bundle), as signed.
    pub digest: Option<Vec<u8>>,
    /// The signing key's id (`locus_prober::identity::PublicKey::key_id`).
    pub key_id: String,
    /// Ed25519 signature, 64 bytes.
    pub signature: Vec<u8>,
}

/// A round as stored, with its row id (to fetch its samples).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRound {
    pub id: i64,
    pub round: RoundRecord,
}

/// One answered challenge; `sent_unix_ns` is on the prober's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SampleRecord {
    pub sent_unix_ns: i64,
    pub rtt_ns: u64,
    pub inside_ns: u64,
}

/// A sample with the prober that measured it and the session key its round's connection
/// showed (hex SPKI; None for rounds stored without one) (monitor input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProberSample {
    pub prober: String,
    pub spki: Option<String>,
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
    /// The nonce the prober asked the evidence to be bound to.
    pub nonce: Option<Vec<u8>>,
    /// The `EvidenceBundle` as received (CBOR), unverified; pruned with the raw samples.
    pub bundle: Option<Vec<u8>>,
    /// Hex SPKI of the QUIC peer the request went to (the connection's session key): the
    /// bundle's `session_spki` must equal it, and only samples taken under it count.
    pub peer_spki: Option<String>,
    /// The prober's signature (`crate::integrity`).
    pub seal: Option<Seal>,
}

/// An evidence record as stored, with its row id and whether its bundle is still stored
/// (the record itself carries no bundle bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvidence {
    pub id: i64,
    pub has_bundle: bool,
    pub record: EvidenceRecord,
}

/// One round against a landmark (a responder at a known site): what calibration needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LandmarkRoundRecord {
    pub prober: String,
    pub landmark: String,
    /// The landmark's site.
    pub site: String,
    pub address: String,
    /// Hex SPKI of the session key seen, when connected.
    pub spki: Option<String>,
    pub started_unix_ns: i64,
    pub sent: u64,
    pub answered: u64,
    pub min_rtt_ns: Option<u64>,
    /// Smallest round trip minus the landmark's reported processing time.
    pub min_eff_rtt_ns: Option<u64>,
    /// Why no round ran (e.g. unreachable).
    pub error: Option<String>,
    /// The prober's signature (`crate::integrity::seal_landmark`; no digest); None for rows
    /// of unkeyed probers and of schemas before 6.
    #[serde(skip)]
    pub seal: Option<Seal>,
}

/// A prober's smallest effective round trip to a site's landmarks over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandmarkMin {
    pub prober: String,
    pub site: String,
    pub min_rtt_ns: u64,
}

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Raw samples deleted.
    pub samples: usize,
    /// Evidence bundles dropped (the request's record stays).
    pub bundles: usize,
    /// Landmark rounds deleted.
    pub landmark_rounds: usize,
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

/// The database. Not `Sync`: share it behind a mutex and use it from blocking threads (the
/// PostgreSQL client blocks on its own runtime).
pub struct Store {
    backend: RefCell<Backend>,
}

enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Pg>),
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Most sample rows in one INSERT (SQLite allows 32766 bound parameters, PostgreSQL 65535).
const SAMPLES_PER_INSERT: usize = 1_000;

const ROUND_COLUMNS: &str = "prober, target, claim, address, spki, started_unix_ns, duration_ns, \
     sent, answered, lost, late, out_of_order, violations, min_rtt_ns, p50_rtt_ns, p99_rtt_ns, \
     min_eff_rtt_ns, inside_p50_ns, error, samples_sha256, key_id, signature";

const EVIDENCE_COLUMNS: &str =
    "prober, target, at_unix_ns, rtt_ns, ok, error, nonce, bundle, peer_spki, bundle_sha256, \
     key_id, signature";

fn round_of(r: &Row) -> Result<RoundRecord, StoreError> {
    Ok(RoundRecord {
        prober: r.text(0)?,
        target: r.text(1)?,
        claim: r.text(2)?,
        address: r.text(3)?,
        spki: r.opt_text(4)?,
        started_unix_ns: r.i64(5)?,
        duration_ns: r.i64(6)?,
        sent: r.u64(7)?,
        answered: r.u64(8)?,
        lost: r.u64(9)?,
        late: r.u64(10)?,
        out_of_order: r.u64(11)?,
        violations: r.u64(12)?,
        min_rtt_ns: r.opt_u64(13)?,
        p50_rtt_ns: r.opt_u64(14)?,
        p99_rtt_ns: r.opt_u64(15)?,
        min_eff_rtt_ns: r.opt_u64(16)?,
        inside_p50_ns: r.opt_u64(17)?,
        error: r.opt_text(18)?,
        seal: seal_of(r, 19)?,
    })
}

/// The seal in columns `at..at + 3` (digest, key id, signature); None when unsigned.
fn seal_of(r: &Row, at: usize) -> Result<Option<Seal>, StoreError> {
    let (Some(key_id), Some(signature)) = (r.opt_text(at + 1)?, r.opt_blob(at + 2)?) else {
        return Ok(None);
    };
    Ok(Some(Seal {
        digest: r.opt_blob(at)?,
        key_id,
        signature,
    }))
}

/// The seal's columns as parameters: digest, key id, signature.
fn seal_params(seal: Option<&Seal>) -> [Param<'_>; 3] {
    match seal {
        None => [Param::Null, Param::Null, Param::Null],
        Some(s) => [
            s.digest.as_deref().into(),
            Param::from(s.key_id.as_str()),
            Param::from(s.signature.as_slice()),
        ],
    }
}

fn evidence_of(r: &Row) -> Result<EvidenceRecord, StoreError> {
    Ok(EvidenceRecord {
        prober: r.text(0)?,
        target: r.text(1)?,
        at_unix_ns: r.i64(2)?,
        rtt_ns: r.opt_u64(3)?,
        ok: r.bool(4)?,
        error: r.opt_text(5)?,
        nonce: r.opt_blob(6)?,
        bundle: r.opt_blob(7)?,
        peer_spki: r.opt_text(8)?,
        seal: seal_of(r, 9)?,
    })
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, in WAL mode, migrated; waits
    /// up to 5 s for another writer's lock.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_busy_timeout(path, Duration::from_secs(5))
    }

    /// Like [`Store::open`]; a write waits up to `busy` for another writer (a second prober,
    /// the monitor) before it fails.
    pub fn open_with_busy_timeout(path: &Path, busy: Duration) -> Result<Self, StoreError> {
        Self::connect(&Database::Sqlite(path.to_owned()), busy)
    }

    /// Opens either backend, migrated. `wait`: SQLite's busy timeout; for PostgreSQL the
    /// connection timeout and the lock timeout (unless the URL sets them). A PostgreSQL
    /// server that is down later is reconnected to on a later use.
    pub fn connect(db: &Database, wait: Duration) -> Result<Self, StoreError> {
        let backend = match db {
            Database::Sqlite(path) => Backend::Sqlite(sqlite::open(path, wait)?),
            Database::Postgres(url) => Backend::Postgres(Box::new(Pg::connect(url, wait)?)),
        };
        Ok(Self {
            backend: RefCell::new(backend),
        })
    }

    /// Like [`Store::connect`] for readers (monitor, export): a missing SQLite file is an
    /// error, not a new empty database.
    pub fn connect_existing(db: &Database, wait: Duration) -> Result<Self, StoreError> {
        if let Database::Sqlite(path) = db {
            if !path.exists() {
                return Err(StoreError::NoSuchFile(path.clone()));
            }
        }
        Self::connect(db, wait)
    }

    /// Opens either backend for reading only: nothing is created or migrated, and writes
    /// fail (SQLite opened read-only; PostgreSQL sessions with `default_transaction_read_only`).
    /// A missing SQLite file, a file or database without locus tables, or a schema of another
    /// version is an error naming the database.
    pub fn open_read_only(db: &Database, wait: Duration) -> Result<Self, StoreError> {
        let backend = match db {
            Database::Sqlite(path) => {
                if !path.exists() {
                    return Err(StoreError::NoSuchFile(path.clone()));
                }
                Backend::Sqlite(sqlite::open_read_only(path, wait)?)
            }
            Database::Postgres(url) => {
                Backend::Postgres(Box::new(Pg::connect_read_only(url, wait)?))
            }
        };
        Ok(Self {
            backend: RefCell::new(backend),
        })
    }

    /// Runs `f` on the connection (PostgreSQL: reconnecting if needed).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &mut *self.backend.borrow_mut() {
            Backend::Sqlite(c) => f(&mut Lite(c)),
            Backend::Postgres(pg) => f(pg.client()?),
        }
    }

    /// Runs `f` in a transaction, committed when `f` succeeds.
    fn tx<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &mut *self.backend.borrow_mut() {
            Backend::Sqlite(c) => {
                let tx = c.transaction()?;
                let v = f(&mut Lite(&tx))?;
                tx.commit()?;
                Ok(v)
            }
            Backend::Postgres(pg) => {
                let mut tx = pg.client()?.transaction()?;
                let v = f(&mut tx)?;
                tx.commit()?;
                Ok(v)
            }
        }
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        match &mut *self.backend.borrow_mut() {
            Backend::Sqlite(c) => schema::sqlite_version(c),
            Backend::Postgres(pg) => schema::postgres_version(pg.client()?),
        }
    }

    /// Records the prober, its site and the known sites (replacing earlier values).
    pub fn upsert_world(
        &mut self,
        prober: &str,
        prober_site: &str,
        sites: &[SiteRecord],
    ) -> Result<(), StoreError> {
        // Probers sharing a PostgreSQL database upsert the same rows: one order for all
        // avoids deadlocks.
        let mut sorted: Vec<&SiteRecord> = sites.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        self.tx(|tx| {
            for s in sorted {
                tx.execute(
                    "INSERT INTO sites (name, lat, lon) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET lat = excluded.lat, lon = excluded.lon",
                    params![&s.name, s.lat, s.lon],
                )?;
            }
            tx.execute(
                "INSERT INTO probers (id, site) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET site = excluded.site",
                params![prober, prober_site],
            )?;
            Ok(())
        })
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
        self.with(|c| {
            c.execute(
                "INSERT INTO targets (prober, name, address, claim, spki, updated_unix_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (prober, name) DO UPDATE SET address = excluded.address,
                     claim = excluded.claim, spki = excluded.spki,
                     updated_unix_ns = excluded.updated_unix_ns",
                params![prober, name, address, claim, spki, now_unix_ns],
            )
        })?;
        Ok(())
    }

    /// Stores a round and its samples in one transaction; returns the round's id.
    pub fn insert_round(
        &mut self,
        r: &RoundRecord,
        samples: &[SampleRecord],
    ) -> Result<i64, StoreError> {
        self.tx(|tx| insert_round_in(tx, r, samples))
    }

    /// Stores rounds and their samples in one transaction: all or none. A prober with
    /// thousands of targets ends hundreds of rounds a second; one commit each would cost more
    /// than the probing.
    pub fn insert_rounds(
        &mut self,
        rounds: &[(RoundRecord, Vec<SampleRecord>)],
    ) -> Result<(), StoreError> {
        self.tx(|tx| {
            for (r, samples) in rounds {
                insert_round_in(tx, r, samples)?;
            }
            Ok(())
        })
    }

    /// Stores one evidence request.
    pub fn insert_evidence(&mut self, e: &EvidenceRecord) -> Result<(), StoreError> {
        let mut values: Vec<Param<'_>> = params![
            &e.prober,
            &e.target,
            e.at_unix_ns,
            e.rtt_ns.map(i64_of),
            e.ok,
            e.error.as_deref(),
            e.nonce.as_deref(),
            e.bundle.as_deref(),
            e.peer_spki.as_deref(),
        ]
        .to_vec();
        values.extend(seal_params(e.seal.as_ref()));
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO evidence ({EVIDENCE_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                &values,
            )
        })?;
        Ok(())
    }

    /// Stores one landmark round.
    pub fn insert_landmark_round(&mut self, r: &LandmarkRoundRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO landmark_rounds (prober, landmark, site, address, spki,
                     started_unix_ns, sent, answered, min_rtt_ns, min_eff_rtt_ns, error, key_id,
                     signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    &r.prober,
                    &r.landmark,
                    &r.site,
                    &r.address,
                    r.spki.as_deref(),
                    r.started_unix_ns,
                    i64_of(r.sent),
                    i64_of(r.answered),
                    r.min_rtt_ns.map(i64_of),
                    r.min_eff_rtt_ns.map(i64_of),
                    r.error.as_deref(),
                    r.seal.as_ref().map(|s| s.key_id.as_str()),
                    r.seal.as_ref().map(|s| s.signature.as_slice()),
                ],
            )
        })?;
        Ok(())
    }

    /// The landmark rounds started in `[from, to)` with an effective round trip, whole (with
    /// their seals) so that the monitor can check each before it takes their minima.
    pub fn landmark_rounds_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<LandmarkRoundRecord>, StoreError> {
        self.with(|c| {
            c.query(
                "SELECT prober, landmark, site, address, spki, started_unix_ns, sent, answered,
                     min_rtt_ns, min_eff_rtt_ns, error, key_id, signature
                 FROM landmark_rounds
                 WHERE started_unix_ns >= ?1 AND started_unix_ns < ?2
                   AND min_eff_rtt_ns IS NOT NULL
                 ORDER BY prober, started_unix_ns, id",
                params![from, to],
                |r| {
                    let seal = match (r.opt_text(11)?, r.opt_blob(12)?) {
                        (Some(key_id), Some(signature)) => Some(Seal {
                            digest: None,
                            key_id,
                            signature,
                        }),
                        _ => None,
                    };
                    Ok(LandmarkRoundRecord {
                        prober: r.text(0)?,
                        landmark: r.text(1)?,
                        site: r.text(2)?,
                        address: r.text(3)?,
                        spki: r.opt_text(4)?,
                        started_unix_ns: r.i64(5)?,
                        sent: r.u64(6)?,
                        answered: r.u64(7)?,
                        min_rtt_ns: r.opt_u64(8)?,
                        min_eff_rtt_ns: r.opt_u64(9)?,
                        error: r.opt_text(10)?,
                        seal,
                    })
                },
            )
        })
    }

    /// Per prober and landmark site, the smallest effective round trip of the landmark rounds
    /// started in `[from, to)` (the judge's calibration over its window).
    pub fn landmark_minima_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<LandmarkMin>, StoreError> {
        self.with(|c| {
            c.query(
                "SELECT prober, site, min(min_eff_rtt_ns) FROM landmark_rounds
                 WHERE started_unix_ns >= ?1 AND started_unix_ns < ?2
                   AND min_eff_rtt_ns IS NOT NULL
                 GROUP BY prober, site ORDER BY prober, site",
                params![from, to],
                |r| {
                    Ok(LandmarkMin {
                        prober: r.text(0)?,
                        site: r.text(1)?,
                        min_rtt_ns: r.u64(2)?,
                    })
                },
            )
        })
    }

    /// Stores a verdict.
    pub fn insert_verdict(&mut self, v: &VerdictRecord) -> Result<(), StoreError> {
        let reasons = serde_json::to_string(&v.reasons)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO verdicts (node, claim, at_unix_ns, window_start_unix_ns, verdict,
                     reasons, radius_km, judgement)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    &v.node,
                    &v.claim,
                    v.at_unix_ns,
                    v.window_start_unix_ns,
                    &v.verdict,
                    &reasons,
                    v.radius_km,
                    &v.judgement,
                ],
            )
        })?;
        Ok(())
    }

    /// Deletes raw samples sent, evidence bundles received and landmark rounds started before
    /// `before_unix_ns`, in one transaction; round aggregates and evidence records stay.
    pub fn prune_raw(&mut self, before_unix_ns: i64) -> Result<Pruned, StoreError> {
        self.tx(|tx| {
            let samples = tx.execute(
                "DELETE FROM samples WHERE sent_unix_ns < ?1",
                params![before_unix_ns],
            )?;
            let bundles = tx.execute(
                "UPDATE evidence SET bundle = NULL WHERE bundle IS NOT NULL AND at_unix_ns < ?1",
                params![before_unix_ns],
            )?;
            let landmark_rounds = tx.execute(
                "DELETE FROM landmark_rounds WHERE started_unix_ns < ?1",
                params![before_unix_ns],
            )?;
            Ok(Pruned {
                samples: samples as usize,
                bundles: bundles as usize,
                landmark_rounds: landmark_rounds as usize,
            })
        })
    }

    /// SQLite: writes the WAL back into the main file (on shutdown). PostgreSQL: nothing to do,
    /// every commit is already durable on the server.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        match &*self.backend.borrow() {
            Backend::Sqlite(c) => {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Ok(())
            }
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// SQLite's `PRAGMA integrity_check`: `"ok"` or the first problem found. PostgreSQL has no
    /// such check built in: [`StoreError::SqliteOnly`].
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        match &*self.backend.borrow() {
            Backend::Sqlite(c) => Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?),
            Backend::Postgres(_) => Err(StoreError::SqliteOnly("integrity_check")),
        }
    }

    /// Every known site.
    pub fn sites(&self) -> Result<Vec<SiteRecord>, StoreError> {
        self.with(|c| {
            c.query("SELECT name, lat, lon FROM sites ORDER BY name", &[], |r| {
                Ok(SiteRecord {
                    name: r.text(0)?,
                    lat: r.f64(1)?,
                    lon: r.f64(2)?,
                })
            })
        })
    }

    /// Every prober with its site: `(id, site)`.
    pub fn probers(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            c.query("SELECT id, site FROM probers ORDER BY id", &[], |r| {
                Ok((r.text(0)?, r.text(1)?))
            })
        })
    }

    /// Nodes with a round started in `[from, to)`, with the claim of their latest round.
    pub fn nodes_between(&self, from: i64, to: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            c.query(
                "SELECT target, claim FROM rounds r
                 WHERE started_unix_ns >= ?1 AND started_unix_ns < ?2
                   AND id = (SELECT max(id) FROM rounds r2 WHERE r2.target = r.target
                             AND r2.started_unix_ns >= ?1 AND r2.started_unix_ns < ?2)
                 ORDER BY target",
                params![from, to],
                |r| Ok((r.text(0)?, r.text(1)?)),
            )
        })
    }

    /// The rounds of `target` started in `[from, to)`, oldest first.
    pub fn rounds_between(
        &self,
        target: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<RoundRecord>, StoreError> {
        self.with(|c| {
            c.query(
                &format!(
                    "SELECT {ROUND_COLUMNS} FROM rounds
                     WHERE target = ?1 AND started_unix_ns >= ?2 AND started_unix_ns < ?3
                     ORDER BY started_unix_ns, id"
                ),
                params![target, from, to],
                round_of,
            )
        })
    }

    /// The raw samples of `target` sent in `[from, to)`, with their prober.
    pub fn samples_between(
        &self,
        target: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<ProberSample>, StoreError> {
        self.with(|c| {
            c.query(
                "SELECT r.prober, s.sent_unix_ns, s.rtt_ns, s.inside_ns, r.spki
                 FROM samples s JOIN rounds r ON r.id = s.round_id
                 WHERE r.target = ?1 AND s.sent_unix_ns >= ?2 AND s.sent_unix_ns < ?3
                 ORDER BY s.sent_unix_ns",
                params![target, from, to],
                |r| {
                    Ok(ProberSample {
                        prober: r.text(0)?,
                        spki: r.opt_text(4)?,
                        sample: SampleRecord {
                            sent_unix_ns: r.i64(1)?,
                            rtt_ns: r.u64(2)?,
                            inside_ns: r.u64(3)?,
                        },
                    })
                },
            )
        })
    }

    /// Evidence round trips of `target` in `[from, to)`: `(prober, rtt_ns, peer_spki)` of
    /// successful requests (the key is None for requests stored before schema 3).
    pub fn evidence_rtts_between(
        &self,
        target: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, u64, Option<String>)>, StoreError> {
        self.with(|c| {
            c.query(
                "SELECT prober, rtt_ns, peer_spki FROM evidence
                 WHERE target = ?1 AND ok = 1 AND rtt_ns IS NOT NULL
                   AND at_unix_ns >= ?2 AND at_unix_ns < ?3
                 ORDER BY at_unix_ns, id",
                params![target, from, to],
                |r| Ok((r.text(0)?, r.u64(1)?, r.opt_text(2)?)),
            )
        })
    }

    /// Per target and prober, the latest evidence request in `[from, to)` that stored a
    /// bundle, by target and prober: each prober's bundle vouches for its own samples.
    pub fn evidence_bundles_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<EvidenceRecord>, StoreError> {
        self.with(|c| {
            c.query(
                &format!(
                    "SELECT {EVIDENCE_COLUMNS} FROM evidence e
                     WHERE bundle IS NOT NULL AND at_unix_ns >= ?1 AND at_unix_ns < ?2
                       AND id = (SELECT id FROM evidence e2
                                 WHERE e2.target = e.target AND e2.prober = e.prober
                                   AND e2.bundle IS NOT NULL
                                   AND e2.at_unix_ns >= ?1 AND e2.at_unix_ns < ?2
                                 ORDER BY e2.at_unix_ns DESC, e2.id DESC LIMIT 1)
                     ORDER BY target, prober"
                ),
                params![from, to],
                evidence_of,
            )
        })
    }

    /// Every evidence record of every target in `[from, to)`, without its bundle bytes (only
    /// whether one is stored), newest first per target and prober: the monitor checks each
    /// record before it chooses whose bundle to load ([`Store::evidence_bundle`]).
    pub fn evidence_records_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredEvidence>, StoreError> {
        // A NULL typed as the bundle column in both backends (a bare NULL has no type in
        // PostgreSQL).
        let columns = EVIDENCE_COLUMNS.replace(" bundle,", " CASE WHEN 1 = 0 THEN bundle END,");
        self.with(|c| {
            c.query(
                &format!(
                    "SELECT {columns}, id, CASE WHEN bundle IS NULL THEN 0 ELSE 1 END
                     FROM evidence
                     WHERE at_unix_ns >= ?1 AND at_unix_ns < ?2
                     ORDER BY target, prober, at_unix_ns DESC, id DESC"
                ),
                params![from, to],
                |r| {
                    Ok(StoredEvidence {
                        record: evidence_of(r)?,
                        id: r.i64(12)?,
                        has_bundle: r.i64(13)? != 0,
                    })
                },
            )
        })
    }

    /// The bundle stored with evidence record `id`, if any.
    pub fn evidence_bundle(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT bundle FROM evidence WHERE id = ?1",
                params![id],
                |r| r.opt_blob(0),
            )
        })?;
        Ok(rows.into_iter().next().flatten())
    }

    /// Per-round minimum effective RTTs of `target` before `before`, the latest `limit` per
    /// prober: `(prober, min_eff_rtt_ns)`, the node's history for its baseline.
    pub fn round_minima_before(
        &self,
        target: &str,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|c| {
            c.query(
                "SELECT prober, min_eff_rtt_ns FROM (
                     SELECT prober, min_eff_rtt_ns, row_number() OVER (
                         PARTITION BY prober ORDER BY started_unix_ns DESC, id DESC) AS k
                     FROM rounds
                     WHERE target = ?1 AND started_unix_ns < ?2 AND min_eff_rtt_ns IS NOT NULL
                 ) AS ranked
                 WHERE k <= ?3 ORDER BY prober, k",
                params![target, before, i64_of(limit as u64)],
                |r| Ok((r.text(0)?, r.u64(1)?)),
            )
        })
    }

    /// The rounds of `target` whose time overlaps `[from, to)` (started before `to`, ended at
    /// or after `from`), oldest first, with their ids: the monitor checks each one's signature
    /// and samples.
    pub fn rounds_overlapping(
        &self,
        target: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredRound>, StoreError> {
        self.with(|c| {
            c.query(
                &format!(
                    "SELECT {ROUND_COLUMNS}, id FROM rounds
                     WHERE target = ?1 AND started_unix_ns < ?3
                       AND started_unix_ns + duration_ns >= ?2
                     ORDER BY started_unix_ns, id"
                ),
                params![target, from, to],
                |r| {
                    Ok(StoredRound {
                        round: round_of(r)?,
                        id: r.i64(22)?,
                    })
                },
            )
        })
    }

    /// The samples stored for round `id`, in no particular order.
    pub fn samples_of_round(&self, id: i64) -> Result<Vec<SampleRecord>, StoreError> {
        self.with(|c| {
            c.query(
                "SELECT sent_unix_ns, rtt_ns, inside_ns FROM samples WHERE round_id = ?1",
                params![id],
                |r| {
                    Ok(SampleRecord {
                        sent_unix_ns: r.i64(0)?,
                        rtt_ns: r.u64(1)?,
                        inside_ns: r.u64(2)?,
                    })
                },
            )
        })
    }

    /// The latest `limit` rounds per prober of `target` started before `before` that have a
    /// minimum effective RTT: the node's history for its baseline, whole so that each can be
    /// checked.
    pub fn rounds_before(
        &self,
        target: &str,
        before: i64,
        limit: usize,
    ) -> Result<Vec<RoundRecord>, StoreError> {
        self.with(|c| {
            c.query(
                &format!(
                    "SELECT {ROUND_COLUMNS} FROM (
                         SELECT *, row_number() OVER (
                             PARTITION BY prober ORDER BY started_unix_ns DESC, id DESC) AS k
                         FROM rounds
                         WHERE target = ?1 AND started_unix_ns < ?2
                           AND min_eff_rtt_ns IS NOT NULL
                     ) AS ranked
                     WHERE k <= ?3 ORDER BY prober, k"
                ),
                params![target, before, i64_of(limit as u64)],
                round_of,
            )
        })
    }

    /// Every evidence request of `target` in `[from, to)`, newest first (bundles included).
    pub fn evidence_between(
        &self,
        target: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<EvidenceRecord>, StoreError> {
        self.with(|c| {
            c.query(
                &format!(
                    "SELECT {EVIDENCE_COLUMNS} FROM evidence
                     WHERE target = ?1 AND at_unix_ns >= ?2 AND at_unix_ns < ?3
                     ORDER BY at_unix_ns DESC, id DESC"
                ),
                params![target, from, to],
                evidence_of,
            )
        })
    }

    /// The latest verdict of `node`.
    pub fn latest_verdict(&self, node: &str) -> Result<Option<VerdictRecord>, StoreError> {
        self.latest_verdict_of(node, None)
    }

    /// The latest verdict of `node` that is `verdict` (any verdict when None): the monitor's
    /// alerts name where the node was last `located`.
    pub fn latest_verdict_of(
        &self,
        node: &str,
        verdict: Option<&str>,
    ) -> Result<Option<VerdictRecord>, StoreError> {
        self.latest_verdict_until(node, verdict, i64::MAX)
    }

    /// [`Store::latest_verdict_of`] among the verdicts dated at or before `until` (a row dated
    /// later cannot be one the monitor gave yet).
    pub fn latest_verdict_until(
        &self,
        node: &str,
        verdict: Option<&str>,
        until: i64,
    ) -> Result<Option<VerdictRecord>, StoreError> {
        // '' stands for any verdict (no verdict is empty), so one typed text parameter serves
        // both backends.
        let verdict = verdict.unwrap_or("");
        let rows = self.with(|c| {
            c.query(
                "SELECT node, claim, at_unix_ns, window_start_unix_ns, verdict, reasons,
                     radius_km, judgement
                 FROM verdicts WHERE node = ?1 AND (?2 = '' OR verdict = ?2)
                   AND at_unix_ns <= ?3
                 ORDER BY at_unix_ns DESC, id DESC LIMIT 1",
                params![node, verdict, until],
                |r| {
                    Ok(VerdictRecord {
                        node: r.text(0)?,
                        claim: r.text(1)?,
                        at_unix_ns: r.i64(2)?,
                        window_start_unix_ns: r.i64(3)?,
                        verdict: r.text(4)?,
                        reasons: serde_json::from_str(&r.text(5)?)?,
                        radius_km: r.opt_f64(6)?,
                        judgement: r.text(7)?,
                    })
                },
            )
        })?;
        Ok(rows.into_iter().next())
    }

    /// When `node`'s latest run of `verdict` began: the time of its first verdict `verdict`
    /// after its last other verdict (None when its latest stored verdict is another one or
    /// none). Direct alerts start there, stable across re-sends.
    ///
    /// Only verdicts up to `until` count: a row dated in the future neither starts nor ends
    /// one (REVIEW3 D).
    pub fn verdict_since(
        &self,
        node: &str,
        verdict: &str,
        until: i64,
    ) -> Result<Option<i64>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT MIN(at_unix_ns) FROM verdicts
                 WHERE node = ?1 AND verdict = ?2 AND at_unix_ns <= ?3 AND at_unix_ns > COALESCE(
                     (SELECT MAX(at_unix_ns) FROM verdicts
                      WHERE node = ?1 AND verdict <> ?2 AND at_unix_ns <= ?3),
                     -1)",
                params![node, verdict, until],
                |r| r.opt_i64(0),
            )
        })?;
        Ok(rows.into_iter().next().flatten())
    }
}

/// Inserts a round and its samples inside `tx`; returns the round's id.
fn insert_round_in(
    tx: &mut dyn Sql,
    r: &RoundRecord,
    samples: &[SampleRecord],
) -> Result<i64, StoreError> {
    let mut values: Vec<Param<'_>> = params![
        &r.prober,
        &r.target,
        &r.claim,
        &r.address,
        r.spki.as_deref(),
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
        r.error.as_deref(),
    ]
    .to_vec();
    values.extend(seal_params(r.seal.as_ref()));
    let ids = tx.query(
        &format!(
            "INSERT INTO rounds ({ROUND_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                 ?16, ?17, ?18, ?19, ?20, ?21, ?22)
             RETURNING id"
        ),
        &values,
        |row| row.i64(0),
    )?;
    let id = ids.first().copied().ok_or(StoreError::Column {
        index: 0,
        expected: "the new round's id",
        found: "no row",
    })?;
    // One statement per chunk: a round trip per sample would dominate on PostgreSQL.
    for chunk in samples.chunks(SAMPLES_PER_INSERT) {
        let mut sql =
            String::from("INSERT INTO samples (round_id, sent_unix_ns, rtt_ns, inside_ns) VALUES ");
        let mut values = vec![Param::Int(id)];
        for (k, s) in chunk.iter().enumerate() {
            let p = 2 + 3 * k;
            if k > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("(?1, ?{}, ?{}, ?{})", p, p + 1, p + 2));
            values.extend([
                Param::Int(s.sent_unix_ns),
                Param::Int(i64_of(s.rtt_ns)),
                Param::Int(i64_of(s.inside_ns)),
            ]);
        }
        tx.execute(&sql, &values)?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests;
