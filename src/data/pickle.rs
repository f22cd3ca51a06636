//! Reader for the raw payload of a numpy array saved with `pickle` (protocol 4+).
//!
//! Rather than implement a pickle VM, this relies on the files being pinned by
//! SHA-256: the payload offset is known in advance, and the reader only checks
//! the framing around it (the `B` BINBYTES opcode and its u32 length) and that
//! the header names the expected dtype, so a different file fails loudly
//! instead of being misread.

use super::error::DataError;

/// Pickle PROTO opcode, the first byte of any protocol 2+ pickle.
const PROTO: u8 = 0x80;
/// Pickle BINBYTES opcode: a u32 little-endian length followed by raw bytes.
const BINBYTES: u8 = b'B';

/// Where and what the array payload is inside a pickle file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickleArraySpec {
    /// Byte offset of the first payload byte.
    pub payload_offset: usize,
    /// numpy dtype code as it appears in the header, e.g. `u1` or `i8`.
    pub dtype: &'static str,
    /// Bytes per element.
    pub elem_size: usize,
    /// Number of elements.
    pub count: usize,
}

/// Returns the payload bytes after checking the framing described by `spec`.
pub fn payload<'a>(bytes: &'a [u8], spec: &PickleArraySpec, file: &str) -> Result<&'a [u8], DataError> {
    let err = |reason: String| DataError::Pickle { file: file.to_string(), reason };
    let off = spec.payload_offset;
    let len = spec.count.checked_mul(spec.elem_size).ok_or_else(|| err("element count overflows".to_string()))?;
    if off < 5 {
        return Err(err(format!("payload offset {off} leaves no room for framing")));
    }
    if bytes.first() != Some(&PROTO) {
        return Err(err(format!(
            "first byte is {:?}, not the pickle PROTO opcode 0x80; if it is 0x1f the file is \
             still gzip-compressed",
            bytes.first()
        )));
    }
    if bytes.len() < off + len {
        return Err(err(format!(
            "truncated: {len} payload bytes at offset {off} need {} bytes, file has {}",
            off + len,
            bytes.len()
        )));
    }
    // numpy writes the dtype as a SHORT_BINUNICODE (0x8c, length, text) before the payload.
    let mut needle = vec![0x8c, spec.dtype.len() as u8];
    needle.extend_from_slice(spec.dtype.as_bytes());
    let header = &bytes[..off - 5];
    if !header.windows(needle.len()).any(|w| w == needle.as_slice()) {
        return Err(err(format!(
            "header does not name dtype `{}`; this is a different array type or version",
            spec.dtype
        )));
    }
    if bytes[off - 5] != BINBYTES {
        return Err(err(format!(
            "byte {} is 0x{:02x}, not the BINBYTES opcode `B` expected just before the payload \
             at offset {off}",
            off - 5,
            bytes[off - 5]
        )));
    }
    let declared = u32::from_le_bytes([bytes[off - 4], bytes[off - 3], bytes[off - 2], bytes[off - 1]]) as usize;
    if declared != len {
        return Err(err(format!(
            "BINBYTES length is {declared} but {} elements of {} bytes need {len}",
            spec.count, spec.elem_size
        )));
    }
    Ok(&bytes[off..off + len])
}

/// Reads an `i8` (int64 LE) label array and checks each label is below `num_classes`.
pub fn labels_i64(bytes: &[u8], spec: &PickleArraySpec, file: &str, num_classes: usize) -> Result<Vec<u32>, DataError> {
    if spec.elem_size != 8 {
        return Err(DataError::Pickle {
            file: file.to_string(),
            reason: format!("int64 labels need 8-byte elements, spec says {}", spec.elem_size),
        });
    }
    let raw = payload(bytes, spec, file)?;
    raw.chunks_exact(8)
        .enumerate()
        .map(|(index, c)| {
            let v = i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            match u32::try_from(v) {
                Ok(u) if (u as usize) < num_classes => Ok(u),
                _ => Err(DataError::BadLabel { file: file.to_string(), index, value: v, num_classes }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a minimal pickle-like file: PROTO, a dtype string, BINBYTES, payload, STOP.
    fn fixture(dtype: &str, payload: &[u8]) -> (Vec<u8>, usize) {
        let mut f = vec![PROTO, 4, 0x8c, dtype.len() as u8];
        f.extend_from_slice(dtype.as_bytes());
        f.extend_from_slice(&[0x94, 0x89]);
        f.push(BINBYTES);
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let off = f.len();
        f.extend_from_slice(payload);
        f.push(b'.');
        (f, off)
    }

    #[test]
    fn reads_pixels_and_labels() {
        let pixels: Vec<u8> = (0..12).collect();
        let (file, off) = fixture("u1", &pixels);
        let spec = PickleArraySpec { payload_offset: off, dtype: "u1", elem_size: 1, count: 12 };
        assert_eq!(payload(&file, &spec, "px").expect("valid"), pixels.as_slice());

        let labels: Vec<u8> = [3i64, 0, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (file, off) = fixture("i8", &labels);
        let spec = PickleArraySpec { payload_offset: off, dtype: "i8", elem_size: 8, count: 3 };
        assert_eq!(labels_i64(&file, &spec, "lb", 10).expect("valid"), vec![3, 0, 9]);
        assert!(matches!(labels_i64(&file, &spec, "lb", 9), Err(DataError::BadLabel { index: 2, value: 9, .. })));
    }

    #[test]
    fn rejects_corrupted_framing() {
        let (good, off) = fixture("u1", &[7; 10]);
        let spec = PickleArraySpec { payload_offset: off, dtype: "u1", elem_size: 1, count: 10 };

        let mut bad_opcode = good.clone();
        bad_opcode[off - 5] = b'C';
        let msg = payload(&bad_opcode, &spec, "px").expect_err("opcode").to_string();
        assert!(msg.contains("BINBYTES"), "{msg}");

        let mut bad_len = good.clone();
        bad_len[off - 4] = 11;
        assert!(payload(&bad_len, &spec, "px").is_err());

        let msg = payload(&good[..off + 5], &spec, "px").expect_err("short").to_string();
        assert!(msg.contains("truncated"), "{msg}");

        let wrong_dtype = PickleArraySpec { dtype: "f4", ..spec };
        assert!(payload(&good, &wrong_dtype, "px").is_err());

        let mut gz = good;
        gz[0] = 0x1f;
        assert!(payload(&gz, &spec, "px").is_err());
    }
}
