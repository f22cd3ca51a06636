//! Data sets for cfrun: MNIST, Fashion-MNIST, Animal-MNIST and a synthetic shape set, alone or
//! pooled (`fashion-mnist+animal-mnist`).
//!
//! Real files are found through a resolution chain (cache, explicit path,
//! `$CFRUN_DATA`, system install, canonical URL, package client), verified
//! against pinned SHA-256 hashes, and cached decompressed under
//! `<data_dir>/<dataset>/`.

pub mod catalog;
mod describe;
mod download;
mod error;
mod external;
pub mod hashtags;
mod idx;
mod name;
mod pickle;
mod pool;
mod real;
mod resolve;
mod store;
mod subset;
mod synthetic;
mod unpack;

#[cfg(test)]
mod resolve_tests;

use std::path::PathBuf;
use std::time::Instant;

use crate::artifact::ImagesMeta;

pub use describe::{describe_source, describe_sources, SourceInfo};
pub use error::DataError;
pub use name::DatasetName;
pub use pool::{load_pool, members as pool_members};
pub use real::ANIMAL_SPLIT_SEED;
pub use resolve::ENV_VAR;
pub use store::{clear_leftovers, CacheState};
pub use subset::{class_counts, stratified_indices, STREAM_TEST, STREAM_TRAIN};
pub use synthetic::{hflip_ok as synthetic_hflip_ok, SyntheticOptions, MAX_CLASSES as SYNTHETIC_MAX_CLASSES};

/// Images and labels of one split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// N*C*H*W bytes, row-major (NCHW), 0..255.
    pub pixels: Vec<u8>,
    /// N labels in `0..num_classes`.
    pub labels: Vec<u32>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A loaded data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// What the pixels are, as the `images` artifact records it (`dataset`: the canonical name,
    /// e.g. `fashion-mnist`; one frame).
    pub meta: ImagesMeta,
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
}

impl Dataset {
    /// Bytes per image (C*H*W).
    pub fn image_len(&self) -> usize {
        self.meta.channels * self.meta.height * self.meta.width
    }
}

/// How to find and subset a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Explicit directory given in the experiment file.
    pub path: Option<PathBuf>,
    /// Where verified raw files are cached (the runner passes `<cache>/data`).
    pub data_dir: PathBuf,
    /// Size of a seeded stratified train subset; `None` keeps the whole split.
    pub train_size: Option<usize>,
    /// Size of a seeded stratified test subset; `None` keeps the whole split.
    pub test_size: Option<usize>,
    /// Seed of the subsets.
    pub subset_seed: u64,
    /// Parameters of the synthetic set.
    pub synthetic: SyntheticOptions,
}

impl LoadOptions {
    /// Options with everything but the cache directory at its default.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            path: None,
            data_dir: data_dir.into(),
            train_size: None,
            test_size: None,
            subset_seed: 0,
            synthetic: SyntheticOptions::default(),
        }
    }
}

/// Loads a data set, fetching and verifying its files first if needed.
pub fn load(name: DatasetName, opts: &LoadOptions) -> Result<Dataset, DataError> {
    for (option, size) in [("train_size", opts.train_size), ("test_size", opts.test_size)] {
        if size == Some(0) {
            return Err(DataError::InvalidOption {
                option: option.into(),
                reason: "0 examples cannot be trained or evaluated on; use at least 1 or leave it unset".into(),
            });
        }
    }
    let start = Instant::now();
    let (mut ds, source) = match (catalog::info(name), catalog::spec(name)) {
        (Some(info), Some(spec)) => {
            let resolved = resolver(opts).resolve(&spec)?;
            let num_classes = info.class_names.len();
            let (c, h, w) = info.shape;
            let (train, test) = match name {
                DatasetName::AnimalMnist => real::animal_splits(&resolved.files, num_classes)?,
                _ => real::idx_splits(&resolved.files, (h, w), num_classes)?,
            };
            let meta = ImagesMeta {
                dataset: name.to_string(),
                channels: c,
                height: h,
                width: w,
                num_classes,
                class_names: info.class_names.iter().map(|s| s.to_string()).collect(),
                hflip_ok: info.hflip_ok,
                frames: 1,
            };
            let ds = Dataset { meta, train, test };
            (ds, resolved.source)
        }
        _ => (synthetic_dataset(&opts.synthetic)?, "generated".to_string()),
    };
    let item = ds.image_len();
    let seed = opts.subset_seed;
    let k = ds.meta.num_classes;
    ds.train = subset::subset(ds.train, opts.train_size, k, item, seed, subset::STREAM_TRAIN, "train")?;
    ds.test = subset::subset(ds.test, opts.test_size, k, item, seed, subset::STREAM_TEST, "test")?;
    tracing::info!(
        dataset = %name, %source, train = ds.train.len(), test = ds.test.len(),
        ms = start.elapsed().as_millis() as u64, "loaded data set"
    );
    Ok(ds)
}

fn synthetic_dataset(opts: &SyntheticOptions) -> Result<Dataset, DataError> {
    let (train, test) = synthetic::generate(opts)?;
    let meta = ImagesMeta {
        dataset: DatasetName::Synthetic.to_string(),
        channels: 1,
        height: opts.size,
        width: opts.size,
        num_classes: opts.classes,
        class_names: synthetic::SHAPES[..opts.classes].iter().map(|s| s.to_string()).collect(),
        hflip_ok: synthetic::hflip_ok(opts.classes),
        frames: 1,
    };
    Ok(Dataset { meta, train, test })
}

fn resolver(opts: &LoadOptions) -> resolve::Resolver {
    resolve::Resolver::new(&opts.data_dir, opts.path.as_deref())
}

/// Ensures the raw files are present and verified in the cache and returns their paths
/// (empty for the synthetic set, which has no files).
pub fn fetch(name: DatasetName, opts: &LoadOptions) -> Result<Vec<PathBuf>, DataError> {
    match catalog::spec(name) {
        Some(spec) => Ok(resolver(opts).resolve(&spec)?.paths),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_errors_list_valid_names() {
        for n in DatasetName::ALL {
            assert_eq!(n.to_string().parse::<DatasetName>().expect("round trip"), n);
        }
        assert_eq!("Fashion_MNIST".parse::<DatasetName>().expect("lenient"), DatasetName::FashionMnist);
        let msg = "cifar".parse::<DatasetName>().expect_err("unknown").to_string();
        assert!(msg.contains("fashion-mnist") && msg.contains("cifar"), "{msg}");
    }

    #[test]
    fn synthetic_load_applies_subsets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = LoadOptions::new(dir.path());
        opts.synthetic = SyntheticOptions { n_train: 300, n_test: 100, size: 16, ..Default::default() };
        opts.train_size = Some(55);
        let ds = load(DatasetName::Synthetic, &opts).expect("synthetic loads");
        assert_eq!((ds.train.len(), ds.test.len()), (55, 100));
        assert_eq!(ds.train.pixels.len(), 55 * 16 * 16);
        assert_eq!(ds.meta.class_names[0], "circle");
        assert!(ds.meta.hflip_ok);
        opts.test_size = Some(101);
        let msg = load(DatasetName::Synthetic, &opts).expect_err("too big").to_string();
        assert!(msg.contains("only 100"), "{msg}");
        assert!(fetch(DatasetName::Synthetic, &opts).expect("nothing to fetch").is_empty());
    }

    #[test]
    fn describe_reports_missing_cache_without_touching_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = LoadOptions::new(dir.path().join("nowhere"));
        let info = describe_source(DatasetName::FashionMnist, &opts);
        assert_eq!(info.cache, CacheState::Missing);
        assert_eq!(info.num_classes, 10);
        assert!(info.to_string().contains("MIT"));
        assert!(!dir.path().join("nowhere").exists());
        let all = describe_sources(dir.path());
        assert_eq!(all.len(), DatasetName::ALL.len());
        let json = serde_json::to_string(&all).expect("serialisable");
        assert!(json.contains("\"cache\":\"missing\""), "{json}");
        assert_eq!(describe_source(DatasetName::Synthetic, &opts).cache, CacheState::NotApplicable);
    }
}
