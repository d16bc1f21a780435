//! The anchor part of a verification policy in TOML form, resolved into an [`AnchorPolicy`] with
//! the files it names loaded by the caller (this crate does no I/O).
//!
//! ```toml
//! km_per_ms_rtt = 100.0        # optional; default 100 (2/3 c in fiber)
//! recheck_handshake = true     # optional; default true
//! allow_unpinned = false       # optional; true only for lab/test policies (see below)
//! allow_clocksource = ["tsc"]  # optional; the clocksources anchors may be timed with
//! require_clocksource = true   # optional; false accepts version 1 reports (no clocksource)
//! [[anchor]]
//! name = "fra"
//! sni = "anchor-fra.lab"
//! site = "fra"                 # optional
//! lat = 50.11                  # optional, with lon
//! lon = 8.68
//! trust = { ca_file = "lab-ca.pem" }   # or "webpki", or { spki_sha256 = "<64 hex>" }
//! ```
//! The same `[[anchor]]` entries as `config/anchors.example.toml`, whose `target` (where the
//! responder connects) is accepted and ignored here.
//!
//! Every anchor needs an SPKI pin (`trust = { spki_sha256 = ... }`): a CA or the web PKI lets
//! the host send the TD's connection to any server holding a certificate for the name (a
//! wildcard, a GeoDNS name served everywhere), near the TD rather than at the claim. A policy
//! with an unpinned anchor is refused at load ([`AnchorPolicyError::Unpinned`]) unless it says
//! `allow_unpinned = true`, which marks it as a lab or test policy.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{
    AnchorPolicy, AnchorTrust, KnownAnchor, Position, DEFAULT_CLOCKSOURCE, DEFAULT_KM_PER_MS_RTT,
};

/// The TOML form of an anchor policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorPolicyFile {
    #[serde(default)]
    pub km_per_ms_rtt: Option<f64>,
    #[serde(default)]
    pub recheck_handshake: Option<bool>,
    /// A lab or test policy: anchors without an SPKI pin are accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unpinned: bool,
    /// Clocksources an anchor report may have been timed with; default `["tsc"]` (the only
    /// clock the host cannot speed up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_clocksource: Option<Vec<String>>,
    /// Whether reports must name their clocksource (version 2); default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_clocksource: Option<bool>,
    #[serde(default)]
    pub anchor: Vec<AnchorEntry>,
}

/// One anchor entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorEntry {
    pub name: String,
    /// Defaults to the host of `target`.
    #[serde(default)]
    pub sni: Option<String>,
    /// Where the responder connects; not used by the verifier.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
    pub trust: TrustEntry,
}

/// How an anchor is trusted, in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TrustEntry {
    Webpki,
    SpkiSha256(String),
    /// PEM (or DER) CA certificates; the path is handed to the caller's loader.
    CaFile(String),
}

/// Why an anchor policy is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnchorPolicyError {
    #[error("anchor {anchor:?}: {what}")]
    Invalid { anchor: String, what: String },
    #[error("anchor {anchor:?}: cannot load {path}: {detail}")]
    Load {
        anchor: String,
        path: String,
        detail: String,
    },
    #[error("duplicate anchor {name:?}")]
    Duplicate { name: String },
    #[error("km_per_ms_rtt must be positive and finite, got {value}")]
    BadSpeed { value: String },
    /// An anchor trusted through a CA or the web PKI: the host could send the connection to
    /// another server with a certificate for the same name. Pin its key, or mark the policy as
    /// a lab/test one.
    #[error(
        "anchor {anchor:?} has no SPKI pin (trust = {trust}): pin its key with \
         trust = {{ spki_sha256 = \"...\" }}, or set allow_unpinned = true in a lab or test policy"
    )]
    Unpinned { anchor: String, trust: &'static str },
}

impl AnchorPolicyFile {
    /// Validates the entries; `load` returns the bytes of a file named by `ca_file`.
    pub fn resolve(
        &self,
        load: &dyn Fn(&str) -> Result<Vec<u8>, String>,
    ) -> Result<AnchorPolicy, AnchorPolicyError> {
        let km_per_ms_rtt = self.km_per_ms_rtt.unwrap_or(DEFAULT_KM_PER_MS_RTT);
        if !(km_per_ms_rtt.is_finite() && km_per_ms_rtt > 0.0) {
            return Err(AnchorPolicyError::BadSpeed {
                value: km_per_ms_rtt.to_string(),
            });
        }
        let mut anchors: Vec<KnownAnchor> = Vec::with_capacity(self.anchor.len());
        for e in &self.anchor {
            let unpinned = match &e.trust {
                TrustEntry::SpkiSha256(_) => None,
                TrustEntry::Webpki => Some("\"webpki\""),
                TrustEntry::CaFile(_) => Some("{ ca_file }"),
            };

            if anchors.iter().any(|a| a.name == e.name) {
                return Err(AnchorPolicyError::Duplicate {
                    name: e.name.clone(),
                });
            }
            let invalid = |what: String| AnchorPolicyError::Invalid {
                anchor: e.name.clone(),
                what,
            };
            let position = match (e.lat, e.lon) {
                (Some(lat), Some(lon))
                    if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
                {
                    Some(Position { lat, lon })
                }
                (None, None) => None,
                _ => return Err(invalid("lat and lon must both be given, in range".into())),
            };
            let sni = match (&e.sni, &e.target) {
                (Some(s), _) => s.clone(),
                (None, Some(t)) => t
                    .rsplit_once(':')
                    .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
                    .ok_or_else(|| invalid(format!("target {t:?} needs host:port")))?,
                (None, None) => return Err(invalid("needs sni or target".into())),
            };
            let trust = match &e.trust {
                TrustEntry::Webpki => AnchorTrust::WebPki,
                TrustEntry::SpkiSha256(h) => AnchorTrust::PinnedSpki(
                    hex::decode(h.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| invalid("spki_sha256 must be 64 hex digits".into()))?,
                ),
                TrustEntry::CaFile(path) => {
                    let load_err = |detail: String| AnchorPolicyError::Load {
                        anchor: e.name.clone(),
                        path: path.clone(),
                        detail,
                    };
                    let bytes = load(path).map_err(load_err)?;
                    let ders: Vec<Vec<u8>> = if bytes.starts_with(b"-----") {
                        pem::parse_many(&bytes)
                            .map_err(|e| load_err(e.to_string()))?
                            .into_iter()
                            .filter(|p| p.tag() == "CERTIFICATE")
                            .map(|p| p.into_contents())
                            .collect()
                    } else {
                        vec![bytes]
                    };
                    if ders.is_empty() {
                        return Err(load_err("no certificate in the file".into()));
                    }
                    AnchorTrust::Roots(ders)
                }
            };
            if let Some(trust) = unpinned.filter(|_| !self.allow_unpinned) {
                return Err(AnchorPolicyError::Unpinned {
                    anchor: e.name.clone(),
                    trust,
                });
            }
            anchors.push(KnownAnchor {
                name: e.name.clone(),
                sni,
                site: e.site.clone(),
                position,
                trust,
            });
        }
        Ok(AnchorPolicy {
            anchors,
            km_per_ms_rtt,
            recheck_handshake: self.recheck_handshake.unwrap_or(true),
            allow_clocksource: (self.allow_clocksource.clone())
                .unwrap_or_else(|| vec![DEFAULT_CLOCKSOURCE.to_string()]),
            require_clocksource: self.require_clocksource.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_files(_: &str) -> Result<Vec<u8>, String> {
        Err("no files in this test".into())
    }

    #[test]
    fn resolves_entries_and_defaults() {
        let text = r#"
            km_per_ms_rtt = 80.0
            allow_unpinned = true
            [[anchor]]
            name = "aws-eu-central-1"
            target = "ec2.eu-central-1.amazonaws.com:443"
            site = "fra"
            lat = 50.11
            lon = 8.68
            trust = "webpki"
            [[anchor]]
            name = "pinned"
            sni = "pinned.example"
            trust = { spki_sha256 = "0000000000000000000000000000000000000000000000000000000000000001" }
        "#;
        let f: AnchorPolicyFile = toml::from_str(text).unwrap();
        let p = f.resolve(&no_files).unwrap();
        assert_eq!(p.km_per_ms_rtt, 80.0);
        assert!(p.recheck_handshake);
        assert_eq!(p.anchors[0].sni, "ec2.eu-central-1.amazonaws.com");
        assert_eq!(p.anchors[0].trust, AnchorTrust::WebPki);
        let mut pin = [0u8; 32];
        pin[31] = 1;
        assert_eq!(p.anchors[1].trust, AnchorTrust::PinnedSpki(pin));
        assert_eq!(p.anchors[1].position, None);
        assert_eq!(p.allow_clocksource, vec!["tsc".to_string()]);
        assert!(p.require_clocksource);
    }

    #[test]
    fn an_unpinned_anchor_is_refused_unless_the_policy_is_a_lab_one() {
        let pin = "1".repeat(64);
        for trust in ["\"webpki\"", "{ ca_file = \"ca.pem\" }"] {
            let text = format!(
                "[[anchor]]\nname = \"pinned\"\nsni = \"p\"\ntrust = {{ spki_sha256 = \"{pin}\" }}\n\
                 [[anchor]]\nname = \"loose\"\nsni = \"l\"\ntrust = {trust}\n"
            );
            let f: AnchorPolicyFile = toml::from_str(&text).unwrap();
            let ca = |_: &str| {
                Ok(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n".to_vec())
            };
            let e = f.resolve(&ca).unwrap_err();
            assert!(
                matches!(&e, AnchorPolicyError::Unpinned { anchor, .. } if anchor == "loose"),
                "{e}"
            );
            assert!(e.to_string().contains("allow_unpinned = true"), "{e}");
            let lab = AnchorPolicyFile {
                allow_unpinned: true,
                ..f
            };
            assert!(lab.resolve(&ca).is_ok(), "{trust}");
        }
    }

    #[test]
    fn rejects_bad_entries() {
        let parse = |t: &str| toml::from_str::<AnchorPolicyFile>(t);
        assert!(
            parse("[[anchor]]\nname = \"a\"\nsni = \"a\"\ntrust = \"webpki\"\nstray = 1\n")
                .is_err()
        );
        assert!(parse("bogus = 1\n").is_err());
        let one = |extra: &str| {
            parse(&format!(
                "[[anchor]]\nname = \"a\"\ntrust = \"webpki\"\n{extra}"
            ))
            .unwrap()
            .resolve(&no_files)
        };
        assert!(matches!(one(""), Err(AnchorPolicyError::Invalid { .. })));
        assert!(matches!(
            one("sni = \"a\"\nlat = 1.0\n"),
            Err(AnchorPolicyError::Invalid { .. })
        ));
        let f = parse("[[anchor]]\nname = \"a\"\nsni = \"a\"\ntrust = { ca_file = \"x.pem\" }\n")
            .unwrap();
        assert!(matches!(
            f.resolve(&no_files),
            Err(AnchorPolicyError::Load { .. })
        ));
        let f = parse("km_per_ms_rtt = -1.0\n").unwrap();
        assert!(matches!(
            f.resolve(&no_files),
            Err(AnchorPolicyError::BadSpeed { .. })
        ));
    }

    #[test]
    fn loads_the_anchors_example_entries() {
        // The responder's example file minus its [measure] table is a valid verifier policy.
        let text = include_str!("../../../../config/anchors.example.toml");
        let mut value: toml::Table = toml::from_str(text).unwrap();
        value.remove("measure");
        let f: AnchorPolicyFile = toml::from_str(&toml::to_string(&value).unwrap()).unwrap();
        let p = f.resolve(&no_files).unwrap();
        assert!(p.anchors.len() >= 3);
        assert!(p.anchors.iter().all(|a| a.position.is_some()));
    }
}
