//! Image batches: the borrowed u8 data set, per-channel normalisation, and the seeded
//! augmentation (random crop with zero padding, horizontal flip) applied while assembling a
//! batch.
//!
//! Shapes: `ImageData::pixels` is `(n, c, t, h, w)` u8, row-major (`t = 1` for images: NCHW);
//! a batch is `(b, c, L, h, w)` f32 with `x = (pixel / 255 - mean[c]) / std[c]`, where `L` is
//! `Augment::clip_frames` (a temporal crop: random in training, centred otherwise) or `t`.

use super::NnError;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A borrowed NCHW u8 image set.
#[derive(Clone, Copy, Debug)]
pub struct ImageData<'a> {
    /// `n * c * h * w` pixels, image after image, channel planes within an image.
    pub pixels: &'a [u8],
    /// Number of images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Frames per example (1 for images).
    pub t: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl ImageData<'_> {
    /// Pixels per image (per clip: all frames).
    pub fn image_len(&self) -> usize {
        self.c * self.t * self.h * self.w
    }

    /// Frames per example after a temporal crop of `clip_frames` (0: no crop).
    pub fn frames_out(&self, clip_frames: usize) -> usize {
        if clip_frames == 0 {
            self.t
        } else {
            clip_frames.min(self.t)
        }
    }

    /// A copy of frames `offset..offset + len` of every clip (`(n, c, len, h, w)`).
    pub fn temporal_crop(&self, offset: usize, len: usize) -> Vec<u8> {
        let plane = self.h * self.w;
        let mut out = Vec::with_capacity(self.n * self.c * len * plane);
        for clip in self.pixels.chunks_exact(self.image_len().max(1)) {
            for ch in clip.chunks_exact(self.t * plane) {
                out.extend_from_slice(&ch[offset * plane..(offset + len) * plane]);
            }
        }
        out
    }
    /// Checks that the buffer length matches the shape.
    pub fn validate(&self) -> Result<(), NnError> {
        if self.c == 0 || self.t == 0 || self.h == 0 || self.w == 0 || self.pixels.len() != self.n * self.image_len() {
            return Err(NnError::invalid(format!(
                "image data has {} bytes, shape n={} c={} t={} h={} w={}",
                self.pixels.len(),
                self.n,
                self.c,
                self.t,
                self.h,
                self.w
            )));
        }
        Ok(())
    }
}

/// Per-channel mean and standard deviation of `pixel / 255`, stored with a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Channel means.
    pub mean: Vec<f32>,
    /// Channel standard deviations (population).
    pub std: Vec<f32>,
}

impl Normalization {
    /// Exact statistics of a data set, from per-channel histograms (so order-independent).
    pub fn from_data(data: &ImageData) -> Result<Self, NnError> {
        data.validate()?;
        let plane = data.h * data.w;
        let mut hist = vec![[0u64; 256]; data.c];
        for (i, chunk) in data.pixels.chunks_exact(plane).enumerate() {
            let h = &mut hist[(i / data.t) % data.c];
            for &p in chunk {
                h[p as usize] += 1;
            }
        }
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for h in &hist {
            let count: u64 = h.iter().sum();
            let count = count.max(1) as f64;
            let m = h.iter().enumerate().map(|(v, &k)| v as f64 / 255.0 * k as f64).sum::<f64>() / count;
            let var =
                h.iter().enumerate().map(|(v, &k)| (v as f64 / 255.0 - m).powi(2) * k as f64).sum::<f64>() / count;
            mean.push(m as f32);
            // A constant channel would divide by zero; leave it unscaled instead.
            std.push(if var > 1e-12 { var.sqrt() as f32 } else { 1.0 });
        }
        Ok(Normalization { mean, std })
    }

    /// Checks that the channel count matches.
    pub fn check_channels(&self, c: usize) -> Result<(), NnError> {
        if self.mean.len() != c || self.std.len() != c {
            return Err(NnError::Mismatch(format!("normalisation has {} channels, data has {c}", self.mean.len())));
        }
        Ok(())
    }

    /// One 256-entry lookup table per channel: pixel value -> normalised f32.
    pub(crate) fn lut(&self) -> Vec<[f32; 256]> {
        self.mean.iter().zip(&self.std).map(|(&m, &s)| std::array::from_fn(|v| ((v as f32 / 255.0) - m) / s)).collect()
    }
}

/// Training-time augmentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Augment {
    /// Random crop of the original size from the image zero-padded by this many pixels (0: off).
    pub crop_padding: usize,
    /// Flip left-right with probability 1/2.
    pub hflip: bool,
    /// Clips only: a temporal crop of this many frames (0: all frames). Left out of the JSON
    /// when 0, so image training states keep their old form.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clip_frames: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// Where one example of a batch comes from: crop offsets `(dy, dx)` into the image padded by
/// `crop_padding` (`(p, p)` is uncropped), a left-right flip, and the first frame `t0` of a
/// temporal crop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub dy: usize,
    pub dx: usize,
    pub flip: bool,
    pub t0: usize,
}

impl Placement {
    /// One example's placement for clips of `t` frames: drawn from `rng` in training (crop y,
    /// crop x, flip, temporal offset, each only when enabled), centred without it. Both batch
    /// builders (host and device) draw through here, so they place every example alike.
    pub(crate) fn draw(aug: &Augment, t: usize, rng: Option<&mut impl Rng>) -> Placement {
        let p = aug.crop_padding;
        let frames = if aug.clip_frames == 0 { t } else { aug.clip_frames.min(t) };
        let mut out = Placement { dy: p, dx: p, flip: false, t0: (t - frames) / 2 };
        if let Some(rng) = rng {
            if p > 0 {
                out.dy = rng.random_range(0..=2 * p);
                out.dx = rng.random_range(0..=2 * p);
            }
            if aug.hflip {
                out.flip = rng.random_bool(0.5);
            }
            if frames < t {
                out.t0 = rng.random_range(0..=t - frames);
            }
        }
        out
    }
}

/// Writes images `idx` of `data`, normalised with `lut` and, when `rng` is given, augmented,
/// into `out` (`idx.len() * c * L * h * w`, `L = data.frames_out(aug.clip_frames)`). Per image
/// the draws are: crop offsets y then x (if padding), then the flip (if enabled), then the
/// temporal offset (if the clip is cropped in time), so a given stream always gives the same
/// batch, and image batches are what they were before clips existed. Every frame of a clip gets
/// the same crop and flip.
pub(crate) fn fill_batch(
    data: &ImageData,
    idx: &[usize],
    lut: &[[f32; 256]],
    aug: &Augment,
    mut rng: Option<&mut impl Rng>,
    out: &mut [f32],
) {
    let (c, h, w, t) = (data.c, data.h, data.w, data.t);
    let frames = data.frames_out(aug.clip_frames);
    let (len, out_len) = (data.image_len(), c * frames * h * w);
    let p = aug.crop_padding;
    for (b, &i) in idx.iter().enumerate() {
        let src = &data.pixels[i * len..(i + 1) * len];
        let dst = &mut out[b * out_len..(b + 1) * out_len];
        let Placement { dy, dx, flip, t0 } = Placement::draw(aug, t, rng.as_deref_mut());
        for (plane, d) in dst.chunks_exact_mut(h * w).enumerate() {
            let (ch, f) = (plane / frames, plane % frames);
            let s = &src[(ch * t + t0 + f) * h * w..(ch * t + t0 + f + 1) * h * w];
            fill_plane(s, &lut[ch], (h, w), (dy, dx, p, flip), d);
        }
    }
}

/// One `h x w` plane through `table`, shifted by `(dy - p, dx - p)` (zero outside), optionally
/// mirrored.
fn fill_plane(
    src: &[u8],
    table: &[f32; 256],
    (h, w): (usize, usize),
    (dy, dx, p, flip): (usize, usize, usize, bool),
    dst: &mut [f32],
) {
    if dy == p && dx == p && !flip {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = table[s as usize]);
        return;
    }
    let zero = table[0];
    for y in 0..h {
        let sy = (y + dy).wrapping_sub(p);
        let row = &mut dst[y * w..(y + 1) * w];
        if sy >= h {
            row.fill(zero);
            continue;
        }
        let srow = &src[sy * w..(sy + 1) * w];
        for (x, d) in row.iter_mut().enumerate() {
            let xx = if flip { w - 1 - x } else { x };
            let sx = (xx + dx).wrapping_sub(p);
            *d = if sx < w { table[srow[sx] as usize] } else { zero };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn normalisation_statistics_and_lut() {
        // Channel 0: 0 and 255 -> mean 0.5, std 0.5; channel 1 constant 51 -> std 1.
        let pixels = [0u8, 255, 51, 51, 255, 0, 51, 51];
        let data = ImageData { pixels: &pixels, n: 2, c: 2, t: 1, h: 1, w: 2 };
        let norm = Normalization::from_data(&data).unwrap();
        assert_eq!(norm.mean, vec![0.5, 0.2]);
        assert_eq!(norm.std, vec![0.5, 1.0]);
        let mut out = vec![0f32; 8];
        let none: Option<&mut rand_chacha::ChaCha8Rng> = None;
        fill_batch(&data, &[1, 0], &norm.lut(), &Augment::default(), none, &mut out);
        assert_eq!(out, vec![1.0, -1.0, 0.0, 0.0, -1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn crop_and_flip_move_pixels() {
        // A 1x3x3 image 1..9; padding 1 with every offset and flip seen over many draws.
        let pixels: Vec<u8> = (1..=9).collect();
        let data = ImageData { pixels: &pixels, n: 1, c: 1, t: 1, h: 3, w: 3 };
        let lut: Vec<[f32; 256]> = vec![std::array::from_fn(|v| v as f32)];
        let aug = Augment { crop_padding: 1, hflip: true, clip_frames: 0 };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..400 {
            let mut out = vec![0f32; 9];
            fill_batch(&data, &[0], &lut, &aug, Some(&mut rng), &mut out);
            // Every output is the image shifted by at most one pixel, possibly mirrored.
            let ok = (0..3usize).any(|dy| {
                (0..3usize).any(|dx| {
                    [false, true].iter().any(|&f| {
                        (0..9).all(|k| {
                            let (y, x) = (k / 3, if f { 2 - k % 3 } else { k % 3 });
                            let (sy, sx) = ((y + dy).wrapping_sub(1), (x + dx).wrapping_sub(1));
                            let want = if sy < 3 && sx < 3 { (sy * 3 + sx + 1) as f32 } else { 0.0 };
                            out[k] == want
                        })
                    })
                })
            });
            assert!(ok, "{out:?}");
            seen.insert(out.iter().map(|v| *v as u8).collect::<Vec<_>>());
        }
        assert_eq!(seen.len(), 18, "9 offsets x 2 flips");
    }

    #[test]
    fn temporal_crops_are_centred_in_eval_and_random_in_training() {
        // Two clips of 4 one-pixel frames, 2 channels: channel planes stay frame-major per channel.
        let pixels: Vec<u8> = vec![10, 20, 30, 40, 50, 60, 70, 80, 11, 21, 31, 41, 51, 61, 71, 81];
        let data = ImageData { pixels: &pixels, n: 2, c: 2, t: 4, h: 1, w: 1 };
        let lut: Vec<[f32; 256]> = vec![std::array::from_fn(|v| v as f32); 2];
        let aug = Augment { clip_frames: 2, ..Augment::default() };
        let mut out = vec![0f32; 2 * 2 * 2];
        let none: Option<&mut rand_chacha::ChaCha8Rng> = None;
        fill_batch(&data, &[1, 0], &lut, &aug, none, &mut out);
        assert_eq!(out, vec![21.0, 31.0, 61.0, 71.0, 20.0, 30.0, 60.0, 70.0]);
        assert_eq!(data.temporal_crop(1, 2), vec![20, 30, 60, 70, 21, 31, 61, 71]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut starts = std::collections::BTreeSet::new();
        for _ in 0..60 {
            let mut one = vec![0f32; 4];
            fill_batch(&data, &[0], &lut, &aug, Some(&mut rng), &mut one);
            assert_eq!(one[1] - one[0], 10.0, "consecutive frames: {one:?}");
            assert_eq!(one[2] - one[0], 40.0, "the same frames of the second channel: {one:?}");
            starts.insert(one[0] as u32);
        }
        assert_eq!(starts.into_iter().collect::<Vec<_>>(), vec![10, 20, 30]);
    }
}
