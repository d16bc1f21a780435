//! The lab TDX backend: real quote v4 layout, signed through a lab PCK chain, with matching lab
//! collateral, so that the same DCAP verifier that checks Intel quotes checks these under an
//! explicitly configured lab root.
//!
//! Lab keys are generated at run time ([`LabTdx::generate`]) and may be persisted to a lab
//! directory ([`LabTdx::save`], [`LabTdx::load`]); none is compiled in. A lab quote proves
//! nothing about hardware: verifiers accept it only under the lab root, and say so.

mod collateral;
mod der;
mod layout;
mod paced;
mod pki;
mod time;

use std::path::Path;
use std::sync::Arc;

use dcap_qvl::QuoteCollateralV3;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Serialize};

pub use layout::LabMeasurements;
pub use paced::PacedQuoter;

use super::{QuoteError, TdxQuoter};

/// How to build a lab: the time it is built at and what it should contain.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Generation time, unix seconds. Collateral is valid from an hour before to
    /// `collateral_validity_secs` (CRLs: `crl_validity_secs`) after; certificates from a day
    /// before.
    pub now_unix: u64,
    /// How long TCB info and QE identity stay valid.
    pub collateral_validity_secs: u64,
    /// How long the CRLs stay valid.
    pub crl_validity_secs: u64,
    /// How long the certificates stay valid.
    pub cert_validity_secs: u64,
    /// List the PCK leaf in the PCK CRL (for revocation tests).
    pub revoke_pck_leaf: bool,
    /// MRTD and RTMR0-3 of the lab TD.
    pub measurements: LabMeasurements,
    /// Appended to the lab certificates' common names (random by default).
    pub lab_id: String,
    /// The status the TCB info gives the lab platform's TCB level.
    pub tcb_status: LabTcbStatus,
    /// TD attributes in the TD report (little-endian bit field, see [`TD_ATTRIBUTES_DEFAULT`]).
    pub td_attributes: u64,
}

/// The lab TD's attributes: SEPT_VE_DISABLE (bit 28) set; not DEBUG (bit 0), not MIGRATABLE
/// (bit 29). Bits as in Intel's TDX module ABI (348551), TDATTRIBUTES.
pub const TD_ATTRIBUTES_DEFAULT: u64 = 1 << 28;
/// TD attributes bit 0, TUD.DEBUG: the host can read and write the TD.
pub const TD_ATTRIBUTE_DEBUG: u64 = 1;
/// TD attributes bit 29, SEC.MIGRATABLE: a migration TD may move the TD.
pub const TD_ATTRIBUTE_MIGRATABLE: u64 = 1 << 29;

/// Platform TCB status written into lab TCB info. Anything but `UpToDate` comes with the
/// advisory `LOCUS-LAB-SA-0002` and an up-to-date level one CPUSVN above the platform's, so
/// verdict code sees advisories and the component behind flow through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabTcbStatus {
    #[default]
    UpToDate,
    OutOfDate,
    SwHardeningNeeded,
    Revoked,
}

impl LabTcbStatus {
    fn as_json(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::OutOfDate => "OutOfDate",
            Self::SwHardeningNeeded => "SWHardeningNeeded",
            Self::Revoked => "Revoked",
        }
    }
}

impl LabOptions {
    /// Defaults at `now_unix`: 30 days of collateral, 5 years of certificates.
    pub fn at(now_unix: u64) -> Self {
        Self {
            now_unix,
            collateral_validity_secs: 30 * 86_400,
            crl_validity_secs: 30 * 86_400,
            cert_validity_secs: 5 * 365 * 86_400,
            revoke_pck_leaf: false,
            measurements: LabMeasurements::default(),
            lab_id: hex::encode(rand::random::<[u8; 4]>()),
            tcb_status: LabTcbStatus::UpToDate,
            td_attributes: TD_ATTRIBUTES_DEFAULT,
        }
    }
}

/// Everything a lab quoter needs and a lab verifier trusts; serializable for `save`/`load`.
#[derive(Clone, Serialize, Deserialize)]
struct LabState {
    /// Format of this file.
    version: u32,
    /// Attestation key, PKCS#8 DER (hex). A lab secret: the lab directory is not for sharing.
    ak_pkcs8: String,
    header: String,
    body: String,
    /// Certification data (type 6) appended to every quote.
    cert_data: String,
    root_ca_der: String,
    collateral: QuoteCollateralV3,
    measurements: LabMeasurements,
    valid_from: u64,
    valid_until: u64,
    /// PCK leaf, PCK CA, root (PEM) and the PCK leaf's key (PKCS#8 DER, hex): written out by
    /// [`LabTdx::write_pki`]; absent in labs saved before they were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pck_chain_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pck_key_pkcs8: Option<String>,
}

/// A generated (or loaded) lab: its quoter, root certificate and collateral.
#[derive(Clone)]
pub struct LabTdx {
    state: LabState,
    quoter: Arc<LabQuoter>,
    root_ca_der: Vec<u8>,
}

impl std::fmt::Debug for LabTdx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabTdx")
            .field("valid_from", &self.state.valid_from)
            .field("valid_until", &self.state.valid_until)
            .finish_non_exhaustive()
    }
}

/// File names inside a lab directory.
const STATE_FILE: &str = "lab-tdx.json";
/// File names `locus lab pki` adds for operators and verifiers (`PKI_*`).
pub const PKI_ROOT: &str = "root.pem";
pub const PKI_COLLATERAL: &str = "collateral.json";
pub const PKI_PCK_CHAIN: &str = "pck-chain.pem";
pub const PKI_PCK_KEY: &str = "pck-key.pem";
const ROOT_FILE: &str = "lab-root-ca.der";
const COLLATERAL_FILE: &str = "lab-collateral.json";

fn lab_err(e: impl std::fmt::Display) -> QuoteError {
    QuoteError::Lab {
        reason: e.to_string(),
    }
}

fn unhex(s: &str) -> Result<Vec<u8>, QuoteError> {
    hex::decode(s).map_err(lab_err)
}

impl LabTdx {
    /// A fresh lab at the current system time.
    pub fn generate() -> Result<Self, QuoteError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(lab_err)?
            .as_secs();
        Self::generate_with(&LabOptions::at(now))
    }

    /// A fresh lab built as `opts` says: new keys, chain, collateral.
    pub fn generate_with(opts: &LabOptions) -> Result<Self, QuoteError> {
        let platform = pki::Platform {
            ppid: rand::random(),
            cpu_svn: [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
            pce_svn: 13,
            pce_id: [0, 0],
            // "LOCUS\0": no Intel FMSPC looks like this.
            fmspc: *b"LOCUS\0",
            piid: rand::random(),
        };
        let components = collateral::Components {
            tee_tcb_svn: [5, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            qe_mrsigner: [0x9E; 32],
            qe_isv_svn: 4,
        };
        let pki = pki::build(&platform, opts)?;
        let ak = SigningKey::random(&mut rand::rngs::OsRng);
        let ak_raw = layout::raw_public(&ak);
        let qe_report = layout::qe_report(
            platform.cpu_svn,
            components.qe_mrsigner,
            components.qe_isv_svn,
            &ak_raw,
        );
        let cert_data =
            layout::qe_certification_data(&qe_report, &pki.pck_leaf_key, &pki.pck_chain_pem);
        let collateral = collateral::build(&pki, &platform, &components, opts);
        let state = LabState {
            version: 1,
            ak_pkcs8: hex::encode(ak.to_pkcs8_der().map_err(lab_err)?.as_bytes()),
            header: hex::encode(layout::header(components.qe_isv_svn, platform.pce_svn)),
            body: hex::encode(layout::td_body(
                components.tee_tcb_svn,
                opts.td_attributes,
                &opts.measurements,
            )),
            cert_data: hex::encode(cert_data),
            root_ca_der: hex::encode(&pki.root_der),
            collateral,
            measurements: opts.measurements.clone(),
            valid_from: opts.now_unix - 3600,
            valid_until: opts.now_unix + opts.collateral_validity_secs.min(opts.crl_validity_secs),
            pck_chain_pem: Some(pki.pck_chain_pem.clone()),
            pck_key_pkcs8: Some(hex::encode(
                pki.pck_leaf_key.to_pkcs8_der().map_err(lab_err)?.as_bytes(),
            )),
        };
        Self::from_state(state)
    }

    fn from_state(state: LabState) -> Result<Self, QuoteError> {
        if state.version != 1 {
            return Err(lab_err(format!(
                "lab state version {} (expected 1)",
                state.version
            )));
        }
        let ak = SigningKey::from_pkcs8_der(&unhex(&state.ak_pkcs8)?).map_err(lab_err)?;
        let quoter = LabQuoter {
            ak_raw: layout::raw_public(&ak),
            ak,
            header: unhex(&state.header)?
                .try_into()
                .map_err(|_| lab_err("header length"))?,
            body: unhex(&state.body)?
                .try_into()
                .map_err(|_| lab_err("body length"))?,
            cert_data: unhex(&state.cert_data)?,
        };
        Ok(Self {
            root_ca_der: unhex(&state.root_ca_der)?,
            quoter: Arc::new(quoter),
            state,
        })
    }

    /// The quoter producing quotes in this lab (cheap to clone and share).
    pub fn quoter(&self) -> Arc<LabQuoter> {
        Arc::clone(&self.quoter)
    }

    /// The lab root CA certificate (DER): the trust root a verifier must be given explicitly.
    pub fn root_ca_der(&self) -> &[u8] {
        &self.root_ca_der
    }

    /// The lab collateral (TCB info, QE identity, CRLs, issuer chains).
    pub fn collateral(&self) -> &QuoteCollateralV3 {
        &self.state.collateral
    }

    /// The unix-seconds window in which the collateral is valid.
    pub fn validity(&self) -> (u64, u64) {
        (self.state.valid_from, self.state.valid_until)
    }

    /// The measurements the lab TD reports.
    pub fn measurements(&self) -> &LabMeasurements {
        &self.state.measurements
    }

    /// Write the lab to `dir` (created if missing): `lab-tdx.json` (state with the AK private
    /// key, mode 0600), `lab-root-ca.der` and `lab-collateral.json` (for `locus verify`).
    pub fn save(&self, dir: &Path) -> Result<(), QuoteError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| QuoteError::Io { op, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create lab dir", dir))?;
        let state = serde_json::to_vec_pretty(&self.state).map_err(lab_err)?;
        let state_path = dir.join(STATE_FILE);
        write_private(&state_path, &state).map_err(io("write lab state", &state_path))?;
        let root_path = dir.join(ROOT_FILE);
        std::fs::write(&root_path, &self.root_ca_der).map_err(io("write lab root", &root_path))?;
        let coll = serde_json::to_vec_pretty(&self.state.collateral).map_err(lab_err)?;
        let coll_path = dir.join(COLLATERAL_FILE);
        std::fs::write(&coll_path, coll).map_err(io("write lab collateral", &coll_path))?;
        Ok(())
    }

    /// Write a lab TDX signing set to `dir` (created if missing): what [`LabTdx::save`] writes
    /// (the responder's `tdx.backend = "lab"` reads it back with [`LabTdx::load`]) plus
    /// [`PKI_ROOT`] (the root CA a verifier must be given, PEM), [`PKI_COLLATERAL`] (dcap-qvl
    /// JSON), [`PKI_PCK_CHAIN`] (leaf, CA, root) and [`PKI_PCK_KEY`] (PKCS#8 PEM, mode 0600).
    /// Returns the paths written.
    pub fn write_pki(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>, QuoteError> {
        self.save(dir)?;
        let pem_block = |tag: &str, der: &[u8]| pem::encode(&pem::Pem::new(tag, der.to_vec()));
        let mut files = vec![
            (PKI_ROOT, pem_block("CERTIFICATE", &self.root_ca_der), false),
            (
                PKI_COLLATERAL,
                String::from_utf8(
                    serde_json::to_vec_pretty(&self.state.collateral).map_err(lab_err)?,
                )
                .map_err(lab_err)?,
                false,
            ),
        ];
        if let (Some(chain), Some(key)) = (&self.state.pck_chain_pem, &self.state.pck_key_pkcs8) {
            files.push((PKI_PCK_CHAIN, chain.clone(), false));
            files.push((PKI_PCK_KEY, pem_block("PRIVATE KEY", &unhex(key)?), true));
        }
        let mut written = Vec::new();
        for (name, body, private) in files {
            let path = dir.join(name);
            let result = if private {
                write_private(&path, body.as_bytes())
            } else {
                std::fs::write(&path, body)
            };
            result.map_err(|source| QuoteError::Io {
                op: "write lab PKI",
                path: path.clone(),
                source,
            })?;
            written.push(path);
        }
        Ok(written)
    }

    /// Read a lab written by [`LabTdx::save`].
    pub fn load(dir: &Path) -> Result<Self, QuoteError> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(|source| QuoteError::Io {
            op: "read lab state",
            path: path.clone(),
            source,
        })?;
        let state: LabState = serde_json::from_slice(&bytes).map_err(lab_err)?;
        Self::from_state(state)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

/// Produces lab quotes: fills REPORTDATA, signs header and body with the lab attestation key.
pub struct LabQuoter {
    ak: SigningKey,
    ak_raw: [u8; 64],
    header: [u8; layout::HEADER_LEN],
    body: [u8; layout::BODY_LEN],
    cert_data: Vec<u8>,
}

impl TdxQuoter for LabQuoter {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        Ok(layout::assemble(
            &self.header,
            &self.body,
            &report_data,
            &self.ak,
            &self.ak_raw,
            &self.cert_data,
        ))
    }
}

#[cfg(test)]
mod tests;
