//! Tag-set targets resident on the device: each image's classes and spread value uploaded once
//! per stage as a padded table, and each batch's `(b, k)` spread written on the device by one
//! scatter, instead of built on the host and copied every batch (a `b x k` upload).
//!
//! The table is rectangular: a row holds an image's classes, then its first class again up to
//! the widest set, every entry with the value `1 / |set|`. A scatter that writes one value
//! several times into a cell leaves that value whatever the order, so the spread is the host's
//! (`HardTarget::from_host`, which assigns `1 / |set|` at each class of the set) bit for bit,
//! duplicated classes included. An image without tags gets a row of class 0 with value 0.

use super::bits::differing_bits;
use super::NnError;
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Entries the padded table may hold; past that (one image with very many tags pads every row
/// to its width) the spreads are built on the host.
const MAX_ENTRIES: usize = 1 << 26;

/// An image set's tag sets on a device, as a padded table.
pub(crate) struct ResidentTags {
    /// `(n, width)` u32: each image's classes, padded with its first.
    classes: Tensor,
    /// `(n, width)` f32: `1 / |set|` at every entry of a row; 0 for an image without tags.
    values: Tensor,
}

impl ResidentTags {
    /// Uploads the tag sets of `n = offsets.len() - 1` images (image `i` carries
    /// `ids[offsets[i]..offsets[i + 1]]`, already checked against the class count); `None`
    /// when the padded table would pass [`MAX_ENTRIES`].
    pub(crate) fn upload(offsets: &[u32], ids: &[u32], dev: &Device) -> Result<Option<Self>, NnError> {
        let n = offsets.len().saturating_sub(1);
        let width = offsets.windows(2).map(|w| (w[1] - w[0]) as usize).max().unwrap_or(0).max(1);
        if n * width > MAX_ENTRIES {
            return Ok(None);
        }
        let (mut classes, mut values) = (vec![0u32; n * width], vec![0f32; n * width]);
        for (i, (row_c, row_v)) in classes.chunks_exact_mut(width).zip(values.chunks_exact_mut(width)).enumerate() {
            let set = &ids[offsets[i] as usize..offsets[i + 1] as usize];
            let Some(&first) = set.first() else { continue };
            let value = 1.0 / set.len() as f32;
            for (j, (c, v)) in row_c.iter_mut().zip(row_v.iter_mut()).enumerate() {
                *c = set.get(j).copied().unwrap_or(first);
                *v = value;
            }
        }
        Ok(Some(ResidentTags {
            classes: Tensor::from_vec(classes, (n, width), dev)?,
            values: Tensor::from_vec(values, (n, width), dev)?,
        }))
    }

    /// The `(b, k)` f32 spread of the images `ids` (`(b,)` u32 on the device): `1 / |set|` at
    /// each class of an image's set, 0 elsewhere.
    pub(crate) fn spread(&self, ids: &Tensor, k: usize) -> Result<Tensor, NnError> {
        let classes = self.classes.index_select(ids, 0)?;
        let values = self.values.index_select(ids, 0)?;
        let zeros = Tensor::zeros((ids.dim(0)?, k), DType::F32, ids.device())?;
        Ok(zeros.scatter(&classes, &values, 1)?)
    }
}

/// How many spread values, over a batch of 64 drawn from 40 images with tag sets of 0 to 5 of
/// 30 classes (duplicates included; drawn from a fixed seed), the device writes differently
/// from the host's assignment, bit for bit, and of how many. `check-device` runs it on the GPU.
pub fn spreads_differing_from_host(device: &Device) -> Result<(usize, usize), NnError> {
    let (n, k) = (40, 30);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (mut offsets, mut ids) = (vec![0u32], Vec::new());
    for _ in 0..n {
        let size = rng.random_range(0..=5);
        ids.extend((0..size).map(|_| rng.random_range(0..k as u32)));
        offsets.push(ids.len() as u32);
    }
    let batch: Vec<usize> = (0..64).map(|_| rng.random_range(0..n)).collect();
    let tags = ResidentTags::upload(&offsets, &ids, device)?
        .ok_or_else(|| NnError::invalid("spread check: table too wide"))?;
    let rows: Vec<u32> = batch.iter().map(|&i| i as u32).collect();
    let got = tags.spread(&Tensor::from_vec(rows, batch.len(), device)?, k)?.flatten_all()?.to_vec1::<f32>()?;
    let want = host_spreads(&offsets, &ids, &batch, k);
    Ok((differing_bits(&got, &want), want.len()))
}

/// The `(b, k)` spreads of images `batch`, built on the host (the host pipeline's targets, and
/// what the device's must equal): `1 / |set|` assigned at each class of an image's set.
pub(crate) fn host_spreads(offsets: &[u32], ids: &[u32], batch: &[usize], k: usize) -> Vec<f32> {
    let mut out = vec![0f32; batch.len() * k];
    for (row, &i) in out.chunks_exact_mut(k).zip(batch) {
        let set = &ids[offsets[i] as usize..offsets[i + 1] as usize];
        for &t in set {
            row[t as usize] = 1.0 / set.len() as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets of one to three classes, an empty set and a duplicated class: every spread row is
    /// the host's assignment bit for bit, for a batch in any order with repeats.
    #[test]
    fn device_spreads_equal_host_spreads() {
        let sets: [&[u32]; 6] = [&[2], &[0, 3], &[], &[1, 1, 4], &[4, 0, 2], &[3]];
        let (mut offsets, mut ids) = (vec![0u32], Vec::new());
        for set in sets {
            ids.extend_from_slice(set);
            offsets.push(ids.len() as u32);
        }
        let k = 5;
        let tags = ResidentTags::upload(&offsets, &ids, &Device::Cpu).unwrap().unwrap();
        let batch = [3u32, 0, 2, 5, 3, 1, 4];
        let ids_t = Tensor::from_slice(&batch, batch.len(), &Device::Cpu).unwrap();
        let got = tags.spread(&ids_t, k).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = host_spreads(&offsets, &ids, &batch.map(|i| i as usize), k);
        let bits = |r: &[f32]| r.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
        assert!(want.iter().filter(|&&v| v == 1.0 / 3.0).count() >= 4, "the duplicated set is in the batch");
        let (differing, total) = spreads_differing_from_host(&Device::Cpu).unwrap();
        assert_eq!((differing, total), (0, 64 * 30));
    }

    /// A table past the limit is not built: the spreads stay on the host.
    #[test]
    fn a_table_too_wide_is_left_to_the_host() {
        let n = MAX_ENTRIES / 1000 + 1;
        let mut offsets = vec![0u32; n + 1];
        offsets[n] = 1000;
        let ids = vec![0u32; 1000];
        assert!(ResidentTags::upload(&offsets, &ids, &Device::Cpu).unwrap().is_none());
    }
}
