//! A procedural image set for tests: one shape per class, drawn at random
//! position, scale, small rotation and intensity, with Gaussian pixel noise.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::DataError;
use super::subset::{STREAM_TEST, STREAM_TRAIN};
use super::Split;
use crate::rng::chacha_stream as rng;

/// Parameters of the synthetic data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticOptions {
    /// Training examples.
    pub n_train: usize,
    /// Test examples.
    pub n_test: usize,
    /// Number of classes, 2 to [`MAX_CLASSES`].
    pub classes: usize,
    /// Image height and width in pixels, 8 to 256.
    pub size: usize,
    /// Standard deviation of pixel noise as a fraction of the 0..255 range.
    pub noise: f32,
    /// Seed for everything random in the generator.
    pub seed: u64,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        SyntheticOptions { n_train: 2000, n_test: 500, classes: 10, size: 28, noise: 0.08, seed: 0 }
    }
}

/// Class names, in label order; the first [`SYMMETRIC_SHAPES`] look the same mirrored.
pub const SHAPES: [&str; 24] = [
    "circle",
    "square",
    "triangle",
    "plus",
    "ring",
    "bars-horizontal",
    "bars-vertical",
    "x-cross",
    "diamond",
    "two-dots",
    "square-outline",
    "triangle-outline",
    "diamond-outline",
    "target",
    "four-dots",
    "ellipse-wide",
    "ellipse-tall",
    "half-disc",
    "t-shape",
    "bars-diagonal",
    "bars-antidiagonal",
    "checker",
    "l-shape",
    "crescent",
];

/// Most classes the generator can make.
pub const MAX_CLASSES: usize = SHAPES.len();

/// Shapes before this index are mirror-symmetric, so a horizontal flip keeps their label.
pub const SYMMETRIC_SHAPES: usize = 19;

/// Whether horizontal flips are label-preserving for `classes` classes.
///
/// Rotation jitter is symmetric around zero, so a mirrored symmetric shape is
/// still a typical member of its class; the diagonal bars, checker, L and
/// crescent turn into a different pattern when mirrored.
pub fn hflip_ok(classes: usize) -> bool {
    classes <= SYMMETRIC_SHAPES
}

fn triangle(u: f32, v: f32) -> bool {
    (-0.85..=0.7).contains(&v) && u.abs() <= 0.9 * (v + 0.85) / 1.55
}

fn stripes(u: f32, v: f32) -> bool {
    u.abs() <= 0.9 && v.abs() <= 0.9 && ((v + 0.9) / 0.6).fract() < 0.5
}

fn plus(u: f32, v: f32) -> bool {
    (u.abs() <= 0.2 && v.abs() <= 0.9) || (v.abs() <= 0.2 && u.abs() <= 0.9)
}

fn rot45(u: f32, v: f32) -> (f32, f32) {
    let s = std::f32::consts::FRAC_1_SQRT_2;
    (s * (u - v), s * (u + v))
}

/// Whether the point (u, v), in shape units with v pointing down, is inside shape `class`.
fn inside(class: usize, u: f32, v: f32) -> bool {
    let d = (u * u + v * v).sqrt();
    let box_ = u.abs().max(v.abs());
    let l1 = u.abs() + v.abs();
    let disc = |cu: f32, cv: f32, r: f32| (u - cu).powi(2) + (v - cv).powi(2) <= r * r;
    match class {
        0 => d <= 0.9,
        1 => box_ <= 0.75,
        2 => triangle(u, v),
        3 => plus(u, v),
        4 => (0.55..=0.9).contains(&d),
        5 => stripes(u, v),
        6 => stripes(v, u),
        7 => {
            let (a, b) = rot45(u, v);
            plus(a, b)
        }
        8 => l1 <= 0.95,
        9 => disc(-0.5, 0.0, 0.35) || disc(0.5, 0.0, 0.35),
        10 => (0.5..=0.8).contains(&box_),
        // Inner triangle is the outer one shrunk by half about its centroid (v = 0.183).
        11 => triangle(u, v) && !triangle(2.0 * u, 2.0 * v - 0.183),
        12 => (0.55..=0.95).contains(&l1),
        13 => d <= 0.35 || (0.65..=0.95).contains(&d),
        14 => [(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)].iter().any(|&(a, b)| disc(a, b, 0.3)),
        15 => (u / 0.95).powi(2) + (v / 0.45).powi(2) <= 1.0,
        16 => (u / 0.45).powi(2) + (v / 0.95).powi(2) <= 1.0,
        17 => d <= 0.9 && v >= 0.0,
        18 => ((-0.85..=-0.45).contains(&v) && u.abs() <= 0.85) || (u.abs() <= 0.2 && v.abs() <= 0.85),
        19 => {
            let (a, b) = rot45(u, v);
            box_ <= 0.85 && stripes(a * 0.8, b)
        }
        20 => {
            let (a, b) = rot45(u, v);
            box_ <= 0.85 && stripes(b * 0.8, a)
        }
        21 => box_ <= 0.8 && (u > 0.0) != (v > 0.0),
        22 => {
            let vertical = (-0.8..=-0.35).contains(&u) && v.abs() <= 0.85;
            let foot = (0.4..=0.85).contains(&v) && u.abs() <= 0.8;
            vertical || foot
        }
        23 => d <= 0.9 && (u - 0.45).powi(2) + v * v > 0.7 * 0.7,
        _ => false,
    }
}

/// Standard normal samples by Box–Muller (rand 0.9 has no normal distribution of
/// its own); both values of each pair are used since the logarithm and sine
/// dominate the cost of a synthetic image.
struct Gaussian {
    spare: Option<f32>,
}

impl Gaussian {
    fn sample(&mut self, r: &mut ChaCha8Rng) -> f32 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1: f32 = r.random_range(f32::EPSILON..1.0);
        let u2: f32 = r.random();
        let radius = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f32::consts::TAU * u2).sin_cos();
        self.spare = Some(radius * sin);
        radius * cos
    }
}

fn render(class: usize, size: usize, noise: f32, r: &mut ChaCha8Rng, out: &mut [u8]) {
    let s = size as f32;
    let cx = s * (0.5 + r.random_range(-0.12..0.12));
    let cy = s * (0.5 + r.random_range(-0.12..0.12));
    let scale = s * r.random_range(0.26..0.36);
    let angle = r.random_range(-10f32..10.0).to_radians();
    let (sin, cos) = angle.sin_cos();
    let fg = r.random_range(0.55f32..1.0);
    let bg = r.random_range(0.0f32..0.1);
    // 2x2 supersampling so small images still show clean edges.
    const OFFS: [f32; 2] = [0.25, 0.75];
    let mut gauss = Gaussian { spare: None };
    for y in 0..size {
        for x in 0..size {
            let mut cover = 0.0;
            for oy in OFFS {
                for ox in OFFS {
                    let dx = (x as f32 + ox - cx) / scale;
                    let dy = (y as f32 + oy - cy) / scale;
                    let (u, v) = (cos * dx + sin * dy, -sin * dx + cos * dy);
                    if inside(class, u, v) {
                        cover += 0.25;
                    }
                }
            }
            let val = bg + (fg - bg) * cover + noise * gauss.sample(r);
            out[y * size + x] = (val * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
}

fn make_split(n: usize, opts: &SyntheticOptions, stream: u64) -> Split {
    let mut labels: Vec<u32> = (0..n).map(|i| (i % opts.classes) as u32).collect();
    labels.shuffle(&mut rng(opts.seed, stream));
    let item = opts.size * opts.size;
    let mut pixels = vec![0u8; n * item];
    pixels.par_chunks_mut(item.max(1)).zip(labels.par_iter()).enumerate().for_each(|(i, (out, &label))| {
        let mut r = crate::rng::seeded(crate::rng::mix(opts.seed, stream, i as u64));
        render(label as usize, opts.size, opts.noise, &mut r, out);
    });
    Split { pixels, labels }
}

/// Checks option ranges, explaining the accepted range on failure.
pub fn validate(opts: &SyntheticOptions) -> Result<(), DataError> {
    let bad =
        |option: &str, reason: String| Err(DataError::InvalidOption { option: format!("synthetic.{option}"), reason });
    if !(2..=MAX_CLASSES).contains(&opts.classes) {
        return bad("classes", format!("{} is outside 2..={MAX_CLASSES}", opts.classes));
    }
    if !(8..=256).contains(&opts.size) {
        return bad("size", format!("{} is outside 8..=256 pixels", opts.size));
    }
    if !(0.0..=1.0).contains(&opts.noise) {
        return bad("noise", format!("{} is outside 0.0..=1.0", opts.noise));
    }
    if opts.n_train == 0 || opts.n_test == 0 {
        return bad("n_train/n_test", "both must be at least 1".into());
    }
    Ok(())
}

/// Generates the train and test splits; same options give the same bytes.
pub fn generate(opts: &SyntheticOptions) -> Result<(Split, Split), DataError> {
    validate(opts)?;
    Ok((make_split(opts.n_train, opts, STREAM_TRAIN), make_split(opts.n_test, opts, STREAM_TEST)))
}

#[cfg(test)]
mod tests {
    use super::super::subset::class_counts;
    use super::*;

    #[test]
    fn deterministic_shapes_and_balance() {
        for size in [16, 28, 32] {
            let opts = SyntheticOptions { n_train: 203, n_test: 40, size, ..Default::default() };
            let (tr, te) = generate(&opts).expect("valid");
            assert_eq!(tr.pixels.len(), 203 * size * size);
            assert_eq!(te.labels.len(), 40);
            let counts = class_counts(&tr.labels, 10);
            assert!(counts.iter().all(|&c| c == 20 || c == 21), "{counts:?}");
            let (tr2, _) = generate(&opts).expect("valid");
            assert_eq!(tr.pixels, tr2.pixels);
            assert_eq!(tr.labels, tr2.labels);
            let other = generate(&SyntheticOptions { seed: 1, ..opts }).expect("valid").0;
            assert_ne!(tr.pixels, other.pixels);
        }
        assert!(generate(&SyntheticOptions { classes: 25, ..Default::default() }).is_err());
        assert!(generate(&SyntheticOptions { size: 4, ..Default::default() }).is_err());
    }

    /// Nearest class mean is a linear classifier on raw pixels; it must beat chance clearly.
    #[test]
    fn learnable_by_a_linear_classifier() {
        for classes in [10, 20] {
            let opts = SyntheticOptions { n_train: 100 * classes, n_test: 30 * classes, classes, ..Default::default() };
            let (tr, te) = generate(&opts).expect("valid");
            let item = opts.size * opts.size;
            let mut means = vec![0f32; classes * item];
            let counts = class_counts(&tr.labels, classes);
            for (img, &l) in tr.pixels.chunks(item).zip(&tr.labels) {
                let m = &mut means[l as usize * item..(l as usize + 1) * item];
                for (a, &p) in m.iter_mut().zip(img) {
                    *a += f32::from(p) / counts[l as usize] as f32;
                }
            }
            let correct = te
                .pixels
                .chunks(item)
                .zip(&te.labels)
                .filter(|(img, &l)| {
                    let dist = |c: usize| -> f32 {
                        means[c * item..(c + 1) * item]
                            .iter()
                            .zip(img.iter())
                            .map(|(&m, &p)| (m - f32::from(p)).powi(2))
                            .sum()
                    };
                    (0..classes).min_by(|&a, &b| dist(a).total_cmp(&dist(b))) == Some(l as usize)
                })
                .count();
            let acc = correct as f32 / te.labels.len() as f32;
            assert!(acc > 3.0 / classes as f32, "{classes} classes: accuracy {acc}");
        }
    }
}
