//! Parser for the IDX format used by MNIST and Fashion-MNIST.
//!
//! Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of
//! dimensions, then each dimension as a big-endian u32, then the data.

use super::error::DataError;

/// Type code of unsigned-byte data, the only one the MNIST family uses.
const IDX_U8: u8 = 0x08;

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimension sizes, outermost first.
    pub dims: Vec<usize>,
    /// Row-major payload.
    pub data: Vec<u8>,
}

/// Parses an unsigned-byte IDX file; `file` names it in errors.
pub fn parse_idx(bytes: &[u8], file: &str) -> Result<IdxArray, DataError> {
    let err = |reason: String| DataError::Idx { file: file.to_string(), reason };
    if bytes.len() < 4 {
        return Err(err(format!("only {} bytes, too short for the 4-byte header", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(format!(
            "bad magic {:02x} {:02x} (expected 00 00); if it starts with 1f 8b it is still \
             gzip-compressed",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != IDX_U8 {
        return Err(err(format!("element type code 0x{:02x} is not 0x08 (unsigned byte)", bytes[2])));
    }
    let ndims = usize::from(bytes[3]);
    if ndims == 0 {
        return Err(err("zero dimensions".to_string()));
    }
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(err(format!(
            "truncated header: {ndims} dimensions need {header_len} bytes, file has {}",
            bytes.len()
        )));
    }
    let mut dims = Vec::with_capacity(ndims);
    let mut count: usize = 1;
    for d in 0..ndims {
        let at = 4 + 4 * d;
        let raw = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let dim = u32::from_be_bytes(raw) as usize;
        count = count.checked_mul(dim).ok_or_else(|| err(format!("dimensions {dims:?}x{dim} overflow")))?;
        dims.push(dim);
    }
    let expected = header_len + count;
    if bytes.len() != expected {
        let what = if bytes.len() < expected { "truncated" } else { "has trailing bytes" };
        return Err(err(format!("{what}: dimensions {dims:?} need {expected} bytes, file has {}", bytes.len())));
    }
    Ok(IdxArray { dims, data: bytes[header_len..].to_vec() })
}

/// Parses an IDX image file into (count, height, width, pixels).
pub fn parse_images(bytes: &[u8], file: &str) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let arr = parse_idx(bytes, file)?;
    match arr.dims.as_slice() {
        &[n, h, w] => Ok((n, h, w, arr.data)),
        other => Err(DataError::Idx {
            file: file.to_string(),
            reason: format!("expected 3 dimensions (count, height, width), found {other:?}"),
        }),
    }
}

/// Parses an IDX label file, checking every label is below `num_classes`.
pub fn parse_labels(bytes: &[u8], file: &str, num_classes: usize) -> Result<Vec<u32>, DataError> {
    let arr = parse_idx(bytes, file)?;
    if arr.dims.len() != 1 {
        return Err(DataError::Idx {
            file: file.to_string(),
            reason: format!("expected 1 dimension for labels, found {:?}", arr.dims),
        });
    }
    arr.data
        .iter()
        .enumerate()
        .map(|(index, &v)| {
            if usize::from(v) < num_classes {
                Ok(u32::from(v))
            } else {
                Err(DataError::BadLabel { file: file.to_string(), index, value: i64::from(v), num_classes })
            }
        })
        .collect()
}

/// Serialises an unsigned-byte IDX array; used to build test fixtures.
#[cfg(test)]
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, IDX_U8, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hand_made_images_and_labels() {
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        let file = encode_idx(&[2, 3, 4], &pixels);
        let (n, h, w, data) = parse_images(&file, "imgs").expect("valid fixture");
        assert_eq!((n, h, w), (2, 3, 4));
        assert_eq!(data, pixels);

        let labels = encode_idx(&[3], &[0, 9, 4]);
        assert_eq!(parse_labels(&labels, "lbl", 10).expect("valid"), vec![0, 9, 4]);
    }

    #[test]
    fn rejects_bad_magic_truncation_and_bad_labels() {
        let mut file = encode_idx(&[2, 2, 2], &[1; 8]);
        let good = file.clone();
        file[0] = 0x1f;
        let msg = parse_idx(&file, "x").expect_err("bad magic").to_string();
        assert!(msg.contains("bad magic"), "{msg}");

        let msg = parse_idx(&good[..good.len() - 1], "x").expect_err("truncated").to_string();
        assert!(msg.contains("truncated"), "{msg}");
        assert!(parse_idx(&good[..6], "x").is_err());
        assert!(parse_idx(&[0, 0], "x").is_err());

        let mut extra = good.clone();
        extra.push(0);
        assert!(parse_idx(&extra, "x").is_err());

        let mut wrong_type = good;
        wrong_type[2] = 0x0d;
        assert!(parse_idx(&wrong_type, "x").is_err());

        let labels = encode_idx(&[2], &[1, 10]);
        let err = parse_labels(&labels, "lbl", 10).expect_err("label 10 of 10");
        assert!(matches!(err, DataError::BadLabel { index: 1, .. }));
        assert!(parse_images(&labels, "lbl").is_err());
    }
}
