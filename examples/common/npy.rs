//! Minimal reader for 1-D/2-D little-endian `.npy` arrays (f32 / i64 / u32), shared by the examples.

use std::fs;
use std::path::Path;

/// A decoded array: flat values plus its shape.
pub struct Npy<T> {
    pub data: Vec<T>,
    pub shape: Vec<usize>,
}

/// Reads the header, returning (descr, shape, offset of the data).
fn header(bytes: &[u8], path: &Path) -> Result<(String, Vec<usize>, usize), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{} is not a .npy file", path.display()));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    let h = std::str::from_utf8(&bytes[start..start + hlen]).map_err(|e| e.to_string())?;
    if h.contains("'fortran_order': True") {
        return Err(format!("{}: Fortran order is not supported", path.display()));
    }
    let descr = h.split("'descr':").nth(1).and_then(|s| s.split('\'').nth(1)).ok_or("no descr")?.to_string();
    let shape_s = h
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or("no shape")?;
    let shape = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((descr, shape, start + hlen))
}

/// Reads an f32 array.
#[allow(dead_code)]
pub fn read_f32(path: &Path) -> Result<Npy<f32>, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (descr, shape, off) = header(&bytes, path)?;
    if descr != "<f4" {
        return Err(format!("{}: expected float32, found {descr}", path.display()));
    }
    let data = bytes[off..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Npy { data, shape })
}

/// Reads an integer label array (int64, int32 or uint8) as u32.
#[allow(dead_code)]
pub fn read_labels(path: &Path) -> Result<Npy<u32>, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (descr, shape, off) = header(&bytes, path)?;
    let body = &bytes[off..];
    let data: Vec<u32> = match descr.as_str() {
        "<i8" => body.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as u32).collect(),
        "<i4" | "<u4" => body.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        "|u1" => body.iter().map(|&b| u32::from(b)).collect(),
        other => return Err(format!("{}: unsupported label dtype {other}", path.display())),
    };
    Ok(Npy { data, shape })
}
