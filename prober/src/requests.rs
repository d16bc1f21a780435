//! Requests on QUIC streams: evidence and the signed transcript.

use locus_proto::credential::seal_to_first_ek;
use locus_proto::evidence::EvidenceBundle;
use locus_proto::frame::{self, Frame, FrameError, MessageKind, HEADER_LEN, MAX_BODY_LEN};
use locus_proto::messages::{
    codes, ErrorMessage, EvidenceRequest, EvidenceResponse, HelloRequest, HelloResponse, Include,
    KeysRequest, KeysResponse, RequestAuth, TranscriptRequest, TranscriptResponse,
};
use locus_proto::{request_auth, Nonce};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::Target;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("stream: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("sending the request: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("reading the reply: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("bad reply: {0}")]
    Frame(#[from] FrameError),
    #[error("the responder refused the request (code {code}): {message}")]
    Refused { code: u16, message: String },
    /// The responder is at its evidence capacity or this peer's request rate
    /// ([`codes::BUSY`], [`codes::RATE_LIMITED`]): nothing was done; ask again later.
    #[error("the responder is busy (code {code}): {message}")]
    Busy { code: u16, message: String },
    /// The responder answers evidence only to pinned probers and refused this one
    /// ([`codes::UNAUTHORIZED`]): configure the prober's `key_file` with a key the responder's
    /// `[access] probers` lists.
    #[error("the responder refused this prober's identity: {message}")]
    Unauthorized { message: String },
    #[error("the reply was bound to another nonce")]
    WrongNonce,
    /// The connection's TLS exporter could not be read (never on an established TLS 1.3
    /// connection): the request cannot be signed.
    #[error("the connection has no TLS exporter to sign the request over")]
    NoExporter,
}

/// Asks for fresh evidence bound to `nonce`.
pub async fn request_evidence(
    target: &Target,
    nonce: &Nonce,
    include: Include,
) -> Result<EvidenceBundle, RequestError> {
    request_evidence_from(target, nonce, include, None).await
}

/// Asks for fresh evidence bound to `nonce`, naming the verifier that issued it.
pub async fn request_evidence_from(
    target: &Target,
    nonce: &Nonce,
    include: Include,
    issuer: Option<String>,
) -> Result<EvidenceBundle, RequestError> {
    let req = EvidenceRequest {
        nonce: nonce.to_vec(),
        include,
        issuer,
        sealed: None,
        auth: None,
    };
    send_evidence_request(target, nonce, &req).await
}

/// Asks for fresh evidence with `nonce` sealed to the vTPM's certified EK for its AK
/// (credential activation, `docs/binding.md`): first the responder's keys, then the evidence
/// request carrying the nonce only inside the credential. Falls back to a clear nonce when no
/// vTPM part is asked for, the responder names no keys, or none of its EK certificates is of a
/// kind a nonce can be sealed to; the verifier's `ak_ek_binding` check then decides.
pub async fn request_evidence_sealed(
    target: &Target,
    nonce: &Nonce,
    include: Include,
    issuer: Option<String>,
) -> Result<EvidenceBundle, RequestError> {
    Ok(
        request_evidence_sealed_timed(target, nonce, include, issuer)
            .await?
            .0,
    )
}

/// [`request_evidence_sealed`], with the round trip of the evidence request itself (request
/// written → bundle read): the keys request and the sealing before it are not in it, since
/// the TD's own evidence time (`evidence_ns`) does not cover them and the verdict compares the
/// two.
pub async fn request_evidence_sealed_timed(
    target: &Target,
    nonce: &Nonce,
    include: Include,
    issuer: Option<String>,
) -> Result<(EvidenceBundle, std::time::Duration), RequestError> {
    let sealed = if include.tpm {
        match request_keys(target).await {
            Ok(keys) => seal_to(&keys, nonce),
            Err(e @ (RequestError::Connection(_) | RequestError::Write(_))) => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "no vTPM keys to seal the nonce to");
                None
            }
        }
    } else {
        None
    };
    let req = EvidenceRequest {
        nonce: if sealed.is_some() {
            Vec::new()
        } else {
            nonce.to_vec()
        },
        include,
        issuer,
        sealed,
        auth: None,
    };
    let t0 = std::time::Instant::now();
    let bundle = send_evidence_request(target, nonce, &req).await?;
    Ok((bundle, t0.elapsed()))
}

/// Seals `nonce` to the first EK certificate of a known kind (RSA-2048 or ECC P-256) for the
/// stated AK.
pub fn seal_to(keys: &KeysResponse, nonce: &Nonce) -> Option<locus_proto::evidence::SealedNonce> {
    seal_to_first_ek(&keys.ak_public, &keys.ek_certs, nonce)
}

/// Asks for the vTPM's AK and EK certificates.
pub async fn request_keys(target: &Target) -> Result<KeysResponse, RequestError> {
    let mut req = KeysRequest::default();
    // A pinned responder answers keys only to a signed request, like evidence.
    if let Some(signer) = &target.signer {
        let exporter = exporter(target)?;
        req.auth = Some(RequestAuth {
            public_key: signer.public_key().to_vec(),
            signature: signer
                .sign(&request_auth::signed_keys_message(&exporter))
                .to_vec(),
        });
    }
    exchange(
        target,
        MessageKind::KeysRequest,
        &req,
        MessageKind::KeysResponse,
    )
    .await
}

/// Proves this connection's signing key to the responder right after the handshake (a signed
/// hello, bound to the connection like a signed request): a responder with `[access] evidence
/// = "pinned"` then never evicts the connection to make room at its connection cap (REVIEW3
/// A). Without a signer there is nothing to prove and nothing is sent. A responder that
/// predates the hello refuses it (`Refused`, unknown message): harmless, the first signed
/// request proves the key there.
pub async fn prove_key(target: &Target) -> Result<(), RequestError> {
    let Some(signer) = &target.signer else {
        return Ok(());
    };
    let exporter = exporter(target)?;
    let req = HelloRequest {
        auth: RequestAuth {
            public_key: signer.public_key().to_vec(),
            signature: signer
                .sign(&request_auth::signed_hello_message(&exporter))
                .to_vec(),
        },
    };
    let _: HelloResponse = exchange(
        target,
        MessageKind::HelloRequest,
        &req,
        MessageKind::HelloResponse,
    )
    .await?;
    Ok(())
}

fn exporter(target: &Target) -> Result<[u8; request_auth::EXPORTER_LEN], RequestError> {
    let mut exporter = [0u8; request_auth::EXPORTER_LEN];
    target
        .conn
        .export_keying_material(&mut exporter, request_auth::EXPORTER_LABEL, b"")
        .map_err(|_| RequestError::NoExporter)?;
    Ok(exporter)
}

async fn send_evidence_request(
    target: &Target,
    nonce: &Nonce,
    req: &EvidenceRequest,
) -> Result<EvidenceBundle, RequestError> {
    let signed;
    let req = match &target.signer {
        Some(signer) => {
            signed = sign_request(target, signer.as_ref(), req)?;
            &signed
        }
        None => req,
    };
    let resp: EvidenceResponse = exchange(
        target,
        MessageKind::EvidenceRequest,
        req,
        MessageKind::EvidenceResponse,
    )
    .await?;
    if resp.bundle.nonce != nonce {
        return Err(RequestError::WrongNonce);
    }
    Ok(resp.bundle)
}

/// Signs evidence requests for responders that answer only pinned probers
/// (`[access] evidence = "pinned"`): the prober's identity key.
pub trait RequestSigner: Send + Sync + std::fmt::Debug {
    /// The Ed25519 public key the responder pins.
    fn public_key(&self) -> [u8; request_auth::PUBLIC_KEY_LEN];
    /// An Ed25519 signature over `message`.
    fn sign(&self, message: &[u8]) -> [u8; request_auth::SIGNATURE_LEN];
}

impl RequestSigner for crate::identity::ProberIdentity {
    fn public_key(&self) -> [u8; request_auth::PUBLIC_KEY_LEN] {
        crate::identity::ProberIdentity::public_key(self).to_bytes()
    }

    fn sign(&self, message: &[u8]) -> [u8; request_auth::SIGNATURE_LEN] {
        crate::identity::ProberIdentity::sign(self, message)
    }
}

/// `req` with its signature over this connection's exporter value
/// ([`request_auth::signed_message`]).
pub fn sign_request(
    target: &Target,
    signer: &dyn RequestSigner,
    req: &EvidenceRequest,
) -> Result<EvidenceRequest, RequestError> {
    let exporter = exporter(target)?;
    let mut signed = req.clone();
    signed.auth = Some(RequestAuth {
        public_key: signer.public_key().to_vec(),
        signature: signer
            .sign(&request_auth::signed_message(&exporter, req))
            .to_vec(),
    });
    Ok(signed)
}

/// Asks for the signed transcript of this connection so far.
pub async fn request_transcript(target: &Target) -> Result<TranscriptResponse, RequestError> {
    exchange(
        target,
        MessageKind::TranscriptRequest,
        &TranscriptRequest {},
        MessageKind::TranscriptResponse,
    )
    .await
}

/// Sends raw bytes as a request and returns the raw reply: for tests of bad input.
pub async fn exchange_raw(target: &Target, request: &[u8]) -> Result<Vec<u8>, RequestError> {
    let (mut send, mut recv) = target.conn.open_bi().await?;
    send.write_all(request).await?;
    let _ = send.finish();
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await?;
    let frame = Frame::decode_header(&header, MAX_BODY_LEN)?;
    let mut body = vec![0u8; frame.body_len as usize];
    recv.read_exact(&mut body).await?;
    let mut out = header.to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

pub(crate) async fn exchange<Req: Serialize, Resp: DeserializeOwned + Serialize>(
    target: &Target,
    kind: MessageKind,
    req: &Req,
    expected: MessageKind,
) -> Result<Resp, RequestError> {
    let reply = exchange_raw(target, &frame::encode(kind, req)).await?;
    let header = Frame::decode_header(&reply, MAX_BODY_LEN)?;
    if header.kind == MessageKind::Error {
        let e: ErrorMessage = frame::decode(&reply, MessageKind::Error, MAX_BODY_LEN)?;
        return Err(match e.code {
            codes::BUSY | codes::RATE_LIMITED => RequestError::Busy {
                code: e.code,
                message: e.message,
            },
            codes::UNAUTHORIZED => RequestError::Unauthorized { message: e.message },
            code => RequestError::Refused {
                code,
                message: e.message,
            },
        });
    }
    Ok(frame::decode(&reply, expected, MAX_BODY_LEN)?)
}
