//! What a running op sees: its parameters, its inputs' folders, a staging folder for outputs,
//! a checkpoint folder tied to its recipe key, the device and a progress handle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::Value as Json;

use super::{Kind, OpError};

/// How a running op reports the progress of its long steps; the executor decides how it shows
/// (a terminal bar, periodic log lines).
pub trait StageProgress: Sync {
    /// Starts a step of `total` units (`label`: "epoch 3/10", "iterations").
    fn begin(&self, label: &str, total: u64);
    /// Advances the current step.
    fn inc(&self, n: u64);
    /// A short status beside the step (the current loss).
    fn message(&self, text: &str);
    /// Ends the current step.
    fn finish(&self);
}

/// One upstream output as seen by a running op.
#[derive(Debug, Clone)]
pub struct InputArtifact {
    /// Folder holding the output's files.
    pub dir: PathBuf,
    /// What it holds.
    pub kind: Kind,
    /// The upstream instance's name.
    pub instance: String,
    /// The upstream stage's name.
    pub stage: String,
    /// The upstream instance's axis values.
    pub axes: BTreeMap<String, Json>,
}

/// The environment of one running stage instance.
pub struct StageCtx<'a> {
    /// The instance's name, for messages.
    pub name: &'a str,
    /// Its canonical parameters (typed by the op before `run`).
    pub params: &'a Json,
    /// Input slot to the upstream outputs it reads.
    pub inputs: BTreeMap<String, Vec<InputArtifact>>,
    /// Where outputs are staged (one subfolder per output); published atomically afterwards.
    pub staging: &'a Path,
    /// Survives a crash of this instance and is removed once it is published.
    pub checkpoint_dir: PathBuf,
    /// Where verified raw data sets are kept.
    pub data_dir: PathBuf,
    /// Where tensors live.
    pub device: &'a Device,
    /// Progress reporting.
    pub progress: &'a dyn StageProgress,
    /// Canonical parameters of the other instances of this stage that read the same inputs
    /// (empty where the plan is not known, as in `cfrun exec`): work an op can share.
    pub siblings: &'a [Json],
    /// What the op adds to the result's provenance, beside what every result records (a
    /// command's last lines of output): kept with the result, never part of its bytes.
    pub notes: serde_json::Map<String, Json>,
}

impl StageCtx<'_> {
    /// The single artifact bound to `slot`.
    pub fn input(&self, slot: &str) -> Result<&InputArtifact, OpError> {
        self.inputs
            .get(slot)
            .and_then(|v| v.first())
            .ok_or_else(|| OpError::Invalid(format!("{}: input `{slot}` is not set", self.name)))
    }

    /// The artifact bound to `slot`, if the stage set it.
    pub fn optional_input(&self, slot: &str) -> Option<&InputArtifact> {
        self.inputs.get(slot).and_then(|v| v.first())
    }

    /// Every artifact bound to a gathering slot.
    pub fn gathered(&self, slot: &str) -> &[InputArtifact] {
        self.inputs.get(slot).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The folder an output must be written to.
    pub fn output_dir(&self, output: &str) -> PathBuf {
        self.staging.join(output)
    }
}
