//! `locus bench evidence`: a fresh evidence bundle (swtpm vTPM + lab TDX) against the bare
//! TPM2_Quote inside it, and bundle verification against bare dcap-qvl verification of the
//! same TDX quote, each pair measured alternately in the same run.
//!
//! [`LabEvidence::start`] starts a swtpm with an EK certificate and measures the lab's fake boot
//! (`locus_lab::boot`) into it, with lab TDX quotes whose RTMRs replay its CCEL.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use locus_analysis::verify::bundle::{self as evidence, NonceLedger, PolicyFile, VerifyInputs};
use locus_analysis::verify::tdx::{self, TrustRoot};
use locus_proto::binding;
use locus_proto::evidence::{EvidenceBundle, SealedNonce, BUNDLE_VERSION};
use locus_proto::messages::KeysResponse;
use locus_proto::transcript::Transcript;
use locus_responder::evidence::{collect_blocking, EventLogPaths};
use locus_responder::session_key::SessionKey;
use locus_responder::tdx::lab::{LabOptions, LabTdx};
use locus_responder::tdx::TdxQuoter;
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::{EkKind, Vtpm, VtpmConfig};
use serde::Serialize;

use locus_fleet::time::unix_now;

#[derive(Args)]
pub struct EvidenceArgs {
    /// Bundles to build (and bare quotes to time), after a warm-up of a tenth as many.
    #[arg(long, default_value_t = 50)]
    iterations: u32,
    /// Verifications to time (each against a bare dcap-qvl verification).
    #[arg(long, default_value_t = 300)]
    verify_iterations: u32,
    /// Evidence at cloud speed instead: this many concurrent requesters ask for bundles (TDX
    /// quote and two lab anchors each) with coalescing, without, and of a bare serialized
    /// quoter.
    #[arg(long)]
    concurrency: Option<u32>,
    /// With --concurrency: each TDX quote takes at least this long, one at a time.
    #[arg(long, default_value_t = 40)]
    quote_delay_ms: u64,
    /// With --concurrency: lab anchors timed in each bundle (0 to 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
    anchors: u8,
    /// With --concurrency: how long each of the three runs keeps asking, seconds.
    #[arg(long, default_value_t = 3.0)]
    duration_s: f64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// A swtpm-backed vTPM and a lab TDX whose measurements agree, with logs on disk.
pub(crate) struct LabEvidence {
    // Fields drop in order: the vTPM connection before the emulator process.
    pub(crate) vtpm: Arc<Vtpm>,
    /// The emulator process; killed when this is dropped.
    pub(crate) _swtpm: Swtpm,
    pub(crate) tdx: LabTdx,
    pub(crate) logs: EventLogPaths,
    /// EK CA certificates (PEM): issuing CA, root.
    pub(crate) ek_ca_pem: Vec<String>,
    pub(crate) dir: tempfile::TempDir,
}

impl LabEvidence {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let swtpm = Swtpm::start(SwtpmOptions {
            create_ek_cert: true,
            ..SwtpmOptions::default()
        })?;
        let vtpm = Arc::new(Vtpm::open(VtpmConfig::new(swtpm.tcti()))?);
        locus_lab::boot::measure_into(&vtpm)?;
        let boot = locus_lab::boot::write_logs(dir.path())?;
        let mut opts = LabOptions::at(unix_now()?);
        opts.measurements.rtmr = boot.rtmrs;
        let tdx = LabTdx::generate_with(&opts)?;
        let logs = boot.logs;
        let ek_ca_pem = swtpm.ek_ca_certs()?;
        Ok(Self {
            _swtpm: swtpm,
            vtpm,
            tdx,
            logs,
            ek_ca_pem,
            dir,
        })
    }

    /// Issuing EK CA (DER), to ship in bundles as the intermediate.
    pub(crate) fn ek_intermediates(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let pem = self.ek_ca_pem.first().cloned().unwrap_or_default();
        evidence::policy::certificates_from_bytes(pem.as_bytes()).map_err(anyhow::Error::msg)
    }

    /// Writes `policy.toml` with the EK root, lab TDX root and collateral next to it into
    /// `dir`; returns the policy path. `locus verify evidence BUNDLE --policy <path>` uses it.
    pub(crate) fn write_policy(&self, dir: &Path, nonce_issuer: &str) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("ek-root.pem"),
            self.ek_ca_pem.get(1).cloned().unwrap_or_default(),
        )?;
        std::fs::write(dir.join("lab-root-ca.der"), self.tdx.root_ca_der())?;
        std::fs::write(
            dir.join("lab-collateral.json"),
            serde_json::to_vec_pretty(self.tdx.collateral())?,
        )?;
        let mut policy = PolicyFile::lab(
            "ek-root.pem",
            "lab-root-ca.der",
            "lab-collateral.json",
            nonce_issuer,
        );
        // The bench's lab TD: pin its measurements from one of its quotes.
        anyhow::ensure!(
            policy.reference.pin_td(&self.tdx.quoter().quote([0; 64])?),
            "lab TDX quote too short"
        );
        let path = dir.join("policy.toml");
        std::fs::write(&path, policy.to_toml())?;
        Ok(path)
    }

    /// A fresh bundle for `nonce` and the session key, as the responder answers a sealed
    /// request: TPM2_ActivateCredential recovers the nonce, then the bundle is collected.
    /// `keys` are read once, as the responder's `EvidenceSource` caches them.
    pub(crate) fn bundle(
        &self,
        nonce: &[u8; 32],
        sealed: SealedNonce,
        key: &SessionKey,
        intermediates: &[Vec<u8>],
        keys: &KeysResponse,
    ) -> anyhow::Result<EvidenceBundle> {
        let kind = EkKind::for_cert_index(sealed.ek_nv_index)
            .context("the sealed nonce names an EK index of no known kind")?;
        let unsealed =
            self.vtpm
                .activate_credential(kind, &sealed.id_object, &sealed.encrypted_secret)?;
        anyhow::ensure!(unsealed == nonce, "the vTPM activated another secret");
        let mut t = Transcript::new();
        t.record(0, nonce);
        let quoter = self.tdx.quoter();
        let ((mut tpm, tdx, timings), _) = collect_blocking(
            nonce,
            key.spki_der(),
            Some(&self.vtpm),
            Some(quoter.as_ref()),
            &self.logs,
            intermediates.to_vec(),
            Some(keys.ek_certs.clone()),
        )?;
        if let Some(t) = tpm.as_mut() {
            t.sealed_nonce = Some(sealed);
        }
        Ok(EvidenceBundle {
            version: BUNDLE_VERSION,
            nonce: nonce.to_vec(),
            nonce_issuer: None,
            session_spki: key.spki_der().to_vec(),
            transcript: t.sign(key.signing_key()),
            tdx,
            tpm,
            timings,
            anchors: None,
        })
    }
}

#[derive(Serialize)]
struct Report {
    iterations: u32,
    verify_iterations: u32,
    /// p50 of building one fresh bundle (cheap-command timing, PCR reads, quote, the
    /// AK-signed chain of `VtpmConfig::chain_len` more quotes, EK certs, logs, lab TDX quote,
    /// CBOR).
    bundle_p50_us: f64,
    /// p50 of the bare TPM2_Quote (the command alone, as timed inside the vTPM thread).
    bare_quote_p50_us: f64,
    /// bundle / bare quote; target <= 3.
    bundle_ratio_p50: f64,
    verify_p50_us: f64,
    dcap_p50_us: f64,
    /// full bundle verification / dcap-qvl alone on the same TDX quote; target <= 4.
    verify_ratio_p50: f64,
    bundle_bytes: usize,
}

fn p50_us(mut v: Vec<Duration>) -> f64 {
    v.sort_unstable();
    v.get(v.len() / 2)
        .copied()
        .unwrap_or_default()
        .as_secs_f64()
        * 1e6
}

/// Runs the benchmark; returns its report as text, or as JSON with `--json`.
pub fn run(args: EvidenceArgs) -> anyhow::Result<String> {
    if let Some(concurrency) = args.concurrency {
        anyhow::ensure!(
            concurrency > 0 && args.duration_s > 0.0,
            "--concurrency and --duration-s must be positive"
        );
        return crate::coalesce::run(crate::coalesce::LoadArgs {
            concurrency,
            quote_delay_ms: args.quote_delay_ms,
            anchors: usize::from(args.anchors),
            duration: Duration::from_secs_f64(args.duration_s),
            json: args.json,
        });
    }
    let lab = LabEvidence::start()?;
    let key = SessionKey::generate()?;
    let inter = lab.ek_intermediates()?;
    let keys = KeysResponse {
        ak_public: lab.vtpm.ak_public()?,
        ek_certs: lab.vtpm.ek_certs()?,
    };
    let n = args.iterations.max(1);
    let (mut bundle_t, mut quote_t) = (Vec::new(), Vec::new());
    let mut last = None;
    for i in 0..n + n / 10 {
        let mut nonce = [0u8; 32];
        nonce[..4].copy_from_slice(&i.to_le_bytes());
        // Sealing is the prober's work, outside the responder's bundle time.
        let sealed = locus_prober::requests::seal_to(&keys, &nonce)
            .context("no EK certificate of a kind a nonce can be sealed to")?;
        let t = Instant::now();
        let b = lab.bundle(&nonce, sealed, &key, &inter, &keys)?;
        let bytes = b.to_cbor();
        let d_bundle = t.elapsed();
        let qd = binding::qualifying_data(&nonce, &binding::spki_hash(key.spki_der()))?;
        let q = lab.vtpm.quote(&qd)?;
        if i >= n / 10 {
            bundle_t.push(d_bundle);
            quote_t.push(Duration::from_nanos(q.quote_ns));
        }
        last = Some((b, bytes));
    }
    let (bundle, bytes) = last.ok_or_else(|| anyhow::anyhow!("no bundle built"))?;

    let dir = lab.dir.path().join("policy");
    let policy_path = lab.write_policy(&dir, "bench")?;
    let (_, policy) = locus_fleet::verifier::load_policy(&policy_path)?;
    let mut ledger = NonceLedger::new("bench");
    let now = unix_now()?;
    ledger.issue(&bundle.nonce, now);
    let inputs = VerifyInputs {
        now_unix: now,
        nonce_record: ledger.record(&bundle.nonce),
        peer_spki: Some(key.spki_der().to_vec()),
    };
    let quote = bundle
        .tdx
        .as_ref()
        .map(|t| t.quote.clone())
        .unwrap_or_default();
    let root = TrustRoot::Configured(lab.tdx.root_ca_der().to_vec());
    let first = evidence::verify_bundle_bytes(&bytes, &policy, &inputs);
    anyhow::ensure!(
        first.valid(),
        "the benchmark bundle does not verify: failed {:?}",
        first.failed()
    );
    let m = args.verify_iterations.max(1);
    let (mut verify_t, mut dcap_t) = (Vec::new(), Vec::new());
    for i in 0..m + m / 10 {
        let t = Instant::now();
        let r = evidence::verify_bundle_bytes(&bytes, &policy, &inputs);
        let d1 = t.elapsed();
        std::hint::black_box(r.valid());
        let t = Instant::now();
        tdx::verify_dcap_only(&quote, lab.tdx.collateral(), &root, now)?;
        let d2 = t.elapsed();
        if i >= m / 10 {
            verify_t.push(d1);
            dcap_t.push(d2);
        }
    }
    let (bundle_p50_us, bare_quote_p50_us) = (p50_us(bundle_t), p50_us(quote_t));
    let (verify_p50_us, dcap_p50_us) = (p50_us(verify_t), p50_us(dcap_t));
    let report = Report {
        iterations: n,
        verify_iterations: m,
        bundle_p50_us,
        bare_quote_p50_us,
        bundle_ratio_p50: bundle_p50_us / bare_quote_p50_us,
        verify_p50_us,
        dcap_p50_us,
        verify_ratio_p50: verify_p50_us / dcap_p50_us,
        bundle_bytes: bytes.len(),
    };
    render(&report, args.json)
}

/// The report as the command prints it.
fn render(r: &Report, json: bool) -> anyhow::Result<String> {
    crate::render(r, json, true, |out| {
        _ = writeln!(
            out,
            "fresh bundle p50 {:.0} us vs bare TPM2_Quote p50 {:.0} us: ratio {:.2} (target <= 3)",
            r.bundle_p50_us, r.bare_quote_p50_us, r.bundle_ratio_p50
        );
        _ = writeln!(
            out,
            "bundle verify p50 {:.0} us vs dcap-qvl alone p50 {:.0} us: ratio {:.2} (target <= 4)",
            r.verify_p50_us, r.dcap_p50_us, r.verify_ratio_p50
        );
        _ = writeln!(out, "bundle size {} bytes", r.bundle_bytes);
    })
}
