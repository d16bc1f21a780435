//! `locus policy init`: an evidence policy pinning what a known-good machine measured (golden
//! values), from one of its bundles. Pure: the bundle, the trust files' bytes and `now` in; the
//! commented policy TOML and the EK roots it names out.
//!
//! The bundle must verify under the policy it yields (signatures, bindings, collateral); checks
//! whose evidence this machine does not produce (no vTPM, no CCEL, ...) are made optional rather
//! than required, so the policy demands exactly what this machine gives.

use locus_proto::evidence::EvidenceBundle;
use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::verify::bundle::policy::{
    EkSection, NonceSection, PcrReference, PolicyFile, ReferenceSection, TdxSection, TimingSection,
};
use crate::verify::bundle::{
    verify_bundle, CheckId, NonceRecord, Outcome, PolicyError, Requirement, VerifyInputs,
};

/// Slack over the measured vTPM command time before `vtpm_timing` fails: a relayed vTPM adds its
/// network round trip (1 ms per 100 km of fiber there and back), so 3 ms ≈ 300 km at most; the
/// same margin as the verdict policy's `vtpm_relay_margin_ms`.
pub const VTPM_RELAY_MARGIN_US: u64 = 3_000;

/// Slack over the fastest signed vTPM quote (a chain link) before `vtpm_chain` fails, in
/// percent of it, on top of [`VTPM_RELAY_MARGIN_US`]: a quote's signing time varies with the
/// host's load far more than a cheap command's (swtpm: 3.4 ms median, tens of ms while builds
/// run), and a bound that fails honest bundles gets turned off. So 3.4 ms gives 9.8 ms: a relay
/// adding more than ~6.4 ms (≈ 640 km of fiber there and back) fails; one from another
/// region adds tens of ms.
pub const VTPM_CHAIN_SLACK_PERCENT: u64 = 100;

/// The `timing.max_tpm_chain_rtt_us` bound `policy init` writes for the fastest signed chain
/// link it measured (ns): that time plus [`VTPM_CHAIN_SLACK_PERCENT`] plus
/// [`VTPM_RELAY_MARGIN_US`].
pub fn chain_bound_us(fastest_link_ns: u64) -> u64 {
    let us = fastest_link_ns.div_ceil(1000);
    us + (us * VTPM_CHAIN_SLACK_PERCENT).div_ceil(100) + VTPM_RELAY_MARGIN_US
}

/// A trust file the policy names: the path as the policy writes it, and its bytes.
#[derive(Debug, Clone)]
pub struct NamedFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// What `init_policy` needs besides the bundle.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// TDX collateral (dcap-qvl JSON); without it the TDX quote's signature is not checked.
    pub tdx_collateral: Option<NamedFile>,
    /// TDX root CA; `None`: Intel's SGX root.
    pub tdx_root: Option<NamedFile>,
    /// Where the EK/AK roots seen in the bundle will be written (as the policy names it).
    pub ek_roots_path: String,
    /// The bundle's name, for the comments.
    pub bundle_name: String,
    /// The verifier name probers record in their nonce ledgers.
    pub nonce_issuer: String,
    /// Verification time, unix seconds.
    pub now_unix: u64,
}

/// The policy `init_policy` wrote.
#[derive(Debug, Clone)]
pub struct InitPolicy {
    pub file: PolicyFile,
    /// The policy as commented TOML.
    pub toml: String,
    /// PEM of the EK/AK chain roots seen, to write at `ek_roots_path` (none seen: `None`).
    pub ek_roots_pem: Option<String>,
    /// The measured in-TD vTPM command time, µs: this machine's Frankenstein baseline.
    pub vtpm_baseline_us: Option<f64>,
    /// Checks made optional because this bundle gives them nothing to check, with why.
    pub optional: Vec<(CheckId, String)>,
}

/// Why no policy was written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InitError {
    /// The bundle does not verify even under the policy pinned from it: it is no golden
    /// bundle (wrong collateral or root, tampered, or stale). Fix the named checks first.
    #[error("the bundle does not verify under the policy captured from it: {}", failed.join("; "))]
    BundleInvalid { failed: Vec<String> },
    /// A trust file given could not be used.
    #[error("{0}")]
    Policy(#[from] PolicyError),
}

/// Subject/issuer walk from `leaf` through `pool` to the highest certificate present (a
/// self-signed root when the bundle carries one). Names only: `ek_chain` checks signatures.
fn chain_top<'a>(leaf: &'a [u8], pool: &'a [Vec<u8>]) -> Option<&'a [u8]> {
    let mut current = X509Certificate::from_der(leaf).ok()?.1;
    let mut top = leaf;
    for _ in 0..8 {
        if current.subject() == current.issuer() {
            break;
        }
        let next = pool.iter().find_map(|der| {
            let c = X509Certificate::from_der(der).ok()?.1;
            (c.subject() == current.issuer()).then_some((der.as_slice(), c))
        });
        match next {
            Some((der, c)) => {
                top = der;
                current = c;
            }
            None => break,
        }
    }
    Some(top)
}

/// The roots of every EK and AK certificate chain in the bundle, deduplicated.
fn roots_seen(b: &EvidenceBundle) -> Vec<Vec<u8>> {
    let Some(t) = &b.tpm else {
        return Vec::new();
    };
    let pool: Vec<Vec<u8>> = t.ca_certs.iter().map(|c| c.to_vec()).collect();
    let leaves = t
        .ek_certs
        .iter()
        .map(|c| c.der.as_slice())
        .chain(t.ak_cert.as_deref());
    let mut out: Vec<Vec<u8>> = Vec::new();
    for leaf in leaves {
        if let Some(top) = chain_top(leaf, &pool) {
            // A leaf with no issuer in the bundle is pinned itself.
            if !out.iter().any(|o| o == top) {
                out.push(top.to_vec());
            }
        }
    }
    out
}

/// The policy pinning what `b` measured; see the module doc.
pub fn init_policy(b: &EvidenceBundle, opts: &InitOptions) -> Result<InitPolicy, InitError> {
    let mut reference = ReferenceSection::default();
    // MRTD, RTMR0-3, TD attributes, XFAM and MRCONFIGID as the TD quote reports them.
    let td_pinned = b.tdx.as_ref().is_some_and(|t| reference.pin_td(&t.quote));
    if let Some(t) = &b.tpm {
        reference.pcrs = t
            .pcrs
            .iter()
            .filter(|p| p.alg == crate::verify::tpm::ALG_SHA256)
            .map(|p| PcrReference {
                index: p.index,
                sha256: hex::encode(&p.digest),
            })
            .collect();
    }
    let baseline_ns = b.timings.tpm_cheap_rtt_min_ns;
    // The fastest signed chain link (the main quote is left out: its qualifying data is known
    // to the vTPM's transport, `docs/binding.md`, "Version 3").
    let chain_ns = b.timings.tpm_chain_ns.iter().copied().min();
    let roots = roots_seen(b);
    let ek_roots_pem = (!roots.is_empty()).then(|| {
        roots
            .iter()
            .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.clone())))
            .collect::<String>()
    });

    let mut checks = PolicyFile::offline_checks();
    // Anchors need an [anchors] section the operator writes.
    checks.insert(CheckId::Anchors, Requirement::Optional);
    if chain_ns.is_none() {
        // No chain to bound (no vTPM part, or an older bundle): the check runs when a bundle
        // has one, and a required one without a bound is refused at load.
        checks.insert(CheckId::VtpmChain, Requirement::Optional);
    }
    let mut file = PolicyFile {
        // Without a TD quote there is no code to pin: the policy says so, and verdicts under
        // it are at most `inconclusive`.
        allow_unpinned_code: !td_pinned,
        checks,
        nonce: NonceSection {
            issuer: opts.nonce_issuer.clone(),
            ..Default::default()
        },
        ek: EkSection {
            roots: ek_roots_pem
                .as_ref()
                .map(|_| vec![opts.ek_roots_path.clone()])
                .unwrap_or_default(),
            intermediates: Vec::new(),
        },
        tdx: TdxSection {
            root: opts.tdx_root.as_ref().map(|r| r.path.clone()),
            collateral: opts.tdx_collateral.as_ref().map(|c| c.path.clone()),
            // The TCB statuses accepted stay the verifier's default (UpToDate).
            accept_tcb: None,
        },
        reference,
        timing: TimingSection {
            max_tpm_cheap_rtt_us: baseline_ns.map(|ns| ns.div_ceil(1000) + VTPM_RELAY_MARGIN_US),
            max_tpm_chain_rtt_us: chain_ns.map(chain_bound_us),
        },
        binding: Default::default(),
        anchors: None,
    };

    // Verify the bundle under it, with the files in memory and its nonce as freshly ours.
    let mut files: Vec<(&str, &[u8])> = Vec::new();
    for f in [&opts.tdx_collateral, &opts.tdx_root].into_iter().flatten() {
        files.push((&f.path, &f.bytes));
    }
    if let Some(pem) = &ek_roots_pem {
        files.push((&opts.ek_roots_path, pem.as_bytes()));
    }
    let load = |path: &str| {
        files
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, b)| b.to_vec())
            .ok_or_else(|| format!("{path}: not given"))
    };
    let policy = file.resolve(&load)?;
    let inputs = VerifyInputs {
        now_unix: opts.now_unix,
        nonce_record: Some(NonceRecord {
            nonce: b.nonce.clone(),
            issuer: opts.nonce_issuer.clone(),
            issued_at: opts.now_unix,
            used: false,
        }),
        peer_spki: None,
    };
    let report = verify_bundle(b, &policy, &inputs);
    let mut failed = Vec::new();
    let mut optional = Vec::new();
    for c in &report.checks {
        match &c.outcome {
            Outcome::Fail(e) => failed.push(format!("{}: {e}", c.check)),
            Outcome::Skipped(why) if c.requirement == Requirement::Required => {
                file.checks.insert(c.check, Requirement::Optional);
                optional.push((c.check, why.clone()));
            }
            _ => {}
        }
    }
    if !failed.is_empty() {
        return Err(InitError::BundleInvalid { failed });
    }
    let toml = commented(&file, opts, baseline_ns, chain_ns, &optional);
    Ok(InitPolicy {
        file,
        toml,
        ek_roots_pem,
        vtpm_baseline_us: baseline_ns.map(|ns| ns as f64 / 1000.0),
        optional,
    })
}

/// The policy's TOML with a comment before each pinned value saying where it came from.
fn commented(
    file: &PolicyFile,
    opts: &InitOptions,
    baseline_ns: Option<u64>,
    chain_ns: Option<u64>,
    optional: &[(CheckId, String)],
) -> String {
    let src = &opts.bundle_name;
    let mut out = format!(
        "# Evidence policy written by `locus policy init --from-bundle {src}`: golden values\n\
         # measured by the machine that produced that bundle. Verify a bundle with\n\
         # `locus verify evidence BUNDLE --policy THIS --nonce-ledger BUNDLE.nonces.json`.\n\
         # Paths are relative to this file. Review before trusting: a value pinned here is only\n\
         # as good as the machine it was captured on.\n"
    );
    for (c, why) in optional {
        out.push_str(&format!(
            "# {c}: optional, this machine's bundle gives it nothing to check ({why})\n"
        ));
    }
    let mut seen_pcrs = false;
    let mut seen_rtmrs = false;
    for line in file.to_toml().lines() {
        let note = match line.trim() {
            "[checks]" => Some(
                "Which checks a bundle must pass (required), may skip (optional) or never runs \
                 (off)."
                    .to_string(),
            ),
            "[nonce]" => Some(format!(
                "Nonces come from probers recording issuer {:?} in their ledger \
                 (`locus prober --evidence-out`).",
                opts.nonce_issuer
            )),
            "[ek]" => Some(format!(
                "EK/AK certificate chain roots seen in {src} (the highest certificate of each \
                 chain it carries)."
            )),
            "[tdx]" => Some(match &opts.tdx_root {
                None => {
                    "TDX quotes chain to Intel's SGX root CA with the given collateral.".to_string()
                }
                Some(r) => format!(
                    "TDX quotes chain to the root in {} (not Intel's: verdicts under it say so).",
                    r.path
                ),
            }),
            "[reference]" => Some(format!(
                "Golden measurements from the TD quote (MRTD, TD attributes, XFAM, MRCONFIGID, \
                 RTMR0-3) and the vTPM quote (PCRs) of {src}."
            )),
            "[[reference.pcrs]]" if !seen_pcrs => {
                seen_pcrs = true;
                Some("SHA-256 PCRs the vTPM quote covers, as quoted.".to_string())
            }
            "[[reference.rtmrs]]" if !seen_rtmrs => {
                seen_rtmrs = true;
                Some(
                    "RTMR0-3 of the TD quote (RTMR0: firmware config, 1: OS loader, 2: OS, 3: \
                      unused by most guests)."
                        .to_string(),
                )
            }
            "[timing]" => Some(match baseline_ns {
                Some(ns) => format!(
                    "Frankenstein baseline: the fastest in-TD vTPM command took {:.1} µs on this \
                     machine; a relayed vTPM adds its network round trip, so fail above the \
                     baseline + {} µs. `locus judge` and `locus monitor` verifying bundles \
                     under this policy judge Frankenstein by this bound too (in place of the \
                     verdict policy's max_vtpm_cmd_rtt_ms, which swtpm set).",
                    ns as f64 / 1000.0,
                    VTPM_RELAY_MARGIN_US
                ),
                None => "No vTPM timing in the bundle.".to_string(),
            }),
            l if l.starts_with("max_tpm_chain_rtt_us =") => chain_ns.map(|ns| {
                format!(
                    "The fastest AK-signed vTPM quote (chain link) took {:.1} µs on this \
                     machine; the bound adds {VTPM_CHAIN_SLACK_PERCENT} % and {} µs for a \
                     relay. This is the vTPM distance check a host stub cannot fake \
                     (vtpm_chain), and the Frankenstein bound of `locus judge` and `locus \
                     monitor` under this policy.",
                    ns as f64 / 1000.0,
                    VTPM_RELAY_MARGIN_US
                )
            }),
            l if l.starts_with("mrtd =") => Some("MRTD: the TD's initial memory image.".into()),
            l if l.starts_with("td_attributes =") => {
                Some("TD attributes (bit 0: debug; must stay 0 in production).".into())
            }
            l if l.starts_with("xfam =") => {
                Some("XFAM: CPU extended features enabled for the TD.".into())
            }
            _ => None,
        };
        if let Some(n) = note {
            if !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push_str(&format!("# {n}\n"));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_top_stops_at_a_leaf_without_issuer_in_the_pool() {
        // Not a certificate: nothing to walk, nothing pinned.
        assert_eq!(chain_top(b"junk", &[]), None);
    }
}
