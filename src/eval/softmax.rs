//! Softmax-regression forward and backward passes on a standardised block.
//!
//! Every GEMM is cut into fixed-size pieces (independent of the thread count)
//! and each piece runs single-threaded inside a rayon task, so results are
//! bit-identical however many threads the pool has.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::linalg::{matmul, MatRef};

/// Rows of the batch per forward task.
const FWD_ROWS: usize = 64;
/// Rows of the weight matrix (features) per backward task.
const BWD_ROWS: usize = 64;

/// Weights `d x c` (row-major) and bias `c` of a linear classifier.
pub(super) struct Linear {
    pub d: usize,
    pub c: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl Linear {
    /// All-zero weights: the objective is convex, so no random init is needed.
    pub(super) fn zeros(d: usize, c: usize) -> Self {
        Self { d, c, w: vec![0.0; d * c], b: vec![0.0; c] }
    }

    /// `out (m x c) = xb (m x d) W + b` for the `m` rows in `xb`.
    pub(super) fn logits(&self, xb: &[f32], out: &mut [f32]) {
        self.forward_chunks(xb, out, |_, _| 0.0);
    }

    /// Forward pass fused with the cross-entropy gradient: leaves
    /// `(softmax - onehot) * scale` in `out` and returns the summed loss.
    pub(super) fn forward_xent(&self, xb: &[f32], y: &[u32], out: &mut [f32], scale: f32) -> f64 {
        let c = self.c;
        self.forward_chunks(xb, out, |r0, o| softmax_xent_grad(o, &y[r0..r0 + o.len() / c], c, scale))
    }

    /// Runs the forward GEMM in fixed row chunks, then `tail(first_row, chunk)`
    /// on each; the tails' results are summed in chunk order.
    fn forward_chunks(&self, xb: &[f32], out: &mut [f32], tail: impl Fn(usize, &mut [f32]) -> f64 + Sync) -> f64 {
        let (d, c) = (self.d, self.c);
        let m = xb.len() / d;
        let w = MatRef::row_major(&self.w, d, c);
        let parts: Vec<f64> = out[..m * c]
            .par_chunks_mut(FWD_ROWS * c)
            .enumerate()
            .map(|(ch, o)| {
                let r0 = ch * FWD_ROWS;
                let rows = o.len() / c;
                for row in o.chunks_exact_mut(c) {
                    row.copy_from_slice(&self.b);
                }
                let x = MatRef::row_major(&xb[r0 * d..(r0 + rows) * d], rows, d);
                matmul(o, x, w, 1.0, true, Parallelism::None);
                tail(r0, o)
            })
            .collect();
        parts.iter().sum()
    }
}

/// Turns each logit row into the cross-entropy gradient `(softmax - onehot) * scale`
/// in place, returning the summed loss (f64, rows in order).
fn softmax_xent_grad(logits: &mut [f32], y: &[u32], c: usize, scale: f32) -> f64 {
    let mut loss = 0f64;
    for (row, &label) in logits.chunks_exact_mut(c).zip(y) {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let label = label as usize;
        let z_y = row[label] - max;
        let mut sum = 0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        loss += f64::from(sum.ln() - z_y);
        let inv = scale / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
        row[label] -= scale;
    }
    loss
}

/// Momentum SGD settings for one step.
pub(super) struct Step {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// Backward pass fused with the update: for each fixed slice of feature
/// rows, computes `gW = xb^T G` for that slice, then applies
/// `v = momentum * v + gW + wd * W; W -= lr * v` (PyTorch's SGD form). The bias
/// (no weight decay, like scikit-learn's intercept) is updated from the
/// column sums of `G`.
pub(super) fn backward_update(
    model: &mut Linear,
    vel_w: &mut [f32],
    vel_b: &mut [f32],
    xb: &[f32],
    g: &[f32],
    step: &Step,
) {
    let (d, c) = (model.d, model.c);
    let m = xb.len() / d;
    let gm = MatRef::row_major(g, m, c);
    model.w.par_chunks_mut(BWD_ROWS * c).zip(vel_w.par_chunks_mut(BWD_ROWS * c)).enumerate().for_each_init(
        || vec![0f32; BWD_ROWS * c],
        |gw, (ch, (w, v))| {
            let j0 = ch * BWD_ROWS;
            let rows = w.len() / c;
            // Rows j0.. of xb^T are columns j0.. of xb: stride 1 across them, d down the batch.
            let xt = MatRef::strided(&xb[j0..], rows, m, 1, d);
            let gw = &mut gw[..rows * c];
            matmul(gw, xt, gm, 1.0, false, Parallelism::None);
            for ((wi, vi), &gi) in w.iter_mut().zip(v.iter_mut()).zip(gw.iter()) {
                *vi = step.momentum * *vi + gi + step.weight_decay * *wi;
                *wi -= step.lr * *vi;
            }
        },
    );
    let mut gb = vec![0f32; c];
    for row in g.chunks_exact(c) {
        for (a, &v) in gb.iter_mut().zip(row) {
            *a += v;
        }
    }
    for ((bi, vi), &gi) in model.b.iter_mut().zip(vel_b.iter_mut()).zip(&gb) {
        *vi = step.momentum * *vi + gi;
        *bi -= step.lr * *vi;
    }
}
