//! The one-dimensional transforms of F(2, 3) and F(4, 3), and each of them as a type
//! ([`Step`]) that the vector loops call directly.

use crate::linalg::Arith;
use std::marker::PhantomData;

/// The one-dimensional transforms of F(M, 3), on `A = M + 2` points; the two-dimensional
/// ones apply them to the rows and then to the columns of a tile.
pub(super) trait Variant<const M: usize, const A: usize> {
    /// `Bᵀ d`: `A` input taps to `A` transformed points.
    fn input<T: Arith>(d: [T; A]) -> [T; A];
    /// `A dy`: `M` output-gradient taps to `A` transformed points.
    fn grad<T: Arith>(dy: [T; M]) -> [T; A];
    /// `Aᵀ m`: `A` transformed points to `M` outputs.
    fn output<T: Arith>(m: [T; A]) -> [T; M];
    /// `G g`: three filter taps to `A` transformed points.
    fn filter(g: [f32; 3]) -> [f32; A];
    /// `Gᵀ x`: `A` transformed points to three filter-gradient taps.
    fn filter_grad(x: [f32; A]) -> [f32; 3];
}

/// F(2, 3) on the points 0, 1, -1 and ∞.
pub(super) struct F2;

impl Variant<2, 4> for F2 {
    #[inline(always)]
    fn input<T: Arith>(d: [T; 4]) -> [T; 4] {
        [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
    }
    #[inline(always)]
    fn grad<T: Arith>(d: [T; 2]) -> [T; 4] {
        [d[0], d[0] + d[1], d[0] - d[1], -d[1]]
    }
    #[inline(always)]
    fn output<T: Arith>(m: [T; 4]) -> [T; 2] {
        [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]
    }
    #[inline(always)]
    fn filter(g: [f32; 3]) -> [f32; 4] {
        [g[0], 0.5 * (g[0] + g[1] + g[2]), 0.5 * (g[0] - g[1] + g[2]), g[2]]
    }
    #[inline(always)]
    fn filter_grad(x: [f32; 4]) -> [f32; 3] {
        [x[0] + 0.5 * (x[1] + x[2]), 0.5 * (x[1] - x[2]), 0.5 * (x[1] + x[2]) + x[3]]
    }
}

/// F(4, 3) on the points 0, ±1, ±2 and ∞ (the matrices of Lavin and Gray, 2016).
pub(super) struct F4;

impl Variant<4, 6> for F4 {
    #[inline(always)]
    fn input<T: Arith>(d: [T; 6]) -> [T; 6] {
        let (a, b) = (d[4] - d[2] * 4.0, d[3] - d[1] * 4.0);
        let (c, e) = (d[4] - d[2], (d[3] - d[1]) * 2.0);
        [d[0] * 4.0 - d[2] * 5.0 + d[4], a + b, a - b, c + e, c - e, d[1] * 4.0 - d[3] * 5.0 + d[5]]
    }
    #[inline(always)]
    fn grad<T: Arith>(d: [T; 4]) -> [T; 6] {
        let (even, odd) = (d[0] + d[2], d[1] + d[3]);
        let (even2, odd2) = (d[0] + d[2] * 4.0, d[1] * 2.0 + d[3] * 8.0);
        [d[0], even + odd, even - odd, even2 + odd2, even2 - odd2, d[3]]
    }
    #[inline(always)]
    fn output<T: Arith>(m: [T; 6]) -> [T; 4] {
        let (s12, d12, s34, d34) = (m[1] + m[2], m[1] - m[2], m[3] + m[4], m[3] - m[4]);
        [m[0] + s12 + s34, d12 + d34 * 2.0, s12 + s34 * 4.0, d12 + d34 * 8.0 + m[5]]
    }
    #[inline(always)]
    fn filter(g: [f32; 3]) -> [f32; 6] {
        let (s, d) = (g[0] + g[2], g[1]);
        let (s4, d2) = (g[0] / 24.0 + g[2] / 6.0, g[1] / 12.0);
        [g[0] / 4.0, -(s + d) / 6.0, -(s - d) / 6.0, s4 + d2, s4 - d2, g[2]]
    }
    #[inline(always)]
    fn filter_grad(x: [f32; 6]) -> [f32; 3] {
        let (s12, d12, s34, d34) = (x[1] + x[2], x[2] - x[1], x[3] + x[4], x[3] - x[4]);
        [x[0] / 4.0 - s12 / 6.0 + s34 / 24.0, d12 / 6.0 + d34 / 12.0, -s12 / 6.0 + s34 / 6.0 + x[5]]
    }
}

/// One 1-D transform of a variant as a type, so that [`super::transforms`]'s `per_tile` calls it directly: passed
/// as a closure, the vector version went through a call shim built without AVX.
pub(super) trait Step<const I: usize, const O: usize> {
    /// The transform of `I` values into `O`.
    fn apply<T: Arith>(d: [T; I]) -> [T; O];
}

/// [`Variant::input`] as a [`Step`].
pub(super) struct InputStep<V, const M: usize, const A: usize>(PhantomData<V>);
/// [`Variant::grad`] as a [`Step`].
pub(super) struct GradStep<V, const M: usize, const A: usize>(PhantomData<V>);
/// [`Variant::output`] as a [`Step`].
pub(super) struct OutputStep<V, const M: usize, const A: usize>(PhantomData<V>);

impl<V: Variant<M, A>, const M: usize, const A: usize> Step<A, A> for InputStep<V, M, A> {
    #[inline(always)]
    fn apply<T: Arith>(d: [T; A]) -> [T; A] {
        V::input(d)
    }
}

impl<V: Variant<M, A>, const M: usize, const A: usize> Step<M, A> for GradStep<V, M, A> {
    #[inline(always)]
    fn apply<T: Arith>(d: [T; M]) -> [T; A] {
        V::grad(d)
    }
}

impl<V: Variant<M, A>, const M: usize, const A: usize> Step<A, M> for OutputStep<V, M, A> {
    #[inline(always)]
    fn apply<T: Arith>(d: [T; A]) -> [T; M] {
        V::output(d)
    }
}
