//! Offline re-check of a recorded TLS 1.3 handshake: decrypt the server's handshake flight with
//! the recorded SERVER_HANDSHAKE_TRAFFIC_SECRET, rebuild the transcript from the recorded
//! ClientHello, and confirm that the CertificateVerify the responder reported signs exactly that
//! transcript (so the signature covers the nonce-derived ClientHello.random).
//!
//! RFC 8446: record layer §5, key schedule §7.1 (HKDF-Expand-Label), traffic keys §7.3,
//! CertificateVerify content §4.4.3, Finished §4.4.4. HelloRetryRequest is not supported (the
//! measuring client offers X25519, which every TLS 1.3 server accepts without a retry).

use ring::{aead, hkdf, hmac};
use sha2::{Digest, Sha256, Sha384};

use super::AnchorError;

const CONTENT_CCS: u8 = 20;
const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPDATA: u8 = 23;
const HS_CLIENT_HELLO: u8 = 1;
const HS_SERVER_HELLO: u8 = 2;
const HS_ENCRYPTED_EXTENSIONS: u8 = 8;
const HS_CERTIFICATE: u8 = 11;
const HS_CERTIFICATE_VERIFY: u8 = 15;
const HS_FINISHED: u8 = 20;
/// ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// What the decrypted handshake says, for comparison with the report.
#[derive(Debug)]
pub(crate) struct Rechecked {
    pub(crate) client_random: [u8; 32],
    pub(crate) cert_chain: Vec<Vec<u8>>,
    pub(crate) scheme: u16,
    pub(crate) signature: Vec<u8>,
    /// The content the CertificateVerify must sign, recomputed from the transcript.
    pub(crate) signed_message: Vec<u8>,
}

fn malformed(what: impl Into<String>) -> AnchorError {
    AnchorError::HandshakeMalformed {
        detail: what.into(),
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AnchorError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or_else(|| {
            malformed(format!("truncated {what}: need {n}, have {}", self.0.len()))
        })?;
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &str) -> Result<u8, AnchorError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, AnchorError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self, what: &str) -> Result<usize, AnchorError> {
        let b = self.take(3, what)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One TLS record: content type, 5-byte header (the AEAD's additional data), fragment.
type Record<'a> = (u8, &'a [u8], &'a [u8]);

/// Splits raw bytes into TLS records.
fn records(raw: &[u8]) -> Result<Vec<Record<'_>>, AnchorError> {
    let mut c = Cursor(raw);
    let mut out = Vec::new();
    while !c.is_empty() {
        let header = c.take(5, "record header")?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len > (1 << 14) + 256 {
            return Err(malformed(format!("record of {len} bytes")));
        }
        out.push((header[0], header, c.take(len, "record")?));
    }
    Ok(out)
}

/// Splits a handshake byte stream into whole messages `(type, full message bytes)`; a trailing
/// partial message is left out.
fn messages(stream: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 4 {
        let len = usize::from(rest[1]) << 16 | usize::from(rest[2]) << 8 | usize::from(rest[3]);
        let Some((msg, tail)) = rest.split_at_checked(4 + len) else {
            break;
        };
        out.push((msg[0], msg));
        rest = tail;
    }
    out
}

#[derive(Clone, Copy)]
struct Suite {
    aead: &'static aead::Algorithm,
    hkdf: hkdf::Algorithm,
    hmac: hmac::Algorithm,
    hash_len: usize,
}

fn suite(code: u16) -> Result<Suite, AnchorError> {
    match code {
        0x1301 => Ok(Suite {
            aead: &aead::AES_128_GCM,
            hkdf: hkdf::HKDF_SHA256,
            hmac: hmac::HMAC_SHA256,
            hash_len: 32,
        }),
        0x1302 => Ok(Suite {
            aead: &aead::AES_256_GCM,
            hkdf: hkdf::HKDF_SHA384,
            hmac: hmac::HMAC_SHA384,
            hash_len: 48,
        }),
        0x1303 => Ok(Suite {
            aead: &aead::CHACHA20_POLY1305,
            hkdf: hkdf::HKDF_SHA256,
            hmac: hmac::HMAC_SHA256,
            hash_len: 32,
        }),
        other => Err(AnchorError::UnsupportedCipherSuite { suite: other }),
    }
}

impl Suite {
    fn hash(&self, parts: &[&[u8]]) -> Vec<u8> {
        if self.hash_len == 48 {
            let mut h = Sha384::new();
            parts.iter().for_each(|p| h.update(p));
            h.finalize().to_vec()
        } else {
            let mut h = Sha256::new();
            parts.iter().for_each(|p| h.update(p));
            h.finalize().to_vec()
        }
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, "", len) of RFC 8446 §7.1.
fn expand_label(
    alg: hkdf::Algorithm,
    secret: &[u8],
    label: &[u8],
    len: usize,
) -> Result<Vec<u8>, AnchorError> {
    let full_label_len = 6 + label.len();
    let len16 = u16::try_from(len).map_err(|_| malformed("key length"))?;
    let info_len = [len16.to_be_bytes()[0], len16.to_be_bytes()[1]];
    let label_len = [u8::try_from(full_label_len).map_err(|_| malformed("label"))?];
    let info: [&[u8]; 5] = [&info_len, &label_len, b"tls13 ", label, &[0]];
    let prk = hkdf::Prk::new_less_safe(alg, secret);
    let okm = prk
        .expand(&info, Len(len))
        .map_err(|_| malformed("HKDF expand length"))?;
    let mut out = vec![0u8; len];
    okm.fill(&mut out)
        .map_err(|_| malformed("HKDF expand length"))?;
    Ok(out)
}

/// Re-checks the handshake; the caller compares the result with the report and checks the
/// signature with the verified leaf.
pub(crate) fn recheck(
    cipher_suite: u16,
    client_hello: &[u8],
    server_flight: &[u8],
    secret: &[u8],
) -> Result<Rechecked, AnchorError> {
    let s = suite(cipher_suite)?;
    if secret.len() != s.hash_len {
        return Err(malformed(format!(
            "handshake secret of {} bytes for a {}-byte hash",
            secret.len(),
            s.hash_len
        )));
    }

    // Client side: the first handshake message written must be the ClientHello.
    let mut ch_stream = Vec::new();
    for (ty, _, frag) in records(client_hello)? {
        if ty == CONTENT_HANDSHAKE {
            ch_stream.extend_from_slice(frag);
        }
    }
    let ch_msgs = messages(&ch_stream);
    let &(ty, ch) = ch_msgs.first().ok_or_else(|| malformed("no ClientHello"))?;
    if ty != HS_CLIENT_HELLO {
        return Err(malformed(format!("first client message has type {ty}")));
    }
    let client_random: [u8; 32] = ch
        .get(6..38)
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| malformed("ClientHello too short"))?;

    // Server side: plaintext ServerHello, then records protected under the handshake key.
    let key_bytes = expand_label(s.hkdf, secret, b"key", s.aead.key_len())?;
    let iv = expand_label(s.hkdf, secret, b"iv", aead::NONCE_LEN)?;
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(s.aead, &key_bytes).map_err(|_| malformed("AEAD key"))?,
    );
    let mut plain_stream = Vec::new();
    let mut protected_stream = Vec::new();
    let mut seq: u64 = 0;
    for (ty, header, frag) in records(server_flight)? {
        match ty {
            CONTENT_HANDSHAKE if protected_stream.is_empty() && seq == 0 => {
                plain_stream.extend_from_slice(frag)
            }
            CONTENT_CCS => {}
            CONTENT_APPDATA => {
                if messages(&protected_stream)
                    .iter()
                    .any(|(t, _)| *t == HS_FINISHED)
                {
                    break; // after the server Finished: application traffic keys
                }
                let mut nonce = [0u8; aead::NONCE_LEN];
                nonce.copy_from_slice(&iv);
                for (n, b) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                    *n ^= b;
                }
                seq += 1;
                let mut buf = frag.to_vec();
                let plain = key
                    .open_in_place(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::from(header),
                        &mut buf,
                    )
                    .map_err(|_| AnchorError::HandshakeDecrypt { record: seq - 1 })?;
                let end = plain
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or_else(|| malformed("empty inner plaintext"))?;
                match plain[end] {
                    CONTENT_HANDSHAKE => protected_stream.extend_from_slice(&plain[..end]),
                    CONTENT_ALERT => return Err(malformed("server sent an alert")),
                    other => return Err(malformed(format!("inner content type {other}"))),
                }
            }
            CONTENT_ALERT => return Err(malformed("server sent an alert")),
            other => {
                return Err(malformed(format!(
                    "record type {other} in the server flight"
                )))
            }
        }
    }

    let sh_msgs = messages(&plain_stream);
    let &(ty, sh) = sh_msgs.first().ok_or_else(|| malformed("no ServerHello"))?;
    if ty != HS_SERVER_HELLO {
        return Err(malformed(format!("first server message has type {ty}")));
    }
    if sh.get(6..38) == Some(&HRR_RANDOM[..]) {
        return Err(AnchorError::HelloRetryUnsupported);
    }
    let msgs = messages(&protected_stream);
    let find = |want: u8| -> Result<(usize, &[u8]), AnchorError> {
        msgs.iter()
            .position(|(t, _)| *t == want)
            .map(|i| (i, msgs[i].1))
            .ok_or_else(|| malformed(format!("no handshake message of type {want}")))
    };
    let (i_ee, ee) = find(HS_ENCRYPTED_EXTENSIONS)?;
    let (i_cert, cert) = find(HS_CERTIFICATE)?;
    let (i_cv, cv) = find(HS_CERTIFICATE_VERIFY)?;
    let (i_fin, fin) = find(HS_FINISHED)?;
    if !(i_ee == 0 && i_cert == 1 && i_cv == 2 && i_fin == 3) {
        return Err(malformed("server messages out of order"));
    }

    // Certificate (§4.4.2): context, then entries of cert and extensions.
    let mut c = Cursor(&cert[4..]);
    let ctx_len = usize::from(c.u8("certificate context")?);
    c.take(ctx_len, "certificate context")?;
    let list_len = c.u24("certificate list")?;
    let mut list = Cursor(c.take(list_len, "certificate list")?);
    let mut cert_chain = Vec::new();
    while !list.is_empty() {
        let n = list.u24("certificate")?;
        cert_chain.push(list.take(n, "certificate")?.to_vec());
        let e = usize::from(list.u16("certificate extensions")?);
        list.take(e, "certificate extensions")?;
    }

    // CertificateVerify (§4.4.3).
    let mut c = Cursor(&cv[4..]);
    let scheme = c.u16("signature scheme")?;
    let sig_len = usize::from(c.u16("signature")?);
    let signature = c.take(sig_len, "signature")?.to_vec();

    let transcript = s.hash(&[ch, sh, ee, cert]);
    let mut signed_message = vec![0x20u8; 64];
    signed_message.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
    signed_message.extend_from_slice(&transcript);

    // Finished (§4.4.4) proves the recorded secret is this handshake's.
    let finished_key = expand_label(s.hkdf, secret, b"finished", s.hash_len)?;
    let expected = hmac::sign(
        &hmac::Key::new(s.hmac, &finished_key),
        &s.hash(&[ch, sh, ee, cert, cv]),
    );
    if fin.get(4..) != Some(expected.as_ref()) {
        return Err(AnchorError::FinishedMismatch);
    }

    Ok(Rechecked {
        client_random,
        cert_chain,
        scheme,
        signature,
        signed_message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![ty, 3, 3];
        r.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn expand_label_matches_rfc8448() {
        // RFC 8448 §3 (simple 1-RTT handshake): server handshake traffic secret, and the
        // server handshake write key and iv derived from it.
        let secret =
            hex::decode("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
                .unwrap();
        let key = expand_label(hkdf::HKDF_SHA256, &secret, b"key", 16).unwrap();
        let iv = expand_label(hkdf::HKDF_SHA256, &secret, b"iv", 12).unwrap();
        assert_eq!(hex::encode(key), "3fce516009c21727d0f2e4e86ee403bc");
        assert_eq!(hex::encode(iv), "5d313eb2671276ee13000b30");
    }

    #[test]
    fn rejects_unknown_suites_and_wrong_secret_lengths() {
        assert_eq!(
            recheck(0x00ff, &[], &[], &[0; 32]).unwrap_err(),
            AnchorError::UnsupportedCipherSuite { suite: 0x00ff }
        );
        assert!(matches!(
            recheck(0x1301, &[], &[], &[0; 48]),
            Err(AnchorError::HandshakeMalformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_records_never_panic(
            hello in proptest::collection::vec(any::<u8>(), 0..200),
            body in proptest::collection::vec(any::<u8>(), 0..300),
            ty in prop_oneof![Just(20u8), Just(21), Just(22), Just(23), any::<u8>()],
            suite in prop_oneof![Just(0x1301u16), Just(0x1302), Just(0x1303)],
        ) {
            let secret = vec![7u8; if suite == 0x1302 { 48 } else { 32 }];
            let hello = record(22, &hello);
            let flight = [record(22, &body), record(ty, &body)].concat();
            prop_assert!(recheck(suite, &hello, &flight, &secret).is_err());
            prop_assert!(recheck(suite, &body, &hello, &secret).is_err());
        }
    }
}
