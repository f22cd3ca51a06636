//! Multi-label artifacts: the *set* of classes present in each image of each split, stored as a
//! multi-hot u8 matrix `[N, num_classes]` (1 = present). Kept apart from [`super::Labels`], whose
//! single class per image is what `train`, `kmeans` and `linear_probe` read.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ArtifactError;
use super::{tensors, Split};

/// What the columns mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiLabelsMeta {
    /// Columns of the multi-hot matrix.
    pub num_classes: usize,
    /// Names of the classes, in column order.
    #[serde(default)]
    pub class_names: Vec<String>,
    /// Where the sets come from, for people.
    pub source: String,
}

/// Multi-hot label sets of both splits, row-major `[N, num_classes]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLabels {
    /// Description.
    pub meta: MultiLabelsMeta,
    /// Training rows.
    pub train: Vec<u8>,
    /// Test rows.
    pub test: Vec<u8>,
}

impl MultiLabels {
    /// Rows of a split.
    pub fn split(&self, split: Split) -> &[u8] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// Images in a split.
    pub fn count(&self, split: Split) -> usize {
        self.split(split).len() / self.meta.num_classes.max(1)
    }

    /// Writes `multilabels.safetensors` and `meta.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let splits = (self.train.as_slice(), self.test.as_slice());
        tensors::save_splits(dir, "multilabels.safetensors", splits, &[self.meta.num_classes], &self.meta)
    }

    /// Reads what [`MultiLabels::save`] wrote.
    pub fn load(dir: &Path) -> Result<MultiLabels, ArtifactError> {
        let (meta, train, test) = tensors::load_splits(dir, "multilabels.safetensors")?;
        Ok(MultiLabels { meta, train, test })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MultiLabelsMeta { num_classes: 3, class_names: vec![], source: "t".into() };
        let m = MultiLabels { meta, train: vec![1, 0, 1, 0, 1, 0], test: vec![0, 0, 1] };
        m.save(dir.path()).unwrap();
        let back = MultiLabels::load(dir.path()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.count(Split::Train), 2);
    }
}
