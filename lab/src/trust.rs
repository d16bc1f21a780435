//! The lab's trust material, verification policy and verdict policy, written into the output
//! directory so that `locus verify evidence DIR/evidence/NAME.bundle --policy DIR/policy.toml
//! --at T` re-checks a bundle offline, and `locus judge --evidence-policy DIR/policy.toml
//! --policy DIR/verdict-policy.toml` re-judges the run.

use std::path::Path;

use anyhow::Context;
use locus_analysis::verify::anchor::{AnchorEntry, AnchorPolicyFile, TrustEntry};
use locus_analysis::verify::bundle::nonce::NonceLedger;
use locus_analysis::verify::bundle::policy::PolicyFile;
use locus_analysis::verify::bundle::{CheckId, EvidencePolicy, Requirement};

use locus_responder::tdx::TdxQuoter;

use crate::emulation::NONCE_ISSUER;
use crate::scenario::Scenario;
use crate::world::{anchor_name, LabTrust};

const TDX_ROOT: &str = "trust/lab-tdx-root.der";
const TDX_COLLATERAL: &str = "trust/lab-tdx-collateral.json";
const EK_CA: &str = "trust/swtpm-ek-ca.pem";
const ANCHOR_CA: &str = "trust/lab-anchor-ca.pem";
pub(crate) const NONCES: &str = "trust/nonces.json";
pub(crate) const POLICY: &str = crate::POLICY_FILE;

/// Writes the trust files, the nonce ledger and `policy.toml` under `out`.
pub(crate) fn write(
    out: &Path,
    s: &Scenario,
    trust: &LabTrust,
    ledger: &NonceLedger,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("trust"))?;
    let write = |rel: &str, bytes: &[u8]| {
        std::fs::write(out.join(rel), bytes).with_context(|| format!("writing {rel}"))
    };
    write(TDX_ROOT, trust.tdx.root_ca_der())?;
    write(
        TDX_COLLATERAL,
        &serde_json::to_vec_pretty(trust.tdx.collateral())?,
    )?;
    write(EK_CA, trust.ek_ca_pem.as_bytes())?;
    write(ANCHOR_CA, trust.anchor_ca.cert_pem().as_bytes())?;
    write(NONCES, &serde_json::to_vec_pretty(&ledger.records())?)?;
    let mut policy = PolicyFile::lab(EK_CA, TDX_ROOT, TDX_COLLATERAL, NONCE_ISSUER);
    // The lab makes its TD's quotes, so it knows the TD's measurements: pin them from one.
    let quote = trust.tdx.quoter().quote([0; 64])?;
    anyhow::ensure!(policy.reference.pin_td(&quote), "lab TDX quote too short");
    policy.nonce.ledger = Some(NONCES.to_string());
    policy.anchors = Some(AnchorPolicyFile {
        km_per_ms_rtt: None,
        recheck_handshake: Some(true),
        allow_unpinned: false,
        // the clock the lab's responders timed with: `tsc`, and this machine's if it is not
        allow_clocksource: Some(locus_anchors::ClockOptions::lab().allow),
        require_clocksource: None,
        anchor: s
            .anchors
            .iter()
            .enumerate()
            .map(|(k, &site)| {
                let name = anchor_name(s, k, site);
                AnchorEntry {
                    sni: Some(format!("{name}.lab")),
                    name,
                    target: None,
                    site: Some(s.sites[site].name.clone()),
                    lat: Some(s.sites[site].lat),
                    lon: Some(s.sites[site].lon),
                    // pinned, like a production policy: the lab knows its anchors' keys
                    trust: TrustEntry::SpkiSha256(hex::encode(trust.anchor_pins[k])),
                }
            })
            .collect(),
    });
    policy
        .checks
        .insert(CheckId::Anchors, Requirement::Required);
    policy
        .checks
        .insert(CheckId::AnchorClocksource, Requirement::Required);
    let text = format!(
        "# Verification policy of this lab run. Paths are relative to this file.\n\
         # The TDX root is the lab's own root, not Intel's: verdicts under it say so.\n{}",
        policy.to_toml()
    );
    write(POLICY, text.as_bytes())?;
    // `Policy::lab()` as a file: the defaults, except that the lab root is accepted and the
    // evidence round trip has the relay's allowance.
    let verdict = format!(
        "# Verdict policy of this lab run (locus judge --policy): the defaults, except that\n\
         # evidence under the lab's own TDX root is accepted and evidence round trips may exceed\n\
         # echo round trips by what the lab's relay adds to a large answer. Never use it for\n\
         # real nodes.\n\
         accept_lab_root = true\n\
         max_evidence_excess_ms = {:.1}\n",
        locus_analysis::policy::LAB_MAX_EVIDENCE_EXCESS_MS
    );
    write(crate::VERDICT_POLICY_FILE, verdict.as_bytes())
}

/// Loads `policy.toml` back from `out`, exactly as `locus verify evidence` will.
pub(crate) fn evidence_policy(out: &Path) -> anyhow::Result<EvidencePolicy> {
    Ok(locus_fleet::verifier::load_policy(&out.join(POLICY))?.1)
}
