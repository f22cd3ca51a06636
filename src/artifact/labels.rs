//! Label artifacts: one class id per image of each split.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{tensors, Split};
use crate::ops::OpError;

/// What the ids mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelsMeta {
    /// Ids are in `0..num_classes`.
    pub num_classes: usize,
    /// Names of the ids, when they have names (data set classes); empty for cluster ids.
    #[serde(default)]
    pub class_names: Vec<String>,
    /// Where the labels come from, for people (`fashion-mnist`, `kmeans k=50`).
    pub source: String,
}

/// Labels of both splits.
#[derive(Debug, Clone)]
pub struct Labels {
    /// Description.
    pub meta: LabelsMeta,
    /// Training labels.
    pub train: Vec<u32>,
    /// Test labels.
    pub test: Vec<u32>,
}

impl Labels {
    /// Labels of a split.
    pub fn split(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// Writes `labels.safetensors` and `meta.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), OpError> {
        std::fs::create_dir_all(dir).map_err(OpError::io(format!("creating {}", dir.display())))?;
        let train = Tensor::from_slice(&self.train, self.train.len(), &Device::Cpu)?;
        let test = Tensor::from_slice(&self.test, self.test.len(), &Device::Cpu)?;
        tensors::save(&dir.join("labels.safetensors"), vec![("train", train), ("test", test)])?;
        tensors::save_json(&dir.join("meta.json"), &self.meta)
    }

    /// Reads what [`Labels::save`] wrote.
    pub fn load(dir: &Path) -> Result<Labels, OpError> {
        let meta: LabelsMeta = tensors::load_json(&dir.join("meta.json"))?;
        let path = dir.join("labels.safetensors");
        let mut map = tensors::load(&path)?;
        let train = tensors::take(&mut map, "train", &path)?.to_vec1::<u32>()?;
        let test = tensors::take(&mut map, "test", &path)?.to_vec1::<u32>()?;
        Ok(Labels { meta, train, test })
    }
}
