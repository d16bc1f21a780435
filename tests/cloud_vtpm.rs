//! The responder on a vTPM provisioned the way GCE provisions it: an AK template and the AK
//! certificate in NV (go-tpm-tools' indices). swtpm stands in for the cloud vTPM; tpm2-tools
//! writes the indices and openssl issues the certificate from a test CA.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use locus_analysis::verify::bundle::ekchain;
use locus_analysis::verify::tpm::{self, AkKey};
use locus_responder::evidence::{collect_blocking_bound, EventLogPaths};
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::{Vtpm, VtpmConfig, GCE_AK_CERT_NV_ECC, GCE_AK_TEMPLATE_NV_ECC};

/// TPMT_PUBLIC of an ECC P-256 restricted signing key with ECDSA-SHA256: fixedTPM, fixedParent,
/// sensitiveDataOrigin, userWithAuth, noDA, restricted, sign (noDA makes it differ from the
/// responder's own template, so the test sees which one was used).
fn gce_ecc_template() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&0x0023u16.to_be_bytes()); // TPM_ALG_ECC
    t.extend_from_slice(&0x000bu16.to_be_bytes()); // nameAlg SHA-256
    t.extend_from_slice(&0x0005_0472u32.to_be_bytes());
    t.extend_from_slice(&[0, 0]); // authPolicy
    t.extend_from_slice(&0x0010u16.to_be_bytes()); // symmetric NULL
    t.extend_from_slice(&0x0018u16.to_be_bytes()); // ECDSA
    t.extend_from_slice(&0x000bu16.to_be_bytes()); // SHA-256
    t.extend_from_slice(&0x0003u16.to_be_bytes()); // NIST P-256
    t.extend_from_slice(&0x0010u16.to_be_bytes()); // kdf NULL
    t.extend_from_slice(&[0, 0, 0, 0]); // unique x, y empty
    t
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nv_write(tpm: &Swtpm, index: u32, data: &[u8], dir: &Path) {
    let tcti = tpm.tcti().to_string();
    let file = dir.join(format!("{index:x}.bin"));
    std::fs::write(&file, data).unwrap();
    let index = format!("{index:#010x}");
    run(Command::new("tpm2_nvdefine")
        .args([&index, "-C", "o", "-s", &data.len().to_string()])
        .args(["-a", "ownerread|ownerwrite|authread|authwrite|no_da"])
        .args(["-T", &tcti]));
    run(Command::new("tpm2_nvwrite")
        .args([&index, "-C", "o", "-i"])
        .arg(&file)
        .args(["-T", &tcti]));
}

/// SubjectPublicKeyInfo (DER) of a P-256 point.
fn p256_spki(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.push(0x04);
    spki.extend_from_slice(x);
    spki.extend_from_slice(y);
    spki
}

fn config(tpm: &Swtpm) -> VtpmConfig {
    let mut c = VtpmConfig::new(tpm.tcti());
    c.command_timeout = Duration::from_secs(5);
    c
}

#[test]
fn the_responder_uses_the_provisioned_gce_ak_and_ships_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(SwtpmOptions::default()).unwrap();

    // Without provisioning: the responder's own AK, no certificate.
    let plain = Vtpm::open(config(&tpm)).unwrap();
    let own_ak = plain.ak_public().unwrap();
    assert_eq!(plain.ak_cert().unwrap(), None);
    drop(plain);

    // Provision the template; the AK is the primary the platform's template gives.
    nv_write(
        &tpm,
        GCE_AK_TEMPLATE_NV_ECC,
        &gce_ecc_template(),
        dir.path(),
    );
    let vtpm = Vtpm::open(config(&tpm)).unwrap();
    let ak = vtpm.ak_public().unwrap();
    assert_ne!(ak, own_ak, "the AK comes from the NV template");
    let parsed = tpm::parse_ak_public(&ak).unwrap();
    assert_eq!(parsed.attributes, 0x0005_0472);
    let AkKey::Ecc { x, y } = &parsed.key else {
        panic!("ECC template gave {:?}", parsed.key)
    };
    assert_eq!(
        vtpm.ak_cert().unwrap(),
        None,
        "no certificate provisioned yet"
    );
    drop(vtpm);

    // The "provider CA" certifies that AK, naming a zone; the certificate goes to NV.
    let d = dir.path();
    std::fs::write(d.join("ak.der"), p256_spki(x, y)).unwrap();
    run(Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(d.join("ak.der"))
        .arg("-out")
        .arg(d.join("ak.pem")));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-subj",
            "/CN=test EK-AK CA",
            "-days",
            "30",
            "-keyout",
        ])
        .arg(d.join("ca.key"))
        .arg("-out")
        .arg(d.join("ca.pem")));
    run(Command::new("openssl")
        .args([
            "x509",
            "-new",
            "-subj",
            "/CN=ak/L=europe-west3-a",
            "-days",
            "30",
        ])
        .arg("-force_pubkey")
        .arg(d.join("ak.pem"))
        .arg("-CA")
        .arg(d.join("ca.pem"))
        .arg("-CAkey")
        .arg(d.join("ca.key"))
        .args(["-outform", "DER", "-out"])
        .arg(d.join("ak.crt")));
    let cert = std::fs::read(d.join("ak.crt")).unwrap();
    run(Command::new("openssl")
        .args(["x509", "-in"])
        .arg(d.join("ca.pem"))
        .args(["-outform", "DER", "-out"])
        .arg(d.join("ca.der")));
    let ca = std::fs::read(d.join("ca.der")).unwrap();
    nv_write(&tpm, GCE_AK_CERT_NV_ECC, &cert, dir.path());

    let vtpm = Vtpm::open(config(&tpm)).unwrap();
    assert_eq!(vtpm.ak_public().unwrap(), ak, "same template, same AK");
    assert_eq!(vtpm.ak_cert().unwrap().as_deref(), Some(cert.as_slice()));

    // The evidence carries the certificate; it chains to the CA and its key signed the quote.
    let ((tpm_ev, _, _), _) = collect_blocking_bound(
        &[9; 32],
        b"session spki",
        Some(&vtpm),
        None,
        &EventLogPaths::default(),
        vec![],
        None,
        None,
    )
    .unwrap();
    let ev = tpm_ev.unwrap();
    assert_eq!(ev.ak_public, ak);
    assert_eq!(ev.ak_cert.as_deref(), Some(cert.as_slice()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    ekchain::verify_chain(&cert, &[], &[ca], now).unwrap();
    assert!(cert
        .windows(64)
        .any(|w| w[..32] == x[..] && w[32..] == y[..]));
    tpm::verify_signature(&parsed, &ev.attest, &ev.signature).unwrap();
}

// ---- Azure: the HCL's AK at 0x81000003 and the HCL report in NV 0x01400001 ----

mod azure {
    use std::collections::BTreeMap;
    use std::sync::OnceLock;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use locus_analysis::verify::anchor::AnchorPolicy;
    use locus_analysis::verify::bundle::policy::PcrReference;
    use locus_analysis::verify::bundle::policy::{NonceSection, TdxSection};
    use locus_analysis::verify::bundle::{
        self as evidence, CheckId, EvidenceError, EvidencePolicy, EvidenceReport, NonceLedger,
        Outcome, PolicyFile, Requirement, VerifyInputs,
    };
    use locus_analysis::verify::cloud::azure::AzureError;
    use locus_proto::anchor::{AnchorReport, ANCHOR_REPORT_VERSION};
    use locus_proto::binding::{self, BindingInputs, BindingVersion};
    use locus_proto::evidence::{EvidenceBundle, TdxInclusionProof, BUNDLE_VERSION};
    use locus_proto::transcript::Transcript;
    use locus_responder::evidence::EvidenceError as CollectError;
    use locus_responder::tdx::lab::{LabOptions, LabTdx};
    use locus_responder::tdx::TdxQuoter;
    use locus_responder::tpm::{
        AkSource, VtpmError, AZURE_HCL_AK_HANDLE, AZURE_HCL_REPORT_NV, AZURE_USER_DATA_NV,
    };
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePublicKey;
    use sha2::{Digest, Sha256};
    use tempfile::TempDir;

    use super::*;

    const NONCE: [u8; 32] = [0xa2; 32];
    const ISSUER: &str = "azure-verifier";
    /// swtpm's largest NV index (TPM2_PT_NV_INDEX_MAX); Azure's report index holds 2600 bytes.
    const NV_LEN: usize = 2048;
    /// Offset of the JSON variable data in an HCL report.
    const VAR_AT: usize = locus_proto::hcl::VARIABLE_DATA_AT;

    /// swtpm with an RSA-2048 restricted signing key (RSASSA-SHA256) persistent at the HCL
    /// AK's handle, as the HCL provisions it.
    struct AzureVtpm {
        tpm: Swtpm,
        dir: TempDir,
        /// TPM2B_PUBLIC as `tpm2_readpublic` gives it.
        ak_public: Vec<u8>,
    }

    impl AzureVtpm {
        fn start() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let tpm = Swtpm::start(SwtpmOptions::default()).unwrap();
            let tcti = tpm.tcti().to_string();
            let ctx = dir.path().join("ak.ctx");
            let public = dir.path().join("ak.pub");
            run(Command::new("tpm2_createprimary")
                .args(["-C", "e", "-G", "rsa2048:rsassa-sha256:null"])
                .args([
                    "-a",
                    "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda",
                ])
                .arg("-c")
                .arg(&ctx)
                .args(["-T", &tcti]));
            run(Command::new("tpm2_evictcontrol")
                .args(["-C", "o", "-c"])
                .arg(&ctx)
                .arg(format!("{AZURE_HCL_AK_HANDLE:#010x}"))
                .args(["-T", &tcti]));
            run(Command::new("tpm2_readpublic")
                .args(["-c", &format!("{AZURE_HCL_AK_HANDLE:#010x}"), "-o"])
                .arg(&public)
                .args(["-T", &tcti]));
            let ak_public = std::fs::read(&public).unwrap();
            AzureVtpm {
                tpm,
                dir,
                ak_public,
            }
        }

        /// Writes `report` to the HCL report index, replacing what was there.
        fn provision(&self, report: &[u8]) {
            let tcti = self.tpm.tcti().to_string();
            let index = format!("{AZURE_HCL_REPORT_NV:#010x}");
            let _ = Command::new("tpm2_nvundefine")
                .args([&index, "-C", "o", "-T", &tcti])
                .output();
            nv_write(&self.tpm, AZURE_HCL_REPORT_NV, report, self.dir.path());
        }

        fn read_user_data(&self) -> Vec<u8> {
            let out = self.dir.path().join("user-data.bin");
            run(Command::new("tpm2_nvread")
                .arg(format!("{AZURE_USER_DATA_NV:#010x}"))
                .args(["-C", "o", "-s", "64", "-o"])
                .arg(&out)
                .args(["-T", &self.tpm.tcti().to_string()]));
            std::fs::read(out).unwrap()
        }

        fn vtpm(&self, ak: AkSource) -> Result<Vtpm, VtpmError> {
            let mut c = config(&self.tpm);
            c.ak = ak;
            Vtpm::open(c)
        }

        fn rsa(&self) -> (Vec<u8>, Vec<u8>) {
            match tpm::parse_ak_public(&self.ak_public).unwrap().key {
                AkKey::Rsa { n, e } => (n, e),
                other => panic!("the HCL AK is {other:?}"),
            }
        }
    }

    /// An HCL report for a TDX CVM as Azure's HCL writes it: header, TDREPORT, runtime data
    /// header, then the JSON variable data naming the AK `(n, e)` and carrying `user_data`,
    /// zero-padded to `len`. Its TDREPORT repeats the TD quote body fields (`body`, from a lab
    /// quote) that the verifier compares, and its REPORTDATA is SHA-256(variable data) ‖ 0³².
    /// Without `user_data` the runtime data has no `user-data` (no request was made).
    fn hcl_report(
        body: &[u8],
        n: &[u8],
        e: &[u8],
        user_data: Option<&[u8; 64]>,
        len: usize,
    ) -> Vec<u8> {
        let mut var = serde_json::json!({
            "keys": [{
                "kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA",
                "e": URL_SAFE_NO_PAD.encode(e), "n": URL_SAFE_NO_PAD.encode(n),
            }],
            "vm-configuration": {
                "console-enabled": false, "secure-boot": true, "tpm-enabled": true,
                "tpm-persisted": true, "vmUniqueId": "10CA5000-0000-4000-8000-000000000001",
            },
        });
        if let Some(u) = user_data {
            var["user-data"] = hex::encode_upper(u).into();
        }
        let var = var.to_string().into_bytes();
        let le = |v: usize| u32::try_from(v).unwrap().to_le_bytes();
        let mut r = vec![0u8; VAR_AT];
        r[0..4].copy_from_slice(b"HCLA");
        r[4..8].copy_from_slice(&le(2));
        r[8..12].copy_from_slice(&le(VAR_AT + var.len()));
        r[12..16].copy_from_slice(&le(2));
        r[32 + 128..32 + 160].copy_from_slice(&Sha256::digest(&var));
        r[32 + 264..32 + 376].copy_from_slice(&body[0..112]);
        r[32 + 512..32 + 912].copy_from_slice(&body[120..520]);
        let rt = locus_proto::hcl::RUNTIME_HEADER_AT;
        for (i, v) in [var.len() + 20, 1, 4, 1, var.len()].into_iter().enumerate() {
            r[rt + 4 * i..rt + 4 * i + 4].copy_from_slice(&le(v));
        }
        r.extend_from_slice(&var);
        assert!(r.len() <= len, "HCL report of {} bytes", r.len());
        r.resize(len, 0);
        r
    }

    fn session_key() -> (SigningKey, Vec<u8>) {
        let key = SigningKey::from_slice(&[0x42; 32]).unwrap();
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        (key, spki)
    }

    /// The binding value of a bundle for `nonce` by this AK and session (no anchors).
    fn binding_value(
        nonce: &[u8],
        ak_public: &[u8],
        spki: &[u8],
        version: BindingVersion,
    ) -> [u8; 64] {
        binding::report_data(&BindingInputs {
            nonce,
            ak_public_hash: binding::ak_public_hash(ak_public),
            spki_hash: binding::spki_hash(spki),
            anchor_digest: None,
            version,
        })
        .unwrap()
    }

    /// The binding value of `b` (its nonce, AK, session and timings; no anchors).
    fn bundle_binding_value(b: &EvidenceBundle) -> [u8; 64] {
        let ak = &b.tpm.as_ref().unwrap().ak_public;
        binding_value(&b.nonce, ak, &b.session_spki, b.binding_version())
    }

    fn unix_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// A valid Azure bundle from the responder, and what the tests compare it with. The swtpm
    /// is stopped before any test runs.
    struct Fixture {
        now: u64,
        lab: LabTdx,
        /// The TD quote body of the lab TD (REPORTDATA aside).
        body: Vec<u8>,
        ak_public: Vec<u8>,
        rsa: (Vec<u8>, Vec<u8>),
        provisioned: Vec<u8>,
        user_data_written: Vec<u8>,
        /// The AK the responder uses with `AkSource::Own` on the same vTPM, and whether it
        /// then bundled an HCL report.
        own_ak: Vec<u8>,
        own_hcl_report: Option<Vec<u8>>,
        bundle: EvidenceBundle,
        policy: EvidencePolicy,
        ledger: NonceLedger,
    }

    fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let now = unix_now();
            let lab = LabTdx::generate_with(&LabOptions::at(now)).unwrap();
            let body = lab.quoter().quote([0; 64]).unwrap()[48..48 + 584].to_vec();
            let az = AzureVtpm::start();
            let (_, spki) = session_key();
            let rsa = az.rsa();
            // The emulated HCL keeps the report it was given: provision one now, and after
            // collecting the one a real HCL would have written for the bundle's binding value
            // (binding v2 covers timings measured during the collection).
            let early = binding_value(&NONCE, &az.ak_public, &spki, BindingVersion::V1);
            az.provision(&hcl_report(&body, &rsa.0, &rsa.1, Some(&early), NV_LEN));

            let own = az.vtpm(AkSource::Own).unwrap();
            let own_ak = own.ak_public().unwrap();
            let own_hcl_report = own.hcl_report([1; 64]).unwrap();
            drop(own);

            let vtpm = az.vtpm(AkSource::Auto).unwrap();
            let mut bundle = collect(&vtpm, &lab, &NONCE).unwrap();
            drop(vtpm);
            let user_data_written = az.read_user_data();
            let written: [u8; 64] = user_data_written.as_slice().try_into().unwrap();
            let provisioned = hcl_report(&body, &rsa.0, &rsa.1, Some(&written), NV_LEN);
            let rd = locus_proto::hcl::td_report_data(&provisioned).unwrap();
            bundle.tdx.as_mut().unwrap().quote = lab.quoter().quote(rd).unwrap();
            bundle.tpm.as_mut().unwrap().hcl_report = Some(provisioned.clone());

            let mut ledger = NonceLedger::new(ISSUER);
            ledger.issue(&NONCE, now);
            Fixture {
                now,
                policy: policy(&lab, &[]),
                lab,
                body,
                ak_public: az.ak_public.clone(),
                rsa,
                provisioned,
                user_data_written,
                own_ak,
                own_hcl_report,
                bundle,
                ledger,
            }
        })
    }

    /// The responder's evidence for `nonce`: vTPM (the HCL AK when provisioned) and the lab
    /// TDX quoter standing in for Azure's quoting service.
    fn collect(vtpm: &Vtpm, lab: &LabTdx, nonce: &[u8]) -> Result<EvidenceBundle, CollectError> {
        let (key, spki) = session_key();
        let quoter = lab.quoter();
        let ((tpm, tdx, timings), _) = collect_blocking_bound(
            nonce,
            &spki,
            Some(vtpm),
            Some(quoter.as_ref() as &dyn TdxQuoter),
            &EventLogPaths::default(),
            vec![],
            None,
            None,
        )?;
        let mut t = Transcript::new();
        t.record(0, &[7; 32]);
        Ok(EvidenceBundle {
            version: BUNDLE_VERSION,
            nonce: nonce.to_vec(),
            nonce_issuer: Some(ISSUER.into()),
            session_spki: spki,
            transcript: t.sign(&key),
            tdx,
            tpm,
            timings,
            anchors: None,
        })
    }

    /// Every check required except those that need inputs this vTPM has not (EK certificate,
    /// reference values, logs, peer key, timing bound, anchors); `extra` overrides.
    fn policy(lab: &LabTdx, extra: &[(CheckId, Requirement)]) -> EvidencePolicy {
        resolve(lab, &policy_file(extra))
    }

    fn resolve(lab: &LabTdx, p: &PolicyFile) -> EvidencePolicy {
        let mut files = BTreeMap::new();
        files.insert("lab-root-ca.der", lab.root_ca_der().to_vec());
        files.insert(
            "lab-collateral.json",
            serde_json::to_vec(lab.collateral()).unwrap(),
        );
        p.resolve(&|name: &str| files.get(name).cloned().ok_or_else(|| "missing".into()))
            .unwrap()
    }

    /// The file form of [`policy`].
    fn policy_file(extra: &[(CheckId, Requirement)]) -> PolicyFile {
        let optional = [
            CheckId::SessionSpki,
            CheckId::PcrReference,
            CheckId::TdReference,
            CheckId::TcgEventLog,
            CheckId::CcelEventLog,
            CheckId::PcrRtmrCrossCheck,
            CheckId::EkChain,
            CheckId::AkEkBinding,
            CheckId::VtpmTiming,
            CheckId::Anchors,
            CheckId::AnchorClocksource,
        ];
        let mut checks: BTreeMap<CheckId, Requirement> = CheckId::ALL
            .iter()
            .map(|c| {
                let r = if optional.contains(c) {
                    Requirement::Optional
                } else {
                    Requirement::Required
                };
                (*c, r)
            })
            .collect();
        checks.extend(extra.iter().copied());
        PolicyFile {
            checks,
            nonce: NonceSection {
                issuer: ISSUER.into(),
                max_age_secs: 3600,
                ledger: None,
            },
            tdx: TdxSection {
                root: Some("lab-root-ca.der".into()),
                collateral: Some("lab-collateral.json".into()),
                accept_tcb: None,
            },
            // These tests are about HCL binding; TD pinning has its own tests
            // (tests/evidence_bundle.rs).
            allow_unpinned_code: true,
            // Nor is the vTPM's distance (tests/vtpm_stub.rs): a bound no swtpm misses.
            timing: locus_analysis::verify::bundle::policy::TimingSection {
                max_tpm_cheap_rtt_us: None,
                max_tpm_chain_rtt_us: Some(10_000_000),
            },
            ..PolicyFile::default()
        }
    }

    fn verify_with(b: &EvidenceBundle, policy: &EvidencePolicy) -> EvidenceReport {
        let f = fixture();
        let inputs = VerifyInputs {
            now_unix: f.now,
            nonce_record: f.ledger.record(&b.nonce),
            peer_spki: None,
        };
        evidence::verify_bundle(b, policy, &inputs)
    }

    fn verify(b: &EvidenceBundle) -> EvidenceReport {
        verify_with(b, &fixture().policy)
    }

    /// The bundle with `hcl_report` in place of its HCL report and a lab TD quote over it
    /// (what a TD whose HCL wrote that report would present).
    fn with_report(hcl_report: Vec<u8>) -> EvidenceBundle {
        let f = fixture();
        let mut b = f.bundle.clone();
        let rd = locus_proto::hcl::td_report_data(&hcl_report).unwrap();
        b.tdx.as_mut().unwrap().quote = f.lab.quoter().quote(rd).unwrap();
        b.tpm.as_mut().unwrap().hcl_report = Some(hcl_report);
        b
    }

    fn mutate_report(f: impl FnOnce(&mut Vec<u8>)) -> EvidenceBundle {
        let mut b = fixture().bundle.clone();
        f(b.tpm.as_mut().unwrap().hcl_report.as_mut().unwrap());
        b
    }

    fn failure(r: &EvidenceReport, check: CheckId) -> &EvidenceError {
        assert!(!r.valid(), "tampered bundle accepted: {:#}", r.to_json());
        r.error(check)
            .unwrap_or_else(|| panic!("{check} did not fail: {:#}", r.to_json()))
    }

    #[test]
    fn the_responder_quotes_with_the_hcl_ak_and_bundles_the_hcl_report() {
        let f = fixture();
        let tpm_ev = f.bundle.tpm.as_ref().unwrap();
        assert_eq!(tpm_ev.ak_public, f.ak_public, "the HCL's AK signed");
        assert_eq!(tpm_ev.hcl_report.as_ref(), Some(&f.provisioned));
        assert_eq!(
            f.user_data_written,
            bundle_binding_value(&f.bundle),
            "the HCL was asked for a report carrying this bundle's binding"
        );
        // The TD quote is over the HCL report's REPORTDATA, not locus's binding.
        let quote = &f.bundle.tdx.as_ref().unwrap().quote;
        assert_eq!(
            quote[48 + 520..48 + 584],
            locus_proto::hcl::td_report_data(&f.provisioned).unwrap()
        );
        assert_eq!(f.bundle.tdx.as_ref().unwrap().inclusion, None);
        // `AkSource::Own` ignores the HCL: its own AK, no report.
        assert_ne!(f.own_ak, f.ak_public);
        assert_eq!(f.own_hcl_report, None);
        // The bundle survives CBOR.
        let decoded = EvidenceBundle::from_cbor(&f.bundle.to_cbor()).unwrap();
        assert_eq!(decoded, f.bundle);

        let r = verify(&f.bundle);
        assert!(r.valid(), "{:#}", r.to_json());
        for check in [
            CheckId::TdxQuote,
            CheckId::HclReport,
            CheckId::ReportData,
            CheckId::AkHash,
            CheckId::HclUserData,
            CheckId::TpmSignature,
            CheckId::QualifyingData,
            CheckId::PcrDigest,
        ] {
            assert!(
                matches!(r.outcome(check), Some(Outcome::Pass)),
                "{check}: {:#}",
                r.to_json()
            );
        }
    }

    /// The TD quote of an Azure bundle is the paravisor's: pinning MRTD and RTMR0-3 pins the
    /// paravisor build, not the guest. The code counts as pinned only with the guest boot PCRs
    /// (4, and 8, 9 or 11) pinned and verified through the vTPM quote.
    #[test]
    fn td_pins_alone_leave_an_azure_bundle_unpinned_until_its_boot_pcrs_are_pinned() {
        let f = fixture();
        let quote = &f.bundle.tdx.as_ref().unwrap().quote;
        let mut p = policy_file(&[(CheckId::TdReference, Requirement::Required)]);
        p.allow_unpinned_code = false;
        assert!(p.reference.pin_td(quote));
        let r = verify_with(&f.bundle, &resolve(&f.lab, &p));
        assert!(r.valid(), "{:#}", r.to_json());
        assert!(matches!(
            r.outcome(CheckId::TdReference),
            Some(Outcome::Pass)
        ));
        assert!(r.unpinned_code, "TD pins alone counted: {:#}", r.to_json());
        assert_eq!(
            r.unpinned,
            ["reference.pcrs[4]", "reference.pcrs[8, 9 or 11]"]
        );

        let pcr = |i: u8| {
            let v = (f.bundle.tpm.as_ref().unwrap().pcrs.iter())
                .find(|p| p.index == i && p.alg == tpm::ALG_SHA256)
                .unwrap_or_else(|| panic!("the bundle carries no PCR {i}"));
            PcrReference {
                index: i,
                sha256: hex::encode(&v.digest),
            }
        };
        // PCR 4 without the kernel's PCR is still unpinned, naming what is missing.
        p.reference.pcrs = vec![pcr(4)];
        let r = verify_with(&f.bundle, &resolve(&f.lab, &p));
        assert!(r.unpinned_code);
        assert_eq!(r.unpinned, ["reference.pcrs[8, 9 or 11]"]);

        for kernel in [8, 9, 11] {
            p.reference.pcrs = vec![pcr(4), pcr(kernel)];
            let r = verify_with(&f.bundle, &resolve(&f.lab, &p));
            assert!(r.valid(), "{:#}", r.to_json());
            assert!(matches!(
                r.outcome(CheckId::PcrReference),
                Some(Outcome::Pass)
            ));
            assert!(!r.unpinned_code, "PCR 4+{kernel}: {:#}", r.to_json());
        }

        // Pinned, but the comparison turned off: the pins count for nothing.
        p.reference.pcrs = vec![pcr(4), pcr(11)];
        p.checks.insert(CheckId::PcrReference, Requirement::Off);
        let r = verify_with(&f.bundle, &resolve(&f.lab, &p));
        assert!(r.unpinned_code);
        assert_eq!(r.unpinned, ["pcr_reference (did not pass)"]);

        // A bundle without an HCL report (the TD quote is the guest's own) is pinned by the
        // TD pins alone.
        let mut plain = f.bundle.clone();
        plain.tpm.as_mut().unwrap().hcl_report = None;
        p.checks
            .insert(CheckId::PcrReference, Requirement::Optional);
        let r = verify_with(&plain, &resolve(&f.lab, &p));
        assert!(!r.unpinned_code, "{:#}", r.to_json());
    }

    #[test]
    fn a_report_naming_another_ak_fails_ak_hash() {
        let f = fixture();
        let mut n = f.rsa.0.clone();
        n[100] ^= 1;
        let user_data = bundle_binding_value(&f.bundle);
        let b = with_report(hcl_report(&f.body, &n, &f.rsa.1, Some(&user_data), NV_LEN));
        let r = verify(&b);
        assert!(
            matches!(
                failure(&r, CheckId::AkHash),
                EvidenceError::HclAkMismatch { .. }
            ),
            "{:#}",
            r.to_json()
        );
        assert_eq!(r.failed(), [CheckId::AkHash], "{:#}", r.to_json());
    }

    #[test]
    fn a_report_made_for_another_bundle_fails_hcl_user_data() {
        let f = fixture();
        let stale = binding_value(
            &[0x99; 32],
            &f.ak_public,
            &f.bundle.session_spki,
            f.bundle.binding_version(),
        );
        let b = with_report(hcl_report(
            &f.body,
            &f.rsa.0,
            &f.rsa.1,
            Some(&stale),
            NV_LEN,
        ));
        let r = verify(&b);
        assert!(
            matches!(
                failure(&r, CheckId::HclUserData),
                EvidenceError::HclUserDataMismatch { .. }
            ),
            "{:#}",
            r.to_json()
        );
        assert_eq!(r.failed(), [CheckId::HclUserData], "{:#}", r.to_json());
        // Without user data (no request made) it fails the same check.
        let b = with_report(hcl_report(&f.body, &f.rsa.0, &f.rsa.1, None, NV_LEN));
        let r = verify(&b);
        assert!(matches!(
            r.error(CheckId::HclUserData),
            Some(EvidenceError::HclUserDataMismatch { found, .. }) if found == "absent"
        ));
        assert_eq!(r.failed(), [CheckId::HclUserData]);
    }

    /// Security review finding 6: the HCL report's user data is all that binds the in-TD
    /// timings and the anchor report to the TD quote, so a bundle with an HCL report fails
    /// `hcl_user_data` without it even where the policy turns the check off.
    #[test]
    fn an_hcl_report_without_user_data_fails_even_when_the_policy_turns_the_check_off() {
        let f = fixture();
        let lenient = policy(&f.lab, &[(CheckId::HclUserData, Requirement::Off)]);
        let b = with_report(hcl_report(&f.body, &f.rsa.0, &f.rsa.1, None, NV_LEN));
        let r = verify_with(&b, &lenient);
        assert!(
            matches!(
                r.error(CheckId::HclUserData),
                Some(EvidenceError::HclUserDataMismatch { found, .. }) if found == "absent"
            ),
            "{:#}",
            r.to_json()
        );
        assert_eq!(r.failed(), [CheckId::HclUserData], "{:#}", r.to_json());
        // The honest bundle still verifies under that policy.
        assert!(verify_with(&f.bundle, &lenient).valid());
    }

    #[test]
    fn tampered_variable_data_fails_report_data() {
        let b = mutate_report(|r| {
            let text = String::from_utf8_lossy(&r[VAR_AT..]).into_owned();
            let at = VAR_AT + text.find("10CA5000").unwrap();
            r[at] = b'2';
        });
        let r = verify(&b);
        assert!(
            matches!(
                failure(&r, CheckId::ReportData),
                EvidenceError::Hcl(AzureError::ReportData { .. })
            ),
            "{:#}",
            r.to_json()
        );
        assert!(matches!(r.outcome(CheckId::HclReport), Some(Outcome::Pass)));
        // The AK and user data are not vouched for: skipped (required, so invalid), not failed.
        for check in [CheckId::AkHash, CheckId::HclUserData] {
            assert!(
                matches!(r.outcome(check), Some(Outcome::Skipped(_))),
                "{check}: {:#}",
                r.to_json()
            );
        }
    }

    #[test]
    fn a_tdreport_other_than_the_quoted_one_fails_hcl_report() {
        // RTMR0 inside the HCL's TDREPORT (TDINFO at 512: RTMR0 at +208).
        let b = mutate_report(|r| r[32 + 512 + 208] ^= 1);
        let r = verify(&b);
        assert!(
            matches!(
                failure(&r, CheckId::HclReport),
                EvidenceError::Hcl(AzureError::HclTdReport { .. })
            ),
            "{:#}",
            r.to_json()
        );
        assert_eq!(r.failed(), [CheckId::HclReport]);
    }

    #[test]
    fn truncated_and_oversized_reports_fail_hcl_report() {
        let f = fixture();
        let size = VAR_AT + {
            let var = &f.provisioned[VAR_AT..];
            var.iter().rposition(|b| *b != 0).unwrap() + 1
        };
        for (what, len) in [
            ("headers cut", VAR_AT - 1),
            ("variable data cut", size - 1),
            ("oversized", locus_proto::hcl::MAX_HCL_REPORT_LEN + 1),
        ] {
            let b = mutate_report(|r| r.resize(len, 0));
            let r = verify(&b);
            assert!(
                matches!(
                    failure(&r, CheckId::HclReport),
                    EvidenceError::Hcl(AzureError::HclReport { .. })
                ),
                "{what}: {:#}",
                r.to_json()
            );
            // The binding checks that need the report say so.
            for check in [CheckId::ReportData, CheckId::AkHash, CheckId::HclUserData] {
                assert!(
                    matches!(
                        r.error(check),
                        Some(EvidenceError::Dependency(CheckId::HclReport))
                    ),
                    "{what}, {check}: {:#}",
                    r.to_json()
                );
            }
        }
        // Every prefix short of the report's size is rejected (the zero padding after it is
        // not part of the report), none panics.
        for len in (0..size).step_by(37).chain([size - 1]) {
            let b = mutate_report(|r| r.truncate(len));
            assert!(!verify(&b).valid(), "prefix of {len} bytes accepted");
        }
    }

    #[test]
    fn an_anchor_report_is_bound_only_through_the_hcl_user_data() {
        let f = fixture();
        let anchors = AnchorReport {
            version: ANCHOR_REPORT_VERSION,
            nonce: NONCE.to_vec(),
            clocksource: Some("tsc".into()),
            anchors: vec![],
            batch: None,
        };
        let mut policy = policy(&f.lab, &[(CheckId::Anchors, Requirement::Required)]);
        policy.anchors = Some(AnchorPolicy {
            anchors: vec![],
            km_per_ms_rtt: 100.0,
            recheck_handshake: false,
            allow_clocksource: vec!["tsc".into()],
            require_clocksource: true,
        });
        // The fixture's report carries the binding without anchors: adding them unbinds it.
        let mut b = f.bundle.clone();
        b.anchors = Some(anchors.clone());
        let r = verify_with(&b, &policy);
        assert_eq!(
            r.failed(),
            [CheckId::HclUserData, CheckId::Anchors],
            "{:#}",
            r.to_json()
        );
        assert!(matches!(
            r.error(CheckId::Anchors),
            Some(EvidenceError::Dependency(CheckId::HclUserData))
        ));
        // A report requested with the anchor digest in the binding binds them.
        let user_data = binding::report_data(&BindingInputs {
            nonce: &NONCE,
            ak_public_hash: binding::ak_public_hash(&f.ak_public),
            spki_hash: binding::spki_hash(&b.session_spki),
            anchor_digest: Some(anchors.digest()),
            version: b.binding_version(),
        })
        .unwrap();
        let mut b = with_report(hcl_report(
            &f.body,
            &f.rsa.0,
            &f.rsa.1,
            Some(&user_data),
            NV_LEN,
        ));
        b.anchors = Some(anchors);
        let r = verify_with(&b, &policy);
        assert!(r.valid(), "{:#}", r.to_json());
        assert!(matches!(r.outcome(CheckId::Anchors), Some(Outcome::Pass)));
    }

    #[test]
    fn an_inclusion_proof_on_an_hcl_quote_fails_report_data() {
        let mut b = fixture().bundle.clone();
        b.tdx.as_mut().unwrap().inclusion = Some(TdxInclusionProof {
            index: 0,
            size: 1,
            path: vec![],
        });
        let r = verify(&b);
        assert!(matches!(
            failure(&r, CheckId::ReportData),
            EvidenceError::HclInclusionProof
        ));
    }

    #[test]
    fn a_policy_requiring_the_hcl_report_rejects_a_bundle_without_one() {
        let mut b = fixture().bundle.clone();
        b.tpm.as_mut().unwrap().hcl_report = None;
        let r = verify(&b);
        assert!(matches!(
            r.outcome(CheckId::HclReport),
            Some(Outcome::Skipped(_))
        ));
        assert!(
            r.failed().contains(&CheckId::HclReport),
            "{:#}",
            r.to_json()
        );
        // Without the report the quote's REPORTDATA (the HCL's) is not locus's binding either.
        assert!(matches!(
            r.error(CheckId::ReportData),
            Some(EvidenceError::ReportDataMismatch { .. })
        ));
    }

    #[test]
    fn the_responder_bundles_what_the_hcl_wrote_and_the_verifier_names_the_fault() {
        // End to end on one vTPM: the HCL's report names another AK, then a stale report.
        let f = fixture();
        let az = AzureVtpm::start();
        let (_, spki) = session_key();
        let (n, e) = az.rsa();
        // The emulated HCL keeps what was provisioned, so no report made before a collection
        // carries its binding value (binding v2 covers the timings measured during it): the
        // report naming another AK fails `hcl_user_data` as well.
        let user_data = binding_value(&NONCE, &az.ak_public, &spki, BindingVersion::V1);
        let mut wrong_n = n.clone();
        wrong_n[7] ^= 0x40;
        let cases = [
            (
                hcl_report(&f.body, &wrong_n, &e, Some(&user_data), NV_LEN),
                vec![CheckId::AkHash, CheckId::HclUserData],
            ),
            (
                hcl_report(
                    &f.body,
                    &n,
                    &e,
                    Some(&binding_value(
                        &[3; 32],
                        &az.ak_public,
                        &spki,
                        BindingVersion::V1,
                    )),
                    NV_LEN,
                ),
                vec![CheckId::HclUserData],
            ),
        ];
        // One connection throughout: each collection reads the report the HCL wrote last.
        az.provision(&cases[0].0);
        let vtpm = az.vtpm(AkSource::AzureHcl).unwrap();
        for (report, failed) in cases {
            az.provision(&report);
            let b = collect(&vtpm, &f.lab, &NONCE).unwrap();
            assert_eq!(b.tpm.as_ref().unwrap().hcl_report.as_ref(), Some(&report));
            assert_eq!(b.tpm.as_ref().unwrap().ak_public, az.ak_public);
            let r = verify_with(&b, &policy(&f.lab, &[]));
            assert_eq!(r.failed(), failed, "{:#}", r.to_json());
        }
        // A report too short to hold a TDREPORT: no TD quote can be asked for.
        az.provision(&[0x48; 200]);
        assert!(matches!(
            collect(&vtpm, &f.lab, &NONCE),
            Err(CollectError::HclReportMalformed { len: 200 })
        ));
    }

    #[test]
    fn the_azure_ak_source_requires_the_report_index_and_the_hcl_ak() {
        let tpm = Swtpm::start(SwtpmOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(&tpm);
        c.ak = AkSource::AzureHcl;
        let err = Vtpm::open(c.clone()).unwrap_err();
        assert!(
            matches!(&err, VtpmError::Connect { detail, .. } if detail.contains("0x01400001")),
            "{err}"
        );
        // Auto on a vTPM without the index: the responder's own AK, no HCL report.
        let own = Vtpm::open(config(&tpm)).unwrap();
        assert_eq!(own.hcl_report([0; 64]).unwrap(), None);
        drop(own);
        // The report index alone is not enough: the HCL's AK must be at 0x81000003.
        nv_write(&tpm, AZURE_HCL_REPORT_NV, &[0; 64], dir.path());
        let err = Vtpm::open(c).unwrap_err();
        assert!(
            matches!(&err, VtpmError::Connect { detail, .. } if detail.contains("0x81000003")),
            "{err}"
        );
        let err = Vtpm::open(config(&tpm)).unwrap_err();
        assert!(matches!(err, VtpmError::Connect { .. }), "{err}");
    }
}
