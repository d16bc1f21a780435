//! The thread that owns the tss-esapi context and the AK handle.

use std::io::{Read, Write};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

use locus_proto::evidence::{EkCert, PcrValue};
use locus_proto::hcl::{MAX_HCL_REPORT_LEN, USER_DATA_LEN};
use tss_esapi::abstraction::nv::{self, NvOpenOptions};
use tss_esapi::abstraction::pcr;
use tss_esapi::abstraction::{ek, AsymmetricAlgorithmSelection};
use tss_esapi::attributes::{NvIndexAttributesBuilder, ObjectAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::constants::{CapabilityType, NvIndexType};
use tss_esapi::handles::{KeyHandle, NvIndexTpmHandle, PcrHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, NvAuth};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    CapabilityData, Data, Digest, DigestValues, EccPoint, EccScheme, EncryptedSecret, HashScheme,
    IdObject, KeyDerivationFunctionScheme, NvPublicBuilder, PcrSelectionList,
    PcrSelectionListBuilder, PcrSlot, Public, PublicBuilder, PublicEccParametersBuilder,
    SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::{DeviceConfig, NetworkTPMConfig};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::utils::TpmsContext;
use tss_esapi::{Context, TctiNameConf};

use super::ops::{Op, Reply};
use super::{
    AkSource, ChainLink, CheapRtt, EkKind, Tcti, VtpmConfig, VtpmError, VtpmQuote, ALG_SHA256,
    AZURE_HCL_AK_HANDLE, AZURE_HCL_REPORT_NV, AZURE_USER_DATA_NV, GCE_AK_CERT_NV_ECC,
    GCE_AK_CERT_NV_RSA, GCE_AK_TEMPLATE_NV_ECC, GCE_AK_TEMPLATE_NV_RSA,
};

/// How often the PCRs are re-read when they change around a quote.
const PCR_ATTEMPTS: u32 = 3;

/// First handle of the NV index range (TPM_HT_NV_INDEX << 24).
const NV_INDEX_FIRST: u32 = 0x0100_0000;

type Request = (Op, SyncSender<Result<Reply, VtpmError>>);

/// How long dropping an actor waits for its thread to release the TPM (flush the AK).
const DROP_WAIT: Duration = Duration::from_millis(500);

/// Handle to the TPM thread; dropping it ends the thread after its current command and waits
/// (boundedly) for it to flush the AK, so a stopping responder leaves the TPM clean.
pub(super) struct Actor {
    tx: Option<SyncSender<Request>>,
    done: Receiver<()>,
}

impl Drop for Actor {
    fn drop(&mut self) {
        self.tx = None;
        let _ = self.done.recv_timeout(DROP_WAIT);
    }
}

impl Actor {
    /// Starts the thread, connects and creates the AK, waiting at most the command timeout.
    pub(super) fn spawn(config: &VtpmConfig) -> Result<Actor, VtpmError> {
        let (tx, rx) = mpsc::sync_channel::<Request>(1);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (done_tx, done) = mpsc::sync_channel(1);
        let tcti = config.tcti.clone();
        let source = config.ak;
        std::thread::Builder::new()
            .name("locus-vtpm".into())
            .spawn(move || {
                run(tcti, source, rx, ready_tx);
                let _ = done_tx.send(());
            })
            .map_err(|e| VtpmError::Connect {
                tcti: config.tcti.to_string(),
                detail: format!("cannot start the vTPM thread: {e}"),
            })?;
        match ready_rx.recv_timeout(config.command_timeout) {
            Ok(Ok(())) => Ok(Actor { tx: Some(tx), done }),
            Ok(Err(detail)) => Err(VtpmError::Connect {
                tcti: config.tcti.to_string(),
                detail,
            }),
            Err(_) => Err(VtpmError::Timeout {
                op: "connect",
                after: config.command_timeout,
            }),
        }
    }

    pub(super) fn send(
        &self,
        op: Op,
        reply: SyncSender<Result<Reply, VtpmError>>,
    ) -> Result<(), ()> {
        match &self.tx {
            Some(tx) => tx.send((op, reply)).map_err(|_| ()),
            None => Err(()),
        }
    }
}

struct State {
    ctx: Context,
    ak: KeyHandle,
    ak_public: Vec<u8>,
    /// The provider's certificate for this AK (GCE), when the AK came from its NV template.
    ak_cert: Option<Vec<u8>>,
    /// The AK is the Azure HCL's persistent key: HCL reports can be requested.
    hcl: bool,
    /// Saved contexts of the EK primaries derived so far. Deriving an RSA EK again is a prime
    /// search from the endorsement seed (tens of ms, on every sealed evidence request);
    /// TPM2_ContextLoad of its saved context takes well under a millisecond. The EK stays
    /// loaded only for the command that needs it, as when derived each time: keeping it
    /// loaded instead took a transient slot for good, and a TPM without a resource manager
    /// (swtpm: three slots) then had none left for a second connection's AK and EK.
    saved_eks: Vec<(EkKind, TpmsContext)>,
}

fn run(tcti: Tcti, source: AkSource, rx: Receiver<Request>, ready: SyncSender<Result<(), String>>) {
    let mut state = match connect(&tcti, source) {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while let Ok((op, reply)) = rx.recv() {
        let result = handle(&mut state, op);
        // A refused input leaves the context sound (the caller keeps this actor); after any
        // other failure the caller drops it: stop using a context that may be broken.
        let failed = matches!(&result, Err(e) if !matches!(e, VtpmError::Refused { .. }));
        let _ = reply.send(result);
        if failed {
            break;
        }
    }
    // Dropping the context flushes a transient AK, so a long-lived resource manager does
    // not fill up (tss-esapi tracks the handles it created); the HCL's persistent AK is only
    // closed, never evicted.
    drop(state);
}

fn connect(tcti: &Tcti, source: AkSource) -> Result<State, String> {
    let conf = match tcti {
        Tcti::Device(path) => DeviceConfig::from_str(&path.display().to_string())
            .map(TctiNameConf::Device)
            .map_err(|e| format!("bad device path: {e}"))?,
        Tcti::Swtpm { host, port } => {
            NetworkTPMConfig::from_str(&format!("host={host},port={port}"))
                .map(TctiNameConf::Swtpm)
                .map_err(|e| format!("bad swtpm address: {e}"))?
        }
    };
    let mut ctx = Context::new(conf).map_err(|e| format!("opening the TCTI: {e}"))?;
    let present = nv_indices(&mut ctx);
    let has_hcl_report = present
        .as_ref()
        .is_some_and(|p| p.contains(&AZURE_HCL_REPORT_NV));
    if source == AkSource::AzureHcl || (source == AkSource::Auto && has_hcl_report) {
        if !has_hcl_report {
            return Err(format!(
                "no HCL report at NV {AZURE_HCL_REPORT_NV:#010x}: not an Azure confidential VM's vTPM"
            ));
        }
        let (ak, ak_public) = hcl_ak(&mut ctx)?;
        tracing::debug!(%tcti, "vTPM connected, using the Azure HCL's AK");
        return Ok(State {
            ctx,
            ak,
            ak_public,
            ak_cert: None,
            hcl: true,
            saved_eks: Vec::new(),
        });
    }
    let provisioned = match source {
        AkSource::Own => None,
        _ => provisioned_ak(&mut ctx, present.as_deref()),
    };
    let (template, ak_cert) = match provisioned {
        Some((template, cert)) => (template, cert),
        None if source == AkSource::Gce => {
            return Err(format!(
                "no usable GCE AK template in NV ({GCE_AK_TEMPLATE_NV_ECC:#010x}, {GCE_AK_TEMPLATE_NV_RSA:#010x})"
            ))
        }
        None => (
            ak_template().map_err(|e| format!("AK template: {e}"))?,
            None,
        ),
    };
    let created = ctx
        .execute_with_nullauth_session(|c| {
            c.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
        })
        .map_err(|e| format!("creating the AK: {e}"))?;
    let ak_public = tpm2b_public(&created.out_public).map_err(|e| format!("AK public: {e}"))?;
    tracing::debug!(%tcti, provider_ak = ak_cert.is_some(), "vTPM connected, AK created");
    Ok(State {
        ctx,
        ak: created.key_handle,
        ak_public,
        ak_cert,
        hcl: false,
        saved_eks: Vec::new(),
    })
}

/// The Azure HCL's AK, a persistent key, and its public area (TPM2B_PUBLIC).
fn hcl_ak(ctx: &mut Context) -> Result<(KeyHandle, Vec<u8>), String> {
    let missing = |e: tss_esapi::Error| {
        format!("no HCL AK at persistent handle {AZURE_HCL_AK_HANDLE:#010x}: {e}")
    };
    let handle = PersistentTpmHandle::new(AZURE_HCL_AK_HANDLE).map_err(missing)?;
    let key: KeyHandle = ctx
        .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::Persistent(handle)))
        .map_err(missing)?
        .into();
    let (public, _, _) = ctx
        .execute_without_session(|c| c.read_public(key))
        .map_err(missing)?;
    let ak_public = tpm2b_public(&public).map_err(|e| format!("HCL AK public: {e}"))?;
    Ok((key, ak_public))
}

/// Asks the HCL for a report carrying `user_data` and reads it. Azure defines the user-data
/// index with owner auth (empty on Azure) when absent and reads both indices with owner auth.
fn hcl_report(s: &mut State, user_data: &[u8; USER_DATA_LEN]) -> Result<Vec<u8>, VtpmError> {
    const WRITE: &str = "hcl_user_data";
    const READ: &str = "hcl_report";
    let user_index = NvIndexTpmHandle::new(AZURE_USER_DATA_NV).map_err(cmd_err(WRITE))?;
    let report_index = NvIndexTpmHandle::new(AZURE_HCL_REPORT_NV).map_err(cmd_err(READ))?;
    let defined = nv_indices(&mut s.ctx).is_some_and(|p| p.contains(&AZURE_USER_DATA_NV));
    let open = if defined {
        NvOpenOptions::ExistingIndex {
            nv_index_handle: user_index,
            auth_handle: NvAuth::Owner,
        }
    } else {
        NvOpenOptions::NewIndex {
            nv_public: user_data_index(user_index).map_err(cmd_err(WRITE))?,
            auth_handle: NvAuth::Owner,
        }
    };
    s.ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            let mut w = open.open(c).map_err(cmd_err(WRITE))?;
            if w.size() != USER_DATA_LEN {
                return Err(VtpmError::Command {
                    op: WRITE,
                    detail: format!("the index holds {} bytes, not {USER_DATA_LEN}", w.size()),
                });
            }
            w.write_all(user_data).map_err(io_err(WRITE))
        })?;
    s.ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            let mut r = NvOpenOptions::ExistingIndex {
                nv_index_handle: report_index,
                auth_handle: NvAuth::Owner,
            }
            .open(c)
            .map_err(cmd_err(READ))?;
            if r.size() > MAX_HCL_REPORT_LEN {
                return Err(VtpmError::HclReportTooLarge {
                    len: r.size(),
                    max: MAX_HCL_REPORT_LEN,
                });
            }
            let mut report = Vec::with_capacity(r.size());
            r.read_to_end(&mut report).map_err(io_err(READ))?;
            Ok(report)
        })
}

/// The user-data index as Azure's guest attestation library defines it.
fn user_data_index(index: NvIndexTpmHandle) -> tss_esapi::Result<tss_esapi::structures::NvPublic> {
    let attributes = NvIndexAttributesBuilder::new()
        .with_nv_index_type(NvIndexType::Ordinary)
        .with_owner_write(true)
        .with_owner_read(true)
        .with_auth_write(true)
        .with_auth_read(true)
        .build()?;
    NvPublicBuilder::new()
        .with_nv_index(index)
        .with_index_name_algorithm(HashingAlgorithm::Sha256)
        .with_index_attributes(attributes)
        .with_data_area_size(USER_DATA_LEN)
        .build()
}

/// The NV indices that exist, or `None` when the TPM does not say.
fn nv_indices(ctx: &mut Context) -> Option<Vec<u32>> {
    match ctx
        .execute_without_session(|c| c.get_capability(CapabilityType::Handles, NV_INDEX_FIRST, 256))
    {
        Ok((CapabilityData::Handles(list), _)) => {
            Some(list.iter().map(|h| u32::from(*h)).collect())
        }
        _ => None,
    }
}

/// Reads one NV index whole (auth: the index itself, empty).
fn nv_read(ctx: &mut Context, index: u32) -> tss_esapi::Result<Vec<u8>> {
    let nv_idx = NvIndexTpmHandle::new(index)?;
    let handle =
        ctx.execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(nv_idx)))?;
    // read_full's reader releases the ESYS resource of the index when done.
    let auth = NvAuth::NvIndex(handle.into());
    ctx.execute_with_nullauth_session(|c| nv::read_full(c, auth, nv_idx))
}

/// The platform's AK template (ECC first, then RSA) with its certificate, when provisioned
/// (GCE). A template that does not read or parse is logged and skipped.
fn provisioned_ak(ctx: &mut Context, present: Option<&[u32]>) -> Option<(Public, Option<Vec<u8>>)> {
    let present = present?;
    for (template_index, cert_index) in [
        (GCE_AK_TEMPLATE_NV_ECC, GCE_AK_CERT_NV_ECC),
        (GCE_AK_TEMPLATE_NV_RSA, GCE_AK_CERT_NV_RSA),
    ] {
        if !present.contains(&template_index) {
            continue;
        }
        let template = nv_read(ctx, template_index).and_then(|b| Public::unmarshall(&b));
        let template = match template {
            Ok(t) => t,
            Err(e) => {
                let index = format!("{template_index:#010x}");
                tracing::warn!(index, error = %e, "unusable AK template in NV");
                continue;
            }
        };
        let cert = if present.contains(&cert_index) {
            nv_read(ctx, cert_index)
                .map_err(|e| {
                    let index = format!("{cert_index:#010x}");
                    tracing::warn!(index, error = %e, "unreadable AK certificate in NV");
                })
                .ok()
        } else {
            None
        };
        return Some((template, cert));
    }
    None
}

/// ECC P-256 restricted signing key (ECDSA-SHA256), as a primary in the endorsement hierarchy.
/// A primary is derived from the TPM's seed and this template: the same TPM gives the same AK
/// after a reconnect, another TPM (a relay) a different one.
fn ak_template() -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .build()?;
    let params = PublicEccParametersBuilder::new()
        .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
        .with_curve(EccCurve::NistP256)
        .with_is_signing_key(true)
        .with_is_decryption_key(false)
        .with_restricted(true)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// TPM2B_PUBLIC: the TPMT_PUBLIC with its u16 size prefix.
fn tpm2b_public(p: &Public) -> tss_esapi::Result<Vec<u8>> {
    let t = p.marshall()?;
    let len = u16::try_from(t.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(t.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&t);
    Ok(out)
}

fn cmd_err(op: &'static str) -> impl Fn(tss_esapi::Error) -> VtpmError {
    move |e| VtpmError::Command {
        op,
        detail: e.to_string(),
    }
}

/// A TPM error about a command's parameters, handles or sessions (format-one response codes,
/// e.g. TPM_RC_INTEGRITY for a credential made for another TPM) or input the wrapper cannot
/// carry is the request's fault: [`VtpmError::Refused`] keeps the connection and the AK.
/// Anything else (a dropped TCTI, a TPM warning) resets the connection as usual.
fn refused(op: &'static str) -> impl Fn(tss_esapi::Error) -> VtpmError {
    move |e| match e {
        tss_esapi::Error::Tss2Error(
            tss_esapi::constants::response_code::Tss2ResponseCode::FormatOne(_),
        )
        | tss_esapi::Error::WrapperError(_) => VtpmError::Refused {
            op,
            detail: e.to_string(),
        },
        other => cmd_err(op)(other),
    }
}

/// NV reads and writes go through `std::io` (tss-esapi's NV reader/writer).
fn io_err(op: &'static str) -> impl Fn(std::io::Error) -> VtpmError {
    move |e| VtpmError::Command {
        op,
        detail: e.to_string(),
    }
}

fn handle(s: &mut State, op: Op) -> Result<Reply, VtpmError> {
    match op {
        Op::AkPublic => Ok(Reply::AkPublic(s.ak_public.clone())),
        Op::AkCert => Ok(Reply::AkCert(s.ak_cert.clone())),
        Op::HclReport { user_data } if s.hcl => {
            hcl_report(s, &user_data).map(|r| Reply::HclReport(Some(r)))
        }
        Op::HclReport { .. } => Ok(Reply::HclReport(None)),
        Op::Quote {
            qualifying_data,
            pcrs,
        } => quote(s, &qualifying_data, &pcrs).map(Reply::Quote),
        Op::CheapRtt { samples } => {
            let mut min = u64::MAX;
            for _ in 0..samples {
                let t = Instant::now();
                s.ctx.get_random(8).map_err(cmd_err("get_random"))?;
                min = min.min(elapsed_ns(t));
            }
            Ok(Reply::CheapRtt(CheapRtt {
                min_ns: min,
                samples,
            }))
        }
        Op::Chain {
            nonce,
            secret,
            first_previous,
            len,
            pcrs,
        } => chain(s, &nonce, &secret, first_previous, len, &pcrs).map(Reply::Chain),
        Op::EkCerts { indices } => Ok(Reply::EkCerts(ek_certs(s, &indices))),
        Op::EkPublic { kind } => ek_public(s, kind).map(Reply::EkPublic),
        Op::ActivateCredential {
            kind,
            id_object,
            encrypted_secret,
        } => activate_credential(s, kind, id_object, encrypted_secret).map(Reply::Activated),
        Op::Extend { index, sha256 } => {
            let handle = PcrHandle::try_from(u32::from(index))
                .map_err(|e| VtpmError::Config(format!("PCR {index}: {e}")))?;
            let mut values = DigestValues::new();
            values.set(
                HashingAlgorithm::Sha256,
                Digest::try_from(sha256.to_vec()).map_err(cmd_err("pcr_extend"))?,
            );
            s.ctx
                .execute_with_nullauth_session(|c| c.pcr_extend(handle, values))
                .map_err(cmd_err("pcr_extend"))?;
            Ok(Reply::Done)
        }
    }
}

fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn selection(pcrs: &[u8]) -> Result<PcrSelectionList, VtpmError> {
    let slots = pcrs
        .iter()
        .map(|i| {
            PcrSlot::try_from(1u32 << i).map_err(|e| VtpmError::Config(format!("PCR {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(|e| VtpmError::Config(format!("PCR selection: {e}")))
}

fn read_pcrs(s: &mut State, pcrs: &[u8]) -> Result<Vec<PcrValue>, VtpmError> {
    let data = pcr::read_all(&mut s.ctx, selection(pcrs)?).map_err(cmd_err("pcr_read"))?;
    let bank = data
        .pcr_bank(HashingAlgorithm::Sha256)
        .ok_or_else(|| VtpmError::Command {
            op: "pcr_read",
            detail: "the TPM has no SHA-256 PCR bank".into(),
        })?;
    // TPM2_Quote hashes the selected PCRs in ascending index order.
    let mut sorted = pcrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
        .into_iter()
        .map(|i| {
            let slot = PcrSlot::try_from(1u32 << i)
                .map_err(|e| VtpmError::Config(format!("PCR {i}: {e}")))?;
            let d = bank.get_digest(slot).ok_or_else(|| VtpmError::Command {
                op: "pcr_read",
                detail: format!("PCR {i} missing from the read"),
            })?;
            Ok(PcrValue {
                alg: ALG_SHA256,
                index: i,
                digest: d.value().to_vec(),
            })
        })
        .collect()
}

fn quote(s: &mut State, qualifying_data: &[u8], pcrs: &[u8]) -> Result<VtpmQuote, VtpmError> {
    let data = Data::try_from(qualifying_data.to_vec()).map_err(cmd_err("quote"))?;
    for _ in 0..PCR_ATTEMPTS {
        let before = read_pcrs(s, pcrs)?;
        let sel = selection(pcrs)?;
        let ak = s.ak;
        let d = data.clone();
        let t = Instant::now();
        let (attest, signature) = s
            .ctx
            .execute_with_nullauth_session(|c| c.quote(ak, d, SignatureScheme::Null, sel))
            .map_err(cmd_err("quote"))?;
        let quote_ns = elapsed_ns(t);
        let after = read_pcrs(s, pcrs)?;
        if before != after {
            // Something extended a PCR between read and quote: the digest might not match.
            continue;
        }
        return Ok(VtpmQuote {
            attest: attest.marshall().map_err(cmd_err("quote"))?,
            signature: signature.marshall().map_err(cmd_err("quote"))?,
            ak_public: s.ak_public.clone(),
            pcrs: after,
            quote_ns,
        });
    }
    Err(VtpmError::PcrsUnstable {
        attempts: PCR_ATTEMPTS,
    })
}

/// The AK-signed chain: each link's qualifying data needs the previous link's signature and
/// the TD's secret, so the links run one after another, each a full round trip to the vTPM
/// that holds the AK, and the transport cannot ask for a link before the TD does.
fn chain(
    s: &mut State,
    nonce: &[u8],
    secret: &[u8; locus_proto::binding::CHAIN_SECRET_LEN],
    first_previous: Vec<u8>,
    len: u32,
    pcrs: &[u8],
) -> Result<Vec<ChainLink>, VtpmError> {
    let mut previous = first_previous;
    let mut links = Vec::with_capacity(len as usize);
    for i in 0..len {
        let qd = locus_proto::binding::chain_qualifying_data_v3(nonce, secret, i, &previous)
            .map_err(|e| VtpmError::Command {
                op: "chain",
                detail: e.to_string(),
            })?;
        let data = Data::try_from(qd.to_vec()).map_err(cmd_err("chain"))?;
        let sel = selection(pcrs)?;
        let ak = s.ak;
        let t = Instant::now();
        let (attest, signature) = s
            .ctx
            .execute_with_nullauth_session(|c| c.quote(ak, data, SignatureScheme::Null, sel))
            .map_err(cmd_err("chain"))?;
        let ns = elapsed_ns(t);
        let signature = signature.marshall().map_err(cmd_err("chain"))?;
        previous = signature.clone();
        links.push(ChainLink {
            attest: attest.marshall().map_err(cmd_err("chain"))?,
            signature,
            ns,
        });
    }
    Ok(links)
}

fn ek_certs(s: &mut State, indices: &[u32]) -> Vec<EkCert> {
    // Ask which NV indices exist first: reading a missing one makes the TSS log errors.
    let present = nv_indices(&mut s.ctx);
    let mut out = Vec::new();
    for &index in indices {
        if present.as_ref().is_some_and(|p| !p.contains(&index)) {
            continue;
        }
        match nv_read(&mut s.ctx, index) {
            Ok(der) => out.push(EkCert {
                nv_index: index,
                der,
            }),
            // Not every TPM has every index (swtpm without --create-ek-cert has none).
            Err(e) => {
                tracing::debug!(index = format!("{index:#010x}"), error = %e, "no EK certificate")
            }
        }
    }
    out
}

/// The EK primary from the TCG EK Credential Profile's default (low-range) template: the key
/// swtpm_setup and providers certify, derived again from the endorsement seed.
fn create_ek(s: &mut State, kind: EkKind, op: &'static str) -> Result<KeyHandle, VtpmError> {
    let alg = match kind {
        EkKind::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
        EkKind::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
    };
    ek::create_ek_object_2(&mut s.ctx, alg, None).map_err(cmd_err(op))
}

/// The EK primary of `kind`, loaded for one command (the caller flushes it): from its saved
/// context when there is one, else derived and its context saved. A saved context the TPM
/// refuses (after a TPM reset, say) is dropped and the EK derived again.
fn load_ek(s: &mut State, kind: EkKind, op: &'static str) -> Result<KeyHandle, VtpmError> {
    if let Some(i) = s.saved_eks.iter().position(|(k, _)| *k == kind) {
        match s.ctx.context_load(s.saved_eks[i].1.clone()) {
            Ok(handle) => return Ok(KeyHandle::from(handle)),
            Err(e) => {
                tracing::debug!(?kind, error = %e, "saved EK context refused; deriving the EK");
                s.saved_eks.swap_remove(i);
            }
        }
    }
    let ek = create_ek(s, kind, op)?;
    match s.ctx.context_save(ek.into()) {
        Ok(saved) => s.saved_eks.push((kind, saved)),
        // Only slower next time.
        Err(e) => tracing::debug!(?kind, error = %e, "EK context not saved"),
    }
    Ok(ek)
}

fn ek_public(s: &mut State, kind: EkKind) -> Result<Vec<u8>, VtpmError> {
    const OP: &str = "ek_public";
    let ek = load_ek(s, kind, OP)?;
    let public = s
        .ctx
        .execute_without_session(|c| c.read_public(ek))
        .map_err(cmd_err(OP));
    let _ = s.ctx.flush_context(ek.into());
    tpm2b_public(&public?.0).map_err(cmd_err(OP))
}

/// TPM2_ActivateCredential with the AK as the credentialed object and the EK as the
/// decryption key. The EK's policy is PolicySecret(TPM_RH_ENDORSEMENT), so it is used through
/// a policy session satisfied by the (empty) endorsement auth; the AK takes a password session.
fn activate_credential(
    s: &mut State,
    kind: EkKind,
    id_object: Vec<u8>,
    encrypted_secret: Vec<u8>,
) -> Result<Vec<u8>, VtpmError> {
    const OP: &str = "activate_credential";
    let id_object = IdObject::try_from(id_object).map_err(refused(OP))?;
    let secret = EncryptedSecret::try_from(encrypted_secret).map_err(refused(OP))?;
    let ek = load_ek(s, kind, OP)?;
    let session = s
        .ctx
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(cmd_err(OP));
    let result = session.and_then(|session| {
        let session = session.ok_or_else(|| VtpmError::Command {
            op: OP,
            detail: "the TPM started no policy session".into(),
        })?;
        let ak = s.ak;
        let r = PolicySession::try_from(session)
            .and_then(|policy| {
                s.ctx
                    .execute_with_session(Some(AuthSession::Password), |c| {
                        c.policy_secret(
                            policy,
                            tss_esapi::handles::AuthHandle::Endorsement,
                            Default::default(),
                            Default::default(),
                            Default::default(),
                            None,
                        )
                    })
            })
            .and_then(|_| {
                s.ctx.execute_with_sessions(
                    (Some(AuthSession::Password), Some(session), None),
                    |c| c.activate_credential(ak, ek, id_object, secret),
                )
            })
            .map(|d| d.value().to_vec());
        // Whatever the TPM said about the credential, a TPM that still answers is sound: the
        // failure is this request's (swtpm answers some malformed credentials with
        // TPM_RC_FAILURE, yet keeps working).
        let r = r.map_err(|e| match s.ctx.get_random(1) {
            Ok(_) => VtpmError::Refused {
                op: OP,
                detail: e.to_string(),
            },
            Err(_) => cmd_err(OP)(e),
        });
        let _ = s
            .ctx
            .flush_context(tss_esapi::handles::SessionHandle::from(session).into());
        r
    });
    let _ = s.ctx.flush_context(ek.into());
    result
}
