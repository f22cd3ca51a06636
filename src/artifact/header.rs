//! Reads the header of a safetensors file without loading its data: the name, dtype, shape and
//! byte range of every tensor. Used to check files cfrun did not write itself (a `command`
//! stage's outputs) before anything trusts them.
//!
//! Layout: an 8-byte little-endian header length `n`, `n` bytes of JSON mapping each tensor
//! name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the end of the
//! header), an optional `__metadata__` entry, then the data.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Largest header accepted; a real one is a few kilobytes, so a larger length means a corrupt or
/// foreign file (and reading it would cost unbounded memory).
const MAX_HEADER: u64 = 16 << 20;

/// One tensor as the header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// `U8`, `U32`, `F32`, ... as written in the file.
    pub dtype: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Where its data lies in the file (from the file's start).
    pub bytes: std::ops::Range<u64>,
}

/// Bytes per element of a safetensors dtype name, `None` for names the format does not define.
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// Every tensor of the safetensors file at `path`, checked for consistency: known dtypes, byte
/// ranges inside the file that match dtype and shape. `Err` says what is wrong, for people.
pub fn read(path: &Path) -> Result<BTreeMap<String, TensorInfo>, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| "not a safetensors file (shorter than 8 bytes)".to_string())?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER || 8 + n > size {
        return Err(format!("not a safetensors file (header length {n} does not fit a {size}-byte file)"));
    }
    let mut text = vec![0u8; n as usize];
    f.read_exact(&mut text).map_err(|e| e.to_string())?;
    // serde_json keeps the last of a key given twice; candle's loader refuses the file, so a
    // header read here must not pass what every later reader fails on.
    super::strict_json::distinct_keys(&text).map_err(|e| format!("not a safetensors file (header: {e})"))?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("not a safetensors file (header is not JSON: {e})"))?;
    let serde_json::Value::Object(map) = json else {
        return Err("not a safetensors file (header is not a JSON object)".into());
    };
    let data_len = size - 8 - n;
    let mut out = BTreeMap::new();
    for (name, entry) in map {
        if name == "__metadata__" {
            // The format's metadata is text to text (or null); candle's loader refuses anything
            // else, so it is held to that here rather than skipped.
            let text_to_text = entry.is_null() || entry.as_object().is_some_and(|m| m.values().all(|v| v.is_string()));
            if !text_to_text {
                return Err("not a safetensors file (`__metadata__` must map names to strings)".into());
            }
            continue;
        }
        let dtype = entry["dtype"].as_str().ok_or_else(|| format!("tensor `{name}` has no dtype"))?.to_string();
        let elem = dtype_size(&dtype).ok_or_else(|| format!("tensor `{name}` has unknown dtype {dtype}"))?;
        let shape: Vec<usize> = entry["shape"]
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| format!("tensor `{name}` has no valid shape"))?;
        let offsets: Vec<u64> = entry["data_offsets"]
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64()).collect())
            .filter(|v: &Vec<u64>| v.len() == 2)
            .ok_or_else(|| format!("tensor `{name}` has no valid data_offsets"))?;
        let count = shape.iter().try_fold(elem as u64, |acc, &d| acc.checked_mul(d as u64));
        if offsets[0] > offsets[1] || offsets[1] > data_len || count != Some(offsets[1] - offsets[0]) {
            return Err(format!(
                "tensor `{name}` ({dtype} {shape:?}) does not match its bytes {}..{} of {data_len}",
                offsets[0], offsets[1]
            ));
        }
        out.insert(name, TensorInfo { dtype, shape, bytes: 8 + n + offsets[0]..8 + n + offsets[1] });
    }
    // The format's own rule, which candle's loader holds files to: the tensors cover the data
    // with no hole and no overlap (a hole could hide any bytes; a reader streaming the data
    // tensor by tensor must see each byte once).
    let mut ranges: Vec<&std::ops::Range<u64>> = out.values().map(|t| &t.bytes).collect();
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut at = 8 + n;
    for r in ranges {
        if r.start != at {
            return Err(format!("not a safetensors file (its data has a hole or an overlap at byte {at})"));
        }
        at = r.end;
    }
    if at != size {
        return Err(format!("not a safetensors file (bytes {at}..{size} belong to no tensor)"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_candle_writes_and_rejects_truncated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let t = candle_core::Tensor::zeros((3, 2), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        crate::artifact::tensors_io::save(&path, vec![("train", t)]).unwrap();
        let info = read(&path).unwrap();
        let start = bytes_before_data(&path);
        assert_eq!(info["train"], TensorInfo { dtype: "F32".into(), shape: vec![3, 2], bytes: start..start + 24 });
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        assert!(read(&path).unwrap_err().contains("does not match its bytes"));
        std::fs::write(&path, b"hello").unwrap();
        assert!(read(&path).unwrap_err().contains("shorter than 8 bytes"));
    }

    /// A header candle's loader refuses is refused here too: metadata that is not text to text
    /// or given twice (serde_json alone would keep the last); so is a tensor given twice.
    #[test]
    fn metadata_and_keys_are_held_to_what_candle_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let write = |header: &str| {
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend(header.as_bytes());
            bytes.extend([0u8; 4]);
            std::fs::write(&path, bytes).unwrap();
        };
        let candle_reads = || candle_core::safetensors::load(&path, &candle_core::Device::Cpu).is_ok();
        let a = r#""a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}"#;
        for meta in [r#""__metadata__":{"k":"v"}"#, r#""__metadata__":null"#, r#""__metadata__":{}"#] {
            write(&format!("{{{meta},{a}}}"));
            assert_eq!(read(&path).unwrap().len(), 1, "{meta}");
            assert!(candle_reads(), "{meta}");
        }
        for (header, why) in [
            (format!(r#"{{"__metadata__":{{"k":1}},{a}}}"#), "must map names to strings"),
            (format!(r#"{{"__metadata__":[],{a}}}"#), "must map names to strings"),
            (format!(r#"{{"__metadata__":{{}},"__metadata__":{{}},{a}}}"#), "given twice"),
        ] {
            write(&header);
            assert!(read(&path).unwrap_err().contains(why), "{header}");
            assert!(!candle_reads(), "candle refuses it too: {header}");
        }
        // A tensor named twice: candle keeps one, which one depends on its map, so it is refused.
        write(&format!(r#"{{{a},{a}}}"#));
        assert!(read(&path).unwrap_err().contains("given twice"));
    }

    /// 8 bytes of length and the header itself.
    fn bytes_before_data(path: &Path) -> u64 {
        let bytes = std::fs::read(path).unwrap();
        8 + u64::from_le_bytes(bytes[..8].try_into().unwrap())
    }

    /// Data that no tensor claims (a hole, a tail) or that two claim is refused, as candle
    /// refuses it.
    #[test]
    fn data_must_be_covered_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let write = |header: &str, data: usize| {
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend(header.as_bytes());
            bytes.extend(vec![0u8; data]);
            std::fs::write(&path, bytes).unwrap();
        };
        let two = |a: [u64; 2], b: [u64; 2]| {
            format!(
                r#"{{"a":{{"dtype":"U8","shape":[{}],"data_offsets":[{},{}]}},"b":{{"dtype":"U8","shape":[{}],"data_offsets":[{},{}]}}}}"#,
                a[1] - a[0],
                a[0],
                a[1],
                b[1] - b[0],
                b[0],
                b[1]
            )
        };
        write(&two([0, 4], [4, 8]), 8);
        assert_eq!(read(&path).unwrap().len(), 2);
        let candle_reads = || candle_core::safetensors::load(&path, &candle_core::Device::Cpu).is_ok();
        assert!(candle_reads());
        for (header, data, why) in [
            (two([0, 4], [5, 9]), 9, "hole or an overlap at byte"),
            (two([0, 4], [2, 6]), 6, "hole or an overlap at byte"),
            (two([0, 4], [4, 8]), 10, "belong to no tensor"),
        ] {
            write(&header, data);
            assert!(read(&path).unwrap_err().contains(why), "{header}");
            assert!(!candle_reads(), "candle refuses it too: {header}");
        }
    }
}
