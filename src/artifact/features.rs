//! Feature artifacts: an `[N, D]` f32 matrix per split. Raw pixels count as features, so every
//! consumer of features also accepts an images artifact (see [`Features::load_any`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ArtifactError;
use super::{tensors, Images, Split};

/// What the columns are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesMeta {
    /// Columns.
    pub dim: usize,
    /// Where they come from, for people (`res5 of pretrain[p=50]`, `pixels of mnist`).
    pub source: String,
}

/// Features of both splits, row-major.
#[derive(Debug, Clone)]
pub struct Features {
    /// Description.
    pub meta: FeaturesMeta,
    /// Training rows.
    pub train: Vec<f32>,
    /// Test rows.
    pub test: Vec<f32>,
}

impl Features {
    /// Rows of a split.
    pub fn split(&self, split: Split) -> &[f32] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// Rows in a split.
    pub fn count(&self, split: Split) -> usize {
        self.split(split).len() / self.meta.dim.max(1)
    }

    /// Writes `features.safetensors` and `meta.json` into `dir`.
    /// Refuses NaN and infinite values (the format promises finite ones).
    pub fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        for (split, values) in [("train", &self.train), ("test", &self.test)] {
            if let Some(at) = values.iter().position(|v| !v.is_finite()) {
                return Err(ArtifactError::Malformed(format!(
                    "features of {}: row {} of the {split} split holds {} (did the network diverge?)",
                    self.meta.source,
                    at / self.meta.dim.max(1),
                    values[at]
                )));
            }
        }
        let splits = (self.train.as_slice(), self.test.as_slice());
        tensors::save_splits(dir, "features.safetensors", splits, &[self.meta.dim], &self.meta)
    }

    /// Reads what [`Features::save`] wrote.
    pub fn load(dir: &Path) -> Result<Features, ArtifactError> {
        let (meta, train, test) = tensors::load_splits(dir, "features.safetensors")?;
        Ok(Features { meta, train, test })
    }

    /// Loads features, or pixels scaled to [0, 1] when `dir` holds images.
    pub fn load_any(dir: &Path) -> Result<Features, ArtifactError> {
        if dir.join("images.safetensors").exists() {
            let images = Images::load(dir)?;
            let meta = FeaturesMeta { dim: images.image_len(), source: format!("pixels of {}", images.meta.dataset) };
            return Ok(Features {
                meta,
                train: images.as_features(Split::Train),
                test: images.as_features(Split::Test),
            });
        }
        Features::load(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_features_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let meta = FeaturesMeta { dim: 2, source: "res5 of net".into() };
        let f = Features { meta, train: vec![0.0, 1.0, 2.0, f32::NAN], test: vec![0.5, 0.5] };
        let err = f.save(dir.path()).unwrap_err().to_string();
        assert!(err.contains("row 1 of the train split holds NaN"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
