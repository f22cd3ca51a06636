//! Reading and writing named tensors as safetensors (through candle) plus JSON sidecars.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{de::DeserializeOwned, Serialize};

use super::ArtifactError;

/// Writes tensors to `path` in safetensors format.
pub fn save(path: &Path, tensors: Vec<(&str, Tensor)>) -> Result<(), ArtifactError> {
    let map: HashMap<String, Tensor> = tensors.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    candle_core::safetensors::save(&map, path).map_err(ArtifactError::from)
}

/// Reads every tensor of a safetensors file onto the CPU.
pub fn load(path: &Path) -> Result<HashMap<String, Tensor>, ArtifactError> {
    if !path.exists() {
        return Err(ArtifactError::Malformed(format!("missing artifact file {}", path.display())));
    }
    candle_core::safetensors::load(path, &Device::Cpu).map_err(ArtifactError::from)
}

/// Takes tensor `name` out of a loaded map, with a clear error if the file lacks it.
pub fn take(map: &mut HashMap<String, Tensor>, name: &str, path: &Path) -> Result<Tensor, ArtifactError> {
    map.remove(name).ok_or_else(|| ArtifactError::Malformed(format!("{} has no tensor `{name}`", path.display())))
}

/// Writes a JSON sidecar.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ArtifactError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| ArtifactError::Malformed(e.to_string()))?;
    std::fs::write(path, bytes).map_err(ArtifactError::io(format!("writing {}", path.display())))
}

/// Reads a JSON sidecar.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T, ArtifactError> {
    let bytes = std::fs::read(path).map_err(ArtifactError::io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| ArtifactError::Malformed(format!("{}: {e}", path.display())))
}

/// Writes one row-major `[rows, cols]` f32 matrix under `name`.
pub fn save_matrix(path: &Path, name: &str, data: &[f32], rows: usize, cols: usize) -> Result<(), ArtifactError> {
    let t = Tensor::from_slice(data, (rows, cols), &Device::Cpu)?;
    save(path, vec![(name, t)])
}
