//! Just enough DER to write the Intel SGX extension of a PCK certificate.

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub(super) fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

pub(super) fn octets(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

pub(super) fn boolean(v: bool) -> Vec<u8> {
    tlv(0x01, &[if v { 0xFF } else { 0x00 }])
}

/// INTEGER or ENUMERATED (`tag`) of a small non-negative value, minimal two's complement.
fn unsigned(tag: u8, v: u16) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut content: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    if content.first().is_none_or(|&b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    tlv(tag, &content)
}

pub(super) fn integer(v: u16) -> Vec<u8> {
    unsigned(0x02, v)
}

pub(super) fn enumerated(v: u16) -> Vec<u8> {
    unsigned(0x0A, v)
}

pub(super) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    if let [a, b, rest @ ..] = arcs {
        base128(&mut content, a * 40 + b);
        for &arc in rest {
            base128(&mut content, arc);
        }
    }
    tlv(0x06, &content)
}

fn base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = vec![(v & 0x7F) as u8];
    v >>= 7;
    while v > 0 {
        tmp.push(0x80 | (v & 0x7F) as u8);
        v >>= 7;
    }
    tmp.reverse();
    out.extend_from_slice(&tmp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_values() {
        // 1.2.840.113741.1.13.1, as in every Intel PCK certificate.
        assert_eq!(
            oid(&[1, 2, 840, 113741, 1, 13, 1]),
            [0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF8, 0x4D, 0x01, 0x0D, 0x01]
        );
        assert_eq!(integer(0), [0x02, 0x01, 0x00]);
        assert_eq!(integer(13), [0x02, 0x01, 0x0D]);
        assert_eq!(integer(0x80), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(boolean(true), [0x01, 0x01, 0xFF]);
        let long = octets(&[0u8; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
    }
}
