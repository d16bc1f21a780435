//! Anchor configuration: which TLS servers to time, how each is trusted, and the measurement
//! limits; loaded from TOML (`deny_unknown_fields`) and validated once into typed values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use thiserror::Error;

/// How the client decides that an anchor's certificate is the anchor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Mozilla's root store (`webpki-roots`), name checked against the SNI, validity at now.
    WebPki,
    /// The leaf's SubjectPublicKeyInfo must hash (SHA-256) to this value. The pin is the trust:
    /// names and validity dates are not checked.
    PinnedSpki([u8; 32]),
    /// A private CA (the lab CA, or a configured CA file): chain, name and validity checked.
    Ca(Vec<CertificateDer<'static>>),
}

/// Where an anchor is (as the verifier's configuration states it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

/// One anchor, validated.
#[derive(Debug, Clone)]
pub struct AnchorSpec {
    /// Name in reports; the verifier finds the anchor's location by it.
    pub name: String,
    /// `host:port` to connect to (in the lab: the delay relay in front of the anchor).
    pub target: String,
    /// Server name for SNI and the certificate check.
    pub sni: ServerName<'static>,
    /// Site name, if given.
    pub site: Option<String>,
    /// Coordinates, if given.
    pub location: Option<Location>,
    pub trust: Trust,
}

impl AnchorSpec {
    /// A lab anchor: `sni` must be the name the lab CA issued the server's certificate for.
    pub fn lab(
        name: &str,
        target: std::net::SocketAddr,
        sni: &str,
        ca: &crate::lab::LabCa,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            name: name.to_owned(),
            target: target.to_string(),
            sni: server_name(sni)?,
            site: None,
            location: None,
            trust: Trust::Ca(vec![ca.cert_der()]),
        })
    }
}

/// Limits of one measurement.
#[derive(Debug, Clone)]
pub struct MeasureOptions {
    /// K: application round trips per anchor.
    pub round_trips: u32,
    pub connect_timeout: Duration,
    /// For the whole handshake, ClientHello to the client's Finished.
    pub handshake_timeout: Duration,
    /// For each application round trip.
    pub round_trip_timeout: Duration,
    /// Most bytes the server may send during the handshake.
    pub max_handshake_bytes: u32,
    /// Most bytes of one HTTP response head.
    pub max_response_bytes: u32,
    /// Which clock the round trips may be timed with.
    pub clock: ClockOptions,
}

/// The clock check before any anchor is timed: inside a TD only the TSC is a clock the host
/// cannot speed up, so by default the responder times anchors on `tsc` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockOptions {
    /// The file naming the kernel's current clocksource ([`CLOCKSOURCE_PATH`]; a test file in
    /// tests).
    pub clocksource_path: PathBuf,
    /// Clocksources anchors may be timed with (`["tsc"]`; a lab on a host without a TSC
    /// clocksource lists its own explicitly).
    pub allow: Vec<String>,
}

/// Where Linux names its current clocksource.
pub const CLOCKSOURCE_PATH: &str =
    "/sys/devices/system/clocksource/clocksource0/current_clocksource";

impl Default for ClockOptions {
    fn default() -> Self {
        Self {
            clocksource_path: PathBuf::from(CLOCKSOURCE_PATH),
            allow: vec![locus_proto::anchor::TSC_CLOCKSOURCE.to_string()],
        }
    }
}

impl ClockOptions {
    /// The current clocksource as the kernel names it, or `unreadable (why)`.
    pub fn current(&self) -> String {
        match std::fs::read_to_string(&self.clocksource_path) {
            Ok(s) => s.trim().to_string(),
            Err(e) => format!("unreadable ({}: {e})", self.clocksource_path.display()),
        }
    }

    /// For labs and tests only: `tsc` and whatever clocksource this machine runs on, so a lab
    /// on a host whose clock is `kvm-clock` still times its anchors. Never for production.
    pub fn lab() -> Self {
        let mut clock = Self::default();
        let current = clock.current();
        if !clock.allows(&current) {
            clock.allow.push(current);
        }
        clock
    }

    /// Whether anchors may be timed with `clocksource`.
    pub fn allows(&self, clocksource: &str) -> bool {
        self.allow.iter().any(|a| a == clocksource)
    }
}

impl Default for MeasureOptions {
    fn default() -> Self {
        Self {
            round_trips: 8,
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(3),
            round_trip_timeout: Duration::from_secs(2),
            max_handshake_bytes: 64 * 1024,
            max_response_bytes: 16 * 1024,
            clock: ClockOptions::default(),
        }
    }
}

/// A loaded anchors file.
#[derive(Debug, Clone)]
pub struct AnchorsConfig {
    pub options: MeasureOptions,
    pub anchors: Vec<AnchorSpec>,
}

/// Why an anchors file was rejected.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid anchors file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("anchor {anchor}: {what}")]
    Invalid { anchor: String, what: String },
    #[error("server name {name:?} is not a valid DNS name or IP address")]
    BadServerName { name: String },
    #[error("duplicate anchor name {name:?}")]
    Duplicate { name: String },
    /// A request named an anchor this responder is not configured with.
    #[error("no anchor named {name:?} is configured")]
    UnknownAnchor { name: String },
    /// A request named more anchors than one evidence answer may time.
    #[error("{count} anchors requested, at most {max} per request")]
    TooMany { count: usize, max: usize },
    /// An anchor trusted through a CA or the web PKI: the host could send the connection to
    /// another server holding a certificate for the same name.
    #[error(
        "anchor {anchor}: no SPKI pin (trust = {trust}): pin its key with \
         trust = {{ spki_sha256 = \"...\" }}, or set allow_unpinned = true in a lab or test file"
    )]
    Unpinned { anchor: String, trust: &'static str },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// A lab or test file: anchors without an SPKI pin are accepted.
    #[serde(default)]
    allow_unpinned: bool,
    #[serde(default)]
    measure: RawMeasure,
    #[serde(default, rename = "anchor")]
    anchors: Vec<RawAnchor>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeasure {
    round_trips: Option<u32>,
    connect_timeout_ms: Option<u64>,
    handshake_timeout_ms: Option<u64>,
    round_trip_timeout_ms: Option<u64>,
    max_handshake_bytes: Option<u32>,
    max_response_bytes: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnchor {
    name: String,
    target: String,
    sni: Option<String>,
    site: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    trust: RawTrust,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawTrust {
    Webpki,
    SpkiSha256(String),
    CaFile(PathBuf),
}

/// Most round trips one anchor may be asked for.
const MAX_ROUND_TRIPS: u32 = 1000;

fn server_name(name: &str) -> Result<ServerName<'static>, ConfigError> {
    ServerName::try_from(name.to_owned()).map_err(|_| ConfigError::BadServerName {
        name: name.to_owned(),
    })
}

/// Most anchors one evidence request may ask for (each costs a handshake and K round trips).
pub const MAX_ANCHORS_PER_REQUEST: usize = 16;

impl AnchorsConfig {
    /// The specs for the anchor names of an evidence request, in request order. Requests name
    /// configured anchors only: a verifier cannot make the responder connect anywhere else.
    pub fn select(&self, names: &[String]) -> Result<Vec<AnchorSpec>, ConfigError> {
        if names.len() > MAX_ANCHORS_PER_REQUEST {
            return Err(ConfigError::TooMany {
                count: names.len(),
                max: MAX_ANCHORS_PER_REQUEST,
            });
        }
        names
            .iter()
            .map(|n| {
                self.anchors
                    .iter()
                    .find(|a| &a.name == n)
                    .cloned()
                    .ok_or_else(|| ConfigError::UnknownAnchor { name: n.clone() })
            })
            .collect()
    }

    /// Loads and validates an anchors file; `ca_file` paths are relative to the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses an anchors file; `base` resolves relative `ca_file` paths.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawFile = toml::from_str(text)?;
        let d = MeasureOptions::default();
        let m = raw.measure;
        let ms =
            |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
        let options = MeasureOptions {
            round_trips: m.round_trips.unwrap_or(d.round_trips),
            connect_timeout: ms(m.connect_timeout_ms, d.connect_timeout),
            handshake_timeout: ms(m.handshake_timeout_ms, d.handshake_timeout),
            round_trip_timeout: ms(m.round_trip_timeout_ms, d.round_trip_timeout),
            max_handshake_bytes: m.max_handshake_bytes.unwrap_or(d.max_handshake_bytes),
            max_response_bytes: m.max_response_bytes.unwrap_or(d.max_response_bytes),
            // set by the responder's own configuration (`[anchors]` in its TOML)
            clock: d.clock,
        };
        if options.round_trips == 0 || options.round_trips > MAX_ROUND_TRIPS {
            return Err(ConfigError::Invalid {
                anchor: "[measure]".into(),
                what: format!("round_trips must be 1..={MAX_ROUND_TRIPS}"),
            });
        }
        let mut anchors: Vec<AnchorSpec> = Vec::with_capacity(raw.anchors.len());
        for a in raw.anchors {
            if anchors.iter().any(|x| x.name == a.name) {
                return Err(ConfigError::Duplicate { name: a.name });
            }
            let invalid = |what: String| ConfigError::Invalid {
                anchor: a.name.clone(),
                what,
            };
            if !a.target.contains(':') {
                return Err(invalid(format!("target {:?} needs host:port", a.target)));
            }
            let location = match (a.lat, a.lon) {
                (Some(lat), Some(lon))
                    if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
                {
                    Some(Location { lat, lon })
                }
                (None, None) => None,
                _ => return Err(invalid("lat and lon must both be given, in range".into())),
            };
            let sni = match &a.sni {
                Some(s) => s.clone(),
                None => a
                    .target
                    .rsplit_once(':')
                    .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
                    .unwrap_or_default(),
            };
            let unpinned = match &a.trust {
                RawTrust::SpkiSha256(_) => None,
                RawTrust::Webpki => Some("\"webpki\""),
                RawTrust::CaFile(_) => Some("{ ca_file }"),
            };
            if let Some(trust) = unpinned.filter(|_| !raw.allow_unpinned) {
                return Err(ConfigError::Unpinned {
                    anchor: a.name.clone(),
                    trust,
                });
            }
            let trust = match a.trust {
                RawTrust::Webpki => Trust::WebPki,
                RawTrust::SpkiSha256(h) => {
                    let bytes = hex::decode(h.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| invalid("spki_sha256 must be 64 hex digits".into()))?;
                    Trust::PinnedSpki(bytes)
                }
                RawTrust::CaFile(p) => {
                    let p = base.join(p);
                    let certs = CertificateDer::pem_file_iter(&p)
                        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| invalid(format!("ca_file {}: {e}", p.display())))?;
                    if certs.is_empty() {
                        return Err(invalid(format!(
                            "ca_file {} holds no certificate",
                            p.display()
                        )));
                    }
                    Trust::Ca(certs)
                }
            };
            anchors.push(AnchorSpec {
                sni: server_name(&sni)?,
                name: a.name,
                target: a.target,
                site: a.site,
                location,
                trust,
            });
        }
        Ok(Self { options, anchors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/anchors.example.toml")
    }

    #[test]
    fn loads_the_example() {
        let c = AnchorsConfig::load(&example_path()).unwrap();
        assert!(c.anchors.len() >= 3);
        assert!(c.anchors.iter().all(|a| a.location.is_some()));
        assert!(c.options.round_trips >= 1);
    }

    #[test]
    fn rejects_unknown_keys_in_every_table() {
        let base = "allow_unpinned = true\n[measure]\nround_trips = 4\n[[anchor]]\nname = \"a\"\ntarget = \"a.example:443\"\ntrust = \"webpki\"\n";
        assert!(AnchorsConfig::parse(base, Path::new(".")).is_ok());
        for (i, line) in ["bogus = 1\n", "[measure]\nbogus = 1\n"].iter().enumerate() {
            let text = if i == 0 {
                format!("{line}{base}")
            } else {
                base.replace("[measure]\n", line)
            };
            assert!(
                matches!(
                    AnchorsConfig::parse(&text, Path::new(".")),
                    Err(ConfigError::Toml(_))
                ),
                "{text}"
            );
        }
        let text = format!("{base}stray = true\n");
        assert!(matches!(
            AnchorsConfig::parse(&text, Path::new(".")),
            Err(ConfigError::Toml(_))
        ));
        let text = base.replace("\"webpki\"", "{ spki_sha256 = \"00\", extra = 1 }");
        assert!(AnchorsConfig::parse(&text, Path::new(".")).is_err());
    }

    #[test]
    fn an_unpinned_anchor_is_refused_unless_the_file_is_a_lab_one() {
        let p = Path::new(".");
        for trust in ["\"webpki\"", "{ ca_file = \"ca.pem\" }"] {
            let text = format!(
                "[[anchor]]\nname = \"pinned\"\ntarget = \"a.example:443\"\n\
                 trust = {{ spki_sha256 = \"{}\" }}\n\
                 [[anchor]]\nname = \"loose\"\ntarget = \"b.example:443\"\ntrust = {trust}\n",
                "1".repeat(64)
            );
            let e = AnchorsConfig::parse(&text, p).unwrap_err();
            assert!(
                matches!(&e, ConfigError::Unpinned { anchor, .. } if anchor == "loose"),
                "{e}"
            );
            assert!(e.to_string().contains("allow_unpinned = true"), "{e}");
        }
        let text = "allow_unpinned = true\n[[anchor]]\nname = \"loose\"\n\
                    target = \"b.example:443\"\ntrust = \"webpki\"\n";
        assert_eq!(
            AnchorsConfig::parse(text, p).unwrap().anchors[0].trust,
            Trust::WebPki
        );
    }

    #[test]
    fn the_clock_check_allows_tsc_only_by_default_and_reads_its_file() {
        let path =
            std::env::temp_dir().join(format!("locus-anchors-clocksource-{}", std::process::id()));
        std::fs::write(&path, "kvm-clock\n").unwrap();
        let clock = ClockOptions {
            clocksource_path: path.clone(),
            ..ClockOptions::default()
        };
        assert_eq!(clock.current(), "kvm-clock");
        assert!(!clock.allows("kvm-clock") && clock.allows("tsc"));
        std::fs::remove_file(&path).unwrap();
        assert!(
            clock.current().starts_with("unreadable"),
            "{}",
            clock.current()
        );
    }

    #[test]
    fn selects_requested_anchors_in_order() {
        let c = AnchorsConfig::load(&example_path()).unwrap();
        let names: Vec<String> = c.anchors.iter().rev().map(|a| a.name.clone()).collect();
        let picked = c.select(&names).unwrap();
        assert_eq!(picked.len(), names.len());
        assert!(picked.iter().zip(&names).all(|(a, n)| &a.name == n));
        assert!(matches!(
            c.select(&["nowhere".to_owned()]),
            Err(ConfigError::UnknownAnchor { .. })
        ));
        let many = vec![names[0].clone(); MAX_ANCHORS_PER_REQUEST + 1];
        assert!(matches!(c.select(&many), Err(ConfigError::TooMany { .. })));
    }

    #[test]
    fn validates_values() {
        let one = |extra: &str, trust: &str| {
            format!(
                "[[anchor]]\nname = \"a\"\ntarget = \"a.example:443\"\ntrust = {trust}\n{extra}"
            )
        };
        let p = Path::new(".");
        assert!(matches!(
            AnchorsConfig::parse(&one("lat = 1.0\n", "\"webpki\""), p),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            AnchorsConfig::parse(&one("", "{ spki_sha256 = \"abcd\" }"), p),
            Err(ConfigError::Invalid { .. })
        ));
        let pin = "0".repeat(64);
        let c =
            AnchorsConfig::parse(&one("", &format!("{{ spki_sha256 = \"{pin}\" }}")), p).unwrap();
        assert_eq!(c.anchors[0].trust, Trust::PinnedSpki([0; 32]));
        let lab = |text: String| format!("allow_unpinned = true\n{text}");
        assert!(matches!(
            AnchorsConfig::parse(&lab(one("", "{ ca_file = \"/nonexistent/ca.pem\" }")), p),
            Err(ConfigError::Invalid { .. })
        ));
        let twice = lab(format!(
            "{}{}",
            one("", "\"webpki\""),
            one("", "\"webpki\"")
        ));
        assert!(matches!(
            AnchorsConfig::parse(&twice, p),
            Err(ConfigError::Duplicate { .. })
        ));
    }
}
