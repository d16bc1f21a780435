//! `locus endorse poe`: a lab POE issuer, issuing a POE for a platform, verifying one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use locus_analysis::verify::poe::{self, Expectations, PoeRequest, PoeVerification};
use locus_analysis::CheckStatus;
use locus_fleet::time::parse_at;
use locus_fleet::time::unix_now;
use locus_lab::poe::{read_anchors, read_certificates, verify_file};
use locus_proto::evidence::EvidenceBundle;

#[derive(clap::Subcommand)]
pub(crate) enum PoeCmd {
    /// Create a POE issuer for lab and test use: a P-384 root certificate (the trust anchor
    /// verifiers configure) and a signing certificate and key under it.
    Issuer(IssuerArgs),
    /// Issue a POE: sign a CoRIM binding a platform's PIID to its owner (and facility/site).
    Issue(IssueArgs),
    /// Verify a POE: signature and x5chain under the trust anchors, profile, validity, and,
    /// when given, the platform's PIID, the expected owner and the claimed site.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub(crate) struct IssuerArgs {
    /// Directory to write poe-root.pem, poe-chain.pem (signing certificate, root) and
    /// poe-key.pem (the signing key, PKCS#8).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Common name of the signing certificate (the POE's `iss`); the profile recommends the
    /// owner's DNS name.
    #[arg(long, default_value = "lab-operator.example")]
    name: String,
    /// Validity of both certificates, days from now.
    #[arg(long, default_value_t = 3650)]
    days: u32,
}

/// Where the platform's PIID comes from.
#[derive(clap::Args)]
#[group(multiple = false)]
pub(crate) struct PiidSource {
    /// The PIID, hex (16 or 32 bytes).
    #[arg(long, value_name = "HEX")]
    piid: Option<String>,
    /// Read the PIID from the PCK certificate of this evidence bundle's TDX quote (not
    /// verified here).
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
    /// Read the PIID from the PCK certificate of this TDX quote (not verified here).
    #[arg(long, value_name = "FILE")]
    quote: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct IssueArgs {
    /// The issuer's P-384 signing key (PKCS#8 PEM).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The issuer's certificates, signing certificate first (PEM); become the x5chain.
    #[arg(long, value_name = "FILE")]
    chain: PathBuf,
    #[command(flatten)]
    piid: PiidSource,
    /// The owner endorsed (`tee.owner-name`; a DNS name of the operator).
    #[arg(long)]
    owner: String,
    /// Facility of the platform (locus's protected `locus.facility` parameter).
    #[arg(long)]
    facility: Option<String>,
    /// Site of that facility, as named in samples files (`locus.site`): judged against the
    /// node's claim.
    #[arg(long)]
    site: Option<String>,
    /// Start of validity (RFC 3339 or unix seconds; default now).
    #[arg(long, value_name = "TIME")]
    not_before: Option<String>,
    /// End of validity (RFC 3339 or unix seconds; default not-before + --days).
    #[arg(long, value_name = "TIME")]
    not_after: Option<String>,
    /// Validity in days when --not-after is not given.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// `iss` (default: the signing certificate's common name).
    #[arg(long)]
    issuer: Option<String>,
    /// Output file (the COSE_Sign1, CBOR).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The POE (COSE_Sign1 CBOR).
    poe: PathBuf,
    /// Trust anchor: an issuer root certificate (PEM or DER), repeatable.
    #[arg(long, value_name = "FILE", required = true)]
    anchor: Vec<PathBuf>,
    /// Verification time (RFC 3339 or unix seconds; default now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    #[command(flatten)]
    piid: PiidSource,
    /// The operator that must own the platform.
    #[arg(long)]
    expected_owner: Option<String>,
    /// The site the node claims; the POE's site must equal it.
    #[arg(long)]
    site: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: PoeCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PoeCmd::Issuer(a) => issuer(a),
        PoeCmd::Issue(a) => issue(a),
        PoeCmd::Verify(a) => verify(a),
    }
}

fn issuer(a: IssuerArgs) -> anyhow::Result<ExitCode> {
    locus_lab::poe::write_issuer(&a.out, &a.name, a.days, unix_now()?)?;
    Ok(ExitCode::SUCCESS)
}

/// The PIID named by `src`, if any.
fn piid(src: &PiidSource) -> anyhow::Result<Option<Vec<u8>>> {
    let from_quote = |quote: &[u8], what: &Path| -> anyhow::Result<Vec<u8>> {
        locus_analysis::verify::tdx::quote_piid(quote)
            .with_context(|| format!("reading the PCK certificate of {}", what.display()))?
            .with_context(|| {
                format!(
                    "the PCK certificate of {} carries no PIID (only Platform-CA certificates do)",
                    what.display()
                )
            })
    };
    if let Some(h) = &src.piid {
        let b = hex::decode(h.trim()).context("--piid is not hex")?;
        return Ok(Some(b));
    }
    if let Some(p) = &src.bundle {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let b = EvidenceBundle::from_cbor(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not an evidence bundle: {e}", p.display()))?;
        let tdx = b
            .tdx
            .with_context(|| format!("{} carries no TDX quote", p.display()))?;
        return from_quote(&tdx.quote, p).map(Some);
    }
    if let Some(p) = &src.quote {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        return from_quote(&bytes, p).map(Some);
    }
    Ok(None)
}

fn issue(a: IssueArgs) -> anyhow::Result<ExitCode> {
    let Some(piid) = piid(&a.piid)? else {
        bail!("name the platform: --piid HEX, --bundle FILE or --quote FILE");
    };
    let key_pem =
        std::fs::read_to_string(&a.key).with_context(|| format!("reading {}", a.key.display()))?;
    let key = poe::signing_key_from_pem(&key_pem).with_context(|| a.key.display().to_string())?;
    let chain = read_certificates(&a.chain)?;
    let not_before = match &a.not_before {
        Some(t) => parse_at(t)?,
        None => unix_now()?,
    };
    let not_after = match &a.not_after {
        Some(t) => parse_at(t)?,
        None => not_before + u64::from(a.days) * 86_400,
    };
    let bytes = poe::issue(
        &PoeRequest {
            piid: &piid,
            owner: &a.owner,
            not_before,
            not_after,
            issuer: a.issuer.as_deref(),
            facility: a.facility.as_deref(),
            site: a.site.as_deref(),
        },
        &key,
        &chain,
    )?;
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    tracing::info!(
        piid = %hex::encode(&piid),
        owner = %a.owner,
        "POE written to {} ({} bytes, valid {not_before}..{not_after})",
        a.out.display(),
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let anchors = read_anchors(&a.anchor)?;
    let now = match &a.at {
        Some(t) => parse_at(t)?,
        None => unix_now()?,
    };
    let piid = piid(&a.piid)?;
    let mut v = verify_file(&a.poe, &anchors, now)?;
    v.relate(&Expectations {
        piid: piid.as_deref(),
        owner: a.expected_owner.as_deref(),
        site: a.site.as_deref(),
    });
    print_verification(&v, now, a.json)?;
    Ok(if v.valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[expect(clippy::print_stdout, reason = "the result is the command's output")]
fn print_verification(v: &PoeVerification, at: u64, json: bool) -> anyhow::Result<()> {
    if json {
        let out = serde_json::json!({
            "valid": v.valid(),
            "at": at,
            "checks": v.checks,
            "claims": v.claims,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for c in &v.checks {
        let status = match c.status {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "skip",
        };
        println!("{status:7} {}: {}", c.name, c.detail);
    }
    if let Some(c) = &v.claims {
        println!(
            "PIID {} owner {:?} site {} facility {}",
            c.piid,
            c.owner,
            c.site.as_deref().unwrap_or("-"),
            c.facility.as_deref().unwrap_or("-")
        );
    }
    if v.valid() {
        println!("valid POE");
    } else {
        println!("invalid: failed checks: {}", v.failed().join(", "));
    }
    Ok(())
}
