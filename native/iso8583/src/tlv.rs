//! BER-TLV as EMV uses it (field 55): tags of 1 to 4 bytes, definite lengths of up to 4
//! length bytes, constructed tags (bit 6 of the first tag byte) parsed into their children.
//!
//! Strict on purpose: indefinite lengths, truncated elements, over-long tags and nesting deeper
//! than [`MAX_DEPTH`] are errors naming the byte offset, so hostile input cannot recurse the
//! stack away or be silently half-read.
use std::fmt;

/// Nesting limit for constructed tags (EMV templates nest two or three deep).
pub const MAX_DEPTH: usize = 16;

/// One data object. For a constructed tag `children` holds the parsed content; `value` always
/// holds the raw content bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    pub tag: u32,
    pub value: Vec<u8>,
    pub children: Option<Vec<Tlv>>,
}

impl Tlv {
    /// Whether a tag number denotes a constructed object (bit 6 of its first byte).
    pub fn is_constructed_tag(tag: u32) -> bool {
        let bytes = tag.to_be_bytes();
        let first = bytes.iter().copied().find(|&b| b != 0).unwrap_or(0);
        first & 0x20 != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlvError {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLV: {} at offset {}", self.reason, self.offset)
    }
}

impl std::error::Error for TlvError {}

fn err(offset: usize, reason: impl Into<String>) -> TlvError {
    TlvError {
        offset,
        reason: reason.into(),
    }
}

/// Parse a sequence of data objects.
pub fn parse(data: &[u8]) -> Result<Vec<Tlv>, TlvError> {
    parse_at(data, 0, 0)
}

fn parse_at(data: &[u8], base: usize, depth: usize) -> Result<Vec<Tlv>, TlvError> {
    if depth > MAX_DEPTH {
        return Err(err(base, format!("nesting deeper than {MAX_DEPTH}")));
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let start = pos;
        let first = data[pos];
        let mut tag = first as u32;
        pos += 1;
        if first & 0x1F == 0x1F {
            loop {
                let Some(&b) = data.get(pos) else {
                    return Err(err(base + start, "truncated tag"));
                };
                if pos - start >= 4 {
                    return Err(err(base + start, "tag longer than 4 bytes"));
                }
                tag = (tag << 8) | b as u32;
                pos += 1;
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        let len_at = pos;
        let Some(&l0) = data.get(pos) else {
            return Err(err(base + len_at, format!("tag {tag:X}: missing length")));
        };
        pos += 1;
        let len = if l0 < 0x80 {
            l0 as usize
        } else if l0 == 0x80 {
            return Err(err(
                base + len_at,
                format!("tag {tag:X}: indefinite length"),
            ));
        } else {
            let n = (l0 & 0x7F) as usize;
            if n > 4 {
                return Err(err(base + len_at, format!("tag {tag:X}: {n} length bytes")));
            }
            if pos + n > data.len() {
                return Err(err(base + len_at, format!("tag {tag:X}: truncated length")));
            }
            let mut v = 0usize;
            for &b in &data[pos..pos + n] {
                v = (v << 8) | b as usize;
            }
            pos += n;
            v
        };
        if len > data.len() - pos {
            return Err(err(
                base + len_at,
                format!(
                    "tag {tag:X}: length {len} exceeds the {} bytes left",
                    data.len() - pos
                ),
            ));
        }
        let value = &data[pos..pos + len];
        let children = if first & 0x20 != 0 {
            Some(parse_at(value, base + pos, depth + 1)?)
        } else {
            None
        };
        out.push(Tlv {
            tag,
            value: value.to_vec(),
            children,
        });
        pos += len;
    }
    Ok(out)
}

/// The bytes of a tag number, checked to form exactly one well-formed BER tag.
fn tag_bytes(tag: u32) -> Result<Vec<u8>, TlvError> {
    let all = tag.to_be_bytes();
    let skip = all.iter().take_while(|&&b| b == 0).count().min(3);
    let b = &all[skip..];
    let multi = b[0] & 0x1F == 0x1F;
    let ok = if b.len() == 1 {
        !multi
    } else {
        multi && b[1..b.len() - 1].iter().all(|&x| x & 0x80 != 0) && b[b.len() - 1] & 0x80 == 0
    };
    if !ok {
        return Err(err(0, format!("tag {tag:X} is not a well-formed BER tag")));
    }
    Ok(b.to_vec())
}

fn write_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xFF {
        out.extend_from_slice(&[0x81, len as u8]);
    } else if len <= 0xFFFF {
        out.push(0x82);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else if len <= 0xFF_FFFF {
        out.push(0x83);
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    } else {
        out.push(0x84);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Build a sequence of data objects. A constructed object with `children` is built from them;
/// otherwise its `value` is written as is.
pub fn build(nodes: &[Tlv]) -> Result<Vec<u8>, TlvError> {
    let mut out = Vec::new();
    build_into(nodes, &mut out, 0)?;
    Ok(out)
}

fn build_into(nodes: &[Tlv], out: &mut Vec<u8>, depth: usize) -> Result<(), TlvError> {
    if depth > MAX_DEPTH {
        return Err(err(out.len(), format!("nesting deeper than {MAX_DEPTH}")));
    }
    for node in nodes {
        let tb = tag_bytes(node.tag).map_err(|e| err(out.len(), e.reason))?;
        out.extend_from_slice(&tb);
        match &node.children {
            Some(children) if tb[0] & 0x20 != 0 => {
                let mut inner = Vec::new();
                build_into(children, &mut inner, depth + 1)?;
                write_len(inner.len(), out);
                out.extend_from_slice(&inner);
            }
            Some(_) => {
                return Err(err(
                    out.len(),
                    format!("tag {:X} is primitive but was given children", node.tag),
                ))
            }
            None => {
                write_len(node.value.len(), out);
                out.extend_from_slice(&node.value);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn parses_primitive_and_multibyte_tags() {
        let d = hex("9F2608AABBCCDDEEFF00119F360200419505000000800082025C00");
        let t = parse(&d).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].tag, 0x9F26);
        assert_eq!(t[0].value, hex("AABBCCDDEEFF0011"));
        assert_eq!(t[1].tag, 0x9F36);
        assert_eq!(t[2].tag, 0x95);
        assert_eq!(t[3].tag, 0x82);
        assert!(t[0].children.is_none());
        assert_eq!(build(&t).unwrap(), d);
    }

    #[test]
    fn parses_nested_constructed_tags() {
        // 71 (issuer script template 1) holding 9F18 (script id) and 86 (command).
        let d = hex("710E9F180400000001860584DA00000091020A0B");
        let t = parse(&d).unwrap();
        assert_eq!(t.len(), 2);
        let kids = t[0].children.as_ref().unwrap();
        assert_eq!(kids[0].tag, 0x9F18);
        assert_eq!(kids[1].tag, 0x86);
        assert_eq!(kids[1].value, hex("84DA000000"));
        assert_eq!(t[1].tag, 0x91);
        assert_eq!(build(&t).unwrap(), d);
    }

    #[test]
    fn long_form_lengths() {
        let mut d = vec![0x5F, 0x20, 0x81, 0x80];
        d.extend(vec![b'A'; 128]);
        let t = parse(&d).unwrap();
        assert_eq!(t[0].tag, 0x5F20);
        assert_eq!(t[0].value.len(), 128);
        assert_eq!(build(&t).unwrap(), d);
        let big = Tlv {
            tag: 0x9F10,
            value: vec![1; 300],
            children: None,
        };
        let b = build(std::slice::from_ref(&big)).unwrap();
        assert_eq!(&b[..5], &[0x9F, 0x10, 0x82, 0x01, 0x2C]);
        assert_eq!(parse(&b).unwrap(), vec![big]);
    }

    #[test]
    fn errors_name_the_offset() {
        assert_eq!(parse(&hex("9F")).unwrap_err().offset, 0);
        assert_eq!(parse(&hex("9F26")).unwrap_err().offset, 2);
        let e = parse(&hex("9F260801")).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.reason.contains("exceeds"), "{e}");
        assert!(parse(&hex("9580"))
            .unwrap_err()
            .reason
            .contains("indefinite"));
        assert!(parse(&hex("9F8181818101"))
            .unwrap_err()
            .reason
            .contains("4 bytes"));
        assert!(parse(&hex("9585"))
            .unwrap_err()
            .reason
            .contains("length bytes"));
        // Error inside a constructed tag: offset is absolute.
        let e = parse(&hex("7003950501")).unwrap_err();
        assert_eq!(e.offset, 3);
    }

    #[test]
    fn rejects_deep_nesting() {
        let mut d = Vec::new();
        for _ in 0..40 {
            let mut outer = vec![0x70, d.len() as u8];
            outer.extend(d);
            d = outer;
        }
        // Lengths overflow one byte only past 127 bytes; 40 levels of 2-byte headers is 80.
        assert!(parse(&d).unwrap_err().reason.contains("nesting"));
    }

    #[test]
    fn build_rejects_bad_tags() {
        let bad = |tag| Tlv {
            tag,
            value: vec![],
            children: None,
        };
        assert!(build(&[bad(0x9F)]).is_err());
        assert!(build(&[bad(0x9F80)]).is_err());
        assert!(build(&[bad(0x0095)]).is_ok());
        let prim_with_kids = Tlv {
            tag: 0x95,
            value: vec![],
            children: Some(vec![]),
        };
        assert!(build(&[prim_with_kids]).is_err());
    }
}
