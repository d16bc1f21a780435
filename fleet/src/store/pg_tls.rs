//! TLS to PostgreSQL: `sslmode=verify-full` with `sslrootcert=FILE` (libpq's names), through
//! rustls and `tokio-postgres-rustls`. The `postgres` crate's URL parser knows neither, so they
//! are taken out of the URL here and the connection is made with `sslmode=require` and a
//! connector that checks the chain against the CA file and the certificate against the host.
//!
//! `sslmode=require` alone (encryption without checking whom you talk to, libpq's default
//! meaning) and `verify-ca` (a chain check without the host name) are refused: a monitor that
//! reads rows from an unauthenticated server can be fed anything its signatures do not cover
//! (which rows exist), and a prober's password would go to whoever answers.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the URL asks to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// Whatever the remaining URL says (`disable`, `prefer`: plain TCP; no TLS is offered).
    Plain,
    /// TLS, the server's chain checked against this CA file and its name against the host.
    VerifyFull { root: PathBuf },
}

/// Takes `sslmode=verify-full` and `sslrootcert` out of `url`; returns the rest and the mode,
/// or why the combination is refused.
pub(crate) fn split_url(url: &str) -> Result<(String, TlsMode), String> {
    let Some((head, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), TlsMode::Plain));
    };
    let mut mode = None;
    let mut root = None;
    let mut rest = Vec::new();
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_owned()),
            Some(("sslrootcert", v)) => root = Some(PathBuf::from(percent_decode(v)?)),
            _ => rest.push(kv),
        }
    }
    let keep = |mode: Option<&str>| {
        let mut q: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        if let Some(m) = mode {
            q.push(format!("sslmode={m}"));
        }
        if q.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{}", q.join("&"))
        }
    };
    match (mode.as_deref(), root) {
        (Some("verify-full"), Some(root)) => {
            Ok((keep(Some("require")), TlsMode::VerifyFull { root }))
        }
        (Some("verify-full"), None) => Err(
            "sslmode=verify-full needs sslrootcert=FILE: the CA (PEM) that signed the server's \
             certificate"
                .into(),
        ),
        (Some("require"), _) => Err(
            "sslmode=require encrypts without checking the server's certificate: use \
             sslmode=verify-full&sslrootcert=CA.pem"
                .into(),
        ),
        (Some("verify-ca"), _) => Err(
            "sslmode=verify-ca does not check the server's name: use sslmode=verify-full \
             (with sslrootcert=CA.pem)"
                .into(),
        ),
        (_, Some(_)) => Err("sslrootcert takes effect only with sslmode=verify-full".into()),
        (m, None) => Ok((keep(m), TlsMode::Plain)),
    }
}

/// `%XX` escapes of a URL query value (a path may hold spaces or `&`).
fn percent_decode(v: &str) -> Result<String, String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = v
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("sslrootcert {v:?}: bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("sslrootcert {v:?} is not UTF-8"))
}

/// A connector that trusts only the certificates in `root` (PEM).
pub(crate) fn connector(root: &std::path::Path) -> Result<MakeRustlsConnect, String> {
    let pem = std::fs::read(root).map_err(|e| format!("reading {}: {e}", root.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", root.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", root.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no certificate (PEM)", root.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_full_is_taken_out_of_the_url() {
        let (url, mode) =
            split_url("postgres://u:p@db/x?sslmode=verify-full&sslrootcert=/etc/ca%20x.pem&application_name=a")
                .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db/x?application_name=a&sslmode=require"
        );
        assert_eq!(
            mode,
            TlsMode::VerifyFull {
                root: "/etc/ca x.pem".into()
            }
        );
        let (url, mode) = split_url("postgres://db/x?sslmode=disable").unwrap();
        assert_eq!(
            (url.as_str(), mode),
            ("postgres://db/x?sslmode=disable", TlsMode::Plain)
        );
        assert_eq!(
            split_url("postgres://db/x").unwrap(),
            ("postgres://db/x".to_owned(), TlsMode::Plain)
        );
    }

    #[test]
    fn unverified_tls_is_refused_with_the_fix() {
        for (url, says) in [
            ("postgres://db/x?sslmode=require", "verify-full"),
            ("postgres://db/x?sslmode=verify-ca&sslrootcert=a", "name"),
            ("postgres://db/x?sslmode=verify-full", "sslrootcert"),
            ("postgres://db/x?sslrootcert=a", "only with"),
        ] {
            let e = split_url(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(connector(&empty).err().unwrap().contains("no certificate"));
        assert!(connector(&dir.path().join("missing.pem"))
            .err()
            .unwrap()
            .contains("reading"));
    }
}
