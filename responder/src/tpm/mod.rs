//! The vTPM: an attestation key, TPM2_Quote over the PCRs with the binding's qualifying data,
//! EK certificates from NV, and in-TD timings of the vTPM.
//!
//! A tss-esapi `Context` needs `&mut self` and is not `Send`, so it lives on its own
//! thread ([`actor`]); [`Vtpm`] sends it commands over a channel and waits with a timeout. Any
//! failure (the TPM closed the connection, swtpm crashed, a command hung) drops that thread, and
//! the next call connects afresh and recreates the AK: a crashed TPM gives an error, never a hung
//! responder.
//!
//! Backends: the real device (`/dev/tpmrm0`, device TCTI) and the `swtpm` emulator (swtpm TCTI,
//! see [`swtpm::Swtpm`]).
//!
//! The AK is the responder's own (a primary from its template), or the one the cloud
//! provisioned ([`AkSource`]): on GCE a primary from the template in NV, with its certificate;
//! on Azure the HCL's persistent key, with the HCL report read from NV.

#[cfg(feature = "vtpm")]
mod actor;
#[cfg(not(feature = "vtpm"))]
#[path = "no_actor.rs"]
mod actor;
mod ops;
pub mod swtpm;

use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use locus_proto::evidence::{EkCert, PcrValue};
use thiserror::Error;

use actor::Actor;
use ops::{Op, Reply};

/// TPM_ALG_ID of SHA-256.
pub const ALG_SHA256: u16 = 0x000b;

/// NV index of the RSA-2048 EK certificate (TCG EK Credential Profile).
pub const EK_CERT_NV_RSA: u32 = locus_proto::credential::EK_CERT_NV_RSA_2048;
/// NV index of the ECC NIST P-256 EK certificate.
pub const EK_CERT_NV_ECC: u32 = locus_proto::credential::EK_CERT_NV_ECC_P256;

/// GCE's platform-provisioned AKs (go-tpm-tools `client/handles.go`): the AK template
/// (TPMT_PUBLIC) and the AK certificate (DER, issued by Google's EK/AK CA, naming the zone) in
/// NV. When a template is present the responder creates its AK from it (a primary in the
/// endorsement hierarchy), so verifiers can chain the AK to the provider; ECC is preferred.
pub const GCE_AK_CERT_NV_RSA: u32 = 0x01c1_0000;
pub const GCE_AK_TEMPLATE_NV_RSA: u32 = 0x01c1_0001;
pub const GCE_AK_CERT_NV_ECC: u32 = 0x01c1_0002;
pub const GCE_AK_TEMPLATE_NV_ECC: u32 = 0x01c1_0003;

/// Azure's confidential VMs: the HCL (the paravisor) keeps its attestation report in NV
/// `0x01400001`; a guest that writes 64 bytes of user data to `0x01400002` (defining the index
/// with owner auth when absent) gets a fresh report carrying them as `user-data`. The HCL's
/// AK (RSA-2048, RSASSA-SHA256), named by the report, is the persistent key `0x81000003`.
/// (Azure/confidential-computing-cvm-guest-attestation, virtee/azure-cvm-tooling.)
pub const AZURE_HCL_REPORT_NV: u32 = 0x0140_0001;
pub const AZURE_USER_DATA_NV: u32 = 0x0140_0002;
pub const AZURE_HCL_AK_HANDLE: u32 = 0x8100_0003;

/// Which EK a credential is encrypted to: the TCG EK Credential Profile's low-range
/// templates, whose certificates sit at [`EK_CERT_NV_RSA`] and [`EK_CERT_NV_ECC`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkKind {
    Rsa2048,
    EccP256,
}

impl EkKind {
    /// The EK whose certificate is stored at `nv_index`, for the two low-range indices.
    pub fn for_cert_index(nv_index: u32) -> Option<EkKind> {
        match nv_index {
            EK_CERT_NV_RSA => Some(EkKind::Rsa2048),
            EK_CERT_NV_ECC => Some(EkKind::EccP256),
            _ => None,
        }
    }
}

/// Which attestation key the responder quotes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AkSource {
    /// What the vTPM offers: Azure's HCL AK when the HCL report's NV index exists, else GCE's
    /// template when provisioned, else the responder's own.
    #[default]
    Auto,
    /// The responder's own AK, whatever the platform provisioned.
    Own,
    /// GCE's AK template from NV (ECC first); fails to connect when none is provisioned.
    Gce,
    /// Azure's HCL AK and HCL report; fails to connect when the NV index or the persistent
    /// key is missing.
    AzureHcl,
}

/// How to reach the TPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tcti {
    /// A TPM device node, normally the kernel's resource manager `/dev/tpmrm0`.
    Device(PathBuf),
    /// The `swtpm` emulator's TCP socket (control channel on `port + 1`).
    Swtpm { host: String, port: u16 },
}

impl fmt::Display for Tcti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tcti::Device(p) => write!(f, "device:{}", p.display()),
            Tcti::Swtpm { host, port } => write!(f, "swtpm:host={host},port={port}"),
        }
    }
}

/// Why a TCTI string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("TCTI {found:?}: {reason} (expected \"device:/dev/tpmrm0\" or \"swtpm:host=127.0.0.1,port=2321\")")]
pub struct TctiParseError {
    pub found: String,
    pub reason: &'static str,
}

impl std::str::FromStr for Tcti {
    type Err = TctiParseError;

    /// The tpm2-tools forms: `device[:PATH]` (default `/dev/tpmrm0`) and
    /// `swtpm[:host=HOST,port=PORT]` (defaults `127.0.0.1`, 2321).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| TctiParseError {
            found: s.to_string(),
            reason,
        };
        let (kind, conf) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "device" if conf.is_empty() => Ok(Tcti::Device(PathBuf::from("/dev/tpmrm0"))),
            "device" => Ok(Tcti::Device(PathBuf::from(conf))),
            "swtpm" => {
                let (mut host, mut port) = ("127.0.0.1".to_string(), 2321u16);
                for kv in conf.split(',').filter(|kv| !kv.is_empty()) {
                    match kv.split_once('=') {
                        Some(("host", h)) if !h.is_empty() => host = h.to_string(),
                        Some(("port", p)) => {
                            port = p.parse().map_err(|_| err("port is not a number"))?
                        }
                        _ => return Err(err("swtpm options are host=HOST and port=PORT")),
                    }
                }
                Ok(Tcti::Swtpm { host, port })
            }
            _ => Err(err("unknown TCTI kind")),
        }
    }
}

/// vTPM settings.
#[derive(Debug, Clone)]
pub struct VtpmConfig {
    pub tcti: Tcti,
    /// SHA-256 PCRs to quote (default 0-15).
    pub pcrs: Vec<u8>,
    /// NV indices to read EK certificates from (default RSA 0x01c00002, ECC 0x01c0000a).
    pub ek_cert_indices: Vec<u32>,
    /// Longest any one vTPM command (or connecting) may take before it is abandoned.
    pub command_timeout: Duration,
    /// How many cheap commands (TPM2_GetRandom) to time; the minimum is reported.
    pub cheap_samples: u32,
    /// Which AK to quote with (default [`AkSource::Auto`]).
    pub ak: AkSource,
    /// Links of the AK-signed chain timed after the main quote (binding version 2, default
    /// [`DEFAULT_CHAIN_LEN`]). Each is a TPM2_Quote (~3.4 ms on swtpm); at least 1.
    pub chain_len: u32,
}

/// Default length of the AK-signed chain. With the main quote that makes three signed, timed
/// vTPM round trips: a minimum that one scheduling hiccup does not decide, for two more
/// quotes per evidence answer (`locus bench evidence` measures the cost).
pub const DEFAULT_CHAIN_LEN: u32 = 2;

impl VtpmConfig {
    /// Defaults for this TCTI.
    pub fn new(tcti: Tcti) -> Self {
        Self {
            tcti,
            pcrs: (0..16).collect(),
            ek_cert_indices: vec![EK_CERT_NV_RSA, EK_CERT_NV_ECC],
            command_timeout: Duration::from_secs(5),
            cheap_samples: 5,
            ak: AkSource::Auto,
            chain_len: DEFAULT_CHAIN_LEN,
        }
    }

    /// The kernel resource manager `/dev/tpmrm0`.
    pub fn device() -> Self {
        Self::new(Tcti::Device(PathBuf::from("/dev/tpmrm0")))
    }
}

/// Why a vTPM operation failed.
#[derive(Debug, Clone, Error)]
pub enum VtpmError {
    /// Could not open the TCTI or create the AK; the TPM may be down. The next call retries.
    #[error("cannot connect to the vTPM at {tcti}: {detail}")]
    Connect { tcti: String, detail: String },
    /// A TPM command failed (including the connection dropping mid-command); the connection
    /// is reset and the next call reconnects.
    #[error("vTPM command {op} failed: {detail}")]
    Command { op: &'static str, detail: String },
    /// A command did not answer in time; the connection is abandoned and the next call
    /// reconnects.
    #[error("vTPM command {op} did not answer within {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// The configuration cannot be used (e.g. a PCR index above 23).
    #[error("bad vTPM configuration: {0}")]
    Config(String),
    /// The HCL report's NV index is larger than any real report; it is not read.
    #[error("the HCL report NV index holds {len} bytes, more than {max}")]
    HclReportTooLarge { len: usize, max: usize },
    /// This build has no TPM software stack (built without the `vtpm` feature); rebuild
    /// `locus` with default features to use a vTPM.
    #[error("vTPM support is not built in (cargo feature `vtpm`)")]
    Unsupported,
    /// The TPM refused this command's input (e.g. a credential not made for this TPM's EK and
    /// AK): an error for this request only; the connection and the AK are kept.
    #[error("the vTPM refused {op}: {detail}")]
    Refused { op: &'static str, detail: String },
    /// The PCRs changed during every attempt to read them consistently with a quote.
    #[error("PCRs kept changing while quoting ({attempts} attempts)")]
    PcrsUnstable { attempts: u32 },
}

/// A quote with everything measured around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtpmQuote {
    /// TPMS_ATTEST as signed.
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// The AK that signed (TPM2B_PUBLIC).
    pub ak_public: Vec<u8>,
    /// The quoted PCR values, read before and after the quote and equal both times.
    pub pcrs: Vec<PcrValue>,
    /// How long TPM2_Quote took, in ns of this machine's monotonic clock.
    pub quote_ns: u64,
}

/// One timed link of the AK-signed chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// TPMS_ATTEST as signed.
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// How long this TPM2_Quote took, in ns of this machine's monotonic clock.
    pub ns: u64,
}

/// Minimum round trip of a cheap vTPM command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheapRtt {
    pub min_ns: u64,
    pub samples: u32,
}

/// A vTPM with its attestation key. Cheap to share behind an `Arc`; calls are serialized.
pub struct Vtpm {
    config: VtpmConfig,
    actor: Mutex<Option<Actor>>,
}

impl fmt::Debug for Vtpm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vtpm")
            .field("tcti", &self.config.tcti)
            .finish()
    }
}

impl Vtpm {
    /// Connects and creates the attestation key.
    pub fn open(config: VtpmConfig) -> Result<Vtpm, VtpmError> {
        if let Some(p) = config.pcrs.iter().find(|p| **p > 23) {
            return Err(VtpmError::Config(format!("PCR {p} does not exist (0-23)")));
        }
        if config.pcrs.is_empty() {
            return Err(VtpmError::Config("no PCRs selected".into()));
        }
        let vtpm = Vtpm {
            actor: Mutex::new(None),
            config,
        };
        vtpm.call("connect", Op::AkPublic)?;
        Ok(vtpm)
    }

    pub fn config(&self) -> &VtpmConfig {
        &self.config
    }

    /// The AK's public area (TPM2B_PUBLIC).
    pub fn ak_public(&self) -> Result<Vec<u8>, VtpmError> {
        match self.call("ak_public", Op::AkPublic)? {
            Reply::AkPublic(p) => Ok(p),
            other => Err(unexpected("ak_public", &other)),
        }
    }

    /// TPM2_Quote over the configured PCRs with `qualifying_data` as extraData.
    pub fn quote(&self, qualifying_data: &[u8]) -> Result<VtpmQuote, VtpmError> {
        let op = Op::Quote {
            qualifying_data: qualifying_data.to_vec(),
            pcrs: self.config.pcrs.clone(),
        };
        match self.call("quote", op)? {
            Reply::Quote(q) => Ok(q),
            other => Err(unexpected("quote", &other)),
        }
    }

    /// The AK-signed chain after a quote whose signature is `first_previous`: `chain_len`
    /// TPM2_Quotes, link `i` over [`locus_proto::binding::chain_qualifying_data_v3`] of
    /// `nonce`, the request's `secret`, `i` and the previous link's signature, each timed.
    /// `secret` must come from inside the TD (never from the vTPM, whose transport the
    /// secret guards against) and stay there until the chain is done.
    pub fn chain(
        &self,
        nonce: &[u8],
        secret: &[u8; locus_proto::binding::CHAIN_SECRET_LEN],
        first_previous: &[u8],
    ) -> Result<Vec<ChainLink>, VtpmError> {
        let op = Op::Chain {
            nonce: nonce.to_vec(),
            secret: *secret,
            first_previous: first_previous.to_vec(),
            len: self.config.chain_len.max(1),
            pcrs: self.config.pcrs.clone(),
        };
        match self.call("chain", op)? {
            Reply::Chain(c) => Ok(c),
            other => Err(unexpected("chain", &other)),
        }
    }

    /// Times `config.cheap_samples` TPM2_GetRandom(8) round trips and returns the minimum.
    pub fn cheap_rtt(&self) -> Result<CheapRtt, VtpmError> {
        let samples = self.config.cheap_samples.max(1);
        match self.call("get_random", Op::CheapRtt { samples })? {
            Reply::CheapRtt(r) => Ok(r),
            other => Err(unexpected("get_random", &other)),
        }
    }

    /// The AK certificate the platform provisioned with the AK template the AK was created
    /// from (GCE), if any.
    pub fn ak_cert(&self) -> Result<Option<Vec<u8>>, VtpmError> {
        match self.call("ak_cert", Op::AkCert)? {
            Reply::AkCert(c) => Ok(c),
            other => Err(unexpected("ak_cert", &other)),
        }
    }

    /// With the HCL's AK (Azure): writes `user_data` to the user-data index, so the HCL makes
    /// a fresh report carrying it, and reads the report (at most
    /// [`locus_proto::hcl::MAX_HCL_REPORT_LEN`] bytes). `None` with any other AK.
    pub fn hcl_report(&self, user_data: [u8; 64]) -> Result<Option<Vec<u8>>, VtpmError> {
        match self.call("hcl_report", Op::HclReport { user_data })? {
            Reply::HclReport(r) => Ok(r),
            other => Err(unexpected("hcl_report", &other)),
        }
    }

    /// EK certificates found at the configured NV indices (missing indices are skipped).
    pub fn ek_certs(&self) -> Result<Vec<EkCert>, VtpmError> {
        let op = Op::EkCerts {
            indices: self.config.ek_cert_indices.clone(),
        };
        match self.call("nv_read", op)? {
            Reply::EkCerts(c) => Ok(c),
            other => Err(unexpected("nv_read", &other)),
        }
    }

    /// The EK's public area (TPM2B_PUBLIC), recreated from the default template.
    pub fn ek_public(&self, kind: EkKind) -> Result<Vec<u8>, VtpmError> {
        match self.call("ek_public", Op::EkPublic { kind })? {
            Reply::EkPublic(p) => Ok(p),
            other => Err(unexpected("ek_public", &other)),
        }
    }

    /// TPM2_ActivateCredential for this vTPM's AK under its EK: the secret a verifier
    /// protected with TPM2_MakeCredential (`locus_proto::credential`), which only the TPM
    /// holding that EK, with this AK loaded, can recover. `id_object` and `encrypted_secret`
    /// are the contents of their TPM2Bs.
    pub fn activate_credential(
        &self,
        kind: EkKind,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, VtpmError> {
        let op = Op::ActivateCredential {
            kind,
            id_object: id_object.to_vec(),
            encrypted_secret: encrypted_secret.to_vec(),
        };
        match self.call("activate_credential", op)? {
            Reply::Activated(secret) => Ok(secret),
            other => Err(unexpected("activate_credential", &other)),
        }
    }

    /// TPM2_PCR_Extend of a SHA-256 digest (lab and tests: measure a fake boot).
    pub fn extend_pcr(&self, index: u8, sha256: [u8; 32]) -> Result<(), VtpmError> {
        if index > 23 {
            return Err(VtpmError::Config(format!(
                "PCR {index} does not exist (0-23)"
            )));
        }
        match self.call("pcr_extend", Op::Extend { index, sha256 })? {
            Reply::Done => Ok(()),
            other => Err(unexpected("pcr_extend", &other)),
        }
    }

    /// Sends one command to the TPM thread, connecting first when needed. On any failure the
    /// thread is dropped, so the next call starts from a fresh connection.
    fn call(&self, op_name: &'static str, op: Op) -> Result<Reply, VtpmError> {
        let mut guard = self.actor.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(Actor::spawn(&self.config)?);
        }
        let actor = guard.as_ref().expect("set above");
        let (tx, rx) = mpsc::sync_channel(1);
        let result = match actor.send(op, tx) {
            Err(()) => Err(VtpmError::Command {
                op: op_name,
                detail: "the vTPM thread exited".into(),
            }),
            Ok(()) => match rx.recv_timeout(self.config.command_timeout) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => Err(VtpmError::Timeout {
                    op: op_name,
                    after: self.config.command_timeout,
                }),
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(VtpmError::Command {
                    op: op_name,
                    detail: "the vTPM thread exited".into(),
                }),
            },
        };
        if let Err(e) = &result {
            if matches!(e, VtpmError::Refused { .. }) {
                // The TPM answered: the connection is sound. Reconnecting would create a new
                // AK, so a hostile request could change the AK of every honest bundle.
                tracing::debug!(error = %e, "vTPM refused a request's input");
                return result;
            }
            tracing::warn!(error = %e, "vTPM command failed; reconnecting on next use");
            // Dropping the actor closes its channel: the thread exits after its current command
            // (a hung command keeps only that detached thread).
            *guard = None;
        }
        result
    }
}

fn unexpected(op: &'static str, reply: &Reply) -> VtpmError {
    VtpmError::Command {
        op,
        detail: format!("unexpected reply {reply:?}"),
    }
}
