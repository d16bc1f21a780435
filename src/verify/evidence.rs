//! `locus verify evidence`: verify a stored evidence bundle under a policy, offline.
//!
//! Exit 0 when valid; 1 when invalid, naming every failed check; 2 when the bundle, policy,
//! nonce ledger or a file the policy names cannot be read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use locus_analysis::verify::bundle::{
    self as evidence, EvidencePolicy, EvidenceReport, NonceRecord, Outcome, PolicyFile,
    VerifyInputs,
};
use locus_proto::evidence::EvidenceBundle;

use super::at::parse_at;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The bundle (CBOR, as the responder sends it).
    bundle: PathBuf,
    /// Policy TOML: trust roots, reference values, which checks are required. Paths in it are
    /// relative to the policy file.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// This verifier's nonce ledger: JSON list of {nonce (hex), issuer, issued_at, used}.
    /// Without it the `nonce` check fails as foreign.
    #[arg(long, value_name = "FILE")]
    nonce_ledger: Option<PathBuf>,
    /// The QUIC peer's SubjectPublicKeyInfo (DER) the bundle must have been produced for.
    #[arg(long, value_name = "FILE")]
    peer_spki: Option<PathBuf>,
    /// Verify as of this time: RFC 3339 or unix seconds (default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Reads an evidence policy file and the trust files it names (relative to the file).
pub(crate) fn load_policy(path: &Path) -> anyhow::Result<(PolicyFile, EvidencePolicy)> {
    let text = String::from_utf8(read(path, "policy")?)
        .with_context(|| format!("policy {} is not UTF-8", path.display()))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let file =
        PolicyFile::from_toml(&text).with_context(|| format!("policy {}", path.display()))?;
    let policy = file
        .resolve(&|rel: &str| {
            std::fs::read(base.join(rel)).map_err(|e| format!("{}: {e}", base.join(rel).display()))
        })
        .with_context(|| format!("policy {}", path.display()))?;
    Ok((file, policy))
}

/// Unix seconds now, for a verification time not given.
pub(crate) fn unix_now() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs())
}

/// A verification policy with its trust files and nonce ledger loaded: what `locus verify
/// evidence` and `locus judge` (on stored bundles) verify bundles with.
pub(crate) struct BundleVerifier {
    pub(crate) policy: EvidencePolicy,
    ledger: Vec<NonceRecord>,
}

impl BundleVerifier {
    /// Loads `policy_path` (paths in it relative to it) and the nonce ledger: `ledger` when
    /// given, otherwise the one the policy names.
    pub(crate) fn load(policy_path: &Path, ledger: Option<&Path>) -> anyhow::Result<Self> {
        let (policy_file, policy) = load_policy(policy_path)?;
        let base = policy_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let ledger_path = ledger
            .map(Path::to_path_buf)
            .or_else(|| policy_file.nonce.ledger.as_ref().map(|l| base.join(l)));
        let ledger: Vec<NonceRecord> = match &ledger_path {
            None => Vec::new(),
            Some(p) => serde_json::from_slice(&read(p, "nonce ledger")?)
                .with_context(|| format!("nonce ledger {}", p.display()))?,
        };
        Ok(Self { policy, ledger })
    }

    /// When this verifier issued the bundle's nonce, if it did.
    pub(crate) fn issued_at(&self, bundle: &EvidenceBundle) -> Option<u64> {
        self.record(&bundle.nonce).map(|r| r.issued_at)
    }

    fn record(&self, nonce: &[u8]) -> Option<&NonceRecord> {
        self.ledger.iter().find(|r| r.nonce == nonce)
    }

    /// Verifies a decoded bundle at `now_unix`.
    pub(crate) fn verify(
        &self,
        bundle: &EvidenceBundle,
        now_unix: u64,
        peer_spki: Option<Vec<u8>>,
    ) -> EvidenceReport {
        let inputs = VerifyInputs {
            now_unix,
            nonce_record: self.record(&bundle.nonce).cloned(),
            peer_spki,
        };
        evidence::verify_bundle(bundle, &self.policy, &inputs)
    }

    /// Verifies stored bundle bytes at `now_unix`; bytes that do not decode fail
    /// `bundle_format`.
    pub(crate) fn verify_bytes(
        &self,
        bytes: &[u8],
        now_unix: u64,
        peer_spki: Option<Vec<u8>>,
    ) -> EvidenceReport {
        match EvidenceBundle::from_cbor(bytes) {
            Ok(b) => self.verify(&b, now_unix, peer_spki),
            Err(_) => evidence::verify_bundle_bytes(
                bytes,
                &self.policy,
                &VerifyInputs {
                    now_unix,
                    nonce_record: None,
                    peer_spki,
                },
            ),
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bundle = read(&args.bundle, "bundle")?;
    // `--nonce-ledger` wins; otherwise the ledger the policy names, relative to it.
    let verifier = BundleVerifier::load(&args.policy, args.nonce_ledger.as_deref())?;
    let now_unix = match &args.at {
        Some(t) => parse_at(t)?,
        None => unix_now()?,
    };
    let peer_spki = match &args.peer_spki {
        None => None,
        Some(p) => Some(read(p, "peer SPKI")?),
    };
    let report = verifier.verify_bytes(&bundle, now_unix, peer_spki);
    print_report(&report, args.json)?;
    Ok(if report.valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[expect(clippy::print_stdout, reason = "the report is the command's output")]
fn print_report(report: &EvidenceReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
        return Ok(());
    }
    for c in &report.checks {
        let (status, detail) = match &c.outcome {
            Outcome::Pass => ("pass", String::new()),
            Outcome::Fail(e) => ("FAIL", format!(": {e}")),
            Outcome::Skipped(r) if c.invalidates() => ("MISSING", format!(": {r}")),
            Outcome::Skipped(r) => ("skip", format!(": {r}")),
        };
        println!("{status:7} {}{detail}", c.check);
    }
    if report.valid() {
        println!("valid evidence bundle");
    } else {
        let failed: Vec<&str> = report.failed().iter().map(|c| c.name()).collect();
        println!("invalid: failed checks: {}", failed.join(", "));
    }
    Ok(())
}
