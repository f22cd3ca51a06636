//! Reading an artifact's files for validation in bounded memory: tensor headers, JSON read
//! strictly, text and images of a report.

use std::collections::BTreeMap;
use std::path::Path;

use super::{err, FormatError};
use crate::artifact::header::{self, TensorInfo};
use crate::artifact::known_fields::{field_names, unknown_key};

/// Every tensor of `dir/file` is F32 and finite, read a block at a time: nothing reads the file
/// whole (it was loaded twice over, so a command's sparse file of gigabytes took cfrun's memory).
pub(super) fn finite_f32_tensors(dir: &Path, file: &str) -> Result<(), FormatError> {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join(file);
    let info = header::read(&path).map_err(|e| err(file, e))?;
    if let Some((name, t)) = info.iter().find(|(_, t)| t.dtype != "F32") {
        return Err(err(file, format!("tensor `{name}` is {}, not F32", t.dtype)));
    }
    let io = |e: std::io::Error| err(file, e.to_string());
    let mut f = std::fs::File::open(&path).map_err(io)?;
    // A multiple of 4, so no value is cut between two blocks.
    let mut block = vec![0u8; 1 << 20];
    for (name, t) in &info {
        f.seek(SeekFrom::Start(t.bytes.start)).map_err(io)?;
        let mut left = t.bytes.end - t.bytes.start;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.read_exact(&mut block[..n]).map_err(io)?;
            let finite = block[..n].chunks_exact(4).all(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite());
            if !finite {
                return Err(err(file, format!("tensor `{name}` holds NaN or infinite values")));
            }
            left -= n as u64;
        }
    }
    Ok(())
}

/// The format's tensor file is at most half this machine's memory: its readers load it whole
/// (and candle's loader holds a second copy while it does), so a larger one would end in an
/// allocation abort that takes every running stage with it, not in an error.
pub(super) fn readable_whole(dir: &Path, file: &str) -> Result<(), FormatError> {
    let size = std::fs::metadata(dir.join(file)).map_err(|e| err(file, e.to_string()))?.len();
    let memory = crate::config::limits::machine_memory();
    if size > memory / 2 {
        return Err(err(
            file,
            format!(
                "is {}, more than half of this machine's {} of memory; cfrun reads it whole",
                crate::human::bytes(size),
                crate::human::bytes(memory)
            ),
        ));
    }
    Ok(())
}

pub(super) fn report_file(dir: &Path, name: &str) -> Result<(), FormatError> {
    let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "md" | "csv" | "txt" | "json" | "svg" => {
            if !utf8_text(&dir.join(name)).map_err(|e| err(name, e.to_string()))? {
                return Err(err(name, "is not UTF-8 text"));
            }
        }
        "png" => {
            let mut head = Vec::with_capacity(8);
            let file = std::fs::File::open(dir.join(name)).map_err(|e| err(name, e.to_string()))?;
            std::io::Read::read_to_end(&mut std::io::Read::take(file, 8), &mut head)
                .map_err(|e| err(name, e.to_string()))?;
            if !head.starts_with(b"\x89PNG\r\n\x1a\n") {
                return Err(err(name, "is not a PNG image (bad signature)"));
            }
        }
        _ => return Err(err(name, "has an extension a report does not hold (valid: md, csv, txt, json, svg, png)")),
    }
    Ok(())
}

/// Whether a file is UTF-8 text, read a block at a time: a text output of gigabytes is checked
/// in bounded memory (it was read whole, taking cfrun's memory with it).
pub(super) fn utf8_text(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    // Bytes of a character cut by the end of the last block, carried to the next.
    let mut carried = 0;
    loop {
        let n = file.read(&mut buf[carried..])?;
        if n == 0 {
            return Ok(carried == 0);
        }
        let filled = carried + n;
        match std::str::from_utf8(&buf[..filled]) {
            Ok(_) => carried = 0,
            // Cut at the end (no error length): keep the start of that character.
            Err(e) if e.error_len().is_none() => {
                let valid = e.valid_up_to();
                buf.copy_within(valid..filled, 0);
                carried = filled - valid;
            }
            Err(_) => return Ok(false),
        }
    }
}

/// The header of a tensor file, with each named tensor of the given dtype and rank.
pub(super) fn tensors(
    dir: &Path,
    file: &str,
    want: &[(&str, &str, usize)],
) -> Result<BTreeMap<String, TensorInfo>, FormatError> {
    let info = header::read(&dir.join(file)).map_err(|e| err(file, e))?;
    for &(name, dtype, rank) in want {
        let Some(t) = info.get(name) else {
            let have: Vec<&str> = info.keys().map(String::as_str).collect();
            return Err(err(file, format!("has no tensor `{name}` (it has: {})", have.join(", "))));
        };
        if t.dtype != dtype {
            return Err(err(file, format!("tensor `{name}` is {}, but must be {dtype}", t.dtype)));
        }
        if t.shape.len() != rank {
            return Err(err(file, format!("tensor `{name}` has shape {:?}, but must have {rank} dimensions", t.shape)));
        }
    }
    Ok(info)
}

/// `dir/meta.json` as `T`, with no field `T` lacks.
pub(super) fn meta<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T, FormatError> {
    let text = json_text(dir, "meta.json")?;
    known_fields::<T>("meta.json", "", &parse(&text, "meta.json")?)?;
    // Parsed from the text, not from the value, so a wrong type is reported at its line and column.
    parse(&text, "meta.json")
}

/// No key of the object `value` (at `at` in `file`, `` for the top) that `T` does not read:
/// serde would skip it without a word, so a misspelt optional field would be lost, not refused.
pub(super) fn known_fields<'de, T: serde::Deserialize<'de>>(
    file: &str,
    at: &str,
    value: &serde_json::Value,
) -> Result<(), FormatError> {
    let fields = field_names::<T>();
    match unknown_key(value, fields) {
        Some(key) => Err(err(
            file,
            format!(
                "has an unknown field `{at}{key}` (the fields it may hold{}: {})",
                if at.is_empty() { "" } else { " there" },
                fields.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// The largest JSON file of an artifact read here: far above any meta.json (a million class
/// names) or metrics.json cfrun writes, and small enough to read whole.
pub const MAX_JSON_BYTES: u64 = 64 << 20;

/// Reads `dir/file` as `T`: at most [`MAX_JSON_BYTES`], and no key twice in one object (a JSON
/// reader keeps one of the two silently, so which value counts would depend on the reader).
pub(super) fn json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Result<T, FormatError> {
    parse(&json_text(dir, file)?, file)
}

/// The text of `dir/file`: at most [`MAX_JSON_BYTES`], JSON, and no key twice in one object.
fn json_text(dir: &Path, file: &str) -> Result<Vec<u8>, FormatError> {
    let path = dir.join(file);
    let size = std::fs::metadata(&path).map_err(|e| err(file, e.to_string()))?.len();
    if size > MAX_JSON_BYTES {
        return Err(err(
            file,
            format!(
                "is {size} bytes; a JSON file of an artifact may be at most {MAX_JSON_BYTES} bytes ({} MiB)",
                MAX_JSON_BYTES >> 20
            ),
        ));
    }
    let text = std::fs::read(&path).map_err(|e| err(file, e.to_string()))?;
    crate::artifact::strict_json::distinct_keys(&text)
        .map_err(|e| err(file, format!("{e}{}", non_json_number(&text))))?;
    Ok(text)
}

/// `text` (of `file`) as `T`.
fn parse<T: serde::de::DeserializeOwned>(text: &[u8], file: &str) -> Result<T, FormatError> {
    serde_json::from_slice(text).map_err(|e| err(file, format!("{e}{}", non_json_number(text))))
}

/// A hint where the text's first JSON syntax error stands at `NaN`, `Infinity` or `-Infinity`,
/// which JSON lacks; else nothing.
fn non_json_number(text: &[u8]) -> &'static str {
    let Err(e) = serde_json::from_slice::<serde_json::Value>(text) else { return "" };
    let Some(line) = text.split(|&b| b == b'\n').nth(e.line().saturating_sub(1)) else { return "" };
    let at = &line[e.column().saturating_sub(1).min(line.len())..];
    if e.is_syntax() && [&b"NaN"[..], b"Infinity", b"-Infinity"].iter().any(|t| at.starts_with(t)) {
        "; JSON has no NaN or Infinity (Python's json.dump writes them unless allow_nan=False): every value must be a finite number"
    } else {
        ""
    }
}
