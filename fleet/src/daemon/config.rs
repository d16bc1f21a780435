//! Daemon configuration (`locus prober --config FILE`): TOML with unknown keys rejected,
//! validated once into typed values (durations, addresses, SPKI bytes).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::address::TargetAddress;
use crate::store::Database;

/// A named place with coordinates; the monitor needs the prober's and the claimed sites.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

/// One responder to probe continuously.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// Unique name of the node (the `target` label, the monitor's node name).
    pub name: String,
    /// `host:port`; a host name is resolved at every connect.
    pub address: TargetAddress,
    /// The site the operator claims the node runs at.
    pub claim: String,
    /// Pinned session key (SPKI DER); None: learned on each connection and reported.
    pub spki: Option<Vec<u8>>,
    /// The probe module (`[modules.NAME]`) whose settings override `[probe]` for this target.
    pub module: Option<String>,
    /// `echo = "quic" | "udp"`: overrides the module's or `[probe]`'s `echo`.
    pub echo: Option<EchoTransport>,
}

/// How a target's echoes travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EchoTransport {
    /// QUIC datagrams on a connection kept open per target (the default).
    #[default]
    Quic,
    /// Plain UDP from one socket for all targets, MAC'd with keys exported from a QUIC
    /// connection that is closed once the session is granted (the responder's `[echo]
    /// udp_listen`; `docs/binding.md`, "UDP echo sessions"): a fleet of tens of thousands of
    /// targets without a QUIC connection each.
    Udp,
}

/// A landmark: a responder at a known site the operator trusts (best: a reference node in the
/// claimed data center), probed like a target; its round-trip minima calibrate the verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandmarkConfig {
    /// Unique among landmarks (the `landmark` label).
    pub name: String,
    /// Where it runs: one of `sites`.
    pub site: String,
    pub address: TargetAddress,
    /// Pinned session key (SPKI DER); None: learned on each connection.
    pub spki: Option<Vec<u8>>,
}

/// How each target is probed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    /// Echo challenges per second per target.
    pub rate_hz: f64,
    /// Length of one round (one stored aggregate).
    pub round: Duration,
    /// Most challenges in flight per target.
    pub window: usize,
    /// An unanswered challenge is lost after this long.
    pub timeout: Duration,
    /// How often evidence is requested (±10 % jitter); None: never.
    pub evidence_interval: Option<Duration>,
    pub evidence_tdx: bool,
    pub evidence_tpm: bool,
    /// Anchors the responder times before quoting.
    pub anchors: Vec<String>,
    /// How echoes travel (`echo = "quic" | "udp"`).
    pub echo: EchoTransport,
}

impl ProbeSettings {
    /// Challenges per round (at least one).
    pub fn count(&self) -> u64 {
        ((self.rate_hz * self.round.as_secs_f64()).ceil() as u64).max(1)
    }
}

/// What is kept and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples older than this are deleted; None keeps them.
    pub samples: Option<Duration>,
}

/// A validated daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub prober_id: String,
    /// The prober's identity key (PKCS#8 PEM, `locus prober keygen`), relative paths relative
    /// to the config file; None: rows are stored unsigned (a monitor that knows this prober's
    /// key rejects them).
    pub key_file: Option<PathBuf>,
    /// The site this prober runs at (one of `sites`).
    pub prober_site: String,
    /// HTTP address of `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`.
    pub listen: SocketAddr,
    /// SQLite file (relative paths are relative to the config file's directory) or
    /// PostgreSQL URL (`postgres://...`), with the password of `db_password_file` if given.
    pub db: Database,
    /// How long a write waits for another writer's lock before it fails (and is retried
    /// with the next round); for PostgreSQL also the connection timeout.
    pub db_busy_timeout: Duration,
    /// Rounds each target keeps while the database refuses writes (locked, or a PostgreSQL
    /// server down); beyond it the oldest are dropped, logged and counted.
    pub db_max_pending_rounds: usize,
    /// Local address probes are sent from.
    pub bind: SocketAddr,
    pub probe: ProbeSettings,
    /// Named probe modules (`[modules.NAME]`): `[probe]` with some keys overridden, chosen per
    /// target with `module = "NAME"` (like blackbox_exporter's modules).
    pub modules: BTreeMap<String, ProbeSettings>,
    /// Upper bounds of `locus_rtt_seconds`, seconds, ascending (`[probe] rtt_buckets`).
    pub rtt_buckets: Vec<f64>,
    pub retention: Retention,
    pub sites: Vec<SiteConfig>,
    pub targets: Vec<TargetConfig>,
    pub landmarks: Vec<LandmarkConfig>,
    /// `[echo] listen`: where this daemon answers echo challenges (QUIC datagrams, as a
    /// responder without evidence), so that peer probers list it as a `[[landmark]]` at this
    /// prober's site; None (the default): it answers nothing.
    pub echo: Option<SocketAddr>,
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{field} = {found}: expected {expected}")]
    OutOfRange {
        field: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("target {0:?} is defined twice: target names must be unique")]
    DuplicateTarget(String),
    #[error("landmark {0:?} is defined twice: landmark names must be unique")]
    DuplicateLandmark(String),
    #[error("landmark {landmark:?}: spki is not hex: {source}")]
    BadLandmarkSpki {
        landmark: String,
        source: hex::FromHexError,
    },
    #[error("site {0:?} is defined twice")]
    DuplicateSite(String),
    #[error("{what} names site {site:?}, which is not in [[sites]]")]
    UnknownSite { what: String, site: String },
    #[error("target {target:?}: spki is not hex: {source}")]
    BadSpki {
        target: String,
        source: hex::FromHexError,
    },
    #[error("db_password_file: {0}")]
    DbPassword(#[from] crate::store::PasswordFileError),
    #[error("target {target:?} names module {module:?}, which is not in [modules]")]
    UnknownModule { target: String, module: String },
    #[error("[modules.{module}] {source}")]
    Module {
        module: String,
        source: Box<ConfigError>,
    },
    /// A value error with the place of the table it is in (the file's path is added by
    /// [`Config::load`]).
    #[error("{}line {line}, column {column}: {source}", in_file(.path))]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        source: Box<ConfigError>,
    },
}

fn in_file(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", path.display())
    }
}

/// Gives `e` the line and column (1-based) of the byte `offset` of `text`.
fn at(text: &str, offset: usize, e: ConfigError) -> ConfigError {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    ConfigError::At {
        path: PathBuf::new(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        source: Box::new(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    prober: Spanned<RawProber>,
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    db: String,
    /// A file holding the PostgreSQL password (relative to the config file's directory).
    #[serde(default)]
    db_password_file: Option<PathBuf>,
    #[serde(default = "default_busy_ms")]
    db_busy_timeout_ms: u64,
    #[serde(default = "default_max_pending")]
    db_max_pending_rounds: usize,
    #[serde(default = "default_bind")]
    bind: SocketAddr,
    #[serde(default)]
    probe: Option<Spanned<RawProbe>>,
    #[serde(default)]
    modules: BTreeMap<String, Spanned<RawModule>>,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    sites: Vec<Spanned<SiteConfig>>,
    #[serde(default)]
    targets: Vec<Spanned<RawTarget>>,
    /// `[[landmark]]` (the issue's spelling; `[[landmarks]]` like `[[targets]]` is accepted).
    #[serde(default, rename = "landmark", alias = "landmarks")]
    landmarks: Vec<Spanned<RawLandmark>>,
    #[serde(default)]
    echo: Option<RawEcho>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEcho {
    listen: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLandmark {
    name: String,
    site: String,
    address: TargetAddress,
    #[serde(default)]
    spki: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProber {
    id: String,
    site: String,
    #[serde(default)]
    key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProbe {
    rate_hz: f64,
    round_s: f64,
    window: usize,
    timeout_ms: u64,
    evidence_interval_s: f64,
    evidence_tdx: bool,
    evidence_tpm: bool,
    anchors: Vec<String>,
    rtt_buckets: Option<Vec<f64>>,
    echo: EchoTransport,
}

/// A probe module: any `[probe]` key but `round_s` and `rtt_buckets` (one round length and one
/// histogram layout per daemon: the writer batches by round, the histogram is per process).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    rate_hz: Option<f64>,
    window: Option<usize>,
    timeout_ms: Option<u64>,
    evidence_interval_s: Option<f64>,
    evidence_tdx: Option<bool>,
    evidence_tpm: Option<bool>,
    anchors: Option<Vec<String>>,
    echo: Option<EchoTransport>,
}

impl RawModule {
    /// `[probe]` with this module's keys in place of its own.
    fn over(&self, p: &RawProbe) -> RawProbe {
        RawProbe {
            rate_hz: self.rate_hz.unwrap_or(p.rate_hz),
            round_s: p.round_s,
            window: self.window.unwrap_or(p.window),
            timeout_ms: self.timeout_ms.unwrap_or(p.timeout_ms),
            evidence_interval_s: self.evidence_interval_s.unwrap_or(p.evidence_interval_s),
            evidence_tdx: self.evidence_tdx.unwrap_or(p.evidence_tdx),
            evidence_tpm: self.evidence_tpm.unwrap_or(p.evidence_tpm),
            anchors: self.anchors.clone().unwrap_or_else(|| p.anchors.clone()),
            rtt_buckets: None,
            echo: self.echo.unwrap_or(p.echo),
        }
    }
}

impl RawProbe {
    /// Validated settings (`rtt_buckets` are checked apart: they are not per target).
    fn settings(&self) -> Result<ProbeSettings, ConfigError> {
        let positive = |field, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    field,
                    found: v.to_string(),
                    expected: "a finite number > 0",
                })
            }
        };
        positive("probe.rate_hz", self.rate_hz)?;
        positive("probe.round_s", self.round_s)?;
        if !(self.evidence_interval_s.is_finite() && self.evidence_interval_s >= 0.0) {
            return Err(ConfigError::OutOfRange {
                field: "probe.evidence_interval_s",
                found: self.evidence_interval_s.to_string(),
                expected: "a finite number ≥ 0 (0: never)",
            });
        }
        if self.window == 0 {
            return Err(ConfigError::OutOfRange {
                field: "probe.window",
                found: "0".into(),
                expected: "at least 1",
            });
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::OutOfRange {
                field: "probe.timeout_ms",
                found: "0".into(),
                expected: "at least 1",
            });
        }
        Ok(ProbeSettings {
            rate_hz: self.rate_hz,
            round: Duration::from_secs_f64(self.round_s),
            window: self.window,
            timeout: Duration::from_millis(self.timeout_ms),
            evidence_interval: (self.evidence_interval_s > 0.0)
                .then(|| Duration::from_secs_f64(self.evidence_interval_s)),
            evidence_tdx: self.evidence_tdx,
            evidence_tpm: self.evidence_tpm,
            anchors: self.anchors.clone(),
            echo: self.echo,
        })
    }
}

impl Default for RawProbe {
    fn default() -> Self {
        Self {
            rate_hz: 1.0,
            round_s: 60.0,
            window: 32,
            timeout_ms: 1000,
            evidence_interval_s: 300.0,
            evidence_tdx: true,
            evidence_tpm: true,
            anchors: Vec::new(),
            rtt_buckets: None,
            echo: EchoTransport::Quic,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetention {
    samples_days: f64,
}

impl Default for RawRetention {
    fn default() -> Self {
        Self { samples_days: 7.0 }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    address: TargetAddress,
    claim: String,
    #[serde(default)]
    spki: Option<String>,
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    echo: Option<EchoTransport>,
}

/// The prober's default `/metrics` port. The Prometheus wiki's exporter range 9100-9999 is
/// fully allocated (9464 is OpenTelemetry's Prometheus exporter): 19464 is outside it and below
/// Linux's ephemeral ports (32768-60999). The monitor's is [`DEFAULT_MONITOR_PORT`].
pub const DEFAULT_PROBER_PORT: u16 = 19464;

/// The monitor's default `/metrics` port (`locus monitor --listen`).
pub const DEFAULT_MONITOR_PORT: u16 = 19465;

/// Most buckets `rtt_buckets` may name: each is a series per target.
const MAX_RTT_BUCKETS: usize = 200;

/// A pinned session key: hex SPKI DER, or none (learned on each connection).
fn pin(spki: &Option<String>) -> Result<Option<Vec<u8>>, hex::FromHexError> {
    spki.as_deref().map(|h| hex::decode(h.trim())).transpose()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], DEFAULT_PROBER_PORT))
}

fn default_max_pending() -> usize {
    1_000
}

fn default_busy_ms() -> u64 {
    5_000
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

impl Config {
    /// How `target`'s echoes travel: its own `echo`, else its settings'.
    pub fn echo_for(&self, target: &TargetConfig) -> EchoTransport {
        target.echo.unwrap_or(self.settings_for(target).echo)
    }

    /// How `target` is probed: its module's settings, else `[probe]`.
    pub fn settings_for(&self, target: &TargetConfig) -> &ProbeSettings {
        target
            .module
            .as_ref()
            .and_then(|m| self.modules.get(m))
            .unwrap_or(&self.probe)
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_str(&text, base).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            ConfigError::At {
                line,
                column,
                source,
                ..
            } => ConfigError::At {
                path: path.to_owned(),
                line,
                column,
                source,
            },
            other => other,
        })
    }

    /// Parses and validates TOML; a relative `db` path is taken relative to `base`.
    pub fn from_toml_str(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::new(),
            source,
        })?;
        let default_probe = RawProbe::default();
        let (p, probe_at) = match &raw.probe {
            Some(p) => (p.get_ref(), p.span().start),
            None => (&default_probe, 0),
        };
        let probe = p.settings().map_err(|e| at(text, probe_at, e))?;
        let mut modules = BTreeMap::new();
        for (name, m) in &raw.modules {
            let settings = m.get_ref().over(p).settings().map_err(|e| {
                let e = ConfigError::Module {
                    module: name.clone(),
                    source: Box::new(e),
                };
                at(text, m.span().start, e)
            })?;
            modules.insert(name.clone(), settings);
        }
        let rtt_buckets = match &p.rtt_buckets {
            None => crate::metrics::default_rtt_buckets(),
            Some(b) => {
                let ascending = b.windows(2).all(|w| w[0] < w[1]);
                let valid = b.iter().all(|v| v.is_finite() && *v > 0.0);
                if b.is_empty() || b.len() > MAX_RTT_BUCKETS || !ascending || !valid {
                    let e = ConfigError::OutOfRange {
                        field: "probe.rtt_buckets",
                        found: format!("{b:?}"),
                        expected: "1 to 200 upper bounds in seconds, > 0, strictly ascending",
                    };
                    return Err(at(text, probe_at, e));
                }
                b.clone()
            }
        };
        if raw.db_max_pending_rounds == 0 {
            return Err(ConfigError::OutOfRange {
                field: "db_max_pending_rounds",
                found: "0".into(),
                expected: "at least 1",
            });
        }
        let days = raw.retention.samples_days;
        if !(days.is_finite() && days >= 0.0) {
            return Err(ConfigError::OutOfRange {
                field: "retention.samples_days",
                found: days.to_string(),
                expected: "a finite number ≥ 0 (0: keep forever)",
            });
        }
        let mut site_names = BTreeSet::new();
        for spanned in &raw.sites {
            let s = spanned.get_ref();
            let here = |e| at(text, spanned.span().start, e);
            if !site_names.insert(s.name.as_str()) {
                return Err(here(ConfigError::DuplicateSite(s.name.clone())));
            }
            if !(s.lat.abs() <= 90.0 && s.lon.abs() <= 180.0) {
                return Err(here(ConfigError::OutOfRange {
                    field: "sites.lat/lon",
                    found: format!("{} ({}, {})", s.name, s.lat, s.lon),
                    expected: "latitude in [-90, 90], longitude in [-180, 180]",
                }));
            }
        }
        let known = |what: String, site: &str| {
            if site_names.contains(site) {
                Ok(())
            } else {
                Err(ConfigError::UnknownSite {
                    what,
                    site: site.to_owned(),
                })
            }
        };
        let prober_at = raw.prober.span().start;
        let prober = raw.prober.into_inner();
        known(format!("prober {}", prober.id), &prober.site).map_err(|e| at(text, prober_at, e))?;
        let mut names = BTreeSet::new();
        let mut targets = Vec::with_capacity(raw.targets.len());
        for spanned in raw.targets {
            let offset = spanned.span().start;
            let here = |e| at(text, offset, e);
            let t = spanned.into_inner();
            if !names.insert(t.name.clone()) {
                return Err(here(ConfigError::DuplicateTarget(t.name)));
            }
            known(format!("target {}", t.name), &t.claim).map_err(here)?;
            if let Some(m) = t.module.as_ref().filter(|m| !modules.contains_key(*m)) {
                return Err(here(ConfigError::UnknownModule {
                    target: t.name,
                    module: m.clone(),
                }));
            }
            let spki = pin(&t.spki).map_err(|source| {
                here(ConfigError::BadSpki {
                    target: t.name.clone(),
                    source,
                })
            })?;
            targets.push(TargetConfig {
                name: t.name,
                address: t.address,
                claim: t.claim,
                spki,
                module: t.module,
                echo: t.echo,
            });
        }
        let mut landmark_names = BTreeSet::new();
        let mut landmarks = Vec::with_capacity(raw.landmarks.len());
        for spanned in raw.landmarks {
            let offset = spanned.span().start;
            let here = |e| at(text, offset, e);
            let l = spanned.into_inner();
            if !landmark_names.insert(l.name.clone()) {
                return Err(here(ConfigError::DuplicateLandmark(l.name)));
            }
            known(format!("landmark {}", l.name), &l.site).map_err(here)?;
            let spki = pin(&l.spki).map_err(|source| {
                here(ConfigError::BadLandmarkSpki {
                    landmark: l.name.clone(),
                    source,
                })
            })?;
            landmarks.push(LandmarkConfig {
                name: l.name,
                site: l.site,
                address: l.address,
                spki,
            });
        }
        let mut db = Database::parse(&raw.db, base);
        if let Some(f) = &raw.db_password_file {
            db = db.with_password_file(&base.join(f))?;
        }
        Ok(Config {
            key_file: prober.key_file.map(|k| base.join(k)),
            prober_id: prober.id,
            prober_site: prober.site,
            listen: raw.listen,
            db,
            db_busy_timeout: Duration::from_millis(raw.db_busy_timeout_ms),
            db_max_pending_rounds: raw.db_max_pending_rounds,
            bind: raw.bind,
            probe,
            modules,
            rtt_buckets,
            retention: Retention {
                samples: (days > 0.0).then(|| Duration::from_secs_f64(days * 86_400.0)),
            },
            sites: raw.sites.into_iter().map(Spanned::into_inner).collect(),
            targets,
            landmarks,
            echo: raw.echo.map(|e| e.listen),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
db = "x.db"
[prober]
id = "p1"
site = "ams"
[[sites]]
name = "ams"
lat = 52.37
lon = 4.9
[[targets]]
name = "n1"
address = "127.0.0.1:4433"
claim = "ams"
"#;

    #[test]
    fn db_password_file_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pg.pw"), "s3cret\n").unwrap();
        let text = MINIMAL.replace(
            "db = \"x.db\"",
            "db = \"postgres://locus@db.internal/fleet\"\ndb_password_file = \"pg.pw\"",
        );
        let c = Config::from_toml_str(&text, dir.path()).unwrap();
        assert_eq!(
            c.db,
            Database::Postgres("postgres://locus@db.internal/fleet?password=s3cret".into())
        );
        // With an SQLite file the password file is a mistake, said with its key.
        let sqlite = MINIMAL.replace(
            "db = \"x.db\"",
            "db = \"x.db\"\ndb_password_file = \"pg.pw\"",
        );
        let e = Config::from_toml_str(&sqlite, dir.path()).unwrap_err();
        assert!(matches!(e, ConfigError::DbPassword(_)), "{e}");
        assert!(e.to_string().starts_with("db_password_file: "), "{e}");
    }

    /// The error `text` is refused with, without its place.
    fn err(text: &str) -> ConfigError {
        match Config::from_toml_str(text, Path::new(".")) {
            Err(ConfigError::At { source, .. }) => *source,
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        }
    }

    /// The error inside its place.
    fn inner(e: &ConfigError) -> &ConfigError {
        match e {
            ConfigError::At { source, .. } => source,
            other => other,
        }
    }

    /// 1-based line of the first line equal to `l` after line `after`.
    fn line_of(text: &str, l: &str, after: usize) -> usize {
        after + text.lines().skip(after).position(|x| x == l).unwrap() + 1
    }

    #[test]
    fn value_errors_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prober.toml");
        // The target's claim is not a site: the error points into that [[targets]] table.
        let text = MINIMAL.replace("claim = \"ams\"", "claim = \"fra\"");
        std::fs::write(&path, &text).unwrap();
        let e = Config::load(&path).unwrap_err();
        let table = line_of(&text, "[[targets]]", 0);
        let ConfigError::At { line, source, .. } = &e else {
            panic!("no place: {e}")
        };
        assert!(matches!(**source, ConfigError::UnknownSite { .. }), "{e}");
        assert!((table..=table + 1).contains(line), "{e}");
        let prefix = format!("{}: line {line}, column ", path.display());
        assert!(e.to_string().starts_with(&prefix), "{e}");
        assert!(
            e.to_string()
                .ends_with("target n1 names site \"fra\", which is not in [[sites]]"),
            "{e}"
        );
        // A bad [probe] value points into [probe]; a duplicate site at the second one.
        let probe = MINIMAL.to_owned() + "[probe]\nwindow = 0\n";
        let e = Config::from_toml_str(&probe, Path::new("/")).unwrap_err();
        let table = line_of(&probe, "[probe]", 0);
        assert!(
            matches!(e, ConfigError::At { line, .. } if (table..=table + 1).contains(&line)),
            "{e}"
        );
        let twice = MINIMAL.to_owned() + "[[sites]]\nname = \"ams\"\nlat = 1.0\nlon = 1.0\n";
        let e = Config::from_toml_str(&twice, Path::new("/")).unwrap_err();
        let second = line_of(&twice, "[[sites]]", line_of(&twice, "[[sites]]", 0));
        assert!(matches!(inner(&e), ConfigError::DuplicateSite(_)), "{e}");
        assert!(
            matches!(e, ConfigError::At { line, .. } if (second..=second + 1).contains(&line)),
            "{e}"
        );
    }

    #[test]
    fn a_probe_module_overrides_probe_for_its_targets_only() {
        let text = format!(
            "{MINIMAL}module = \"fast\"\n[[targets]]\nname = \"n2\"\naddress = \"127.0.0.1:4434\"\nclaim = \"ams\"\n\
             [probe]\nwindow = 8\n[modules.fast]\nrate_hz = 10.0\nanchors = [\"a1\"]\n"
        );
        let c = Config::from_toml_str(&text, Path::new("/")).unwrap();
        let (fast, plain) = (c.settings_for(&c.targets[0]), c.settings_for(&c.targets[1]));
        assert_eq!((fast.rate_hz, plain.rate_hz), (10.0, 1.0));
        assert_eq!((fast.anchors.len(), plain.anchors.len()), (1, 0));
        // What the module leaves out comes from [probe].
        assert_eq!((fast.window, plain.window), (8, 8));
        assert_eq!(fast.round, plain.round);

        let unknown = MINIMAL.to_owned() + "module = \"slow\"\n";
        let e = Config::from_toml_str(&unknown, Path::new("/")).unwrap_err();
        assert!(
            matches!(inner(&e), ConfigError::UnknownModule { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("\"slow\""), "{e}");

        let bad = MINIMAL.to_owned() + "[modules.fast]\nwindow = 0\n";
        let e = Config::from_toml_str(&bad, Path::new("/")).unwrap_err();
        assert!(
            inner(&e)
                .to_string()
                .starts_with("[modules.fast] probe.window = 0"),
            "{e}"
        );

        // One round length per daemon: a module cannot set it.
        let round = MINIMAL.to_owned() + "[modules.fast]\nround_s = 5.0\n";
        let e = Config::from_toml_str(&round, Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("round_s"), "{e}");
    }

    #[test]
    fn echo_transport_per_probe_module_and_target() {
        let c = Config::from_toml_str(MINIMAL, Path::new("/")).unwrap();
        assert_eq!(c.echo_for(&c.targets[0]), EchoTransport::Quic);
        let text = format!(
            "{MINIMAL}module = \"m\"\n[[targets]]\nname = \"n2\"\naddress = \"127.0.0.1:4434\"\nclaim = \"ams\"\n\
             echo = \"quic\"\n[[targets]]\nname = \"n3\"\naddress = \"127.0.0.1:4435\"\nclaim = \"ams\"\n\
             [probe]\necho = \"udp\"\n[modules.m]\necho = \"quic\"\n"
        );
        let c = Config::from_toml_str(&text, Path::new("/")).unwrap();
        let echo: Vec<_> = c.targets.iter().map(|t| c.echo_for(t)).collect();
        assert_eq!(
            echo,
            [EchoTransport::Quic, EchoTransport::Quic, EchoTransport::Udp]
        );
        let bad = MINIMAL.to_owned() + "echo = \"tcp\"\n";
        assert!(Config::from_toml_str(&bad, Path::new("/")).is_err());
    }

    #[test]
    fn defaults_and_relative_db() {
        let c = Config::from_toml_str(MINIMAL, Path::new("/etc/locus")).unwrap();
        assert_eq!(c.probe.rate_hz, 1.0);
        assert_eq!(c.probe.round, Duration::from_secs(60));
        assert_eq!(c.probe.count(), 60);
        assert_eq!(c.probe.evidence_interval, Some(Duration::from_secs(300)));
        assert_eq!(c.db, Database::Sqlite(PathBuf::from("/etc/locus/x.db")));
        assert_eq!(c.targets[0].spki, None);
        assert_eq!(c.key_file, None);
        let keyed = MINIMAL.replace(
            "site = \"ams\"\n[[",
            "site = \"ams\"\nkey_file = \"p1.key\"\n[[",
        );
        let c = Config::from_toml_str(&keyed, Path::new("/etc/locus")).unwrap();
        assert_eq!(c.key_file, Some(PathBuf::from("/etc/locus/p1.key")));
        assert_eq!(c.listen.port(), DEFAULT_PROBER_PORT);
        // 1 ms buckets (100 km of fibre) over 1-50 ms.
        let ms: Vec<f64> = c
            .rtt_buckets
            .iter()
            .map(|b| (b * 1e6).round() / 1e3)
            .collect();
        assert!((1..=50).all(|m| ms.contains(&f64::from(m))), "{ms:?}");
        let url = "postgresql://locus:pw@db.internal:5432/fleet";
        let pg = MINIMAL.replace("\"x.db\"", &format!("\"{url}\""));
        let c = Config::from_toml_str(&pg, Path::new("/etc/locus")).unwrap();
        assert_eq!(c.db, Database::Postgres(url.into()));
    }

    #[test]
    fn landmarks_parse_pinned_or_learned_and_are_checked() {
        let with = format!(
            "{MINIMAL}[[landmark]]\nname = \"ref-ams\"\nsite = \"ams\"\naddress = \"127.0.0.1:4500\"\nspki = \"3059\"\n\
             [[landmark]]\nname = \"n1\"\nsite = \"ams\"\naddress = \"127.0.0.1:4501\"\n"
        );
        let c = Config::from_toml_str(&with, Path::new(".")).unwrap();
        assert_eq!(
            c.landmarks,
            [
                LandmarkConfig {
                    name: "ref-ams".into(),
                    site: "ams".into(),
                    address: "127.0.0.1:4500".parse().unwrap(),
                    spki: Some(vec![0x30, 0x59]),
                },
                // A landmark may share a target's name: they are kept apart.
                LandmarkConfig {
                    name: "n1".into(),
                    site: "ams".into(),
                    address: "127.0.0.1:4501".parse().unwrap(),
                    spki: None,
                },
            ]
        );
        let plural = with.replace("[[landmark]]", "[[landmarks]]");
        assert_eq!(
            Config::from_toml_str(&plural, Path::new("."))
                .unwrap()
                .landmarks,
            c.landmarks
        );
        assert!(Config::from_toml_str(MINIMAL, Path::new("."))
            .unwrap()
            .landmarks
            .is_empty());
        let twice = with.replace("name = \"n1\"\nsite", "name = \"ref-ams\"\nsite");
        assert!(matches!(
            err(&twice),
            ConfigError::DuplicateLandmark(n) if n == "ref-ams"
        ));
        let nowhere = with.replace(
            "site = \"ams\"\naddress = \"127.0.0.1:4500\"",
            "site = \"fra\"\naddress = \"127.0.0.1:4500\"",
        );
        assert!(matches!(
            err(&nowhere),
            ConfigError::UnknownSite { what, site } if what == "landmark ref-ams" && site == "fra"
        ));
        let bad_pin = with.replace("spki = \"3059\"", "spki = \"xyz\"");
        assert!(matches!(
            err(&bad_pin),
            ConfigError::BadLandmarkSpki { landmark, .. } if landmark == "ref-ams"
        ));
        let stray = with.replace("spki = \"3059\"", "claim = \"ams\"");
        assert!(Config::from_toml_str(&stray, Path::new(".")).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        let dup = format!(
            "{MINIMAL}[[targets]]\nname = \"n1\"\naddress = \"127.0.0.1:1\"\nclaim = \"ams\"\n"
        );
        assert!(matches!(
            err(&dup),
            ConfigError::DuplicateTarget(n) if n == "n1"
        ));
        let unknown = MINIMAL.replace("claim = \"ams\"", "claim = \"fra\"");
        assert!(matches!(
            err(&unknown),
            ConfigError::UnknownSite { site, .. } if site == "fra"
        ));
        let rate = format!("{MINIMAL}[probe]\nrate_hz = 0\n");
        assert!(matches!(
            err(&rate),
            ConfigError::OutOfRange {
                field: "probe.rate_hz",
                ..
            }
        ));
        for bad in ["[]", "[0.002, 0.001]", "[0.0, 0.001]", "[0.001, 0.001]"] {
            let b = format!("{MINIMAL}[probe]\nrtt_buckets = {bad}\n");
            assert!(
                matches!(
                    err(&b),
                    ConfigError::OutOfRange {
                        field: "probe.rtt_buckets",
                        ..
                    }
                ),
                "{bad}"
            );
        }
        let b = format!("{MINIMAL}[probe]\nrtt_buckets = [0.001, 0.0015, 0.002]\n");
        let c = Config::from_toml_str(&b, Path::new(".")).unwrap();
        assert_eq!(c.rtt_buckets, [0.001, 0.0015, 0.002]);
        let spki = MINIMAL.replace("claim = \"ams\"", "claim = \"ams\"\nspki = \"zz\"");
        assert!(matches!(err(&spki), ConfigError::BadSpki { .. }));
    }
}
