//! A lab for evidence tests: a real swtpm (EK certificate from a per-run local CA), a lab TDX
//! quoter whose RTMRs match a lab CCEL, a fake boot measured into both logs, a session key,
//! a nonce ledger and a policy that requires every check. Built once per test binary; the
//! swtpm processes are stopped before any test runs its checks.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use locus_analysis::verify::bundle::{
    policy::{EkSection, NonceSection, TdxSection, TimingSection},
    CheckId, EvidencePolicy, NonceLedger, PolicyFile, Requirement, VerifyInputs,
};
use locus_analysis::verify::eventlog::{self, EventLogWriter, ALG_SHA256, ALG_SHA384};
use locus_proto::evidence::{EvidenceBundle, TpmEvidence, BUNDLE_VERSION};
use locus_proto::transcript::Transcript;
use locus_responder::evidence::{collect_blocking, EventLogPaths};
use locus_responder::tdx::lab::{LabOptions, LabTdx};
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::{Vtpm, VtpmConfig};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey;

/// The lab's fake boot: (PCR, event type, data). PCR 0 has no RTMR; the rest map per UEFI.
pub const BOOT: &[(u32, u32, &[u8])] = &[
    (0, 0x8, b"lab CRTM version"),
    (1, 0x8000_0006, b"lab handoff tables"),
    (7, 0x8000_00e0, b"lab secure boot config"),
    (4, 0x8000_0003, b"lab bootloader"),
    (9, 0xd, b"lab kernel command line"),
    (7, eventlog::EV_SEPARATOR, &[0, 0, 0, 0]),
];

pub struct Lab {
    pub now: u64,
    pub bundle: EvidenceBundle,
    /// The policy file and the files it names (relative names), for CLI tests.
    pub policy_file: PolicyFile,
    pub files: BTreeMap<String, Vec<u8>>,
    pub policy: EvidencePolicy,
    pub ledger: NonceLedger,
    pub peer_spki: Vec<u8>,
    /// A vTPM quote for the same nonce and session from a second swtpm (a relayed vTPM).
    pub relayed_tpm: TpmEvidence,
    /// The second swtpm's EK CA root (PEM): a CA the policy does not trust.
    pub other_ca_root_pem: String,
    /// The TCG log and CCEL as measured.
    pub tcg_log: Vec<u8>,
    pub ccel: Vec<u8>,
}

impl Lab {
    pub fn inputs(&self) -> VerifyInputs {
        VerifyInputs {
            now_unix: self.now,
            nonce_record: self.ledger.record(&self.bundle.nonce),
            peer_spki: Some(self.peer_spki.clone()),
        }
    }

    /// Writes the policy and its files into `dir`; returns the policy path.
    pub fn write_policy(&self, dir: &Path) -> std::path::PathBuf {
        for (name, bytes) in &self.files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let p = dir.join("policy.toml");
        std::fs::write(&p, self.policy_file.to_toml()).unwrap();
        p
    }
}

pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(build)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn measure_boot(vtpm: &Vtpm) -> (Vec<u8>, Vec<u8>, [[u8; 48]; 4]) {
    let mut tcg = EventLogWriter::new(&[ALG_SHA256]);
    let mut ccel = EventLogWriter::new(&[ALG_SHA384]);
    for (pcr, ty, data) in BOOT {
        let d: [u8; 32] = eventlog::hash(ALG_SHA256, data)
            .unwrap()
            .try_into()
            .unwrap();
        vtpm.extend_pcr(*pcr as u8, d).unwrap();
        tcg.push(*pcr, *ty, data);
        if let Some(rtmr) = eventlog::rtmr_for_pcr(*pcr) {
            ccel.push(rtmr as u32 + 1, *ty, data);
        }
    }
    let ccel_bytes = ccel.bytes();
    let rtmrs = eventlog::parse(&ccel_bytes).unwrap().replay_rtmrs();
    (tcg.bytes(), ccel_bytes, rtmrs)
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    locus_analysis::verify::bundle::policy::certificates_from_bytes(pem.as_bytes())
        .unwrap()
        .remove(0)
}

fn build() -> Lab {
    let now = unix_now();
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(SwtpmOptions {
        create_ek_cert: true,
        ..SwtpmOptions::default()
    })
    .unwrap();
    // Generous: several tests start swtpms at once on a loaded 2-core CI host, where one
    // command has waited over the 5 s default; these tests are not about vTPM timeouts.
    let vtpm = Vtpm::open(VtpmConfig {
        command_timeout: std::time::Duration::from_secs(60),
        ..VtpmConfig::new(tpm.tcti())
    })
    .unwrap();
    let (tcg_log, ccel, rtmrs) = measure_boot(&vtpm);

    let mut opts = LabOptions::at(now);
    opts.measurements.rtmr = rtmrs;
    let tdx = LabTdx::generate_with(&opts).unwrap();

    let key = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let spki = key
        .verifying_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let mut t = Transcript::new();
    for s in 0..3u64 {
        t.record(s, &[s as u8; 32]);
    }
    let transcript = t.sign(&key);

    let nonce = [0x5a; 32];
    let mut ledger = NonceLedger::new("lab-verifier");
    ledger.issue(&nonce, now);

    std::fs::write(dir.path().join("tcg.log"), &tcg_log).unwrap();
    std::fs::write(dir.path().join("ccel.data"), &ccel).unwrap();
    let logs = EventLogPaths {
        tcg: Some(dir.path().join("tcg.log")),
        ccel_table: None,
        ccel_data: Some(dir.path().join("ccel.data")),
    };
    let ca = tpm.ek_ca_certs().unwrap();
    let issuer_der = pem_to_der(&ca[0]);
    let quoter = tdx.quoter();
    let ((tpm_ev, tdx_ev, mut timings), _) = collect_blocking(
        &nonce,
        &spki,
        Some(&vtpm),
        Some(quoter.as_ref()),
        &logs,
        vec![issuer_der],
        None,
    )
    .unwrap();
    // The server stamps the whole in-TD time after collecting (not signed, not in REPORTDATA);
    // without it the judge cannot check the evidence round trip.
    timings.evidence_ns = Some(timings.tdx_quote_ns.unwrap_or(0) + 1_000_000);
    let bundle = EvidenceBundle {
        version: BUNDLE_VERSION,
        nonce: nonce.to_vec(),
        nonce_issuer: Some("lab-verifier".into()),
        session_spki: spki.clone(),
        transcript,
        tdx: tdx_ev,
        tpm: tpm_ev,
        timings,
        anchors: None,
    };

    // A second vTPM (another "machine", same AK template and same boot) answers for the same
    // nonce and session: a relay.
    let tpm2 = Swtpm::start(SwtpmOptions {
        create_ek_cert: true,
        ..SwtpmOptions::default()
    })
    .unwrap();
    let vtpm2 = Vtpm::open(VtpmConfig::new(tpm2.tcti())).unwrap();
    measure_boot(&vtpm2);
    let ((relayed, _, _), _) =
        collect_blocking(&nonce, &spki, Some(&vtpm2), None, &logs, Vec::new(), None).unwrap();
    let other_ca_root_pem = tpm2.ek_ca_certs().unwrap()[1].clone();
    drop(vtpm2);
    drop(tpm2);
    drop(vtpm);
    drop(tpm);

    let mut files = BTreeMap::new();
    files.insert("ek-root.pem".to_string(), ca[1].clone().into_bytes());
    files.insert("lab-root-ca.der".to_string(), tdx.root_ca_der().to_vec());
    files.insert(
        "lab-collateral.json".to_string(),
        serde_json::to_vec(tdx.collateral()).unwrap(),
    );
    let mut checks = BTreeMap::new();
    for c in CheckId::ALL {
        checks.insert(c, Requirement::Required);
    }
    checks.insert(CheckId::AkEkBinding, Requirement::Off);
    // Azure only (tests/cloud_vtpm.rs): these bundles carry no HCL report.
    checks.insert(CheckId::HclReport, Requirement::Optional);
    checks.insert(CheckId::HclUserData, Requirement::Optional);
    // These bundles carry no anchor report (anchors are tested in tests/lab.rs).
    checks.insert(CheckId::Anchors, Requirement::Optional);
    checks.insert(CheckId::AnchorClocksource, Requirement::Optional);
    let mut policy_file = PolicyFile {
        checks,
        nonce: NonceSection {
            issuer: "lab-verifier".into(),
            max_age_secs: 60,
            ledger: None,
        },
        ek: EkSection {
            roots: vec!["ek-root.pem".into()],
            intermediates: Vec::new(),
        },
        tdx: TdxSection {
            root: Some("lab-root-ca.der".into()),
            collateral: Some("lab-collateral.json".into()),
            accept_tcb: None,
        },
        timing: TimingSection {
            // A configured bound, far above any local vTPM: the check runs, tests never
            // depend on measured speed.
            max_tpm_cheap_rtt_us: Some(10_000_000),
            max_tpm_chain_rtt_us: Some(10_000_000),
        },
        ..PolicyFile::default()
    };
    // Reference values: the PCRs and RTMRs this lab measures.
    let t = bundle.tpm.as_ref().unwrap();
    policy_file.reference.pcrs = t
        .pcrs
        .iter()
        .filter(|p| p.index < 10)
        .map(|p| locus_analysis::verify::bundle::policy::PcrReference {
            index: p.index,
            sha256: hex::encode(&p.digest),
        })
        .collect();
    // The TD pins (MRTD, RTMR0-3, attributes, XFAM, MRCONFIGID): the lab's own quote's.
    assert!(policy_file
        .reference
        .pin_td(&bundle.tdx.as_ref().unwrap().quote));
    assert_eq!(
        policy_file.reference.mrtd,
        Some(hex::encode(opts.measurements.mr_td))
    );
    assert_eq!(policy_file.reference.rtmrs[0].sha384, hex::encode(rtmrs[0]));
    let policy = policy_file
        .resolve(&|name: &str| files.get(name).cloned().ok_or_else(|| "missing".into()))
        .unwrap();

    Lab {
        // Verification happens after every certificate was issued (the swtpm CA and EK
        // certificates are dated at their creation, seconds after `now`).
        now: unix_now() + 1,
        bundle,
        policy_file,
        files,
        policy,
        ledger,
        peer_spki: spki,
        relayed_tpm: relayed.unwrap(),
        other_ca_root_pem,
        tcg_log,
        ccel,
    }
}
