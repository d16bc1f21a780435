//! Azure TDX confidential-VM evidence: a vTPM quote signed by the HCL's attestation key, the
//! HCL report whose variable data carries that key (a JWK), and a TD quote whose REPORTDATA
//! binds the HCL variable data (the DCEA binding: Intel's signature vouches for the AK).
//!
//! Two encodings (confidential-containers/trustee's `az-tdx-vtpm` evidence): v1
//! `{"version":1, "tpm_quote":{signature, message, pcrs: hex}, "hcl_report", "td_quote":
//! base64url}` and the legacy v0 with every byte string as an array of numbers.
//!
//! HCL report layout (Azure IGVM attestation report): a 32-byte header (`HCLA`, version, report
//! size, request type, status, reserved), the 1184-byte hardware report (for TDX the TDREPORT),
//! then the runtime data header (data size, version, report type, hash type, variable data
//! size) at 0x4c0 and the variable data at 0x4d4. The TDREPORT's MAC can only be checked on the
//! platform; offline, its REPORTDATA, TEE TCB info and TD info must equal the verified TD
//! quote's, which makes the TD quote's signature cover them.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{Checks, NamedCheck, MAX_EVIDENCE_LEN};
pub use crate::check::AzureCheck;
use crate::verify::tdx::{
    self, Collateral, TcbStatus, TdxError, TdxVerified, TrustRoot, DEFAULT_ACCEPT_TCB,
};
use crate::verify::tpm::{self, TpmError, ALG_SHA256};

use locus_proto::hcl::{
    HASH_TYPE_SHA256, HEADER_LEN as HCL_HEADER_LEN, MAX_HCL_REPORT_LEN, REPORT_TYPE_TDX,
    RUNTIME_HEADER_AT, SIGNATURE as HCL_SIGNATURE, TD_INFO_AT as HCL_TD_INFO_AT,
    TD_REPORT_DATA_AT as HCL_REPORT_DATA_AT, TD_TEE_TCB_AT as HCL_TEE_TCB_AT, USER_DATA_LEN,
    VARIABLE_DATA_AT,
};

/// Why Azure TDX evidence was rejected. Each variant is one check.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AzureError {
    /// The file is larger than any real evidence.
    #[error("evidence of {len} bytes exceeds {max}")]
    Oversized { len: usize, max: usize },
    /// Not the JSON evidence in either encoding.
    #[error("not az-tdx-vtpm evidence: {reason}")]
    Decode { reason: String },
    /// The HCL report's header or runtime data header is malformed.
    #[error("HCL report: {0}")]
    HclReport(HclReportError),
    /// The HCL variable data holds no usable `HCLAkPub` RSA JWK.
    #[error("HCL AK: {reason}")]
    HclAkPub { reason: String },
    /// The vTPM quote's TPMS_ATTEST does not parse as a quote.
    #[error("vTPM quote: {0}")]
    TpmQuoteParse(TpmError),
    /// The vTPM quote's signature does not verify under the HCL AK.
    #[error("vTPM quote signature: {0}")]
    TpmQuoteSignature(TpmError),
    /// The verifier gave an empty nonce.
    #[error(
        "no nonce expected: evidence without a fresh nonce is not accepted (extraData {found})"
    )]
    NonceRequired { found: String },
    /// The vTPM quote's extraData is not the nonce.
    #[error("vTPM quote extraData {found} is not the nonce {expected}")]
    Nonce { expected: String, found: String },
    /// The PCR values are not what the quote selects.
    #[error("PCR values: {reason}")]
    PcrSelection { reason: String },
    /// SHA-256 over the PCR values is not the quote's pcrDigest.
    #[error("PCR values hash to {found}, the quote's pcrDigest is {expected}")]
    PcrDigest { expected: String, found: String },
    /// The TD quote does not verify (signature, PCK chain, or collateral when given).
    #[error("TD quote: {0} (check {check})", check = .0.check())]
    TdQuote(TdxError),
    /// The TD quote's TCB status is not accepted (`--accept-tcb`; default `UpToDate`,
    /// `SWHardeningNeeded`): the platform is behind, see the components named.
    /// Boxed: a second inline `TdxError` would cost the niche and grow every `AzureError`.
    #[error("TD quote: {0}")]
    TdTcb(Box<TdxError>),
    /// SHA-256 of the HCL variable data is not the TD quote's REPORTDATA[0..32].
    #[error("SHA-256 of the HCL variable data is {found}, the TD quote's REPORTDATA[0..32] is {expected}")]
    ReportData { expected: String, found: String },
    /// The HCL report's TDREPORT is not the one the TD quote was made from.
    #[error("HCL TDREPORT {field} differs from the TD quote's")]
    HclTdReport { field: &'static str },
    /// The runtime data's `user-data` is not a 64-byte hex string.
    #[error("HCL user-data: {reason}")]
    HclUserData { reason: String },
}

/// Why an HCL report's size, header or runtime data header is malformed (all one check,
/// `HclReport`). The report was cut, padded or is not an Azure TDX HCL report: fetch it again.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HclReportError {
    #[error("{len} bytes exceed the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("{len} bytes, the headers need {need}")]
    Truncated { len: usize, need: usize },
    #[error("signature {found:02x?} is not HCLA")]
    Signature { found: [u8; 4] },
    #[error("status {status:#x} or reserved header bytes nonzero")]
    Header { status: u32 },
    #[error("report type {found}, TDX is {expected}")]
    ReportType { found: u32, expected: u32 },
    #[error("hash type {found}, SHA-256 is {expected}")]
    HashType { found: u32, expected: u32 },
    #[error("variable data of {size} bytes overruns the report")]
    VariableDataOverrun { size: usize },
    #[error("runtime data size {runtime} is not variable data size {variable} + 20")]
    RuntimeDataSize { runtime: usize, variable: usize },
    #[error("report size {found}, the variable data ends at {end}")]
    ReportSize { found: usize, end: usize },
    #[error("nonzero bytes after the report")]
    TrailingBytes,
}

impl NamedCheck for AzureError {
    type Id = AzureCheck;

    fn check(&self) -> AzureCheck {
        match self {
            Self::Oversized { .. } => AzureCheck::Oversized,
            Self::Decode { .. } => AzureCheck::Decode,
            Self::HclReport { .. } => AzureCheck::HclReport,
            Self::HclAkPub { .. } => AzureCheck::HclAkPub,
            Self::TpmQuoteParse(_) => AzureCheck::TpmQuoteParse,
            Self::TpmQuoteSignature(_) => AzureCheck::TpmQuoteSignature,
            Self::NonceRequired { .. } => AzureCheck::NonceRequired,
            Self::Nonce { .. } => AzureCheck::Nonce,
            Self::PcrSelection { .. } => AzureCheck::PcrSelection,
            Self::PcrDigest { .. } => AzureCheck::PcrDigest,
            Self::TdQuote(_) => AzureCheck::TdQuote,
            Self::TdTcb(_) => AzureCheck::TdTcb,
            Self::ReportData { .. } => AzureCheck::ReportData,
            Self::HclTdReport { .. } => AzureCheck::HclTdReport,
            Self::HclUserData { .. } => AzureCheck::HclUserData,
        }
    }
}

/// What the evidence names, from the verified TD quote and vTPM quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureIdentity {
    pub mr_td: String,
    pub rtmrs: [String; 4],
    pub report_data: String,
    pub fmspc: String,
    /// "Unknown" unless collateral was given.
    pub tcb_status: String,
    pub collateral_checked: bool,
}

/// The result of verifying Azure TDX evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureReport {
    pub valid: bool,
    pub failed_checks: Vec<AzureCheck>,
    /// `v1` or `v0`.
    pub encoding: Option<&'static str>,
    pub checks: Checks<AzureError>,
    /// From the TD quote, when it verified.
    pub identity: Option<AzureIdentity>,
    /// The vTPM PCR values as given (hex, PCR0 first).
    pub pcrs: Vec<String>,
    /// SHA-256 of the HCL AK's RSA modulus (hex), when found.
    pub ak_modulus_sha256: Option<String>,
}

/// The decoded parts.
struct Evidence {
    encoding: &'static str,
    signature: Vec<u8>,
    message: Vec<u8>,
    pcrs: Vec<Vec<u8>>,
    hcl_report: Vec<u8>,
    td_quote: Vec<u8>,
}

fn decode_err(reason: impl Into<String>) -> AzureError {
    AzureError::Decode {
        reason: reason.into(),
    }
}

fn decode(json: &[u8]) -> Result<Evidence, AzureError> {
    if json.len() > MAX_EVIDENCE_LEN {
        return Err(AzureError::Oversized {
            len: json.len(),
            max: MAX_EVIDENCE_LEN,
        });
    }
    let v: Value = serde_json::from_slice(json).map_err(|e| decode_err(format!("JSON: {e}")))?;
    let v1 = match v.get("version") {
        None => false,
        Some(n) if n.as_u64() == Some(1) => true,
        Some(n) => return Err(decode_err(format!("unknown version {n}"))),
    };
    let field =
        |v: &Value, name: &str, text: fn(&str) -> Option<Vec<u8>>| -> Result<Vec<u8>, AzureError> {
            let f = v
                .get(name)
                .ok_or_else(|| decode_err(format!("no {name}")))?;
            bytes_of(f, v1, text).ok_or_else(|| decode_err(format!("{name} is not a byte string")))
        };
    let tq = v
        .get("tpm_quote")
        .ok_or_else(|| decode_err("no tpm_quote"))?;
    let pcrs = tq
        .get("pcrs")
        .and_then(Value::as_array)
        .ok_or_else(|| decode_err("tpm_quote.pcrs is not an array"))?
        .iter()
        .map(|p| bytes_of(p, v1, hex_text))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| decode_err("tpm_quote.pcrs holds a non-byte-string"))?;
    Ok(Evidence {
        encoding: if v1 { "v1" } else { "v0" },
        signature: field(tq, "signature", hex_text)?,
        message: field(tq, "message", hex_text)?,
        pcrs,
        hcl_report: field(&v, "hcl_report", base64url_text)?,
        td_quote: field(&v, "td_quote", base64url_text)?,
    })
}

/// v1: a string in the field's text encoding; v0: an array of numbers 0..=255.
fn bytes_of(v: &Value, v1: bool, text: fn(&str) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    if v1 {
        text(v.as_str()?)
    } else {
        v.as_array()?
            .iter()
            .map(|n| n.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect()
    }
}

fn hex_text(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

fn base64url_text(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(s).ok()
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Checks the HCL report's size and headers; returns the variable data.
pub fn hcl_variable_data(hcl: &[u8]) -> Result<&[u8], AzureError> {
    hcl_layout(hcl).map_err(AzureError::HclReport)
}

fn hcl_layout(hcl: &[u8]) -> Result<&[u8], HclReportError> {
    use HclReportError as E;
    let len = hcl.len();
    if len > MAX_HCL_REPORT_LEN {
        return Err(E::TooLarge {
            len,
            max: MAX_HCL_REPORT_LEN,
        });
    }
    if len < VARIABLE_DATA_AT {
        return Err(E::Truncated {
            len,
            need: VARIABLE_DATA_AT,
        });
    }
    if &hcl[..4] != HCL_SIGNATURE {
        let mut found = [0; 4];
        found.copy_from_slice(&hcl[..4]);
        return Err(E::Signature { found });
    }
    let status = u32_at(hcl, 16).unwrap_or(u32::MAX);
    if status != 0 || hcl[20..HCL_HEADER_LEN].iter().any(|b| *b != 0) {
        return Err(E::Header { status });
    }
    let report_type = u32_at(hcl, RUNTIME_HEADER_AT + 8).unwrap_or(0);
    if report_type != REPORT_TYPE_TDX {
        return Err(E::ReportType {
            found: report_type,
            expected: REPORT_TYPE_TDX,
        });
    }
    let hash_type = u32_at(hcl, RUNTIME_HEADER_AT + 12).unwrap_or(0);
    if hash_type != HASH_TYPE_SHA256 {
        return Err(E::HashType {
            found: hash_type,
            expected: HASH_TYPE_SHA256,
        });
    }
    let data_size = u32_at(hcl, RUNTIME_HEADER_AT).unwrap_or(0) as usize;
    let var_size = u32_at(hcl, RUNTIME_HEADER_AT + 16).unwrap_or(0) as usize;
    let end = VARIABLE_DATA_AT
        .checked_add(var_size)
        .filter(|end| *end <= len)
        .ok_or(E::VariableDataOverrun { size: var_size })?;
    if data_size != var_size + 20 {
        return Err(E::RuntimeDataSize {
            runtime: data_size,
            variable: var_size,
        });
    }
    let report_size = u32_at(hcl, 8).unwrap_or(0) as usize;
    if report_size != end {
        return Err(E::ReportSize {
            found: report_size,
            end,
        });
    }
    if hcl[end..].iter().any(|b| *b != 0) {
        return Err(E::TrailingBytes);
    }
    Ok(&hcl[VARIABLE_DATA_AT..end])
}

/// The variable data as JSON (trailing zero bytes ignored).
fn variable_json(var: &[u8]) -> Result<Value, String> {
    let end = var.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    serde_json::from_slice(&var[..end]).map_err(|e| format!("variable data is not JSON: {e}"))
}

/// The RSA key `HCLAkPub` from the variable data's JWK set: (n, e).
pub fn hcl_ak(var: &[u8]) -> Result<(Vec<u8>, Vec<u8>), AzureError> {
    let err = |reason: &str| AzureError::HclAkPub {
        reason: reason.into(),
    };
    let v = variable_json(var).map_err(|e| err(&e))?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| err("no keys array"))?;
    let mut found = keys.iter().filter(|k| k["kid"] == "HCLAkPub");
    let key = found.next().ok_or_else(|| err("no HCLAkPub key"))?;
    if found.next().is_some() {
        return Err(err("HCLAkPub present twice"));
    }
    if key["kty"] != "RSA" {
        return Err(err("HCLAkPub is not an RSA key"));
    }
    let part = |name: &str| {
        key[name]
            .as_str()
            .and_then(base64url_text)
            .ok_or_else(|| err(&format!("HCLAkPub.{name} is not base64url")))
    };
    Ok((part("n")?, part("e")?))
}

/// The `user-data` the guest wrote before the HCL made this report (hex in the runtime data;
/// Azure writes it upper-case); `None` when the runtime data has none.
pub fn hcl_user_data(var: &[u8]) -> Result<Option<[u8; USER_DATA_LEN]>, AzureError> {
    let err = |reason: String| AzureError::HclUserData { reason };
    let v = variable_json(var).map_err(err)?;
    let Some(u) = v.get("user-data") else {
        return Ok(None);
    };
    let bytes = u
        .as_str()
        .and_then(hex_text)
        .ok_or_else(|| err("not a hex string".into()))?;
    let len = bytes.len();
    bytes
        .try_into()
        .map(Some)
        .map_err(|_| err(format!("{len} bytes, expected {USER_DATA_LEN}")))
}

/// SHA-256 of the HCL variable data is the TD quote's REPORTDATA[0..32] (`report_data`: the
/// quote's 64-byte REPORTDATA).
pub fn check_report_data(var: &[u8], report_data: &[u8]) -> Result<(), AzureError> {
    let found = Sha256::digest(var);
    let expected = report_data.get(..32).unwrap_or(report_data);
    if found[..] == *expected {
        Ok(())
    } else {
        Err(AzureError::ReportData {
            expected: hex::encode(expected),
            found: hex::encode(found),
        })
    }
}

/// Verifies Azure TDX evidence (`evidence_json` in either encoding) against the verifier's
/// `nonce` at `now_unix`, accepting the TCB statuses of [`DEFAULT_ACCEPT_TCB`]. Without
/// `collateral` the TD quote's signature and PCK chain are checked and its TCB status is
/// "Unknown".
pub fn verify(
    evidence_json: &[u8],
    nonce: &[u8],
    now_unix: u64,
    collateral: Option<&Collateral>,
) -> AzureReport {
    verify_accepting(
        evidence_json,
        nonce,
        now_unix,
        collateral,
        &DEFAULT_ACCEPT_TCB,
    )
}

/// [`verify`] with the TCB statuses the `TdTcb` check accepts.
pub fn verify_accepting(
    evidence_json: &[u8],
    nonce: &[u8],
    now_unix: u64,
    collateral: Option<&Collateral>,
    accept_tcb: &[TcbStatus],
) -> AzureReport {
    let mut checks = Checks::new();
    let mut report = AzureReport {
        valid: false,
        failed_checks: Vec::new(),
        encoding: None,
        checks: Checks::new(),
        identity: None,
        pcrs: Vec::new(),
        ak_modulus_sha256: None,
    };
    if let Some(ev) = checks.record(
        AzureCheck::Decode,
        decode(evidence_json),
        "az-tdx-vtpm JSON",
    ) {
        report.encoding = Some(ev.encoding);
        report.pcrs = ev.pcrs.iter().map(hex::encode).collect();
        let quote = QuoteCheck {
            collateral,
            accept_tcb,
            now_unix,
        };
        verify_decoded(&ev, nonce, &quote, &mut checks, &mut report);
    }
    report.valid = checks.valid();
    report.failed_checks = checks.failed();
    report.checks = checks;
    report
}

/// How the TD quote is verified: collateral, the accepted TCB statuses, the time.
struct QuoteCheck<'a> {
    collateral: Option<&'a Collateral>,
    accept_tcb: &'a [TcbStatus],
    now_unix: u64,
}

fn verify_decoded(
    ev: &Evidence,
    nonce: &[u8],
    quote: &QuoteCheck<'_>,
    checks: &mut Checks<AzureError>,
    report: &mut AzureReport,
) {
    let (collateral, now_unix) = (quote.collateral, quote.now_unix);
    // HCL report and its AK.
    let var = checks.record(
        AzureCheck::HclReport,
        hcl_variable_data(&ev.hcl_report),
        "HCLA, TDX, SHA-256",
    );
    let ak = var.map(hcl_ak);
    let ak = match ak {
        Some(ak) => checks.record(AzureCheck::HclAkPub, ak, "RSA JWK HCLAkPub"),
        None => {
            checks.skip(AzureCheck::HclAkPub, "HCL report malformed");
            None
        }
    };
    if let Some((n, _)) = &ak {
        report.ak_modulus_sha256 = Some(hex::encode(Sha256::digest(n)));
    }

    // vTPM quote.
    let attest = tpm::parse_quote_attest(&ev.message).map_err(AzureError::TpmQuoteParse);
    let attest = checks.record(AzureCheck::TpmQuoteParse, attest, "TPMS_ATTEST");
    match &ak {
        Some((n, e)) => {
            let sig = tpm::verify_rsa_pkcs1_sha256(n, e, &ev.message, &ev.signature)
                .map_err(AzureError::TpmQuoteSignature);
            checks.record(
                AzureCheck::TpmQuoteSignature,
                sig,
                "RSASSA-SHA256 by HCLAkPub",
            );
        }
        None => checks.skip(AzureCheck::TpmQuoteSignature, "no HCL AK"),
    }
    if let Some(attest) = &attest {
        if nonce.is_empty() {
            checks.fail(AzureError::NonceRequired {
                found: hex::encode(&attest.extra_data),
            });
        } else if attest.extra_data == nonce {
            checks.pass(AzureCheck::Nonce, "extraData = nonce");
        } else {
            checks.fail(AzureError::Nonce {
                expected: hex::encode(nonce),
                found: hex::encode(&attest.extra_data),
            });
        }
        let sel = pcr_selection(attest, &ev.pcrs);
        if checks
            .record(AzureCheck::PcrSelection, sel, "sha256 PCR0..23")
            .is_some()
        {
            let found = tpm::pcr_digest(ev.pcrs.iter().map(Vec::as_slice));
            if found[..] == attest.pcr_digest[..] {
                checks.pass(AzureCheck::PcrDigest, "SHA-256 of the PCR values");
            } else {
                checks.fail(AzureError::PcrDigest {
                    expected: hex::encode(&attest.pcr_digest),
                    found: hex::encode(found),
                });
            }
        }
    }

    // TD quote, and the bindings between it and the HCL report.
    let td = match collateral {
        Some(c) => tdx::verify(&ev.td_quote, c, &TrustRoot::IntelSgx, now_unix),
        None => tdx::verify_without_collateral(&ev.td_quote, &TrustRoot::IntelSgx, now_unix),
    };
    let detail = if collateral.is_some() {
        "signature, PCK chain, collateral"
    } else {
        "signature and PCK chain; no collateral: TCB status unknown"
    };
    let td = checks.record(AzureCheck::TdQuote, td.map_err(AzureError::TdQuote), detail);
    td_tcb(checks, td.as_ref(), quote.accept_tcb);
    if let Some(td) = &td {
        report.identity = Some(identity(td));
    }
    // Run on the raw bytes even when the quote failed, so every broken binding is named.
    let at = tdx::body_offset(&ev.td_quote);
    let body = ev.td_quote.get(at..at + 584);
    match (var, body) {
        (Some(var), Some(body)) => {
            checks.record(
                AzureCheck::ReportData,
                check_report_data(var, &body[520..584]),
                "SHA-256(HCL variable data) = REPORTDATA[0..32]",
            );
            checks.record(
                AzureCheck::HclTdReport,
                hcl_td_report(&ev.hcl_report, body),
                "TDREPORT = TD quote body",
            );
        }
        _ => {
            checks.skip(AzureCheck::ReportData, "HCL report or TD quote malformed");
            checks.skip(AzureCheck::HclTdReport, "HCL report or TD quote malformed");
        }
    }
}

/// `TdTcb`: the verified quote's TCB status is accepted. Without collateral there is no status
/// to judge (skipped; the identity says `collateral_checked: false`).
fn td_tcb(checks: &mut Checks<AzureError>, td: Option<&TdxVerified>, accept: &[TcbStatus]) {
    match td {
        None => checks.skip(AzureCheck::TdTcb, "no verified TD quote"),
        Some(v) if !v.collateral_checked => {
            checks.skip(AzureCheck::TdTcb, "no collateral: TCB status unknown")
        }
        Some(v) => {
            let r = tdx::check_tcb(v, accept).map_err(|e| AzureError::TdTcb(Box::new(e)));
            checks.record(AzureCheck::TdTcb, r, "TCB status accepted");
        }
    }
}

fn pcr_selection(attest: &tpm::QuoteAttest, pcrs: &[Vec<u8>]) -> Result<(), AzureError> {
    let err = |reason: String| AzureError::PcrSelection { reason };
    let [sel] = attest.selections.as_slice() else {
        return Err(err(format!(
            "the quote selects {} banks, expected one",
            attest.selections.len()
        )));
    };
    if sel.hash_alg != ALG_SHA256 {
        return Err(err(format!("the quote selects bank {:#06x}", sel.hash_alg)));
    }
    let given: Vec<u8> = (0..pcrs.len())
        .filter_map(|i| u8::try_from(i).ok())
        .collect();
    if sel.pcrs != given || given.len() != pcrs.len() {
        return Err(err(format!(
            "the quote selects PCRs {:?}, {} values given for PCR0 onwards",
            sel.pcrs,
            pcrs.len()
        )));
    }
    if let Some((i, v)) = pcrs.iter().enumerate().find(|(_, v)| v.len() != 32) {
        return Err(err(format!(
            "PCR{i} has {} bytes, sha256 needs 32",
            v.len()
        )));
    }
    Ok(())
}

/// The HCL's TDREPORT fields that the TD quote body (584 bytes) repeats.
pub fn hcl_td_report(hcl: &[u8], body: &[u8]) -> Result<(), AzureError> {
    let pairs: [(&'static str, usize, usize, usize); 3] = [
        ("REPORTDATA", HCL_REPORT_DATA_AT, 520, 64),
        ("TEE_TCB_SVN/MRSEAM/MRSIGNERSEAM", HCL_TEE_TCB_AT, 0, 112),
        ("ATTRIBUTES..RTMR3", HCL_TD_INFO_AT, 120, 400),
    ];
    for (field, at, body_at, len) in pairs {
        if hcl.get(at..at + len) != body.get(body_at..body_at + len) {
            return Err(AzureError::HclTdReport { field });
        }
    }
    Ok(())
}

fn identity(td: &TdxVerified) -> AzureIdentity {
    AzureIdentity {
        mr_td: hex::encode(td.mr_td),
        rtmrs: td.rtmr.map(hex::encode),
        report_data: hex::encode(td.report_data),
        fmspc: hex::encode(td.fmspc),
        tcb_status: td.tcb_status.clone(),
        collateral_checked: td.collateral_checked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &[u8] = include_bytes!("../../../../tests/vectors/azure-tdx-vtpm/evidence-v1.json");
    const V0: &[u8] = include_bytes!("../../../../tests/vectors/azure-tdx-vtpm/evidence-v0.json");
    /// 2025-01-01, inside the PCK chain's validity (2023-09-13 .. 2030-09-13).
    const AT: u64 = 1_735_689_600;
    const HCL: &[u8] = include_bytes!("../../../../tests/vectors/azure-tdx-vtpm/hcl-report.bin");

    /// The real TD quote's TCB judged as collateral would give it: an `OutOfDate` platform
    /// fails `TdTcb` under the default list and passes when the caller accepts it; without
    /// collateral there is no status to judge.
    #[test]
    fn td_tcb_applies_the_accepted_list() {
        let quote = include_bytes!("../../../../tests/vectors/azure-tdx-vtpm/td-quote.bin");
        let unchecked = tdx::verify_without_collateral(quote, &TrustRoot::IntelSgx, AT).unwrap();
        let run = |v: &TdxVerified, accept: &[TcbStatus]| {
            let mut checks = Checks::new();
            td_tcb(&mut checks, Some(v), accept);
            checks
        };
        let c = run(&unchecked, &DEFAULT_ACCEPT_TCB);
        assert!(c.failed().is_empty() && !c.valid(), "skipped, not passed");
        let mut stale = unchecked.clone();
        stale.collateral_checked = true;
        stale.tcb_status = "OutOfDate".into();
        assert_eq!(
            run(&stale, &DEFAULT_ACCEPT_TCB).failed(),
            [AzureCheck::TdTcb]
        );
        assert!(run(&stale, &[TcbStatus::OutOfDate]).valid());
        stale.tcb_status = "UpToDate".into();
        assert!(run(&stale, &DEFAULT_ACCEPT_TCB).valid());
    }

    /// One malformation per HCL layout condition, each named by its own variant.
    #[test]
    fn each_hcl_layout_fault_has_its_variant() {
        use HclReportError as E;
        assert!(hcl_variable_data(HCL).is_ok());
        let put = |at: usize, v: u32| {
            let mut h = HCL.to_vec();
            h[at..at + 4].copy_from_slice(&v.to_le_bytes());
            h
        };
        let field = |at: usize| u32::from_le_bytes(HCL[at..at + 4].try_into().unwrap());
        let var_size = field(RUNTIME_HEADER_AT + 16);
        let mut signed = HCL.to_vec();
        signed[0] = b'X';
        let mut trailing = HCL.to_vec();
        trailing.push(1);
        type Case = (Vec<u8>, fn(&E) -> bool);
        let cases: Vec<Case> = vec![
            (vec![0; MAX_HCL_REPORT_LEN + 1], |e| {
                matches!(e, E::TooLarge { .. })
            }),
            (
                HCL[..100].to_vec(),
                |e| matches!(e, E::Truncated { len: 100, need } if *need == VARIABLE_DATA_AT),
            ),
            (
                signed,
                |e| matches!(e, E::Signature { found } if found[0] == b'X'),
            ),
            (put(16, 7), |e| matches!(e, E::Header { status: 7 })),
            (put(RUNTIME_HEADER_AT + 8, 9), |e| {
                matches!(e, E::ReportType { found: 9, .. })
            }),
            (put(RUNTIME_HEADER_AT + 12, 9), |e| {
                matches!(e, E::HashType { found: 9, .. })
            }),
            (put(RUNTIME_HEADER_AT + 16, u32::MAX >> 1), |e| {
                matches!(e, E::VariableDataOverrun { .. })
            }),
            (put(RUNTIME_HEADER_AT, var_size + 21), |e| {
                matches!(e, E::RuntimeDataSize { .. })
            }),
            (put(8, field(8) + 1), |e| matches!(e, E::ReportSize { .. })),
            (trailing, |e| matches!(e, E::TrailingBytes)),
        ];
        for (i, (hcl, want)) in cases.iter().enumerate() {
            match hcl_variable_data(hcl) {
                Err(AzureError::HclReport(e)) => assert!(want(&e), "case {i}: {e:?}"),
                other => panic!("case {i}: {other:?}"),
            }
        }
    }

    #[test]
    fn both_encodings_verify_with_unknown_tcb() {
        for (name, ev) in [("v1", V1), ("v0", V0)] {
            let r = verify(ev, b"challenge", AT, None);
            assert!(r.valid, "{name}: {:?}", r.checks);
            assert_eq!(r.encoding, Some(name));
            let id = r.identity.unwrap();
            assert_eq!(id.tcb_status, "Unknown");
            assert!(!id.collateral_checked);
            assert_eq!(r.pcrs.len(), 24);
        }
    }

    #[test]
    fn a_wrong_or_empty_nonce_is_rejected() {
        assert_eq!(
            verify(V1, b"challengf", AT, None).failed_checks,
            vec![AzureCheck::Nonce]
        );
        assert_eq!(
            verify(V1, b"", AT, None).failed_checks,
            vec![AzureCheck::NonceRequired]
        );
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = verify(&bytes, b"n", AT, None);
        }
    }
}
