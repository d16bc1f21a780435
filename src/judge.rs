//! `locus judge`: verdicts on stored samples and evidence summaries, offline.
//!
//! Exit codes: 0 every node `located`; 1 any other verdict; 2 unreadable input.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use locus_analysis::endorse::{verifying_key_from_pem, Endorsement, SignedInventory};
use locus_analysis::{judge, EvidenceSummary, Judgement, Policy, SamplesFile};
use serde::Serialize;

#[derive(Args)]
pub(crate) struct JudgeArgs {
    /// Samples file (JSON; format in docs/judge.md).
    #[arg(long)]
    samples: PathBuf,
    /// Directory of evidence summaries, `NODE.json` per node; they replace the `evidence`
    /// field of that node in the samples file.
    #[arg(long)]
    evidence: Option<PathBuf>,
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
    /// Time (unix seconds) at which the inventory's validity is checked; default now.
    #[arg(long)]
    at: Option<u64>,
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
    let mut file = load_samples(&args.samples)?;
    if let Some(dir) = &args.evidence {
        attach_evidence(&mut file, dir)?;
    }
    if let (Some(inv), Some(key)) = (&args.inventory, &args.inventory_key) {
        attach_endorsements(&mut file, inv, key, args.at)?;
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

/// Replace each node's evidence with `DIR/NAME.json` when that file exists.
fn attach_evidence(file: &mut SamplesFile, dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("evidence directory {} does not exist", dir.display());
    }
    for node in &mut file.nodes {
        let path = dir.join(format!("{}.json", node.name));
        if !path.exists() {
            tracing::debug!(node = %node.name, "no evidence summary at {}", path.display());
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading evidence summary {}", path.display()))?;
        let ev: EvidenceSummary = serde_json::from_str(&text)
            .with_context(|| format!("evidence summary {} is malformed", path.display()))?;
        node.evidence = Some(ev);
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
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_secs(),
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
