//! Metric artifacts: named numbers plus free-form details, as `metrics.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::tensors;
use super::ArtifactError;

/// Scalar results of a stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Name to value, e.g. `top1`.
    pub values: BTreeMap<String, f64>,
    /// Anything else worth keeping (per-class accuracy, curves).
    #[serde(default)]
    pub details: serde_json::Value,
}

impl Metrics {
    /// Writes `metrics.json` into `dir`. Refuses NaN and infinite values: JSON has no such
    /// numbers (they would be written as `null`, which no reader accepts).
    pub fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        if let Some((name, v)) = self.values.iter().find(|(_, v)| !v.is_finite()) {
            return Err(ArtifactError::Malformed(format!("metric `{name}` is {v}, not a finite number")));
        }
        std::fs::create_dir_all(dir).map_err(ArtifactError::io(format!("creating {}", dir.display())))?;
        tensors::save_json(&dir.join("metrics.json"), self)
    }

    /// Reads what [`Metrics::save`] wrote.
    pub fn load(dir: &Path) -> Result<Metrics, ArtifactError> {
        tensors::load_json(&dir.join("metrics.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loading stays lenient: a command's metrics published before fields were checked (an
    /// extra field) still read, as the key that serves them has not changed.
    #[test]
    fn a_published_file_with_an_extra_field_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metrics.json"), r#"{"values": {"top1": 0.5}, "details": {}, "note": "x"}"#)
            .unwrap();
        assert_eq!(Metrics::load(dir.path()).unwrap().values["top1"], 0.5);
    }

    #[test]
    fn non_finite_metrics_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Metrics::default();
        m.values.insert("train_loss".into(), f64::INFINITY);
        let err = m.save(dir.path()).unwrap_err().to_string();
        assert!(err.contains("`train_loss` is inf"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
