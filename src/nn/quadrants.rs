//! A small learnable image problem: the class of a grey `side x side` image is which of its four
//! quadrants is bright. The nn tests train on it, and `check-device`'s half-precision rows, where
//! a network must learn something for its loss curve to say anything.

use rand::{Rng, SeedableRng};

use super::{Augment, ResNetConfig, Schedule, TrainConfig};

/// `n` noisy grey images with one bright quadrant each (image `i` has quadrant `i % 4`: top left,
/// top right, bottom left, bottom right), and their labels.
pub fn quadrant_images(n: usize, side: usize, seed: u64) -> (Vec<u8>, Vec<u32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = vec![0u8; n * side * side];
    let mut labels = Vec::with_capacity(n);
    for (i, img) in pixels.chunks_exact_mut(side * side).enumerate() {
        let q = (i % 4) as u32;
        for (k, p) in img.iter_mut().enumerate() {
            let (y, x) = (k / side, k % side);
            let inside = (y >= side / 2) as u32 * 2 + (x >= side / 2) as u32 == q;
            *p = if inside { rng.random_range(120..=255) } else { rng.random_range(0..100) };
        }
        labels.push(q);
    }
    (pixels, labels)
}

/// resnet_tiny's recipe for the problem, f32, seed 7. Crop augmentation only: a flip would swap
/// left and right quadrants and so the labels.
pub fn quadrant_recipe(epochs: usize) -> TrainConfig {
    TrainConfig {
        arch: ResNetConfig::resnet_tiny(1, 4).into(),
        epochs,
        batch_size: 32,
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        warmup_epochs: 1,
        schedule: Schedule::Cosine,
        augment: Augment { crop_padding: 2, hflip: false, clip_frames: 0 },
        seed: 7,
        precision: Default::default(),
    }
}
