//! TEMPORARY shim (replaced by the real module).
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
#[error("data")]
pub struct DataError;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetName {
    Mnist,
    FashionMnist,
    AnimalMnist,
    Synthetic,
}
impl DatasetName {
    pub fn valid_names() -> Vec<&'static str> {
        vec![]
    }
}
impl std::str::FromStr for DatasetName {
    type Err = ();
    fn from_str(_: &str) -> Result<Self, ()> {
        Err(())
    }
}
pub struct Split {
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
}
pub struct Dataset {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    pub hflip_ok: bool,
    pub train: Split,
    pub test: Split,
}
#[derive(Default)]
pub struct SyntheticOptions {
    pub n_train: usize,
    pub n_test: usize,
    pub classes: usize,
    pub size: usize,
    pub seed: u64,
}
pub struct LoadOptions {
    pub path: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub train_size: Option<usize>,
    pub test_size: Option<usize>,
    pub subset_seed: u64,
    pub synthetic: SyntheticOptions,
}
pub fn load(_: DatasetName, _: &LoadOptions) -> Result<Dataset, DataError> {
    todo!()
}
pub fn fetch(_: DatasetName, _: &LoadOptions) -> Result<Vec<PathBuf>, DataError> {
    todo!()
}
pub fn describe_sources(_: &Path) -> Vec<String> {
    todo!()
}
