//! The planned convolution as candle custom ops: the forward carries a backward of two more ops,
//! the input gradient and the weight gradient, each one call of [`super::plans`].

use super::plans::{self, ConvType};
use crate::nn::conv::Geom;
use crate::nn::cuda_views::{cpu_refused, view};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// `conv2d(x, w)` with one stride and one padding on both axes, square kernels (the geometry is
/// checked where the op runs, [`Geom::new`]).
pub(super) fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Forward { stride, padding })
}

/// Which of the three products a call is.
#[derive(Clone, Copy)]
enum Product {
    /// `y` from `(x, w)`.
    Forward,
    /// `dx` from `(dy, w)`.
    InputGrad,
    /// `dw` from `(x, dy)`.
    WeightGrad,
}

/// `product` of `g` on the arguments `a` and `b` in their data type, one that cuDNN convolves in.
fn run(
    product: Product,
    g: Geom,
    (a, al): (&CudaStorage, &Layout),
    (b, bl): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    match a.dtype() {
        DType::F32 => typed::<f32>(product, g, (a, al), (b, bl)),
        DType::BF16 => typed::<half::bf16>(product, g, (a, al), (b, bl)),
        DType::F16 => typed::<half::f16>(product, g, (a, al), (b, bl)),
        other => bail!("cuDNN convolution: arguments of {other:?}; it takes f32, bf16 or f16"),
    }
}

fn typed<T: ConvType>(
    product: Product,
    g: Geom,
    (a, al): (&CudaStorage, &Layout),
    (b, bl): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    const OP: &str = "cuDNN convolution";
    let (a_values, b_values) = (view::<T>(a, al, OP)?, view::<T>(b, bl, OP)?);
    // cuDNN reads by the plan's descriptors: arguments of other sizes would be read out of bounds.
    let (x, y, w) = (g.n * g.in_img(), g.n * g.out_img(), g.cout * g.kdim());
    let expected = match product {
        Product::Forward => (x, w),
        Product::InputGrad => (y, w),
        Product::WeightGrad => (x, y),
    };
    if (a_values.len(), b_values.len()) != expected {
        bail!("{OP}: arguments of {} and {} values where {g:?} takes {expected:?}", a_values.len(), b_values.len());
    }
    let dev = &a.device;
    let out = match product {
        Product::Forward => plans::forward(dev, g, &a_values, &b_values)?,
        Product::InputGrad => plans::input_grad(dev, g, &a_values, &b_values)?,
        Product::WeightGrad => plans::weight_grad(dev, g, &a_values, &b_values)?,
    };
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// `y = conv(x, w)` with cuDNN's gradients.
#[derive(Clone, Copy, Debug)]
struct Forward {
    stride: usize,
    padding: usize,
}

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "cfrun-conv2d-cudnn"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_refused(self.name())
    }

    fn cuda_fwd(&self, xs: &CudaStorage, xl: &Layout, ws: &CudaStorage, wl: &Layout) -> Result<(CudaStorage, Shape)> {
        let g = Geom::new(xl.dims(), wl.dims(), self.stride, self.padding)?;
        let (ho, wo) = (g.ho, g.wo);
        Ok((run(Product::Forward, g, (xs, xl), (ws, wl))?, Shape::from((g.n, g.cout, ho, wo))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let g = Geom::new(x.dims(), w.dims(), self.stride, self.padding)?;
        // The network input needs no gradient.
        let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(&w.contiguous()?, &InputGrad(g))?) } else { None };
        let dw = x.contiguous()?.apply_op2_no_bwd(&dy, &WeightGrad(g))?;
        Ok((dx, Some(dw)))
    }
}

/// `dX` from `(dY, W)`; the geometry carries the input's size, which a strided `dY` cannot tell.
struct InputGrad(Geom);

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "cfrun-conv2d-cudnn-input-grad"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_refused(self.name())
    }

    fn cuda_fwd(&self, dys: &CudaStorage, dyl: &Layout, ws: &CudaStorage, wl: &Layout) -> Result<(CudaStorage, Shape)> {
        let g = self.0;
        Ok((run(Product::InputGrad, g, (dys, dyl), (ws, wl))?, Shape::from((g.n, g.cin, g.h, g.w))))
    }
}

/// `dW` from `(X, dY)`.
struct WeightGrad(Geom);

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "cfrun-conv2d-cudnn-weight-grad"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_refused(self.name())
    }

    fn cuda_fwd(&self, xs: &CudaStorage, xl: &Layout, dys: &CudaStorage, dyl: &Layout) -> Result<(CudaStorage, Shape)> {
        let g = self.0;
        Ok((run(Product::WeightGrad, g, (xs, xl), (dys, dyl))?, Shape::from((g.cout, g.cin, g.k, g.k))))
    }
}
