//! The lab PCK PKI: lab root CA → lab PCK Platform CA → PCK leaf (with the Intel SGX extension),
//! lab root CA → lab TCB signing certificate, and the two CRLs. Keys are fresh per call.

use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use time::OffsetDateTime;

use super::der;
use super::LabOptions;
use crate::tdx::QuoteError;

/// OID arc of the Intel SGX extension (1.2.840.113741.1.13.1).
const SGX_EXT: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];

/// The platform identity a lab PCK certificate carries.
#[derive(Debug, Clone)]
pub(super) struct Platform {
    pub(super) ppid: [u8; 16],
    pub(super) cpu_svn: [u8; 16],
    pub(super) pce_svn: u16,
    pub(super) pce_id: [u8; 2],
    pub(super) fmspc: [u8; 6],
    pub(super) piid: [u8; 16],
}

pub(super) struct Pki {
    pub(super) root_der: Vec<u8>,
    /// PCK leaf, PCK CA, root: the chain embedded in quotes.
    pub(super) pck_chain_pem: String,
    pub(super) pck_leaf_key: SigningKey,
    /// PCK CA, root: `pck_crl_issuer_chain`.
    pub(super) pck_crl_chain_pem: String,
    /// TCB signer, root: `tcb_info_issuer_chain` and `qe_identity_issuer_chain`.
    pub(super) tcb_chain_pem: String,
    pub(super) tcb_key: SigningKey,
    pub(super) root_crl_der: Vec<u8>,
    pub(super) pck_crl_der: Vec<u8>,
}

fn lab(e: impl std::fmt::Display) -> QuoteError {
    QuoteError::Lab {
        reason: e.to_string(),
    }
}

fn at(unix: i64) -> Result<OffsetDateTime, QuoteError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(lab)
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "locus lab (not Intel)");
    dn
}

fn params(cn: &str, serial: u8, opts: &LabOptions) -> Result<CertificateParams, QuoteError> {
    let now = opts.now_unix as i64;
    let mut p = CertificateParams::default();
    // Names carry the lab ID so two labs' certificates never share a subject: a chain from
    // another lab then fails as an unknown issuer, not as a bad signature.
    p.distinguished_name = name(&format!("{cn} {}", opts.lab_id));
    p.serial_number = Some(SerialNumber::from_slice(&[serial]));
    p.not_before = at(now - 86_400)?;
    p.not_after = at(now + opts.cert_validity_secs as i64)?;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

fn ca(mut p: CertificateParams, path_len: Option<u8>) -> CertificateParams {
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn leaf(mut p: CertificateParams) -> CertificateParams {
    p.is_ca = IsCa::NoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    p
}

/// The SGX extension value: PPID, TCB (16 components, PCESVN, CPUSVN), PCE ID, FMSPC,
/// SGX type (1 = Scalable), PIID and the configuration flags, as a Platform-CA PCK cert has.
fn sgx_extension(p: &Platform) -> Vec<u8> {
    let arc = |tail: &[u64]| der::oid(&[&SGX_EXT[..], tail].concat());
    let mut tcb: Vec<Vec<u8>> = p
        .cpu_svn
        .iter()
        .zip(1u64..)
        .map(|(&svn, i)| der::seq(&[arc(&[2, i]), der::integer(u16::from(svn))]))
        .collect();
    tcb.push(der::seq(&[arc(&[2, 17]), der::integer(p.pce_svn)]));
    tcb.push(der::seq(&[arc(&[2, 18]), der::octets(&p.cpu_svn)]));
    der::seq(&[
        der::seq(&[arc(&[1]), der::octets(&p.ppid)]),
        der::seq(&[arc(&[2]), der::seq(&tcb)]),
        der::seq(&[arc(&[3]), der::octets(&p.pce_id)]),
        der::seq(&[arc(&[4]), der::octets(&p.fmspc)]),
        der::seq(&[arc(&[5]), der::enumerated(1)]),
        der::seq(&[arc(&[6]), der::octets(&p.piid)]),
        der::seq(&[
            arc(&[7]),
            der::seq(&[
                der::seq(&[arc(&[7, 1]), der::boolean(false)]),
                der::seq(&[arc(&[7, 2]), der::boolean(false)]),
                der::seq(&[arc(&[7, 3]), der::boolean(true)]),
            ]),
        ]),
    ])
}

fn p256_key(k: &KeyPair) -> Result<SigningKey, QuoteError> {
    SigningKey::from_pkcs8_der(k.serialized_der()).map_err(lab)
}

fn crl(
    revoked: Option<u8>,
    opts: &LabOptions,
) -> Result<CertificateRevocationListParams, QuoteError> {
    let now = opts.now_unix as i64;
    Ok(CertificateRevocationListParams {
        this_update: at(now - 3600)?,
        next_update: at(now + opts.crl_validity_secs as i64)?,
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: match revoked {
            Some(serial) => vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[serial]),
                revocation_time: at(now - 3600)?,
                reason_code: None,
                invalidity_date: None,
            }],
            None => Vec::new(),
        },
        key_identifier_method: KeyIdMethod::Sha256,
    })
}

pub(super) const PCK_LEAF_SERIAL: u8 = 3;

pub(super) fn build(platform: &Platform, opts: &LabOptions) -> Result<Pki, QuoteError> {
    let root_key = KeyPair::generate().map_err(lab)?;
    let root = ca(params("locus lab SGX Root CA", 1, opts)?, None)
        .self_signed(&root_key)
        .map_err(lab)?;

    let pck_ca_key = KeyPair::generate().map_err(lab)?;
    let pck_ca = ca(params("locus lab SGX PCK Platform CA", 2, opts)?, Some(0))
        .signed_by(&pck_ca_key, &root, &root_key)
        .map_err(lab)?;

    let pck_key = KeyPair::generate().map_err(lab)?;
    let mut pck_params = leaf(params(
        "locus lab SGX PCK Certificate",
        PCK_LEAF_SERIAL,
        opts,
    )?);
    pck_params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            &SGX_EXT,
            sgx_extension(platform),
        ));
    let pck = pck_params
        .signed_by(&pck_key, &pck_ca, &pck_ca_key)
        .map_err(lab)?;

    let tcb_key = KeyPair::generate().map_err(lab)?;
    let tcb = leaf(params("locus lab SGX TCB Signing", 4, opts)?)
        .signed_by(&tcb_key, &root, &root_key)
        .map_err(lab)?;

    let root_crl = crl(None, opts)?.signed_by(&root, &root_key).map_err(lab)?;
    let pck_crl = crl(opts.revoke_pck_leaf.then_some(PCK_LEAF_SERIAL), opts)?
        .signed_by(&pck_ca, &pck_ca_key)
        .map_err(lab)?;

    Ok(Pki {
        root_der: root.der().to_vec(),
        pck_chain_pem: [pck.pem(), pck_ca.pem(), root.pem()].concat(),
        pck_leaf_key: p256_key(&pck_key)?,
        pck_crl_chain_pem: [pck_ca.pem(), root.pem()].concat(),
        tcb_chain_pem: [tcb.pem(), root.pem()].concat(),
        tcb_key: p256_key(&tcb_key)?,
        root_crl_der: root_crl.der().to_vec(),
        pck_crl_der: pck_crl.der().to_vec(),
    })
}
