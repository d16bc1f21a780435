//! TDX quote files as `locus verify tdx-quote` reads them: a quote in binary or hex, a root CA
//! in DER or PEM, collateral from a file or a cache directory named by FMSPC.

use std::path::Path;

use anyhow::Context;
use locus_analysis::verify::tdx::{self, Collateral};

/// Reads `path`; `what` names it in the error.
pub fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Raw bytes, or the bytes of hex text (whitespace ignored), as dcap-qvl's `*.hex` samples.
pub fn quote_bytes(raw: Vec<u8>) -> Vec<u8> {
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

/// The root CA certificate (DER) from a DER or PEM file.
pub fn root_der(raw: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if raw.starts_with(b"-----BEGIN") || raw.iter().take(64).all(u8::is_ascii) {
        let text = std::str::from_utf8(&raw).context("root CA is neither DER nor PEM")?;
        return pem::parse_many(text)
            .context("bad PEM in root CA file")?
            .into_iter()
            .find(|p| p.tag() == "CERTIFICATE")
            .map(pem::Pem::into_contents)
            .context("no PEM certificate in root CA file");
    }
    Ok(raw)
}

pub fn collateral(path: &Path, quote: &[u8]) -> anyhow::Result<Collateral> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_ca_from_pem_or_der() {
        let der = vec![0x30, 0x82, 0x01, 0xff, 0x80];
        let pem_text = pem::encode(&pem::Pem::new("CERTIFICATE", der.clone()));
        let with_header = format!("Bag Attributes: lab root\n{pem_text}");
        assert_eq!(root_der(pem_text.into_bytes()).unwrap(), der);
        assert_eq!(root_der(with_header.into_bytes()).unwrap(), der);
        assert_eq!(root_der(der.clone()).unwrap(), der);
        assert!(root_der(b"just some ascii text".to_vec()).is_err());
    }

    #[test]
    fn hex_text_quotes_are_decoded_raw_ones_kept() {
        assert_eq!(quote_bytes(b"0a0B\n".to_vec()), vec![0x0a, 0x0b]);
        assert_eq!(quote_bytes(vec![4, 0, 2, 0]), vec![4, 0, 2, 0]);
    }
}
