//! `random_net`: a network of a preset as training would start it, never trained. Probed like
//! any trained network, it is the random-features floor every table needs beside the pixels.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::training::{NetParams, TRAINING_IMAGES};
use super::{InputFacts, Kind, OpError, OpSpec, OutputFacts, OutputSpec, StageCtx, StageKind};
use crate::artifact::{Images, Labels, Split};
use crate::config::params::{self, ParamError, Params};
use crate::nn::{self, ImageData};

/// Parameters of `random_net`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RandomNetParams {
    /// The network, as for `train` (the same as the networks it is a floor for).
    #[serde(flatten)]
    pub net: NetParams,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl Params for RandomNetParams {
    fn fields() -> Vec<&'static str> {
        params::with_groups(&[NetParams::fields()], &["seed"])
    }

    fn check_groups(raw: &Json) -> Result<(), ParamError> {
        params::check_group::<NetParams>(raw)
    }

    fn validate(&self) -> Result<(), ParamError> {
        self.net.validate()
    }
}

/// The `random_net` op.
pub struct RandomNet;

impl StageKind for RandomNet {
    type Params = RandomNetParams;
    const SPEC: &'static OpSpec = &OpSpec {
        name: "random_net",
        // 2: 3x3 stride-1 convolutions by Winograd F(2x2, 3x3) on CPU (different rounding).
        // 3: R(2+1)D as fused ops (different rounding).
        version: 4,
        summary: "an untrained network of a preset (seeded initial weights): the random-features floor",
        inputs: &[
            TRAINING_IMAGES,
            super::labels_input("the labels the network would be trained on (the size of its head)"),
        ],
        outputs: &[OutputSpec { name: "model", kind: Kind::Model, doc: "the untrained network" }],
        metrics: &[],
    };

    fn preflight(&self, p: &RandomNetParams, _fed: &InputFacts, site: &super::Site) -> Result<(), ParamError> {
        // The weights alone, drawn and saved.
        p.net.check_weights_memory(site, 1)
    }

    fn facts(&self, p: &RandomNetParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        p.net.check_input_kind(inputs)?;
        let model = p.net.model_facts(inputs, inputs.get("labels").classes);
        Ok(OutputFacts::from([("model".to_string(), model)]))
    }

    fn run(&self, p: RandomNetParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let images = Images::load(&ctx.input("images")?.dir)?;
        let labels = Labels::load(&ctx.input("labels")?.dir)?;
        let m = &images.meta;
        let arch = p.net.arch(m.channels, labels.meta.num_classes)?;
        if (m.frames > 1) != arch.is_video() {
            return Err(OpError::Invalid(format!(
                "arch = \"{}\" does not take the {} of {}",
                p.net.arch,
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
