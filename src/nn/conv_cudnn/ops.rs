//! The planned convolution as candle custom ops: the forward carries a backward of two more ops,
//! the input gradient and the weight gradient, each one call of [`super::plans`].

use super::plans::{self, ConvType};
use crate::nn::conv::Geom;
use candle_core::cuda_backend::cudarc::driver::CudaSlice;
use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice as S};
use candle_core::{bail, CpuStorage, CudaStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// `conv2d(x, w)` with one stride and one padding on both axes, square kernels.
pub(super) fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, _, k, k2) = w.dims4()?;
    if k != k2 || stride == 0 {
        bail!("conv2d: square kernels and stride > 0, got {k}x{k2}, stride {stride}");
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Forward { stride, padding })
}

/// Both arguments' slices from their layouts' starts, which must be contiguous, in one type.
fn pair<'a, T: ConvType>(
    a: &'a CudaSlice<T>,
    al: &Layout,
    b: &'a CudaSlice<T>,
    bl: &Layout,
) -> Result<(
    candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>,
    candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>,
)> {
    if !al.is_contiguous() || !bl.is_contiguous() {
        bail!("cuDNN convolution: arguments must be contiguous");
    }
    Ok((a.slice(al.start_offset()..), b.slice(bl.start_offset()..)))
}

/// Runs `f` in the arguments' common data type, one of those cuDNN convolves in.
macro_rules! in_type {
    ($a:expr, $al:expr, $b:expr, $bl:expr, |$dev:ident, $x:ident, $y:ident| $call:expr) => {{
        let $dev: &CudaDevice = &$a.device;
        let slice = match (&$a.slice, &$b.slice) {
            (S::F32(a), S::F32(b)) => {
                let ($x, $y) = pair::<f32>(a, $al, b, $bl)?;
                S::F32($call)
            }
            (S::BF16(a), S::BF16(b)) => {
                let ($x, $y) = pair::<half::bf16>(a, $al, b, $bl)?;
                S::BF16($call)
            }
            (S::F16(a), S::F16(b)) => {
                let ($x, $y) = pair::<half::f16>(a, $al, b, $bl)?;
                S::F16($call)
            }
            _ => bail!("cuDNN convolution: f32, bf16 or f16 arguments of one type"),
        };
        CudaStorage { slice, device: $dev.clone() }
    }};
}

fn cpu_refused(name: &str) -> Result<(CpuStorage, Shape)> {
    bail!("{name}: runs on CUDA devices only (the CPU has its own convolution)")
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
        let y = in_type!(xs, xl, ws, wl, |dev, x, w| plans::forward(dev, g, &x, &w)?);
        Ok((y, Shape::from((g.n, g.cout, ho, wo))))
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
        let dx = in_type!(dys, dyl, ws, wl, |dev, dy, w| plans::input_grad(dev, g, &dy, &w)?);
        Ok((dx, Shape::from((g.n, g.cin, g.h, g.w))))
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
        let dw = in_type!(xs, xl, dys, dyl, |dev, x, dy| plans::weight_grad(dev, g, &x, &dy)?);
        Ok((dw, Shape::from((g.cout, g.cin, g.k, g.k))))
    }
}
