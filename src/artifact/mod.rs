//! On-disk formats of stage outputs. Every output is a folder holding a safetensors file and a
//! small JSON of metadata; tensors are split-keyed (`train`, `test`).
//!
//! | kind | file | tensors | meta |
//! |---|---|---|---|
//! | images | `images.safetensors` | `train`, `test`: u8 `[N, C, H, W]` | [`ImagesMeta`] |
//! | clips | `images.safetensors` | `train`, `test`: u8 `[N, C, T, H, W]` | [`ImagesMeta`] with `frames = T` |
//! | labels | `labels.safetensors` | `train`, `test`: u32 `[N]`; tag sets add `{split}_tag_offsets` u32 `[N+1]` and `{split}_tag_ids` | [`LabelsMeta`] (+ `tag_classes`) |
//! | features | `features.safetensors` | `train`, `test`: f32 `[N, D]` | [`FeaturesMeta`] |
//! | metrics | `metrics.json` | | flat name -> number map plus details |
//! | multilabels | `multilabels.safetensors` | `train`, `test`: u8 `[N, K]` multi-hot | [`MultiLabelsMeta`] |
//! | permutations | `permutations.safetensors` | `perms`: u8 `[P, 9]` | [`PermutationsMeta`] |

pub mod features;
pub mod header;
pub mod images;
pub mod labels;
pub mod metrics;
pub mod multilabel;
pub mod permutations;
pub mod tensors;
pub mod validate;
pub use tensors as tensors_io;

pub use features::{Features, FeaturesMeta};
pub use images::{Images, ImagesMeta};
pub use labels::{Labels, LabelsMeta};
pub use metrics::Metrics;
pub use multilabel::{MultiLabels, MultiLabelsMeta};
pub use permutations::{Permutations, PermutationsMeta};

/// The two splits every artifact carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The split models and probes are fitted on.
    Train,
    /// The held-out split probes are scored on.
    Test,
}

impl Split {
    /// Both splits.
    pub const ALL: [Split; 2] = [Split::Train, Split::Test];

    /// Tensor name.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}
