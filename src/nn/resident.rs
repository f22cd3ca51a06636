//! The device-resident training pipeline: on a GPU, the data set and the training targets are
//! uploaded once per stage, and each batch is gathered, cropped, flipped and normalised by
//! device ops from two small index tensors, instead of being built on the host and copied.
//! Loss and accuracy are summed on the device ([`EpochSums`]) and read once per epoch, so the
//! host never waits on the device within an epoch.
//!
//! Layout on the device: the pixels as one flat u8 tensor of zero-padded planes
//! `(n, c, t, h + 2p, w + 2p)` (`p` = `crop_padding`), and the normalisation as a `(c * 256,)`
//! f32 lookup table (the host's, so values are bit-identical). Output element `(b, plane, y, x)`
//! of a batch reads padded pixel `base[b, plane] + y * (w + 2p) + col[flip[b], x]`, where
//! `base` holds the plane (temporal offset included) and the crop offsets, and `col` is `x` or
//! `w - 1 - x`; that pixel's value plus `256 * channel` indexes the table.
//!
//! Run on the CPU device, the pipeline gives exactly the host's batches and sums (the tests
//! check it element for element and weight for weight); it is used where the device is not
//! the CPU.

use super::bits::differing_bits;
use super::data::{Augment, ImageData, Placement};
use super::NnError;
use candle_core::{DType, Device, Tensor};
use rand::Rng;

/// A data set resident on a device, and the batch shape its batches are reshaped to.
pub(crate) struct ResidentImages {
    /// Zero-padded u8 planes, flattened, and how an example's planes are normalised.
    pixels: NormalisedPixels,
    /// `(1, 1, h, 1)` u32: `y * padded_width`.
    rows: Tensor,
    /// `(2, w)` u32: column `x` unflipped (row 0) and flipped (row 1).
    cols: Tensor,
    c: usize,
    t: usize,
    h: usize,
    w: usize,
    frames: usize,
    aug: Augment,
}

impl ResidentImages {
    /// Uploads `data` (padded for `aug`'s crops) and `lut` (from [`super::Normalization::lut`]).
    /// `None` when the padded data set has more pixels than u32 indices reach.
    pub(crate) fn upload(
        data: &ImageData,
        lut: &[[f32; 256]],
        aug: &Augment,
        device: &Device,
    ) -> Result<Option<Self>, NnError> {
        let (c, t, h, w, p) = (data.c, data.t, data.h, data.w, aug.crop_padding);
        let (ph, pw) = (h + 2 * p, w + 2 * p);
        let total = data.n * c * t * ph * pw;
        if total > u32::MAX as usize {
            return Ok(None);
        }
        let padded = Tensor::from_vec(pad_planes(data.pixels, (h, w), p), total, device)?;
        let frames = data.frames_out(aug.clip_frames);
        let pixels = NormalisedPixels::new(padded, lut, (0..c * frames).map(|plane| plane / frames))?;
        let rows = Tensor::from_vec((0..h).map(|y| (y * pw) as u32).collect::<Vec<_>>(), (1, 1, h, 1), device)?;
        let cols: Vec<u32> = (0..w).chain((0..w).rev()).map(|x| x as u32).collect();
        let cols = Tensor::from_vec(cols, (2, w), device)?;
        Ok(Some(ResidentImages { pixels, rows, cols, c, t, h, w, frames, aug: aug.clone() }))
    }

    /// Examples `idx` as a `(b, c * L, h, w)` f32 tensor on the device (reshape it to the
    /// network's input shape), augmented from `rng` exactly as [`super::data::fill_batch`]
    /// does: the same draws in the same order give the same values.
    pub(crate) fn batch(&self, idx: &[usize], mut rng: Option<&mut impl Rng>) -> Result<Tensor, NnError> {
        let (c, t, h, w, frames) = (self.c, self.t, self.h, self.w, self.frames);
        let p = self.aug.crop_padding;
        let plane_len = (h + 2 * p) * (w + 2 * p);
        let planes = c * frames;
        let mut base = Vec::with_capacity(idx.len() * planes);
        let mut flips = Vec::with_capacity(idx.len());
        for &i in idx {
            let Placement { dy, dx, flip, t0 } = Placement::draw(&self.aug, t, rng.as_deref_mut());
            let corner = dy * (w + 2 * p) + dx;
            for plane in 0..planes {
                let (ch, f) = (plane / frames, plane % frames);
                base.push((((i * c + ch) * t + t0 + f) * plane_len + corner) as u32);
            }
            flips.push(flip as u32);
        }
        let dev = self.pixels.device();
        let b = idx.len();
        let base = Tensor::from_vec(base, (b, planes, 1, 1), dev)?;
        let flips = Tensor::from_vec(flips, b, dev)?;
        let cols = self.cols.index_select(&flips, 0)?.reshape((b, 1, 1, w))?;
        let at = base.broadcast_add(&self.rows)?.broadcast_add(&cols)?;
        Ok(self.pixels.gather(&at)?.reshape((b, planes, h, w))?)
    }
}

/// u8 pixels on a device with the host's normalisation table, gathered by index into the
/// host's very f32 values (shared by the image batches and the Jigsaw puzzles).
pub(crate) struct NormalisedPixels {
    /// u8, flattened.
    pixels: Tensor,
    /// `(c * 256,)` f32: the normalised value of each pixel value, channel after channel.
    lut: Tensor,
    /// `(1, planes, 1)` u32: `256 * channel` of each plane of an example.
    chan_offset: Tensor,
}

impl NormalisedPixels {
    /// `pixels` (already on the device), `lut` (a row of 256 values per channel) and the channel
    /// of each plane of an example.
    pub(crate) fn new(
        pixels: Tensor,
        lut: &[[f32; 256]],
        channels: impl Iterator<Item = usize>,
    ) -> Result<Self, NnError> {
        let device = pixels.device().clone();
        let table: Vec<f32> = lut.iter().flat_map(|row| row.iter().copied()).collect();
        let offsets: Vec<u32> = channels.map(|ch| (ch * 256) as u32).collect();
        let planes = offsets.len();
        Ok(NormalisedPixels {
            pixels,
            lut: Tensor::from_vec(table, lut.len() * 256, &device)?,
            chan_offset: Tensor::from_vec(offsets, (1, planes, 1), &device)?,
        })
    }

    /// The device the pixels live on.
    pub(crate) fn device(&self) -> &Device {
        self.pixels.device()
    }

    /// The normalised values at pixel indices `at` `(b, planes, ...)`, as `(b, planes, values per
    /// plane)` f32: each pixel value plus its plane's `256 * channel` indexes the table.
    pub(crate) fn gather(&self, at: &Tensor) -> Result<Tensor, NnError> {
        let (b, planes) = (at.dim(0)?, at.dim(1)?);
        let per_plane = at.elem_count() / (b * planes).max(1);
        let values = self.pixels.index_select(&at.flatten_all()?, 0)?.to_dtype(DType::U32)?;
        let codes = values.reshape((b, planes, per_plane))?.broadcast_add(&self.chan_offset)?.flatten_all()?;
        Ok(self.lut.index_select(&codes, 0)?.reshape((b, planes, per_plane))?)
    }
}

/// Each `h x w` plane of `pixels` inside a zero border of `p` pixels.
fn pad_planes(pixels: &[u8], (h, w): (usize, usize), p: usize) -> Vec<u8> {
    if p == 0 {
        return pixels.to_vec();
    }
    let pw = w + 2 * p;
    let planes = pixels.len() / (h * w).max(1);
    let mut out = vec![0u8; planes * (h + 2 * p) * pw];
    for (src, dst) in pixels.chunks_exact(h * w).zip(out.chunks_exact_mut((h + 2 * p) * pw)) {
        for (y, row) in src.chunks_exact(w).enumerate() {
            let at = (y + p) * pw + p;
            dst[at..at + w].copy_from_slice(row);
        }
    }
    out
}

/// Loss and correct predictions of an epoch, summed on the device in f64 (the host's order and
/// precision, so the totals are the host's), read once at the end.
pub(crate) struct EpochSums {
    loss: Tensor,
    correct: Tensor,
}

impl EpochSums {
    /// Zero sums on `device`.
    pub(crate) fn new(device: &Device) -> Result<Self, NnError> {
        let zero = Tensor::zeros((), DType::F64, device)?;
        Ok(EpochSums { loss: zero.clone(), correct: zero })
    }

    /// Adds a batch: its mean `loss` (a scalar) counted `count` times, and its correct
    /// predictions (a scalar count in any dtype).
    pub(crate) fn add(&mut self, loss: &Tensor, count: usize, correct: &Tensor) -> Result<(), NnError> {
        let weighted = (loss.detach().to_dtype(DType::F64)? * count as f64)?;
        self.loss = (&self.loss + weighted)?;
        self.correct = (&self.correct + correct.detach().to_dtype(DType::F64)?)?;
        Ok(())
    }

    /// `(loss sum, correct count)`: the one read of the epoch.
    pub(crate) fn read(&self) -> Result<(f64, usize), NnError> {
        Ok((self.loss.to_scalar::<f64>()?, self.correct.to_scalar::<f64>()? as usize))
    }
}

/// How many batch elements, over six batches of every example (the first unaugmented, as
/// evaluation builds them; the rest from one seeded stream each side), the pipeline on `device`
/// builds differently from the host's `fill_batch` (`nn/data.rs`), bit for bit, and of how many.
/// Both read the same lookup table, so a correct device gathers the host's very values: any
/// count but 0 is a wrong index (crop, flip, frame or channel). `check-device` runs this on the GPU.
pub fn batches_differing_from_host(
    data: &ImageData,
    aug: &Augment,
    seed: u64,
    device: &Device,
) -> Result<(usize, usize), NnError> {
    count_differing(data, data, aug, seed, device)
}

/// [`batches_differing_from_host`] with the device's copy of the data set given apart (the tests
/// hand it a wrong one).
fn count_differing(
    data: &ImageData,
    on_device: &ImageData,
    aug: &Augment,
    seed: u64,
    device: &Device,
) -> Result<(usize, usize), NnError> {
    use rand::SeedableRng;
    let lut: Vec<[f32; 256]> =
        (0..data.c).map(|ch| std::array::from_fn(|v| (v as f32 / 255.0 - 0.1 * ch as f32) / 0.3)).collect();
    let Some(resident) = ResidentImages::upload(on_device, &lut, aug, device)? else {
        return Err(NnError::Invalid(format!("{} pixels are more than u32 indices reach", data.pixels.len())));
    };
    let frames = data.frames_out(aug.clip_frames);
    let len = data.c * frames * data.h * data.w;
    let idx: Vec<usize> = (0..data.n).rev().chain(0..data.n / 2).collect();
    let (mut host_rng, mut dev_rng) =
        (rand_chacha::ChaCha8Rng::seed_from_u64(seed), rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let (mut differing, mut total) = (0, 0);
    for round in 0..6 {
        let mut want = vec![0f32; idx.len() * len];
        let (h_rng, d_rng) = if round == 0 { (None, None) } else { (Some(&mut host_rng), Some(&mut dev_rng)) };
        super::data::fill_batch(data, &idx, &lut, aug, h_rng, &mut want);
        let got = resident.batch(&idx, d_rng)?;
        let got: Vec<f32> = got.flatten_all()?.to_vec1()?;
        if got.len() != want.len() {
            return Err(NnError::Mismatch(format!(
                "a device batch of {} values, the host's {}",
                got.len(),
                want.len()
            )));
        }
        differing += differing_bits(&got, &want);
        total += want.len();
    }
    Ok((differing, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn check(data: &ImageData, aug: &Augment, seed: u64) {
        let (differing, total) = batches_differing_from_host(data, aug, seed, &Device::Cpu).unwrap();
        assert!(total > 0 && differing == 0, "{differing} of {total} values differ from the host's");
    }

    fn pixels(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random()).collect()
    }

    #[test]
    fn device_batches_equal_host_batches() {
        let px = pixels(7 * 3 * 5 * 6, 1);
        let data = ImageData { pixels: &px, n: 7, c: 3, t: 1, h: 5, w: 6 };
        for (p, hflip) in [(0, false), (2, true), (1, false), (0, true)] {
            check(&data, &Augment { crop_padding: p, hflip, clip_frames: 0 }, p as u64);
        }
    }

    /// The count sees a wrong batch: one pixel changed in the device's copy of one example
    /// differs once in each of the six batches (each reads that example once, and the pixel is
    /// the plane's centre, which every crop and flip keeps).
    #[test]
    fn the_count_sees_one_wrong_pixel() {
        let px = pixels(4 * 2 * 5 * 5, 3);
        let data = ImageData { pixels: &px, n: 4, c: 2, t: 1, h: 5, w: 5 };
        let mut wrong = px.clone();
        wrong[2 * 50 + 25 + 12] ^= 1;
        let device_copy = ImageData { pixels: &wrong, ..data };
        for aug in [Augment::default(), Augment { crop_padding: 1, hflip: true, clip_frames: 0 }] {
            let (differing, total) = count_differing(&data, &device_copy, &aug, 4, &Device::Cpu).unwrap();
            assert_eq!((differing, total), (6, 6 * 6 * 50));
            assert_eq!(count_differing(&data, &data, &aug, 4, &Device::Cpu).unwrap().0, 0);
        }
    }

    #[test]
    fn device_clip_batches_equal_host_batches() {
        let px = pixels(5 * 2 * 4 * 3 * 3, 2);
        let data = ImageData { pixels: &px, n: 5, c: 2, t: 4, h: 3, w: 3 };
        check(&data, &Augment { crop_padding: 1, hflip: true, clip_frames: 2 }, 9);
        check(&data, &Augment { crop_padding: 0, hflip: false, clip_frames: 0 }, 10);
    }

    #[test]
    fn device_sums_equal_host_sums() {
        let mut sums = EpochSums::new(&Device::Cpu).unwrap();
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for (i, (l, b)) in [(2.25_f32, 32usize), (1.7, 32), (0.333_333_34, 7)].into_iter().enumerate() {
            let loss = Tensor::new(l, &Device::Cpu).unwrap();
            let right = Tensor::new((i * 5) as u32, &Device::Cpu).unwrap();
            sums.add(&loss, b, &right).unwrap();
            loss_sum += loss.to_scalar::<f32>().unwrap() as f64 * b as f64;
            correct += i * 5;
        }
        let (l, c) = sums.read().unwrap();
        assert_eq!((l.to_bits(), c), (loss_sum.to_bits(), correct));
    }
}
