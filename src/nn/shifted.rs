//! Forward convolutions with a short inner dimension (`Cin * K * K` up to
//! [`THIN_MAX_K`]) as one product over shifted windows of the padded input, without a
//! column matrix.
//!
//! Why: im2col writes `Cin * K * K` values per output pixel and the product reads them back.
//! For an 8-channel 3x3 layer at 28x28 that is 72 floats per pixel, 225 KB per image, for
//! only 8 multiply-adds per value. Timed alone on one image, 8 -> 8 channels at 28x28 took
//! 16-23 us this way against 20-32 us through the column matrix; resnet_small inference
//! gained 3-6 % and resnet_tiny 11-22 % (`benches/profiles/nets.md`, seventh round).
//!
//! Here a group of images is copied once into zero-padded phase planes (plane `(ci, phase)`
//! holds the group's images one after another, `Hq x Wq` each). Number the outputs over that
//! padded grid, `j = image * Hq * Wq + oy * Wq + ox`: kernel tap `(ky, kx)` of output `j` is
//! then element `j + (ky / s) * Wq + kx / s` of phase plane `(ky mod s, kx mod s)`, so every row
//! of the column matrix is a window of the planes at a fixed start, and
//! [`matmul_rows`] multiplies over those windows in place. Outputs with `ox >= Wo` or
//! `oy >= Ho` read cells that wrap into the next row or image: they are computed and dropped
//! when the result is copied out.
//!
//! Each kept output sums the values im2col would have written (zeros for the padding), in
//! the same order, by the same register kernel, so the bits are those of
//! `im2col` + [`crate::linalg::matmul_thin`]; a test holds them to it.

use super::conv::{Geom, THIN_MAX_K};
use super::cpu::{give, take};
use crate::linalg::{matmul_rows, thin_kernel_applies};

/// Whether [`convolve_group`] computes `g`'s forward products on this CPU: short inner
/// dimensions with the register kernel (whose bits the im2col path has there too), at stride
/// 1 only. At stride 2 the four phase planes and the wrapped columns made it slower than
/// im2col's phase split (8 -> 16 channels at 28x28: 15-24 against 11-17 us).
pub(crate) fn applies(g: &Geom) -> bool {
    g.s == 1 && g.kdim() <= THIN_MAX_K && thin_kernel_applies(g.kdim(), 8)
}

/// The padded phase planes of a group of images and where each kernel tap reads them.
struct Planes {
    /// Phase planes, `Cin x phases` blocks of `block` floats each.
    data: Vec<f32>,
    /// Start of each column-matrix row `(ci, ky, kx)` in `data`.
    starts: Vec<usize>,
    /// Cells of one image's plane: `Hq * Wq`.
    plane: usize,
    /// Width of a plane row.
    wq: usize,
    /// Outputs computed: the group's cells rounded up to whole 8-lane vectors.
    cols: usize,
}

impl Planes {
    /// Copies `gn` images of `x` into zero-padded phase planes.
    fn new(g: &Geom, x: &[f32], gn: usize) -> Self {
        let (k, s, pad) = (g.k, g.s, g.pad);
        let wq = (g.w + 2 * pad).div_ceil(s);
        let hq = g.ho + (k - 1) / s;
        let plane = hq * wq;
        let cols = (gn * plane).next_multiple_of(8);
        // The phases the taps read: a 1x1 stride-2 kernel reads one of four.
        let mut slot = vec![None; s * s];
        let mut used = Vec::new();
        for ky in 0..k {
            for kx in 0..k {
                let r = (ky % s) * s + kx % s;
                if slot[r].is_none() {
                    slot[r] = Some(used.len());
                    used.push(r);
                }
            }
        }
        // The last window starts `reach` past its block's start and is `cols` long.
        let reach = (k - 1) / s * wq + (k - 1) / s;
        let block = reach + cols;
        let mut starts = Vec::with_capacity(g.kdim());
        for ci in 0..g.cin {
            for ky in 0..k {
                for kx in 0..k {
                    let b = ci * used.len() + slot[(ky % s) * s + kx % s].expect("phase of a tap");
                    starts.push(b * block + ky / s * wq + kx / s);
                }
            }
        }
        let mut data = take(g.cin * used.len() * block);
        data.fill(0.0);
        for ci in 0..g.cin {
            for (u, &r) in used.iter().enumerate() {
                let (ry, rx) = (r / s, r % s);
                let dst = &mut data[(ci * used.len() + u) * block..][..gn * plane];
                for j in 0..gn {
                    let src = &x[j * g.in_img() + ci * g.h * g.w..][..g.h * g.w];
                    fill_phase(g, src, (ry, rx), wq, &mut dst[j * plane..][..plane]);
                }
            }
        }
        Planes { data, starts, plane, wq, cols }
    }
}

/// Writes phase `(ry, rx)` of one zero-padded `H x W` input plane into `dst` (`Hq x Wq`,
/// already zero): cell `(i, j)` holds padded pixel `(i * s + ry, j * s + rx)`.
fn fill_phase(g: &Geom, src: &[f32], (ry, rx): (usize, usize), wq: usize, dst: &mut [f32]) {
    let (s, pad) = (g.s, g.pad);
    // Phase columns j whose padded column j * s + rx is an input column.
    let j0 = pad.saturating_sub(rx).div_ceil(s);
    let j1 = (pad + g.w).saturating_sub(rx).div_ceil(s).min(wq);
    if j0 >= j1 {
        return;
    }
    for (i, row) in dst.chunks_exact_mut(wq).enumerate() {
        let y = i * s + ry;
        if y < pad || y >= pad + g.h {
            continue;
        }
        let line = &src[(y - pad) * g.w..][..g.w];
        let first = j0 * s + rx - pad;
        if s == 1 {
            row[j0..j1].copy_from_slice(&line[first..first + (j1 - j0)]);
        } else {
            for (d, v) in row[j0..j1].iter_mut().zip(line[first..].iter().step_by(s)) {
                *d = *v;
            }
        }
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
                row.copy_from_slice(&src[oy * planes.wq..][..g.wo]);
            }
        }
    }
    give(grid);
    give(planes.data);
}
