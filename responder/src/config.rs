//! The responder's configuration file (`config/responder.example.toml`) and the evidence
//! backends it switches on: TOML in, an opened [`Backends`] (and from it an
//! [`EvidenceSource`]) out.
//!
//! A backend that is configured but cannot start (no configfs-tsm, no TPM, swtpm down, an
//! unreadable event log or anchors file) is a [`ConfigError::Backend`] naming the key and the
//! path: never a silent fall-back to a responder without that evidence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use locus_anchors::AnchorsConfig;
use serde::Deserialize;
use thiserror::Error;

use crate::access::EvidenceAccess;
use crate::admission::Limits;
use crate::evidence::{EventLogPaths, EvidenceSource};
use crate::tdx::configfs::{self, ConfigfsQuoter, StdFs, TsmFs};
use crate::tdx::lab::{LabTdx, PacedQuoter};
use crate::tdx::TdxQuoter;
use crate::tpm::{AkSource, Tcti, Vtpm, VtpmConfig};

/// Why a responder configuration cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read the responder config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("responder config {path}: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    /// A value that cannot be used, whatever the machine offers.
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// A configured backend failed to start: fix the path or the machine, or switch the
    /// backend off (`tdx.backend = "none"`, no `[tpm]` table).
    #[error("{key} = {path:?}: {reason}")]
    Backend {
        key: &'static str,
        path: String,
        reason: String,
    },
}

impl ConfigError {
    /// The config key this error is about, when it is about one.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { key, .. } | Self::Backend { key, .. } => Some(key),
            Self::Read { .. } | Self::Toml { .. } => None,
        }
    }
}

/// The TDX quote backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TdxBackendKind {
    /// Linux configfs-tsm (`/sys/kernel/config/tsm/report`): a real TD.
    Configfs,
    /// Lab quotes from a `locus lab pki` directory: any machine, trusted only under its root.
    Lab,
    /// No TDX evidence.
    #[default]
    None,
}

/// Which AK the vTPM quotes with (`tpm.ak`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AkChoice {
    /// The provider's AK when the vTPM offers one (Azure HCL, GCE template), else our own.
    #[default]
    Auto,
    /// The responder's own AK.
    Create,
    /// GCE's AK template and certificate from NV.
    Gce,
    /// Azure's HCL AK and HCL report.
    AzureHcl,
}

impl From<AkChoice> for AkSource {
    fn from(a: AkChoice) -> Self {
        match a {
            AkChoice::Auto => AkSource::Auto,
            AkChoice::Create => AkSource::Own,
            AkChoice::Gce => AkSource::Gce,
            AkChoice::AzureHcl => AkSource::AzureHcl,
        }
    }
}

/// `[tdx]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxSection {
    #[serde(default)]
    pub backend: TdxBackendKind,
    #[serde(default = "default_configfs_root")]
    pub configfs_root: PathBuf,
    /// The directory `locus lab pki --out DIR` wrote (for `backend = "lab"`).
    #[serde(default)]
    pub lab_dir: Option<PathBuf>,
    /// Most bundles sharing one TDX quote (1: a quote per bundle).
    #[serde(default = "default_coalesce")]
    pub coalesce_max_batch: usize,
    /// Lab only: each quote takes at least this long, one at a time, as the host's quoting
    /// service does on a cloud TD (≈ 39 ms on GCP). 0: as fast as the lab signs.
    #[serde(default)]
    pub quote_delay_ms: u64,
}

fn default_configfs_root() -> PathBuf {
    PathBuf::from(configfs::DEFAULT_ROOT)
}

/// 40 ms quotes (a cloud TD) and 128 per quote allow 3 200 bundles/s; 16 allowed 400, fewer
/// than 100 concurrent requesters ask for (`locus bench evidence --concurrency 100`).
fn default_coalesce() -> usize {
    128
}

impl Default for TdxSection {
    fn default() -> Self {
        Self {
            backend: TdxBackendKind::None,
            configfs_root: default_configfs_root(),
            lab_dir: None,
            coalesce_max_batch: default_coalesce(),
            quote_delay_ms: 0,
        }
    }
}

/// `[tpm]`: present means a vTPM is used.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmSection {
    /// tpm2-tools TCTI string: `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`.
    #[serde(default = "default_tcti")]
    pub tcti: String,
    #[serde(default)]
    pub ak: AkChoice,
    /// Intermediate EK CA certificates (PEM or DER files) shipped in every bundle.
    #[serde(default)]
    pub ek_ca_certs: Vec<PathBuf>,
    /// AK-signed TPM2_Quotes timed after the main quote (binding v3, `docs/binding.md`).
    #[serde(default = "default_chain_len")]
    pub chain_len: u32,
}

fn default_chain_len() -> u32 {
    crate::tpm::DEFAULT_CHAIN_LEN
}

fn default_tcti() -> String {
    "device:/dev/tpmrm0".into()
}

/// `[event_logs]`: unset keys take the Linux paths of [`EventLogPaths::linux`], used when
/// readable; a path set here must be readable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLogsSection {
    pub ccel_table: Option<PathBuf>,
    pub ccel_data: Option<PathBuf>,
    pub tcg: Option<PathBuf>,
}

/// `[anchors]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorsSection {
    /// An anchors file in the format of `config/anchors.example.toml`.
    pub file: PathBuf,
    /// The file naming the kernel's clocksource (default
    /// `/sys/devices/system/clocksource/clocksource0/current_clocksource`; a test file in tests).
    pub clocksource_path: Option<PathBuf>,
    /// Clocksources anchors may be timed with (default `["tsc"]`): on any other clock every
    /// anchor is recorded as failed (`Clocksource`) and nothing is timed.
    pub allow_clocksource: Option<Vec<String>>,
}

/// `[limits]`: admission limits (see [`Limits`] for each; unset keys take its defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub connections_per_ip_per_sec: f64,
    pub requests_per_ip_per_sec: f64,
    pub evidence_concurrency: usize,
    pub evidence_queue: usize,
    pub max_anchors: usize,
    /// 0: unlimited.
    pub echo_per_ip_per_sec: f64,
    pub handshakes_per_sec: f64,
    /// 0: no penalty.
    pub flood_penalty_ms: u64,
    pub flood_penalty_max_ms: u64,
    /// 0: unlimited.
    pub echo_per_sec: f64,
    pub udp_echo_sessions: usize,
    pub udp_echo_sessions_per_ip: usize,
    /// 0: unlimited.
    pub udp_echo_per_session_per_sec: f64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            connections_per_ip_per_sec: l.connections_per_ip_per_sec,
            requests_per_ip_per_sec: l.requests_per_ip_per_sec,
            evidence_concurrency: l.evidence_concurrency,
            evidence_queue: l.evidence_queue,
            max_anchors: l.max_anchors,
            echo_per_ip_per_sec: l.echo_per_ip_per_sec.unwrap_or(0.0),
            handshakes_per_sec: l.handshakes_per_sec,
            flood_penalty_ms: l.flood_penalty.as_millis() as u64,
            flood_penalty_max_ms: l.flood_penalty_max.as_millis() as u64,
            echo_per_sec: l.echo_per_sec.unwrap_or(0.0),
            udp_echo_sessions: l.udp_echo_sessions,
            udp_echo_sessions_per_ip: l.udp_echo_sessions_per_ip,
            udp_echo_per_session_per_sec: l.udp_echo_per_session_per_sec.unwrap_or(0.0),
        }
    }
}

/// `[access] evidence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceAccessKind {
    /// Any prober may ask for evidence (default).
    #[default]
    Any,
    /// Only probers whose key is in `probers`, signing each request.
    Pinned,
}

/// `[access]`: who may ask for evidence; echo is open to all.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    #[serde(default)]
    pub evidence: EvidenceAccessKind,
    /// Pinned probers' Ed25519 public keys, base64 (what `locus prober keygen` prints).
    #[serde(default)]
    pub probers: Vec<String>,
}

/// `[echo]`: echoes besides the QUIC datagrams every responder answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EchoSection {
    /// Where to answer UDP echoes keyed from a QUIC connection (`docs/binding.md`, "UDP echo
    /// sessions"), for fleets that cannot keep a QUIC connection per target; None (default): off.
    pub udp_listen: Option<SocketAddr>,
    /// How long a UDP echo session lives, seconds.
    pub udp_session_lifetime_s: u64,
}

impl Default for EchoSection {
    fn default() -> Self {
        Self {
            udp_listen: None,
            udp_session_lifetime_s: 3600,
        }
    }
}

impl EchoSection {
    /// The UDP echo's settings when it is on.
    pub fn udp_echo(&self) -> Result<Option<crate::udp_echo::UdpEchoConfig>, ConfigError> {
        let Some(listen) = self.udp_listen else {
            return Ok(None);
        };
        if !(1..=u64::from(u32::MAX)).contains(&self.udp_session_lifetime_s) {
            return Err(ConfigError::Invalid {
                key: "echo.udp_session_lifetime_s",
                reason: format!(
                    "must be 1 to {} seconds, not {}",
                    u32::MAX,
                    self.udp_session_lifetime_s
                ),
            });
        }
        Ok(Some(crate::udp_echo::UdpEchoConfig {
            listen,
            lifetime: Duration::from_secs(self.udp_session_lifetime_s),
        }))
    }
}

/// A responder configuration file. Relative paths are relative to the file's directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponderConfig {
    pub listen: Option<SocketAddr>,
    pub spki_out: Option<PathBuf>,
    #[serde(default)]
    pub tdx: TdxSection,
    pub tpm: Option<TpmSection>,
    #[serde(default)]
    pub event_logs: EventLogsSection,
    pub anchors: Option<AnchorsSection>,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub access: AccessSection,
    #[serde(default)]
    pub echo: EchoSection,
    /// Where relative paths start (the config file's directory); not a key.
    #[serde(skip)]
    base: PathBuf,
}

/// An opened TDX backend: the quoter, and the lab's signing set when it is the lab's.
pub type OpenedTdx = (Option<Arc<dyn TdxQuoter>>, Option<LabTdx>);

/// The configured backends, opened and checked once.
pub struct Backends {
    pub tdx: Option<Arc<dyn TdxQuoter>>,
    pub tdx_kind: TdxBackendKind,
    /// The lab's signing set when `tdx.backend = "lab"` (for its root and collateral).
    pub lab: Option<LabTdx>,
    pub coalesce_max_batch: usize,
    pub vtpm: Option<Arc<Vtpm>>,
    /// DER of `tpm.ek_ca_certs`.
    pub ek_ca_certs: Vec<Vec<u8>>,
    pub logs: EventLogPaths,
    pub anchors: Option<AnchorsConfig>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("tdx", &self.tdx_kind)
            .field("vtpm", &self.vtpm)
            .field("logs", &self.logs)
            .field("anchors", &self.anchors.as_ref().map(|a| a.anchors.len()))
            .finish_non_exhaustive()
    }
}

impl Backends {
    /// The evidence source serving these backends.
    pub fn into_source(self) -> EvidenceSource {
        let mut source = EvidenceSource::new(self.tdx, self.vtpm)
            .with_event_logs(self.logs)
            .with_ek_ca_certs(self.ek_ca_certs);
        if self.coalesce_max_batch > 1 {
            source = source.with_coalescing(self.coalesce_max_batch);
        }
        if let Some(a) = self.anchors {
            source = source.with_anchors(a);
        }
        source
    }
}

fn backend(key: &'static str, path: impl std::fmt::Display, reason: impl ToString) -> ConfigError {
    ConfigError::Backend {
        key,
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// DER certificates of a PEM (every CERTIFICATE block) or DER file.
fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Ok(vec![bytes]);
    }
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(certs)
}

impl ResponderConfig {
    /// Reads and parses `path`; nothing is opened yet ([`ResponderConfig::open`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|source| ConfigError::Toml {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(cfg)
    }

    /// Parses TOML; relative paths stay relative to the working directory.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// `p` relative to the config file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.base.join(p)
    }

    /// The configured TCTI, parsed.
    pub fn tcti(&self) -> Result<Option<Tcti>, ConfigError> {
        self.tpm
            .as_ref()
            .map(|t| {
                t.tcti.parse::<Tcti>().map_err(|e| ConfigError::Invalid {
                    key: "tpm.tcti",
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// The event-log paths: configured ones (relative to the file) must be readable; unset
    /// ones take the Linux defaults when those are readable.
    pub fn event_logs(&self) -> Result<EventLogPaths, ConfigError> {
        let linux = EventLogPaths::linux();
        let pick = |key: &'static str,
                    set: &Option<PathBuf>,
                    default: Option<PathBuf>|
         -> Result<Option<PathBuf>, ConfigError> {
            match set {
                Some(p) => {
                    let p = self.resolve(p);
                    std::fs::File::open(&p).map_err(|e| backend(key, p.display(), e))?;
                    Ok(Some(p))
                }
                None => Ok(default.filter(|d| match std::fs::File::open(d) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::info!(key, path = %d.display(), error = %e,
                            "default event log not readable; bundles go without it");
                        false
                    }
                })),
            }
        };
        Ok(EventLogPaths {
            tcg: pick("event_logs.tcg", &self.event_logs.tcg, linux.tcg)?,
            ccel_table: pick(
                "event_logs.ccel_table",
                &self.event_logs.ccel_table,
                linux.ccel_table,
            )?,
            ccel_data: pick(
                "event_logs.ccel_data",
                &self.event_logs.ccel_data,
                linux.ccel_data,
            )?,
        })
    }

    /// Opens the TDX backend and takes one quote, so a broken one fails now. `tsm` is the
    /// filesystem configfs-tsm is reached through ([`StdFs`]; tests: a kernel emulation).
    pub fn open_tdx(&self, tsm: Arc<dyn TsmFs>) -> Result<OpenedTdx, ConfigError> {
        match self.tdx.backend {
            TdxBackendKind::None => Ok((None, None)),
            TdxBackendKind::Configfs => {
                let root = self.resolve(&self.tdx.configfs_root);
                let quoter = ConfigfsQuoter::with_fs(&root, tsm);
                quoter
                    .quote([0; 64])
                    .map_err(|e| backend("tdx.configfs_root", root.display(), e))?;
                Ok((Some(Arc::new(quoter)), None))
            }
            TdxBackendKind::Lab => {
                let dir = self.tdx.lab_dir.as_ref().ok_or(ConfigError::Invalid {
                    key: "tdx.lab_dir",
                    reason: "tdx.backend = \"lab\" needs the directory `locus lab pki` wrote"
                        .into(),
                })?;
                let dir = self.resolve(dir);
                let lab =
                    LabTdx::load(&dir).map_err(|e| backend("tdx.lab_dir", dir.display(), e))?;
                let quoter: Arc<dyn TdxQuoter> = match self.tdx.quote_delay_ms {
                    0 => lab.quoter(),
                    ms => Arc::new(PacedQuoter::new(lab.quoter(), Duration::from_millis(ms))),
                };
                Ok((Some(quoter), Some(lab)))
            }
        }
    }

    /// Connects to the vTPM and creates (or loads) the AK.
    pub fn open_vtpm(&self) -> Result<Option<Arc<Vtpm>>, ConfigError> {
        let (Some(tpm), Some(tcti)) = (&self.tpm, self.tcti()?) else {
            return Ok(None);
        };
        let mut vc = VtpmConfig::new(tcti);
        vc.ak = tpm.ak.into();
        vc.chain_len = tpm.chain_len.max(1);
        let key = if tpm.ak == AkChoice::Auto || tpm.ak == AkChoice::Create {
            "tpm.tcti"
        } else {
            "tpm.ak"
        };
        let vtpm = Vtpm::open(vc).map_err(|e| {
            let what = if key == "tpm.ak" {
                format!("{:?} on {}", tpm.ak, tpm.tcti)
            } else {
                tpm.tcti.clone()
            };
            backend(key, what, e)
        })?;
        Ok(Some(Arc::new(vtpm)))
    }

    /// Reads `tpm.ek_ca_certs`.
    pub fn ek_ca_certs(&self) -> Result<Vec<Vec<u8>>, ConfigError> {
        let mut out = Vec::new();
        for p in self.tpm.iter().flat_map(|t| &t.ek_ca_certs) {
            let p = self.resolve(p);
            out.extend(read_certs(&p).map_err(|e| backend("tpm.ek_ca_certs", p.display(), e))?);
        }
        Ok(out)
    }

    /// Loads `anchors.file`.
    pub fn anchors(&self) -> Result<Option<AnchorsConfig>, ConfigError> {
        self.anchors
            .as_ref()
            .map(|a| {
                let p = self.resolve(&a.file);
                let mut cfg =
                    AnchorsConfig::load(&p).map_err(|e| backend("anchors.file", p.display(), e))?;
                let clock = &mut cfg.options.clock;
                if let Some(path) = &a.clocksource_path {
                    clock.clocksource_path = self.resolve(path);
                }
                if let Some(allow) = &a.allow_clocksource {
                    clock.allow = allow.clone();
                }
                Ok(cfg)
            })
            .transpose()
    }

    /// `[limits]`, checked.
    pub fn limits(&self) -> Result<Limits, ConfigError> {
        let l = &self.limits;
        let positive = |key: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(ConfigError::Invalid {
                    key,
                    reason: format!("must be a positive number, not {v}"),
                })
            }
        };
        let at_least_one = |key: &'static str, v: usize| {
            if v >= 1 {
                Ok(v)
            } else {
                Err(ConfigError::Invalid {
                    key,
                    reason: "must be at least 1".into(),
                })
            }
        };
        Ok(Limits {
            max_connections: at_least_one("limits.max_connections", l.max_connections)?,
            max_connections_per_ip: at_least_one(
                "limits.max_connections_per_ip",
                l.max_connections_per_ip,
            )?,
            connections_per_ip_per_sec: positive(
                "limits.connections_per_ip_per_sec",
                l.connections_per_ip_per_sec,
            )?,
            requests_per_ip_per_sec: positive(
                "limits.requests_per_ip_per_sec",
                l.requests_per_ip_per_sec,
            )?,
            evidence_concurrency: at_least_one(
                "limits.evidence_concurrency",
                l.evidence_concurrency,
            )?,
            evidence_queue: at_least_one("limits.evidence_queue", l.evidence_queue)?,
            max_anchors: l.max_anchors,
            echo_per_ip_per_sec: match l.echo_per_ip_per_sec {
                0.0 => None,
                v => Some(positive("limits.echo_per_ip_per_sec", v)?),
            },
            handshakes_per_sec: positive("limits.handshakes_per_sec", l.handshakes_per_sec)?,
            flood_penalty: Duration::from_millis(l.flood_penalty_ms),
            flood_penalty_max: if l.flood_penalty_max_ms >= l.flood_penalty_ms {
                Duration::from_millis(l.flood_penalty_max_ms)
            } else {
                return Err(ConfigError::Invalid {
                    key: "limits.flood_penalty_max_ms",
                    reason: format!(
                        "must be at least limits.flood_penalty_ms ({}), not {}",
                        l.flood_penalty_ms, l.flood_penalty_max_ms
                    ),
                });
            },
            echo_per_sec: match l.echo_per_sec {
                0.0 => None,
                v => Some(positive("limits.echo_per_sec", v)?),
            },
            udp_echo_sessions: at_least_one("limits.udp_echo_sessions", l.udp_echo_sessions)?,
            udp_echo_sessions_per_ip: at_least_one(
                "limits.udp_echo_sessions_per_ip",
                l.udp_echo_sessions_per_ip,
            )?,
            udp_echo_per_session_per_sec: match l.udp_echo_per_session_per_sec {
                0.0 => None,
                v => Some(positive("limits.udp_echo_per_session_per_sec", v)?),
            },
        })
    }

    /// `[access]`, with the pinned keys decoded.
    pub fn access(&self) -> Result<EvidenceAccess, ConfigError> {
        use base64::Engine as _;
        let a = &self.access;
        let keys = a
            .probers
            .iter()
            .map(|k| {
                base64::engine::general_purpose::STANDARD
                    .decode(k.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                    .ok_or_else(|| ConfigError::Invalid {
                        key: "access.probers",
                        reason: format!(
                            "{k:?} is not a base64 Ed25519 public key (32 bytes; `locus prober \
                             keygen` prints one)"
                        ),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        match a.evidence {
            // Keys listed under `any` would pin nothing: refused rather than silently open
            // (REVIEW3 H).
            EvidenceAccessKind::Any if !keys.is_empty() => Err(ConfigError::Invalid {
                key: "access.probers",
                reason: format!(
                    "{} prober key(s) are listed but evidence = \"any\" answers every prober: \
                     set evidence = \"pinned\" to answer only them, or remove the keys",
                    keys.len()
                ),
            }),
            EvidenceAccessKind::Any => Ok(EvidenceAccess::Any),
            EvidenceAccessKind::Pinned if keys.is_empty() => Err(ConfigError::Invalid {
                key: "access.probers",
                reason: "evidence = \"pinned\" needs at least one prober key".into(),
            }),
            EvidenceAccessKind::Pinned => Ok(EvidenceAccess::Pinned(keys)),
        }
    }

    /// Opens every configured backend (blocking: TPM and TDX calls), failing on the first
    /// that cannot start.
    pub fn open(&self) -> Result<Backends, ConfigError> {
        self.open_with(Arc::new(StdFs))
    }

    /// [`ResponderConfig::open`] with configfs-tsm reached through `tsm`.
    pub fn open_with(&self, tsm: Arc<dyn TsmFs>) -> Result<Backends, ConfigError> {
        if self.tdx.quote_delay_ms > 0 && self.tdx.backend != TdxBackendKind::Lab {
            return Err(ConfigError::Invalid {
                key: "tdx.quote_delay_ms",
                reason: "only the lab backend can be slowed down (tdx.backend = \"lab\")".into(),
            });
        }
        if self.tdx.coalesce_max_batch == 0 {
            return Err(ConfigError::Invalid {
                key: "tdx.coalesce_max_batch",
                reason: "must be at least 1 (1: a quote per bundle)".into(),
            });
        }
        let ek_ca_certs = self.ek_ca_certs()?;
        let logs = self.event_logs()?;
        let anchors = self.anchors()?;
        let (tdx, lab) = self.open_tdx(tsm)?;
        let vtpm = self.open_vtpm()?;
        Ok(Backends {
            tdx,
            tdx_kind: self.tdx.backend,
            lab,
            coalesce_max_batch: self.tdx.coalesce_max_batch,
            vtpm,
            ek_ca_certs,
            logs,
            anchors,
        })
    }
}

#[cfg(test)]
mod tests;
