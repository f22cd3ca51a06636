//! Generated action clips from real images: the stand-in for the paper's video data (IG-Verb,
//! Kinetics, Sports1M, Something-Something), which no package registry ships.
//!
//! A clip is `frames` grey `size x size` frames in which one object (an image of the source data
//! set) moves along a [`verbs::Motion`], over a static cluttered background with dim static
//! distractor objects (other images of the same split). Train clips use train images, test clips
//! test images. Per clip the draws are, in order: the object image, the speed class, the motion's
//! parameters, the object's brightness, the background, the distractors, then per-frame noise,
//! all from one ChaCha8 stream seeded by `(seed, split, clip index)`; so generation is parallel
//! and still bit-reproducible. Verbs cycle through the verb list (`clip i` has verb
//! `i mod #verbs`), so every verb has the same number of clips.

pub mod labels;
pub mod render;
pub mod strip;
pub mod verbs;

#[cfg(test)]
mod tests;

use rand::Rng;
use rayon::prelude::*;

pub use labels::{sports_families, verb_list, ClipFacts, LabelSpace, ObjectGroups, Vocabulary};
pub use verbs::{Family, Motion, Pose, Verb};

use crate::rng::stream as rng_for;
use render::{background, Canvas, Sprite};
use verbs::Family as F;

/// How clips look.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipStyle {
    /// Canvas side in pixels.
    pub size: usize,
    /// Frames per clip.
    pub frames: usize,
    /// At most this many static distractor objects per clip (drawn uniformly from 0..=this).
    pub distractors: usize,
    /// Strength of background clutter and frame noise, 0..=1.
    pub clutter: f32,
}

/// A borrowed split of grey, square source images.
#[derive(Clone, Copy, Debug)]
pub struct SourceSplit<'a> {
    /// `n * side * side` pixels.
    pub pixels: &'a [u8],
    /// One class per image.
    pub labels: &'a [u32],
    /// Image side.
    pub side: usize,
}

impl SourceSplit<'_> {
    fn sprite(&self, i: usize) -> Sprite<'_> {
        let len = self.side * self.side;
        Sprite { pixels: &self.pixels[i * len..(i + 1) * len], side: self.side }
    }
}

/// Generated clips of one split: `n * frames * size * size` u8 (`[N, 1, T, H, W]`) and facts.
pub struct GeneratedSplit {
    /// Pixels.
    pub pixels: Vec<u8>,
    /// What each clip shows.
    pub facts: Vec<ClipFacts>,
}

/// Object side as a fraction of the canvas: moving objects and zooms stay inside these.
const OBJECT_FRAC: (f32, f32) = (0.4, 0.6);
const ZOOM_FRAC: (f32, f32) = (0.3, 0.8);

/// Draws the motion of one clip (uniform ranges; `fast` picks the upper range).
pub fn draw_motion(verb: Verb, fast: bool, style: &ClipStyle, side: usize, rng: &mut impl Rng) -> Motion {
    let s = style.size as f32;
    let last = (style.frames.max(2) - 1) as f32;
    let pick = |rng: &mut dyn rand::RngCore, slow: (f32, f32), quick: (f32, f32)| {
        let (lo, hi) = if fast { quick } else { slow };
        rng.random_range(lo..hi)
    };
    let (rate, amplitude) = match verb.family() {
        F::Line => (pick(rng, (0.5, 0.9), (1.3, 1.9)) * s / 32.0, 0.0),
        F::Spin => (pick(rng, (0.12, 0.2), (0.3, 0.45)), 0.0),
        F::Zoom => (pick(rng, (0.03, 0.05), (0.07, 0.1)), 0.0),
        F::Orbit => (pick(rng, (0.25, 0.4), (0.6, 0.8)), rng.random_range(0.12..0.18) * s),
        F::Oscillate => {
            let amp = if verb == Verb::Bounce {
                pick(rng, (0.12, 0.18), (0.25, 0.32))
            } else {
                pick(rng, (0.03, 0.05), (0.08, 0.12))
            };
            (0.0, amp * s)
        }
    };
    let mut frac = rng.random_range(OBJECT_FRAC.0..OBJECT_FRAC.1);
    if verb.family() == F::Zoom {
        // Keep the whole zoom inside the allowed sizes.
        let grow = (rate * last).exp();
        let (lo, hi) =
            if verb == Verb::ZoomIn { (ZOOM_FRAC.0, ZOOM_FRAC.1 / grow) } else { (ZOOM_FRAC.0 * grow, ZOOM_FRAC.1) };
        frac = if hi > lo { rng.random_range(lo..hi) } else { (lo + hi) / 2.0 };
    }
    let angle = if verb.family() == F::Spin {
        rng.random_range(0.0..std::f32::consts::TAU)
    } else {
        rng.random_range(-0.25..0.25)
    };
    let phase = rng.random_range(0.0..std::f32::consts::TAU);
    let scale = frac * s / side as f32;
    let mut motion = Motion { verb, start: Pose { x: 0.0, y: 0.0, angle, scale }, rate, amplitude, phase };
    // Place the start so every frame's centre stays at least a quarter canvas from the edges; a
    // path longer than the middle half (fast lines on small canvases, by up to half a pixel at
    // 24 px and 10 frames) is centred instead, and overshoots that margin by the difference.
    let poses: Vec<Pose> = (0..style.frames).map(|t| motion.pose_at(t, style.frames)).collect();
    let margin = 0.25 * s;
    let place = |rng: &mut dyn rand::RngCore, lo: f32, hi: f32| {
        let (a, b) = (margin - lo, s - margin - hi);
        if b > a {
            rng.random_range(a..b)
        } else {
            (a + b) / 2.0
        }
    };
    let (minx, maxx) = poses.iter().fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p.x), b.max(p.x)));
    let (miny, maxy) = poses.iter().fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p.y), b.max(p.y)));
    motion.start.x = place(rng, minx, maxx);
    motion.start.y = place(rng, miny, maxy);
    motion
}

/// Renders one clip of `motion` (object `sprite`, brightness `gain`) over `scene` into `out`
/// (`frames * size * size`), adding per-frame noise from `rng`.
pub fn render_clip(
    motion: &Motion,
    sprite: Sprite,
    gain: f32,
    scene: &Canvas,
    style: &ClipStyle,
    rng: &mut impl Rng,
    out: &mut [u8],
) {
    let plane = style.size * style.size;
    for (t, frame) in out.chunks_exact_mut(plane).enumerate().take(style.frames) {
        let mut canvas = Canvas { size: style.size, values: scene.values.clone() };
        canvas.draw(sprite, motion.pose_at(t, style.frames), gain);
        if style.clutter > 0.0 {
            for v in &mut canvas.values {
                *v += rng.random_range(0.0..12.0) * style.clutter;
            }
        }
        canvas.to_u8(frame);
    }
}

/// Generates `n` clips from `source` with verbs `verbs`; `stream` names the split in the seed.
pub fn generate(
    source: &SourceSplit,
    verbs: &[Verb],
    n: usize,
    style: &ClipStyle,
    seed: u64,
    stream: &str,
) -> GeneratedSplit {
    let clip_len = style.frames * style.size * style.size;
    let mut pixels = vec![0u8; n * clip_len];
    let count = source.labels.len();
    let facts: Vec<ClipFacts> = pixels
        .par_chunks_mut(clip_len.max(1))
        .enumerate()
        .map(|(i, out)| {
            let mut rng = rng_for(seed, stream, i as u64);
            let object = rng.random_range(0..count);
            let fast = rng.random_bool(0.5);
            let verb = i % verbs.len();
            let motion = draw_motion(verbs[verb], fast, style, source.side, &mut rng);
            let gain = rng.random_range(0.75..1.0);
            let mut scene = background(style.size, style.clutter, &mut rng);
            let s = style.size as f32;
            for _ in 0..rng.random_range(0..=style.distractors) {
                let other = rng.random_range(0..count);
                let frac = rng.random_range(0.25..0.4);
                let pose = Pose {
                    x: rng.random_range(0.0..s),
                    y: rng.random_range(0.0..s),
                    angle: rng.random_range(-0.3..0.3),
                    scale: frac * s / source.side as f32,
                };
                let dim = rng.random_range(0.25..0.45);
                scene.draw(source.sprite(other), pose, dim);
            }
            render_clip(&motion, source.sprite(object), gain, &scene, style, &mut rng, out);
            ClipFacts { verb, object: source.labels[object], fast }
        })
        .collect();
    GeneratedSplit { pixels, facts }
}
