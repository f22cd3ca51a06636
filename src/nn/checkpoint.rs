//! Files: training checkpoints ([`TrainState`]) and finished models ([`save_model`] /
//! [`load_model`]), each a safetensors file plus a JSON side file at the same path with the
//! extension `.json`.
//!
//! | file | safetensors keys | JSON |
//! |---|---|---|
//! | model | var names (`conv1.weight`, `res3.0.bn1.running_var`, ..) | `ModelMeta`: format, version, arch, normalisation |
//! | train state | `weights.<var>`, `momentum.<var>` | format, version, epochs done, normalisation, history, config |
//!
//! Files are written in place; a runner that needs crash safety writes them into a temporary
//! directory and renames it. f32 values round-trip exactly, which is what makes a resumed run
//! bit-identical to an uninterrupted one.

use super::arch::{Arch, Net};
use super::data::Normalization;
use super::run_config::{EpochStats, TrainConfig};
use super::NnError;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

const MODEL_FORMAT: &str = "cfrun-nn-model";
const STATE_FORMAT: &str = "cfrun-nn-train-state";
const VERSION: u32 = 1;

/// The JSON side file of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Always `cfrun-nn-model`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// The architecture to rebuild.
    pub arch: Arch,
    /// The input normalisation.
    pub norm: Normalization,
}

/// Everything needed to continue training bit-exactly after `epoch` finished epochs.
#[derive(Clone)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// All vars, BN running statistics included.
    pub weights: VarMap,
    /// SGD momentum buffers by var name.
    pub momentum: BTreeMap<String, Tensor>,
    /// Input normalisation (computed once, at the start).
    pub norm: Normalization,
    /// Stats of the completed epochs.
    pub history: Vec<EpochStats>,
    /// The run's configuration.
    pub config: TrainConfig,
}

#[derive(Serialize, Deserialize)]
struct StateMeta {
    format: String,
    version: u32,
    epoch: usize,
    norm: Normalization,
    history: Vec<EpochStats>,
    config: TrainConfig,
}

/// The side file of `path`: same name, extension `.json`.
pub fn json_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), NnError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| NnError::Json { path: path.into(), source: e })?;
    std::fs::write(path, text).map_err(|e| NnError::Io { path: path.into(), source: e })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, NnError> {
    let text = std::fs::read_to_string(path).map_err(|e| NnError::Io { path: path.into(), source: e })?;
    serde_json::from_str(&text).map_err(|e| NnError::Json { path: path.into(), source: e })
}

fn check_format(path: &Path, format: &str, version: u32, want: &str) -> Result<(), NnError> {
    if format != want || version != VERSION {
        return Err(NnError::Mismatch(format!(
            "{}: expected {want} version {VERSION}, found {format} version {version}",
            path.display()
        )));
    }
    Ok(())
}

/// Snapshot of a VarMap's tensors by name.
pub(crate) fn var_tensors(varmap: &VarMap) -> BTreeMap<String, Tensor> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    data.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
}

/// Builds the network over `varmap`. With `fresh` the vars are created (then initialised by
/// the caller); otherwise `varmap` must hold exactly the architecture's vars, with the right
/// shapes, or this fails instead of silently adding random ones.
pub fn build_model(arch: &Arch, varmap: &VarMap, device: &Device, fresh: bool) -> Result<Net, NnError> {
    arch.validate()?;
    if !fresh {
        check_fit(arch, varmap, device)?;
    }
    Ok(arch.build(VarBuilder::from_varmap(varmap, DType::F32, device))?)
}

/// The network over detached copies of `varmap`'s tensors (which must fit `arch` exactly), for
/// inference: its outputs record no autograd graph, so a forward pass keeps no feature map alive
/// for a backward that never comes, and the convolutions off the CPU kernels hand back their
/// result without the copy their backward would need. Same forward, same bits.
pub fn build_inference_model(arch: &Arch, varmap: &VarMap, device: &Device) -> Result<Net, NnError> {
    arch.validate()?;
    check_fit(arch, varmap, device)?;
    let tensors = var_tensors(varmap).into_iter().map(|(k, t)| (k, t.detach())).collect();
    Ok(arch.build(VarBuilder::from_tensors(tensors, DType::F32, device))?)
}

/// Fails unless `varmap` holds exactly the vars of `arch`, with their shapes.
fn check_fit(arch: &Arch, varmap: &VarMap, device: &Device) -> Result<(), NnError> {
    // First over the weights themselves, which allocates nothing: a var the architecture
    // declares is missing or has another shape (named). Only then is a reference network built
    // to find the weights it does not use: a model.json declaring a billion classes or widths of
    // 100,000 would otherwise be allocated in full (tens of GB) before any comparison.
    let present = var_tensors(varmap).into_iter().collect();
    arch.build(VarBuilder::from_tensors(present, DType::F32, device)).map_err(|e| {
        NnError::Mismatch(format!("weights do not fit the architecture: {}", crate::candle_error::Brief(&e)))
    })?;
    let reference = VarMap::new();
    arch.build(VarBuilder::from_varmap(&reference, DType::F32, device))?;
    let want: BTreeMap<String, Vec<usize>> =
        var_tensors(&reference).into_iter().map(|(k, t)| (k, t.dims().to_vec())).collect();
    let have: BTreeMap<String, Vec<usize>> =
        var_tensors(varmap).into_iter().map(|(k, t)| (k, t.dims().to_vec())).collect();
    if want != have {
        let missing: Vec<_> = want.keys().filter(|k| !have.contains_key(*k)).take(3).collect();
        let extra: Vec<_> = have.keys().filter(|k| !want.contains_key(*k)).take(3).collect();
        return Err(NnError::Mismatch(format!(
            "weights do not fit the architecture (missing {missing:?}, unexpected {extra:?})"
        )));
    }
    Ok(())
}

/// A VarMap holding `tensors` (moved to `device`) as vars.
pub(crate) fn varmap_from(
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    device: &Device,
) -> Result<VarMap, NnError> {
    let vm = VarMap::new();
    {
        let mut data = vm.data().lock().expect("VarMap lock poisoned");
        for (k, t) in tensors {
            data.insert(k, Var::from_tensor(&t.to_device(device)?.to_dtype(DType::F32)?)?);
        }
    }
    Ok(vm)
}

/// A failed write said with its file when it is the file system's (a full disk, a size limit).
fn with_path(e: candle_core::Error, path: &Path) -> NnError {
    match crate::candle_error::io_error(&e) {
        Some(source) => NnError::Io { path: path.to_path_buf(), source },
        None => NnError::Candle(e),
    }
}

/// Writes a model: `path` (safetensors, var names as keys) and its `.json` side file.
pub fn save_model(path: &Path, weights: &VarMap, arch: &Arch, norm: &Normalization) -> Result<(), NnError> {
    weights.save(path).map_err(|e| with_path(e, path))?;
    let meta = ModelMeta { format: MODEL_FORMAT.into(), version: VERSION, arch: arch.clone(), norm: norm.clone() };
    write_json(&json_path(path), &meta)
}

/// Reads a model written by [`save_model`] onto `device`, checking it fits its architecture.
pub fn load_model(path: &Path, device: &Device) -> Result<(VarMap, ModelMeta), NnError> {
    let meta: ModelMeta = read_json(&json_path(path))?;
    check_format(path, &meta.format, meta.version, MODEL_FORMAT)?;
    let tensors = candle_core::safetensors::load(path, device)?;
    let vm = varmap_from(tensors, device)?;
    build_model(&meta.arch, &vm, device, false)?;
    Ok((vm, meta))
}

impl TrainState {
    /// Writes `path` (weights and momentum, safetensors) and its `.json` side file.
    pub fn save(&self, path: &Path) -> Result<(), NnError> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (k, t) in var_tensors(&self.weights) {
            tensors.insert(format!("weights.{k}"), t);
        }
        for (k, t) in &self.momentum {
            tensors.insert(format!("momentum.{k}"), t.clone());
        }
        candle_core::safetensors::save(&tensors, path).map_err(|e| with_path(e, path))?;
        let meta = StateMeta {
            format: STATE_FORMAT.into(),
            version: VERSION,
            epoch: self.epoch,
            norm: self.norm.clone(),
            history: self.history.clone(),
            config: self.config.clone(),
        };
        write_json(&json_path(path), &meta)
    }

    /// Reads a state written by [`TrainState::save`] onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, NnError> {
        Self::load_with_head(path, device, None)
    }

    /// As [`TrainState::load`], for a network that is the ResNet plus extra vars named
    /// `head_prefix...` (a pretext head): only the other vars are checked against the architecture.
    pub fn load_with_head(path: &Path, device: &Device, head_prefix: Option<&str>) -> Result<Self, NnError> {
        let meta: StateMeta = read_json(&json_path(path))?;
        check_format(path, &meta.format, meta.version, STATE_FORMAT)?;
        let mut weights = Vec::new();
        let mut momentum = BTreeMap::new();
        for (k, t) in candle_core::safetensors::load(path, device)? {
            if let Some(name) = k.strip_prefix("weights.") {
                weights.push((name.to_string(), t));
            } else if let Some(name) = k.strip_prefix("momentum.") {
                momentum.insert(name.to_string(), t);
            } else {
                return Err(NnError::Mismatch(format!("{}: unexpected tensor `{k}`", path.display())));
            }
        }
        let is_head = |k: &str| head_prefix.is_some_and(|p| k.starts_with(p));
        let trunk: Vec<(String, Tensor)> = weights.iter().filter(|(k, _)| !is_head(k)).cloned().collect();
        build_model(&meta.config.arch, &varmap_from(trunk, device)?, device, false)?;
        let weights = varmap_from(weights, device)?;
        Ok(TrainState {
            epoch: meta.epoch,
            weights,
            momentum,
            norm: meta.norm,
            history: meta.history,
            config: meta.config,
        })
    }

    /// Resuming under `cfg` must reproduce the same run: the whole config must match, `epochs`
    /// included (the learning-rate schedule is drawn over them, so the first epochs of a longer
    /// or shorter run are not the same steps).
    pub fn check_resumable(&self, cfg: &TrainConfig) -> Result<(), NnError> {
        if &self.config != cfg {
            return Err(NnError::Mismatch(format!(
                "cannot resume: the checkpoint was made with {:?}, this run uses {cfg:?}",
                self.config
            )));
        }
        if self.epoch > cfg.epochs || self.history.len() != self.epoch {
            return Err(NnError::Mismatch(format!(
                "cannot resume: checkpoint at epoch {} ({} history entries), run has {} epochs",
                self.epoch,
                self.history.len(),
                cfg.epochs
            )));
        }
        Ok(())
    }
}
