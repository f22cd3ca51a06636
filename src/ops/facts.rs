//! What is known of a stage's outputs before anything runs: how many examples each split holds,
//! how many classes labels have or a model predicts, whether images are clips. Each op derives
//! its outputs' facts from its parameters and its inputs' facts, and refuses inputs that cannot
//! work together (k above the points to cluster, labels of another data set, an image network on
//! clips) with the field at fault, before hours of upstream training are spent to find out.
//!
//! A fact is only ever stated when the op's `run` is sure to produce it; anything that depends
//! on what runs (a `command` stage's outputs, the clusters per label of `per_label_kmeans`)
//! stays unknown, and every check passes on unknowns. The run-time checks stay: they still guard recipes from
//! job files and outputs whose facts were unknown here.

use std::collections::BTreeMap;

use crate::config::params::ParamError;

/// What is known of one output before it exists; `None` where it depends on what runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// Examples in the train and test splits (images, clips, labels, feature rows).
    pub rows: Option<[usize; 2]>,
    /// Classes of labels, or the classes a model predicts.
    pub classes: Option<usize>,
    /// Frames per example of images (1) and clips (more).
    pub frames: Option<usize>,
    /// Channels of images and clips, or the channels a model takes.
    pub channels: Option<usize>,
    /// Height and width of images and clips' frames.
    pub side: Option<[usize; 2]>,
    /// Whether a model takes clips (an R(2+1)D) rather than images.
    pub video: Option<bool>,
    /// Whether images keep their meaning mirrored (no digits, no clips).
    pub hflip_ok: Option<bool>,
    /// Which examples the rows of the train and test splits are, where known.
    pub examples: Option<[Examples; 2]>,
    /// Whether labels' ids are tags that map to the classes they denote (`weak_tags`' vocabulary).
    pub tag_map: Option<bool>,
    /// Whether a model was trained on a pretext task (its head predicts rotations or tile
    /// orders, no data set's classes).
    pub pretext: Option<bool>,
}

/// A fingerprint of what made a set of examples (a data set's name, sizes and seed; a
/// generator's parameters): two inputs with the same row counts but other examples would
/// otherwise be paired row by row without a word. Only ever compared within one plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Examples(u64);

impl Examples {
    /// The examples made by `op` from `what` (everything their content depends on).
    pub fn made_by(op: &str, what: &impl serde::Serialize) -> Examples {
        let mut hasher = blake3::Hasher::new();
        hasher.update(op.as_bytes());
        hasher.update(&serde_json::to_vec(what).expect("plain data"));
        let bytes: [u8; 8] = hasher.finalize().as_bytes()[..8].try_into().expect("8 bytes");
        Examples(u64::from_le_bytes(bytes))
    }
}

impl Facts {
    /// Images or clips: `rows` examples of `frames` frames of `[channels, height, width]`, which
    /// may be mirrored or not.
    pub fn images(rows: [usize; 2], [channels, height, width]: [usize; 3], frames: usize, hflip_ok: bool) -> Facts {
        Facts {
            rows: Some(rows),
            frames: Some(frames),
            channels: Some(channels),
            side: Some([height, width]),
            hflip_ok: Some(hflip_ok),
            ..Facts::default()
        }
    }

    /// Labels of `rows` examples in `classes` classes (unknown where `None`), plain classes rather
    /// than tags (see [`Facts::tags`]).
    pub fn labels(rows: Option<[usize; 2]>, classes: Option<usize>) -> Facts {
        Facts { rows, classes, tag_map: Some(false), ..Facts::default() }
    }

    /// Labels whose `tags` ids are tags mapped to the classes they denote.
    pub fn tags(rows: Option<[usize; 2]>, tags: Option<usize>) -> Facts {
        Facts { tag_map: Some(true), ..Facts::labels(rows, tags) }
    }

    /// Feature rows, as many as `rows`.
    pub fn rows(rows: Option<[usize; 2]>) -> Facts {
        Facts { rows, ..Facts::default() }
    }

    /// Rows of the same examples as `from`'s, one per example (features of images, labels of
    /// features): its row counts and which examples they are.
    pub fn rows_of(from: Facts) -> Facts {
        Facts { rows: from.rows, examples: from.examples, ..Facts::default() }
    }

    /// These facts, of the examples `examples` (train, test).
    pub fn of(self, examples: Option<[Examples; 2]>) -> Facts {
        Facts { examples, ..self }
    }
}

/// The facts of each output an instance writes, by output name; outputs left out are unknown.
pub type OutputFacts = BTreeMap<String, Facts>;

/// One output a slot reads: the instance that writes it, and what is known of it.
#[derive(Debug, Clone)]
pub struct Fed {
    /// The upstream instance's display name, e.g. `noisy[p=0.2]`, for messages.
    pub from: String,
    /// What is known of the output.
    pub facts: Facts,
}

/// The facts of an instance's inputs, by slot, one per output the slot reads; a slot that is
/// unset or fed by an output of unknown facts reads as [`Facts::default`].
#[derive(Debug, Clone, Default)]
pub struct InputFacts {
    by_slot: BTreeMap<String, Vec<Fed>>,
}

impl InputFacts {
    /// Records one more output read by `slot`, written by the instance named `from`.
    pub fn insert(&mut self, slot: &str, from: &str, facts: Facts) {
        self.by_slot.entry(slot.to_string()).or_default().push(Fed { from: from.to_string(), facts });
    }

    /// What feeds `slot`, a slot that reads one output.
    pub fn get(&self, slot: &str) -> Facts {
        match self.by_slot.get(slot).map(Vec::as_slice) {
            Some([one]) => one.facts,
            _ => Facts::default(),
        }
    }

    /// Every output `slot` reads, in the order the stage lists them.
    pub fn each(&self, slot: &str) -> &[Fed] {
        self.by_slot.get(slot).map_or(&[], Vec::as_slice)
    }

    /// `` `slot` (from `instance`) `` where one instance feeds the slot, else `` `slot` ``: lets a
    /// refusal of two inputs that disagree name both sources, since either may be the one at fault.
    fn named(&self, slot: &str) -> String {
        match self.by_slot.get(slot).map(Vec::as_slice) {
            Some([one]) => format!("`{slot}` (from `{}`)", one.from),
            _ => format!("`{slot}`"),
        }
    }
}

/// Refuses `choice` (written at `field`), which reads the map from tags to classes that
/// `weak_tags` writes, when `slot` is known to be fed labels without one: the stage would fail
/// only once it ran, after everything upstream.
pub fn tags_mapped(inputs: &InputFacts, slot: &str, field: &str, choice: &str) -> Result<(), ParamError> {
    if inputs.get(slot).tag_map != Some(false) {
        return Ok(());
    }
    Err(ParamError::field(
        field,
        format!("{choice} maps tags to the classes they denote, but {} holds plain labels", inputs.named(slot)),
        Some(format!("feed `{slot}` from a `weak_tags` stage, or drop {choice}")),
    ))
}

/// Refuses `slot` fed by `weak_tags`, for an op that reads one class per example (`to` says
/// what for): a tag set's one id per example is its lowest tag, which may denote no class at
/// all, so a score against it is a plausible-looking but meaningless number.
pub fn plain_labels(inputs: &InputFacts, slot: &str, to: &str) -> Result<(), ParamError> {
    if inputs.get(slot).tag_map != Some(true) {
        return Ok(());
    }
    Err(ParamError::field(
        slot,
        format!(
            "{} holds `weak_tags`' tag sets, whose one id per example is its lowest tag (perhaps one that \
             denotes no class), not a class to {to}",
            inputs.named(slot)
        ),
        Some(format!("feed `{slot}` the clean labels the tags were drawn from (the `labels` of the data set)")),
    ))
}

/// Refuses `field = value` above the training rows of `slot` when their count is known (`k`
/// clusters each need a point, cross-validation folds each a held-out row): the shortfall would
/// otherwise surface only after upstream training. `to` says what the rows are for, `remedy` the
/// other way out.
pub fn within_train_rows(
    inputs: &InputFacts,
    slot: &str,
    (field, value): (&str, usize),
    to: &str,
    remedy: &str,
) -> Result<(), ParamError> {
    let Some([n, _]) = inputs.get(slot).rows else { return Ok(()) };
    if value <= n {
        return Ok(());
    }
    if n == 0 {
        return Err(ParamError::field(field, format!("`{slot}` has no training rows to {to}"), Some(remedy.into())));
    }
    Err(ParamError::field(
        field,
        format!("`{field}` is {value}, more than the {n} training rows of `{slot}` to {to}"),
        Some(format!("use {field} <= {n}, or {remedy}")),
    ))
}

/// Refuses two inputs whose row counts differ in the splits `splits` (0 train, 1 test) when
/// both are known. The error points at the second slot, read against the first, and names the
/// instance feeding each.
pub fn same_rows(inputs: &InputFacts, first: &str, second: &str, splits: &[usize]) -> Result<(), ParamError> {
    let (Some(a), Some(b)) = (inputs.get(first).rows, inputs.get(second).rows) else { return Ok(()) };
    if splits.iter().all(|&s| a[s] == b[s]) {
        return same_examples(inputs, first, second, splits);
    }
    let show = |r: [usize; 2]| match splits {
        [0] => format!("{} train examples", r[0]),
        [1] => format!("{} test examples", r[1]),
        _ => format!("{}/{} (train/test) examples", r[0], r[1]),
    };
    Err(ParamError::field(
        second,
        format!(
            "{} has {} but {} has {}; both must describe the same data set",
            inputs.named(second),
            show(b),
            inputs.named(first),
            show(a)
        ),
        Some(format!("read `{first}` and `{second}` from stages built on the same data set and sizes")),
    ))
}

/// Refuses two inputs with as many rows in `splits` that are other examples, when both are known.
fn same_examples(inputs: &InputFacts, first: &str, second: &str, splits: &[usize]) -> Result<(), ParamError> {
    let (Some(a), Some(b)) = (inputs.get(first).examples, inputs.get(second).examples) else { return Ok(()) };
    if splits.iter().all(|&s| a[s] == b[s]) {
        return Ok(());
    }
    Err(ParamError::field(
        second,
        format!(
            "{} and {} have as many rows, but of other examples (another data set, subset or seed)",
            inputs.named(second),
            inputs.named(first)
        ),
        Some(format!(
            "row i of one would be paired with row i of the other: read `{first}` and `{second}` from stages \
             built on the same data set stage"
        )),
    ))
}

/// Refuses a model (in `model_slot`) that cannot read the images in `images_slot`, cut to
/// `clip_frames` frames where set: an image network fed several frames at once, or another
/// channel count. A video network reads still images (one frame), an image network one frame of
/// a clip.
pub fn model_fits_images(
    inputs: &InputFacts,
    model_slot: &str,
    images_slot: &str,
    clip_frames: Option<usize>,
) -> Result<(), ParamError> {
    let (model, images) = (inputs.get(model_slot), inputs.get(images_slot));
    if let (Some(false), Some(frames)) = (model.video, images.frames) {
        if clip_frames.unwrap_or(frames) > 1 {
            return Err(ParamError::field(
                model_slot,
                format!("the model takes images but `{images_slot}` holds clips"),
                Some(format!(
                    "feed it images, cut the clips to single frames (clip_frames = 1), or use a video model \
                     (r2plus1d) for the clips of `{images_slot}`"
                )),
            ));
        }
    }
    if let (Some(takes), Some(has)) = (model.channels, images.channels) {
        if takes != has {
            return Err(ParamError::field(
                model_slot,
                format!("the model takes {takes} input channels but `{images_slot}` has {has}"),
                Some(format!("use a model trained on images like those of `{images_slot}`")),
            ));
        }
    }
    Ok(())
}

/// Refuses `clip_frames` above the frames of the images in `images_slot`.
pub fn clip_frames_fit(inputs: &InputFacts, images_slot: &str, clip_frames: Option<usize>) -> Result<(), ParamError> {
    let (Some(f), Some(frames)) = (clip_frames, inputs.get(images_slot).frames) else { return Ok(()) };
    if f <= frames {
        return Ok(());
    }
    let held = if frames == 1 { "still images (1 frame)".to_string() } else { format!("clips of {frames} frames") };
    Err(ParamError::field(
        "clip_frames",
        format!("`clip_frames` is {f}, but `{images_slot}` holds {held}"),
        Some(format!("use at most {frames}, or leave it unset for whole clips")),
    ))
}

/// Refuses an architecture for the wrong kind of input: `video` says whether the preset
/// `arch` takes clips, checked against the frames of the images in `images_slot`.
pub fn arch_fits_images(inputs: &InputFacts, arch: &str, video: bool, images_slot: &str) -> Result<(), ParamError> {
    let Some(frames) = inputs.get(images_slot).frames else { return Ok(()) };
    if video == (frames > 1) {
        return Ok(());
    }
    Err(ParamError::field(
        "arch",
        format!(
            "arch = \"{arch}\" takes {}, but `{images_slot}` holds {}",
            if video { "clips" } else { "images" },
            if frames > 1 { "clips" } else { "images" }
        ),
        Some(format!("use {}", if frames > 1 { "an r2plus1d preset" } else { "a resnet preset" })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feeding(pairs: &[(&str, Facts)]) -> InputFacts {
        let mut inputs = InputFacts::default();
        for (slot, f) in pairs {
            inputs.insert(slot, &format!("{slot}_stage"), *f);
        }
        inputs
    }

    #[test]
    fn rows_that_differ_are_refused_on_the_second_slot_and_unknown_rows_pass() {
        let a = Facts::rows(Some([800, 200]));
        let b = Facts::labels(Some([800, 100]), Some(10));
        let inputs = feeding(&[("features", a), ("labels", b)]);
        let e = same_rows(&inputs, "features", "labels", &[0, 1]).unwrap_err();
        assert_eq!(e.path, "labels");
        assert_eq!(
            e.message,
            "`labels` (from `labels_stage`) has 800/100 (train/test) examples but `features` (from \
             `features_stage`) has 800/200 (train/test) examples; both must describe the same data set"
        );
        assert!(same_rows(&inputs, "features", "labels", &[0]).is_ok(), "only the train split is compared");
        let e = same_rows(&inputs, "features", "labels", &[1]).unwrap_err();
        assert!(e.message.contains("100 test"), "{}", e.message);
        let unknown = feeding(&[("features", Facts::default()), ("labels", b)]);
        assert!(same_rows(&unknown, "features", "labels", &[0, 1]).is_ok());
        assert!(same_rows(&inputs, "features", "unset", &[0, 1]).is_ok());
    }

    #[test]
    fn a_model_must_take_what_the_images_are() {
        let image_net = Facts { video: Some(false), channels: Some(1), ..Facts::default() };
        let clips = Facts::images([10, 5], [1, 16, 16], 8, false);
        let e = model_fits_images(&feeding(&[("model", image_net), ("images", clips)]), "model", "images", None)
            .unwrap_err();
        assert_eq!(e.path, "model");
        assert!(e.message.contains("takes images but `images` holds clips"), "{}", e.message);
        let rgb = Facts::images([10, 5], [3, 16, 16], 1, true);
        let e =
            model_fits_images(&feeding(&[("model", image_net), ("images", rgb)]), "model", "images", None).unwrap_err();
        assert!(e.message.contains("1 input channels but `images` has 3"), "{}", e.message);
        let grey = Facts::images([10, 5], [1, 16, 16], 1, true);
        assert!(model_fits_images(&feeding(&[("model", image_net), ("images", grey)]), "model", "images", None).is_ok());
        let one_frame =
            model_fits_images(&feeding(&[("model", image_net), ("images", clips)]), "model", "images", Some(1));
        assert!(one_frame.is_ok(), "an image network reads clips cut to single frames");
        let video_net = Facts { video: Some(true), channels: Some(1), ..Facts::default() };
        let fits =
            |images| model_fits_images(&feeding(&[("model", video_net), ("images", images)]), "model", "images", None);
        assert!(fits(grey).is_ok() && fits(clips).is_ok(), "a video network reads clips and single frames");
        assert!(model_fits_images(&feeding(&[("images", clips)]), "model", "images", None).is_ok(), "unknown model");
    }

    #[test]
    fn clip_frames_may_not_exceed_the_frames_held() {
        let clips = feeding(&[("images", Facts::images([10, 5], [1, 16, 16], 8, false))]);
        assert!(clip_frames_fit(&clips, "images", Some(8)).is_ok() && clip_frames_fit(&clips, "images", None).is_ok());
        let e = clip_frames_fit(&clips, "images", Some(9)).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("clip_frames", "`clip_frames` is 9, but `images` holds clips of 8 frames")
        );
        let still = feeding(&[("images", Facts::images([10, 5], [1, 16, 16], 1, true))]);
        assert!(clip_frames_fit(&still, "images", Some(2)).unwrap_err().message.contains("still images (1 frame)"));
    }

    #[test]
    fn an_architecture_must_take_what_the_images_are() {
        let clips = feeding(&[("images", Facts::images([10, 5], [1, 16, 16], 8, false))]);
        let e = arch_fits_images(&clips, "resnet_tiny", false, "images").unwrap_err();
        assert_eq!(e.path, "arch");
        assert!(e.message.contains("takes images, but `images` holds clips") && e.help.unwrap().contains("r2plus1d"));
        assert!(arch_fits_images(&clips, "r2plus1d_small", true, "images").is_ok());
        let images = feeding(&[("images", Facts::images([10, 5], [1, 16, 16], 1, true))]);
        assert!(arch_fits_images(&images, "r2plus1d_small", true, "images").is_err());
        assert!(arch_fits_images(&InputFacts::default(), "resnet_tiny", false, "images").is_ok());
    }
}
