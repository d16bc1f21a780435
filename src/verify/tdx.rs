//! `locus verify tdx-quote`: verify a TDX quote with its collateral, offline.

use std::path::PathBuf;
use std::process::ExitCode;

use locus_analysis::verify::tdx::{self, RootKind, TcbStatus, TdxError, TdxVerified, TrustRoot};

use locus_fleet::time::{parse_at, unix_now};
use locus_lab::tdx_files::{collateral, quote_bytes, read, root_der};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The quote: raw bytes, or hex text.
    quote: PathBuf,
    /// Collateral in dcap-qvl's JSON form, or a cache directory holding `<FMSPC>.json`.
    #[arg(long, required_unless_present = "chain_only")]
    collateral: Option<PathBuf>,
    /// No collateral: check signatures and the PCK chain only; TCB status, QE identity and
    /// revocation are reported as unknown.
    #[arg(long, conflicts_with = "collateral")]
    chain_only: bool,
    /// Trust this root CA (DER or PEM) instead of Intel's SGX root CA. Verdicts under another
    /// root say so.
    #[arg(long, value_name = "FILE")]
    root_ca: Option<PathBuf>,
    /// Verify as of this time: RFC 3339 or unix seconds (default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// TCB statuses to accept, comma-separated Intel names; any other status fails
    /// (`TcbStatusNotAccepted`). Ignored with --chain-only (no status to judge).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "UpToDate,SWHardeningNeeded",
        value_parser = tdx::parse_tcb_status
    )]
    accept_tcb: Vec<TcbStatus>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let quote = quote_bytes(read(&args.quote, "quote")?);
    let coll = match &args.collateral {
        Some(path) => Some(collateral(path, &quote)?),
        None => None,
    };
    let root = match &args.root_ca {
        Some(p) => TrustRoot::Configured(root_der(read(p, "root CA")?)?),
        None => TrustRoot::IntelSgx,
    };
    let now = match &args.at {
        Some(s) => parse_at(s)?,
        None => unix_now()?,
    };
    let result = match &coll {
        Some(coll) => tdx::verify(&quote, coll, &root, now)
            .and_then(|v| tdx::check_tcb(&v, &args.accept_tcb).map(|()| v)),
        None => tdx::verify_without_collateral(&quote, &root, now),
    };
    print_result(&result, &args, now)?;
    Ok(match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    })
}

/// RFC 3339 UTC for unix seconds.
fn rfc3339(unix: u64) -> String {
    locus_fleet::time::rfc3339(i64::try_from(unix).unwrap_or(i64::MAX))
}

fn root_text(r: &RootKind) -> String {
    match r {
        RootKind::IntelSgx => "Intel SGX Root CA".to_owned(),
        RootKind::Configured { sha256 } => {
            format!("configured root sha256:{sha256} (NOT Intel: lab or test evidence)")
        }
    }
}

#[expect(clippy::print_stdout, reason = "the verdict is the command's output")]
fn print_result(
    result: &Result<TdxVerified, TdxError>,
    args: &Args,
    now: u64,
) -> anyhow::Result<()> {
    if args.json {
        let v = match result {
            Ok(v) => serde_json::json!({
                "valid": true,
                "at": now,
                "quote": v,
                "collateral_expires_at": v.collateral_expires_unix.map(rfc3339),
            }),
            Err(e) => serde_json::json!({
                "valid": false, "at": now, "check": e.check(), "error": e.to_string()
            }),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    match result {
        Ok(v) => {
            println!(
                "valid TDX quote v{} under {}",
                v.quote_version,
                root_text(&v.root)
            );
            if !v.collateral_checked {
                println!("NO COLLATERAL: TCB status, QE identity and revocation not checked");
            }
            println!("tcb_status:   {}", v.tcb_status);
            if let Some(t) = v.collateral_expires_unix {
                println!("collateral_expires_at: {}", rfc3339(t));
            }
            println!("advisory_ids: {}", v.advisory_ids.join(","));
            println!("mr_td:        {}", hex::encode(v.mr_td));
            for (i, r) in v.rtmr.iter().enumerate() {
                println!("rtmr{i}:        {}", hex::encode(r));
            }
            println!("report_data:  {}", hex::encode(v.report_data));
            println!("fmspc:        {}", hex::encode_upper(v.fmspc));
            println!("pce_id:       {}", hex::encode(&v.pce_id));
            println!("ppid:         {}", hex::encode(&v.ppid));
            if let Some(piid) = &v.piid {
                println!("piid:         {}", hex::encode(piid));
            }
        }
        Err(e) => println!("invalid: check {} failed: {e}", e.check()),
    }
    Ok(())
}
