//! Builds evidence bundles for evidence requests, bound per `docs/binding.md`.
//!
//! The session key's SPKI and the signed transcript are always included. For a vTPM part: the
//! in-TD round trip of cheap vTPM commands is timed, then TPM2_Quote runs with the binding's
//! qualifying data (nonce, session SPKI), then a timed chain of AK-signed quotes, each over
//! the previous one's signature; for a TDX part the quote's REPORTDATA binds the nonce, the
//! session SPKI, the hash of the AK that signed the vTPM quote and the digest of the in-TD
//! timings measured so far (binding version 2). TPM and TDX calls block,
//! so they run on tokio's blocking pool.
//!
//! On Azure (the vTPM's AK is the HCL's, see [`crate::tpm::AkSource`]) the vTPM part also
//! carries the HCL report, requested with this bundle's binding value as its user data; the TD
//! quote's REPORTDATA is then the HCL's (SHA-256 of its variable data), not locus's binding
//! (`docs/binding.md`, "Azure"). Azure makes that TD quote from the HCL report's TDREPORT
//! through the host's quoting service (IMDS `/acc/tdquote`), which is not reachable here and
//! has no backend yet; a [`TdxQuoter`] given here (the lab's) is asked for a quote over the
//! HCL report's REPORTDATA instead, so the whole chain can be checked.
//!
//! With [`EvidenceSource::with_coalescing`], concurrent collections share TDX quotes through a
//! [`CoalescingQuoter`]: a bundle whose quote was shared carries its inclusion proof
//! (`TdxEvidence::inclusion`, `docs/binding.md`). Only evidence requests wait there; the echo
//! path never does. Anchor measurements are batched the same way ([`crate::anchor_batch`]).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use locus_proto::binding::{self, BindingError, BindingInputs, BindingVersion};
use locus_proto::evidence::{
    ByteBuf, CcelLog, EkCert, EvidenceBundle, ResponderTimings, SealedNonce, SignedAttest,
    TdxEvidence, TdxInclusionProof, TpmEvidence, BUNDLE_VERSION,
};
use locus_proto::messages::{Include, KeysResponse};
use locus_proto::transcript::SignedTranscript;
use locus_proto::Nonce;

use locus_anchors::AnchorsConfig;

use crate::anchor_batch::AnchorBatcher;
use crate::tdx::coalesce::CoalescingQuoter;
use crate::tdx::{QuoteError, TdxQuoter};
use crate::tpm::{EkKind, Vtpm, VtpmError};

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The request asked for a part this responder has no backend for.
    #[error("{part} evidence was requested but this responder has no {part} backend")]
    Unavailable { part: &'static str },
    #[error("vTPM: {0}")]
    Vtpm(#[from] VtpmError),
    #[error("TDX quote: {0}")]
    Tdx(#[from] QuoteError),
    #[error("binding: {0}")]
    Binding(#[from] BindingError),
    #[error("cannot read the event log {path}: {source}")]
    EventLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("anchors: {0}")]
    Anchors(#[from] locus_anchors::ConfigError),
    #[error("anchors: {0}")]
    AnchorBatch(#[from] crate::anchor_batch::BatchLost),
    #[error("a blocking evidence task failed: {0}")]
    Task(String),
    /// A sealed nonce names an EK certificate index without a known EK template.
    #[error("the nonce is sealed to the EK of NV index {nv_index:#010x}, which has no known EK template")]
    UnknownEkIndex { nv_index: u32 },
    /// The vTPM activated the credential, but it is not a nonce.
    #[error("the activated credential is {len} bytes, a nonce is {expected}")]
    UnsealedLength { len: usize, expected: usize },
    /// The vTPM's HCL report is too short to hold the TDREPORT a TD quote would be made from.
    #[error("the HCL report of {len} bytes holds no TDREPORT REPORTDATA")]
    HclReportMalformed { len: usize },
}

/// Where the event logs are (real defaults in [`EventLogPaths::linux`]; tests use fakes).
#[derive(Debug, Clone, Default)]
pub struct EventLogPaths {
    /// UEFI TCG log (`/sys/kernel/security/tpm0/binary_bios_measurements`).
    pub tcg: Option<PathBuf>,
    /// ACPI CCEL table (`/sys/firmware/acpi/tables/CCEL`).
    pub ccel_table: Option<PathBuf>,
    /// CCEL log area (`/sys/firmware/acpi/tables/data/CCEL`).
    pub ccel_data: Option<PathBuf>,
}

impl EventLogPaths {
    /// The Linux locations.
    pub fn linux() -> Self {
        Self {
            tcg: Some("/sys/kernel/security/tpm0/binary_bios_measurements".into()),
            ccel_table: Some("/sys/firmware/acpi/tables/CCEL".into()),
            ccel_data: Some("/sys/firmware/acpi/tables/data/CCEL".into()),
        }
    }
}

/// The evidence backends of one responder.
#[derive(Default)]
pub struct EvidenceSource {
    tdx: Option<Arc<dyn TdxQuoter>>,
    /// Wraps `tdx` when coalescing is on: TDX quotes then go through it.
    coalescer: Option<Arc<CoalescingQuoter>>,
    vtpm: Option<Arc<Vtpm>>,
    logs: EventLogPaths,
    /// Intermediate EK CA certificates (DER) to ship in bundles (clouds publish them).
    ek_ca_certs: Vec<Vec<u8>>,
    /// EK certificates do not change while the responder runs: read once.
    ek_certs: OnceLock<Vec<EkCert>>,
    /// TLS anchors this responder can time on request.
    anchors: Option<AnchorsConfig>,
    /// Set with coalescing: concurrent requests share anchor measurements.
    anchor_batcher: Option<Arc<AnchorBatcher>>,
}

impl std::fmt::Debug for EvidenceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceSource")
            .field("tdx", &self.tdx.is_some())
            .field("coalescer", &self.coalescer)
            .field("vtpm", &self.vtpm)
            .field("logs", &self.logs)
            .finish()
    }
}

fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn read_optional(path: &Option<PathBuf>) -> Result<Option<Vec<u8>>, EvidenceError> {
    match path {
        None => Ok(None),
        Some(p) => match std::fs::read(p) {
            Ok(b) => Ok(Some(b)),
            // An absent log (no TPM log exposed, not a TD) is not an error: the verifier's
            // policy decides whether the log is required.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(EvidenceError::EventLog {
                path: p.clone(),
                source,
            }),
        },
    }
}

impl EvidenceSource {
    /// A source with a TDX quoter and/or a vTPM.
    pub fn new(tdx: Option<Arc<dyn TdxQuoter>>, vtpm: Option<Arc<Vtpm>>) -> Self {
        Self {
            tdx,
            vtpm,
            ..Self::default()
        }
    }

    /// Coalesce TDX quotes: collections whose quotes overlap share one quote (up to
    /// `max_batch` per quote, at least 1), each bundle carrying its inclusion proof. Quote
    /// requests are serialized (without a TDX quoter there are none). Anchor measurements are
    /// batched alike: collections that overlap one share the next, its randoms derived from
    /// the root over their nonces, each report carrying its nonce's inclusion proof.
    pub fn with_coalescing(mut self, max_batch: usize) -> Self {
        self.coalescer = self
            .tdx
            .as_ref()
            .map(|q| Arc::new(CoalescingQuoter::new(Arc::clone(q), max_batch)));
        self.anchor_batcher = Some(Arc::new(AnchorBatcher::new(max_batch)));
        self
    }

    /// Where to read the event logs from.
    pub fn with_event_logs(mut self, logs: EventLogPaths) -> Self {
        self.logs = logs;
        self
    }

    /// Intermediate EK CA certificates (DER) to include in every bundle.
    pub fn with_ek_ca_certs(mut self, certs: Vec<Vec<u8>>) -> Self {
        self.ek_ca_certs = certs;
        self
    }

    /// EK certificates to present instead of reading them from the vTPM's NV (a provider that
    /// publishes them out of band). Nothing trusts them for that: a verifier seals its nonce
    /// to the EK they name, which only the TPM holding that EK can unseal.
    pub fn with_ek_certs(self, certs: Vec<EkCert>) -> Self {
        let _ = self.ek_certs.set(certs);
        self
    }

    /// TLS anchors to time when an evidence request names them.
    pub fn with_anchors(mut self, anchors: AnchorsConfig) -> Self {
        self.anchors = Some(anchors);
        self
    }

    /// The vTPM's AK and EK certificates, for a verifier to seal its nonce to
    /// ([`locus_proto::credential::seal_nonce`]).
    pub async fn keys(&self) -> Result<KeysResponse, EvidenceError> {
        let vtpm = self
            .vtpm
            .clone()
            .ok_or(EvidenceError::Unavailable { part: "vTPM" })?;
        let cached = self.ek_certs.get().cloned();
        let (ak_public, ek_certs, read) = tokio::task::spawn_blocking(move || {
            let ak = vtpm.ak_public()?;
            match cached {
                Some(c) => Ok::<_, EvidenceError>((ak, c, false)),
                None => Ok((ak, vtpm.ek_certs()?, true)),
            }
        })
        .await
        .map_err(|e| EvidenceError::Task(e.to_string()))??;
        if read {
            let _ = self.ek_certs.set(ek_certs.clone());
        }
        Ok(KeysResponse {
            ak_public,
            ek_certs,
        })
    }

    /// Recovers a sealed nonce with TPM2_ActivateCredential under the EK whose certificate
    /// it was sealed to. Fails when this vTPM does not hold that EK or the AK it names.
    pub async fn unseal(&self, sealed: &SealedNonce) -> Result<Nonce, EvidenceError> {
        let vtpm = self
            .vtpm
            .clone()
            .ok_or(EvidenceError::Unavailable { part: "vTPM" })?;
        let kind =
            EkKind::for_cert_index(sealed.ek_nv_index).ok_or(EvidenceError::UnknownEkIndex {
                nv_index: sealed.ek_nv_index,
            })?;
        let sealed = sealed.clone();
        let secret = tokio::task::spawn_blocking(move || {
            vtpm.activate_credential(kind, &sealed.id_object, &sealed.encrypted_secret)
        })
        .await
        .map_err(|e| EvidenceError::Task(e.to_string()))??;
        Nonce::try_from(secret.as_slice()).map_err(|_| EvidenceError::UnsealedLength {
            len: secret.len(),
            expected: locus_proto::NONCE_LEN,
        })
    }

    /// Collects a bundle bound to `nonce` for the session whose transcript is given.
    pub async fn collect(
        &self,
        nonce: &Nonce,
        session_spki: &[u8],
        transcript: SignedTranscript,
        include: &Include,
    ) -> Result<EvidenceBundle, EvidenceError> {
        let vtpm = match (include.tpm, &self.vtpm) {
            (false, _) => None,
            (true, None) => return Err(EvidenceError::Unavailable { part: "vTPM" }),
            (true, Some(v)) => Some(v.clone()),
        };
        let tdx = match (include.tdx, &self.coalescer, &self.tdx) {
            (false, _, _) => None,
            (true, Some(c), _) => Some(TdxBackend::Coalescing(Arc::clone(c))),
            (true, None, Some(q)) => Some(TdxBackend::Plain(Arc::clone(q))),
            (true, None, None) => return Err(EvidenceError::Unavailable { part: "TDX" }),
        };
        // Anchors first: their report's digest goes into the quote taken after them.
        let anchors = match (include.anchors.is_empty(), &self.anchors) {
            (true, _) => None,
            (false, None) => return Err(EvidenceError::Unavailable { part: "anchor" }),
            (false, Some(cfg)) => {
                let specs = cfg.select(&include.anchors)?;
                Some(match &self.anchor_batcher {
                    Some(b) => b.measure(specs, *nonce, &cfg.options).await?,
                    None => locus_anchors::measure_all(&specs, nonce, &cfg.options).await,
                })
            }
        };
        let anchor_digest = anchors.as_ref().map(|a| a.digest());
        let nonce = *nonce;
        let spki = session_spki.to_vec();
        let logs = self.logs.clone();
        let ek_ca_certs = self.ek_ca_certs.clone();
        let cached_ek = self.ek_certs.get().cloned();
        let (bundle_parts, ek_read) = tokio::task::spawn_blocking(move || {
            collect_blocking_with(
                &nonce,
                &spki,
                vtpm.as_deref(),
                tdx.as_ref().map(TdxBackend::borrowed),
                &logs,
                ek_ca_certs,
                cached_ek,
                anchor_digest,
            )
        })
        .await
        .map_err(|e| EvidenceError::Task(e.to_string()))??;
        if let Some(ek) = ek_read {
            let _ = self.ek_certs.set(ek);
        }
        let (tpm, tdx, timings) = bundle_parts;
        Ok(EvidenceBundle {
            version: BUNDLE_VERSION,
            nonce: nonce.to_vec(),
            nonce_issuer: None,
            session_spki: session_spki.to_vec(),
            transcript,
            tdx,
            tpm,
            timings,
            anchors,
        })
    }
}

type Parts = (Option<TpmEvidence>, Option<TdxEvidence>, ResponderTimings);

/// The TDX quoter of one collection: plain, or shared through a coalescer.
enum TdxBackend {
    Plain(Arc<dyn TdxQuoter>),
    Coalescing(Arc<CoalescingQuoter>),
}

impl TdxBackend {
    fn borrowed(&self) -> TdxRef<'_> {
        match self {
            TdxBackend::Plain(q) => TdxRef::Plain(q.as_ref()),
            TdxBackend::Coalescing(c) => TdxRef::Coalescing(c),
        }
    }
}

#[derive(Clone, Copy)]
enum TdxRef<'a> {
    Plain(&'a dyn TdxQuoter),
    Coalescing(&'a CoalescingQuoter),
}

/// The blocking part of [`EvidenceSource::collect`]: vTPM first (its AK goes into REPORTDATA),
/// then TDX. Returns the EK certificates when they were read now (to cache them).
pub fn collect_blocking(
    nonce: &[u8],
    session_spki: &[u8],
    vtpm: Option<&Vtpm>,
    tdx: Option<&dyn TdxQuoter>,
    logs: &EventLogPaths,
    ek_ca_certs: Vec<Vec<u8>>,
    cached_ek: Option<Vec<EkCert>>,
) -> Result<(Parts, Option<Vec<EkCert>>), EvidenceError> {
    collect_blocking_bound(
        nonce,
        session_spki,
        vtpm,
        tdx,
        logs,
        ek_ca_certs,
        cached_ek,
        None,
    )
}

/// [`collect_blocking`] with the digest of an anchor report measured before it, bound into
/// REPORTDATA.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one bundle, each optional"
)]
pub fn collect_blocking_bound(
    nonce: &[u8],
    session_spki: &[u8],
    vtpm: Option<&Vtpm>,
    tdx: Option<&dyn TdxQuoter>,
    logs: &EventLogPaths,
    ek_ca_certs: Vec<Vec<u8>>,
    cached_ek: Option<Vec<EkCert>>,
    anchor_digest: Option<[u8; 32]>,
) -> Result<(Parts, Option<Vec<EkCert>>), EvidenceError> {
    collect_blocking_with(
        nonce,
        session_spki,
        vtpm,
        tdx.map(TdxRef::Plain),
        logs,
        ek_ca_certs,
        cached_ek,
        anchor_digest,
    )
}

#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one bundle, each optional"
)]
fn collect_blocking_with(
    nonce: &[u8],
    session_spki: &[u8],
    vtpm: Option<&Vtpm>,
    tdx: Option<TdxRef<'_>>,
    logs: &EventLogPaths,
    ek_ca_certs: Vec<Vec<u8>>,
    cached_ek: Option<Vec<EkCert>>,
    anchor_digest: Option<[u8; 32]>,
) -> Result<(Parts, Option<Vec<EkCert>>), EvidenceError> {
    let spki_hash = binding::spki_hash(session_spki);
    let mut timings = ResponderTimings::default();
    let mut ek_read = None;
    let mut chain_secret = None;
    let tpm = match vtpm {
        None => None,
        Some(v) => {
            let rtt = v.cheap_rtt()?;
            timings.tpm_cheap_rtt_min_ns = Some(rtt.min_ns);
            timings.tpm_cheap_samples = rtt.samples;
            let q = v.quote(&binding::qualifying_data(nonce, &spki_hash)?)?;
            timings.tpm_quote_ns = Some(q.quote_ns);
            // Binding v3: AK-signed quotes chained from the main one and a secret drawn here,
            // timed; a relay cannot answer them without the vTPM that holds the AK, nor ask
            // for a link before this TD does. The OS RNG, not the vTPM's: the vTPM's transport
            // is what the secret is kept from.
            let mut secret = [0u8; binding::CHAIN_SECRET_LEN];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
            let chain = v.chain(nonce, &secret, &q.signature)?;
            timings.tpm_chain_ns = chain.iter().map(|l| l.ns).collect();
            chain_secret = Some(secret);
            // Azure: a fresh HCL report whose user data is this bundle's binding value.
            let hcl_report = v.hcl_report(binding::report_data(&BindingInputs {
                nonce,
                ak_public_hash: binding::ak_public_hash(&q.ak_public),
                spki_hash,
                anchor_digest,
                version: BindingVersion::V3 {
                    timings_digest: binding::timings_digest_v3(&timings, &secret),
                },
            })?)?;
            let ek_certs = match cached_ek {
                Some(c) => c,
                None => {
                    let c = v.ek_certs()?;
                    ek_read = Some(c.clone());
                    c
                }
            };
            Some(TpmEvidence {
                attest: q.attest,
                signature: q.signature,
                ak_public: q.ak_public,
                pcrs: q.pcrs,
                ak_cert: v.ak_cert()?,
                ek_certs,
                ca_certs: ek_ca_certs.into_iter().map(ByteBuf::from).collect(),
                event_log: read_optional(&logs.tcg)?,
                hcl_report,
                chain: chain
                    .into_iter()
                    .map(|l| SignedAttest {
                        attest: l.attest,
                        signature: l.signature,
                    })
                    .collect(),
                chain_secret: Some(secret.to_vec()),
                // Set by the server when the request's nonce came sealed.
                sealed_nonce: None,
            })
        }
    };
    let tdx = match tdx {
        None => None,
        Some(quoter) => {
            let hcl_report = tpm.as_ref().and_then(|t| t.hcl_report.as_deref());
            let report_data = match hcl_report {
                // Azure: REPORTDATA is the HCL's (`docs/binding.md`, "Azure").
                Some(hcl) => locus_proto::hcl::td_report_data(hcl)
                    .ok_or(EvidenceError::HclReportMalformed { len: hcl.len() })?,
                None => binding::report_data(&BindingInputs {
                    nonce,
                    ak_public_hash: tpm
                        .as_ref()
                        .map(|t| binding::ak_public_hash(&t.ak_public))
                        .unwrap_or([0; 32]),
                    spki_hash,
                    anchor_digest,
                    // Every timing so far is known: they go into the quote taken now.
                    version: BindingVersion::V3 {
                        timings_digest: binding::timings_digest_v3(
                            &timings,
                            chain_secret.as_ref().map_or(&[][..], |s| &s[..]),
                        ),
                    },
                })?,
            };
            // One HCL report, one quote: a quote over it is never shared.
            let quoter = match (quoter, hcl_report) {
                (TdxRef::Coalescing(c), Some(_)) => TdxRef::Plain(c.inner()),
                (q, _) => q,
            };
            // With coalescing this includes the wait for the quote in flight.
            let t = Instant::now();
            let (quote, inclusion) = match quoter {
                TdxRef::Plain(q) => (q.quote(report_data)?, None),
                TdxRef::Coalescing(c) => {
                    let c = c.quote_coalesced(report_data)?;
                    // A batch of one is quoted with the value itself: no proof, the bundle is
                    // exactly what the plain path gives.
                    let inclusion = (c.size > 1).then(|| TdxInclusionProof {
                        index: c.index,
                        size: c.size,
                        path: c.path.iter().map(|h| ByteBuf::from(h.to_vec())).collect(),
                    });
                    (c.quote, inclusion)
                }
            };
            timings.tdx_quote_ns = Some(elapsed_ns(t));
            let ccel = match (
                read_optional(&logs.ccel_table)?,
                read_optional(&logs.ccel_data)?,
            ) {
                (table, Some(data)) => Some(CcelLog {
                    table: table.unwrap_or_default(),
                    data,
                }),
                _ => None,
            };
            Some(TdxEvidence {
                quote,
                ccel,
                inclusion,
            })
        }
    };
    Ok(((tpm, tdx, timings), ek_read))
}
