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
pub mod known_fields;
pub mod labels;
pub mod metrics;
pub mod multilabel;
pub mod permutations;
mod strict_json;
pub mod tensors;
pub mod validate;
pub use tensors as tensors_io;

pub use features::{Features, FeaturesMeta};
pub use images::{Images, ImagesMeta};
pub use labels::{Labels, LabelsMeta};
pub use metrics::Metrics;
pub use multilabel::{MultiLabels, MultiLabelsMeta};
pub use permutations::{Permutations, PermutationsMeta};

/// What an output holds; an input accepts one or more kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Images of a train and a test split (u8, NCHW), with the data set's metadata.
    Images,
    /// Video clips of a train and a test split (u8, NCTHW); stored like images with `frames > 1`.
    Clips,
    /// One class id per image of each split.
    Labels,
    /// An `[N, D]` f32 matrix per split.
    Features,
    /// Trained network weights and architecture.
    Model,
    /// Scalar results (accuracy, NMI, ...).
    Metrics,
    /// Tables and figures for people.
    Report,
    /// Jigsaw's permutation set.
    Permutations,
    /// A set of classes per image of each split (multi-hot).
    MultiLabels,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Kind::Images => "images",
            Kind::Clips => "clips",
            Kind::Labels => "labels",
            Kind::Features => "features",
            Kind::Model => "model",
            Kind::Metrics => "metrics",
            Kind::Report => "report",
            Kind::Permutations => "permutations",
            Kind::MultiLabels => "multilabels",
        };
        f.write_str(s)
    }
}

/// A stage output that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A safetensors file could not be read or written.
    #[error("tensor error: {}", crate::candle_error::Brief(.0))]
    Tensor(#[from] candle_core::Error),
    /// The bytes do not hold what the format promises.
    #[error("{0}")]
    Malformed(String),
}

impl ArtifactError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArtifactError {
        let context = context.into();
        move |source| ArtifactError::Io { context, source }
    }
}

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
