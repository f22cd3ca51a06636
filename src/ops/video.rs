//! `video`: labelled action clips generated from a real image data set (see [`crate::video`]):
//! train clips from train images, test clips from test images, labels in one of the label spaces
//! (`verb`, `kinetics`, `sports`, `temporal`), and a PNG contact sheet of the first clips.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Examples, Facts, InputFacts, Kind, OpError, OpSpec, OutputFacts, OutputSpec, StageCtx, StageKind};
use crate::artifact::{Images, ImagesMeta, Labels, LabelsMeta};
use crate::config::params::{ParamError, Params};
use crate::data::{self, DatasetName, LoadOptions, SyntheticOptions};
use crate::video::{self, strip, ClipStyle, LabelSpace, ObjectGroups, SourceSplit, Verb, Vocabulary};

/// Parameters of `video`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoParams {
    /// Data set whose images are the moving objects (grey, square).
    #[serde(default = "defaults::source")]
    pub source: String,
    /// A folder holding the source's raw files, read (and checked against their digests) unless
    /// the cache already holds a verified copy, which has the same bytes; it must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Clips made from training images.
    #[schemars(range(min = 1))]
    pub train_size: usize,
    /// Clips made from test images.
    #[schemars(range(min = 1))]
    pub test_size: usize,
    /// Canvas side in pixels.
    #[serde(default = "defaults::size")]
    #[schemars(range(min = 12, max = 96))]
    pub size: usize,
    /// Frames per clip.
    #[serde(default = "defaults::frames")]
    #[schemars(range(min = 3, max = 32))]
    pub frames: usize,
    /// Up to this many dim static distractor objects per clip.
    #[serde(default = "defaults::distractors")]
    #[schemars(range(max = 6))]
    pub distractors: usize,
    /// Background clutter and frame noise, 0..=1.
    #[serde(default = "defaults::clutter")]
    #[schemars(range(min = 0, max = 1))]
    pub clutter: f32,
    /// `verb`, `kinetics`, `sports` or `temporal`.
    #[serde(default = "defaults::label_space")]
    pub label_space: String,
    /// Use only the top-m verbs of the ranking (all 16 by default); at least 2 for `verb` and
    /// `temporal`, and for `temporal` a count that keeps each reversible verb's reversal.
    #[serde(default = "defaults::num_verbs")]
    #[schemars(range(min = 1, max = Verb::RANKED.len()))]
    pub num_verbs: usize,
    /// Seed of every draw.
    pub seed: u64,
}

mod defaults {
    pub fn source() -> String {
        "fashion-mnist".into()
    }
    pub fn size() -> usize {
        32
    }
    pub fn frames() -> usize {
        8
    }
    pub fn distractors() -> usize {
        2
    }
    pub fn clutter() -> f32 {
        0.3
    }
    pub fn label_space() -> String {
        "verb".into()
    }
    pub fn num_verbs() -> usize {
        super::Verb::RANKED.len()
    }
}

impl VideoParams {
    /// How many classes the labels have, where the verbs decide it (kinetics's depend on the
    /// source's objects: `None`, as for a label space that does not parse).
    fn classes(&self) -> Option<usize> {
        match self.label_space.parse() {
            Ok(space @ (LabelSpace::Verb | LabelSpace::Temporal)) => {
                Some(video::verb_list(space, self.num_verbs).len())
            }
            Ok(space @ LabelSpace::Sports) => {
                Some(video::sports_families(&video::verb_list(space, self.num_verbs)).len() * 2)
            }
            _ => None,
        }
    }
}

impl Params for VideoParams {
    fn validate(&self) -> Result<(), ParamError> {
        self.source
            .parse::<DatasetName>()
            .map_err(|_| ParamError::unknown_name("source", "data set", &self.source, &DatasetName::valid_names()))?;
        if !(12..=96).contains(&self.size) {
            return Err(ParamError::range("size", self.size, "between 12 and 96"));
        }
        // Three at least: `bounce` hops up and back down, which two frames (its start and its end,
        // both on the ground) show as an object standing still.
        if !(3..=32).contains(&self.frames) {
            return Err(ParamError::range("frames", self.frames, "between 3 and 32"));
        }
        // After `size` and `frames`: the memory is judged by a clip known to be in range, and a
        // clip out of range is named as such, not as too many clips.
        for (field, v) in [("train_size", self.train_size), ("test_size", self.test_size)] {
            if v == 0 {
                return Err(ParamError::range(field, 0, "at least 1"));
            }
            // Clips are held as bytes and, while training, as f32.
            let each = (self.frames * self.size * self.size * 5) as u64;
            crate::config::limits::fits_in_memory(field, v as u64, each, "clips")?;
        }
        if self.distractors > 6 {
            return Err(ParamError::range("distractors", self.distractors, "at most 6"));
        }
        if !(0.0..=1.0).contains(&self.clutter) {
            return Err(ParamError::range("clutter", self.clutter, "between 0 and 1"));
        }
        let space: LabelSpace = self.label_space.parse().map_err(|_| {
            ParamError::unknown_name("label_space", "label space", &self.label_space, &LabelSpace::NAMES)
        })?;
        // Verbs alone must make two classes (one class is nothing to classify, cluster or tag);
        // kinetics and sports label by more than the verb.
        let lo = if matches!(space, LabelSpace::Verb | LabelSpace::Temporal) { 2 } else { 1 };
        if !(lo..=Verb::RANKED.len()).contains(&self.num_verbs) {
            return Err(ParamError::range(
                "num_verbs",
                self.num_verbs,
                &format!("between {lo} and {} for label_space `{}`", Verb::RANKED.len(), self.label_space),
            ));
        }
        // `temporal` keeps the reversible verbs among the first `num_verbs` only, and every one
        // of them needs its reversal among the classes, or time's direction is not what
        // tells it apart (rotate_cw alone is told by its spin).
        if space == LabelSpace::Temporal {
            let top = &Verb::RANKED[..self.num_verbs];
            if let Some(v) = top.iter().find(|v| v.reverse() != **v && !top.contains(&v.reverse())) {
                let valid: Vec<String> = (2..=Verb::RANKED.len())
                    .filter(|&m| Verb::RANKED[..m].iter().all(|v| Verb::RANKED[..m].contains(&v.reverse())))
                    .map(|m| m.to_string())
                    .collect();
                return Err(ParamError::field(
                    "num_verbs",
                    format!(
                        "`num_verbs` = {} keeps `{}` for label_space `temporal` without its reversal `{}`",
                        self.num_verbs,
                        v.name(),
                        v.reverse().name()
                    ),
                    Some(format!("valid for `temporal`: {}", valid.join(", "))),
                ));
            }
        }
        let classes = self.classes().unwrap_or(0);
        if space == LabelSpace::Temporal && classes < 2 {
            return Err(ParamError::range(
                "num_verbs",
                self.num_verbs,
                &format!("large enough for two reversible verbs (the first {} give {classes})", self.num_verbs),
            ));
        }
        Ok(())
    }
}

/// The `video` op.
pub struct Video;

impl StageKind for Video {
    type Params = VideoParams;
    const JOB: super::JobShape = super::JobShape::job(1, 4, 0, 60);
    const SPEC: &'static OpSpec = &OpSpec {
        name: "video",
        // 2: `sports` has the classes of the families its verbs move in (with fewer than all 16
        //    verbs it declared ten, most of which no clip had); with all 16, the same bytes.
        version: 2,
        summary: "action clips generated from a real image set: verbs, distractors, clutter; four label spaces",
        inputs: &[],
        outputs: &[
            OutputSpec { name: "clips", kind: Kind::Clips, doc: "u8 clips [N, 1, T, H, W] of both splits" },
            OutputSpec { name: "labels", kind: Kind::Labels, doc: "one class per clip in the chosen label space" },
            OutputSpec { name: "preview", kind: Kind::Report, doc: "clips.png: the first train clips, frame by frame" },
        ],
        metrics: &[],
    };

    fn replicated(&self, _raw: &serde_json::Map<String, serde_json::Value>) -> bool {
        false
    }

    fn facts(&self, p: &VideoParams, _inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        let rows = [p.train_size, p.test_size];
        // Known where the vocabulary does not depend on the source's objects (kinetics's does),
        // so that what the labels feed is checked before anything runs.
        let all = Examples::made_by("video", p);
        let examples = Some([all, all]);
        Ok(OutputFacts::from([
            ("clips".to_string(), Facts::images(rows, [1, p.size, p.size], p.frames, false).of(examples)),
            ("labels".to_string(), Facts::labels(Some(rows), p.classes()).of(examples)),
        ]))
    }

    fn preflight(&self, p: &VideoParams, _fed: &InputFacts, _site: &super::Site) -> Result<(), ParamError> {
        super::dataset::check_source_folder(p.path.as_deref(), &p.source)
    }

    fn run(&self, p: VideoParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        // Again here: a cluster job runs on a node that may not see the folder `cfrun run` saw.
        super::dataset::check_source_folder(p.path.as_deref(), &p.source).map_err(|e| OpError::Invalid(e.message))?;
        let name: DatasetName =
            p.source.parse().map_err(|_| OpError::Invalid(format!("unknown data set {}", p.source)))?;
        let space: LabelSpace = p.label_space.parse().map_err(OpError::Invalid)?;
        let opts = LoadOptions {
            path: p.path.clone(),
            data_dir: ctx.data_dir.clone(),
            train_size: None,
            test_size: None,
            subset_seed: p.seed,
            // Source images only: a few hundred shapes are plenty of distinct objects.
            synthetic: SyntheticOptions { seed: p.seed, n_train: 500, n_test: 200, ..SyntheticOptions::default() },
        };
        let ds = data::load(name, &opts)?;
        if ds.meta.channels != 1 || ds.meta.height != ds.meta.width {
            return Err(OpError::Invalid(format!(
                "{} has {}x{}x{} images; clips need grey square source images",
                ds.meta.dataset, ds.meta.channels, ds.meta.height, ds.meta.width
            )));
        }
        let style = ClipStyle { size: p.size, frames: p.frames, distractors: p.distractors, clutter: p.clutter };
        let vocab = Vocabulary {
            space,
            verbs: video::verb_list(space, p.num_verbs),
            groups: ObjectGroups::for_source(&ds.meta.dataset, &ds.meta.class_names),
        };
        let mut out = Vec::new();
        for (split, n, stream) in [(&ds.train, p.train_size, "video-train"), (&ds.test, p.test_size, "video-test")] {
            let src = SourceSplit { pixels: &split.pixels, labels: &split.labels, side: ds.meta.width };
            out.push(video::generate(&src, &vocab.verbs, n, &style, p.seed, stream));
        }
        let [train, test] = <[_; 2]>::try_from(out).map_err(|_| OpError::Invalid("two splits".into()))?;
        tracing::info!(
            "{}: {} train / {} test clips of {} frames {}x{}, {} classes ({})",
            ctx.name,
            p.train_size,
            p.test_size,
            p.frames,
            p.size,
            p.size,
            vocab.num_classes(),
            p.label_space
        );
        let preview = ctx.output_dir("preview");
        std::fs::create_dir_all(&preview).map_err(OpError::io("creating the preview folder"))?;
        let rows: Vec<usize> = (0..p.train_size.min(vocab.verbs.len()).min(16)).collect();
        let layout = strip::StripLayout { frames: p.frames, size: p.size, zoom: 3 };
        let png = strip::png_strip(&train.pixels, &rows, layout).map_err(OpError::Invalid)?;
        std::fs::write(preview.join("clips.png"), png).map_err(OpError::io("writing clips.png"))?;
        let labels = Labels {
            meta: LabelsMeta {
                num_classes: vocab.num_classes(),
                class_names: vocab.class_names(),
                source: format!("{} clips of {} ({})", p.label_space, ds.meta.dataset, vocab.verbs.len()),
                tag_classes: Vec::new(),
            },
            train: train.facts.iter().map(|f| vocab.label(f)).collect(),
            test: test.facts.iter().map(|f| vocab.label(f)).collect(),
            tags: None,
        };
        labels.save(&ctx.output_dir("labels"))?;
        let meta = ImagesMeta {
            dataset: format!("{}-clips", ds.meta.dataset),
            channels: 1,
            height: p.size,
            width: p.size,
            num_classes: labels.meta.num_classes,
            class_names: labels.meta.class_names.clone(),
            // A mirrored clip swaps left and right motions: never flip.
            hflip_ok: false,
            frames: p.frames,
        };
        Images { meta, train: train.pixels, test: test.pixels }.save(&ctx.output_dir("clips")).map_err(OpError::from)
    }
}
