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
    fn in_bounds(&self) -> bool {
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
    // SAFETY: both views were checked to stay inside their slices, `dst` holds
    // m*n elements addressed with row stride n, and `dst` is an exclusive borrow
    // so it cannot alias `a` or `b`. Strides fit in isize (checked in in_bounds).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_naive_with_transposes() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
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
