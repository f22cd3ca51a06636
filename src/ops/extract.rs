//! `extract`: frozen features of a trained network at a named tap (`conv1`, `res2`..`res5`; `res5`
//! pooled is the penultimate feature), for both splits of any image set, in eval mode. For clips,
//! as in the paper's clustering step (§4.1.2: 6 clips per video, features averaged), it can embed
//! `clips_per_video` uniformly spaced temporal crops of `clip_frames` frames and average them.

use serde::{Deserialize, Serialize};

use serde_json::Value as Json;

use super::facts::{self, Facts, InputFacts, OutputFacts};
use super::{extract_memo, InputSpec, Kind, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::artifact::{Features, FeaturesMeta, Images, Split};
use crate::config::params::{ParamError, Params};
use crate::nn::{self, ImageData, Pool, Tap};

/// Parameters of `extract`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
    #[schemars(range(min = 1, max = super::ranges::MAX_BATCH_SIZE))]
    pub batch_size: usize,
    /// Clips only: frames per temporal crop (default: the whole clip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub clip_frames: Option<usize>,
    /// Clips only: temporal crops per clip whose features are averaged (more than 1 needs
    /// `clip_frames`). Left out of the canonical parameters at its default, so image stages keep
    /// the recipe keys they had before clips existed.
    // The canonical form leaves the default out, so the schema would not show it.
    #[schemars(extend("default" = 1))]
    #[serde(default = "default_clips", skip_serializing_if = "is_default_clips")]
    #[schemars(range(min = 1, max = 32))]
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
        self.tap.parse::<Tap>().map_err(|_| ParamError::unknown_name("tap", "tap", &self.tap, &Tap::NAMES))?;
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
        if !(1..=super::ranges::MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(ParamError::range(
                "batch_size",
                self.batch_size,
                &format!("between 1 and {}", super::ranges::MAX_BATCH_SIZE),
            ));
        }
        if self.clip_frames == Some(0) {
            return Err(ParamError::range("clip_frames", 0, "at least 1"));
        }
        if !(1..=32).contains(&self.clips_per_video) {
            return Err(ParamError::range("clips_per_video", self.clips_per_video, "between 1 and 32"));
        }
        if self.clips_per_video > 1 && self.clip_frames.is_none() {
            // Every crop of a whole clip is the clip itself: the same features under another key.
            return Err(ParamError::field(
                "clips_per_video",
                format!(
                    "`clips_per_video` is {}, but without `clip_frames` each crop is the whole clip",
                    self.clips_per_video
                ),
                Some("set `clip_frames` below the clips' frames, or leave `clips_per_video` at 1".into()),
            ));
        }
        Ok(())
    }
}

/// The `extract` op.
pub struct Extract;

impl StageKind for Extract {
    type Params = ExtractParams;
    // Forward passes want a GPU.
    const JOB: super::JobShape = super::JobShape::job(2, 8, 1, 2 * 60);
    const SPEC: &'static OpSpec = &OpSpec {
        name: "extract",
        // 2: 3x3 stride-1 convolutions by Winograd F(2x2, 3x3) on CPU (different rounding).
        // 3: R(2+1)D as fused ops (different rounding).
        // 5: Winograd from 16 channels (was 32), so 16-channel convolutions round differently.
        // 6: fixed depth blocks for matmuls deeper than 512 (linalg::matmul): the bits of
        //    AMD Zen 3 as before, but not of earlier binaries on CPUs whose L1 made gemm block
        //    otherwise (an Intel Xeon), whose cached results must not be served.
        // 7: `meta.json` no longer names the model's instance (a name outside the key, so a
        //    renamed stage was served the old name and a fresh cache made other bytes).
        // 8: `pool = "dimN"` on clips averages time before its spatial bins, as `adaptiveN` does
        //    (its rows were binned along time and height stacked).
        version: 8,
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
        metrics: &[],
    };

    fn reads_siblings(&self) -> bool {
        true
    }

    fn work_estimate(&self, p: &ExtractParams) -> f64 {
        // Deeper taps cost more; starting them first lets shallower siblings find their
        // features waiting (`extract_memo`).
        p.tap.parse::<Tap>().map_or(1.0, |t| 0.6 + 0.1 * t as usize as f64)
    }

    fn facts(&self, p: &ExtractParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        facts::clip_frames_fit(inputs, "images", p.clip_frames)?;
        if p.clips_per_video > 1 && inputs.get("images").frames == Some(1) {
            return Err(ParamError::field(
                "clips_per_video",
                format!("`clips_per_video` is {}, but `images` holds still images (1 frame)", p.clips_per_video),
                Some("leave `clips_per_video` at 1 for images".into()),
            ));
        }
        if let (Some(len), Some(frames)) = (p.clip_frames, inputs.get("images").frames) {
            // A crop of every frame has one place to start: each crop is the whole clip, the
            // features of `clips_per_video = 1` under another key.
            if frames > 1 && len >= frames && p.clips_per_video > 1 {
                return Err(ParamError::field(
                    "clips_per_video",
                    format!(
                        "`clips_per_video` is {}, but crops of {len} frames from clips of {frames} are each the whole clip",
                        p.clips_per_video
                    ),
                    Some(format!("set `clip_frames` below {frames}, or leave `clips_per_video` at 1")),
                ));
            }
        }
        facts::model_fits_images(inputs, "model", "images", p.clip_frames)?;
        Ok(OutputFacts::from([("features".to_string(), Facts::rows_of(inputs.get("images")))]))
    }

    fn run(&self, p: ExtractParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let tap: Tap = p.tap.parse().map_err(|_| OpError::Invalid(format!("unknown tap {}", p.tap)))?;
        let pool: Pool = p.pool.parse().map_err(|_| OpError::Invalid(format!("unknown pooling {}", p.pool)))?;
        let model = ctx.input("model")?;
        let images_dir = &ctx.input("images")?.dir;
        let group = format!(
            "{}\n{}\n{}\n{}",
            model.dir.display(),
            model.instance,
            images_dir.display(),
            without_tap(ctx.params)
        );
        if let Some(features) = extract_memo::take(&group, &p.tap) {
            tracing::info!("{}: features from a sibling's pass", ctx.name);
            return features.save(&ctx.output_dir("features")).map_err(OpError::from);
        }
        let mut taps = vec![(tap, p.tap.clone())];
        taps.extend(shallower_siblings(ctx.params, tap, ctx.siblings));
        let only: Vec<Tap> = taps.iter().map(|(t, _)| *t).collect();
        let (weights, meta) = nn::load_model(&model.dir.join("model.safetensors"), ctx.device)?;
        let images = Images::load(images_dir)?;
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
        // Per tap: both splits' features and their dimension.
        let mut out = vec![(Vec::new(), Vec::new(), 0); taps.len()];
        // Images through the network: a clip once per crop.
        let passes: usize = Split::ALL.iter().map(|&s| images.count(s)).sum::<usize>() * offsets.len();
        ctx.progress.begin("images", passes as u64);
        for split in Split::ALL {
            let data = ImageData {
                pixels: images.split(split),
                n: images.count(split),
                c: m.channels,
                t: m.frames,
                h: m.height,
                w: m.width,
            };
            let mut sums: Vec<Vec<f32>> = vec![Vec::new(); taps.len()];
            for &off in &offsets {
                let crop = (len < m.frames).then(|| data.temporal_crop(off, len));
                let view = match &crop {
                    Some(px) => ImageData { pixels: px, t: len, ..data },
                    None => data,
                };
                let progress = ctx.progress;
                let mut done = |n: usize| progress.inc(n as u64);
                let (arch, norm) = (&meta.arch, &meta.norm);
                let each =
                    nn::extract_taps(&weights, arch, norm, &view, &only, pool, p.batch_size, ctx.device, &mut done)?;
                for ((sum, o), (values, d)) in sums.iter_mut().zip(out.iter_mut()).zip(each) {
                    o.2 = d;
                    if sum.is_empty() {
                        *sum = values;
                    } else {
                        sum.iter_mut().zip(&values).for_each(|(s, v)| *s += v);
                    }
                }
            }
            for (mut sum, o) in sums.into_iter().zip(out.iter_mut()) {
                if offsets.len() > 1 {
                    let k = offsets.len() as f32;
                    sum.iter_mut().for_each(|s| *s /= k);
                }
                match split {
                    Split::Train => o.0 = sum,
                    Split::Test => o.1 = sum,
                }
            }
        }
        let mut features = taps.iter().zip(out).map(|((_, name), (train, test, dim))| {
            // Not the model's instance name: it is not in the key (a renamed stage is served the
            // same object), so it must not be in the bytes.
            let meta = FeaturesMeta { dim, source: format!("{name} {}", p.pool) };
            (name.clone(), Features { meta, train, test })
        });
        let (_, own) = features.next().ok_or_else(|| OpError::Invalid("no tap to extract".into()))?;
        for (name, f) in features {
            extract_memo::keep(&group, &name, f);
        }
        own.save(&ctx.output_dir("features")).map_err(OpError::from)
    }
}

/// Canonical parameters without `tap`, as text: what sibling instances have in common.
fn without_tap(params: &Json) -> String {
    let mut rest = params.clone();
    if let Json::Object(map) = &mut rest {
        map.remove("tap");
    }
    rest.to_string()
}

/// The taps shallower than `tap` that sibling instances with otherwise equal parameters ask
/// for, once each, with their names as the siblings give them.
fn shallower_siblings(params: &Json, tap: Tap, siblings: &[Json]) -> Vec<(Tap, String)> {
    let ours = without_tap(params);
    let mut found: Vec<(Tap, String)> = Vec::new();
    for s in siblings {
        let Some(name) = s.get("tap").and_then(Json::as_str) else { continue };
        let Ok(t) = name.parse::<Tap>() else { continue };
        if t < tap && without_tap(s) == ours && !found.iter().any(|(f, _)| *f == t) {
            found.push((t, name.to_string()));
        }
    }
    found
}

/// First frames of `count` crops of `len` frames spread uniformly over `frames` frames.
pub(super) fn crop_offsets(frames: usize, len: usize, count: usize) -> Vec<usize> {
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
    use super::{crop_offsets, shallower_siblings, Tap};
    use serde_json::json;

    /// Only shallower taps with otherwise equal parameters, each once.
    #[test]
    fn siblings_share_only_shallower_taps_of_the_same_extraction() {
        let ours = json!({"tap": "res4", "pool": "dim1200", "batch_size": 256});
        let siblings = [
            json!({"tap": "res2", "pool": "dim1200", "batch_size": 256}),
            json!({"tap": "res5", "pool": "dim1200", "batch_size": 256}),
            json!({"tap": "conv1", "pool": "avg", "batch_size": 256}),
            json!({"tap": "res2", "pool": "dim1200", "batch_size": 256}),
            json!({"tap": "conv1", "pool": "dim1200", "batch_size": 256}),
        ];
        let found = shallower_siblings(&ours, Tap::Res4, &siblings);
        assert_eq!(found, vec![(Tap::Res2, "res2".to_string()), (Tap::Conv1, "conv1".to_string())]);
        assert!(shallower_siblings(&ours, Tap::Conv1, &siblings).is_empty());
    }

    #[test]
    fn crops_cover_the_clip_uniformly() {
        assert_eq!(crop_offsets(12, 8, 3), vec![0, 2, 4]);
        assert_eq!(crop_offsets(12, 8, 1), vec![2]);
        assert_eq!(crop_offsets(8, 8, 4), vec![0]);
        assert_eq!(crop_offsets(10, 4, 2), vec![0, 6]);
    }
}
