//! Reading and writing named tensors as safetensors (through candle) plus JSON sidecars.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{de::DeserializeOwned, Serialize};

use crate::ops::OpError;

/// Writes tensors to `path` in safetensors format.
pub fn save(path: &Path, tensors: Vec<(&str, Tensor)>) -> Result<(), OpError> {
    let map: HashMap<String, Tensor> = tensors.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    candle_core::safetensors::save(&map, path).map_err(OpError::from)
}

/// Reads every tensor of a safetensors file onto the CPU.
pub fn load(path: &Path) -> Result<HashMap<String, Tensor>, OpError> {
    if !path.exists() {
        return Err(OpError::Invalid(format!("missing artifact file {}", path.display())));
    }
    candle_core::safetensors::load(path, &Device::Cpu).map_err(OpError::from)
}

/// Takes tensor `name` out of a loaded map, with a clear error if the file lacks it.
pub fn take(map: &mut HashMap<String, Tensor>, name: &str, path: &Path) -> Result<Tensor, OpError> {
    map.remove(name).ok_or_else(|| OpError::Invalid(format!("{} has no tensor `{name}`", path.display())))
}

/// Writes a JSON sidecar.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), OpError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| OpError::Invalid(e.to_string()))?;
    std::fs::write(path, bytes).map_err(OpError::io(format!("writing {}", path.display())))
}

/// Reads a JSON sidecar.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T, OpError> {
    let bytes = std::fs::read(path).map_err(OpError::io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| OpError::Invalid(format!("{}: {e}", path.display())))
}

/// Writes one row-major `[rows, cols]` f32 matrix under `name`.
pub fn save_matrix(path: &Path, name: &str, data: &[f32], rows: usize, cols: usize) -> Result<(), OpError> {
    let t = Tensor::from_slice(data, (rows, cols), &Device::Cpu)?;
    save(path, vec![(name, t)])
}
