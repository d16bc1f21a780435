//! `locus judge`: verdicts on stored samples, evidence (summaries or bundles) and
//! endorsements (signed inventory, Intel POEs), offline.
//!
//! Exit codes: 0 every node `located`; 1 any other verdict; 2 unreadable input.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use locus_analysis::verify::endorse::{verifying_key_from_pem, Endorsement, SignedInventory};
use locus_analysis::verify::poe::PoeEndorsement;
use locus_analysis::{
    judge, BundleFindings, EvidenceSummary, Judgement, NodeInput, Policy, SamplesFile,
};
use locus_proto::evidence::EvidenceBundle;
use serde::Serialize;

use crate::verify::at::parse_at;
use crate::verify::evidence::{unix_now, BundleVerifier};

#[derive(Args)]
pub(crate) struct JudgeArgs {
    /// Samples file (JSON; format in docs/judge.md).
    #[arg(long)]
    samples: PathBuf,
    /// Evidence per node, in DIR or DIR/evidence (a lab output directory): `NODE.json`, an
    /// evidence summary, or `NODE.bundle`, an evidence bundle verified here under
    /// --evidence-policy (its summary, in-TD timings and verified anchors replace the node's).
    #[arg(long, value_name = "DIR")]
    evidence: Option<PathBuf>,
    /// Verification policy for bundles (TOML, as for `locus verify evidence --policy`);
    /// default: `policy.toml` in the evidence directory or its parent (a lab output directory).
    #[arg(long, value_name = "FILE")]
    evidence_policy: Option<PathBuf>,
    /// Verdict policy (TOML; config/policy.example.toml). Defaults when absent.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Signed platform inventory (JSON, docs/judge.md): each node's evidence `platform_id` is
    /// looked up in it and the endorsement joins the verdict.
    #[arg(long, requires = "inventory_key")]
    inventory: Option<PathBuf>,
    /// The inventory signer's P-256 public key (PEM SubjectPublicKeyInfo).
    #[arg(long, requires = "inventory")]
    inventory_key: Option<PathBuf>,
    /// Intel Platform Ownership Endorsement (COSE_Sign1 CoRIM, docs/poe.md), repeatable: each
    /// node gets the POE binding the PIID its verified evidence names.
    #[arg(long, value_name = "FILE", requires = "poe_anchor")]
    poe: Vec<PathBuf>,
    /// Trust anchor for POE issuers: a root certificate (PEM or DER), repeatable.
    #[arg(long, value_name = "FILE", requires = "poe")]
    poe_anchor: Vec<PathBuf>,
    /// Verification time (RFC 3339 or unix seconds) for the inventory, POEs and bundles;
    /// default: now, and each bundle at the time its nonce was issued.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Judge only these nodes (repeatable).
    #[arg(long)]
    node: Vec<String>,
    /// Print the judgements as JSON to stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Output<'a> {
    version: u32,
    all_located: bool,
    nodes: &'a [Judgement],
}

pub(crate) fn run(args: JudgeArgs) -> anyhow::Result<ExitCode> {
    let policy = match &args.policy {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading policy {}", p.display()))?;
            Policy::from_toml_str(&text).with_context(|| format!("policy {}", p.display()))?
        }
        None => Policy::default(),
    };
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let mut file = load_samples(&args.samples)?;
    if let Some(dir) = &args.evidence {
        attach_evidence(&mut file, dir, args.evidence_policy.as_deref(), at)?;
    }
    if let (Some(inv), Some(key)) = (&args.inventory, &args.inventory_key) {
        attach_endorsements(&mut file, inv, key, at)?;
    }
    if !args.poe.is_empty() {
        attach_poes(&mut file, &args.poe, &args.poe_anchor, at)?;
    }
    let world = file.world();
    let problems = world.problems();
    if !problems.is_empty() {
        bail!(
            "samples file {}: {}",
            args.samples.display(),
            problems.join("; ")
        );
    }
    for n in &args.node {
        if !file.nodes.iter().any(|x| &x.name == n) {
            bail!("no node named {n} in {}", args.samples.display());
        }
    }
    let judgements: Vec<Judgement> = file
        .nodes
        .iter()
        .filter(|n| args.node.is_empty() || args.node.contains(&n.name))
        .map(|n| judge(&world, n, &policy))
        .collect();
    if judgements.is_empty() {
        bail!("{} holds no nodes", args.samples.display());
    }
    let all_located = judgements.iter().all(|j| j.verdict.is_located());
    if args.json {
        let out = Output {
            version: 1,
            all_located,
            nodes: &judgements,
        };
        print_out(&serde_json::to_string_pretty(&out)?);
    } else {
        print_out(&table(&judgements));
    }
    Ok(if all_located {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn load_samples(path: &Path) -> anyhow::Result<SamplesFile> {
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
        .map(|d| d.join(crate::lab::POLICY_FILE))
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
fn attach_evidence(
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
fn attach_poes(
    file: &mut SamplesFile,
    poes: &[PathBuf],
    anchors: &[PathBuf],
    at: Option<u64>,
) -> anyhow::Result<()> {
    let anchors = crate::endorse::poe::read_anchors(anchors)?;
    let now = match at {
        Some(t) => t,
        None => unix_now()?,
    };
    let verified = poes
        .iter()
        .map(|p| crate::endorse::poe::verify_file(p, &anchors, now))
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
fn attach_endorsements(
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

fn table(js: &[Judgement]) -> String {
    let mut s = String::new();
    for j in js {
        let _ = writeln!(s, "{:<20} claim {:<8} {}", j.name, j.claim, j.verdict);
        for r in &j.reasons {
            let _ = writeln!(s, "    {r}");
        }
    }
    s
}

#[expect(clippy::print_stdout, reason = "the CLI's result goes to stdout")]
fn print_out(s: &str) {
    println!("{}", s.trim_end());
}
