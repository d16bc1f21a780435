//! Intel Platform Ownership Endorsements on disk: a lab POE issuer (`locus endorse poe
//! issuer`), certificates and trust anchors from PEM or DER files, POE files verified under
//! them. Issuing and verifying a POE document is `locus_analysis::verify::poe` (pure).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use locus_analysis::verify::poe::{self, PoeVerification};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P384_SHA384,
};

/// File names [`write_issuer`] writes.
pub const ROOT_FILE: &str = "poe-root.pem";
pub const CHAIN_FILE: &str = "poe-chain.pem";
pub const KEY_FILE: &str = "poe-key.pem";

fn time(unix: u64) -> anyhow::Result<time::OffsetDateTime> {
    let t = i64::try_from(unix).context("time out of range")?;
    time::OffsetDateTime::from_unix_timestamp(t).context("time out of range")
}

/// Creates a POE issuer for lab and test use in `out`: a P-384 root certificate (the trust
/// anchor verifiers configure, [`ROOT_FILE`]), a signing certificate named `name` under it
/// ([`CHAIN_FILE`], with the root) and its key ([`KEY_FILE`], PKCS#8, owner-only), valid from an
/// hour before `now` (unix seconds) for `days`.
pub fn write_issuer(out: &Path, name: &str, days: u32, now: u64) -> anyhow::Result<()> {
    let until = now + u64::from(days) * 86_400;
    let params = |cn: String| -> anyhow::Result<CertificateParams> {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationName, "locus lab POE issuer");
        p.distinguished_name = dn;
        p.not_before = time(now.saturating_sub(3600))?;
        p.not_after = time(until)?;
        Ok(p)
    };
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
    let mut rp = params(format!("{name} POE root"))?;
    rp.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    rp.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let root = rp.self_signed(&root_key)?;
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
    let mut lp = params(name.to_owned())?;
    lp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf = lp.signed_by(&leaf_key, &root, &root_key)?;

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, text: String| {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    write(ROOT_FILE, root.pem())?;
    write(CHAIN_FILE, format!("{}{}", leaf.pem(), root.pem()))?;
    // The signing key is readable by its owner only.
    let key_path = out.join(KEY_FILE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("writing {}", key_path.display()))?;
    std::io::Write::write_all(&mut f, leaf_key.serialize_pem().as_bytes())?;
    tracing::info!(
        "POE issuer {} in {}: trust anchor {ROOT_FILE}, chain {CHAIN_FILE}, key {KEY_FILE}",
        name,
        out.display()
    );
    Ok(())
}

/// Certificates from a file: PEM (`CERTIFICATE` blocks, in order) or one DER certificate.
pub fn read_certificates(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
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

/// Reads trust anchors (root certificates, PEM or DER).
pub fn read_anchors(paths: &[PathBuf]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(read_certificates(p)?);
    }
    Ok(out)
}

/// Reads a POE file and verifies its document checks.
pub fn verify_file(path: &Path, anchors: &[Vec<u8>], now: u64) -> anyhow::Result<PoeVerification> {
    let bytes = std::fs::read(path).with_context(|| format!("reading POE {}", path.display()))?;
    let v = poe::verify(&bytes, anchors, now);
    tracing::debug!(poe = %path.display(), failed = ?v.failed(), "POE verified");
    Ok(v)
}
