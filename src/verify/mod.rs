//! `locus verify`: offline verification of attestation evidence.
//!
//! Exit codes: 0 valid; 1 invalid (the failed check is named); 2 usage or unreadable input
//! (clap's usage errors exit 2 as well).

use std::process::ExitCode;

mod azure;
mod cloud_report;
mod evidence;
mod gce;
mod tdx;

#[derive(clap::Subcommand)]
pub(crate) enum VerifyCmd {
    /// Verify a TDX quote (v4/v5) with its collateral, under Intel's root or a configured one.
    TdxQuote(tdx::Args),
    /// Verify an evidence bundle (vTPM + TDX, bound to a nonce) under a policy.
    Evidence(evidence::Args),
    /// Verify a GCE vTPM attestation (go-tpm-tools protobuf): quotes, event log, AK
    /// certificate chain and the instance identity (zone) it names.
    GceAttestation(gce::Args),
    /// Verify Azure TDX confidential-VM evidence: vTPM quote by the HCL AK, HCL report bound
    /// into the TD quote's REPORTDATA, TD quote and PCK chain.
    AzTdxVtpm(azure::Args),
}

pub(crate) fn run(cmd: VerifyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        VerifyCmd::TdxQuote(args) => tdx::run(args),
        VerifyCmd::Evidence(args) => evidence::run(args),
        VerifyCmd::GceAttestation(args) => gce::run(args),
        VerifyCmd::AzTdxVtpm(args) => azure::run(args),
    }
}
