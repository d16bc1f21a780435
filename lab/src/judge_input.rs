//! What `locus judge` judges, read from files: a samples file, each node's evidence from a
//! directory (a lab output directory or its `evidence/`: summaries, or bundles verified here),
//! a signed inventory and Intel POEs. The judging itself is `locus_analysis::judge` (pure).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use locus_analysis::verify::endorse::{verifying_key_from_pem, Endorsement, SignedInventory};
use locus_analysis::verify::poe::PoeEndorsement;
use locus_analysis::{BundleFindings, EvidenceSummary, NodeInput, SamplesFile};
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

/// The verification policy for bundles: `--evidence-policy`, else `policy.toml` next to the
/// evidence or one level up (a lab output directory).
fn bundle_policy(dir: &Path, given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(crate::POLICY_FILE))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} holds evidence bundles but no verification policy was found: pass \
                 --evidence-policy FILE (as for `locus verify evidence --policy`)",
                dir.display()
            )
        })
}

/// Replaces each node's evidence with `NAME.json` (a summary) or `NAME.bundle` (verified
/// here) from `dir` or `dir/evidence`.
pub fn attach_evidence(
    file: &mut SamplesFile,
    dir: &Path,
    policy: Option<&Path>,
    at: Option<u64>,
) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("evidence directory {} does not exist", dir.display());
    }
    let dirs = [dir.to_path_buf(), dir.join("evidence")];
    let find = |name: &str, ext: &str| {
        dirs.iter()
            .map(|d| d.join(format!("{name}.{ext}")))
            .find(|p| p.is_file())
    };
    let mut verifier: Option<BundleVerifier> = None;
    for node in &mut file.nodes {
        match (find(&node.name, "json"), find(&node.name, "bundle")) {
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
                node.evidence = Some(ev);
            }
            (None, Some(path)) => {
                let v = match &mut verifier {
                    Some(v) => v,
                    None => {
                        let p = bundle_policy(dir, policy)?;
                        tracing::info!("verifying bundles under {}", p.display());
                        verifier.insert(BundleVerifier::load(&p, None)?)
                    }
                };
                attach_bundle(node, v, &path, at)?;
            }
            (None, None) => {
                tracing::debug!(node = %node.name, "no evidence in {}", dir.display());
            }
        }
    }
    Ok(())
}

/// Verifies one stored bundle (as `locus verify evidence` does) and takes what the lab takes
/// from it: the evidence summary, the in-TD timings and the verified anchor round trips.
fn attach_bundle(
    node: &mut NodeInput,
    verifier: &BundleVerifier,
    path: &Path,
    at: Option<u64>,
) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading bundle {}", path.display()))?;
    let bundle = match EvidenceBundle::from_cbor(&bytes) {
        Ok(b) => b,
        Err(e) => {
            // `bundle_format` fails and names itself in the summary
            tracing::info!(node = %node.name, "{} does not decode: {e}", path.display());
            let report = verifier.verify_bytes(&bytes, at.map_or_else(unix_now, Ok)?, None);
            node.evidence = Some(EvidenceSummary::from_report(&report));
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
    let anchors = verifier.policy.anchors.as_ref();
    let found = BundleFindings::new(&bundle, &report, anchors, now);
    node.evidence = Some(found.evidence);
    node.in_td = found.in_td;
    if bundle.anchors.is_some() && anchors.is_some() {
        node.anchors = found.anchors;
    }
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
