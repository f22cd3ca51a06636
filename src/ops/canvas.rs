//! `canvas`: the multi-label target, a VOC07 analog. Canvases of 2-3 objects taken from a labelled
//! data set (train canvases from its train split, test canvases from its test split), each
//! labelled with the set of its objects' classes (see [`crate::selfsup::canvas`]).

use serde::{Deserialize, Serialize};

use super::facts::{self, Examples, Facts, InputFacts, OutputFacts};
use super::{InputSpec, Kind, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::artifact::{Images, ImagesMeta, Labels, MultiLabels, MultiLabelsMeta, Split};
use crate::config::params::{ParamError, Params};
use crate::selfsup::canvas::{compose, CanvasSpec, Objects};

/// Parameters of `canvas`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CanvasParams {
    /// Side of a canvas in pixels (at least twice the objects' side).
    #[serde(default = "defaults::size")]
    #[schemars(range(min = 2, max = 512))]
    pub size: usize,
    /// Fewest objects per canvas.
    #[serde(default = "defaults::min_objects")]
    #[schemars(range(min = 1, max = 4))]
    pub min_objects: usize,
    /// Most objects per canvas (at most 4).
    #[serde(default = "defaults::max_objects")]
    #[schemars(range(min = 1, max = 4))]
    pub max_objects: usize,
    /// Training canvases.
    #[schemars(range(min = 2))]
    pub train_size: usize,
    /// Test canvases.
    #[schemars(range(min = 1))]
    pub test_size: usize,
    /// Seed of the composition.
    pub seed: u64,
}

mod defaults {
    pub fn size() -> usize {
        56
    }
    pub fn min_objects() -> usize {
        2
    }
    pub fn max_objects() -> usize {
        3
    }
}

impl Params for CanvasParams {
    fn validate(&self) -> Result<(), ParamError> {
        if !(1..=4).contains(&self.max_objects) {
            return Err(ParamError::range(
                "max_objects",
                self.max_objects,
                "between 1 and 4 (one object per quadrant)",
            ));
        }
        if self.min_objects == 0 || self.min_objects > self.max_objects {
            return Err(ParamError::range("min_objects", self.min_objects, "between 1 and `max_objects`"));
        }
        if self.size < 2 || self.size > 512 {
            return Err(ParamError::range("size", self.size, "between 2 and 512"));
        }
        for (field, n) in [("train_size", self.train_size), ("test_size", self.test_size)] {
            let side = self.size.min(512) as u64;
            crate::config::limits::fits_in_memory(field, n as u64, side * side * 5, "canvases")?;
        }
        if self.train_size < 2 || self.test_size == 0 {
            let (field, v) = if self.train_size < 2 { ("train_size", self.train_size) } else { ("test_size", 0) };
            return Err(ParamError::range(field, v, if field == "train_size" { "at least 2" } else { "at least 1" }));
        }
        Ok(())
    }
}

/// The `canvas` op.
pub struct Canvas;

impl StageKind for Canvas {
    type Params = CanvasParams;
    const JOB: super::JobShape = super::JobShape::job(1, 4, 0, 60);
    const SPEC: &'static OpSpec = &OpSpec {
        name: "canvas",
        version: 1,
        summary: "multi-object canvases (2-3 objects of a labelled set) with their label sets: the VOC07-like target",
        inputs: &[
            InputSpec { name: "images", kinds: &[Kind::Images], required: true, gather: false, doc: "object images" },
            super::labels_input("their classes"),
        ],
        outputs: &[
            OutputSpec { name: "images", kind: Kind::Images, doc: "canvases of both splits" },
            OutputSpec { name: "multilabels", kind: Kind::MultiLabels, doc: "the classes on each canvas (multi-hot)" },
        ],
        metrics: &[],
    };

    fn replicated(&self, _raw: &serde_json::Map<String, serde_json::Value>) -> bool {
        false
    }

    fn facts(&self, p: &CanvasParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        facts::same_rows(inputs, "images", "labels", &[0, 1])?;
        facts::plain_labels(inputs, "labels", "name the objects on a canvas by")?;
        let (objects, labels) = (inputs.get("images"), inputs.get("labels"));
        if let Some([h, w]) = objects.side {
            // Four cells of half the canvas' side, one object each.
            if 2 * h.max(w) > p.size {
                return Err(ParamError::range(
                    "size",
                    p.size,
                    &format!("at least {}: each quarter of a canvas holds one {h}x{w} object", 2 * h.max(w)),
                ));
            }
        }
        let rows = [p.train_size, p.test_size];
        // New examples, composed of the objects' (unknown examples make unknown canvases).
        let examples = objects.examples.map(|of| Examples::made_by("canvas", &(p, of))).map(|all| [all, all]);
        let images = Facts { rows: Some(rows), frames: Some(1), side: Some([p.size, p.size]), examples, ..objects };
        Ok(OutputFacts::from([
            ("images".to_string(), images),
            ("multilabels".to_string(), Facts::labels(Some(rows), labels.classes).of(examples)),
        ]))
    }

    fn run(&self, p: CanvasParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let images = Images::load(&ctx.input("images")?.dir)?;
        let labels = Labels::load(&ctx.input("labels")?.dir)?;
        let m = &images.meta;
        let spec = CanvasSpec { size: p.size, min_objects: p.min_objects, max_objects: p.max_objects };
        let k = labels.meta.num_classes;
        let mut out = Vec::new();
        for (split, count) in [(Split::Train, p.train_size), (Split::Test, p.test_size)] {
            let objects = Objects {
                pixels: images.split(split),
                labels: labels.split(split),
                c: m.channels,
                h: m.height,
                w: m.width,
                num_classes: k,
            };
            let mut rng = crate::rng::stream(p.seed, split.as_str(), 0);
            out.push(compose(&objects, &spec, count, &mut rng)?);
        }
        let [(train_px, train_hot), (test_px, test_hot)]: [(Vec<u8>, Vec<u8>); 2] = out.try_into().expect("two splits");
        let source = format!("canvases of {} ({}-{} objects)", m.dataset, p.min_objects, p.max_objects);
        let meta = ImagesMeta { dataset: source.clone(), height: p.size, width: p.size, ..m.clone() };
        Images { meta, train: train_px, test: test_px }.save(&ctx.output_dir("images"))?;
        let meta = MultiLabelsMeta { num_classes: k, class_names: labels.meta.class_names.clone(), source };
        MultiLabels { meta, train: train_hot, test: test_hot }
            .save(&ctx.output_dir("multilabels"))
            .map_err(OpError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_object_counts_name_their_field() {
        let e = |v| crate::config::params::normalize::<CanvasParams>(&v).unwrap_err().path;
        let base = |a: usize, b: usize| serde_json::json!({"min_objects": a, "max_objects": b, "train_size": 10, "test_size": 5, "seed": 0});
        assert_eq!(e(base(2, 5)), "max_objects");
        assert_eq!(e(base(3, 2)), "min_objects");
        assert_eq!(e(serde_json::json!({"train_size": 1, "test_size": 5, "seed": 0})), "train_size");
    }
}
