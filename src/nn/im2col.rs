//! The column matrix of a convolution's input (im2col) as one op: row `(b, i, j)` for each output
//! position, column `(c, a, q)` for each input channel and kernel tap, holding the input at row
//! `i*s + a - p` and column `j*s + q - p` (zero in the padding). Square kernels, no dilation.
//!
//! Why: the weight gradient of [`super::conv_device`] is `dY^T * cols`. Gathered with tensor ops,
//! the column matrix (the transposed input copied, padded in two concatenations, each of the
//! `K * K` taps copied twice, by a reshape and by the final concatenation) and the permute its
//! layout needed after the GEMM made 30 of a 3x3 convolution's 32 weight-gradient ops, counted
//! from candle's code. On CUDA this op is one launch of candle's own `im2col` kernel, the one its
//! non-cuDNN forward uses; its layout also puts the GEMM's result straight into the weight's
//! `(Cout, Cin, K, K)` order. The CPU side exists for candle's CPU kernels and for the check
//! that compares the two.

use super::env_flag::Choice;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// How the weight gradient's column matrix is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Columns {
    /// This module's op: one launch on CUDA.
    Im2col,
    /// The `K * K` taps gathered with tensor ops (the earlier way), for the GPU bench's A/B.
    Taps,
}

/// The switch: `CFRUN_CONV_COLUMNS`; the same arithmetic either way up to the GEMM's order of
/// summation, so it is not part of any recipe key.
pub static COLUMNS: Choice<Columns> =
    Choice::new("CFRUN_CONV_COLUMNS", &[("im2col", Columns::Im2col), ("taps", Columns::Taps)]);

/// The column matrix of `x` `(N, Cin, H, W)` for a `k x k` kernel at stride `s` and padding
/// `p`: `(N * Ho * Wo, Cin * k * k)`, detached from the graph.
pub fn columns(x: &Tensor, k: usize, s: usize, p: usize) -> Result<Tensor> {
    x.apply_op1_no_bwd(&Im2col::new(x.dims(), k, s, p)?)
}

/// One convolution's geometry, checked.
#[derive(Clone, Copy, Debug)]
struct Im2col {
    k: usize,
    s: usize,
    p: usize,
    ho: usize,
    wo: usize,
}

impl Im2col {
    fn new(dims: &[usize], k: usize, s: usize, p: usize) -> Result<Self> {
        let &[_, _, h, w] = dims else { bail!("im2col: expected (N, C, H, W), got {dims:?}") };
        if k == 0 || s == 0 || h + 2 * p < k || w + 2 * p < k {
            bail!("im2col: a {k}x{k} kernel at stride {s} and padding {p} does not fit a {h}x{w} map");
        }
        Ok(Im2col { k, s, p, ho: (h + 2 * p - k) / s + 1, wo: (w + 2 * p - k) / s + 1 })
    }

    fn out_shape(&self, dims: &[usize]) -> Shape {
        Shape::from((dims[0] * self.ho * self.wo, dims[1] * self.k * self.k))
    }

    /// The CPU kernel: the rows of one output line `(b, i)` per task, each a fixed sequence of
    /// reads, one bounds test per kernel row and per tap.
    fn cpu<T: WithDType>(&self, src: &[T], l: &Layout) -> Vec<T> {
        let (dims, st, off) = (l.dims(), l.stride(), l.start_offset());
        let (c, h, w) = (dims[1], dims[2], dims[3]);
        let (k, s, p, ho, wo) = (self.k, self.s, self.p, self.ho, self.wo);
        let mut out = vec![T::zero(); dims[0] * ho * wo * c * k * k];
        out.par_chunks_mut(wo * c * k * k).enumerate().for_each(|(line, rows)| {
            let (b, i) = (line / ho, line % ho);
            for (j, row) in rows.chunks_exact_mut(c * k * k).enumerate() {
                for (ch, plane) in row.chunks_exact_mut(k * k).enumerate() {
                    for (a, taps) in plane.chunks_exact_mut(k).enumerate() {
                        // Rows and columns above or left of the map wrap to huge values: padding.
                        let r = (i * s + a).wrapping_sub(p);
                        if r >= h {
                            continue;
                        }
                        let base = off + b * st[0] + ch * st[1] + r * st[2];
                        for (q, v) in taps.iter_mut().enumerate() {
                            let col = (j * s + q).wrapping_sub(p);
                            if col < w {
                                *v = src[base + col * st[3]];
                            }
                        }
                    }
                }
            }
        });
        out
    }
}

impl CustomOp1 for Im2col {
    fn name(&self) -> &'static str {
        "cfrun-im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(self.cpu(v, l)),
            CpuStorage::F64(v) => CpuStorage::F64(self.cpu(v, l)),
            CpuStorage::F16(v) => CpuStorage::F16(self.cpu(v, l)),
            CpuStorage::BF16(v) => CpuStorage::BF16(self.cpu(v, l)),
            other => bail!("im2col: unsupported dtype {:?}", candle_core::backend::BackendStorage::dtype(other)),
        };
        Ok((out, self.out_shape(l.dims())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, storage: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::cuda_backend::Map1;
        let slice = Launch(*self).map(&storage.slice, &storage.device, l)?;
        Ok((candle_core::CudaStorage { slice, device: storage.device.clone() }, self.out_shape(l.dims())))
    }
}

/// candle's `im2col_<dtype>` kernel launched on one geometry.
#[cfg(feature = "cuda")]
struct Launch(Im2col);

#[cfg(feature = "cuda")]
impl candle_core::cuda_backend::Map1 for Launch {
    fn f<T: candle_core::cuda_backend::cudarc::driver::DeviceRepr + WithDType>(
        &self,
        src: &candle_core::cuda_backend::cudarc::driver::CudaSlice<T>,
        dev: &candle_core::cuda_backend::CudaDevice,
        l: &Layout,
    ) -> Result<candle_core::cuda_backend::cudarc::driver::CudaSlice<T>> {
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::{kernel_name, kernels, SlicePtrOrNull, WrapErr};
        let g = self.0;
        let dims = l.dims();
        let numel = dims[0] * g.ho * g.wo * dims[1] * g.k * g.k;
        let Ok(threads) = u32::try_from(numel) else { bail!("im2col: {numel} values are more than one launch covers") };
        // The kernel reads the input through these dims and strides, so any layout will do.
        let info = SlicePtrOrNull::params_from_vec(dev, [dims, l.stride()].concat())?;
        let src = src.slice(l.start_offset()..);
        let func = dev.get_or_load_func(&kernel_name::<T>("im2col"), &kernels::CONV)?;
        // SAFETY: every value is written by the kernel below.
        let dst = unsafe { dev.alloc::<T>(numel)? };
        let (dilation, mut b) = (1usize, func.builder());
        b.arg(&numel).arg(&g.ho).arg(&g.wo).arg(&g.k).arg(&g.k).arg(&g.s).arg(&g.p).arg(&dilation);
        info.builder_arg(&mut b);
        b.arg(&src).arg(&dst);
        // SAFETY: the arguments are the kernel's, in its order (candle-kernels' conv.cu).
        unsafe { b.launch(LaunchConfig::for_num_elems(threads)) }.w()?;
        Ok(dst)
    }
}

/// The values of the device's column matrices that differ bit for bit from the CPU's, and of
/// how many, over the convolutions resnet_gpu runs (3x3 and 1x1, stride 1 and 2, odd and even
/// maps), a map smaller than the kernel, and inputs that are transposed or offset views; in f32
/// and bf16. A pure gather, so any difference is a wrong index.
pub fn columns_differing(device: &candle_core::Device) -> std::result::Result<(usize, usize), super::NnError> {
    let (mut differing, mut total) = (0, 0);
    let cases = [(3, 5, 28, 28, 3, 1, 1), (2, 4, 15, 14, 3, 2, 1), (2, 6, 8, 8, 1, 2, 0), (1, 3, 2, 3, 3, 1, 1)];
    for (i, &(n, c, h, w, k, s, p)) in cases.iter().enumerate() {
        let t = Tensor::arange(0f32, (n * c * h * w * 2) as f32, &candle_core::Device::Cpu)?;
        let t = ((t * 0.61)? + i as f64)?.sin()?;
        let views = [
            t.narrow(0, 1, n * c * h * w)?.reshape((n, c, h, w))?,
            t.narrow(0, 0, n * c * h * w)?.reshape((c, n, h, w))?.transpose(0, 1)?,
        ];
        for x in views {
            for dtype in [candle_core::DType::F32, candle_core::DType::BF16] {
                let x = x.to_dtype(dtype)?;
                let want = columns(&x, k, s, p)?.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
                let on_device = x.to_device(device)?;
                let got = columns(&on_device, k, s, p)?.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
                total += want.len();
                differing += super::bits::differing_bits(&got, &want);
            }
        }
    }
    Ok((differing, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// The column matrix by its definition, in f64.
    fn by_definition(x: &Tensor, k: usize, s: usize, p: usize) -> Vec<f64> {
        let (n, c, h, w) = x.dims4().unwrap();
        let xs = x.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let mut out = Vec::new();
        for b in 0..n {
            for i in 0..ho {
                for j in 0..wo {
                    for ch in 0..c {
                        for a in 0..k {
                            for q in 0..k {
                                let (r, col) = ((i * s + a) as isize - p as isize, (j * s + q) as isize - p as isize);
                                let inside = r >= 0 && col >= 0 && r < h as isize && col < w as isize;
                                out.push(if inside {
                                    xs[((b * c + ch) * h + r as usize) * w + col as usize]
                                } else {
                                    0.0
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn columns_match_the_definition_for_any_layout_and_dtype() {
        let cases = [
            (2, 3, 7, 6, 3, 1, 1),
            (2, 2, 9, 8, 3, 2, 1),
            (1, 4, 8, 8, 1, 2, 0),
            (2, 2, 10, 9, 5, 2, 2),
            (1, 2, 2, 2, 3, 1, 1),
        ];
        for (i, &(n, c, h, w, k, s, p)) in cases.iter().enumerate() {
            let t = Tensor::arange(0f32, (2 * n * c * h * w) as f32, &Device::Cpu).unwrap();
            let t = ((t * 0.37).unwrap() + i as f64).unwrap().sin().unwrap();
            let plain = t.narrow(0, 0, n * c * h * w).unwrap().reshape((n, c, h, w)).unwrap();
            let offset = t.narrow(0, 3, n * c * h * w).unwrap().reshape((n, c, h, w)).unwrap();
            let transposed =
                t.narrow(0, 0, n * c * h * w).unwrap().reshape((c, n, h, w)).unwrap().transpose(0, 1).unwrap();
            for x in [plain, offset, transposed] {
                for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
                    let x = x.to_dtype(dtype).unwrap();
                    let got = columns(&x, k, s, p).unwrap();
                    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
                    assert_eq!(got.dims(), &[n * ho * wo, c * k * k], "case {i}");
                    // Against the values this dtype holds, exactly: a gather must not round.
                    let got = got.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
                    assert_eq!(got, by_definition(&x, k, s, p), "case {i}, {dtype:?}");
                }
            }
        }
    }

    #[test]
    fn a_kernel_larger_than_the_padded_map_is_an_error() {
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(columns(&x, 5, 1, 1).is_err());
        assert!(columns(&x, 3, 0, 1).is_err());
        assert!(columns(&x.flatten_all().unwrap(), 1, 1, 0).is_err());
    }
}
