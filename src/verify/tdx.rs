//! `locus verify tdx-quote`: verify a TDX quote with its collateral, offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use locus_analysis::verify::tdx::{self, Collateral, RootKind, TdxError, TdxVerified, TrustRoot};

use super::at::parse_at;

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
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Raw bytes, or the bytes of hex text (whitespace ignored), as dcap-qvl's `*.hex` samples.
fn quote_bytes(raw: Vec<u8>) -> Vec<u8> {
    let text: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !text.is_empty() && text.iter().all(u8::is_ascii_hexdigit) {
        if let Ok(bytes) = hex::decode(&text) {
            return bytes;
        }
    }
    raw
}

/// DER, or the first certificate of a PEM file.
fn root_der(raw: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if raw.starts_with(b"-----BEGIN") || raw.iter().take(64).all(u8::is_ascii) {
        let text = std::str::from_utf8(&raw).context("root CA is neither DER nor PEM")?;
        let start = text
            .find("-----BEGIN CERTIFICATE-----")
            .context("no PEM certificate in root CA file")?;
        let body = &text[start + 27..];
        let end = body
            .find("-----END CERTIFICATE-----")
            .context("unterminated PEM certificate")?;
        let b64: String = body[..end].split_whitespace().collect();
        return base64_decode(&b64).context("bad base64 in PEM root CA");
    }
    Ok(raw)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

fn collateral(path: &Path, quote: &[u8]) -> anyhow::Result<Collateral> {
    let file = if path.is_dir() {
        // A cache directory: pick the file for the quote's platform family.
        let fmspc = tdx::quote_fmspc(quote)
            .map_err(|e| anyhow::anyhow!("cannot pick collateral from {}: {e}", path.display()))?;
        let upper = path.join(format!("{}.json", hex::encode_upper(fmspc)));
        let lower = path.join(format!("{}.json", hex::encode(fmspc)));
        if upper.exists() {
            upper
        } else {
            lower
        }
    } else {
        path.to_path_buf()
    };
    let raw = read(&file, "collateral")?;
    tdx::collateral_from_json(&raw).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
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
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_secs(),
    };
    let result = match &coll {
        Some(coll) => tdx::verify(&quote, coll, &root, now),
        None => tdx::verify_without_collateral(&quote, &root, now),
    };
    print_result(&result, &args, now)?;
    Ok(match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    })
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
            Ok(v) => serde_json::json!({ "valid": true, "at": now, "quote": v }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==").unwrap(), b"M");
        assert!(base64_decode("T").is_none());
        assert!(base64_decode("T*==").is_none());
    }

    #[test]
    fn hex_text_quotes_are_decoded_raw_ones_kept() {
        assert_eq!(quote_bytes(b"0a0B\n".to_vec()), vec![0x0a, 0x0b]);
        assert_eq!(quote_bytes(vec![4, 0, 2, 0]), vec![4, 0, 2, 0]);
    }
}
