//! The monitor's own view of the fleet (`locus monitor --config FILE`, see
//! `config/monitor.example.toml`): the sites, the probers with their sites and public keys, and
//! the nodes with their claims. None of it is read from the database, which any prober (or
//! anyone on its link) can write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use locus_analysis::{Prober, Site, World};
use locus_prober::identity::PublicKey;
use serde::Deserialize;

use crate::integrity::Trust;

/// A validated monitor configuration.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Sites and probers, as the verdict engine takes them.
    pub world: World,
    /// Node → the site it claims.
    pub claims: BTreeMap<String, String>,
    /// Landmark name → its site: a landmark round counts for calibration only under a name
    /// listed here, at the site given here (not the one stored with the row).
    pub landmarks: BTreeMap<String, String>,
    /// Which rows are believed.
    pub trust: Trust,
    /// Rows of probers without a key are judged (and without any prober, every row).
    pub allow_unsigned: bool,
    /// A file holding the PostgreSQL password for `--db` (relative to the config file's
    /// directory when loaded from a file).
    pub db_password_file: Option<PathBuf>,
}

/// Why a monitor configuration was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorConfigError {
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
    /// Two entries of one table share a name.
    #[error("{what} {name:?} is defined twice")]
    Duplicate { what: &'static str, name: String },
    #[error("{what} names site {site:?}, which is not in [[sites]]")]
    UnknownSite { what: String, site: String },
    #[error(
        "site {name}: ({lat}, {lon}) is not a latitude in [-90, 90] and longitude in [-180, 180]"
    )]
    BadCoordinates { name: String, lat: f64, lon: f64 },
    #[error("prober {id}: public_key: {source}")]
    BadKey {
        id: String,
        source: locus_prober::identity::IdentityError,
    },
    /// Without a key, anyone who can write the database can speak for this prober: give its
    /// key (`locus prober keygen` prints it) or set `allow_unsigned = true` knowingly.
    #[error(
        "prober {id} has no public_key: give the key `locus prober keygen` printed for it, or \
         set allow_unsigned = true to judge its rows unverified"
    )]
    MissingKey { id: String },
    #[error("no [[probers]]: the monitor would have nothing to judge")]
    NoProbers,
    /// A `[[landmark]]` must say where it is: `site = "S"`, or `prober = "ID"` for a peer
    /// prober's echo (its site is the prober's).
    #[error("landmark {name:?}: give exactly one of site or prober (and a name with site)")]
    LandmarkWhere { name: String },
    #[error("landmark {name:?} names prober {prober:?}, which is not in [[probers]]")]
    UnknownLandmarkProber { name: String, prober: String },
    /// One key would speak for two probers: either prober could then write rows as the other.
    #[error("probers {first} and {second} have the same public_key: give each prober its own key")]
    SharedKey { first: String, second: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    allow_unsigned: bool,
    #[serde(default)]
    db_password_file: Option<PathBuf>,
    #[serde(default)]
    sites: Vec<RawSite>,
    #[serde(default)]
    probers: Vec<RawProber>,
    #[serde(default)]
    nodes: Vec<RawNode>,
    /// `[[landmark]]` as in the prober's config (`[[landmarks]]` accepted too).
    #[serde(default, rename = "landmark", alias = "landmarks")]
    landmarks: Vec<RawLandmark>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLandmark {
    /// The probers' `[[landmark]] name`; with `prober`, defaults to the prober's id.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    site: Option<String>,
    /// A peer prober answering echoes (`[echo] listen` in its config): the landmark stands at
    /// that prober's site.
    #[serde(default)]
    prober: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: String,
    lat: f64,
    lon: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProber {
    id: String,
    site: String,
    #[serde(default)]
    public_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    claim: String,
}

impl MonitorConfig {
    /// Reads and validates `path`; `allow_unsigned` (the CLI's `--allow-unsigned`) overrides
    /// the file's `allow_unsigned = false`.
    pub fn load(path: &Path, allow_unsigned: bool) -> Result<Self, MonitorConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| MonitorConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut c = Self::from_toml_str(&text, allow_unsigned).map_err(|e| match e {
            MonitorConfigError::Parse { source, .. } => MonitorConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            e => e,
        })?;
        let dir = path.parent().unwrap_or(Path::new(""));
        c.db_password_file = c.db_password_file.map(|f| dir.join(f));
        Ok(c)
    }

    /// Parses and validates TOML (`allow_unsigned` as for [`MonitorConfig::load`]).
    pub fn from_toml_str(text: &str, allow_unsigned: bool) -> Result<Self, MonitorConfigError> {
        let mut raw: Raw = toml::from_str(text).map_err(|source| MonitorConfigError::Parse {
            path: PathBuf::new(),
            source,
        })?;
        raw.allow_unsigned |= allow_unsigned;
        let mut sites = BTreeSet::new();
        for s in &raw.sites {
            if !sites.insert(s.name.as_str()) {
                return Err(MonitorConfigError::Duplicate {
                    what: "site",
                    name: s.name.clone(),
                });
            }
            if !(s.lat.abs() <= 90.0 && s.lon.abs() <= 180.0) {
                return Err(MonitorConfigError::BadCoordinates {
                    name: s.name.clone(),
                    lat: s.lat,
                    lon: s.lon,
                });
            }
        }
        let known = |what: String, site: &str| {
            if sites.contains(site) {
                Ok(())
            } else {
                Err(MonitorConfigError::UnknownSite {
                    what,
                    site: site.to_owned(),
                })
            }
        };
        if raw.probers.is_empty() {
            return Err(MonitorConfigError::NoProbers);
        }
        let mut keys = BTreeMap::new();
        let mut key_owner: BTreeMap<String, &str> = BTreeMap::new();
        for p in &raw.probers {
            known(format!("prober {}", p.id), &p.site)?;
            let key =
                match &p.public_key {
                    Some(k) => Some(k.parse::<PublicKey>().map_err(|source| {
                        MonitorConfigError::BadKey {
                            id: p.id.clone(),
                            source,
                        }
                    })?),
                    None if raw.allow_unsigned => None,
                    None => return Err(MonitorConfigError::MissingKey { id: p.id.clone() }),
                };
            if let Some(k) = &key {
                if let Some(first) = key_owner.insert(k.to_string(), &p.id) {
                    if first != p.id {
                        return Err(MonitorConfigError::SharedKey {
                            first: first.to_owned(),
                            second: p.id.clone(),
                        });
                    }
                }
            }
            if keys.insert(p.id.clone(), key).is_some() {
                return Err(MonitorConfigError::Duplicate {
                    what: "prober",
                    name: p.id.clone(),
                });
            }
        }
        let mut claims = BTreeMap::new();
        for n in &raw.nodes {
            known(format!("node {}", n.name), &n.claim)?;
            if claims.insert(n.name.clone(), n.claim.clone()).is_some() {
                return Err(MonitorConfigError::Duplicate {
                    what: "node",
                    name: n.name.clone(),
                });
            }
        }
        let mut landmarks = BTreeMap::new();
        for l in &raw.landmarks {
            let (name, site) = match (&l.name, &l.site, &l.prober) {
                (Some(name), Some(site), None) => (name.clone(), site.clone()),
                (name, None, Some(prober)) => {
                    let name = name.clone().unwrap_or_else(|| prober.clone());
                    let Some(p) = raw.probers.iter().find(|p| &p.id == prober) else {
                        return Err(MonitorConfigError::UnknownLandmarkProber {
                            name,
                            prober: prober.clone(),
                        });
                    };
                    (name, p.site.clone())
                }
                (name, _, prober) => {
                    return Err(MonitorConfigError::LandmarkWhere {
                        name: name.clone().or(prober.clone()).unwrap_or_default(),
                    })
                }
            };
            known(format!("landmark {name}"), &site)?;
            if landmarks.insert(name.clone(), site).is_some() {
                return Err(MonitorConfigError::Duplicate {
                    what: "landmark",
                    name,
                });
            }
        }
        Ok(Self {
            landmarks,
            world: World {
                sites: raw
                    .sites
                    .iter()
                    .map(|s| Site {
                        name: s.name.clone(),
                        lat: s.lat,
                        lon: s.lon,
                    })
                    .collect(),
                probers: raw
                    .probers
                    .iter()
                    .map(|p| Prober {
                        id: p.id.clone(),
                        site: p.site.clone(),
                    })
                    .collect(),
                landmarks: Vec::new(),
            },
            claims,
            trust: Trust::new(keys, raw.allow_unsigned),
            allow_unsigned: raw.allow_unsigned,
            db_password_file: raw.db_password_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0EqyMnQrtKs6E2i9RhXk5tAiSrcaAWuvhSCjMsl3hzc=";

    fn config(prober_extra: &str, top: &str) -> String {
        format!(
            "{top}\n[[sites]]\nname = \"fra\"\nlat = 50.11\nlon = 8.68\n\
             [[sites]]\nname = \"ams\"\nlat = 52.37\nlon = 4.9\n\
             [[probers]]\nid = \"p-ams\"\nsite = \"ams\"\n{prober_extra}\n\
             [[nodes]]\nname = \"n1\"\nclaim = \"fra\"\n"
        )
    }

    #[test]
    fn loads_sites_probers_keys_and_claims() {
        let c =
            MonitorConfig::from_toml_str(&config(&format!("public_key = \"{KEY}\""), ""), false)
                .unwrap();
        assert_eq!(c.world.sites.len(), 2);
        assert_eq!(c.world.probers[0].site, "ams");
        assert_eq!(c.claims["n1"], "fra");
        assert!(!c.allow_unsigned);
    }

    #[test]
    fn a_prober_without_a_key_needs_allow_unsigned() {
        assert!(matches!(
            MonitorConfig::from_toml_str(&config("", ""), false),
            Err(MonitorConfigError::MissingKey { id }) if id == "p-ams"
        ));
        let c = MonitorConfig::from_toml_str(&config("", "allow_unsigned = true"), false).unwrap();
        assert!(c.allow_unsigned);
        let c = MonitorConfig::from_toml_str(&config("", ""), true).unwrap();
        assert!(c.allow_unsigned);
    }

    #[test]
    fn rejects_bad_entries() {
        let bad_key = config("public_key = \"AAAA\"", "");
        assert!(matches!(
            MonitorConfig::from_toml_str(&bad_key, false),
            Err(MonitorConfigError::BadKey { .. })
        ));
        let unknown = config(&format!("public_key = \"{KEY}\""), "")
            .replace("claim = \"fra\"", "claim = \"par\"");
        assert!(matches!(
            MonitorConfig::from_toml_str(&unknown, false),
            Err(MonitorConfigError::UnknownSite { site, .. }) if site == "par"
        ));
        let stray = config(&format!("public_key = \"{KEY}\"\nlocation = 1"), "");
        assert!(matches!(
            MonitorConfig::from_toml_str(&stray, false),
            Err(MonitorConfigError::Parse { .. })
        ));
        assert!(matches!(
            MonitorConfig::from_toml_str("allow_unsigned = true", false),
            Err(MonitorConfigError::NoProbers)
        ));
        let landmark_elsewhere = format!(
            "{}[[landmark]]\nname = \"ref-par\"\nsite = \"par\"\n",
            config(&format!("public_key = \"{KEY}\""), "")
        );
        assert!(matches!(
            MonitorConfig::from_toml_str(&landmark_elsewhere, false),
            Err(MonitorConfigError::UnknownSite { site, .. }) if site == "par"
        ));
    }

    #[test]
    fn landmarks_are_named_with_their_site() {
        let text = format!(
            "{}[[landmark]]\nname = \"ref-fra\"\nsite = \"fra\"\n",
            config(&format!("public_key = \"{KEY}\""), "")
        );
        let c = MonitorConfig::from_toml_str(&text, false).unwrap();
        assert_eq!(c.landmarks["ref-fra"], "fra");
        let twice = format!("{text}[[landmark]]\nname = \"ref-fra\"\nsite = \"ams\"\n");
        assert!(matches!(
            MonitorConfig::from_toml_str(&twice, false),
            Err(MonitorConfigError::Duplicate {
                what: "landmark",
                ..
            })
        ));
    }

    /// A peer prober as a landmark stands at that prober's site, named after it unless named.
    #[test]
    fn a_prober_landmark_takes_the_probers_site() {
        // p-fra without a key: allowed by `allow_unsigned` (the `true` below).
        let base = format!(
            "{}[[probers]]\nid = \"p-fra\"\nsite = \"fra\"\n",
            config(&format!("public_key = \"{KEY}\""), "")
        );
        let c = MonitorConfig::from_toml_str(
            &format!(
                "{base}[[landmark]]\nprober = \"p-fra\"\n\
                 [[landmark]]\nname = \"echo-ams\"\nprober = \"p-ams\"\n"
            ),
            true,
        )
        .unwrap();
        assert_eq!(c.landmarks["p-fra"], "fra");
        assert_eq!(c.landmarks["echo-ams"], "ams");
        assert!(matches!(
            MonitorConfig::from_toml_str(&format!("{base}[[landmark]]\nprober = \"p-x\"\n"), true),
            Err(MonitorConfigError::UnknownLandmarkProber { prober, .. }) if prober == "p-x"
        ));
        for both in [
            "[[landmark]]\nname = \"x\"\nsite = \"fra\"\nprober = \"p-fra\"\n",
            "[[landmark]]\nname = \"x\"\n",
            "[[landmark]]\nsite = \"fra\"\n",
        ] {
            assert!(
                matches!(
                    MonitorConfig::from_toml_str(&format!("{base}{both}"), true),
                    Err(MonitorConfigError::LandmarkWhere { .. })
                ),
                "{both}"
            );
        }
    }

    /// F11: one key for two probers is refused (either could write rows as the other).
    #[test]
    fn two_probers_sharing_a_key_are_refused() {
        let text = format!(
            "{}[[probers]]\nid = \"p-fra\"\nsite = \"fra\"\npublic_key = \"{KEY}\"\n",
            config(&format!("public_key = \"{KEY}\""), "")
        );
        assert!(matches!(
            MonitorConfig::from_toml_str(&text, false),
            Err(MonitorConfigError::SharedKey { first, second }) if first == "p-ams" && second == "p-fra"
        ));
    }
}
