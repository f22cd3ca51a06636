//! Label artifacts: one class id per image of each split, and for weakly labelled data (hashtags)
//! the whole set of ids each image carries.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::ArtifactError;
use super::{tensors, Split};

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
    /// For tag vocabularies: the data set classes each tag denotes (none for non-visual tags,
    /// two or more for polysemous ones). Empty for ordinary labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_classes: Vec<Vec<u32>>,
}

/// Several ids per image, stored flat: image `i` carries `ids[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TagSets {
    /// `n + 1` offsets into `ids`, starting at 0.
    pub offsets: Vec<u32>,
    /// The ids, image after image, ascending within an image.
    pub ids: Vec<u32>,
}

impl TagSets {
    /// Packs per-image sets (each is sorted and deduplicated).
    pub fn from_sets(sets: &[Vec<u32>]) -> TagSets {
        let mut out = TagSets { offsets: Vec::with_capacity(sets.len() + 1), ids: Vec::new() };
        out.offsets.push(0);
        for set in sets {
            let mut s = set.clone();
            s.sort_unstable();
            s.dedup();
            out.ids.extend(s);
            out.offsets.push(out.ids.len() as u32);
        }
        out
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids image `i` carries.
    pub fn get(&self, i: usize) -> &[u32] {
        &self.ids[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Every image's ids, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u32]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Offsets that start at 0, never decrease and end at `ids.len()`, and ids below `num_classes`.
    fn check(&self, num_classes: usize, what: &str) -> Result<(), ArtifactError> {
        let ok = self.offsets.first() == Some(&0)
            && self.offsets.windows(2).all(|w| w[0] <= w[1])
            && *self.offsets.last().unwrap_or(&0) as usize == self.ids.len()
            && self.ids.iter().all(|&t| (t as usize) < num_classes);
        if ok {
            Ok(())
        } else {
            Err(ArtifactError::Malformed(format!("{what}: malformed tag sets (offsets or ids out of range)")))
        }
    }
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
    /// Every id each image carries (train, test), for multi-label sources such as `weak_tags`;
    /// `train`/`test` then hold one representative id per image.
    pub tags: Option<(TagSets, TagSets)>,
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
    pub fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        std::fs::create_dir_all(dir).map_err(ArtifactError::io(format!("creating {}", dir.display())))?;
        let train = Tensor::from_slice(&self.train, self.train.len(), &Device::Cpu)?;
        let test = Tensor::from_slice(&self.test, self.test.len(), &Device::Cpu)?;
        let mut named = vec![("train", train), ("test", test)];
        if let Some((tr, te)) = &self.tags {
            for (name, v) in [
                ("train_tag_offsets", &tr.offsets),
                ("train_tag_ids", &tr.ids),
                ("test_tag_offsets", &te.offsets),
                ("test_tag_ids", &te.ids),
            ] {
                named.push((name, Tensor::from_slice(v, v.len(), &Device::Cpu)?));
            }
        }
        tensors::save(&dir.join("labels.safetensors"), named)?;
        tensors::save_json(&dir.join("meta.json"), &self.meta)
    }

    /// Reads what [`Labels::save`] wrote.
    pub fn load(dir: &Path) -> Result<Labels, ArtifactError> {
        let meta: LabelsMeta = tensors::load_json(&dir.join("meta.json"))?;
        let path = dir.join("labels.safetensors");
        let mut map = tensors::load(&path)?;
        let train = tensors::take(&mut map, "train", &path)?.to_vec1::<u32>()?;
        let test = tensors::take(&mut map, "test", &path)?.to_vec1::<u32>()?;
        let tags = if map.contains_key("train_tag_offsets") {
            let mut sets = |split: &str| -> Result<TagSets, ArtifactError> {
                let offsets = tensors::take(&mut map, &format!("{split}_tag_offsets"), &path)?.to_vec1::<u32>()?;
                let ids = tensors::take(&mut map, &format!("{split}_tag_ids"), &path)?.to_vec1::<u32>()?;
                Ok(TagSets { offsets, ids })
            };
            let (tr, te) = (sets("train")?, sets("test")?);
            let what = path.display().to_string();
            tr.check(meta.num_classes, &what)?;
            te.check(meta.num_classes, &what)?;
            if tr.len() != train.len() || te.len() != test.len() {
                return Err(ArtifactError::Malformed(format!(
                    "{what}: tag sets and labels disagree on the image count"
                )));
            }
            Some((tr, te))
        } else {
            None
        };
        Ok(Labels { meta, train, test, tags })
    }
}
