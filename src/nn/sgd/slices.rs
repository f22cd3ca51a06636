//! The update in one parallel pass over a parameter's CPU slices: the CPU's default. The same f32
//! operations in the same order as the candle-op updates for every element, so all give the
//! same bits (`nn::sgd::tests`). Why: the candle-op update is ~6 ops per parameter, each a
//! dispatch on candle's thread pool; a serial version of this one was three passes and three
//! allocations per parameter, 2-3 % of a resnet_gpu step.

use crate::nn::cpu::{take_written, with_f32};
use crate::nn::NnError;
use candle_core::{Tensor, Var};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Parameters per task: large enough that a task outweighs its scheduling.
pub(super) const UPDATE_CHUNK: usize = 1 << 14;

/// One f32 CPU parameter's update: writes `var` and returns its new momentum buffer (`None`
/// when `momentum` is 0). `buffer` is the old one, `decay` the weight decay when it applies.
pub(super) fn update(
    name: &str,
    var: &Var,
    grad: &Tensor,
    buffer: Option<&Tensor>,
    lr: f64,
    momentum: f64,
    decay: Option<f64>,
) -> Result<Option<Tensor>, NnError> {
    let (wd, mom, lr) = (decay.unwrap_or(0.0) as f32, momentum as f32, lr as f32);
    let decay = decay.is_some();
    let grad = grad.contiguous()?;
    let old = buffer.filter(|_| mom != 0.0);
    let pass = |p: &[f32], g: &[f32], b: Option<&[f32]>| -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
        if g.len() != p.len() || b.is_some_and(|b| b.len() != p.len()) {
            candle_core::bail!("sgd: gradient or momentum buffer of `{name}` does not match the parameter");
        }
        let n = p.len();
        let mut buf = Vec::new();
        let fill_p = |po: &mut [MaybeUninit<f32>]| {
            let fill_buf = |bo: &mut [MaybeUninit<f32>]| {
                po.par_chunks_mut(UPDATE_CHUNK).zip(bo.par_chunks_mut(UPDATE_CHUNK)).enumerate().for_each(
                    |(c, (po, bo))| {
                        let at = c * UPDATE_CHUNK;
                        for (j, (po, bo)) in po.iter_mut().zip(bo).enumerate() {
                            let (pk, gk) = (p[at + j], g[at + j]);
                            let gk = if decay { gk + pk * wd } else { gk };
                            let bk = match b {
                                Some(b) => b[at + j] * mom + gk,
                                None => gk,
                            };
                            bo.write(bk);
                            po.write(pk - bk * lr);
                        }
                    },
                );
            };
            // SAFETY: the chunks of `bo` cover it, and every element of a chunk is written.
            buf = unsafe { take_written(n, fill_buf) };
        };
        // SAFETY: the chunks of `po` cover it, and every element of a chunk is written.
        let p = unsafe { take_written(n, fill_p) };
        Ok((p, buf))
    };
    let (p, buf) = with_f32(var.as_tensor(), |p| {
        with_f32(&grad, |g| match old {
            Some(b) => with_f32(b, |b| pass(p, g, Some(b)))?,
            None => pass(p, g, None),
        })
    })???;
    var.set(&Tensor::from_vec(p, var.shape(), var.device())?)?;
    Ok(if mom != 0.0 { Some(Tensor::from_vec(buf, var.shape(), var.device())?) } else { None })
}
