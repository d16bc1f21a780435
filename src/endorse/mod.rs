//! `locus endorse`: platform endorsements (docs/poe.md).
//!
//! Exit codes: 0 ok / valid; 1 the endorsement failed a check (each failed check named);
//! 2 usage or unreadable input.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};

pub(crate) mod poe;

#[derive(clap::Subcommand)]
pub(crate) enum EndorseCmd {
    /// Intel Platform Ownership Endorsements (COSE_Sign1 CoRIM): make a lab issuer, issue one,
    /// verify one.
    #[command(subcommand)]
    Poe(poe::PoeCmd),
}

pub(crate) fn run(cmd: EndorseCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        EndorseCmd::Poe(c) => poe::run(c),
    }
}

/// Certificates from a file: PEM (`CERTIFICATE` blocks, in order) or one DER certificate.
pub(crate) fn read_certificates(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let certs: Vec<Vec<u8>> = pem::parse_many(&bytes)
            .with_context(|| format!("{} is not valid PEM", path.display()))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(pem::Pem::into_contents)
            .collect();
        if certs.is_empty() {
            bail!("{} holds no CERTIFICATE block", path.display());
        }
        Ok(certs)
    } else {
        Ok(vec![bytes])
    }
}
