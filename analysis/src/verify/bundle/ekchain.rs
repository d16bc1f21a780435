//! The EK certificate chain to a configured provider root, at a given time.

use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// Longest chain followed (leaf, intermediates, root).
const MAX_DEPTH: usize = 6;

/// Why an EK certificate does not chain to a trusted root.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EkChainError {
    #[error("the bundle carries no EK certificate")]
    NoEkCertificate,
    #[error("the policy names no EK root")]
    NoRoots,
    #[error("certificate is not valid X.509 DER: {0}")]
    Parse(String),
    #[error("certificate {subject} expired at {not_after} (verification time {now})")]
    Expired {
        subject: String,
        not_after: i64,
        now: i64,
    },
    #[error("certificate {subject} is valid only from {not_before} (verification time {now})")]
    NotYetValid {
        subject: String,
        not_before: i64,
        now: i64,
    },
    #[error("no trusted root or intermediate issued {subject} (issuer {issuer})")]
    UntrustedIssuer { subject: String, issuer: String },
    #[error("certificate {subject} issued {issued} but may not issue certificates: {why}")]
    NotACa {
        subject: String,
        issued: String,
        why: &'static str,
    },
    #[error("chain longer than {MAX_DEPTH}")]
    TooLong,
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, EkChainError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| EkChainError::Parse(e.to_string()))
}

fn check_time(c: &X509Certificate<'_>, now: i64) -> Result<(), EkChainError> {
    let v = c.validity();
    if now < v.not_before.timestamp() {
        return Err(EkChainError::NotYetValid {
            subject: c.subject().to_string(),
            not_before: v.not_before.timestamp(),
            now,
        });
    }
    if now > v.not_after.timestamp() {
        return Err(EkChainError::Expired {
            subject: c.subject().to_string(),
            not_after: v.not_after.timestamp(),
            now,
        });
    }
    Ok(())
}

/// Whether `ca` may issue a certificate with `below` CA certificates between it and the leaf:
/// basicConstraints with cA, keyCertSign when key usage is present, a path length that allows
/// `below` (RFC 5280 4.2.1.3, 4.2.1.9). Without it any end-entity certificate under a trusted
/// root could mint certificates of its own.
fn may_issue(ca: &X509Certificate<'_>, below: usize) -> Result<(), &'static str> {
    let bc = ca
        .basic_constraints()
        .map_err(|_| "malformed basicConstraints")?
        .ok_or("no basicConstraints")?;
    if !bc.value.ca {
        return Err("basicConstraints cA is false");
    }
    if let Some(len) = bc.value.path_len_constraint {
        if (len as usize) < below {
            return Err("pathLenConstraint exceeded");
        }
    }
    if let Some(ku) = ca.key_usage().map_err(|_| "malformed keyUsage")? {
        if !ku.value.key_cert_sign() {
            return Err("keyUsage lacks keyCertSign");
        }
    }
    Ok(())
}

/// Verifies `leaf` → `intermediates`* → one of `roots`, every certificate valid at `now` and
/// every issuer a CA allowed to issue at its depth.
/// Returns the chain's subjects, leaf first.
pub fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: i64,
) -> Result<Vec<String>, EkChainError> {
    if roots.is_empty() {
        return Err(EkChainError::NoRoots);
    }
    let roots: Vec<X509Certificate<'_>> =
        roots.iter().map(|d| parse(d)).collect::<Result<_, _>>()?;
    let inter: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .map(|d| parse(d))
        .collect::<Result<_, _>>()?;
    let mut current = parse(leaf)?;
    let mut subjects = vec![current.subject().to_string()];
    for _ in 0..MAX_DEPTH {
        check_time(&current, now)?;
        let issued_by = |ca: &X509Certificate<'_>| {
            ca.subject() == current.issuer()
                && current.verify_signature(Some(ca.public_key())).is_ok()
        };
        let ca_check = |ca: &X509Certificate<'_>| {
            may_issue(ca, subjects.len() - 1).map_err(|why| EkChainError::NotACa {
                subject: ca.subject().to_string(),
                issued: current.subject().to_string(),
                why,
            })
        };
        if let Some(root) = roots.iter().find(|r| issued_by(r)) {
            check_time(root, now)?;
            ca_check(root)?;
            subjects.push(root.subject().to_string());
            return Ok(subjects);
        }
        // A self-issued certificate that is not a trusted root ends the path (following it to
        // itself would only reach the depth limit).
        match inter
            .iter()
            .find(|c| issued_by(c) && c.subject() != current.subject())
        {
            Some(next) => {
                ca_check(next)?;
                subjects.push(next.subject().to_string());
                current = next.clone();
            }
            None => {
                return Err(EkChainError::UntrustedIssuer {
                    subject: current.subject().to_string(),
                    issuer: current.issuer().to_string(),
                })
            }
        }
    }
    Err(EkChainError::TooLong)
}
