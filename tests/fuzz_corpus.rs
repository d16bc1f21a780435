//! Replays the fuzz seed corpus (`fuzz/seeds/TARGET/*`) through the fuzz targets' own entry
//! points (`fuzz/src/entries.rs`), so CI checks them on stable without libFuzzer; plus a
//! deterministic sweep of every one-byte truncation and bit flip of each seed.

#[path = "../fuzz/src/entries.rs"]
#[allow(
    unreachable_pub,
    reason = "the fuzz crate's public entry points, compiled into this test"
)]
mod entries;

use std::path::Path;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn every_target_has_seeds_and_survives_them_and_their_mutations() {
    for (name, run) in entries::TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "no seeds for {name}");
        for (path, bytes) in &seeds {
            run(bytes);
            // Cheap, deterministic neighbours: prefixes and single bit flips (bounded).
            for n in (0..bytes.len()).step_by((bytes.len() / 64).max(1)) {
                run(&bytes[..n]);
            }
            for i in (0..bytes.len()).step_by((bytes.len() / 64).max(1)) {
                let mut b = bytes.clone();
                b[i] ^= 1 << (i % 8);
                run(&b);
            }
            let _ = path;
        }
    }
}

/// The UDP echo script seed reaches every outcome of the responder's session table.
#[test]
fn udp_script_seed_reaches_every_outcome() {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/datagrams/udp-script.bin"),
    )
    .unwrap();
    let counts = entries::udp_script(&bytes);
    assert_eq!(
        counts,
        locus_proto::udp_echo::table::TableCounts {
            registered: 1,
            evicted: 0,
            expired: 1,
            answered: 7,
            malformed: 0,
            unknown_session: 3,
            wrong_peer: 1,
            bad_mac: 1,
            replayed: 19,
            rate_limited: 1,
        }
    );
}

/// Writes the seed corpus: messages of every kind, a lab bundle (lab TDX, swtpm vTPM, lab boot
/// logs), its event logs and TPM structures, and the policy TOML examples. Run it when a
/// format changes: `cargo test --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand when a format changes"]
fn regenerate_seed_corpus() {
    use locus_proto::anchor::AnchorReport;
    use locus_proto::evidence::SealedNonce;
    use locus_proto::frame::{encode, MessageKind};
    use locus_proto::messages::*;
    use locus_proto::transcript::Transcript;
    use locus_proto::{EchoAnswer, EchoChallenge};
    use locus_responder::evidence::collect_blocking;
    use locus_responder::session_key::SessionKey;
    use locus_responder::tdx::lab::LabTdx;
    use locus_responder::tdx::TdxQuoter;
    use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
    use locus_responder::tpm::{Vtpm, VtpmConfig};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };

    let tmp = tempfile::tempdir().unwrap();
    let boot = locus_lab::boot::write_logs(tmp.path()).unwrap();
    let swtpm = Swtpm::start(SwtpmOptions {
        create_ek_cert: true,
        ..SwtpmOptions::default()
    })
    .unwrap();
    let vtpm = Vtpm::open(VtpmConfig::new(swtpm.tcti())).unwrap();
    locus_lab::boot::measure_into(&vtpm).unwrap();
    let mut opts = locus_responder::tdx::lab::LabOptions::at(1_800_000_000);
    opts.measurements.rtmr = boot.rtmrs;
    let tdx = LabTdx::generate_with(&opts).unwrap();
    let key = SessionKey::generate().unwrap();
    let nonce = [7u8; 32];
    let ((tpm, td, timings), _) = collect_blocking(
        &nonce,
        key.spki_der(),
        Some(&vtpm),
        Some(tdx.quoter().as_ref() as &dyn TdxQuoter),
        &boot.logs,
        Vec::new(),
        None,
    )
    .unwrap();
    let mut t = Transcript::new();
    t.record(0, &nonce);
    let bundle = locus_proto::evidence::EvidenceBundle {
        version: locus_proto::evidence::BUNDLE_VERSION,
        nonce: nonce.to_vec(),
        nonce_issuer: Some("fuzz".into()),
        session_spki: key.spki_der().to_vec(),
        transcript: t.sign(key.signing_key()),
        tdx: td,
        tpm: tpm.clone(),
        timings,
        anchors: Some(AnchorReport::new(
            &nonce,
            locus_proto::anchor::TSC_CLOCKSOURCE,
        )),
    };
    put("bundle", "lab-tdx-vtpm.cbor", &bundle.to_cbor());

    let tpm = tpm.unwrap();
    put("tpm_attest", "quote-attest.bin", &tpm.attest);
    put("tpm_attest", "quote-signature.bin", &tpm.signature);
    put("tpm_attest", "ak-public.bin", &tpm.ak_public);
    for (i, path) in [&boot.logs.tcg, &boot.logs.ccel_data].iter().enumerate() {
        let bytes = std::fs::read(path.as_ref().unwrap()).unwrap();
        put(
            "event_log",
            &format!("lab-{}.bin", ["tcg", "ccel"][i]),
            &bytes,
        );
    }
    // A batch member's report (version 3): the proof decodes and encodes with the report.
    let leaves = [
        locus_proto::anchor::batch_leaf(&nonce),
        locus_proto::anchor::batch_leaf(&[0x5a; 32]),
    ];
    let (root, paths) = locus_proto::merkle::batch_root(&leaves).unwrap();
    put(
        "anchor_report",
        "batched.cbor",
        &locus_proto::cbor::encode(&AnchorReport::batch_member(
            &AnchorReport::new(&[], locus_proto::anchor::TSC_CLOCKSOURCE),
            &nonce,
            &root,
            locus_proto::merkle::InclusionProof {
                index: 0,
                size: 2,
                path: paths[0].clone(),
            },
        )),
    );
    put(
        "anchor_report",
        "empty.cbor",
        &locus_proto::cbor::encode(&AnchorReport::new(
            &nonce,
            locus_proto::anchor::TSC_CLOCKSOURCE,
        )),
    );

    let request = EvidenceRequest {
        nonce: nonce.to_vec(),
        include: Include {
            tdx: true,
            tpm: true,
            anchors: vec!["fra".into(), "ams".into()],
        },
        issuer: Some("fuzz".into()),
        sealed: None,
        auth: None,
    };
    let sealed = EvidenceRequest {
        nonce: Vec::new(),
        sealed: Some(SealedNonce {
            ek_nv_index: 0x01c0_0002,
            id_object: vec![1; 68],
            encrypted_secret: vec![2; 256],
        }),
        ..request.clone()
    };
    let signed = EvidenceRequest {
        auth: Some(RequestAuth {
            public_key: vec![3; 32],
            signature: vec![4; 64],
        }),
        ..request.clone()
    };
    put(
        "frames",
        "evidence-request.bin",
        &encode(MessageKind::EvidenceRequest, &request),
    );
    put(
        "frames",
        "evidence-request-sealed.bin",
        &encode(MessageKind::EvidenceRequest, &sealed),
    );
    put(
        "frames",
        "evidence-request-signed.bin",
        &encode(MessageKind::EvidenceRequest, &signed),
    );
    put(
        "frames",
        "evidence-response.bin",
        &encode(MessageKind::EvidenceResponse, &EvidenceResponse { bundle }),
    );
    put(
        "frames",
        "keys-request.bin",
        &encode(MessageKind::KeysRequest, &KeysRequest::default()),
    );
    put(
        "frames",
        "keys-response.bin",
        &encode(
            MessageKind::KeysResponse,
            &KeysResponse {
                ak_public: tpm.ak_public.clone(),
                ek_certs: vtpm.ek_certs().unwrap(),
            },
        ),
    );
    put(
        "frames",
        "transcript-request.bin",
        &encode(MessageKind::TranscriptRequest, &TranscriptRequest {}),
    );
    put(
        "frames",
        "transcript-response.bin",
        &encode(
            MessageKind::TranscriptResponse,
            &TranscriptResponse {
                transcript: t.sign(key.signing_key()),
                session_spki: key.spki_der().to_vec(),
            },
        ),
    );
    put(
        "frames",
        "hello-request.bin",
        &encode(
            MessageKind::HelloRequest,
            &HelloRequest {
                auth: RequestAuth {
                    public_key: vec![3; 32],
                    signature: vec![4; 64],
                },
            },
        ),
    );
    put(
        "frames",
        "hello-response.bin",
        &encode(MessageKind::HelloResponse, &HelloResponse {}),
    );
    put(
        "frames",
        "error.bin",
        &encode(
            MessageKind::Error,
            &ErrorMessage {
                code: codes::BUSY,
                message: "busy".into(),
            },
        ),
    );
    put(
        "datagrams",
        "challenge.bin",
        &EchoChallenge { seq: 1, nonce }.encode(),
    );
    put(
        "datagrams",
        "answer.bin",
        &EchoAnswer {
            seq: 1,
            nonce,
            inside_ns: 1200,
            arrival: 0,
        }
        .encode(),
    );
    {
        use locus_proto::udp_echo::{EchoKeys, UdpAnswer, UdpChallenge};
        // The key `entries::datagrams` checks UDP echo datagrams under.
        let keys = EchoKeys::from_exporter(&[7; 64]);
        let session = 0x0123_4567_89ab_cdef;
        put(
            "datagrams",
            "udp-challenge.bin",
            &UdpChallenge {
                session,
                counter: 1,
                nonce: [9; 32],
            }
            .encode(&keys),
        );
        put(
            "datagrams",
            "udp-answer.bin",
            &UdpAnswer {
                session,
                counter: 1,
                inside_ns: 1200,
                arrival: 0,
            }
            .encode(&keys, &[0; 32]),
        );
        // A script of `entries::udp_script`, step by step: `(op, arg)`, op = datagram | clock
        // steps << 2 | 0x80 for a counter relative to one past the newest.
        let rel = |d: i64| d as u64;
        let script: &[(u8, u64)] = &[
            (0, 1),                  // new
            (0, 1),                  // replayed
            (0x80, rel(-2)),         // 0: new, out of order
            (1, 2),                  // from another address
            (3, 2),                  // bad MAC
            (2, 2),                  // unknown session
            (0, 300),                // new, 1 leaves the window
            (0, 1),                  // too old
            (0x80, rel(-256)),       // 45: the window's last slot, new
            (0x80, rel(-257)),       // 44: just past it, too old
            (0, u64::MAX - 1),       // new
            (0, u64::MAX),           // no successor: refused
            (0x80, 0),               // u64::MAX again, relative
            (0x80, rel(-3)),         // new, over the burst of 5: rate-limited
            (0x80, rel(-3)),         // replayed (a rate-limited counter is spent)
            (31 << 2, u64::MAX - 4), // 0.26 s later: answered
        ];
        let mut bytes = Vec::new();
        for &(op, arg) in script {
            bytes.push(op);
            bytes.extend_from_slice(&arg.to_be_bytes());
        }
        // Answered, replayed, then past the session's lifetime (4 s): expired, then unknown.
        for _ in 0..16 {
            bytes.push(31 << 2);
            bytes.extend_from_slice(&(u64::MAX - 5).to_be_bytes());
        }
        put("datagrams", "udp-script.bin", &bytes);
        put(
            "frames",
            "udp-echo-request.bin",
            &encode(MessageKind::UdpEchoRequest, &UdpEchoRequest {}),
        );
        put(
            "frames",
            "udp-echo-response.bin",
            &encode(
                MessageKind::UdpEchoResponse,
                &UdpEchoResponse {
                    session,
                    port: 4434,
                    lifetime_s: 3600,
                },
            ),
        );
    }
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    put(
        "policy_toml",
        "policy.example.toml",
        &std::fs::read(config.join("policy.example.toml")).unwrap(),
    );
    put(
        "policy_toml",
        "evidence-policy.toml",
        bundle_policy_example().as_bytes(),
    );
}

/// An evidence policy file as `locus policy init` writes one.
fn bundle_policy_example() -> String {
    locus_analysis::verify::bundle::PolicyFile::lab(
        "ek-root.pem",
        "root.der",
        "collateral.json",
        "fuzz",
    )
    .to_toml()
}
