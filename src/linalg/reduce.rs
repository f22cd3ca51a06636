//! Fixed-order f32 reductions: partial sums in a set number of lanes, so the compiler can
//! vectorise them while the result depends only on the slices' length.

/// f32 lanes of the partial sums in [`lane_sum`]: four 8-lane vectors, so the adds
/// of consecutive chunks do not wait on each other (one vector of 8 lanes was latency-bound:
/// one add every 3-4 cycles). What is left after the 32-lane chunks goes through the first
/// 8 lanes, then the last few elements are added in f64.
const LANES: usize = 32;

/// `sum f(a[i], b[i])` over two slices of equal length, accumulated in [`LANES`] f32 lanes (so
/// the compiler can vectorise) and then in f64; the order depends only on the length.
#[inline(always)]
pub(crate) fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut lanes = [0f32; LANES];
    let (wide_a, wide_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (wide_a.remainder(), wide_b.remainder());
    for (ca, cb) in wide_a.zip(wide_b) {
        for l in 0..LANES {
            lanes[l] += f(ca[l], cb[l]);
        }
    }
    let (narrow_a, narrow_b) = (ra.chunks_exact(8), rb.chunks_exact(8));
    let (ta, tb) = (narrow_a.remainder(), narrow_b.remainder());
    for (ca, cb) in narrow_a.zip(narrow_b) {
        for l in 0..8 {
            lanes[l] += f(ca[l], cb[l]);
        }
    }
    let mut total: f64 = lanes.iter().map(|&v| v as f64).sum();
    for (&x, &y) in ta.iter().zip(tb) {
        total += f(x, y) as f64;
    }
    total
}

/// `sum a[i] * b[i]` (see [`lane_sum`] for the order): a dot product that vectorises, where a
/// sequential f32 sum waits on each add in turn.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    lane_sum(a, b, |x, y| x * y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::wave;

    /// Lengths around every chunk boundary: the lane sums equal the f64 sums to f32 rounding.
    #[test]
    fn dot_matches_f64_reference_at_every_remainder() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 40, 63, 64, 65, 1200] {
            let a = wave(n, 0.37, f32::sin);
            let b = wave(n, 0.11, f32::cos);
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            let scale: f64 = a.iter().zip(&b).map(|(x, y)| f64::from((x * y).abs())).sum::<f64>().max(1.0);
            assert!((dot(&a, &b) - exact).abs() <= 1e-5 * scale, "n = {n}");
        }
    }
}
