//! Drawing one frame: a static cluttered background, dim static distractor objects and the moving
//! object, composited by taking the brightest value per pixel (the sources are bright objects on
//! black, so this keeps every object visible where they overlap).

use rand::Rng;

use super::verbs::Pose;

/// A grey source image borrowed from a data set.
#[derive(Clone, Copy, Debug)]
pub struct Sprite<'a> {
    /// `side * side` pixels, row-major.
    pub pixels: &'a [u8],
    /// Height and width.
    pub side: usize,
}

/// A canvas of `size * size` f32 grey values in 0..=255.
pub struct Canvas {
    /// Side in pixels.
    pub size: usize,
    /// Row-major values.
    pub values: Vec<f32>,
}

impl Canvas {
    /// A black canvas.
    pub fn new(size: usize) -> Self {
        Canvas { size, values: vec![0.0; size * size] }
    }

    /// Draws `sprite` at `pose` with brightness `gain`, bilinear sampling, max-compositing.
    pub fn draw(&mut self, sprite: Sprite, pose: Pose, gain: f32) {
        let n = self.size;
        let side = sprite.side as f32;
        let scale = pose.scale.max(1e-3);
        // Canvas pixels that can be covered: the rotated sprite fits in a circle of this radius.
        let radius = side * scale * std::f32::consts::FRAC_1_SQRT_2 + 1.0;
        let (cos, sin) = (pose.angle.cos(), pose.angle.sin());
        let lo = |c: f32| ((c - radius).floor().max(0.0)) as usize;
        let hi = |c: f32| ((c + radius).ceil().max(0.0) as usize).min(n);
        for py in lo(pose.y)..hi(pose.y) {
            for px in lo(pose.x)..hi(pose.x) {
                let (dx, dy) = (px as f32 + 0.5 - pose.x, py as f32 + 0.5 - pose.y);
                // Inverse rotation, then into source pixel coordinates.
                let sx = (cos * dx + sin * dy) / scale + side / 2.0 - 0.5;
                let sy = (-sin * dx + cos * dy) / scale + side / 2.0 - 0.5;
                let v = bilinear(sprite, sx, sy) * gain;
                let dst = &mut self.values[py * n + px];
                if v > *dst {
                    *dst = v;
                }
            }
        }
    }

    /// Quantises to u8 (round to nearest, clamp).
    pub fn to_u8(&self, out: &mut [u8]) {
        for (o, &v) in out.iter_mut().zip(&self.values) {
            *o = v.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Bilinear sample of `sprite` at source coordinates, 0 outside.
fn bilinear(sprite: Sprite, x: f32, y: f32) -> f32 {
    let s = sprite.side as isize;
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as isize, y0 as isize);
    if x0 < -1 || y0 < -1 || x0 >= s || y0 >= s {
        return 0.0;
    }
    let at = |xx: isize, yy: isize| -> f32 {
        if xx < 0 || yy < 0 || xx >= s || yy >= s {
            0.0
        } else {
            f32::from(sprite.pixels[(yy * s + xx) as usize])
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
    let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// A static background: a few soft blobs and speckle, at most `clutter * 90` grey levels.
pub fn background(size: usize, clutter: f32, rng: &mut impl Rng) -> Canvas {
    let mut c = Canvas::new(size);
    if clutter <= 0.0 {
        return c;
    }
    let s = size as f32;
    for _ in 0..3 {
        let (bx, by) = (rng.random_range(0.0..s), rng.random_range(0.0..s));
        let r = rng.random_range(0.1 * s..0.3 * s);
        let peak = rng.random_range(0.3..1.0) * 60.0 * clutter;
        for y in 0..size {
            for x in 0..size {
                let d2 = (x as f32 + 0.5 - bx).powi(2) + (y as f32 + 0.5 - by).powi(2);
                c.values[y * size + x] += peak * (-d2 / (2.0 * r * r)).exp();
            }
        }
    }
    for v in &mut c.values {
        *v += rng.random_range(0.0..30.0) * clutter;
    }
    c
}
