//! Seeded stratified subsets and splits.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::error::DataError;
use super::Split;

/// ChaCha stream for the train subset, so train and test draws are independent.
pub const STREAM_TRAIN: u64 = 1;
/// ChaCha stream for the test subset.
pub const STREAM_TEST: u64 = 2;
/// ChaCha stream for splits made by cfrun (Animal-MNIST).
pub const STREAM_SPLIT: u64 = 3;

/// Indices of each class, in data order.
fn by_class(labels: &[u32], num_classes: usize) -> Result<Vec<Vec<usize>>, DataError> {
    let mut groups = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        let slot = groups.get_mut(l as usize).ok_or(DataError::BadLabel {
            file: "split".into(),
            index: i,
            value: i64::from(l),
            num_classes,
        })?;
        slot.push(i);
    }
    Ok(groups)
}

/// How many to take per class: as equal as class sizes allow, summing to `count`.
///
/// Water-filling: every class gets `min(size, level)` for the largest level that
/// does not overshoot; the remainder goes one each to classes that still have
/// spare examples, picked by the seeded generator so no class is favoured.
fn quotas(sizes: &[usize], count: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let filled = |level: usize| sizes.iter().map(|&s| s.min(level)).sum::<usize>();
    let (mut lo, mut hi) = (0usize, sizes.iter().copied().max().unwrap_or(0));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if filled(mid) <= count {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut take: Vec<usize> = sizes.iter().map(|&s| s.min(lo)).collect();
    let mut spare: Vec<usize> = (0..sizes.len()).filter(|&c| sizes[c] > lo).collect();
    spare.shuffle(rng);
    for c in spare.into_iter().take(count - filled(lo)) {
        take[c] += 1;
    }
    take
}

/// Picks exactly `count` indices, classes as balanced as possible, in ascending order.
///
/// Ascending order keeps the subset's examples in the data's own order, which
/// makes the result deterministic and easy to relate back to the full split.
pub fn stratified_indices(
    labels: &[u32],
    num_classes: usize,
    count: usize,
    seed: u64,
    stream: u64,
    split: &str,
) -> Result<Vec<usize>, DataError> {
    if count > labels.len() {
        return Err(DataError::SubsetTooLarge { split: split.to_string(), requested: count, available: labels.len() });
    }
    let mut groups = by_class(labels, num_classes)?;
    let mut r = crate::rng::chacha_stream(seed, stream);
    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    let take = quotas(&sizes, count, &mut r);
    let mut picked = Vec::with_capacity(count);
    for (group, n) in groups.iter_mut().zip(take) {
        group.shuffle(&mut r);
        picked.extend_from_slice(&group[..n]);
    }
    picked.sort_unstable();
    Ok(picked)
}

/// Copies the examples at `indices` out of `split` (each `item` pixels long).
pub fn gather(split: &Split, indices: &[usize], item: usize) -> Split {
    let mut pixels = Vec::with_capacity(indices.len() * item);
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        pixels.extend_from_slice(&split.pixels[i * item..(i + 1) * item]);
        labels.push(split.labels[i]);
    }
    Split { pixels, labels }
}

/// Applies an optional stratified subset to a split.
pub fn subset(
    split: Split,
    size: Option<usize>,
    num_classes: usize,
    item: usize,
    seed: u64,
    stream: u64,
    name: &str,
) -> Result<Split, DataError> {
    match size {
        None => Ok(split),
        Some(n) if n == split.labels.len() => Ok(split),
        Some(n) => {
            let idx = stratified_indices(&split.labels, num_classes, n, seed, stream, name)?;
            Ok(gather(&split, &idx, item))
        }
    }
}

/// Splits into train/test with `test_per_mille`/1000 of each class in test.
///
/// Both halves come back in a seeded shuffled order, because the source data
/// may be sorted by class and a class-sorted train split would mislead any
/// consumer that takes a prefix.
pub fn stratified_split(
    all: &Split,
    num_classes: usize,
    item: usize,
    test_per_mille: usize,
    seed: u64,
) -> Result<(Split, Split), DataError> {
    let mut groups = by_class(&all.labels, num_classes)?;
    let mut r = crate::rng::chacha_stream(seed, STREAM_SPLIT);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for g in groups.iter_mut() {
        g.shuffle(&mut r);
        let n_test = (g.len() * test_per_mille + 500) / 1000;
        test.extend_from_slice(&g[..n_test]);
        train.extend_from_slice(&g[n_test..]);
    }
    train.shuffle(&mut r);
    test.shuffle(&mut r);
    Ok((gather(all, &train, item), gather(all, &test, item)))
}

/// Examples per class in `labels`.
pub fn class_counts(labels: &[u32], num_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; num_classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_with_sizes(sizes: &[usize]) -> Vec<u32> {
        // Interleave classes so class order differs from index order.
        let mut out = Vec::new();
        let max = sizes.iter().copied().max().unwrap_or(0);
        for i in 0..max {
            for (c, &s) in sizes.iter().enumerate() {
                if i < s {
                    out.push(c as u32);
                }
            }
        }
        out
    }

    #[test]
    fn exact_count_balanced_and_deterministic() {
        let labels = labels_with_sizes(&[100; 10]);
        let a = stratified_indices(&labels, 10, 53, 7, STREAM_TRAIN, "train").expect("ok");
        assert_eq!(a.len(), 53);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "ascending and unique");
        let picked: Vec<u32> = a.iter().map(|&i| labels[i]).collect();
        let counts = class_counts(&picked, 10);
        assert!(counts.iter().all(|&c| c == 5 || c == 6), "{counts:?}");
        assert_eq!(a, stratified_indices(&labels, 10, 53, 7, STREAM_TRAIN, "train").expect("ok"));
        assert_ne!(a, stratified_indices(&labels, 10, 53, 8, STREAM_TRAIN, "train").expect("ok"));
    }

    #[test]
    fn small_classes_give_their_all_and_the_rest_is_even() {
        let labels = labels_with_sizes(&[3, 50, 50, 1]);
        let idx = stratified_indices(&labels, 4, 40, 1, STREAM_TRAIN, "train").expect("ok");
        let picked: Vec<u32> = idx.iter().map(|&i| labels[i]).collect();
        assert_eq!(class_counts(&picked, 4), vec![3, 18, 18, 1]);
        let all = stratified_indices(&labels, 4, labels.len(), 1, STREAM_TRAIN, "train").expect("ok");
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
    }

    #[test]
    fn too_large_names_available_count() {
        let labels = labels_with_sizes(&[5, 5]);
        let err = stratified_indices(&labels, 2, 11, 0, STREAM_TEST, "test").expect_err("too big");
        let msg = err.to_string();
        assert!(msg.contains("only 10"), "{msg}");
        assert!(stratified_indices(&[0, 5], 2, 1, 0, STREAM_TEST, "test").is_err());
    }

    #[test]
    fn split_is_stratified_and_shuffled() {
        let labels: Vec<u32> = (0..10u32).flat_map(|c| std::iter::repeat_n(c, 100)).collect();
        let all = Split { pixels: (0..1000).map(|i| (i % 251) as u8).collect(), labels };
        let (tr, te) = stratified_split(&all, 10, 1, 200, 42).expect("ok");
        assert_eq!(class_counts(&tr.labels, 10), vec![80; 10]);
        assert_eq!(class_counts(&te.labels, 10), vec![20; 10]);
        assert!(tr.labels.windows(2).any(|w| w[0] > w[1]), "not class-sorted");
        let again = stratified_split(&all, 10, 1, 200, 42).expect("ok");
        assert_eq!((tr.pixels, te.labels), (again.0.pixels, again.1.labels));
    }
}
