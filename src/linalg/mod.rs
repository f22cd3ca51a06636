//! Dense linear algebra on f32 slices: matrix products through `gemm`, and reductions whose
//! order depends only on the lengths, so their bits never depend on threads or alignment.

mod matmul;
mod reduce;

pub(crate) use matmul::{matmul, MatRef};
pub(crate) use reduce::{dot, lane_sum};
