//! Inclusion proofs for coalesced quotes: one TDX quote whose REPORTDATA is the Merkle root of
//! several requests' 64-byte binding values (the responder's `tdx::coalesce`). The tree is
//! [`locus_proto::merkle`], shared with the responder that builds it.

pub use locus_proto::merkle::InclusionProof;

/// The REPORTDATA a quote must carry for `value` to be included by `proof`, or `None` if the
/// proof is malformed (index out of range, wrong path length).
pub fn coalesced_report_data(value: &[u8; 64], proof: &InclusionProof) -> Option<[u8; 64]> {
    locus_proto::merkle::root_from_proof(value, proof)
}
