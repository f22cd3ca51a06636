//! Tag-set targets resident on the device: each image's classes and spread value uploaded once
//! per stage as a padded table, and each batch's `(b, k)` spread written on the device by one
//! scatter, instead of built on the host and copied every batch (a `b x k` upload).
//!
//! The table is rectangular: a row holds an image's classes, then its first class again up to
//! the widest set, every entry with the value `1 / |set|`. A scatter that writes one value
//! several times into a cell leaves that value whatever the order, so the spread is the host's
//! (`HardTarget::from_host`, which assigns `1 / |set|` at each class of the set) bit for bit,
//! duplicated classes included. An image without tags gets a row of class 0 with value 0.

use super::NnError;
use candle_core::{DType, Device, Tensor};

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
        let got = tags.spread(&ids_t, k).unwrap().to_vec2::<f32>().unwrap();
        for (row, &i) in got.iter().zip(&batch) {
            let set = sets[i as usize];
            let mut want = vec![0f32; k];
            for &t in set {
                want[t as usize] = 1.0 / set.len() as f32;
            }
            let bits = |r: &[f32]| r.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(row), bits(&want), "image {i}: {set:?}");
        }
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
