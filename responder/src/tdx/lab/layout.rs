//! Byte layout of a TDX quote v4 (Intel TDX DCAP Quoting Library API, "Quote Format"), built
//! field by field: header, TD report body, and the ECDSA signature data with the QE report
//! certification data (QE report, its PCK signature, QE auth data, PCK chain).

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

pub(super) const HEADER_LEN: usize = 48;
pub(super) const BODY_LEN: usize = 584;
/// REPORTDATA lies at the end of the TD report body.
const REPORT_DATA_IN_BODY: usize = 520;
/// Intel's QE vendor ID; verifiers (dcap-qvl, Intel QVL) require it.
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9, 0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07,
];
/// QE auth data as Intel's TD QE emits it: bytes 0..32.
const QE_AUTH_DATA: [u8; 32] = {
    let mut a = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        a[i] = i as u8;
        i += 1;
    }
    a
};

/// What the TD report body says about the TD (lab values, chosen by the lab operator).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabMeasurements {
    #[serde(with = "hex_array")]
    pub mr_td: [u8; 48],
    #[serde(with = "hex_rtmr")]
    pub rtmr: [[u8; 48]; 4],
}

impl Default for LabMeasurements {
    /// Recognisable constants: SHA-384 is not needed for a lab; the bytes spell their name.
    fn default() -> Self {
        let fill = |tag: u8| [tag; 48];
        Self {
            mr_td: fill(0x7D),
            rtmr: [fill(0xA0), fill(0xA1), fill(0xA2), fill(0xA3)],
        }
    }
}

pub(super) fn header(qe_svn: u16, pce_svn: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..2].copy_from_slice(&4u16.to_le_bytes());
    h[2..4].copy_from_slice(&2u16.to_le_bytes()); // ECDSA-256 with P-256
    h[4..8].copy_from_slice(&0x81u32.to_le_bytes()); // TDX
    h[8..10].copy_from_slice(&qe_svn.to_le_bytes());
    h[10..12].copy_from_slice(&pce_svn.to_le_bytes());
    h[12..28].copy_from_slice(&INTEL_QE_VENDOR_ID);
    h[28..44].copy_from_slice(b"locus-lab-td-qe\0"); // user data: QE identifier
    h
}

/// TD report body (TDX 1.0, 584 bytes) with zero REPORTDATA.
pub(super) fn td_body(
    tee_tcb_svn: [u8; 16],
    td_attributes: u64,
    m: &LabMeasurements,
) -> [u8; BODY_LEN] {
    let mut b = [0u8; BODY_LEN];
    b[0..16].copy_from_slice(&tee_tcb_svn);
    b[16..64].copy_from_slice(&[0x5E; 48]); // MRSEAM
                                            // MRSIGNERSEAM (64..112) and SEAMATTRIBUTES (112..120) stay zero: Intel's module.
    b[120..128].copy_from_slice(&td_attributes.to_le_bytes());
    b[128..136].copy_from_slice(&0x0006_02E7u64.to_le_bytes()); // XFAM
    b[136..184].copy_from_slice(&m.mr_td);
    // MRCONFIGID, MROWNER, MROWNERCONFIG (184..328) stay zero.
    for (i, rtmr) in m.rtmr.iter().enumerate() {
        let at = 328 + 48 * i;
        b[at..at + 48].copy_from_slice(rtmr);
    }
    b
}

/// The QE's SGX report (384 bytes) binding the attestation key: REPORTDATA =
/// SHA-256(AK ‖ QE auth data) ‖ 32 zero bytes.
pub(super) fn qe_report(
    cpu_svn: [u8; 16],
    qe_mrsigner: [u8; 32],
    qe_isv_svn: u16,
    ak_raw: &[u8; 64],
) -> [u8; 384] {
    let mut r = [0u8; 384];
    r[0..16].copy_from_slice(&cpu_svn);
    // MISCSELECT 0; ATTRIBUTES: INIT | MODE64BIT, not DEBUG (as Intel's QE identity expects).
    r[48] = 0x11;
    r[64..96].copy_from_slice(&[0xE0; 32]); // MRENCLAVE
    r[128..160].copy_from_slice(&qe_mrsigner);
    r[256..258].copy_from_slice(&2u16.to_le_bytes()); // ISVPRODID of the TD QE
    r[258..260].copy_from_slice(&qe_isv_svn.to_le_bytes());
    let mut h = Sha256::new();
    h.update(ak_raw);
    h.update(QE_AUTH_DATA);
    r[320..352].copy_from_slice(&h.finalize());
    r
}

/// Certification data of type 6 (QE report certification data), length-prefixed, containing
/// the QE report, its signature by the PCK key, QE auth data and the PCK chain (type 5).
pub(super) fn qe_certification_data(
    qe_report: &[u8; 384],
    pck_key: &SigningKey,
    pck_chain_pem: &str,
) -> Vec<u8> {
    let sig: Signature = pck_key.sign(qe_report);
    let mut inner = Vec::with_capacity(384 + 64 + 40 + pck_chain_pem.len());
    inner.extend_from_slice(qe_report);
    inner.extend_from_slice(&sig.to_bytes());
    inner.extend_from_slice(&(QE_AUTH_DATA.len() as u16).to_le_bytes());
    inner.extend_from_slice(&QE_AUTH_DATA);
    inner.extend_from_slice(&5u16.to_le_bytes());
    inner.extend_from_slice(&(pck_chain_pem.len() as u32).to_le_bytes());
    inner.extend_from_slice(pck_chain_pem.as_bytes());
    let mut out = Vec::with_capacity(inner.len() + 6);
    out.extend_from_slice(&6u16.to_le_bytes());
    out.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    out.extend_from_slice(&inner);
    out
}

/// The raw (x ‖ y) P-256 public key, as quotes carry the attestation key.
pub(super) fn raw_public(key: &SigningKey) -> [u8; 64] {
    let point = key.verifying_key().to_encoded_point(false);
    let mut out = [0u8; 64];
    // An uncompressed SEC1 point is 0x04 ‖ x ‖ y.
    out.copy_from_slice(&point.as_bytes()[1..65]);
    out
}

/// A complete quote: header ‖ body (with `report_data`) ‖ signature data, signed by `ak`.
pub(super) fn assemble(
    header: &[u8; HEADER_LEN],
    body: &[u8; BODY_LEN],
    report_data: &[u8; 64],
    ak: &SigningKey,
    ak_raw: &[u8; 64],
    cert_data: &[u8],
) -> Vec<u8> {
    let sig_len = 64 + 64 + cert_data.len();
    let mut q = Vec::with_capacity(HEADER_LEN + BODY_LEN + 4 + sig_len);
    q.extend_from_slice(header);
    q.extend_from_slice(body);
    q[HEADER_LEN + REPORT_DATA_IN_BODY..].copy_from_slice(report_data);
    let sig: Signature = ak.sign(&q);
    q.extend_from_slice(&(sig_len as u32).to_le_bytes());
    q.extend_from_slice(&sig.to_bytes());
    q.extend_from_slice(ak_raw);
    q.extend_from_slice(cert_data);
    q
}

mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 48], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 48], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 48 bytes"))
    }
}

mod hex_rtmr {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[[u8; 48]; 4], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[[u8; 48]; 4], D::Error> {
        let v = <[String; 4]>::deserialize(d)?;
        let mut out = [[0u8; 48]; 4];
        for (o, s) in out.iter_mut().zip(v) {
            let b = hex::decode(s).map_err(serde::de::Error::custom)?;
            *o = b
                .try_into()
                .map_err(|_| serde::de::Error::custom("expected 48 bytes"))?;
        }
        Ok(out)
    }
}
