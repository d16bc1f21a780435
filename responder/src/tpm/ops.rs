//! The commands the vTPM thread runs and its replies.
#![cfg_attr(
    not(feature = "vtpm"),
    expect(
        dead_code,
        reason = "without the vtpm feature no thread runs the commands"
    )
)]

use locus_proto::evidence::EkCert;
use locus_proto::hcl::USER_DATA_LEN;

use super::{ChainLink, CheapRtt, EkKind, VtpmQuote};

#[derive(Debug)]
pub(crate) enum Op {
    AkPublic,
    AkCert,
    HclReport {
        user_data: [u8; USER_DATA_LEN],
    },
    Quote {
        qualifying_data: Vec<u8>,
        pcrs: Vec<u8>,
    },
    CheapRtt {
        samples: u32,
    },
    Chain {
        nonce: Vec<u8>,
        secret: [u8; locus_proto::binding::CHAIN_SECRET_LEN],
        first_previous: Vec<u8>,
        len: u32,
        pcrs: Vec<u8>,
    },
    EkCerts {
        indices: Vec<u32>,
    },
    Extend {
        index: u8,
        sha256: [u8; 32],
    },
    EkPublic {
        kind: EkKind,
    },
    ActivateCredential {
        kind: EkKind,
        id_object: Vec<u8>,
        encrypted_secret: Vec<u8>,
    },
}

#[derive(Debug)]
pub(crate) enum Reply {
    AkPublic(Vec<u8>),
    AkCert(Option<Vec<u8>>),
    HclReport(Option<Vec<u8>>),
    Quote(VtpmQuote),
    CheapRtt(CheapRtt),
    Chain(Vec<ChainLink>),
    EkCerts(Vec<EkCert>),
    EkPublic(Vec<u8>),
    Activated(Vec<u8>),
    Done,
}
