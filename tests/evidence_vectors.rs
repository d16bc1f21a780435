//! Real evidence from clouds: the GCE TDX CCEL replays to its quote's RTMRs; the Azure vTPM
//! quote's TPMS_ATTEST parses with its nonce and a pcrDigest over its PCR values.

use locus_analysis::verify::eventlog;
use locus_analysis::verify::tpm::{self, ALG_SHA256};

const CCEL: &[u8] = include_bytes!("vectors/gce-tdx-ccel/ccel_data.dat");
const GCE_QUOTE: &[u8] = include_bytes!("vectors/gce-tdx-ccel/cos-113-tdx-quote.dat");
const AZURE_TPM_QUOTE: &str = include_str!("vectors/azure-tdx-vtpm/tpm-quote-v1.json");
const AZURE_HCL_REPORT: &[u8] = include_bytes!("vectors/azure-tdx-vtpm/hcl-report.bin");

/// base64url without padding (JWK fields).
fn b64url(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// RTMR n of a TDX quote v4: 48-byte header, RTMR0 at offset 328 of the TD report body.
fn quote_rtmr(n: usize) -> &'static [u8] {
    let at = 48 + 328 + 48 * n;
    &GCE_QUOTE[at..at + 48]
}

#[test]
fn the_gce_ccel_replays_to_the_quoted_rtmrs() {
    let log = eventlog::parse(CCEL).unwrap();
    assert_eq!(log.events.len(), 43);
    let rtmrs = log.replay_rtmrs();
    for (i, r) in rtmrs.iter().enumerate() {
        assert_eq!(&r[..], quote_rtmr(i), "RTMR{i}");
    }
}

#[test]
fn a_changed_ccel_event_no_longer_replays() {
    let mut log = eventlog::parse(CCEL).unwrap();
    let e = log
        .events
        .iter_mut()
        .find(|e| e.index == 2 && e.event_type != eventlog::EV_NO_ACTION)
        .unwrap();
    e.digests[0].1[0] ^= 1;
    assert_ne!(&log.replay_rtmrs()[1][..], quote_rtmr(1));
}

#[test]
fn every_prefix_of_the_ccel_parses_or_fails_without_panicking() {
    let end = 8 * 1024; // the events end well before the 0xFF fill
    for n in 0..end {
        let _ = eventlog::parse(&CCEL[..n]);
    }
}

#[test]
fn the_azure_vtpm_quote_parses_with_its_nonce_and_pcr_digest() {
    let v: serde_json::Value = serde_json::from_str(AZURE_TPM_QUOTE).unwrap();
    let attest = hex::decode(v["message"].as_str().unwrap()).unwrap();
    let q = tpm::parse_quote_attest(&attest).unwrap();
    assert_eq!(q.extra_data, b"challenge");
    assert_eq!(q.selections.len(), 1);
    assert_eq!(q.selections[0].hash_alg, ALG_SHA256);
    assert_eq!(q.selections[0].pcrs, (0..24).collect::<Vec<u8>>());
    let pcrs: Vec<Vec<u8>> = v["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| hex::decode(p.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        tpm::pcr_digest(pcrs.iter().map(Vec::as_slice)).to_vec(),
        q.pcr_digest
    );
    let mut tampered = pcrs.clone();
    tampered[7][0] ^= 1;
    assert_ne!(
        tpm::pcr_digest(tampered.iter().map(Vec::as_slice)).to_vec(),
        q.pcr_digest
    );
}

#[test]
fn the_azure_vtpm_quote_verifies_under_its_rsa_hcl_ak() {
    // The variable data starts with the JSON object; read exactly one value from there.
    let jwks: serde_json::Value = serde_json::Deserializer::from_slice(&AZURE_HCL_REPORT[0x4d4..])
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let ak = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "HCLAkPub")
        .unwrap();
    let n = b64url(ak["n"].as_str().unwrap());
    let e = b64url(ak["e"].as_str().unwrap());
    let v: serde_json::Value = serde_json::from_str(AZURE_TPM_QUOTE).unwrap();
    let attest = hex::decode(v["message"].as_str().unwrap()).unwrap();
    let sig = hex::decode(v["signature"].as_str().unwrap()).unwrap();
    tpm::verify_rsa_pkcs1_sha256(&n, &e, &attest, &sig).unwrap();

    let mut tampered = attest.clone();
    tampered[40] ^= 1;
    assert_eq!(
        tpm::verify_rsa_pkcs1_sha256(&n, &e, &tampered, &sig),
        Err(tpm::TpmError::SignatureMismatch)
    );
}
