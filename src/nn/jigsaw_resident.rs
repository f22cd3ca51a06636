//! Jigsaw puzzles cut on the device: the (already upsampled) images uploaded once per stage,
//! each batch's `(b * 9, c, tile, tile)` tiles gathered by device ops from one small index
//! tensor, instead of cut and normalised on the host and copied every batch. The host still
//! draws each puzzle's permutation and crop offsets, in the host loop's order, so the tiles are
//! the host's bit for bit (both read the host's normalisation table).
//!
//! Tile element `(puzzle, slot, ch, y, x)` reads pixel `base[puzzle, slot, ch] + y * grid + x`,
//! where `base` is the image, the channel plane, and the corner of the crop of cell
//! `perm[slot]` at that cell's offset; the pixel's value plus `256 * ch` indexes the table.

use super::bits::differing_bits;
use super::resident::NormalisedPixels;
use super::NnError;
use crate::selfsup::permutations::{max_hamming_set, Perm, TILES};
use crate::selfsup::tiles::{cut_puzzle, TileNorm, TileSpec};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which puzzles a batch holds: per puzzle its image, its permutation and the crop offsets of
/// its 9 cells (as [`cut_puzzle`] takes them).
pub(crate) struct Draws<'a> {
    /// Each puzzle's image.
    pub images: &'a [usize],
    /// Each puzzle's permutation: slot `j` holds the crop of cell `perm[j]`.
    pub perms: &'a [&'a Perm],
    /// Each puzzle's `(dy, dx)` per original cell.
    pub offsets: &'a [[(usize, usize); TILES]],
}

/// An image set resident on a device, ready to be cut into puzzles.
pub(crate) struct ResidentPuzzles {
    /// The images, `(n * c * grid * grid,)` u8, and how a puzzle's `9 * c` planes are normalised.
    pixels: NormalisedPixels,
    /// `(1, 1, tile, 1)` u32: `y * grid`.
    rows: Tensor,
    /// `(1, 1, 1, tile)` u32: `x`.
    cols: Tensor,
    c: usize,
    spec: TileSpec,
}

impl ResidentPuzzles {
    /// Uploads `n` images of `c` channels, `spec.grid` pixels square, and the normalisation
    /// table `lut`; `None` when the pixels are more than u32 indices reach.
    pub(crate) fn upload(
        pixels: &[u8],
        c: usize,
        spec: &TileSpec,
        lut: &[[f32; 256]],
        dev: &Device,
    ) -> Result<Option<Self>, NnError> {
        if pixels.len() > u32::MAX as usize {
            return Ok(None);
        }
        let (g, t) = (spec.grid, spec.tile);
        let images = Tensor::from_slice(pixels, pixels.len(), dev)?;
        Ok(Some(ResidentPuzzles {
            pixels: NormalisedPixels::new(images, lut, (0..TILES * c).map(|plane| plane % c))?,
            rows: Tensor::from_vec((0..t).map(|y| (y * g) as u32).collect::<Vec<_>>(), (1, 1, t, 1), dev)?,
            cols: Tensor::from_vec((0..t as u32).collect::<Vec<_>>(), (1, 1, 1, t), dev)?,
            c,
            spec: *spec,
        }))
    }

    /// The puzzles `draws`, normalised: `(b * 9, c, tile, tile)`.
    pub(crate) fn batch(&self, draws: &Draws) -> Result<Tensor, NnError> {
        let (c, g, t, cell) = (self.c, self.spec.grid, self.spec.tile, self.spec.cell());
        let images = draws.images;
        let mut base = Vec::with_capacity(images.len() * TILES * c);
        for ((&i, perm), offsets) in images.iter().zip(draws.perms).zip(draws.offsets) {
            for &src_cell in perm.iter() {
                let (cy, cx) = (src_cell as usize / 3, src_cell as usize % 3);
                let (dy, dx) = offsets[src_cell as usize];
                let corner = (cy * cell + dy) * g + cx * cell + dx;
                base.extend((0..c).map(|ch| ((i * c + ch) * g * g + corner) as u32));
            }
        }
        let b = images.len();
        let base = Tensor::from_vec(base, (b, TILES * c, 1, 1), self.pixels.device())?;
        let at = base.broadcast_add(&self.rows)?.broadcast_add(&self.cols)?;
        Ok(self.pixels.gather(&at)?.reshape((b * TILES, c, t, t))?)
    }
}

/// How many tile values, over 12 puzzles of random 3-channel 30 x 30 images (tiles of 8, so
/// jitter of 2; permutations of a 24-permutation set and offsets drawn from a fixed seed), the
/// puzzles cut on `device` differ from the host's (`cut_puzzle`, then the table) bit for bit,
/// and of how many. Both read the same table, so any count but 0 is a wrong index.
/// `check-device` runs it on the GPU.
pub fn puzzles_differing_from_host(device: &Device) -> Result<(usize, usize), NnError> {
    let (n, c, spec) = (8, 3, TileSpec { grid: 30, tile: 8, norm: TileNorm::Dataset });
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let pixels: Vec<u8> = (0..n * c * 30 * 30).map(|_| rng.random()).collect();
    let lut: Vec<[f32; 256]> =
        (0..c).map(|ch| std::array::from_fn(|p| (p as f32 - 120.0 + ch as f32) / 61.0)).collect();
    let (perms, _) = max_hamming_set(24, 0);
    let images: Vec<usize> = (0..12).map(|_| rng.random_range(0..n)).collect();
    let chosen: Vec<&Perm> = images.iter().map(|_| &perms[rng.random_range(0..perms.len())]).collect();
    let jitter = spec.jitter();
    let offsets: Vec<[(usize, usize); TILES]> = images
        .iter()
        .map(|_| std::array::from_fn(|_| (rng.random_range(0..=jitter), rng.random_range(0..=jitter))))
        .collect();
    let res = ResidentPuzzles::upload(&pixels, c, &spec, &lut, device)?
        .ok_or_else(|| NnError::invalid("puzzle check: images too large to index"))?;
    let draws = Draws { images: &images, perms: &chosen, offsets: &offsets };
    let got = res.batch(&draws)?.flatten_all()?.to_vec1::<f32>()?;
    let mut want = vec![0f32; got.len()];
    fill_host_puzzles(&pixels, c, &spec, &lut, &draws, &mut want);
    Ok((differing_bits(&got, &want), want.len()))
}

/// The puzzles `draws` of `pixels` (`c`-channel images, `spec.grid` square), cut on the host
/// with [`cut_puzzle`] and normalised with `lut` into `out` (`b * 9 * c * tile * tile`): the
/// host pipeline's batches, and what the device's must equal.
pub(crate) fn fill_host_puzzles(
    pixels: &[u8],
    c: usize,
    spec: &TileSpec,
    lut: &[[f32; 256]],
    draws: &Draws,
    out: &mut [f32],
) {
    let (len, t) = (c * spec.grid * spec.grid, spec.tile);
    let mut puzzle = vec![0u8; TILES * c * t * t];
    let puzzles = draws.images.iter().zip(draws.perms).zip(draws.offsets);
    for (((&i, perm), offsets), dst) in puzzles.zip(out.chunks_exact_mut(puzzle.len())) {
        cut_puzzle(&pixels[i * len..(i + 1) * len], c, spec, perm, offsets, &mut puzzle);
        for (e, (d, &p)) in dst.iter_mut().zip(&puzzle).enumerate() {
            *d = lut[(e / (t * t)) % c][p as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Puzzles of 2-channel images with jitter, each image with its own permutation and offsets,
    /// one image twice: every value is the host's (`cut_puzzle`, then the table) bit for bit.
    #[test]
    fn device_puzzles_equal_host_puzzles() {
        let (n, c, spec) = (5, 2, TileSpec { grid: 24, tile: 6, norm: TileNorm::Dataset });
        let len = c * spec.grid * spec.grid;
        let pixels: Vec<u8> = (0..n * len).map(|v| ((v * 37 + v / 7) % 256) as u8).collect();
        let lut: Vec<[f32; 256]> =
            (0..c).map(|ch| std::array::from_fn(|p| (p as f32 - 100.0 - ch as f32) / 57.0)).collect();
        let (perms, _) = max_hamming_set(6, 0);
        let images = [3usize, 0, 4, 3];
        let chosen: Vec<&Perm> = images.iter().enumerate().map(|(k, _)| &perms[(k * 5 + 1) % perms.len()]).collect();
        let offsets: Vec<[(usize, usize); TILES]> =
            (0..images.len()).map(|k| std::array::from_fn(|cell| ((k + cell) % 3, (k * 2 + cell * 5) % 3))).collect();
        let res = ResidentPuzzles::upload(&pixels, c, &spec, &lut, &Device::Cpu).unwrap().unwrap();
        let draws = Draws { images: &images, perms: &chosen, offsets: &offsets };
        let got = res.batch(&draws).unwrap();
        let t = spec.tile;
        assert_eq!(got.dims(), &[images.len() * TILES, c, t, t]);
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut want = vec![0f32; got.len()];
        fill_host_puzzles(&pixels, c, &spec, &lut, &draws, &mut want);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
        let (differing, total) = puzzles_differing_from_host(&Device::Cpu).unwrap();
        assert_eq!((differing, total), (0, 12 * TILES * 3 * 8 * 8));
    }
}
