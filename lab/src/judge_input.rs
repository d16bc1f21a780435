//! What `locus judge` judges, read from files: a samples file, each node's evidence from a
//! directory (a lab output directory or its `evidence/`: bundles verified here under a policy
//! the caller names, or summaries the caller chose to trust), a signed inventory and Intel
//! POEs. Nothing in the judged data is trusted because it is there. The judging itself is `locus_analysis::judge` (pure).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use locus_analysis::verify::bundle::EvidencePolicy;
use locus_analysis::verify::endorse::{verifying_key_from_pem, Endorsement, SignedInventory};
use locus_analysis::verify::poe::PoeEndorsement;
use locus_analysis::{
    BundleFindings, EvidenceSource, EvidenceSummary, InTdTimings, NodeInput, RefusedEvidence,
    SamplesFile,
};
use locus_fleet::time::unix_now;
use locus_fleet::verifier::BundleVerifier;
use locus_proto::evidence::EvidenceBundle;

/// Reads a samples file (JSON, docs/judge.md) of the version this build reads.
pub fn load_samples(path: &Path) -> anyhow::Result<SamplesFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading samples {}", path.display()))?;
    let file: SamplesFile = serde_json::from_str(&text)
        .with_context(|| format!("samples {} is not a valid samples file", path.display()))?;
    if file.version != locus_analysis::input::SAMPLES_VERSION {
        bail!(
            "samples {} has version {}, this build reads {}",
            path.display(),
            file.version,
            locus_analysis::input::SAMPLES_VERSION
        );
    }
    Ok(file)
}

/// How `locus judge` treats the evidence it reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvidenceTrust<'a> {
    /// The verification policy for bundles (`--evidence-policy`). Without one, bundles are not
    /// verified and count for nothing: trust roots and the nonce ledger are never taken from the
    /// directory being judged.
    pub policy: Option<&'a Path>,
    /// Use unsigned summaries (`NODE.json` and the samples file's own `evidence`, `in_td` and
    /// `anchors`) as they are (`--trust-summaries`).
    pub trust_summaries: bool,
    /// Verification time for bundles (`--at`); default: when each bundle's nonce was issued.
    pub at: Option<u64>,
}

/// Without `--trust-summaries`, drops what the samples file says about each node's evidence,
/// in-TD timings, anchors, platform endorsement, POE and RTT baseline: unsigned claims that
/// only a verified bundle, `--inventory` or `--poe` may supply. (A made-up endorsement would
/// satisfy `require_endorsement`, skip the POE binding or hide a platform missing from the
/// inventory; a made-up baseline would move the relocation check.)
pub fn distrust_inline_summaries(file: &mut SamplesFile, source: &Path) {
    for node in &mut file.nodes {
        let dropped: Vec<&str> = [
            ("endorsement", node.endorsement.take().is_some()),
            ("poe", node.poe.take().is_some()),
            ("baseline", !std::mem::take(&mut node.baseline).is_empty()),
        ]
        .into_iter()
        .filter_map(|(k, had)| had.then_some(k))
        .collect();
        if !dropped.is_empty() {
            tracing::warn!(
                node = %node.name,
                fields = %dropped.join(", "),
                "ignoring the samples file's unsigned {} (pass --trust-summaries to use them)",
                dropped.join(", ")
            );
        }
        if node.evidence.take().is_some() {
            node.refused_evidence
                .push(RefusedEvidence::UnsignedSummary {
                    origin: format!("in {}", source.display()),
                });
        }
        node.in_td = InTdTimings::default();
        node.anchors.clear();
        node.failed_anchors.clear();
    }
}

/// Marks each node's samples-file evidence as trusted by the operator (`--trust-summaries`).
pub fn trust_inline_summaries(file: &mut SamplesFile, source: &Path) {
    for node in &mut file.nodes {
        if node.evidence.is_some() {
            node.evidence_source = EvidenceSource::TrustedSummary {
                source: format!("in {}", source.display()),
            };
        }
    }
}

/// Replaces each node's evidence with `NAME.json` (a summary, used only when trusted) or
/// `NAME.bundle` (verified here under the given policy) from `dir` or `dir/evidence`. Returns
/// the evidence policy bundles were verified under, if any (its vTPM bounds calibrate the
/// verdict policy: `Policy::calibrated_vtpm`).
pub fn attach_evidence(
    file: &mut SamplesFile,
    dir: &Path,
    trust: EvidenceTrust<'_>,
) -> anyhow::Result<Option<EvidencePolicy>> {
    if !dir.is_dir() {
        bail!("evidence directory {} does not exist", dir.display());
    }
    let dirs = [dir.to_path_buf(), dir.join("evidence")];
    let find = |name: &str, ext: &str| {
        dirs.iter()
            .map(|d| d.join(format!("{name}.{ext}")))
            .find(|p| p.is_file())
    };
    let verifier = match trust.policy {
        Some(p) => {
            tracing::info!("verifying bundles under {}", p.display());
            Some(BundleVerifier::load(p, None)?)
        }
        None => None,
    };
    for node in &mut file.nodes {
        let found = (find(&node.name, "json"), find(&node.name, "bundle"));
        if found.0.is_some() || found.1.is_some() {
            // what is found here supersedes the samples file's own (refused) summary
            node.refused_evidence.clear();
        }
        match found {
            (Some(j), Some(b)) => bail!(
                "node {} has both {} and {}: keep one",
                node.name,
                j.display(),
                b.display()
            ),
            (Some(path), None) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading evidence summary {}", path.display()))?;
                let ev: EvidenceSummary = serde_json::from_str(&text)
                    .with_context(|| format!("evidence summary {} is malformed", path.display()))?;
                let source = path.display().to_string();
                if trust.trust_summaries {
                    node.evidence = Some(ev);
                    node.evidence_source = EvidenceSource::TrustedSummary { source };
                } else {
                    tracing::warn!(node = %node.name, "unsigned summary {source} not used");
                    node.evidence = None;
                    node.refused_evidence
                        .push(RefusedEvidence::UnsignedSummary { origin: source });
                }
            }
            (None, Some(path)) => match &verifier {
                Some(v) => attach_bundle(node, v, &path, trust.at)?,
                None => {
                    tracing::warn!(node = %node.name, "{} not verified: no --evidence-policy", path.display());
                    node.evidence = None;
                    node.evidence_source = EvidenceSource::Unspecified;
                    node.refused_evidence
                        .push(RefusedEvidence::UnverifiedBundle {
                            path: path.display().to_string(),
                        });
                }
            },
            (None, None) => {
                tracing::debug!(node = %node.name, "no evidence in {}", dir.display());
            }
        }
    }
    Ok(verifier.map(|v| v.policy))
}

/// Verifies one stored bundle (as `locus verify evidence` does) and takes what the lab takes
/// from it: the evidence summary, the in-TD timings and the verified anchor round trips
/// (anchors come only from here: none when the bundle or the policy has none).
fn attach_bundle(
    node: &mut NodeInput,
    verifier: &BundleVerifier,
    path: &Path,
    at: Option<u64>,
) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading bundle {}", path.display()))?;
    node.evidence_source = EvidenceSource::VerifiedBundle;
    let bundle = match EvidenceBundle::from_cbor(&bytes) {
        Ok(b) => b,
        Err(e) => {
            // `bundle_format` fails and names itself in the summary
            tracing::info!(node = %node.name, "{} does not decode: {e}", path.display());
            let report = verifier.verify_bytes(&bytes, at.map_or_else(unix_now, Ok)?, None);
            node.evidence = Some(EvidenceSummary::from_report(&report));
            node.in_td = InTdTimings::default();
            node.anchors.clear();
            node.failed_anchors.clear();
            return Ok(());
        }
    };
    // Offline, the bundle is checked as of when its nonce was issued (collection followed
    // within the nonce's lifetime), unless a time is given.
    let now = match at.or_else(|| verifier.issued_at(&bundle)) {
        Some(t) => t,
        None => unix_now()?,
    };
    let report = verifier.verify(&bundle, now, None);
    let failed: Vec<&str> = report.failed().iter().map(|c| c.name()).collect();
    tracing::info!(node = %node.name, at = now, ?failed, "verified {}", path.display());
    BundleFindings::new(&bundle, &report, verifier.policy.anchors.as_ref(), now).apply_to(node);
    Ok(())
}

/// Verifies every POE under the anchors and gives each node the one binding its PIID.
pub fn attach_poes(
    file: &mut SamplesFile,
    poes: &[PathBuf],
    anchors: &[PathBuf],
    at: Option<u64>,
) -> anyhow::Result<()> {
    let anchors = crate::poe::read_anchors(anchors)?;
    let now = match at {
        Some(t) => t,
        None => unix_now()?,
    };
    let verified = poes
        .iter()
        .map(|p| crate::poe::verify_file(p, &anchors, now))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for node in &mut file.nodes {
        let id = node
            .evidence
            .as_ref()
            .and_then(|e| e.platform_id.as_deref());
        node.poe = Some(PoeEndorsement::resolve(&verified, id));
    }
    Ok(())
}

/// Resolve every node's endorsement from the signed inventory. An inventory that fails to
/// verify is recorded per node (the policy decides whether that is fatal for the verdict).
pub fn attach_endorsements(
    file: &mut SamplesFile,
    inventory: &Path,
    key: &Path,
    at: Option<u64>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(inventory)
        .with_context(|| format!("reading inventory {}", inventory.display()))?;
    let signed: SignedInventory = serde_json::from_str(&text)
        .with_context(|| format!("inventory {} is malformed", inventory.display()))?;
    let pem = std::fs::read_to_string(key)
        .with_context(|| format!("reading inventory key {}", key.display()))?;
    let key = verifying_key_from_pem(&pem).with_context(|| format!("{}", inventory.display()))?;
    let now = match at {
        Some(t) => t,
        None => unix_now()?,
    };
    for node in &mut file.nodes {
        let id = node
            .evidence
            .as_ref()
            .and_then(|e| e.platform_id.as_deref());
        node.endorsement = Some(Endorsement::resolve(&signed, &key, now, id));
    }
    Ok(())
}
