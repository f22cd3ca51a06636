//! Eight f32 lanes as one value ([`L8`]), so that arithmetic written once over [`Arith`] runs on
//! one float or on eight channels at a time: the Winograd transforms apply the same few adds
//! and scalings to every channel of a tile, and, written per float over arrays, the compiler
//! left most of them scalar.
//!
//! Every lane goes through the same IEEE operations in the same order as the scalar code, so
//! the results are the same bits either way.

use std::array::from_fn;
use std::ops::{Add, Mul, Neg, Sub};

/// What the transforms need of a number: zero, sums, differences, negation and scaling by a
/// constant.
pub(crate) trait Arith:
    Copy + Default + Add<Output = Self> + Sub<Output = Self> + Neg<Output = Self> + Mul<f32, Output = Self>
{
}

impl<T> Arith for T where T: Copy + Default + Add<Output = T> + Sub<Output = T> + Neg<Output = T> + Mul<f32, Output = T> {}

/// Eight f32 lanes; in a function compiled for AVX, each operation is one vector instruction.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct L8(pub(crate) [f32; 8]);

impl L8 {
    /// The eight floats from `p`.
    ///
    /// # Safety
    /// `p..p + 8` must be readable.
    #[inline(always)]
    pub(crate) unsafe fn read(p: *const f32) -> Self {
        // SAFETY: the caller's contract; no alignment is assumed.
        L8(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
    }
    /// Writes the lanes to the eight floats from `p`.
    ///
    /// # Safety
    /// `p..p + 8` must be writable.
    #[inline(always)]
    pub(crate) unsafe fn write(self, p: *mut f32) {
        // SAFETY: the caller's contract; no alignment is assumed.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0) }
    }
}

impl Add for L8 {
    type Output = L8;
    #[inline(always)]
    fn add(self, o: L8) -> L8 {
        L8(from_fn(|l| self.0[l] + o.0[l]))
    }
}

impl Sub for L8 {
    type Output = L8;
    #[inline(always)]
    fn sub(self, o: L8) -> L8 {
        L8(from_fn(|l| self.0[l] - o.0[l]))
    }
}

impl Neg for L8 {
    type Output = L8;
    #[inline(always)]
    fn neg(self) -> L8 {
        L8(from_fn(|l| -self.0[l]))
    }
}

impl Mul<f32> for L8 {
    type Output = L8;
    #[inline(always)]
    fn mul(self, s: f32) -> L8 {
        L8(from_fn(|l| self.0[l] * s))
    }
}
