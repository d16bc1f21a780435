//! Lab collateral in dcap-qvl's `QuoteCollateralV3` form: TCB info and QE identity JSON signed
//! by the lab TCB signing key, the lab CRLs and their issuer chains.

use dcap_qvl::QuoteCollateralV3;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::Signature;
use serde_json::json;

use super::pki::{Pki, Platform};
use super::time::rfc3339;
use super::{LabOptions, LabTcbStatus};

/// The lab's TDX module and QE, as the TCB info and QE identity describe them.
#[derive(Debug, Clone)]
pub(super) struct Components {
    pub(super) tee_tcb_svn: [u8; 16],
    pub(super) qe_mrsigner: [u8; 32],
    pub(super) qe_isv_svn: u16,
}

fn sgx_components(svns: &[u8]) -> Vec<serde_json::Value> {
    svns.iter().map(|&svn| json!({ "svn": svn })).collect()
}

fn tcb_info(p: &Platform, c: &Components, opts: &LabOptions) -> String {
    let issue = rfc3339(opts.now_unix - 3600);
    let next = rfc3339(opts.now_unix + opts.collateral_validity_secs);
    let tcb_date = rfc3339(opts.now_unix - 86_400);
    let zeros48 = "0".repeat(96);
    let module_isvsvn = c.tee_tcb_svn[0];
    let platform_level = json!({
        "tcb": {
            "sgxtcbcomponents": sgx_components(&p.cpu_svn),
            "pcesvn": p.pce_svn,
            "tdxtcbcomponents": sgx_components(&c.tee_tcb_svn)
        },
        "tcbDate": tcb_date,
        "tcbStatus": opts.tcb_status.as_json(),
        "advisoryIDs": if opts.tcb_status == LabTcbStatus::UpToDate {
            Vec::<&str>::new()
        } else {
            vec!["LOCUS-LAB-SA-0002"]
        }
    });
    let mut levels = Vec::new();
    // A platform that is not up to date is one CPUSVN[0] step behind an up-to-date level, a
    // TCB recovery released at generation time.
    if opts.tcb_status != LabTcbStatus::UpToDate {
        let mut newer = p.cpu_svn;
        newer[0] = newer[0].saturating_add(1);
        levels.push(json!({
            "tcb": {
                "sgxtcbcomponents": sgx_components(&newer),
                "pcesvn": p.pce_svn,
                "tdxtcbcomponents": sgx_components(&c.tee_tcb_svn)
            },
            "tcbDate": rfc3339(opts.now_unix),
            "tcbStatus": "UpToDate"
        }));
    }
    levels.push(platform_level);
    levels.push(json!({
        "tcb": {
            "sgxtcbcomponents": sgx_components(&[0; 16]),
            "pcesvn": 0,
            "tdxtcbcomponents": sgx_components(&[0; 16])
        },
        "tcbDate": rfc3339(0),
        "tcbStatus": "OutOfDate",
        "advisoryIDs": ["LOCUS-LAB-SA-0001"]
    }));
    json!({
        "id": "TDX",
        "version": 3,
        "issueDate": issue,
        "nextUpdate": next,
        "fmspc": hex::encode_upper(p.fmspc),
        "pceId": hex::encode_upper(p.pce_id),
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
        "tdxModule": {
            "mrsigner": zeros48,
            "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF"
        },
        "tdxModuleIdentities": [{
            "id": format!("TDX_{:02X}", c.tee_tcb_svn[1]),
            "mrsigner": zeros48,
            "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF",
            "tcbLevels": [
                { "tcb": { "isvsvn": module_isvsvn }, "tcbDate": tcb_date, "tcbStatus": "UpToDate" },
                { "tcb": { "isvsvn": 0 }, "tcbDate": rfc3339(0), "tcbStatus": "OutOfDate",
                  "advisoryIDs": ["LOCUS-LAB-SA-0001"] }
            ]
        }],
        "tcbLevels": levels
    })
    .to_string()
}

fn qe_identity(c: &Components, opts: &LabOptions) -> String {
    json!({
        "id": "TD_QE",
        "version": 2,
        "issueDate": rfc3339(opts.now_unix - 3600),
        "nextUpdate": rfc3339(opts.now_unix + opts.collateral_validity_secs),
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": hex::encode_upper(c.qe_mrsigner),
        "isvprodid": 2,
        "tcbLevels": [
            { "tcb": { "isvsvn": c.qe_isv_svn }, "tcbDate": rfc3339(opts.now_unix - 86_400),
              "tcbStatus": "UpToDate" }
        ]
    })
    .to_string()
}

pub(super) fn build(
    pki: &Pki,
    p: &Platform,
    c: &Components,
    opts: &LabOptions,
) -> QuoteCollateralV3 {
    let tcb_info = tcb_info(p, c, opts);
    let qe_identity = qe_identity(c, opts);
    let tcb_sig: Signature = pki.tcb_key.sign(tcb_info.as_bytes());
    let qe_sig: Signature = pki.tcb_key.sign(qe_identity.as_bytes());
    QuoteCollateralV3 {
        pck_crl_issuer_chain: pki.pck_crl_chain_pem.clone(),
        root_ca_crl: pki.root_crl_der.clone(),
        pck_crl: pki.pck_crl_der.clone(),
        tcb_info_issuer_chain: pki.tcb_chain_pem.clone(),
        tcb_info,
        tcb_info_signature: tcb_sig.to_bytes().to_vec(),
        qe_identity_issuer_chain: pki.tcb_chain_pem.clone(),
        qe_identity,
        qe_identity_signature: qe_sig.to_bytes().to_vec(),
        pck_certificate_chain: None,
    }
}
