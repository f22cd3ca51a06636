//! Reading and writing named tensors as safetensors (through candle) plus JSON sidecars.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, WithDType};
use serde::{de::DeserializeOwned, Serialize};

use super::ArtifactError;

/// Writes tensors to `path` in safetensors format.
pub fn save(path: &Path, tensors: Vec<(&str, Tensor)>) -> Result<(), ArtifactError> {
    let map: HashMap<String, Tensor> = tensors.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    candle_core::safetensors::save(&map, path).map_err(|e| match crate::candle_error::io_error(&e) {
        Some(source) => ArtifactError::Io { context: format!("writing {}", path.display()), source },
        None => ArtifactError::Tensor(e),
    })
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

/// Writes the `train` and `test` splits of a per-example artifact into `dir/file` (each
/// `[N, ...row]`, N from its length) and `meta` into `dir/meta.json`: the layout of images,
/// features and multi-labels.
pub fn save_splits<T: WithDType, M: Serialize>(
    dir: &Path,
    file: &str,
    (train, test): (&[T], &[T]),
    row: &[usize],
    meta: &M,
) -> Result<(), ArtifactError> {
    std::fs::create_dir_all(dir).map_err(ArtifactError::io(format!("creating {}", dir.display())))?;
    let row_len = row.iter().product::<usize>().max(1);
    let shape =
        |data: &[T]| -> Vec<usize> { std::iter::once(data.len() / row_len).chain(row.iter().copied()).collect() };
    let train = Tensor::from_slice(train, shape(train), &Device::Cpu)?;
    let test = Tensor::from_slice(test, shape(test), &Device::Cpu)?;
    save(&dir.join(file), vec![("train", train), ("test", test)])?;
    save_json(&dir.join("meta.json"), meta)
}

/// Reads what [`save_splits`] wrote: the metadata and both splits, flattened.
pub fn load_splits<T: WithDType, M: DeserializeOwned>(
    dir: &Path,
    file: &str,
) -> Result<(M, Vec<T>, Vec<T>), ArtifactError> {
    let meta: M = load_json(&dir.join("meta.json"))?;
    let path = dir.join(file);
    let mut map = load(&path)?;
    let train = take(&mut map, "train", &path)?.flatten_all()?.to_vec1::<T>()?;
    let test = take(&mut map, "test", &path)?.flatten_all()?.to_vec1::<T>()?;
    Ok((meta, train, test))
}

/// Writes one row-major `[rows, cols]` f32 matrix under `name`.
pub fn save_matrix(path: &Path, name: &str, data: &[f32], rows: usize, cols: usize) -> Result<(), ArtifactError> {
    let t = Tensor::from_slice(data, (rows, cols), &Device::Cpu)?;
    save(path, vec![(name, t)])
}
