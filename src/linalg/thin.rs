//! Products of dense row-major matrices with a short inner dimension, such as the per-point
//! products of a Winograd convolution (`tiles x Cin` times `Cin x Cout`, with 16 to a few
//! hundred channels).
//!
//! Why not `gemm`: it packs both operands into its own layout on every call, which pays off
//! over a long inner dimension and large blocks but not here, where a call is a few tens of
//! thousands of multiply-adds (a 16-channel Winograd point of 98 tiles is 25,000) and the
//! operands already lie the way a register kernel wants them: rows of `a` to broadcast
//! from, rows of `b` to load 16 lanes at a time. Measured on resnet_cpu inference, see
//! `benches/profiles/nets.md`, sixth round.
//!
//! Each output is summed over the inner dimension in order, one fused multiply-add per
//! term starting from zero: the same operations as `gemm` performs for an inner dimension
//! that fits its one block, so the two give the same bits there (a test holds them to it).

use super::matmul::{matmul, MatRef};
use gemm::Parallelism;

/// Rows of `a` one register block handles: 6 rows times 16 columns is 12 accumulators of 8
/// lanes, leaving 4 of the 16 AVX registers for the two rows of `b` and the broadcast.
const ROWS: usize = 6;
/// Columns of one register block: two 8-lane registers (and one for a last 8 columns).
const COLS: usize = 16;

/// `dst (m x n) = a (m x k) · b (k x n)`, all three dense and row-major.
///
/// The register kernel needs AVX2 with FMA and `n` a multiple of 8; otherwise this is
/// [`matmul`]. Shapes are internal invariants: a mismatch panics before any unsafe code.
pub(crate) fn matmul_thin(dst: &mut [f32], a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize)) {
    assert!(a.len() >= m * k && b.len() >= k * n, "matmul_thin: operand too short");
    assert!(dst.len() >= m * n, "matmul_thin: destination too small");
    #[cfg(target_arch = "x86_64")]
    if uses_kernel(k, n) {
        // SAFETY: the kernel is available, and `b` holds `k` rows of `n` (asserted above).
        unsafe { blocks(dst, a, b, Dense(n), (m, k, n)) };
        return;
    }
    matmul(dst, MatRef::row_major(a, m, k), MatRef::row_major(b, k, n), 1.0, false, Parallelism::None);
}

/// `dst (m x n) = a (m x k) · B`, where row `p` of `B` is `b[starts[p]..starts[p] + n]`: rows
/// that may overlap, such as shifted views of one image plane (a convolution without its
/// column matrix, `nn::shifted`). The same bits as [`matmul_thin`] of those rows copied out.
///
/// Panics if a row runs past `b` or a shape does not fit.
pub(crate) fn matmul_rows(dst: &mut [f32], a: &[f32], b: &[f32], starts: &[usize], (m, k, n): (usize, usize, usize)) {
    assert!(a.len() >= m * k && starts.len() >= k, "matmul_rows: operand too short");
    assert!(dst.len() >= m * n, "matmul_rows: destination too small");
    assert!(starts[..k].iter().all(|&s| s + n <= b.len()), "matmul_rows: a row runs past its source");
    #[cfg(target_arch = "x86_64")]
    if uses_kernel(k, n) {
        // SAFETY: the kernel is available, and every row lies inside `b` (asserted above).
        unsafe { blocks(dst, a, b, Starts(starts), (m, k, n)) };
        return;
    }
    let mut dense = Vec::with_capacity(k * n);
    for &s in &starts[..k] {
        dense.extend_from_slice(&b[s..s + n]);
    }
    matmul(dst, MatRef::row_major(a, m, k), MatRef::row_major(&dense, k, n), 1.0, false, Parallelism::None);
}

/// Whether the register kernel computes a product with inner dimension `k` and `n` columns on
/// this CPU (else `gemm` does).
pub(crate) fn uses_kernel(k: usize, n: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        n.is_multiple_of(8)
            && k > 0
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (k, n);
        false
    }
}

/// Where each row of the right operand starts in its slice.
trait Rows: Copy {
    /// Start of row `p`.
    ///
    /// # Safety
    /// `p` must be below the inner dimension the rows were made for.
    unsafe fn start(self, p: usize) -> usize;
}

/// Rows of a dense row-major matrix with `n` columns.
#[derive(Clone, Copy)]
struct Dense(usize);

impl Rows for Dense {
    #[inline(always)]
    unsafe fn start(self, p: usize) -> usize {
        p * self.0
    }
}

/// Rows at listed starts.
#[derive(Clone, Copy)]
struct Starts<'a>(&'a [usize]);

impl Rows for Starts<'_> {
    #[inline(always)]
    unsafe fn start(self, p: usize) -> usize {
        // SAFETY: the caller keeps `p` below the inner dimension, which `matmul_rows` checked
        // the list covers.
        unsafe { *self.0.get_unchecked(p) }
    }
}

/// The whole product, [`ROWS`] rows of `a` at a time.
///
/// # Safety
/// The CPU must have AVX2 and FMA, `n` must be a multiple of 8, `a` and `dst` must hold
/// `m x k` and `m x n` floats, and every row `p < k` of `rows` must lie inside `b`.
#[cfg(target_arch = "x86_64")]
unsafe fn blocks(dst: &mut [f32], a: &[f32], b: &[f32], rows: impl Rows, (m, k, n): (usize, usize, usize)) {
    for i0 in (0..m).step_by(ROWS) {
        let r = ROWS.min(m - i0);
        let (a, dst) = (&a[i0 * k..(i0 + r) * k], &mut dst[i0 * n..(i0 + r) * n]);
        // SAFETY: passed on from the caller; `a` and `dst` now hold `r` rows.
        unsafe {
            match r {
                6 => block::<6>(dst, a, b, rows, k, n),
                5 => block::<5>(dst, a, b, rows, k, n),
                4 => block::<4>(dst, a, b, rows, k, n),
                3 => block::<3>(dst, a, b, rows, k, n),
                2 => block::<2>(dst, a, b, rows, k, n),
                _ => block::<1>(dst, a, b, rows, k, n),
            }
        }
    }
}

/// `R` rows of the product, 16 columns at a time, then 8 if `n` leaves them.
///
/// # Safety
/// The CPU must have AVX2 and FMA, `n` must be a multiple of 8, `a` and `dst` must hold at
/// least `R x k` and `R x n` floats, and every row `p < k` of `rows` must lie inside `b`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block<const R: usize>(dst: &mut [f32], a: &[f32], b: &[f32], rows: impl Rows, k: usize, n: usize) {
    use std::arch::x86_64::*;
    let (ap, bp, dp) = (a.as_ptr(), b.as_ptr(), dst.as_mut_ptr());
    let wide = n / COLS * COLS;
    if wide < n {
        let j0 = wide;
        let mut acc = [_mm256_setzero_ps(); R];
        for p in 0..k {
            // SAFETY: p < k and j0 + 8 == n: inside row p, which lies inside `b`.
            let b0 = unsafe { _mm256_loadu_ps(bp.add(rows.start(p) + j0)) };
            for (i, acc) in acc.iter_mut().enumerate() {
                // SAFETY: i < R and p < k: inside `a`.
                let x = unsafe { _mm256_broadcast_ss(&*ap.add(i * k + p)) };
                *acc = _mm256_fmadd_ps(x, b0, *acc);
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            // SAFETY: i < R and j0 + 8 == n: inside `dst`.
            unsafe { _mm256_storeu_ps(dp.add(i * n + j0), *acc) };
        }
    }
    for j0 in (0..wide).step_by(COLS) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for p in 0..k {
            // SAFETY: p < k and j0 + 16 <= n, so both loads lie in row p, inside `b`.
            let row = unsafe { bp.add(rows.start(p) + j0) };
            let (b0, b1) = unsafe { (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8))) };
            for (i, acc) in acc.iter_mut().enumerate() {
                // SAFETY: i < R and p < k: inside `a`.
                let x = unsafe { _mm256_broadcast_ss(&*ap.add(i * k + p)) };
                acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            // SAFETY: i < R and j0 + 16 <= n: inside `dst`.
            unsafe {
                _mm256_storeu_ps(dp.add(i * n + j0), acc[0]);
                _mm256_storeu_ps(dp.add(i * n + j0 + 8), acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::wave;

    /// The register kernel against `gemm` on the shapes of the Winograd points (tails of
    /// rows included): bit for bit, since both sum each output in order with fused
    /// multiply-adds. The fallback (`n` not a multiple of 8) is `gemm` itself.
    #[test]
    fn matches_gemm_bit_for_bit() {
        for (m, k, n) in [
            (98, 16, 16),
            (49, 32, 64),
            (13, 64, 128),
            (5, 128, 32),
            (1, 512, 512),
            (7, 3, 8),
            (16, 9, 200),
            (32, 16, 56),
            (3, 5, 7),
            (8, 72, 1568),
        ] {
            let a = wave(m * k, 0.37, f32::sin);
            let b = wave(k * n, 0.11, f32::cos);
            let mut ours = vec![f32::NAN; m * n];
            matmul_thin(&mut ours, &a, &b, (m, k, n));
            let mut theirs = vec![0f32; m * n];
            matmul(
                &mut theirs,
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                1.0,
                false,
                Parallelism::None,
            );
            // Every shape but 3x5x7 has a multiple of 8 columns: on an AVX2 machine the
            // register kernel, not the fallback, must be what is compared.
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                assert_eq!(uses_kernel(k, n), n.is_multiple_of(8), "{m}x{k}x{n}: kernel choice");
            }
            let same = ours.iter().zip(&theirs).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{m}x{k}x{n}: the register kernel's bits differ from gemm's");
        }
    }

    /// Rows given by their starts, overlapping ones included, give the bits of the same rows
    /// copied into a dense matrix.
    #[test]
    fn rows_at_starts_match_the_dense_product() {
        let (m, k, n) = (8, 9, 40);
        let a = wave(m * k, 0.37, f32::sin);
        let b = wave(300, 0.11, f32::cos);
        let starts: Vec<usize> = (0..k).map(|p| (p * 31) % 200 + p / 3).collect();
        let dense: Vec<f32> = starts.iter().flat_map(|&s| b[s..s + n].iter().copied()).collect();
        let mut ours = vec![f32::NAN; m * n];
        matmul_rows(&mut ours, &a, &b, &starts, (m, k, n));
        let mut theirs = vec![f32::NAN; m * n];
        matmul_thin(&mut theirs, &a, &dense, (m, k, n));
        assert!(ours.iter().zip(&theirs).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    #[should_panic(expected = "runs past")]
    fn a_row_past_its_source_is_refused() {
        let mut dst = vec![0f32; 8];
        matmul_rows(&mut dst, &[1.0], &[0.0; 10], &[3], (1, 1, 8));
    }
}
