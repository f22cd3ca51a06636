//! Data set names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::DataError;

/// Which data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// Handwritten digits, 60k/10k.
    Mnist,
    /// Zalando clothing images, 60k/10k.
    FashionMnist,
    /// Animal silhouettes, 10k split 80/20 by cfrun.
    AnimalMnist,
    /// Procedural shapes generated in memory.
    Synthetic,
}

impl DatasetName {
    /// Every data set, in the order `cfrun data list` shows them.
    pub const ALL: [DatasetName; 4] =
        [DatasetName::Mnist, DatasetName::FashionMnist, DatasetName::AnimalMnist, DatasetName::Synthetic];

    /// The canonical name, as accepted by `FromStr`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::AnimalMnist => "animal-mnist",
            DatasetName::Synthetic => "synthetic",
        }
    }

    /// The valid names, for error messages.
    pub fn valid_names() -> Vec<&'static str> {
        Self::ALL.map(Self::as_str).to_vec()
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = DataError;

    /// Accepts the canonical names case-insensitively, with `_` in place of `-` too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == norm)
            .ok_or_else(|| DataError::UnknownDataset { given: s.to_string(), valid: Self::valid_names().join(", ") })
    }
}
