//! Jigsaw puzzles: an image upsampled to `grid x grid` (so a 28-pixel image still gives tiles of
//! useful size), cut into a 3x3 grid of cells, one `tile x tile` crop per cell at a random
//! offset inside the cell (the jitter that keeps the network from matching edges, Noroozi &
//! Favaro §3.1), the 9 crops shuffled by a permutation.
//!
//! Layout: a puzzle is `(9, c, tile, tile)` u8, slot after slot; slot `j` holds the crop of
//! original cell `perm[j]` (cells numbered row-major). [`reassemble`] undoes it.

use super::permutations::{Perm, TILES};
use super::SelfsupError;

/// Geometry of a puzzle, and how its tiles are normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TileSpec {
    /// Side of the upsampled image; a multiple of 3.
    pub grid: usize,
    /// Side of a tile; at most `grid / 3`.
    pub tile: usize,
    /// What each tile's values are normalised by.
    #[serde(default)]
    pub norm: TileNorm,
}

/// What a Jigsaw tile's values are normalised by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TileNorm {
    /// The data set's per-channel mean and standard deviation, as whole images are.
    #[default]
    Dataset,
    /// Each tile's own per-channel mean and standard deviation (a constant channel set to 0), as
    /// Noroozi & Favaro do, so that no tile's brightness or contrast tells its neighbours apart.
    PerTile,
}

impl TileNorm {
    /// True for the default, `dataset`.
    pub fn is_dataset(&self) -> bool {
        *self == TileNorm::Dataset
    }
}

impl TileSpec {
    /// Side of a cell.
    pub fn cell(&self) -> usize {
        self.grid / 3
    }

    /// Largest offset of a crop inside its cell (offsets are drawn from `0..=jitter`).
    pub fn jitter(&self) -> usize {
        self.cell() - self.tile
    }

    /// Rejects a grid that is not a multiple of 3 or tiles larger than a cell.
    pub fn validate(&self) -> Result<(), SelfsupError> {
        if self.grid == 0 || !self.grid.is_multiple_of(3) || self.tile == 0 || self.tile > self.grid / 3 {
            return Err(SelfsupError::invalid(format!(
                "a puzzle needs grid a positive multiple of 3 and 0 < tile <= grid / 3; got grid {} and tile {}",
                self.grid, self.tile
            )));
        }
        Ok(())
    }
}

/// Bilinear resize of `n` `(c, h, w)` images to `(c, size, size)`, PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)` rounded to the nearest integer.
pub fn upsample(pixels: &[u8], n: usize, c: usize, h: usize, w: usize, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; n * c * size * size];
    let coord = |o: usize, src: usize| {
        let x = ((o as f32 + 0.5) * src as f32 / size as f32 - 0.5).max(0.0);
        let x0 = (x.floor() as usize).min(src - 1);
        (x0, (x0 + 1).min(src - 1), x - x0 as f32)
    };
    let ys: Vec<_> = (0..size).map(|o| coord(o, h)).collect();
    let xs: Vec<_> = (0..size).map(|o| coord(o, w)).collect();
    for (src, dst) in pixels.chunks_exact(h * w).zip(out.chunks_exact_mut(size * size)) {
        for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
            for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
                let p = |y: usize, x: usize| f32::from(src[y * w + x]);
                let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                dst[oy * size + ox] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Cuts one `(c, grid, grid)` image into a shuffled puzzle `(9, c, tile, tile)` written to
/// `out`; `offsets[t]` is the `(dy, dx)` of original cell `t`'s crop, each `<= spec.jitter()`.
pub fn cut_puzzle(
    img: &[u8],
    c: usize,
    spec: &TileSpec,
    perm: &Perm,
    offsets: &[(usize, usize); TILES],
    out: &mut [u8],
) {
    let (g, t, cell) = (spec.grid, spec.tile, spec.cell());
    let tile_len = c * t * t;
    for (slot, &src_cell) in perm.iter().enumerate() {
        let (cy, cx) = (src_cell as usize / 3, src_cell as usize % 3);
        let (dy, dx) = offsets[src_cell as usize];
        let (y0, x0) = (cy * cell + dy, cx * cell + dx);
        let dst = &mut out[slot * tile_len..(slot + 1) * tile_len];
        for ch in 0..c {
            for y in 0..t {
                let row = (ch * g + y0 + y) * g + x0;
                dst[(ch * t + y) * t..(ch * t + y + 1) * t].copy_from_slice(&img[row..row + t]);
            }
        }
    }
}

/// Puts a puzzle back: each slot's crop returns to its cell (by the inverse permutation) at its
/// offset, into a zeroed `(c, grid, grid)` image. With `tile == grid / 3` this restores the
/// image exactly; otherwise the jitter margins stay zero.
pub fn reassemble(puzzle: &[u8], c: usize, spec: &TileSpec, perm: &Perm, offsets: &[(usize, usize); TILES]) -> Vec<u8> {
    let (g, t, cell) = (spec.grid, spec.tile, spec.cell());
    let inv = super::permutations::inverse(perm);
    let tile_len = c * t * t;
    let mut img = vec![0u8; c * g * g];
    for cell_id in 0..TILES {
        let slot = inv[cell_id] as usize;
        let (dy, dx) = offsets[cell_id];
        let (y0, x0) = ((cell_id / 3) * cell + dy, (cell_id % 3) * cell + dx);
        let src = &puzzle[slot * tile_len..(slot + 1) * tile_len];
        for ch in 0..c {
            for y in 0..t {
                let row = (ch * g + y0 + y) * g + x0;
                img[row..row + t].copy_from_slice(&src[(ch * t + y) * t..(ch * t + y + 1) * t]);
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(c: usize, g: usize) -> Vec<u8> {
        (0..c * g * g).map(|v| (v * 13 % 256) as u8).collect()
    }

    #[test]
    fn reassembling_by_the_inverse_permutation_restores_the_image() {
        let spec = TileSpec { grid: 12, tile: 4, norm: TileNorm::Dataset };
        let img = image(2, 12);
        let perm: Perm = [4, 7, 0, 2, 8, 1, 6, 3, 5];
        let offsets = [(0, 0); TILES];
        let mut puzzle = vec![0u8; TILES * 2 * 16];
        cut_puzzle(&img, 2, &spec, &perm, &offsets, &mut puzzle);
        assert_ne!(&puzzle[..32], &img[..32]);
        assert_eq!(reassemble(&puzzle, 2, &spec, &perm, &offsets), img);
    }

    #[test]
    fn jittered_crops_come_from_their_cell() {
        let spec = TileSpec { grid: 12, tile: 3, norm: TileNorm::Dataset };
        assert_eq!(spec.jitter(), 1);
        let img = image(1, 12);
        let perm: Perm = [8, 7, 6, 5, 4, 3, 2, 1, 0];
        let offsets: [(usize, usize); TILES] = std::array::from_fn(|t| (t % 2, (t / 2) % 2));
        let mut puzzle = vec![0u8; TILES * 9];
        cut_puzzle(&img, 1, &spec, &perm, &offsets, &mut puzzle);
        // Slot 0 shows cell 8 (bottom right, origin (8, 8)) at offset (0, 0).
        assert_eq!(puzzle[0], img[8 * 12 + 8]);
        let back = reassemble(&puzzle, 1, &spec, &perm, &offsets);
        for (cell_id, &(dy, dx)) in offsets.iter().enumerate() {
            let (y, x) = ((cell_id / 3) * 4 + dy, (cell_id % 3) * 4 + dx);
            for k in 0..3 {
                assert_eq!(back[(y + k) * 12 + x + k], img[(y + k) * 12 + x + k], "cell {cell_id}");
            }
        }
    }

    #[test]
    fn upsampling_keeps_constant_images_and_scales_shapes() {
        let flat = vec![77u8; 2 * 28 * 28];
        let up = upsample(&flat, 2, 1, 28, 28, 48);
        assert_eq!(up.len(), 2 * 48 * 48);
        assert!(up.iter().all(|&p| p == 77));
        // 2x nearest-ish check on a 2x2 ramp: corners keep their values.
        let up = upsample(&[0, 100, 200, 255], 1, 1, 2, 2, 4);
        assert_eq!((up[0], up[3], up[12], up[15]), (0, 100, 200, 255));
    }

    #[test]
    fn bad_geometry_is_rejected() {
        let spec = |grid, tile| TileSpec { grid, tile, norm: TileNorm::Dataset };
        assert!(spec(48, 16).validate().is_ok());
        assert!(spec(50, 10).validate().is_err());
        assert!(spec(48, 17).validate().is_err());
    }
}
