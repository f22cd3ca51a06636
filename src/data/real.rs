//! Turning verified raw files into train/test splits.

use super::catalog::{FileSpec, ANIMAL_FILES, ANIMAL_LABELS, ANIMAL_PIXELS, IDX_FILES};
use super::error::DataError;
use super::idx::{parse_images, parse_labels};
use super::pickle::{labels_i64, payload};
use super::subset::stratified_split;
use super::Split;

/// Seed of the fixed Animal-MNIST train/test split (the wheel's data date,
/// 2025-02-04); constant so every run and every machine sees the same split.
pub const ANIMAL_SPLIT_SEED: u64 = 20250204;

/// Per mille of each Animal-MNIST class that goes to test (200 = 20%, 200 of 1000).
const ANIMAL_TEST_PER_MILLE: usize = 200;

fn file<'a>(files: &'a [(FileSpec, Vec<u8>)], name: &str) -> Result<&'a [u8], DataError> {
    files.iter().find(|(f, _)| f.name == name).map(|(_, b)| b.as_slice()).ok_or_else(|| DataError::InvalidOption {
        option: "data files".into(),
        reason: format!("{name} was not among the resolved files; this is a bug in cfrun's catalogue"),
    })
}

fn idx_split(
    files: &[(FileSpec, Vec<u8>)],
    images: &str,
    labels: &str,
    shape: (usize, usize),
    num_classes: usize,
) -> Result<Split, DataError> {
    let (n, h, w, pixels) = parse_images(file(files, images)?, images)?;
    if (h, w) != shape {
        return Err(DataError::Idx {
            file: images.into(),
            reason: format!("images are {h}x{w}, expected {}x{}", shape.0, shape.1),
        });
    }
    let labels_v = parse_labels(file(files, labels)?, labels, num_classes)?;
    if labels_v.len() != n {
        return Err(DataError::Idx {
            file: labels.into(),
            reason: format!("{} labels for {n} images in {images}", labels_v.len()),
        });
    }
    Ok(Split { pixels, labels: labels_v })
}

/// Builds MNIST-style splits from the four IDX files.
pub fn idx_splits(
    files: &[(FileSpec, Vec<u8>)],
    shape: (usize, usize),
    num_classes: usize,
) -> Result<(Split, Split), DataError> {
    let [tr_i, tr_l, te_i, te_l] = IDX_FILES;
    Ok((idx_split(files, tr_i, tr_l, shape, num_classes)?, idx_split(files, te_i, te_l, shape, num_classes)?))
}

/// Builds the fixed, seeded, stratified 80/20 Animal-MNIST split from the two pickles.
pub fn animal_splits(files: &[(FileSpec, Vec<u8>)], num_classes: usize) -> Result<(Split, Split), DataError> {
    let [data_name, label_name] = ANIMAL_FILES;
    let pixels = payload(file(files, data_name)?, &ANIMAL_PIXELS, data_name)?.to_vec();
    let labels = labels_i64(file(files, label_name)?, &ANIMAL_LABELS, label_name, num_classes)?;
    let all = Split { pixels, labels };
    stratified_split(&all, num_classes, 28 * 28, ANIMAL_TEST_PER_MILLE, ANIMAL_SPLIT_SEED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{catalog, DatasetName};

    /// The catalog's Animal-MNIST split sizes are what the split rule makes of the pinned label
    /// file (1,000 images of each of the 10 animals, read from the files the catalog pins): plans
    /// refuse subsets against them before any file is read, so they must not drift apart.
    #[test]
    fn the_catalogued_animal_split_is_what_the_split_rule_makes() {
        let info = catalog::info(DatasetName::AnimalMnist).expect("a real data set");
        let classes = info.class_names.len();
        let labels: Vec<u32> = (0..10_000).map(|i| (i % classes) as u32).collect();
        let all = Split { pixels: vec![0; labels.len()], labels };
        let (train, test) = stratified_split(&all, classes, 1, ANIMAL_TEST_PER_MILLE, ANIMAL_SPLIT_SEED).unwrap();
        assert_eq!((train.labels.len(), test.labels.len()), (info.n_train, info.n_test));
    }
}
