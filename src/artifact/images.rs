//! Image artifacts: u8 pixels of both splits plus the data set's description. Clips use the same
//! format with `frames > 1`: each example is `[C, T, H, W]`, channel-major like PyTorch's video
//! tensors.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ArtifactError;
use super::{tensors, Split};

/// What the pixels are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagesMeta {
    /// Data set name, e.g. `fashion-mnist`.
    pub dataset: String,
    /// Channels per image.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Number of classes of the data set's own labels.
    pub num_classes: usize,
    /// Class names, in id order.
    pub class_names: Vec<String>,
    /// Whether a horizontal flip keeps an image's meaning (false for digits).
    pub hflip_ok: bool,
    /// Frames per example: 1 for images, T for clips (`[N, C, T, H, W]`). Left out of the JSON
    /// when 1, so image artifacts keep the bytes (and digests) they had before clips existed.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub frames: usize,
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

/// Pixels of both splits, NCHW u8.
#[derive(Debug, Clone)]
pub struct Images {
    /// Description.
    pub meta: ImagesMeta,
    /// Training pixels.
    pub train: Vec<u8>,
    /// Test pixels.
    pub test: Vec<u8>,
}

impl Images {
    /// Values per image (per clip: all its frames).
    pub fn image_len(&self) -> usize {
        self.meta.channels * self.meta.frames * self.meta.height * self.meta.width
    }

    /// Images in a split.
    pub fn count(&self, split: Split) -> usize {
        self.split(split).len() / self.image_len().max(1)
    }

    /// Pixels of a split.
    pub fn split(&self, split: Split) -> &[u8] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// Writes `images.safetensors` and `meta.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let m = &self.meta;
        let row = if m.frames == 1 {
            vec![m.channels, m.height, m.width]
        } else {
            vec![m.channels, m.frames, m.height, m.width]
        };
        tensors::save_splits(dir, "images.safetensors", (&self.train, &self.test), &row, m)
    }

    /// Reads what [`Images::save`] wrote.
    pub fn load(dir: &Path) -> Result<Images, ArtifactError> {
        let (meta, train, test) = tensors::load_splits(dir, "images.safetensors")?;
        Ok(Images { meta, train, test })
    }

    /// A split as features: pixels scaled to [0, 1], one row per image.
    pub fn as_features(&self, split: Split) -> Vec<f32> {
        self.split(split).iter().map(|&p| f32::from(p) / 255.0).collect()
    }
}
