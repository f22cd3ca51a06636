//! Multi-object canvases, the VOC07 analog: each canvas holds 2-3 objects (images of a labelled
//! data set) and is labelled with the *set* of their classes, so a target is scored per class
//! by average precision rather than by top-1.
//!
//! A `size x size` canvas is a 2x2 grid of cells; each object takes its own cell (so none is
//! hidden by another) at a random offset inside it (always 0 where the object fills its cell, as
//! 28-px objects on the studies' 56-px canvases do), and where objects meet the brighter pixel
//! is kept (objects are light on dark in the MNIST family; the cells do not overlap, so only a
//! canvas smaller than two objects could make them meet). Per canvas the draws are: the object
//! count, then per object its image index, then the cells (a shuffle), then per object `dy`, `dx`.

use rand::seq::SliceRandom;
use rand::Rng;

use super::SelfsupError;

/// What a canvas looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanvasSpec {
    /// Side of the canvas; at least twice the object side.
    pub size: usize,
    /// Fewest objects per canvas (>= 1).
    pub min_objects: usize,
    /// Most objects per canvas (<= 4, one per cell).
    pub max_objects: usize,
}

/// A labelled object pool: `n` images `(c, h, w)` with one class each.
#[derive(Clone, Copy, Debug)]
pub struct Objects<'a> {
    /// `n * c * h * w` pixels.
    pub pixels: &'a [u8],
    /// Class of each image, `< num_classes`.
    pub labels: &'a [u32],
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Number of classes.
    pub num_classes: usize,
}

/// `count` canvases `(c, size, size)` and their multi-hot labels (`count * num_classes`, 0/1).
pub fn compose(
    objects: &Objects,
    spec: &CanvasSpec,
    count: usize,
    rng: &mut impl Rng,
) -> Result<(Vec<u8>, Vec<u8>), SelfsupError> {
    let Objects { pixels, labels, c, h, w, num_classes } = *objects;
    let n = labels.len();
    let cell = spec.size / 2;
    if n == 0 || pixels.len() != n * c * h * w {
        return Err(SelfsupError::invalid(format!(
            "{} pixels and {n} labels do not describe an object pool",
            pixels.len()
        )));
    }
    if h > cell || w > cell {
        return Err(SelfsupError::invalid(format!(
            "canvas size {} leaves cells of {cell} pixels, too small for {h}x{w} objects; use at least {}",
            spec.size,
            2 * h.max(w)
        )));
    }
    if spec.min_objects == 0 || spec.min_objects > spec.max_objects || spec.max_objects > 4 {
        return Err(SelfsupError::invalid(format!(
            "objects per canvas must satisfy 1 <= min <= max <= 4; got {}..{}",
            spec.min_objects, spec.max_objects
        )));
    }
    let (s, len) = (spec.size, c * h * w);
    let mut canvases = vec![0u8; count * c * s * s];
    let mut multi_hot = vec![0u8; count * num_classes];
    for (canvas, hot) in canvases.chunks_exact_mut(c * s * s).zip(multi_hot.chunks_exact_mut(num_classes)) {
        let k = rng.random_range(spec.min_objects..=spec.max_objects);
        let picks: Vec<usize> = (0..k).map(|_| rng.random_range(0..n)).collect();
        let mut cells = [0usize, 1, 2, 3];
        cells.shuffle(rng);
        for (&i, &cell_id) in picks.iter().zip(&cells) {
            let dy = rng.random_range(0..=cell - h);
            let dx = rng.random_range(0..=cell - w);
            let (y0, x0) = ((cell_id / 2) * cell + dy, (cell_id % 2) * cell + dx);
            let img = &pixels[i * len..(i + 1) * len];
            for ch in 0..c {
                for y in 0..h {
                    let dst = &mut canvas[(ch * s + y0 + y) * s + x0..][..w];
                    for (d, &p) in dst.iter_mut().zip(&img[(ch * h + y) * w..(ch * h + y + 1) * w]) {
                        *d = (*d).max(p);
                    }
                }
            }
            let label = labels[i] as usize;
            if label >= num_classes {
                return Err(SelfsupError::invalid(format!("object {i} has class {label} of {num_classes}")));
            }
            hot[label] = 1;
        }
    }
    Ok((canvases, multi_hot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn canvases_hold_their_objects_and_label_sets() {
        // Three 2x2 objects of classes 0, 1, 2 with distinct constant brightness 10, 20, 30.
        let pixels: Vec<u8> = [10u8, 20, 30].iter().flat_map(|&v| [v; 4]).collect();
        let labels = [0u32, 1, 2];
        let objects = Objects { pixels: &pixels, labels: &labels, c: 1, h: 2, w: 2, num_classes: 4 };
        let spec = CanvasSpec { size: 6, min_objects: 2, max_objects: 3 };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (canvases, hot) = compose(&objects, &spec, 50, &mut rng).unwrap();
        for (canvas, hot) in canvases.chunks_exact(36).zip(hot.chunks_exact(4)) {
            assert_eq!(hot[3], 0, "class 3 has no object");
            let count: usize = hot.iter().map(|&b| b as usize).sum();
            assert!((1..=3).contains(&count), "{hot:?}");
            // Each labelled class is visible: 4 pixels of its brightness (cells do not overlap).
            for (class, v) in [(0, 10u8), (1, 20), (2, 30)] {
                let seen = canvas.iter().filter(|&&p| p == v).count();
                assert_eq!(hot[class] == 1, seen >= 4, "class {class}: {seen} pixels, {hot:?}");
            }
        }
    }

    #[test]
    fn too_small_canvases_are_rejected() {
        let objects = Objects { pixels: &[0; 4], labels: &[0], c: 1, h: 2, w: 2, num_classes: 1 };
        let spec = CanvasSpec { size: 3, min_objects: 1, max_objects: 1 };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        assert!(compose(&objects, &spec, 1, &mut rng).unwrap_err().to_string().contains("at least 4"));
    }
}
