//! The data movement of a temporal convolution as one CPU op: frames shifted by
//! `-kt/2..=kt/2` (zero padded) and stacked along channels,
//! `y[b, t, dt*C + c, p] = x[b, t + dt - kt/2, c, p]`, for `x` of shape `(B, T, C, P)`.
//! A 1x1 convolution over `y` then is the temporal convolution (see [`super::r2plus1d`]).
//!
//! Why: built from candle's `pad_with_zeros`, `narrow` and `cat`, the backward pass makes a
//! zero-padded full-size copy per shift and adds them with candle's parallel elementwise ops,
//! whose spinning thread barrier costs dearly on a busy 2-core machine; this op's backward is
//! one pass that sums the shifted gradient slices. Other devices use the candle ops.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::cpu::f32_slice;

/// `(B, T, C, P) -> (B, T, kt*C, P)`, shifted copies stacked along channels.
pub fn shift_stack(x: &Tensor, kt: usize) -> Result<Tensor> {
    if super::use_fast_kernels(x.device(), x.dtype()) {
        return x.contiguous()?.apply_op1(ShiftStack { kt });
    }
    shift_stack_candle(x, kt)
}

/// [`shift_stack`] from candle's own ops (any device).
fn shift_stack_candle(x: &Tensor, kt: usize) -> Result<Tensor> {
    let t = x.dim(1)?;
    let padded = x.pad_with_zeros(1, kt / 2, kt / 2)?;
    let shifted: Vec<Tensor> = (0..kt).map(|dt| padded.narrow(1, dt, t)).collect::<Result<_>>()?;
    Tensor::cat(&shifted, 2)
}

#[derive(Clone, Copy)]
struct ShiftStack {
    kt: usize,
}

/// The gradient of [`ShiftStack`]: `(B, T, kt*C, P) -> (B, T, C, P)`.
#[derive(Clone, Copy)]
struct ShiftSum {
    kt: usize,
}

/// For output frame `t` and shift `dt`, the source frame, if inside the clip.
fn source(t: usize, dt: usize, kt: usize, frames: usize) -> Option<usize> {
    (t + dt).checked_sub(kt / 2).filter(|&s| s < frames)
}

impl CustomOp1 for ShiftStack {
    fn name(&self) -> &'static str {
        "cfrun-shift-stack"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[b, t, c, p] = l.dims() else {
            candle_core::bail!("shift_stack: expected (B, T, C, P), got {:?}", l.dims())
        };
        let x = f32_slice(s, l)?;
        let (frame, kt) = (c * p, self.kt);
        let mut y = vec![0f32; b * t * kt * frame];
        for (bi, clip) in y.chunks_exact_mut(t * kt * frame).enumerate() {
            for (ti, out) in clip.chunks_exact_mut(kt * frame).enumerate() {
                for (dt, dst) in out.chunks_exact_mut(frame).enumerate() {
                    if let Some(si) = source(ti, dt, kt, t) {
                        let at = (bi * t + si) * frame;
                        dst.copy_from_slice(&x[at..at + frame]);
                    }
                }
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((b, t, kt * c, p))))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(dy.contiguous()?.apply_op1(ShiftSum { kt: self.kt })?))
    }
}

impl CustomOp1 for ShiftSum {
    fn name(&self) -> &'static str {
        "cfrun-shift-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[b, t, kc, p] = l.dims() else {
            candle_core::bail!("shift_sum: expected (B, T, kt*C, P), got {:?}", l.dims())
        };
        let g = f32_slice(s, l)?;
        let (kt, c) = (self.kt, kc / self.kt);
        let frame = c * p;
        let mut dx = vec![0f32; b * t * frame];
        // Fixed order (dt ascending) for every element: deterministic.
        for bi in 0..b {
            for ti in 0..t {
                for dt in 0..kt {
                    if let Some(si) = source(ti, dt, kt, t) {
                        let src = &g[((bi * t + ti) * kt + dt) * frame..((bi * t + ti) * kt + dt + 1) * frame];
                        let dst = &mut dx[(bi * t + si) * frame..(bi * t + si + 1) * frame];
                        dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                    }
                }
            }
        }
        Ok((CpuStorage::F32(dx), Shape::from((b, t, c, p))))
    }
}

/// Sum of all elements, for tests comparing gradients.
#[cfg(test)]
fn total(t: &Tensor) -> f32 {
    super::cpu::with_f32(&t.contiguous().unwrap(), |v| v.iter().sum()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_candle_composition_forward_and_backward() {
        let n = 2 * 5 * 3 * 4;
        let x = Var::from_vec((0..n).map(|v| (v as f32 * 0.37).sin()).collect::<Vec<_>>(), (2, 5, 3, 4), &Device::Cpu)
            .unwrap();
        let up = Tensor::from_vec(
            (0..n * 3).map(|v| (v as f32 * 0.11).cos()).collect::<Vec<_>>(),
            (2, 5, 9, 4),
            &Device::Cpu,
        )
        .unwrap();
        let fast = x.contiguous().unwrap().apply_op1(ShiftStack { kt: 3 }).unwrap();
        let slow = shift_stack_candle(&x, 3).unwrap();
        let diff = (&fast - &slow).unwrap().abs().unwrap();
        assert_eq!(total(&diff), 0.0);
        // Frame 0, shift 0 reads frame -1: zeros; shift 1 is the frame itself.
        let f = fast.narrow(1, 0, 1).unwrap().narrow(2, 0, 3).unwrap();
        assert_eq!(total(&f.abs().unwrap()), 0.0);
        let g_fast = (fast * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g_slow = (slow * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let d = (g_fast.get(&x).unwrap() - g_slow.get(&x).unwrap()).unwrap().abs().unwrap();
        assert!(total(&d) < 1e-4);
    }
}
