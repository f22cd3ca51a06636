//! `extract`: frozen features of a trained network at a named tap (`conv1`, `res2`..`res5`; `res5`
//! pooled is the penultimate feature), for both splits of any image set, in eval mode. For clips,
//! as in the paper's clustering step (§4.1.2: 6 clips per video, features averaged), it can embed
//! `clips_per_video` uniformly spaced temporal crops of `clip_frames` frames and average them.

use serde::{Deserialize, Serialize};

use super::{InputSpec, Kind, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::artifact::{Features, FeaturesMeta, Images, Split};
use crate::config::params::{ParamError, Params};
use crate::nn::{self, ImageData, Pool, Tap};

/// Parameters of `extract`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractParams {
    /// `conv1`, `res2`, `res3`, `res4` or `res5`.
    #[serde(default = "default_tap")]
    pub tap: String,
    /// `avg` (global average pooling), `adaptiveN` (N x N average pooling, flattened),
    /// `dimN` (the largest adaptive grid with at most N values) or `flatten`.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// Images per forward pass.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Clips only: frames per temporal crop (default: the whole clip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_frames: Option<usize>,
    /// Clips only: temporal crops per clip whose features are averaged. Left out of the
    /// canonical parameters at its default, so image stages keep the recipe keys they had before
    /// clips existed.
    #[serde(default = "default_clips", skip_serializing_if = "is_default_clips")]
    pub clips_per_video: usize,
}

fn default_clips() -> usize {
    1
}

fn is_default_clips(n: &usize) -> bool {
    *n == 1
}

fn default_tap() -> String {
    "res5".into()
}

fn default_pool() -> String {
    "avg".into()
}

fn default_batch() -> usize {
    256
}

impl Params for ExtractParams {
    fn validate(&self) -> Result<(), ParamError> {
        self.tap.parse::<Tap>().map_err(|_| {
            ParamError::field(
                "tap",
                format!("unknown tap `{}`", self.tap),
                Some("valid: conv1, res2, res3, res4, res5".into()),
            )
        })?;
        let pool = self.pool.parse::<Pool>().map_err(|_| {
            ParamError::field(
                "pool",
                format!("unknown pooling `{}`", self.pool),
                Some("valid: avg, flatten, adaptiveN (e.g. adaptive2), dimN (e.g. dim1200)".into()),
            )
        })?;
        match pool {
            // No feature map is larger than 96 x 96: a finer grid only repeats values.
            Pool::Adaptive(s) if s > 96 => {
                return Err(ParamError::range("pool", &self.pool, "an adaptive grid of at most 96 (adaptive96)"))
            }
            Pool::Dim(n) if n > 1 << 20 => {
                return Err(ParamError::range("pool", &self.pool, "at most dim1048576 values per example"))
            }
            _ => {}
        }
        if !(1..=65_536).contains(&self.batch_size) {
            return Err(ParamError::range("batch_size", self.batch_size, "between 1 and 65536"));
        }
        if self.clip_frames == Some(0) {
            return Err(ParamError::range("clip_frames", 0, "at least 1"));
        }
        if !(1..=32).contains(&self.clips_per_video) {
            return Err(ParamError::range("clips_per_video", self.clips_per_video, "between 1 and 32"));
        }
        Ok(())
    }
}

/// The `extract` op.
pub struct Extract;

impl StageKind for Extract {
    type Params = ExtractParams;
    const SPEC: &'static OpSpec = &OpSpec {
        name: "extract",
        // 2: 3x3 stride-1 convolutions by Winograd F(2x2, 3x3) on CPU (different rounding).
        // 3: R(2+1)D as fused ops (different rounding).
        version: 4,
        summary: "frozen features of a trained network at a tap (conv1, res2..res5), pooled, for both splits",
        inputs: &[
            MODEL,
            InputSpec {
                name: "images",
                kinds: &[Kind::Images, Kind::Clips],
                required: true,
                gather: false,
                doc: "images or clips to embed",
            },
        ],
        outputs: &[OutputSpec { name: "features", kind: Kind::Features, doc: "[N, D] f32 per split" }],
        metric_names: &[],
    };

    fn run(&self, p: ExtractParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let tap: Tap = p.tap.parse().map_err(|_| OpError::Invalid(format!("unknown tap {}", p.tap)))?;
        let pool: Pool = p.pool.parse().map_err(|_| OpError::Invalid(format!("unknown pooling {}", p.pool)))?;
        let model = ctx.input("model")?;
        let (weights, meta) = nn::load_model(&model.dir.join("model.safetensors"), ctx.device)?;
        let images = Images::load(&ctx.input("images")?.dir)?;
        let m = &images.meta;
        if m.channels != meta.arch.in_channels() {
            return Err(OpError::Invalid(format!(
                "the model takes {} input channels but {} has {}",
                meta.arch.in_channels(),
                m.dataset,
                m.channels
            )));
        }
        let len = p.clip_frames.unwrap_or(m.frames);
        if len > m.frames {
            return Err(OpError::Invalid(format!("clip_frames = {len} but the clips have {} frames", m.frames)));
        }
        let offsets = crop_offsets(m.frames, len, p.clips_per_video);
        let mut out = [Vec::new(), Vec::new()];
        let mut dim = 0;
        for (i, split) in Split::ALL.into_iter().enumerate() {
            let data = ImageData {
                pixels: images.split(split),
                n: images.count(split),
                c: m.channels,
                t: m.frames,
                h: m.height,
                w: m.width,
            };
            let mut sum: Vec<f32> = Vec::new();
            for &off in &offsets {
                let crop = (len < m.frames).then(|| data.temporal_crop(off, len));
                let view = match &crop {
                    Some(px) => ImageData { pixels: px, t: len, ..data },
                    None => data,
                };
                let (values, d) =
                    nn::extract(&weights, &meta.arch, &meta.norm, &view, tap, pool, p.batch_size, ctx.device)?;
                dim = d;
                if sum.is_empty() {
                    sum = values;
                } else {
                    sum.iter_mut().zip(&values).for_each(|(s, v)| *s += v);
                }
            }
            if offsets.len() > 1 {
                let k = offsets.len() as f32;
                sum.iter_mut().for_each(|s| *s /= k);
            }
            out[i] = sum;
        }
        let [train, test] = out;
        let meta = FeaturesMeta { dim, source: format!("{} {} of {}", p.tap, p.pool, model.instance) };
        Features { meta, train, test }.save(&ctx.output_dir("features")).map_err(OpError::from)
    }
}

/// First frames of `count` crops of `len` frames spread uniformly over `frames` frames.
fn crop_offsets(frames: usize, len: usize, count: usize) -> Vec<usize> {
    let room = frames - len;
    if count == 1 || room == 0 {
        return vec![room / 2; if room == 0 { 1 } else { count }];
    }
    (0..count).map(|j| (j * room + (count - 1) / 2) / (count - 1)).collect()
}

const MODEL: InputSpec =
    InputSpec { name: "model", kinds: &[Kind::Model], required: true, gather: false, doc: "a trained network" };

#[cfg(test)]
mod tests {
    use super::crop_offsets;

    #[test]
    fn crops_cover_the_clip_uniformly() {
        assert_eq!(crop_offsets(12, 8, 3), vec![0, 2, 4]);
        assert_eq!(crop_offsets(12, 8, 1), vec![2]);
        assert_eq!(crop_offsets(8, 8, 4), vec![0]);
        assert_eq!(crop_offsets(10, 4, 2), vec![0, 6]);
    }
}
