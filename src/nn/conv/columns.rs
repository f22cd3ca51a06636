//! The column matrix of [`super`]'s GEMMs and its adjoint: `im2col` writes each image's
//! `Cin*K*K x Ho*Wo` rows, `col2im` adds a column-matrix gradient back into the input gradient.
//! Both have a row-by-row path for any geometry and a block path for "same"-style geometries
//! ([`Geom::blocked`]), where each row is one block copy from the input or one of its phase planes.

use super::Geom;

/// Where one kernel tap of a [`Geom::blocked`] convolution reads its `Ho x Wo` plane (the
/// input at stride 1, one phase of it otherwise), for a shift of `(dy, dx)` plane cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TapBlock {
    /// Flat offset from output index to plane index.
    shift: isize,
    /// Output indices `[lo, hi)` copied as one block; outside it the row is padding.
    lo: usize,
    hi: usize,
    /// Valid output rows and columns; inside the block, columns outside `ox` wrapped around
    /// from the neighbouring plane row and are padding too.
    oy: (usize, usize),
    ox: (usize, usize),
}

impl TapBlock {
    fn new(ho: usize, wo: usize, dy: isize, dx: isize) -> Self {
        // Output indices o with 0 <= o + d < n.
        let span = |d: isize, n: usize| {
            let n = n as isize;
            let hi = (n - d).clamp(0, n);
            ((-d).clamp(0, hi) as usize, hi as usize)
        };
        let (oy, ox) = (span(dy, ho), span(dx, wo));
        let shift = dy * wo as isize + dx;
        let plane = (ho * wo) as isize;
        let lo = ((oy.0 * wo) as isize).max(-shift).min(plane);
        let hi = ((oy.1 * wo) as isize).min(plane - shift).max(0);
        if hi <= lo || ox.0 == ox.1 {
            // Nothing to read: the whole row is padding.
            return TapBlock { shift: 0, lo: 0, hi: 0, oy: (0, 0), ox };
        }
        TapBlock { shift, lo: lo as usize, hi: hi as usize, oy, ox }
    }

    /// Plane indices the block reads.
    fn src(&self) -> std::ops::Range<usize> {
        let start = (self.lo as isize + self.shift) as usize;
        start..start + (self.hi - self.lo)
    }

    /// Zeroes the wrapped-around columns of `row` (an `Ho x Wo` column-matrix row).
    fn zero_wrapped(&self, row: &mut [f32], wo: usize) {
        if self.ox.0 > 0 || self.ox.1 < wo {
            for oy in self.oy.0..self.oy.1 {
                zero_small(&mut row[oy * wo..oy * wo + self.ox.0]);
                zero_small(&mut row[oy * wo + self.ox.1..(oy + 1) * wo]);
            }
        }
    }
}

/// Splits an `H x W` plane into its `s x s` phase planes of `Ho x Wo` each (phase `(ry, rx)`
/// holds `x[i * s + ry, j * s + rx]`, zero beyond the input).
fn split_phases(g: &Geom, plane: &[f32], phases: &mut [f32]) {
    if g.s == 2 {
        return split_phases2(g, plane, phases);
    }
    let (s, wo) = (g.s, g.wo);
    let counts: Vec<usize> = (0..s).map(|rx| (g.w - rx).div_ceil(s)).collect();
    for ry in 0..s {
        for i in 0..g.ho {
            let iy = i * s + ry;
            for (rx, &n) in counts.iter().enumerate() {
                let dst = &mut phases[(ry * s + rx) * g.p() + i * wo..][..wo];
                if iy >= g.h {
                    dst.fill(0.0);
                    continue;
                }
                let row = &plane[iy * g.w..(iy + 1) * g.w];
                for (d, v) in dst.iter_mut().zip(row[rx..].iter().step_by(s)) {
                    *d = *v;
                }
                dst[n..].fill(0.0);
            }
        }
    }
}

/// [`split_phases`] at stride 2: each input row is read once, as pairs, into its two phase rows
/// (the general loop's per-row divisions and strided remainders were a quarter of im2col).
fn split_phases2(g: &Geom, plane: &[f32], phases: &mut [f32]) {
    let (wo, p, pairs) = (g.wo, g.p(), g.w / 2);
    for ry in 0..2 {
        let (evens, odds) = phases.split_at_mut((2 * ry + 1) * p);
        let (evens, odds) = (&mut evens[2 * ry * p..], &mut odds[..p]);
        for i in 0..g.ho {
            let (e, o) = (&mut evens[i * wo..(i + 1) * wo], &mut odds[i * wo..(i + 1) * wo]);
            let iy = 2 * i + ry;
            if iy >= g.h {
                e.fill(0.0);
                o.fill(0.0);
                continue;
            }
            let row = &plane[iy * g.w..(iy + 1) * g.w];
            for ((e, o), pair) in e.iter_mut().zip(o.iter_mut()).zip(row.chunks_exact(2)) {
                *e = pair[0];
                *o = pair[1];
            }
            if g.w % 2 == 1 {
                e[pairs] = row[g.w - 1];
            }
            o[pairs..].fill(0.0);
        }
    }
}

/// Writes the phase planes back into an `H x W` plane: the inverse of [`split_phases`].
fn merge_phases(g: &Geom, phases: &[f32], plane: &mut [f32]) {
    let (s, wo) = (g.s, g.wo);
    for iy in 0..g.h {
        let (i, ry) = (iy / s, iy % s);
        let row = &mut plane[iy * g.w..(iy + 1) * g.w];
        if s == 2 {
            let (even, odd) =
                (&phases[ry * 2 * g.p() + i * wo..][..wo], &phases[(ry * 2 + 1) * g.p() + i * wo..][..wo]);
            for ((pair, e), o) in row.chunks_exact_mut(2).zip(even).zip(odd) {
                pair[0] = *e;
                pair[1] = *o;
            }
            if g.w % 2 == 1 {
                row[g.w - 1] = even[g.w / 2];
            }
            continue;
        }
        for rx in 0..s {
            let src = &phases[(ry * s + rx) * g.p() + i * wo..][..wo];
            for (d, v) in row[rx..].iter_mut().step_by(s).zip(src) {
                *d = *v;
            }
        }
    }
}

/// Writes image `x` (`Cin x H x W`) into columns `[off, off + Ho*Wo)` of `col` (row length `ld`).
pub(super) fn im2col(g: &Geom, x: &[f32], col: &mut [f32], ld: usize, off: usize) {
    // A kernel narrower than the stride reads only some of the phase planes: splitting all of
    // them cost the 1x1 stride-2 shortcuts 4x the copying of one gather per output row.
    if g.blocked() && g.k >= g.s {
        im2col_blocked(g, x, col, ld, off)
    } else {
        im2col_rows(g, x, col, ld, off)
    }
}

/// [`im2col`] for any geometry, one output row at a time.
fn im2col_rows(g: &Geom, x: &[f32], col: &mut [f32], ld: usize, off: usize) {
    let (k, p) = (g.k, g.p());
    for ci in 0..g.cin {
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..k {
            let (oy0, oy1) = g.valid(ky, g.h, g.ho);
            for kx in 0..k {
                let (ox0, ox1) = g.valid(kx, g.w, g.wo);
                let row = (ci * k + ky) * k + kx;
                let dst = &mut col[row * ld + off..row * ld + off + p];
                dst[..oy0 * g.wo].fill(0.0);
                dst[oy1 * g.wo..].fill(0.0);
                for oy in oy0..oy1 {
                    let d = &mut dst[oy * g.wo..(oy + 1) * g.wo];
                    let iy = oy * g.s + ky - g.pad;
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    zero_small(&mut d[..ox0]);
                    zero_small(&mut d[ox1..]);
                    if ox0 == ox1 {
                        continue;
                    }
                    let ix0 = ox0 * g.s + kx - g.pad;
                    let srow = &src[ix0..ix0 + (ox1 - ox0 - 1) * g.s + 1];
                    if g.s == 1 {
                        d[ox0..ox1].copy_from_slice(srow);
                    } else {
                        gather_strided(&mut d[ox0..ox1], srow, g.s);
                    }
                }
            }
        }
    }
}

/// Zeroes a slice that is usually one or two elements long (padding columns): calling memset
/// for those cost more than the copies around them.
#[inline(always)]
fn zero_small(s: &mut [f32]) {
    match s {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => {
            *a = 0.0;
            *b = 0.0;
        }
        _ => s.fill(0.0),
    }
}

/// `dst[i] = src[i * s]`. Kept out of line: inlined into the 5-deep loop nest it was compiled
/// with its counters spilled to the stack, and it dominated the strided convolutions.
#[inline(never)]
fn gather_strided(dst: &mut [f32], src: &[f32], s: usize) {
    if s == 2 {
        for (d, pair) in dst.iter_mut().zip(src.chunks(2)) {
            *d = pair[0];
        }
    } else {
        for (d, x) in dst.iter_mut().zip(src.iter().step_by(s)) {
            *d = *x;
        }
    }
}

/// `dst[i * s] += src[i]`, the adjoint of [`gather_strided`].
#[inline(never)]
fn scatter_add_strided(dst: &mut [f32], src: &[f32], s: usize) {
    if s == 2 {
        for (pair, v) in dst.chunks_mut(2).zip(src) {
            pair[0] += v;
        }
    } else {
        for (d, v) in dst.iter_mut().step_by(s).zip(src) {
            *d += v;
        }
    }
}

/// [`im2col`] for [`Geom::blocked`] geometries: one block copy per column-matrix row, from the
/// input plane at stride 1 and from its phase planes otherwise.
fn im2col_blocked(g: &Geom, x: &[f32], col: &mut [f32], ld: usize, off: usize) {
    let (k, p, plane_len) = (g.k, g.p(), g.h * g.w);
    let mut phases = if g.s > 1 { vec![0f32; g.s * g.s * p] } else { Vec::new() };
    for ci in 0..g.cin {
        let plane = &x[ci * plane_len..(ci + 1) * plane_len];
        let source: &[f32] = if g.s > 1 {
            split_phases(g, plane, &mut phases);
            &phases
        } else {
            plane
        };
        for ky in 0..k {
            let (ry, dy) = g.tap_phase(ky);
            for kx in 0..k {
                let (rx, dx) = g.tap_phase(kx);
                let b = TapBlock::new(g.ho, g.wo, dy, dx);
                let src = &source[(ry * g.s + rx) * p..][..p];
                let row = (ci * k + ky) * k + kx;
                let dst = &mut col[row * ld + off..row * ld + off + p];
                dst[..b.lo].fill(0.0);
                dst[b.hi..].fill(0.0);
                dst[b.lo..b.hi].copy_from_slice(&src[b.src()]);
                b.zero_wrapped(dst, g.wo);
            }
        }
    }
}

/// Adds columns `[off, off + Ho*Wo)` of `dcol` back into the image gradient `dx`: the adjoint
/// of [`im2col`], accumulated in a fixed order (kernel taps in order for every pixel). `dcol`
/// is scratch: the shifted fast path zeroes its padding columns first.
pub(super) fn col2im(g: &Geom, dcol: &mut [f32], ld: usize, off: usize, dx: &mut [f32]) {
    if g.blocked() {
        col2im_blocked(g, dcol, ld, off, dx)
    } else {
        col2im_rows(g, dcol, ld, off, dx)
    }
}

/// [`col2im`] for any geometry, one output row at a time.
fn col2im_rows(g: &Geom, dcol: &[f32], ld: usize, off: usize, dx: &mut [f32]) {
    let (k, p) = (g.k, g.p());
    for ci in 0..g.cin {
        let plane = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..k {
            let (oy0, oy1) = g.valid(ky, g.h, g.ho);
            for kx in 0..k {
                let (ox0, ox1) = g.valid(kx, g.w, g.wo);
                let row = (ci * k + ky) * k + kx;
                let src = &dcol[row * ld + off..row * ld + off + p];
                for oy in oy0..oy1 {
                    let s = &src[oy * g.wo..(oy + 1) * g.wo];
                    let iy = oy * g.s + ky - g.pad;
                    let d = &mut plane[iy * g.w..(iy + 1) * g.w];
                    if ox0 == ox1 {
                        continue;
                    }
                    let ix0 = ox0 * g.s + kx - g.pad;
                    let drow = &mut d[ix0..ix0 + (ox1 - ox0 - 1) * g.s + 1];
                    scatter_add_strided(drow, &s[ox0..ox1], g.s);
                }
            }
        }
    }
}

/// [`col2im`] for [`Geom::blocked`] geometries: one block add per column-matrix row, after
/// zeroing the entries of padding columns (which the block maps onto neighbouring pixels). At
/// stride > 1 the adds go into zeroed phase planes, merged into `dx` per channel; every pixel
/// receives its kernel taps in the same order as in [`col2im`], so the sums are the same bits.
fn col2im_blocked(g: &Geom, dcol: &mut [f32], ld: usize, off: usize, dx: &mut [f32]) {
    let (k, p, plane_len) = (g.k, g.p(), g.h * g.w);
    let mut phases = if g.s > 1 { vec![0f32; g.s * g.s * p] } else { Vec::new() };
    for ci in 0..g.cin {
        let plane = &mut dx[ci * plane_len..(ci + 1) * plane_len];
        if g.s > 1 {
            phases.fill(0.0);
        }
        let target: &mut [f32] = if g.s > 1 { &mut phases } else { plane };
        for ky in 0..k {
            let (ry, dy) = g.tap_phase(ky);
            for kx in 0..k {
                let (rx, dxs) = g.tap_phase(kx);
                let b = TapBlock::new(g.ho, g.wo, dy, dxs);
                let row = (ci * k + ky) * k + kx;
                let src = &mut dcol[row * ld + off..row * ld + off + p];
                b.zero_wrapped(src, g.wo);
                let dst = &mut target[(ry * g.s + rx) * p..][..p];
                for (d, v) in dst[b.src()].iter_mut().zip(&src[b.lo..b.hi]) {
                    *d += v;
                }
            }
        }
        if g.s > 1 {
            merge_phases(g, &phases, &mut dx[ci * plane_len..(ci + 1) * plane_len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::rand_tensor;
    use super::*;

    /// The block paths write the same column matrix and the same input gradient, bit for bit,
    /// as the row-by-row paths, at stride 1, 2 and 3 on odd, even and non-square planes.
    #[test]
    fn blocked_paths_match_row_paths_bitwise() {
        let cases = [
            // cin, h, w, k, s, pad
            (2, 28, 28, 3, 2, 1),
            (3, 7, 7, 3, 2, 1),
            (2, 14, 14, 1, 2, 0),
            (2, 7, 7, 1, 2, 0),
            (2, 5, 8, 3, 2, 1),
            (1, 9, 10, 5, 3, 2),
            (2, 6, 5, 3, 1, 1),
            (2, 1, 1, 3, 1, 1),
            (2, 1, 1, 3, 2, 1),
            (2, 2, 3, 5, 2, 2),
        ];
        for (i, &(cin, h, w, k, s, pad)) in cases.iter().enumerate() {
            let g = Geom::new(&[1, cin, h, w], &[1, cin, k, k], s, pad).unwrap();
            assert!(g.blocked(), "case {i} should take the block path");
            let x = rand_tensor(&[cin * h * w], i as u64).to_vec1::<f32>().unwrap();
            let (p, kdim, ld) = (g.p(), g.kdim(), g.p() + 3);
            let (mut a, mut b) = (vec![f32::NAN; kdim * ld], vec![f32::NAN; kdim * ld]);
            im2col_blocked(&g, &x, &mut a, ld, 2);
            im2col_rows(&g, &x, &mut b, ld, 2);
            for r in 0..kdim {
                let (ra, rb) = (&a[r * ld + 2..r * ld + 2 + p], &b[r * ld + 2..r * ld + 2 + p]);
                assert!(ra.iter().zip(rb).all(|(u, v)| u.to_bits() == v.to_bits()), "im2col case {i} row {r}");
            }
            let dcol = rand_tensor(&[kdim * ld], 50 + i as u64).to_vec1::<f32>().unwrap();
            let (mut da, mut db) = (vec![0f32; cin * h * w], vec![0f32; cin * h * w]);
            col2im_blocked(&g, &mut dcol.clone(), ld, 2, &mut da);
            col2im_rows(&g, &dcol, ld, 2, &mut db);
            assert!(da.iter().zip(&db).all(|(u, v)| u.to_bits() == v.to_bits()), "col2im case {i}");
        }
    }
}
