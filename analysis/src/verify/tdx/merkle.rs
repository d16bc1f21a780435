//! Inclusion proofs for coalesced quotes: one TDX quote whose REPORTDATA is the Merkle root of
//! several requests' 64-byte binding values (the responder's `tdx::coalesce`).
//!
//! Tree as RFC 9162 §2.1 (split at the largest power of two below n) with SHA-512 and domain
//! separation: leaf = SHA-512(0x00 ‖ value), node = SHA-512(0x01 ‖ left ‖ right). A batch of
//! one is not hashed: REPORTDATA is the value itself, so an uncoalesced quote is the degenerate
//! case with an empty path.

use sha2::{Digest, Sha512};

/// Position of a value in a coalesced batch and the sibling hashes up to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Index of the value among the batch's values.
    pub index: u64,
    /// Number of values in the batch.
    pub size: u64,
    /// Sibling hashes, leaf level first.
    pub path: Vec<[u8; 64]>,
}

pub(crate) fn leaf_hash(value: &[u8; 64]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update([0x00]);
    h.update(value);
    h.finalize().into()
}

pub(crate) fn node_hash(left: &[u8; 64], right: &[u8; 64]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The REPORTDATA a quote must carry for `value` to be included by `proof`, or `None` if the
/// proof is malformed (index out of range, wrong path length).
pub fn coalesced_report_data(value: &[u8; 64], proof: &InclusionProof) -> Option<[u8; 64]> {
    let (index, size) = (proof.index, proof.size);
    if index >= size {
        return None;
    }
    if size == 1 {
        return proof.path.is_empty().then_some(*value);
    }
    // RFC 9162 §2.1.3.2.
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = leaf_hash(value);
    for p in &proof.path {
        if s_n == 0 {
            return None;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    (s_n == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_one_is_the_value_itself() {
        let p = InclusionProof {
            index: 0,
            size: 1,
            path: vec![],
        };
        assert_eq!(coalesced_report_data(&[7; 64], &p), Some([7; 64]));
        let bad = InclusionProof {
            path: vec![[0; 64]],
            ..p
        };
        assert_eq!(coalesced_report_data(&[7; 64], &bad), None);
    }

    #[test]
    fn two_values_hash_to_their_node() {
        let (a, b) = ([1; 64], [2; 64]);
        let root = node_hash(&leaf_hash(&a), &leaf_hash(&b));
        let pa = InclusionProof {
            index: 0,
            size: 2,
            path: vec![leaf_hash(&b)],
        };
        let pb = InclusionProof {
            index: 1,
            size: 2,
            path: vec![leaf_hash(&a)],
        };
        assert_eq!(coalesced_report_data(&a, &pa), Some(root));
        assert_eq!(coalesced_report_data(&b, &pb), Some(root));
        assert_ne!(coalesced_report_data(&b, &pa), Some(root));
        let out_of_range = InclusionProof { index: 2, ..pa };
        assert_eq!(coalesced_report_data(&a, &out_of_range), None);
    }
}
