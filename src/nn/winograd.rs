//! 3x3 stride-1 "same" convolutions by Winograd's minimal filtering F(2x2, 3x3): the forward
//! pass, the input gradient and the weight gradient, all on CPU f32.
//!
//! Why: these convolutions carry about three quarters of a ResNet's multiply-adds, and the
//! im2col path spends 36 multiplies per output pixel and input channel where F(2x2, 3x3)
//! spends 16 per 2x2 output tile, 2.25x fewer. The column matrix (9 floats per input pixel)
//! also becomes a transformed tile array (4 per input pixel), so less memory moves.
//!
//! With `B`, `G`, `A` the F(2, 3) matrices, one 2x2 output tile of one (output, input) channel
//! pair is `Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` for the 3x3 filter `g` and the 4x4 input patch `d`.
//! Summing over input channels turns the 16 elementwise products into 16 GEMMs
//! `M[ξ] = U[ξ] · V[ξ]` (`U[ξ]`: Cout x Cin, `V[ξ]`: Cin x tiles). By linearity:
//! - the input gradient is the same convolution of the output gradient with the filters
//!   rotated by 180° and their channel axes swapped;
//! - the weight gradient is `Gᵀ[Σ_tiles (A dY Aᵀ) ⊙ (Bᵀ d B)]G`, again 16 GEMMs (Cout x tiles
//!   times tiles x Cin) followed by one small transform per filter.
//!
//! Determinism: as in [`super::conv`], images are processed in fixed chunks, weight-gradient
//! partial sums are added in chunk order, and every GEMM runs on one thread, so results do
//! not depend on the number of threads.

use super::conv::{Geom, CHUNK};
use super::cpu::{give, sum_partials, take};
use crate::linalg::{matmul, MatRef};
use gemm::Parallelism;
use rayon::prelude::*;

/// Transformed points per tile (a 4x4 tile).
const XI: usize = 16;
/// Fewest tiles a group of images should give one GEMM.
const MIN_TILES: usize = 96;
/// Fewest channels on both sides for the Winograd path to beat im2col: with fewer, the 16
/// GEMMs are too thin to run efficiently (measured on resnet_small and resnet_cpu: 8 was
/// 20% slower than 16, and 32 a few percent faster than 16).
const MIN_CHANNELS: usize = 32;

/// True when `g` is a convolution this module computes.
pub(crate) fn applies(g: &Geom) -> bool {
    g.k == 3 && g.s == 1 && g.pad == 1 && g.cin >= MIN_CHANNELS && g.cout >= MIN_CHANNELS
}

/// Tiling of one image plane: `th x tw` tiles of 2x2 outputs.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
}

impl Tiles {
    fn new(g: &Geom) -> Self {
        Tiles { h: g.h, w: g.w, th: g.h.div_ceil(2), tw: g.w.div_ceil(2) }
    }
    /// Tiles per image.
    fn per_image(&self) -> usize {
        self.th * self.tw
    }
    /// Images per GEMM: a power of two dividing [`CHUNK`], enough to reach [`MIN_TILES`].
    fn group(&self) -> usize {
        let mut g = 1;
        while g < CHUNK && g * self.per_image() < MIN_TILES {
            g *= 2;
        }
        g
    }
}

/// `G g Gᵀ` along one axis: four transformed values of three filter taps.
#[inline(always)]
fn g3(g: [f32; 3]) -> [f32; 4] {
    [g[0], 0.5 * (g[0] + g[1] + g[2]), 0.5 * (g[0] - g[1] + g[2]), g[2]]
}

/// `Gᵀ x G` along one axis: three filter-gradient taps of four transformed values.
#[inline(always)]
fn gt4(x: [f32; 4]) -> [f32; 3] {
    [x[0] + 0.5 * (x[1] + x[2]), 0.5 * (x[1] - x[2]), 0.5 * (x[1] + x[2]) + x[3]]
}

/// Applies a 1-D transform to the rows and then the columns of a square block.
macro_rules! two_d {
    ($f:ident, $d:expr, $n:expr, $m:expr) => {{
        let d = $d;
        let mut rows = [[0f32; $m]; $n];
        for r in 0..$n {
            rows[r] = $f(d[r]);
        }
        let mut out = [[0f32; $m]; $m];
        for c in 0..$m {
            let col = $f(std::array::from_fn(|r| rows[r][c]));
            for r in 0..$m {
                out[r][c] = col[r];
            }
        }
        out
    }};
}

/// Transformed filters `U[ξ][a][b]` (`a x b` row-major per ξ) of `w`, where `filter(a, b)`
/// returns the 3x3 filter of output channel `a` and input channel `b`.
fn transform_filters(a_n: usize, b_n: usize, filter: impl Fn(usize, usize) -> [[f32; 3]; 3]) -> Vec<f32> {
    let mut u = take(XI * a_n * b_n);
    for a in 0..a_n {
        for b in 0..b_n {
            let f = filter(a, b);
            let t = two_d!(g3, f, 3, 4);
            for (xi, v) in t.iter().flatten().enumerate() {
                u[(xi * a_n + a) * b_n + b] = *v;
            }
        }
    }
    u
}

/// The 3x3 filter of `(co, ci)` in a `(Cout, Cin, 3, 3)` weight.
fn filter(w: &[f32], cin: usize, co: usize, ci: usize) -> [[f32; 3]; 3] {
    let f = &w[(co * cin + ci) * 9..][..9];
    [[f[0], f[1], f[2]], [f[3], f[4], f[5]], [f[6], f[7], f[8]]]
}

/// Copies `gn` images of `c` channels (`NCHW`) into a zero-bordered channel-last buffer
/// `[gn][ph][pw][c]`, the image at row `top` and column `left`.
fn to_channel_last(
    t: &Tiles,
    c: usize,
    x: &[f32],
    gn: usize,
    (ph, pw): (usize, usize),
    (top, left): (usize, usize),
) -> Vec<f32> {
    let plane = t.h * t.w;
    let mut out = take(gn * ph * pw * c);
    out.fill(0.0);
    for j in 0..gn {
        let img = &mut out[j * ph * pw * c..][..ph * pw * c];
        for ci in 0..c {
            let src = &x[(j * c + ci) * plane..][..plane];
            for (y, row) in src.chunks_exact(t.w).enumerate() {
                let base = ((y + top) * pw + left) * c + ci;
                for (xx, &val) in row.iter().enumerate() {
                    img[base + xx * c] = val;
                }
            }
        }
    }
    out
}

/// `dst = a + b`, elementwise.
#[inline(always)]
fn add(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
        *d = x + y;
    }
}

/// `dst = a - b`, elementwise.
#[inline(always)]
fn sub(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
        *d = x - y;
    }
}

/// Writes `Bᵀ d B` of every tile of `gn` images of `c` channels starting at `x` into
/// `v[ξ][t][ci]` (`ld` tiles per ξ; tiles numbered image by image, row by row).
///
/// Channel-last, so every arithmetic step is a vector op over the channels (at least
/// [`MIN_CHANNELS`]), whatever the size of the plane.
fn transform_input(t: &Tiles, c: usize, x: &[f32], gn: usize, v: &mut [f32], ld: usize) {
    let (ph, pw) = (2 * t.th + 2, 2 * t.tw + 2);
    let p = to_channel_last(t, c, x, gn, (ph, pw), (1, 1));
    // Column-transformed rows of one tile: `ct[r][k][ci]`.
    let mut ct = vec![0f32; 16 * c];
    for j in 0..gn {
        for ty in 0..t.th {
            for tx in 0..t.tw {
                for r in 0..4 {
                    let px = |k: usize| &p[((j * ph + 2 * ty + r) * pw + 2 * tx + k) * c..][..c];
                    let row = &mut ct[r * 4 * c..(r + 1) * 4 * c];
                    let (c0, rest) = row.split_at_mut(c);
                    let (c1, rest) = rest.split_at_mut(c);
                    let (c2, c3) = rest.split_at_mut(c);
                    sub(c0, px(0), px(2));
                    add(c1, px(1), px(2));
                    sub(c2, px(2), px(1));
                    sub(c3, px(1), px(3));
                }
                let tile = j * t.per_image() + ty * t.tw + tx;
                for k in 0..4 {
                    let r = |r: usize| &ct[(r * 4 + k) * c..][..c];
                    let at = |row: usize| ((row * 4 + k) * ld + tile) * c;
                    sub(&mut v[at(0)..][..c], r(0), r(2));
                    add(&mut v[at(1)..][..c], r(1), r(2));
                    sub(&mut v[at(2)..][..c], r(2), r(1));
                    sub(&mut v[at(3)..][..c], r(1), r(3));
                }
            }
        }
    }
    give(p);
}

/// Writes `A dY Aᵀ` of every 2x2 output-gradient tile (zero beyond the plane) of `gn` images
/// of `c` channels into `e[ξ][t][co]`, channel-last like [`transform_input`].
fn transform_grad(t: &Tiles, c: usize, dy: &[f32], gn: usize, e: &mut [f32], ld: usize) {
    let (ph, pw) = (2 * t.th, 2 * t.tw);
    let p = to_channel_last(t, c, dy, gn, (ph, pw), (0, 0));
    let mut ct = vec![0f32; 8 * c];
    for j in 0..gn {
        for ty in 0..t.th {
            for tx in 0..t.tw {
                for r in 0..2 {
                    let px = |k: usize| &p[((j * ph + 2 * ty + r) * pw + 2 * tx + k) * c..][..c];
                    let row = &mut ct[r * 4 * c..(r + 1) * 4 * c];
                    row[..c].copy_from_slice(px(0));
                    add(&mut row[c..2 * c], px(0), px(1));
                    sub(&mut row[2 * c..3 * c], px(0), px(1));
                    neg(&mut row[3 * c..], px(1));
                }
                let tile = j * t.per_image() + ty * t.tw + tx;
                for k in 0..4 {
                    let (r0, r1) = (&ct[k * c..][..c], &ct[(4 + k) * c..][..c]);
                    let at = |row: usize| ((row * 4 + k) * ld + tile) * c;
                    e[at(0)..][..c].copy_from_slice(r0);
                    add(&mut e[at(1)..][..c], r0, r1);
                    sub(&mut e[at(2)..][..c], r0, r1);
                    neg(&mut e[at(3)..][..c], r1);
                }
            }
        }
    }
    give(p);
}

/// `dst = -a`, elementwise.
#[inline(always)]
fn neg(dst: &mut [f32], a: &[f32]) {
    for (d, x) in dst.iter_mut().zip(a) {
        *d = -x;
    }
}

/// Writes `Aᵀ M A` of every tile of `m[ξ][t][co]` (`c` channels) into the `gn` output images
/// (`NCHW`) at `y`, dropping outputs beyond the plane.
fn transform_output(t: &Tiles, c: usize, m: &[f32], ld: usize, gn: usize, y: &mut [f32]) {
    let plane = t.h * t.w;
    // `rows[i][k][co]`: a tile reduced to 2 rows; `out[i][jj][co]`: its 2x2 outputs.
    let mut rows = vec![0f32; 8 * c];
    let mut out = vec![0f32; 4 * c];
    for j in 0..gn {
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let tile = j * t.per_image() + ty * t.tw + tx;
                for k in 0..4 {
                    let mr = |r: usize| &m[((r * 4 + k) * ld + tile) * c..][..c];
                    let (r0, r1) = rows.split_at_mut(4 * c);
                    sum3(&mut r0[k * c..][..c], mr(0), mr(1), mr(2), 1.0);
                    sum3(&mut r1[k * c..][..c], mr(1), mr(2), mr(3), -1.0);
                }
                for i in 0..2 {
                    let q = |k: usize| &rows[(i * 4 + k) * c..][..c];
                    let (o0, o1) = out[i * 2 * c..(i + 1) * 2 * c].split_at_mut(c);
                    sum3(o0, q(0), q(1), q(2), 1.0);
                    sum3(o1, q(1), q(2), q(3), -1.0);
                }
                for i in 0..2 {
                    for jj in 0..2 {
                        let (yy, xx) = (2 * ty + i, 2 * tx + jj);
                        if yy >= t.h || xx >= t.w {
                            continue;
                        }
                        let base = j * c * plane + yy * t.w + xx;
                        for (co, &val) in out[(i * 2 + jj) * c..][..c].iter().enumerate() {
                            y[base + co * plane] = val;
                        }
                    }
                }
            }
        }
    }
}

/// `dst = a + b + c` (`sign` 1) or `dst = a - b - c` (`sign` -1): the two rows of `Aᵀ`.
#[inline(always)]
fn sum3(dst: &mut [f32], a: &[f32], b: &[f32], c: &[f32], sign: f32) {
    if sign > 0.0 {
        for (((d, x), y), z) in dst.iter_mut().zip(a).zip(b).zip(c) {
            *d = x + y + z;
        }
    } else {
        for (((d, x), y), z) in dst.iter_mut().zip(a).zip(b).zip(c) {
            *d = x - y - z;
        }
    }
}

/// `out[n, co] = Σ_ci conv(x[n, ci], filters)` for `n` images of `cin` channels, with the
/// filters already transformed into `u[ξ][co][ci]`.
fn convolve(t: &Tiles, n: usize, cin: usize, cout: usize, x: &[f32], u: &[f32]) -> Vec<f32> {
    let plane = t.h * t.w;
    let gs = t.group();
    let mut y = take(n * cout * plane);
    y.par_chunks_mut(gs * cout * plane).enumerate().for_each(|(chunk, ys)| {
        let gn = ys.len() / (cout * plane);
        let n0 = chunk * gs;
        let ld = gn * t.per_image();
        let mut v = take(XI * ld * cin);
        transform_input(t, cin, &x[n0 * cin * plane..(n0 + gn) * cin * plane], gn, &mut v, ld);
        let mut m = take(XI * ld * cout);
        for xi in 0..XI {
            // Mᵀ[ξ] (T x Cout) = Vᵀ[ξ] (T x Cin) · Uᵀ[ξ] (Cin x Cout)
            let vm = MatRef::row_major(&v[xi * ld * cin..][..ld * cin], ld, cin);
            let um = MatRef::row_major(&u[xi * cout * cin..][..cout * cin], cout, cin).t();
            matmul(&mut m[xi * ld * cout..][..ld * cout], vm, um, 1.0, false, Parallelism::None);
        }
        transform_output(t, cout, &m, ld, gn, ys);
        give(v);
        give(m);
    });
    y
}

/// Forward pass: `y[N, Cout, H, W]`.
pub(crate) fn forward(g: &Geom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let t = Tiles::new(g);
    let u = transform_filters(g.cout, g.cin, |co, ci| filter(w, g.cin, co, ci));
    let y = convolve(&t, g.n, g.cin, g.cout, x, &u);
    give(u);
    y
}

/// Backward pass: input gradient (when `need_dx`, else empty) and weight gradient.
pub(crate) fn backward(g: &Geom, x: &[f32], w: &[f32], dy: &[f32], need_dx: bool) -> (Vec<f32>, Vec<f32>) {
    let t = Tiles::new(g);
    let dx = if need_dx {
        // The input gradient is the convolution of dY with the rotated, channel-swapped filters.
        let u = transform_filters(g.cin, g.cout, |ci, co| {
            let f = filter(w, g.cin, co, ci);
            std::array::from_fn(|r| std::array::from_fn(|k| f[2 - r][2 - k]))
        });
        let dx = convolve(&t, g.n, g.cout, g.cin, dy, &u);
        give(u);
        dx
    } else {
        Vec::new()
    };
    let (plane, gs) = (t.h * t.w, t.group());
    let (xi_len, nchunks) = (g.cout * g.cin, g.n.div_ceil(CHUNK));
    let partials: Vec<Vec<f32>> = (0..nchunks)
        .into_par_iter()
        .map(|chunk| {
            let mut dwt = take(XI * xi_len);
            let (i0, i1) = (chunk * CHUNK, ((chunk + 1) * CHUNK).min(g.n));
            for (gi, g0) in (i0..i1).step_by(gs).enumerate() {
                let gn = gs.min(i1 - g0);
                let ld = gn * t.per_image();
                let mut v = take(XI * ld * g.cin);
                transform_input(&t, g.cin, &x[g0 * g.cin * plane..(g0 + gn) * g.cin * plane], gn, &mut v, ld);
                let mut e = take(XI * ld * g.cout);
                transform_grad(&t, g.cout, &dy[g0 * g.cout * plane..(g0 + gn) * g.cout * plane], gn, &mut e, ld);
                for xi in 0..XI {
                    // dŴ[ξ] (Cout x Cin) += Eᵀ[ξ] (Cout x T) · V[ξ] (T x Cin)
                    let em = MatRef::row_major(&e[xi * ld * g.cout..][..ld * g.cout], ld, g.cout).t();
                    let vm = MatRef::row_major(&v[xi * ld * g.cin..][..ld * g.cin], ld, g.cin);
                    matmul(&mut dwt[xi * xi_len..][..xi_len], em, vm, 1.0, gi > 0, Parallelism::None);
                }
                give(v);
                give(e);
            }
            dwt
        })
        .collect();
    let dwt = sum_partials(partials, XI * xi_len);
    let mut dw = vec![0f32; xi_len * 9];
    for (pair, out) in dw.chunks_exact_mut(9).enumerate() {
        let d: [[f32; 4]; 4] = std::array::from_fn(|r| std::array::from_fn(|k| dwt[(r * 4 + k) * xi_len + pair]));
        let f = two_d!(gt4, d, 4, 3);
        for (o, v) in out.iter_mut().zip(f.iter().flatten()) {
            *o = *v;
        }
    }
    give(dwt);
    (dx, dw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Forward, input and weight gradients agree with the im2col path on odd, even, tiny and
    /// non-square planes, partial image groups and both sides of the channel threshold.
    #[test]
    fn matches_im2col() {
        // n, cin, h, w, cout
        for (case, &(n, cin, h, w, cout)) in [
            (3, 16, 7, 7, 16),
            (2, 17, 4, 4, 20),
            (9, 16, 1, 1, 16),
            (5, 24, 6, 5, 16),
            (11, 16, 2, 3, 18),
            (2, 32, 14, 14, 16),
        ]
        .iter()
        .enumerate()
        {
            // Thinner than the dispatch threshold, so that the test stays fast; the kernel
            // itself has no lower limit.
            let g = Geom::new(&[n, cin, h, w], &[cout, cin, 3, 3], 1, 1).unwrap();
            let x = random(n * cin * h * w, case as u64);
            let wt = random(cout * cin * 9, 100 + case as u64);
            let dy = random(n * cout * h * w, 200 + case as u64);
            close(&forward(&g, &x, &wt), &super::super::conv::im2col_forward(&g, &x, &wt), 1e-5, "forward");
            let (dx, dw) = backward(&g, &x, &wt, &dy, true);
            let (rdx, rdw) = super::super::conv::im2col_backward(&g, &x, &wt, &dy, true);
            close(&dx, &rdx, 1e-5, "dx");
            close(&dw, &rdw, 1e-5, "dw");
            let (none, dw2) = backward(&g, &x, &wt, &dy, false);
            assert!(none.is_empty());
            assert_eq!(dw, dw2);
        }
    }

    /// The result does not depend on the number of threads.
    #[test]
    fn same_bits_for_any_thread_count() {
        let g = Geom::new(&[19, 16, 7, 7], &[24, 16, 3, 3], 1, 1).unwrap();
        let (x, wt, dy) = (random(19 * 16 * 49, 1), random(24 * 16 * 9, 2), random(19 * 24 * 49, 3));
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| (forward(&g, &x, &wt), backward(&g, &x, &wt, &dy, true)))
        };
        assert_eq!(run(1), run(3));
    }

    /// Thin convolutions and other geometries keep the im2col path.
    #[test]
    fn applies_only_to_wide_same_3x3() {
        let geom = |cin, cout, k, s, p| Geom::new(&[2, cin, 8, 8], &[cout, cin, k, k], s, p).unwrap();
        assert!(applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 3, 1, 1)));
        assert!(!applies(&geom(MIN_CHANNELS / 2, MIN_CHANNELS, 3, 1, 1)));
        assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS / 2, 3, 1, 1)));
        assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 3, 2, 1)));
        assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 1, 1, 0)));
        assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 3, 1, 0)));
    }
}
