//! `random_net`: a network of a preset as training would start it, never trained. Probed like
//! any trained network, it is the random-features floor every table needs beside the pixels.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{InputSpec, Kind, Op, OpError, OutputSpec, StageCtx};
use crate::artifact::{Images, Labels, Split};
use crate::config::params::{self, ParamError, Params};
use crate::nn::{self, Arch, ImageData};

/// Parameters of `random_net`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomNetParams {
    /// Network preset, as for `train` (the same preset as the networks it is a floor for).
    pub arch: String,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl Params for RandomNetParams {
    fn validate(&self) -> Result<(), ParamError> {
        if !nn::PRESETS.contains(&self.arch.as_str()) {
            return Err(ParamError::field(
                "arch",
                format!("unknown network preset `{}`", self.arch),
                Some(format!("valid: {}", nn::PRESETS.join(", "))),
            ));
        }
        Ok(())
    }
}

/// The `random_net` op.
pub struct RandomNet;

impl Op for RandomNet {
    fn name(&self) -> &'static str {
        "random_net"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "an untrained network of a preset (seeded initial weights): the random-features floor"
    }
    fn inputs(&self) -> &'static [InputSpec] {
        &[
            super::train::TRAINING_IMAGES,
            InputSpec {
                name: "labels",
                kinds: &[Kind::Labels],
                required: true,
                gather: false,
                doc: "the labels the network would be trained on (the size of its head)",
            },
        ]
    }
    fn outputs(&self) -> &'static [OutputSpec] {
        &[OutputSpec { name: "model", kind: Kind::Model, doc: "the untrained network" }]
    }
    fn param_fields(&self) -> &'static [&'static str] {
        params::field_names::<RandomNetParams>()
    }
    fn normalize(&self, raw: &Json) -> Result<Json, ParamError> {
        params::normalize::<RandomNetParams>(raw)
    }
    fn run(&self, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let p: RandomNetParams = ctx.params()?;
        let images = Images::load(&ctx.input("images")?.dir)?;
        let labels = Labels::load(&ctx.input("labels")?.dir)?;
        let m = &images.meta;
        let arch = Arch::preset(&p.arch, m.channels, labels.meta.num_classes)
            .ok_or_else(|| OpError::Invalid(format!("unknown preset {}", p.arch)))?;
        if (m.frames > 1) != arch.is_video() {
            return Err(OpError::Invalid(format!(
                "arch = \"{}\" does not take the {} of {}",
                p.arch,
                if m.frames > 1 { "clips" } else { "images" },
                m.dataset
            )));
        }
        let n = images.count(Split::Train);
        let data = ImageData { pixels: &images.train, n, c: m.channels, t: m.frames, h: m.height, w: m.width };
        let net = nn::random_network(&arch, &data, p.seed, ctx.device)?;
        let out = ctx.output_dir("model");
        std::fs::create_dir_all(&out).map_err(OpError::io("creating the model folder"))?;
        net.save(&out.join("model.safetensors"))?;
        Ok(())
    }
}
