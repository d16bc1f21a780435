//! The evidence policy: trust roots, reference values and which checks are required.
//!
//! [`PolicyFile`] is the TOML form (`deny_unknown_fields` everywhere); [`PolicyFile::resolve`]
//! turns it, with the files it names loaded by the caller, into a typed [`EvidencePolicy`]. Nothing
//! later parses strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::CheckId;
use crate::verify::anchor::{AnchorPolicy, AnchorPolicyFile};
use crate::verify::tdx::{Collateral, TcbStatus, TrustRoot, DEFAULT_ACCEPT_TCB};

/// How a check counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// Must run and pass.
    Required,
    /// Runs when its inputs are present; a failure still invalidates, a skip does not.
    Optional,
    /// Not run.
    Off,
}

/// The TOML policy file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Accept a policy that does not pin the TD's code (MRTD, RTMR0-3, TD attributes, XFAM):
    /// every verdict fed by it is capped at `inconclusive`. Without it such a policy is refused
    /// at load, since a genuine TD running other code would pass every other check.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unpinned_code: bool,
    /// Requirement per check (see [`CheckId`] for names); unnamed checks use their default.
    #[serde(default)]
    pub checks: BTreeMap<CheckId, Requirement>,
    #[serde(default)]
    pub nonce: NonceSection,
    #[serde(default)]
    pub ek: EkSection,
    #[serde(default)]
    pub tdx: TdxSection,
    #[serde(default)]
    pub reference: ReferenceSection,
    #[serde(default)]
    pub timing: TimingSection,
    /// Which evidence binding a bundle must follow (`docs/binding.md`).
    #[serde(default)]
    pub binding: BindingSection,
    /// The anchors a bundle's anchor report is checked against (as in `anchors.example.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchors: Option<AnchorPolicyFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonceSection {
    /// This verifier's name, as recorded in its nonce ledger.
    pub issuer: String,
    /// How long a nonce stays valid after it was issued.
    pub max_age_secs: u64,
    /// The verifier's nonce ledger (JSON list of records), relative to the policy file; lets
    /// a stored bundle be re-checked offline with the policy alone (the lab writes one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
}

impl Default for NonceSection {
    fn default() -> Self {
        Self {
            issuer: "locus".into(),
            max_age_secs: 60,
            ledger: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EkSection {
    /// Provider EK root CA certificates (PEM or DER files), or a built-in provider set by
    /// name (`gce`, `gce-legacy`, `gce-cas`: Google's EK/AK CAs, roots and intermediates).
    #[serde(default)]
    pub roots: Vec<String>,
    /// Intermediate CA certificates (PEM or DER files), in addition to those in the bundle.
    #[serde(default)]
    pub intermediates: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxSection {
    /// `"intel"` (default) or a file with a lab root CA (DER or PEM).
    #[serde(default)]
    pub root: Option<String>,
    /// Collateral file (dcap-qvl JSON). Without it the TDX quote's signature is not checked.
    #[serde(default)]
    pub collateral: Option<String>,
    /// Converged TCB statuses the `tdx_tcb` check accepts (Intel names); absent: `UpToDate`
    /// and `SWHardeningNeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_tcb: Option<Vec<TcbStatus>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSection {
    /// Expected SHA-256 PCR values (hex).
    #[serde(default)]
    pub pcrs: Vec<PcrReference>,
    /// Expected MRTD (hex, 48 bytes).
    #[serde(default)]
    pub mrtd: Option<String>,
    /// Expected RTMRs (hex, 48 bytes each).
    #[serde(default)]
    pub rtmrs: Vec<RtmrReference>,
    /// Expected TD attributes (hex, 8 bytes as in the TD report: debug, SEPT_VE_DISABLE, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub td_attributes: Option<String>,
    /// Expected XFAM (hex, 8 bytes: the CPU extended features the TD may use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfam: Option<String>,
    /// Expected MRCONFIGID (hex, 48 bytes: configuration the host gave the TD at creation).
    /// Absent: it must be all zero, as hosts that set none leave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_config_id: Option<String>,
}

impl ReferenceSection {
    /// Pins MRTD, RTMR0-3, TD attributes, XFAM and MRCONFIGID to the values in `quote`'s TD
    /// report (read unverified: for a quote this verifier made or already trusts, e.g. the
    /// lab's). `false` when the quote is too short to hold a TD report.
    pub fn pin_td(&mut self, quote: &[u8]) -> bool {
        let Some(f) = super::td_fields_unverified(quote) else {
            return false;
        };
        self.mrtd = Some(hex::encode(f.mrtd));
        self.rtmrs = (0u8..4)
            .map(|i| RtmrReference {
                index: i,
                sha384: hex::encode(f.rtmrs[usize::from(i)]),
            })
            .collect();
        self.td_attributes = Some(hex::encode(f.td_attributes));
        self.xfam = Some(hex::encode(f.xfam));
        self.mr_config_id = Some(hex::encode(f.mr_config_id));
        true
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcrReference {
    pub index: u8,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmrReference {
    pub index: u8,
    pub sha384: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingSection {
    /// Largest acceptable in-TD round trip of a cheap vTPM command (a relayed vTPM shows its
    /// network round trip there).
    #[serde(default)]
    pub max_tpm_cheap_rtt_us: Option<u64>,
    /// Largest acceptable fastest link of the AK-signed vTPM chain (binding version 2): a
    /// TPM2_Quote's signing time plus the round trip, which a relay cannot shortcut. Checked
    /// by `vtpm_chain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tpm_chain_rtt_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingSection {
    /// Oldest binding version accepted: 2 (the default) needs the in-TD timings bound into
    /// REPORTDATA and the AK-signed vTPM chain; 1 also accepts bundles of earlier releases,
    /// whose timings nothing signs.
    #[serde(default = "BindingSection::default_min_version")]
    pub min_version: u8,
}

impl BindingSection {
    fn default_min_version() -> u8 {
        locus_proto::binding::BINDING_VERSION
    }
}

impl Default for BindingSection {
    fn default() -> Self {
        Self {
            min_version: Self::default_min_version(),
        }
    }
}

/// Why a policy could not be used.
#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("policy TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{field}: {reason}")]
    Value { field: String, reason: String },
    /// The policy does not pin the TD's code: a genuine TD running a modified responder would
    /// pass. Pin the values (`locus policy init --from-bundle` captures them from a known-good
    /// bundle) or set `allow_unpinned_code = true` to get verdicts capped at `inconclusive`.
    #[error("the evidence policy does not pin the TD's code: {} not set or turned off (pin them, e.g. with `locus policy init --from-bundle`, or set allow_unpinned_code = true: verdicts are then at most inconclusive)", missing.join(", "))]
    Unpinned { missing: Vec<String> },
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct EvidencePolicy {
    pub requirements: BTreeMap<CheckId, Requirement>,
    pub nonce_issuer: String,
    pub nonce_max_age_secs: u64,
    /// EK roots and intermediates, DER.
    pub ek_roots: Vec<Vec<u8>>,
    pub ek_intermediates: Vec<Vec<u8>>,
    pub tdx_root: TrustRoot,
    pub tdx_collateral: Option<Collateral>,
    pub pcr_reference: BTreeMap<u8, [u8; 32]>,
    pub mrtd_reference: Option<[u8; 48]>,
    pub rtmr_reference: BTreeMap<u8, [u8; 48]>,
    pub td_attributes_reference: Option<[u8; 8]>,
    pub xfam_reference: Option<[u8; 8]>,
    /// MRCONFIGID expected (all zero unless the policy pins another value).
    pub mr_config_id_reference: [u8; 48],
    /// The TCB statuses `tdx_tcb` accepts.
    pub accept_tcb: Vec<TcbStatus>,
    /// The TD's code is not pinned: verdicts fed by this policy are at most `inconclusive`.
    pub unpinned_code: bool,
    /// What [`PolicyFile::unpinned`] found missing (empty when `unpinned_code` is false).
    pub unpinned: Vec<String>,
    pub max_tpm_cheap_rtt_ns: Option<u64>,
    /// Bound on the fastest link of the AK-signed chain, for `vtpm_chain`.
    pub max_tpm_chain_rtt_ns: Option<u64>,
    /// Oldest binding version accepted, for `binding_version`.
    pub min_binding_version: u8,
    /// Anchors known to this verifier, for the `anchors` check.
    pub anchors: Option<AnchorPolicy>,
}

impl EvidencePolicy {
    /// The requirement of `check`: the policy's, else the check's default.
    pub fn requirement(&self, check: CheckId) -> Requirement {
        self.requirements
            .get(&check)
            .copied()
            .unwrap_or_else(|| check.default_requirement())
    }
}

fn hex_array<const N: usize>(field: String, s: &str) -> Result<[u8; N], PolicyError> {
    let v = hex::decode(s.trim()).map_err(|e| PolicyError::Value {
        field: field.clone(),
        reason: e.to_string(),
    })?;
    v.try_into().map_err(|v: Vec<u8>| PolicyError::Value {
        field,
        reason: format!("{} bytes, expected {N}", v.len()),
    })
}

/// DER from a PEM or DER certificate file's bytes (every PEM block; one DER).
pub fn certificates_from_bytes(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if bytes.starts_with(b"-----BEGIN") || bytes.windows(10).any(|w| w == b"-----BEGIN") {
        let blocks = pem::parse_many(bytes).map_err(|e| e.to_string())?;
        Ok(blocks.into_iter().map(|p| p.into_contents()).collect())
    } else {
        Ok(vec![bytes.to_vec()])
    }
}

impl PolicyFile {
    /// A lab policy: every check required (`ak_ek_binding` through the nonce sealed to the
    /// swtpm's certified EK); EK chain
    /// to `ek_root`, TDX quotes under the lab root `tdx_root` with `tdx_collateral` (paths as
    /// the policy file will name them); nonces from `nonce_issuer`, valid for 60 s. Reference
    /// values are left empty: pin the TD with [`ReferenceSection::pin_td`] (a policy that does
    /// not pin it is refused at [`PolicyFile::resolve`]) and fill `reference.pcrs` to pin PCRs.
    pub fn lab(ek_root: &str, tdx_root: &str, tdx_collateral: &str, nonce_issuer: &str) -> Self {
        let mut checks = Self::offline_checks();
        // Need reference values or a bound the caller chooses.
        checks.insert(CheckId::PcrReference, Requirement::Optional);
        checks.insert(CheckId::VtpmTiming, Requirement::Optional);
        // Needs an `[anchors]` section, which the caller adds when it knows its anchors.
        checks.insert(CheckId::Anchors, Requirement::Optional);
        // Azure only: run when a bundle carries an HCL report.
        checks.insert(CheckId::HclReport, Requirement::Optional);
        checks.insert(CheckId::HclUserData, Requirement::Optional);
        Self {
            allow_unpinned_code: false,
            checks,
            nonce: NonceSection {
                issuer: nonce_issuer.into(),
                max_age_secs: 60,
                ledger: None,
            },
            ek: EkSection {
                roots: vec![ek_root.into()],
                intermediates: Vec::new(),
            },
            tdx: TdxSection {
                root: Some(tdx_root.into()),
                collateral: Some(tdx_collateral.into()),
                accept_tcb: None,
            },
            reference: ReferenceSection::default(),
            timing: TimingSection::default(),
            binding: BindingSection::default(),
            anchors: None,
        }
    }

    /// Checks whose `off` leaves a bundle's code or freshness unchecked: the binding and TDX
    /// checks required by default, and `td_reference`, which compares the pins. Turning one
    /// off is refused at load like a missing pin (`allow_unpinned_code = true` accepts it and
    /// caps the verdicts). vTPM checks are not among them: a TDX-only deployment turns those
    /// off, and the verdict rules judge a missing vTPM on their own.
    pub const MUST_NOT_BE_OFF: [CheckId; 7] = [
        CheckId::BundleFormat,
        CheckId::Nonce,
        CheckId::Transcript,
        CheckId::TdxQuote,
        CheckId::TdxTcb,
        CheckId::ReportData,
        CheckId::TdReference,
    ];

    /// The TD code pins this policy lacks (`reference.mrtd`, `reference.rtmrs[0-3]`,
    /// `reference.td_attributes`, `reference.xfam`), or a check of
    /// [`PolicyFile::MUST_NOT_BE_OFF`] turned off (`checks.NAME (off)`).
    pub fn unpinned(&self) -> Vec<String> {
        let r = &self.reference;
        let mut missing = Vec::new();
        if r.mrtd.is_none() {
            missing.push("reference.mrtd".to_string());
        }
        for i in 0u8..4 {
            if !r.rtmrs.iter().any(|x| x.index == i) {
                missing.push(format!("reference.rtmrs[{i}]"));
            }
        }
        if r.td_attributes.is_none() {
            missing.push("reference.td_attributes".into());
        }
        if r.xfam.is_none() {
            missing.push("reference.xfam".into());
        }
        for c in Self::MUST_NOT_BE_OFF {
            if self.checks.get(&c) == Some(&Requirement::Off) {
                missing.push(format!("checks.{} (off)", c.name()));
            }
        }
        missing
    }

    /// Every check required, except `session_spki` (offline verification has no QUIC peer
    /// key) and `anchor_clocksource`, which runs only on a bundle with an anchor report (a
    /// clocksource it refuses fails whatever the requirement; `anchors` says whether a report
    /// is required).
    pub fn offline_checks() -> BTreeMap<CheckId, Requirement> {
        let mut checks: BTreeMap<CheckId, Requirement> = CheckId::ALL
            .iter()
            .map(|c| (*c, Requirement::Required))
            .collect();
        checks.insert(CheckId::SessionSpki, Requirement::Optional);
        checks.insert(CheckId::AnchorClocksource, Requirement::Optional);
        checks
    }

    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        Ok(toml::from_str(text)?)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Validates values and loads the files the policy names through `load` (the caller
    /// resolves paths, e.g. relative to the policy file).
    pub fn resolve(
        &self,
        load: &dyn Fn(&str) -> Result<Vec<u8>, String>,
    ) -> Result<EvidencePolicy, PolicyError> {
        let read = |path: &str| {
            load(path).map_err(|reason| PolicyError::File {
                path: path.to_string(),
                reason,
            })
        };
        let certs = |paths: &[String]| -> Result<Vec<Vec<u8>>, PolicyError> {
            let mut out = Vec::new();
            for p in paths {
                out.extend(certificates_from_bytes(&read(p)?).map_err(|reason| {
                    PolicyError::File {
                        path: p.clone(),
                        reason,
                    }
                })?);
            }
            Ok(out)
        };
        let tdx_root = match self.tdx.root.as_deref() {
            None | Some("intel") => TrustRoot::IntelSgx,
            Some(path) => {
                let mut ders =
                    certificates_from_bytes(&read(path)?).map_err(|reason| PolicyError::File {
                        path: path.into(),
                        reason,
                    })?;
                if ders.len() != 1 {
                    return Err(PolicyError::Value {
                        field: "tdx.root".into(),
                        reason: format!("{} certificates, expected one", ders.len()),
                    });
                }
                TrustRoot::Configured(ders.remove(0))
            }
        };
        let tdx_collateral =
            match &self.tdx.collateral {
                None => None,
                Some(p) => Some(crate::verify::tdx::collateral_from_json(&read(p)?).map_err(
                    |e| PolicyError::Value {
                        field: "tdx.collateral".into(),
                        reason: e.to_string(),
                    },
                )?),
            };
        let mut pcr_reference = BTreeMap::new();
        for r in &self.reference.pcrs {
            if r.index > 23 {
                return Err(PolicyError::Value {
                    field: "reference.pcrs.index".into(),
                    reason: format!("PCR {} does not exist", r.index),
                });
            }
            let field = format!("reference.pcrs[{}].sha256", r.index);
            pcr_reference.insert(r.index, hex_array::<32>(field, &r.sha256)?);
        }
        let mut rtmr_reference = BTreeMap::new();
        for r in &self.reference.rtmrs {
            if r.index > 3 {
                return Err(PolicyError::Value {
                    field: "reference.rtmrs.index".into(),
                    reason: format!("RTMR{} does not exist", r.index),
                });
            }
            let field = format!("reference.rtmrs[{}].sha384", r.index);
            rtmr_reference.insert(r.index, hex_array::<48>(field, &r.sha384)?);
        }
        let mrtd_reference = match &self.reference.mrtd {
            None => None,
            Some(s) => Some(hex_array::<48>("reference.mrtd".into(), s)?),
        };
        let td_attributes_reference = match &self.reference.td_attributes {
            None => None,
            Some(s) => Some(hex_array::<8>("reference.td_attributes".into(), s)?),
        };
        let xfam_reference = match &self.reference.xfam {
            None => None,
            Some(s) => Some(hex_array::<8>("reference.xfam".into(), s)?),
        };
        let mr_config_id_reference = match &self.reference.mr_config_id {
            None => [0; 48],
            Some(s) => hex_array::<48>("reference.mr_config_id".into(), s)?,
        };
        let missing = self.unpinned();
        if !missing.is_empty() && !self.allow_unpinned_code {
            return Err(PolicyError::Unpinned { missing });
        }
        // `ek.roots` entries naming a built-in provider CA set (`gce`, see `cloud::roots`)
        // bring its roots and intermediates; the others are files.
        let mut ek_roots = Vec::new();
        let mut ek_intermediates = certs(&self.ek.intermediates)?;
        for r in &self.ek.roots {
            match crate::verify::cloud::roots::named_split(r) {
                Some((anchors, intermediates)) => {
                    ek_roots.extend(anchors);
                    ek_intermediates.extend(intermediates);
                }
                None => ek_roots.extend(certs(std::slice::from_ref(r))?),
            }
        }
        let min_binding_version = self.binding.min_version;
        if !(1..=locus_proto::binding::BINDING_VERSION).contains(&min_binding_version) {
            return Err(PolicyError::Value {
                field: "binding.min_version".into(),
                reason: format!(
                    "{min_binding_version}: this build knows binding versions 1 to {}",
                    locus_proto::binding::BINDING_VERSION
                ),
            });
        }
        Ok(EvidencePolicy {
            requirements: self.checks.clone(),
            nonce_issuer: self.nonce.issuer.clone(),
            nonce_max_age_secs: self.nonce.max_age_secs,
            ek_roots,
            ek_intermediates,
            tdx_root,
            tdx_collateral,
            pcr_reference,
            mrtd_reference,
            rtmr_reference,
            td_attributes_reference,
            xfam_reference,
            mr_config_id_reference,
            accept_tcb: self
                .tdx
                .accept_tcb
                .clone()
                .unwrap_or_else(|| DEFAULT_ACCEPT_TCB.to_vec()),
            unpinned_code: !missing.is_empty(),
            unpinned: missing,
            max_tpm_cheap_rtt_ns: self.timing.max_tpm_cheap_rtt_us.map(|u| u * 1000),
            max_tpm_chain_rtt_ns: self.timing.max_tpm_chain_rtt_us.map(|u| u * 1000),
            min_binding_version,
            anchors: match &self.anchors {
                None => None,
                Some(a) => Some(a.resolve(load).map_err(|e| PolicyError::Value {
                    field: "anchors".into(),
                    reason: e.to_string(),
                })?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_policy_round_trips_through_toml_and_unknown_keys_are_refused() {
        let p = PolicyFile::lab("ek.pem", "root.der", "coll.json", "me");
        let text = p.to_toml();
        assert_eq!(PolicyFile::from_toml(&text).unwrap(), p);
        for (table, line) in [
            ("", "surprise = 1"),
            ("[nonce]", "surprise = 1"),
            ("[ek]", "surprise = 1"),
            ("[tdx]", "surprise = 1"),
            ("[timing]", "surprise = 1"),
            ("[binding]", "surprise = 1"),
        ] {
            let bad = if table.is_empty() {
                format!("{line}\n{text}")
            } else {
                text.replace(table, &format!("{table}\n{line}"))
            };
            assert!(
                PolicyFile::from_toml(&bad).is_err(),
                "{table} accepted {line}"
            );
        }
        assert!(PolicyFile::from_toml("[checks]\nno_such_check = \"required\"\n").is_err());
    }

    #[test]
    fn a_policy_requires_binding_v2_unless_it_says_otherwise() {
        let load = |_: &str| Ok(Vec::new());
        // Pins are another check's business (issue 18, item 1).
        let unpinned = "allow_unpinned_code = true\n";
        let p = PolicyFile::from_toml(unpinned).unwrap();
        assert_eq!(p.resolve(&load).unwrap().min_binding_version, 2);
        let p = PolicyFile::from_toml(&format!("{unpinned}[binding]\nmin_version = 1\n")).unwrap();
        assert_eq!(p.resolve(&load).unwrap().min_binding_version, 1);
        for bad in [0, 3] {
            let p = PolicyFile::from_toml(&format!("{unpinned}[binding]\nmin_version = {bad}\n"))
                .unwrap();
            assert!(
                matches!(p.resolve(&load), Err(PolicyError::Value { field, .. }) if field == "binding.min_version"),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_reference_values_are_refused_when_resolving() {
        let mut p = PolicyFile::default();
        p.reference.pcrs.push(PcrReference {
            index: 3,
            sha256: "abcd".into(),
        });
        let e = p.resolve(&|_| Ok(Vec::new())).unwrap_err();
        assert!(matches!(e, PolicyError::Value { .. }), "{e}");
    }
}
