//! The one Merkle tree of locus's batches: a coalesced TDX quote's REPORTDATA over its
//! requests' binding values, and a batched anchor measurement's root over its nonces.
//!
//! Tree as RFC 9162 §2.1 (split at the largest power of two below n) with SHA-512 and domain
//! separation: leaf = SHA-512(0x00 ‖ value), node = SHA-512(0x01 ‖ left ‖ right). A batch of
//! one is not hashed: its root is the value itself, so an unbatched value is the degenerate
//! case with an empty path.

use sha2::{Digest, Sha512};

/// Position of a value in a batch and the sibling hashes up to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Index of the value among the batch's values.
    pub index: u64,
    /// Number of values in the batch.
    pub size: u64,
    /// Sibling hashes, leaf level first.
    pub path: Vec<[u8; 64]>,
}

/// SHA-512(0x00 ‖ value): a leaf, never equal to an inner node (prefix 0x01).
pub fn leaf_hash(value: &[u8; 64]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update([0x00]);
    h.update(value);
    h.finalize().into()
}

/// SHA-512(0x01 ‖ left ‖ right).
pub fn node_hash(left: &[u8; 64], right: &[u8; 64]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

fn split(n: usize) -> usize {
    // Largest power of two strictly below n (n >= 2).
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn mth(h: &[[u8; 64]]) -> [u8; 64] {
    match h {
        [one] => *one,
        _ => {
            let k = split(h.len());
            node_hash(&mth(&h[..k]), &mth(&h[k..]))
        }
    }
}

fn audit_path(m: usize, h: &[[u8; 64]], out: &mut Vec<[u8; 64]>) {
    if h.len() <= 1 {
        return;
    }
    let k = split(h.len());
    if m < k {
        audit_path(m, &h[..k], out);
        out.push(mth(&h[k..]));
    } else {
        audit_path(m - k, &h[k..], out);
        out.push(mth(&h[..k]));
    }
}

/// A 64-byte hash or value of the tree.
pub type Hash = [u8; 64];

/// The root over `values` (in order) and each value's audit path. A batch of one is its value
/// with an empty path; an empty batch has no root.
pub fn batch_root(values: &[Hash]) -> Option<(Hash, Vec<Vec<Hash>>)> {
    match values {
        [] => None,
        [one] => Some((*one, vec![Vec::new()])),
        _ => {
            let leaves: Vec<_> = values.iter().map(leaf_hash).collect();
            let paths = (0..leaves.len())
                .map(|m| {
                    let mut p = Vec::new();
                    audit_path(m, &leaves, &mut p);
                    p
                })
                .collect();
            Some((mth(&leaves), paths))
        }
    }
}

/// The root that `proof` shows `value` to be included in, or `None` if the proof is malformed
/// (index out of range, path of the wrong length for the size).
pub fn root_from_proof(value: &[u8; 64], proof: &InclusionProof) -> Option<[u8; 64]> {
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
        assert_eq!(root_from_proof(&[7; 64], &p), Some([7; 64]));
        assert_eq!(batch_root(&[[7; 64]]), Some(([7; 64], vec![vec![]])));
        assert_eq!(batch_root(&[]), None);
        let bad = InclusionProof {
            path: vec![[0; 64]],
            ..p
        };
        assert_eq!(root_from_proof(&[7; 64], &bad), None);
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
        assert_eq!(root_from_proof(&a, &pa), Some(root));
        assert_eq!(root_from_proof(&b, &pb), Some(root));
        assert_ne!(root_from_proof(&b, &pa), Some(root));
        let out_of_range = InclusionProof { index: 2, ..pa };
        assert_eq!(root_from_proof(&a, &out_of_range), None);
    }

    #[test]
    fn every_path_of_every_size_folds_to_the_root() {
        for n in 1..=17u8 {
            let values: Vec<[u8; 64]> = (0..n).map(|i| [i; 64]).collect();
            let (root, paths) = batch_root(&values).unwrap();
            for (i, (v, path)) in values.iter().zip(paths).enumerate() {
                let proof = InclusionProof {
                    index: i as u64,
                    size: u64::from(n),
                    path,
                };
                assert_eq!(root_from_proof(v, &proof), Some(root), "n={n} i={i}");
            }
        }
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        assert_eq!([2, 3, 4, 5, 8, 9].map(split), [1, 2, 2, 4, 4, 8]);
    }
}
