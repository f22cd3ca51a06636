//! Fully connected layers whose CPU bits do not depend on the machine.
//!
//! candle's CPU matmul hands the whole depth k to `gemm`, which cuts it into blocks sized from
//! the L1 cache it finds (see [`crate::linalg::matmul`]), so a product deeper than 512 sums in
//! one order on an Intel Xeon and in another on an AMD EPYC. The convolutions and the probes
//! already went through [`crate::linalg::matmul`], which cuts k the same way everywhere; the
//! heads did not. A Jigsaw head reads 9 x 128 features and its input gradient runs over 1,000
//! permutations, so on 2026-12-07 the committed Jigsaw studies, made on a Xeon, trained other
//! networks on a Zen 4 (pretext top-1 93.47 against 93.75 in the first replicate). Here every
//! product of a head, forward and backward, goes through [`crate::linalg::matmul`] on the CPU.
//! Up to 512 deep that is one `gemm` call as candle makes it, so the same bits as before.

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Tensor};
use candle_nn::{Linear, Module};
use gemm::Parallelism;

use crate::linalg::{matmul, MatRef};

/// `layer` applied to `x`: `x · weightᵀ + bias`, as candle's `Linear` computes it, with the
/// product through [`product`] for a batch of rows (`(N, in)`); any other shape is candle's.
pub fn linear(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    if x.rank() != 2 {
        return layer.forward(x);
    }
    let y = product(x, &layer.weight().t()?)?;
    match layer.bias() {
        Some(bias) => y.broadcast_add(bias),
        None => Ok(y),
    }
}

/// `a · b` for two matrices: on the CPU in f32 through [`crate::linalg::matmul`] (its backward
/// too), elsewhere candle's matmul.
pub fn product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let on_cpu = matches!(a.device(), Device::Cpu) && matches!(b.device(), Device::Cpu);
    if on_cpu && a.rank() == 2 && b.rank() == 2 && a.dtype() == DType::F32 && b.dtype() == DType::F32 {
        a.apply_op2(b, Product)
    } else {
        a.matmul(b)
    }
}

/// The matrix product as a candle op on the CPU, with the gradients candle's matmul gives:
/// `g · bᵀ` and `aᵀ · g`, through [`product`] again.
struct Product;

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "cfrun-product"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (view(s1, l1)?, view(s2, l2)?);
        let ((m, k), (k2, n)) = (l1.shape().dims2()?, l2.shape().dims2()?);
        if k != k2 {
            candle_core::bail!("product: inner dimensions differ ({m}x{k} and {k2}x{n})");
        }
        let mut dst = vec![0f32; m * n];
        let threads = rayon::current_num_threads();
        // As candle's matmul calls gemm: the split among threads never changes a sum's order.
        let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
        matmul(&mut dst, a, b, 1.0, false, par);
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(product(g, &b.t()?)?), Some(product(&a.t()?, g)?)))
    }
}

/// The matrix `layout` selects in `storage`, strides as they are (a transposed view stays one).
fn view<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<MatRef<'a>> {
    let data = storage.as_slice::<f32>()?;
    let (rows, cols) = layout.shape().dims2()?;
    let stride = layout.stride();
    let data = data.get(layout.start_offset()..).unwrap_or(&[]);
    let view = MatRef::strided(data, rows, cols, stride[0], stride[1]);
    if !view.in_bounds() {
        candle_core::bail!("product: a {rows}x{cols} view with strides {stride:?} reaches outside its storage");
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{bits_digest, wave};
    use candle_core::Var;

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
    }

    /// A head's forward pass and both gradients, through `linear` or through candle's `Linear`.
    fn head_pass(n: usize, d: usize, classes: usize, ours: bool) -> [Vec<u32>; 4] {
        let dev = Device::Cpu;
        let x = Var::from_vec(wave(n * d, 0.0131, f32::sin), (n, d), &dev).unwrap();
        let w = Var::from_vec(wave(classes * d, 0.0077, f32::cos), (classes, d), &dev).unwrap();
        let b = Var::from_vec(wave(classes, 0.3, f32::sin), classes, &dev).unwrap();
        let layer = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let y = if ours { linear(&layer, x.as_tensor()) } else { layer.forward(x.as_tensor()) }.unwrap();
        // A loss whose gradient differs per element, so every product's bits are seen.
        let weights = Tensor::from_vec(wave(n * classes, 0.017, f32::cos), (n, classes), &dev).unwrap();
        let grads = (&y * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let grad = |v: &Var| bits(grads.get(v.as_tensor()).unwrap());
        [bits(&y), grad(&x), grad(&w), grad(&b)]
    }

    /// Up to 512 deep a head computes candle's bits, forward and backward, so no result made
    /// with candle's `Linear` moves: a ResNet's classifier and a RotNet head.
    #[test]
    fn shallow_heads_keep_candles_bits() {
        for (n, d, classes) in [(128, 128, 10), (64, 512, 250), (37, 64, 4), (3, 8, 500)] {
            assert_eq!(head_pass(n, d, classes, true), head_pass(n, d, classes, false), "{n}x{d} -> {classes}");
        }
    }

    /// A Jigsaw head's products (9 x 128 deep forward, 1,000 deep for the input gradient) are
    /// the blocked products of `linalg::matmul`, pinned by their digest: candle's matmul gives
    /// other bits on a 48 KiB 12-way L1 (Intel Xeon) than on a 32 KiB 8-way one (AMD EPYC), so
    /// on one of them this fails if the layer goes back to it. (The constant moves with gemm's
    /// version, like `linalg`'s own pinned product.)
    #[test]
    fn deep_head_bits_do_not_depend_on_the_cache() {
        let digest = bits_digest(head_pass(48, 9 * 128, 1000, true).into_iter().flatten());
        assert_eq!(digest, GOLDEN, "{digest:#x}");
        // A last batch of two rows: the input gradient is (2 x 1000) times the weight (1000 x
        // 128, row stride 128), a strided side that gemm blocks by the machine however few
        // the outputs (found by a review; `linalg::matmul` cuts it since).
        let digest = bits_digest(head_pass(2, 128, 1000, true).into_iter().flatten());
        assert_eq!(digest, GOLDEN_TWO_ROWS, "{digest:#x}");
    }
    const GOLDEN: u64 = 0x7e2e_b064_dbae_1882;
    const GOLDEN_TWO_ROWS: u64 = 0x04d9_7d3c_adf7_84f6;

    /// The product is the product: against f64 sums, through transposed views.
    #[test]
    fn product_matches_the_definition() {
        let dev = Device::Cpu;
        let (m, k, n) = (7, 600, 5);
        let a = Tensor::from_vec(wave(m * k, 0.013, f32::sin), (m, k), &dev).unwrap();
        let bt = Tensor::from_vec(wave(n * k, 0.007, f32::cos), (n, k), &dev).unwrap();
        let y = product(&a, &bt.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        let (av, bv) = (a.to_vec2::<f32>().unwrap(), bt.to_vec2::<f32>().unwrap());
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|p| f64::from(av[i][p]) * f64::from(bv[j][p])).sum();
                assert!((f64::from(y[i][j]) - want).abs() < 1e-3, "({i}, {j}): {} vs {want}", y[i][j]);
            }
        }
    }
}
