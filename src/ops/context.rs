//! What a running op sees: its parameters, its inputs' folders, a staging folder for outputs,
//! a checkpoint folder tied to its recipe key, the device and a progress handle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use super::{Kind, OpError};
use crate::exec::progress::Progress;
use crate::graph::Instance;

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
    /// The instance being run.
    pub instance: &'a Instance,
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
    pub progress: &'a Progress,
}

impl StageCtx<'_> {
    /// The instance's parameters as the op's typed struct.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, OpError> {
        serde_json::from_value(self.instance.params.clone())
            .map_err(|e| OpError::Invalid(format!("parameters of {}: {e}", self.instance.name)))
    }

    /// The single artifact bound to `slot`.
    pub fn input(&self, slot: &str) -> Result<&InputArtifact, OpError> {
        self.inputs
            .get(slot)
            .and_then(|v| v.first())
            .ok_or_else(|| OpError::Invalid(format!("{}: input `{slot}` is not set", self.instance.name)))
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
