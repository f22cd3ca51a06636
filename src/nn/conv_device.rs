//! The convolution wherever the fast CPU op does not run (a GPU; the CPU in f16 or with candle's
//! kernels): candle's forward, and a backward made of one ordinary convolution and one GEMM.
//!
//! Why not candle's own backward: candle 0.11 differentiates `conv2d` with `conv_transpose2d` for
//! the input gradient, and on CUDA that is a direct kernel (one thread per input element, looping
//! over `Cout * K * K` products, no GEMM and no cuDNN) whatever the build. Its weight gradient is
//! a convolution whose kernel is the transposed output gradient; with the `cudnn` feature a
//! non-contiguous kernel sends that one to the direct kernel too. resnet_gpu trained at 1,510
//! img/s on the H200 with candle's backward (`docs/gpu-check-2026-11-26`).
//!
//! Here the input gradient is a stride-1 convolution of the output gradient (zero-dilated first
//! when the stride is 2) with the flipped, transposed weight: the same `conv2d` the forward calls,
//! so cuDNN's kernels where the build has them, im2col + cuBLAS otherwise. The weight gradient is
//! one GEMM, `dY (Cout x N*Ho*Wo)` times the column matrix of the input ([`super::im2col`]: one
//! launch on CUDA; `CFRUN_CONV_COLUMNS=taps` gathers its `K * K` taps with tensor ops instead, as
//! before). `CFRUN_CONV_BACKWARD=candle` ([`super::backward_switch`]) puts candle's backward back,
//! for an A/B on a GPU, and `CFRUN_CONV_CUDNN=planned` the whole convolution on cuDNN
//! ([`super::conv_cudnn`]; candle's backward wins when both are set).

use super::backward_switch::Backward;
use super::im2col::{self, Columns};
use super::precomputed;
use candle_core::{bail, CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

/// `conv2d(x, w)` with one stride and one padding on both axes (square kernels, no dilation, no
/// groups) and the backward of this module.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    if super::backward_switch::CONV.get() == Backward::Candle {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    if let Some(planned) = super::conv_cudnn::conv2d(x, w, stride, padding) {
        return planned;
    }
    let (_, _, k, k2) = w.dims4()?;
    if k != k2 || padding >= k || stride == 0 {
        bail!("conv2d: square kernels with padding < kernel size and stride > 0, got {k}x{k2}, padding {padding}, stride {stride}");
    }
    let y = x.detach().conv2d(&w.detach(), padding, stride, 1, 1)?;
    if !(x.track_op() || w.track_op()) {
        return Ok(y);
    }
    // The op's forward hands back `y` (one device copy); its backward is what this module is for.
    x.apply_op3(w, &y.contiguous()?, WithGemmBackward { stride, padding })
}

/// `y = conv2d(x, w)` computed beforehand, carried through with this module's gradients.
#[derive(Clone, Copy, Debug)]
struct WithGemmBackward {
    stride: usize,
    padding: usize,
}

impl CustomOp3 for WithGemmBackward {
    fn name(&self) -> &'static str {
        "cfrun-conv2d-device"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        y: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        precomputed::cpu(y, yl)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        y: &candle_core::CudaStorage,
        yl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        precomputed::cuda(y, yl)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        // The network input needs no gradient.
        let dx = if x.track_op() { Some(input_grad(&dy, w, x.dims4()?, self.stride, self.padding)?) } else { None };
        let columns = im2col::COLUMNS.forced().unwrap_or(Columns::Im2col);
        let dw = weight_grad(x, &dy, w.dim(2)?, self.stride, self.padding, columns)?;
        Ok((dx, Some(dw), None))
    }
}

/// `dX`: a stride-1 convolution of `dY` (dilated by the stride) with `W` flipped in space and
/// transposed in channels, padded `K - 1 - p` on the top and left and, on the bottom and right,
/// as much as the input's size needs (more than `K - 1 - p` when the stride skipped its last
/// rows).
fn input_grad(
    dy: &Tensor,
    w: &Tensor,
    (_, _, h, wd): (usize, usize, usize, usize),
    s: usize,
    p: usize,
) -> Result<Tensor> {
    let (cout, cin, k, _) = w.dims4()?;
    let pt = k - 1 - p;
    // Reversing both spatial axes reverses the flattened `K * K` taps: one gather, then the
    // channel transpose (two launches).
    let flipped = if k > 1 {
        w.reshape((cout, cin, k * k))?.index_select(&reversed_index(k * k, w.device())?, 2)?
    } else {
        w.clone()
    };
    let wt = flipped.reshape((cout, cin, k, k))?.transpose(0, 1)?.contiguous()?;
    let (n, c, ho, wo) = dy.dims4()?;
    let dilated = if s == 1 {
        dy.clone()
    } else {
        // (N, C, Ho, 1, Wo, 1) padded to (N, C, Ho, s, Wo, s): each value followed by s - 1 zeros.
        dy.reshape((n, c, ho, 1, wo, 1))?.pad_with_zeros(3, 0, s - 1)?.pad_with_zeros(5, 0, s - 1)?.reshape((
            n,
            c,
            ho * s,
            wo * s,
        ))?
    };
    // Before the symmetric padding `pt`, the gradient must be `h + K - 1 - 2 pt` long for the
    // stride-1 convolution to give back `h`.
    let fit = |t: Tensor, dim: usize, want: usize| -> Result<Tensor> {
        let have = t.dim(dim)?;
        if have > want {
            t.narrow(dim, 0, want)
        } else {
            t.pad_with_zeros(dim, 0, want - have)
        }
    };
    let dilated = fit(dilated, 2, h + k - 1 - 2 * pt)?;
    let dilated = fit(dilated, 3, wd + k - 1 - 2 * pt)?;
    dilated.contiguous()?.conv2d(&wt, pt, 1, 1, 1)
}

/// `dW = dY (Cout x N*Ho*Wo) * cols`, with `cols` the column matrix of `x` built as `how` says.
fn weight_grad(x: &Tensor, dy: &Tensor, k: usize, s: usize, p: usize, how: Columns) -> Result<Tensor> {
    let (_, cin, _, _) = x.dims4()?;
    let (n, cout, ho, wo) = dy.dims4()?;
    let g = dy.transpose(0, 1)?.contiguous()?.reshape((cout, n * ho * wo))?;
    match how {
        // `(N*Ho*Wo, Cin*K*K)`: the product is the weight's `(Cout, Cin, K, K)` as it stands.
        Columns::Im2col => g.matmul(&im2col::columns(x, k, s, p)?)?.reshape((cout, cin, k, k)),
        Columns::Taps => g
            .matmul(&tap_columns(x, k, s, p, (ho, wo))?.t()?)?
            .reshape((cout, k, k, cin))?
            .permute((0, 3, 1, 2))?
            .contiguous(),
    }
}

/// The column matrix `(K*K*Cin, N*Ho*Wo)` gathered with tensor ops: for each tap `(a, b)` and input
/// channel, the padded input at rows `a + s*i` and columns `b + s*j`. The taps come first (a copy
/// per tap writes a contiguous block), so a GEMM with it gives `(Cout, K, K, Cin)`.
fn tap_columns(x: &Tensor, k: usize, s: usize, p: usize, (ho, wo): (usize, usize)) -> Result<Tensor> {
    let (n, cin, h, wd) = x.dims4()?;
    // Padded to a multiple of the stride, so the padded input splits into s x s phase planes by a
    // reshape; the extra rows and columns are never read.
    let (hp, wp) = ((h + 2 * p).div_ceil(s) * s, (wd + 2 * p).div_ceil(s) * s);
    let xp = x.detach().transpose(0, 1)?.contiguous()?.pad_with_zeros(2, p, hp - h - p)?.pad_with_zeros(
        3,
        p,
        wp - wd - p,
    )?;
    let phases = xp.reshape((cin, n, hp / s, s, wp / s, s))?;
    let mut taps = Vec::with_capacity(k * k);
    for a in 0..k {
        for b in 0..k {
            // Rows a, a + s, ...: phase a % s, starting at plane row a / s.
            let t = phases.narrow(3, a % s, 1)?.narrow(5, b % s, 1)?.narrow(2, a / s, ho)?.narrow(4, b / s, wo)?;
            taps.push(t.reshape((cin, n, ho, 1, wo))?.squeeze(3)?);
        }
    }
    Tensor::cat(&taps, 0)?.reshape((k * k * cin, n * ho * wo))
}

/// Devices times kernel sizes the reversed-index cache keeps: the devices of a `--jobs 8` run
/// (the executor hands devices from job to job, so it opens no more) with a few kernel sizes each.
/// The bound holds whoever opens devices: an entry keeps its device (a stream, a cuBLAS handle and
/// its workspace) alive, so an unbounded cache would keep every device ever used to the end.
const REVERSED_INDEX_CACHE: usize = 32;

/// `[n - 1, ..., 0]` as u32 on `device` (`n = K * K`), uploaded once per device and size (an upload per layer
/// and step would be a host-to-device copy inside the training loop).
fn reversed_index(n: usize, device: &Device) -> Result<Tensor> {
    static CACHE: Mutex<Vec<(Device, usize, Tensor)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().expect("reversed-index cache poisoned");
    if let Some((_, _, t)) = cache.iter().find(|(d, kk, _)| *kk == n && d.same_device(device)) {
        return Ok(t.clone());
    }
    let t = Tensor::from_vec((0..n as u32).rev().collect::<Vec<_>>(), n, device)?;
    // `Device::new_cuda` issues on the calling thread's per-thread default stream, so one device
    // serves different streams from different threads, and a later job on another thread reads
    // this tensor without an event: the upload must be finished before it is handed out.
    device.synchronize()?;
    if cache.len() == REVERSED_INDEX_CACHE {
        cache.remove(0);
    }
    cache.push((device.clone(), n, t.clone()));
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::tests::{rand_tensor, GEOMETRIES};
    use candle_core::{DType, Var};

    fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d: f32 = (a - b).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        let r: f32 = a.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        (d / r.max(1e-30)).sqrt()
    }

    /// Gradients of `sum(conv(x, w) * up)` through candle's backward and through this module's.
    fn both(x: &Tensor, w: &Tensor, up: &Tensor, s: usize, p: usize) -> [(Tensor, Tensor, Tensor); 2] {
        [Backward::Candle, Backward::Cfrun].map(|b| grads(x, w, up, s, p, b).unwrap())
    }

    fn grads(x: &Tensor, w: &Tensor, up: &Tensor, s: usize, p: usize, b: Backward) -> Result<(Tensor, Tensor, Tensor)> {
        let (xv, wv) = (Var::from_tensor(x)?, Var::from_tensor(w)?);
        let y = match b {
            Backward::Candle => xv.as_tensor().conv2d(wv.as_tensor(), p, s, 1, 1)?,
            Backward::Cfrun => conv2d(xv.as_tensor(), wv.as_tensor(), s, p)?,
        };
        let grads = (&y * up)?.sum_all()?.backward()?;
        Ok((y, grads.get(xv.as_tensor()).unwrap().clone(), grads.get(wv.as_tensor()).unwrap().clone()))
    }

    /// `dX` and `dW` of `sum(conv(x, w) * up)` from the definition, in f64.
    fn by_definition(x: &Tensor, w: &Tensor, up: &Tensor, s: usize, p: usize) -> (Tensor, Tensor) {
        let ((_, cin, h, wd), (cout, _, k, _), (_, _, ho, wo)) =
            (x.dims4().unwrap(), w.dims4().unwrap(), up.dims4().unwrap());
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (xs, ws, us) = (flat(x), flat(w), flat(up));
        let (mut dx, mut dw) = (vec![0f64; xs.len()], vec![0f64; ws.len()]);
        for (o, &u) in us.iter().enumerate() {
            let (j, i, co, b) = (o % wo, o / wo % ho, o / (wo * ho) % cout, o / (wo * ho * cout));
            let u = u as f64;
            for t in 0..cin * k * k {
                let (c, a, ci) = (t % k, t / k % k, t / (k * k));
                let (r, q) = ((i * s + a) as isize - p as isize, (j * s + c) as isize - p as isize);
                if r < 0 || q < 0 || r >= h as isize || q >= wd as isize {
                    continue;
                }
                let xi = ((b * cin + ci) * h + r as usize) * wd + q as usize;
                let wi = ((co * cin + ci) * k + a) * k + c;
                dx[xi] += u * ws[wi] as f64;
                dw[wi] += u * xs[xi] as f64;
            }
        }
        let back = |v: Vec<f64>, t: &Tensor| {
            Tensor::from_vec(v.into_iter().map(|v| v as f32).collect::<Vec<_>>(), t.shape(), &Device::Cpu).unwrap()
        };
        (back(dx, x), back(dw, w))
    }

    /// Same forward bits as candle, and the gradients of the definition to float rounding, over
    /// the geometries the networks use (3x3 and 1x1, stride 1 and 2, odd and even sizes, a map
    /// smaller than the kernel) and some they do not (5x5, unpadded, non-square maps); and the
    /// gradients of candle's backward where it gives any (it takes the width's output padding
    /// from the height, and fails where the two differ).
    #[test]
    fn gradients_match_the_definition_and_candles_backward() {
        // Beyond the shared ones: a 1x1 stride-2 shortcut on an even map, a strided 5x5.
        let extra = [(2, 4, 8, 8, 3, 1, 2, 0), (2, 3, 10, 9, 2, 5, 2, 2)];
        let cases: Vec<_> = GEOMETRIES.iter().chain(&extra).collect();
        for (i, &&(n, cin, h, w, cout, k, s, p)) in cases.iter().enumerate() {
            let x = rand_tensor(&[n, cin, h, w], 3 * i as u64);
            let wt = rand_tensor(&[cout, cin, k, k], 3 * i as u64 + 1);
            let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let up = rand_tensor(&[n, cout, ho, wo], 3 * i as u64 + 2);
            let (y, dx, dw) = grads(&x, &wt, &up, s, p, Backward::Cfrun).unwrap();
            let reference = x.conv2d(&wt, p, s, 1, 1).unwrap();
            assert_eq!(rel_diff(&reference, &y), 0.0, "case {i}: forward differs");
            let (dx0, dw0) = by_definition(&x, &wt, &up, s, p);
            assert!(rel_diff(&dx0, &dx) < 1e-6, "case {i}: dx {}", rel_diff(&dx0, &dx));
            assert!(rel_diff(&dw0, &dw) < 1e-6, "case {i}: dw {}", rel_diff(&dw0, &dw));
            // The column matrix gathered tap by tap (the GPU bench's A/B) gives the same gradient.
            let taps = weight_grad(&x, &up, k, s, p, Columns::Taps).unwrap();
            assert!(rel_diff(&dw0, &taps) < 1e-6, "case {i}: dw by taps {}", rel_diff(&dw0, &taps));
            // candle 0.11.1's own backward fails where only one axis has a stride remainder.
            if (h + 2 * p - k) % s == (w + 2 * p - k) % s {
                let (_, dx1, dw1) = grads(&x, &wt, &up, s, p, Backward::Candle).unwrap();
                assert!(rel_diff(&dx1, &dx) < 1e-5 && rel_diff(&dw1, &dw) < 1e-5, "case {i}: candle disagrees");
            }
        }
    }

    /// Half precision takes the same path (the mixed-precision training on a GPU).
    #[test]
    fn half_precision_gradients_track_f32() {
        let (x, w) = (rand_tensor(&[4, 3, 8, 8], 1), rand_tensor(&[5, 3, 3, 3], 2));
        let up = rand_tensor(&[4, 5, 4, 4], 3);
        let [_, (_, dx, dw)] = both(&x, &w, &up, 2, 1);
        let half = |t: &Tensor| t.to_dtype(DType::F16).unwrap();
        let [_, (_, dxh, dwh)] = both(&half(&x), &half(&w), &half(&up), 2, 1);
        let back = |t: Tensor| t.to_dtype(DType::F32).unwrap();
        assert!(rel_diff(&dx, &back(dxh)) < 5e-3);
        assert!(rel_diff(&dw, &back(dwh)) < 5e-3);
    }

    /// Without a gradient to track, the forward is candle's tensor itself (no op, no copy).
    #[test]
    fn inference_returns_candles_output() {
        let (x, w) = (rand_tensor(&[2, 3, 6, 6], 4), rand_tensor(&[4, 3, 3, 3], 5));
        let y = conv2d(&x, &w, 1, 1).unwrap();
        assert!(!y.track_op());
        let r = x.conv2d(&w, 1, 1, 1, 1).unwrap();
        assert_eq!(rel_diff(&r, &y), 0.0);
    }
}
