//! Stride-1 forward convolutions with a short inner dimension (`Cin * K * K` up to
//! [`THIN_MAX_K`]) as one product over shifted windows of the padded input, without a
//! column matrix.
//!
//! Why: im2col writes `Cin * K * K` values per output pixel and the product reads them back.
//! For an 8-channel 3x3 layer at 28x28 that is 72 floats per pixel, 225 KB per image, for
//! only 8 multiply-adds per value. Timed alone on one image, 8 -> 8 channels at 28x28 took
//! 16-23 us this way against 20-32 us through the column matrix; resnet_small inference
//! gained 3-6 % and resnet_tiny 11-22 % (`benches/profiles/nets.md`, seventh round).
//!
//! Here a group of images is copied once into zero-padded planes (plane `ci` holds the group's
//! images one after another, `Hp x Wp` each, the input with its padding). Number the outputs
//! over that padded grid, `j = image * Hp * Wp + oy * Wp + ox`: kernel tap `(ky, kx)` of output
//! `j` is then element `j + ky * Wp + kx` of plane `ci`, so every row of the column matrix is a
//! window of the planes at a fixed start, and [`matmul_rows`] multiplies over those windows in
//! place. Outputs with `ox >= Wo` or `oy >= Ho` read cells that wrap into the next row or image:
//! they are computed and dropped when the result is copied out.
//!
//! Each kept output sums the values im2col would have written (zeros for the padding), in
//! the same order, by the same register kernel, so the bits are those of
//! `im2col` + [`crate::linalg::matmul_thin`]; a test holds them to it.

use super::conv::{Geom, THIN_MAX_K};
use super::cpu::{give, take};
use crate::linalg::{matmul_rows, thin_kernel_applies};

/// Whether [`convolve_group`] computes `g`'s forward products on this CPU: short inner
/// dimensions with the register kernel (whose bits the im2col path has there too), at stride
/// 1 only. A stride-2 version (phase planes, as im2col splits them) was slower than im2col's
/// phase split (8 -> 16 channels at 28x28: 15-24 against 11-17 us).
pub(crate) fn applies(g: &Geom) -> bool {
    g.s == 1 && g.kdim() <= THIN_MAX_K && thin_kernel_applies(g.kdim(), 8)
}

/// The padded planes of a group of images and where each kernel tap reads them.
struct Planes {
    /// Padded planes, one block of `block` floats per input channel.
    data: Vec<f32>,
    /// Start of each column-matrix row `(ci, ky, kx)` in `data`.
    starts: Vec<usize>,
    /// Cells of one image's padded plane: `Hp * Wp`.
    plane: usize,
    /// Width of a padded row.
    wp: usize,
    /// Outputs computed: the group's cells rounded up to whole 8-lane vectors.
    cols: usize,
}

impl Planes {
    /// Copies `gn` images of `x` into zero-padded planes (stride 1).
    fn new(g: &Geom, x: &[f32], gn: usize) -> Self {
        debug_assert_eq!(g.s, 1, "shifted windows are for stride 1");
        let (k, pad) = (g.k, g.pad);
        let (hp, wp) = (g.h + 2 * pad, g.w + 2 * pad);
        let plane = hp * wp;
        let cols = (gn * plane).next_multiple_of(8);
        // The last window starts `reach` past its block's start and is `cols` long.
        let reach = (k - 1) * wp + k - 1;
        let block = reach + cols;
        let mut starts = Vec::with_capacity(g.kdim());
        for ci in 0..g.cin {
            for ky in 0..k {
                for kx in 0..k {
                    starts.push(ci * block + ky * wp + kx);
                }
            }
        }
        // Every cell is written below, once: the images' padded rows, then the tail the last
        // windows reach into.
        let mut data = take(g.cin * block);
        for (ci, dst) in data.chunks_exact_mut(block).enumerate() {
            let (images, tail) = dst.split_at_mut(gn * plane);
            for (j, rows) in images.chunks_exact_mut(plane).enumerate() {
                let src = &x[j * g.in_img() + ci * g.h * g.w..][..g.h * g.w];
                for (y, row) in rows.chunks_exact_mut(wp).enumerate() {
                    if y < pad || y >= pad + g.h {
                        row.fill(0.0);
                        continue;
                    }
                    row[..pad].fill(0.0);
                    row[pad..pad + g.w].copy_from_slice(&src[(y - pad) * g.w..][..g.w]);
                    row[pad + g.w..].fill(0.0);
                }
            }
            tail.fill(0.0);
        }
        Planes { data, starts, plane, wp, cols }
    }
}

/// `out` (`gn` output images, `Cout x Ho*Wo` each) = the convolution of `x` (`gn` input
/// images) with `w`, by one product over the padded planes (single-threaded: callers run
/// groups in parallel).
pub(crate) fn convolve_group(g: &Geom, x: &[f32], w: &[f32], out: &mut [f32]) {
    let gn = out.len() / g.out_img();
    let planes = Planes::new(g, x, gn);
    let cols = planes.cols;
    let mut grid = take(g.cout * cols);
    matmul_rows(&mut grid, w, &planes.data, &planes.starts, (g.cout, g.kdim(), cols));
    let p = g.p();
    for j in 0..gn {
        for co in 0..g.cout {
            let src = &grid[co * cols + j * planes.plane..];
            let dst = &mut out[j * g.out_img() + co * p..][..p];
            for (oy, row) in dst.chunks_exact_mut(g.wo).enumerate() {
                row.copy_from_slice(&src[oy * planes.wp..][..g.wo]);
            }
        }
    }
    give(grid);
    give(planes.data);
}
