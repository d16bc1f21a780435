//! The Azure binding of a bundle whose vTPM part carries an HCL report (`docs/binding.md`,
//! "Azure"): the TD quote's REPORTDATA commits to the HCL variable data, which names the AK
//! (`HCLAkPub`) and carries the `user-data` the responder wrote (its binding value). The
//! parsing and comparisons are `cloud::azure`'s; this module turns them into bundle checks.

use sha2::{Digest, Sha256};

use super::akcert::same_rsa_key;
use super::{CheckId, EvidenceError, Outcome};
use crate::verify::cloud::azure::{self, AzureError};
use crate::verify::tpm::{self, AkKey};

/// The parts of a well-formed HCL report that the bundle checks use.
pub(super) struct Parsed<'a> {
    variable_data: &'a [u8],
    /// `HCLAkPub`: RSA modulus and exponent.
    ak: (Vec<u8>, Vec<u8>),
    user_data: Option<[u8; 64]>,
}

pub(super) fn parse(report: &[u8]) -> Result<Parsed<'_>, AzureError> {
    let variable_data = azure::hcl_variable_data(report)?;
    Ok(Parsed {
        ak: azure::hcl_ak(variable_data)?,
        user_data: azure::hcl_user_data(variable_data)?,
        variable_data,
    })
}

const NO_REPORT_DATA: &str = "REPORTDATA does not commit to the HCL report (see report_data)";

/// The outcome of a check that needs the HCL report when it did not parse.
fn report_missing() -> Outcome {
    Outcome::Fail(EvidenceError::Dependency(CheckId::HclReport))
}

/// `hcl_report`: the report parsed, and its TDREPORT equals the TD quote's body (`quote`,
/// when the bundle has one).
pub(super) fn report_outcome(
    report: &[u8],
    parsed: &Result<Parsed<'_>, AzureError>,
    quote: Option<&[u8]>,
) -> Outcome {
    if let Err(e) = parsed {
        return Outcome::Fail(e.clone().into());
    }
    let Some(quote) = quote else {
        return Outcome::Pass;
    };
    // The 584-byte TD report body, after the header (and v5's body descriptor).
    let at = crate::verify::tdx::body_offset(quote);
    let Some(body) = quote.get(at..at + 584) else {
        return Outcome::Fail(EvidenceError::TdxQuoteTooShort { len: quote.len() });
    };
    match azure::hcl_td_report(report, body) {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e.into()),
    }
}

/// `report_data` with an HCL report: REPORTDATA[0..32] = SHA-256(variable data).
pub(super) fn report_data_outcome(
    parsed: &Result<Parsed<'_>, AzureError>,
    report_data: &[u8; 64],
    has_inclusion_proof: bool,
    tdx_checked: bool,
) -> Outcome {
    if has_inclusion_proof {
        return Outcome::Fail(EvidenceError::HclInclusionProof);
    }
    let Ok(p) = parsed else {
        return report_missing();
    };
    match azure::check_report_data(p.variable_data, report_data) {
        Err(e) => Outcome::Fail(e.into()),
        Ok(()) if tdx_checked => Outcome::Pass,
        Ok(()) => Outcome::Skipped(
            "REPORTDATA[0..32] = SHA-256(HCL variable data) (TDX quote signature not verified)"
                .into(),
        ),
    }
}

/// Whether REPORTDATA commits to the variable data (`None`: no TD quote to compare with).
pub(super) fn report_data_matches(
    parsed: &Result<Parsed<'_>, AzureError>,
    report_data: Option<&[u8; 64]>,
) -> Option<bool> {
    let rd = report_data?;
    Some(
        parsed
            .as_ref()
            .is_ok_and(|p| azure::check_report_data(p.variable_data, rd).is_ok()),
    )
}

/// The outcome of a check that holds only when REPORTDATA vouches for the HCL report.
fn vouched(rd_matches: Option<bool>, tdx_checked: bool, what: &str) -> Outcome {
    match rd_matches {
        None => Outcome::Skipped(format!("{what}; no TD quote vouches for the HCL report")),
        Some(false) => Outcome::Skipped(format!("{what}; {NO_REPORT_DATA}")),
        Some(true) if tdx_checked => Outcome::Pass,
        Some(true) => Outcome::Skipped(format!("{what} (TDX quote signature not verified)")),
    }
}

/// `ak_hash` with an HCL report: `HCLAkPub` is the bundle's AK (the key that signed the vTPM
/// quote), and REPORTDATA commits to the variable data naming it.
pub(super) fn ak_outcome(
    parsed: &Result<Parsed<'_>, AzureError>,
    ak_public: &[u8],
    rd_matches: Option<bool>,
    tdx_checked: bool,
) -> Outcome {
    let Ok(p) = parsed else {
        return report_missing();
    };
    let (hcl_n, hcl_e) = &p.ak;
    let bundle = match tpm::parse_ak_public(ak_public).map(|a| a.key) {
        Ok(AkKey::Rsa { n, e }) if same_rsa_key((&n, &e), (hcl_n, hcl_e)) => None,
        Ok(AkKey::Rsa { n, .. }) => Some(format!(
            "the RSA key whose modulus hashes to {}",
            hex::encode(Sha256::digest(&n))
        )),
        Ok(AkKey::Ecc { .. }) => Some("an ECC key".into()),
        Err(e) => Some(format!("unparsable ({e})")),
    };
    if let Some(bundle) = bundle {
        return Outcome::Fail(EvidenceError::HclAkMismatch {
            hcl: hex::encode(Sha256::digest(hcl_n)),
            bundle,
        });
    }
    vouched(rd_matches, tdx_checked, "HCLAkPub is the bundle's AK")
}

/// `hcl_user_data`: the report's `user-data` is this bundle's binding value `expected`.
pub(super) fn user_data_outcome(
    parsed: &Result<Parsed<'_>, AzureError>,
    expected: Option<&[u8; 64]>,
    rd_matches: Option<bool>,
    tdx_checked: bool,
) -> Outcome {
    let Ok(p) = parsed else {
        return report_missing();
    };
    let Some(expected) = expected else {
        return Outcome::Fail(EvidenceError::Missing("a bindable nonce"));
    };
    if p.user_data.as_ref() != Some(expected) {
        return Outcome::Fail(EvidenceError::HclUserDataMismatch {
            expected: hex::encode(expected),
            found: p.user_data.map_or_else(|| "absent".into(), hex::encode),
        });
    }
    vouched(
        rd_matches,
        tdx_checked,
        "user-data is this bundle's binding",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azure's own HCL report and the TD quote over it (confidential-containers/trustee).
    const HCL: &[u8] = include_bytes!("../../../../tests/vectors/azure-tdx-vtpm/hcl-report.bin");
    const QUOTE: &[u8] = include_bytes!("../../../../tests/vectors/azure-tdx-vtpm/td-quote.bin");

    /// TPM2B_PUBLIC of an RSA-2048 restricted signing key (RSASSA-SHA256) with modulus `n`.
    fn rsa_ak_public(n: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&0x0001u16.to_be_bytes()); // TPM_ALG_RSA
        t.extend_from_slice(&0x000bu16.to_be_bytes()); // nameAlg SHA-256
        t.extend_from_slice(&0x0005_0472u32.to_be_bytes());
        t.extend_from_slice(&[0, 0]); // authPolicy
        t.extend_from_slice(&0x0010u16.to_be_bytes()); // symmetric NULL
        t.extend_from_slice(&0x0014u16.to_be_bytes()); // RSASSA
        t.extend_from_slice(&0x000bu16.to_be_bytes()); // SHA-256
        t.extend_from_slice(&2048u16.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes()); // exponent 0 = 65537
        t.extend_from_slice(&u16::try_from(n.len()).unwrap().to_be_bytes());
        t.extend_from_slice(n);
        let mut out = u16::try_from(t.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(&t);
        out
    }

    fn real_report_data() -> [u8; 64] {
        QUOTE[48 + 520..48 + 584].try_into().unwrap()
    }

    #[test]
    fn the_real_azure_report_binds_its_ak_through_the_td_quote() {
        let parsed = parse(HCL);
        let p = parsed.as_ref().unwrap();
        assert_eq!(
            p.user_data,
            Some([0; 64]),
            "the vector's user-data is zeros"
        );
        assert!(matches!(
            report_outcome(HCL, &parsed, Some(QUOTE)),
            Outcome::Pass
        ));
        let rd = real_report_data();
        assert_eq!(
            report_data_matches(&parsed, Some(&rd)),
            Some(true),
            "SHA-256 of the variable data is REPORTDATA[0..32]"
        );
        // Intel's root, no collateral here: the quote is unchecked, so these skip, not fail.
        assert!(matches!(
            report_data_outcome(&parsed, &rd, false, false),
            Outcome::Skipped(_)
        ));
        assert!(matches!(
            report_data_outcome(&parsed, &rd, false, true),
            Outcome::Pass
        ));
        let ak = rsa_ak_public(&p.ak.0);
        assert!(matches!(
            ak_outcome(&parsed, &ak, Some(true), true),
            Outcome::Pass
        ));
    }

    #[test]
    fn each_broken_link_of_the_real_report_is_named() {
        let parsed = parse(HCL);
        let p = parsed.as_ref().unwrap();
        let rd = real_report_data();
        // Another AK.
        let mut n = p.ak.0.clone();
        n[0] ^= 0x01;
        assert!(matches!(
            ak_outcome(&parsed, &rsa_ak_public(&n), Some(true), true),
            Outcome::Fail(EvidenceError::HclAkMismatch { .. })
        ));
        // Another REPORTDATA.
        let mut other = rd;
        other[5] ^= 1;
        assert!(matches!(
            report_data_outcome(&parsed, &other, false, true),
            Outcome::Fail(EvidenceError::Hcl(AzureError::ReportData { .. }))
        ));
        assert!(matches!(
            ak_outcome(&parsed, &rsa_ak_public(&p.ak.0), Some(false), true),
            Outcome::Skipped(_)
        ));
        // A user-data that is not this bundle's binding (the vector's is zeros).
        assert!(matches!(
            user_data_outcome(&parsed, Some(&[1; 64]), Some(true), true),
            Outcome::Fail(EvidenceError::HclUserDataMismatch { .. })
        ));
        assert!(matches!(
            user_data_outcome(&parsed, Some(&[0; 64]), Some(true), true),
            Outcome::Pass
        ));
        // A TDREPORT field other than the quote's.
        let mut hcl = HCL.to_vec();
        hcl[locus_proto::hcl::TD_INFO_AT] ^= 1;
        let tampered = parse(&hcl);
        assert!(matches!(
            report_outcome(&hcl, &tampered, Some(QUOTE)),
            Outcome::Fail(EvidenceError::Hcl(AzureError::HclTdReport { .. }))
        ));
        // A broken report: the binding checks name it as their dependency.
        let broken = parse(&HCL[..100]);
        assert!(matches!(
            report_outcome(&HCL[..100], &broken, None),
            Outcome::Fail(EvidenceError::Hcl(AzureError::HclReport { .. }))
        ));
        for o in [
            report_data_outcome(&broken, &rd, false, true),
            ak_outcome(&broken, &rsa_ak_public(&p.ak.0), Some(true), true),
            user_data_outcome(&broken, Some(&[0; 64]), Some(true), true),
        ] {
            assert!(matches!(
                o,
                Outcome::Fail(EvidenceError::Dependency(CheckId::HclReport))
            ));
        }
    }
}
