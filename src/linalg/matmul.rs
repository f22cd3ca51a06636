//! The one bounds-checked, safe front for `gemm::gemm` (checked stride arithmetic), shared by the
//! convolution kernels and the linear probe (k-means has its own fused nearest-centroid kernel).

use gemm::Parallelism;

/// A strided, read-only view of an f32 matrix inside a slice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows x cols` matrix stored at the start of `data`.
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// A general strided view: element (i, j) is `data[i * row_stride + j * col_stride]`.
    pub(crate) fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        Self { data, rows, cols, row_stride, col_stride }
    }

    /// The transpose, as a view over the same memory (no copy).
    pub(crate) fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// True when every element the strides can reach lies inside `data`.
    pub(crate) fn in_bounds(&self) -> bool {
        let strides_fit = isize::try_from(self.row_stride).is_ok() && isize::try_from(self.col_stride).is_ok();
        if self.rows == 0 || self.cols == 0 {
            return strides_fit;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(a, b)| a.checked_add(b));
        strides_fit && matches!(last, Some(last) if last < self.data.len())
    }
}

/// The deepest k-block `gemm` uses on every machine. gemm cuts k into blocks sized from the L1
/// cache it reads in `/sys` (at least 512 deep: 512 on a 32 KiB 8-way L1 such as AMD Zen 3's, 1024
/// on Intel Xeon's 48 KiB 12-way one), and a dot product summed in other blocks ends in other last
/// bits, so the same study trained to other numbers on the two machines (2026-12-01: the
/// noise_sweep tables and verdicts on a Xeon differed from the committed ones, made on Zen 3).
/// [`matmul`] therefore cuts k itself, the way gemm does with 512 (balanced blocks of at most
/// 512), and hands gemm one block per call: gemm then makes a single block of it anywhere.
const DEPTH: usize = 512;

/// The k-blocks of `a (m x k) * b (k x n)`, `(start, depth)`: all of k where gemm's own blocking
/// does not depend on the machine (at most [`DEPTH`] deep; both sides at most 64, where gemm
/// cuts fixed 512-blocks; and the kernels gemm 0.19 picks for at most 256 outputs or a vector
/// side, which block k by a constant, but only under their stride conditions: with a strided
/// side gemm takes its general path, blocked by the L1 cache), else balanced blocks of at most
/// [`DEPTH`], as gemm cuts them with 512.
fn depth_blocks(a: &MatRef<'_>, b: &MatRef<'_>) -> impl Iterator<Item = (usize, usize)> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // gemm's dst here is row-major (column stride 1, row stride n): its conditions read so.
    let small = m * n <= 256 && a.col_stride == 1 && b.row_stride == 1;
    let column = n <= 1 && (a.row_stride == 1 || (a.col_stride == 1 && b.row_stride == 1));
    let row = m <= 1 && (b.col_stride == 1 || (b.row_stride == 1 && a.col_stride == 1));
    let fixed = k <= DEPTH || (m <= 64 && n <= 64) || small || column || row;
    let depth = if fixed { k } else { k.div_ceil(k.div_ceil(DEPTH)) };
    (0..k).step_by(depth.max(1)).map(move |start| (start, depth.min(k - start)))
}

/// `dst (m x n, row-major) = [dst +] alpha * a (m x k) * b (k x n)`.
///
/// `accumulate` keeps the old contents of `dst`; without it `dst` is overwritten.
/// Shapes are internal invariants, so a mismatch is a bug and panics before any
/// unsafe code runs.
pub(crate) fn matmul(dst: &mut [f32], a: MatRef<'_>, b: MatRef<'_>, alpha: f32, accumulate: bool, par: Parallelism) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "matmul: inner dimensions differ");
    assert!(dst.len() >= m * n, "matmul: destination too small");
    assert!(a.in_bounds() && b.in_bounds(), "matmul: view out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    for (start, depth) in depth_blocks(&a, &b) {
        // A later block adds to what the earlier ones wrote, as gemm's own later blocks do.
        let read_dst = accumulate || start > 0;
        // SAFETY: both views were checked to stay inside their slices, and column `start` of `a`
        // and row `start` of `b` (start < k) are inside them too, so the offsets below stay in
        // bounds and the `depth` columns/rows from there are within the checked views. `dst`
        // holds m*n elements addressed with row stride n, and is an exclusive borrow so it cannot
        // alias `a` or `b`. Strides fit in isize (checked in in_bounds).
        unsafe {
            gemm::gemm(
                m,
                n,
                depth,
                dst.as_mut_ptr(),
                1,
                n as isize,
                read_dst,
                a.data.as_ptr().add(start * a.col_stride),
                a.col_stride as isize,
                a.row_stride as isize,
                b.data.as_ptr().add(start * b.row_stride),
                b.col_stride as isize,
                b.row_stride as isize,
                1.0,
                alpha,
                false,
                false,
                false,
                par,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::wave;

    /// Blocks cover k exactly, in order, never deeper than 512 where the machine would choose,
    /// balanced as gemm balances them (1,152 = 3 x 384, not 512 + 512 + 128).
    #[test]
    fn depth_blocks_are_gemms_with_512() {
        // Row-major sides: gemm's small and matrix-vector kernels apply where their sizes do.
        // (The blocks read only shapes and strides, so the views hold no data.)
        let blocks =
            |m, n, k| depth_blocks(&MatRef::row_major(&[], m, k), &MatRef::row_major(&[], k, n)).collect::<Vec<_>>();
        assert_eq!(blocks(128, 4096, 1152), vec![(0, 384), (384, 384), (768, 384)]);
        assert_eq!(blocks(128, 4096, 576), vec![(0, 288), (288, 288)]);
        assert_eq!(blocks(128, 4096, 512), vec![(0, 512)]);
        assert_eq!(blocks(64, 64, 5000), vec![(0, 5000)], "gemm's fixed 512-blocks for small products");
        assert_eq!(blocks(1, 4096, 5000), vec![(0, 5000)], "matrix-vector kernels");
        // A strided side sends gemm to its general path, blocked by the machine, at any size:
        // a head's input gradient (g, 2 x 1000) times its weight (1000 x 128, row stride 128).
        let strided = depth_blocks(&MatRef::row_major(&[], 2, 1000), &MatRef::row_major(&[], 1000, 128));
        assert_eq!(strided.collect::<Vec<_>>(), vec![(0, 500), (500, 500)]);
        // A matrix times a column of a wider matrix (row stride 5): not gemm's vector kernels.
        let column = depth_blocks(&MatRef::row_major(&[], 128, 1000), &MatRef::strided(&[], 1000, 1, 5, 1));
        assert_eq!(column.count(), 2);
        let vector = depth_blocks(&MatRef::row_major(&[], 128, 1000), &MatRef::row_major(&[], 1000, 1));
        assert_eq!(vector.count(), 1, "gemm's matrix-vector kernel");
        for (m, n, k) in [(65, 5, 100_003), (300, 300, 513), (128, 129, 4096)] {
            let b = blocks(m, n, k);
            assert!(b.iter().all(|&(_, d)| d <= DEPTH && d > 0), "{b:?}");
            assert_eq!(b.iter().map(|&(_, d)| d).sum::<usize>(), k);
            assert!(b.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        }
    }

    /// The bits of a product deeper than any machine's first k-block, pinned: gemm alone gives
    /// other bits on a 48 KiB 12-way L1 (Intel Xeon, one 1,152-deep block) than on a 32 KiB
    /// 8-way one (AMD Zen 3, three of 384), so on such a machine this fails if the blocking here
    /// is lost. (The constant is what both machines give with it; it moves with gemm's version.)
    #[test]
    fn deep_product_bits_do_not_depend_on_the_cache() {
        let (m, k, n) = (96, 1152, 400);
        let a = wave(m * k, 0.0131, f32::sin);
        let b = wave(k * n, 0.0077, f32::cos);
        let mut dst = vec![0.0; m * n];
        matmul(&mut dst, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), 1.0, false, Parallelism::None);
        let digest = crate::linalg::bits_digest(dst.iter().map(|v| v.to_bits()));
        assert_eq!(digest, GOLDEN, "{digest:#x}");
    }
    const GOLDEN: u64 = 0x1571_e0cf_7694_bd76;

    /// Blocked products are the whole product (to rounding), with and without accumulation and
    /// through transposed views.
    #[test]
    fn blocked_product_matches_naive() {
        let (m, k, n) = (70, 1300, 9);
        let a = wave(m * k, 0.013, f32::sin);
        let bt = wave(n * k, 0.007, f32::cos);
        for accumulate in [false, true] {
            let mut dst = vec![0.5; m * n];
            let b = MatRef::row_major(&bt, n, k).t();
            matmul(&mut dst, MatRef::row_major(&a, m, k), b, 0.25, accumulate, Parallelism::None);
            for i in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k).map(|p| f64::from(a[i * k + p]) * f64::from(bt[j * k + p])).sum();
                    let want = if accumulate { 0.5 } else { 0.0 } + 0.25 * dot;
                    assert!(
                        (f64::from(dst[i * n + j]) - want).abs() < 1e-3,
                        "({i}, {j}): {} vs {want}",
                        dst[i * n + j]
                    );
                }
            }
        }
    }

    #[test]
    fn matmul_matches_naive_with_transposes() {
        let (m, k, n) = (5, 7, 3);
        let a = wave(m * k, 0.37, f32::sin);
        let bt = wave(n * k, 0.11, f32::cos);
        let mut dst = vec![1.0; m * n];
        matmul(&mut dst, MatRef::row_major(&a, m, k), MatRef::row_major(&bt, n, k).t(), -2.0, true, Parallelism::None);
        for i in 0..m {
            for j in 0..n {
                let dot: f32 = (0..k).map(|p| a[i * k + p] * bt[j * k + p]).sum();
                assert!((dst[i * n + j] - (1.0 - 2.0 * dot)).abs() < 1e-5);
            }
        }
    }
}
