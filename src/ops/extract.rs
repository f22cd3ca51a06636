//! `extract`: frozen features of a trained network at a named tap (`conv1`, `res2`..`res5`; `res5`
//! pooled is the penultimate feature), for both splits of any image set, in eval mode.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{InputSpec, Kind, Op, OpError, OutputSpec, StageCtx};
use crate::artifact::{Features, FeaturesMeta, Images, Split};
use crate::config::params::{self, ParamError, Params};
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
        self.pool.parse::<Pool>().map_err(|_| {
            ParamError::field(
                "pool",
                format!("unknown pooling `{}`", self.pool),
                Some("valid: avg, flatten, adaptiveN (e.g. adaptive2), dimN (e.g. dim1200)".into()),
            )
        })?;
        if self.batch_size == 0 {
            return Err(ParamError::range("batch_size", 0, "at least 1"));
        }
        Ok(())
    }
}

/// The `extract` op.
pub struct Extract;

impl Op for Extract {
    fn name(&self) -> &'static str {
        "extract"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "frozen features of a trained network at a tap (conv1, res2..res5), pooled, for both splits"
    }
    fn inputs(&self) -> &'static [InputSpec] {
        &[
            MODEL,
            InputSpec { name: "images", kinds: &[Kind::Images], required: true, gather: false, doc: "images to embed" },
        ]
    }
    fn outputs(&self) -> &'static [OutputSpec] {
        &[OutputSpec { name: "features", kind: Kind::Features, doc: "[N, D] f32 per split" }]
    }
    fn param_fields(&self) -> &'static [&'static str] {
        params::field_names::<ExtractParams>()
    }
    fn normalize(&self, raw: &Json) -> Result<Json, ParamError> {
        params::normalize::<ExtractParams>(raw)
    }
    fn run(&self, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let p: ExtractParams = ctx.params()?;
        let tap: Tap = p.tap.parse().map_err(|_| OpError::Invalid(format!("unknown tap {}", p.tap)))?;
        let pool: Pool = p.pool.parse().map_err(|_| OpError::Invalid(format!("unknown pooling {}", p.pool)))?;
        let model = ctx.input("model")?;
        let (weights, meta) = nn::load_model(&model.dir.join("model.safetensors"), ctx.device)?;
        let images = Images::load(&ctx.input("images")?.dir)?;
        let m = &images.meta;
        if m.channels != meta.arch.in_channels {
            return Err(OpError::Invalid(format!(
                "the model takes {} input channels but {} has {}",
                meta.arch.in_channels, m.dataset, m.channels
            )));
        }
        let mut out = [Vec::new(), Vec::new()];
        let mut dim = 0;
        for (i, split) in Split::ALL.into_iter().enumerate() {
            let data = ImageData {
                pixels: images.split(split),
                n: images.count(split),
                c: m.channels,
                h: m.height,
                w: m.width,
            };
            let (values, d) =
                nn::extract(&weights, &meta.arch, &meta.norm, &data, tap, pool, p.batch_size, ctx.device)?;
            out[i] = values;
            dim = d;
        }
        let [train, test] = out;
        let meta = FeaturesMeta { dim, source: format!("{} {} of {}", p.tap, p.pool, model.instance) };
        Features { meta, train, test }.save(&ctx.output_dir("features"))
    }
}

const MODEL: InputSpec =
    InputSpec { name: "model", kinds: &[Kind::Model], required: true, gather: false, doc: "a trained network" };
