//! `locus judge`: verdicts on stored samples, evidence (summaries or bundles) and
//! endorsements (signed inventory, Intel POEs), offline; or, with `--db`, on a prober store
//! (rounds, evidence, landmark rounds) exactly as `locus monitor --once` judges it, read-only.
//!
//! Exit codes: 0 every node `located`; 1 any other verdict; 2 unreadable input.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use locus_analysis::{judge, Judgement};
use locus_fleet::monitor::{judge_nodes, unix_now_ns};
use locus_fleet::store::{Database, Store};
use locus_fleet::time::{parse_at, parse_time_ns};
use locus_lab::judge_input::{
    attach_endorsements, attach_evidence, attach_poes, distrust_inline_summaries, load_samples,
    trust_inline_summaries, EvidenceTrust,
};
use serde::Serialize;

#[derive(Args)]
pub(crate) struct JudgeArgs {
    /// Samples file (JSON; format in docs/judge.md).
    #[arg(long, required_unless_present = "db")]
    samples: Option<PathBuf>,
    /// Judge a prober store instead (`db` of the probers' config: an SQLite file or a
    /// `postgres://` URL) as `locus monitor --once` would, with the monitor's flags below:
    /// read-only (nothing is migrated, stored or alerted). --evidence-policy verifies the
    /// stored bundles; --policy, --at, --node and --json as for --samples.
    #[arg(
        long,
        value_name = "FILE|URL",
        conflicts_with_all = ["samples", "evidence", "trust_summaries", "inventory", "poe"]
    )]
    db: Option<Database>,
    /// With --db: a file holding the PostgreSQL password (overrides the config's
    /// `db_password_file`).
    #[arg(long, value_name = "FILE", requires = "db")]
    db_password_file: Option<PathBuf>,
    /// With --db: how the store is judged, as `locus monitor` takes it.
    #[command(flatten)]
    store: crate::monitor::StoreJudging,
    /// Evidence per node, in DIR or DIR/evidence (a lab output directory): `NODE.bundle`, an
    /// evidence bundle verified here under --evidence-policy (its summary, in-TD timings and
    /// verified anchors replace the node's), or `NODE.json`, an unsigned evidence summary
    /// (used only with --trust-summaries).
    #[arg(long, value_name = "DIR")]
    evidence: Option<PathBuf>,
    /// Verification policy for bundles (TOML, as for `locus verify evidence --policy`), with
    /// its trust roots and nonce ledger. Required to verify bundles: it is never taken from the
    /// evidence directory; without it bundles count for nothing.
    #[arg(long, value_name = "FILE")]
    evidence_policy: Option<PathBuf>,
    /// Trust unsigned evidence summaries: `NODE.json` files and the samples file's own
    /// `evidence`, `in_td` and `anchors`. Without it they are not used (and each node says so).
    #[arg(long)]
    trust_summaries: bool,
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
    /// default: now, and each bundle at the time its nonce was issued. With --db: the instant
    /// the judgement is made as of (the end of its window), default now.
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
    if let Some(db) = &args.db {
        return run_db(&args, db);
    }
    let Some(samples) = &args.samples else {
        bail!("give --samples FILE or --db FILE|URL");
    };
    let policy = locus_fleet::verifier::load_verdict_policy(args.policy.as_deref())?;
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let mut file = load_samples(samples)?;
    let mut policy = policy;
    if args.trust_summaries {
        trust_inline_summaries(&mut file, samples);
    } else {
        distrust_inline_summaries(&mut file, samples);
    }
    if let Some(dir) = &args.evidence {
        let trust = EvidenceTrust {
            policy: args.evidence_policy.as_deref(),
            trust_summaries: args.trust_summaries,
            at,
        };
        let evidence_policy = attach_evidence(&mut file, dir, trust)?;
        policy = policy.calibrated_vtpm(evidence_policy.as_ref());
    } else if args.evidence_policy.is_some() {
        bail!("--evidence-policy verifies the bundles of --evidence DIR: pass --evidence too");
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
            samples.display(),
            problems.join("; ")
        );
    }
    for n in &args.node {
        if !file.nodes.iter().any(|x| &x.name == n) {
            bail!("no node named {n} in {}", samples.display());
        }
    }
    let judgements: Vec<Judgement> = file
        .nodes
        .iter()
        .filter(|n| args.node.is_empty() || args.node.contains(&n.name))
        .map(|n| judge(&world, n, &policy))
        .collect();
    if judgements.is_empty() {
        bail!("{} holds no nodes", samples.display());
    }
    report(&judgements, args.json)
}

/// `locus judge --db`: the monitor's judgement of the store as of --at (default now), with
/// nothing stored, remembered or alerted; the store is opened read-only.
fn run_db(args: &JudgeArgs, db: &Database) -> anyhow::Result<ExitCode> {
    let judging = args
        .store
        .judging(args.policy.as_deref(), args.evidence_policy.as_deref())?;
    let db = args
        .store
        .database(db, args.db_password_file.as_deref(), &judging)?;
    let now = match &args.at {
        Some(at) => parse_time_ns(at)?,
        None => unix_now_ns(),
    };
    let store = Store::open_read_only(&db, crate::monitor::DB_WAIT)?;
    let mut judgements = judge_nodes(&store, &judging, now)?.judgements();
    for n in &args.node {
        if !judgements.iter().any(|j| &j.name == n) {
            bail!("no node named {n} has rounds in {db} in the window ending at --at");
        }
    }
    judgements.retain(|j| args.node.is_empty() || args.node.contains(&j.name));
    if judgements.is_empty() {
        bail!(
            "no configured node has rounds in {db} in the {} s window ending at {}",
            args.store.window_s,
            now.div_euclid(1_000_000_000)
        );
    }
    report(&judgements, args.json)
}

/// Prints the judgements (a table, or JSON) and gives the exit code.
fn report(judgements: &[Judgement], json: bool) -> anyhow::Result<ExitCode> {
    let all_located = judgements.iter().all(|j| j.verdict.is_located());
    if json {
        let out = Output {
            version: 1,
            all_located,
            nodes: judgements,
        };
        print_out(&serde_json::to_string_pretty(&out)?);
    } else {
        print_out(&table(judgements));
    }
    Ok(if all_located {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
