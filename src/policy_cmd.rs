//! `locus policy init`: capture an evidence policy (golden values) from a known-good bundle.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use locus_analysis::policy_init::{init_policy, InitOptions, NamedFile};
use locus_proto::evidence::EvidenceBundle;

#[derive(Subcommand)]
pub(crate) enum PolicyCmd {
    /// Write an evidence policy pinning what the machine behind BUNDLE measured (MRTD, RTMR0-3,
    /// TD attributes, XFAM, quoted PCRs, EK/AK roots, its vTPM speed), trusting the given TDX
    /// collateral and root (Intel's by default). Exit 1 when the bundle does not verify under
    /// it.
    Init(InitArgs),
}

#[derive(Args)]
pub(crate) struct InitArgs {
    /// The golden bundle (CBOR), e.g. from `locus prober --evidence-out`.
    #[arg(long, value_name = "BUNDLE")]
    from_bundle: PathBuf,
    /// TDX collateral (dcap-qvl JSON) the policy trusts.
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// TDX root CA (PEM or DER) instead of Intel's.
    #[arg(long, value_name = "PEM")]
    root_ca: Option<PathBuf>,
    /// Write the policy here (and the EK roots seen next to it as FILE.ek-roots.pem);
    /// default: the policy on stdout, the roots in ./policy.ek-roots.pem.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Verify as of this time: RFC 3339 or unix seconds (default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

fn absolute(p: &Path) -> anyhow::Result<String> {
    Ok(std::fs::canonicalize(p)
        .with_context(|| format!("reading {}", p.display()))?
        .display()
        .to_string())
}

fn named(p: &Option<PathBuf>, what: &str) -> anyhow::Result<Option<NamedFile>> {
    p.as_ref()
        .map(|p| {
            Ok(NamedFile {
                bytes: std::fs::read(p)
                    .with_context(|| format!("reading {what} {}", p.display()))?,
                // Absolute: the policy may be written anywhere.
                path: absolute(p)?,
            })
        })
        .transpose()
}

pub(crate) fn run(cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    let PolicyCmd::Init(args) = cmd;
    let raw = std::fs::read(&args.from_bundle)
        .with_context(|| format!("reading bundle {}", args.from_bundle.display()))?;
    let bundle = EvidenceBundle::from_cbor(&raw)
        .with_context(|| format!("bundle {}", args.from_bundle.display()))?;
    let roots_path = match &args.out {
        Some(out) => {
            let mut name = out
                .file_name()
                .context("--out names no file")?
                .to_os_string();
            name.push(".ek-roots.pem");
            PathBuf::from(name)
        }
        None => std::env::current_dir()?.join("policy.ek-roots.pem"),
    };
    let opts = InitOptions {
        tdx_collateral: named(&args.collateral, "collateral")?,
        tdx_root: named(&args.root_ca, "root CA")?,
        ek_roots_path: roots_path.display().to_string(),
        bundle_name: args.from_bundle.display().to_string(),
        nonce_issuer: bundle
            .nonce_issuer
            .clone()
            .unwrap_or_else(|| "locus".into()),
        now_unix: match &args.at {
            Some(t) => locus_fleet::time::parse_at(t)?,
            None => locus_fleet::time::unix_now()?,
        },
    };
    let init = match init_policy(&bundle, &opts) {
        Ok(i) => i,
        Err(e @ locus_analysis::policy_init::InitError::BundleInvalid { .. }) => {
            report_error(&e);
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let base = args
        .out
        .as_ref()
        .and_then(|o| o.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if let Some(pem) = &init.ek_roots_pem {
        let p = base.join(&roots_path);
        std::fs::write(&p, pem).with_context(|| format!("writing {}", p.display()))?;
    }
    match &args.out {
        Some(out) => {
            std::fs::write(out, &init.toml).with_context(|| format!("writing {}", out.display()))?
        }
        None => print_policy(&init.toml),
    }
    if let Some(us) = init.vtpm_baseline_us {
        tracing::info!(
            vtpm_cmd_us = us,
            "in-TD vTPM command time recorded as the baseline"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[expect(clippy::print_stdout, reason = "the policy is the command's output")]
fn print_policy(toml: &str) {
    print!("{toml}");
}

#[expect(clippy::print_stderr, reason = "the CLI names the checks that failed")]
fn report_error(e: &dyn std::fmt::Display) {
    eprintln!("error: {e}");
}
