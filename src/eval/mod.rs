//! Evaluation: a deterministic linear probe (softmax regression), the one-vs-rest SVM
//! protocol scored by mean average precision (multi-label targets, [`ovr_map`]) and
//! clustering-versus-labels metrics (purity, NMI, AMI).
//!
//! The probe standardises features with the train split's mean and std,
//! trains multinomial logistic regression with mini-batch momentum SGD and a
//! cosine learning-rate decay (or, on request, full-batch L-BFGS to a gradient
//! tolerance), and scores the test split. All GEMMs are cut
//! into fixed pieces and all reductions run in a fixed order, so a given
//! seed gives bit-identical results across runs and thread counts.

mod ami;
mod ap;
pub mod device_check;
mod error;
mod lbfgs;
mod metrics;
mod ovr;
mod probe;
mod probe_device;
mod probe_lbfgs;
mod softmax;
mod standardize;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use ami::ami;
pub use ap::{average_precision, interpolated_ap, mean_ap, ApKind};
pub use error::EvalError;
pub use metrics::{accuracy, nmi, purity};
pub use ovr::{ovr_map, OvrConfig, OvrResult, Scaling};
pub use probe::{linear_probe, rows_per_step};
pub use probe_device::{linear_probe_on, probe_with_tensors};
pub use probe_lbfgs::lbfgs_probe_path;

/// How the probe minimises its objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProbeSolver {
    /// Mini-batch momentum SGD with a cosine decay over `epochs`: the paper's protocol, and cheap.
    #[default]
    Sgd,
    /// Full-batch L-BFGS for at most `epochs` iterations, stopping once every gradient entry is
    /// within `tol`: the converged optimum of the same objective (batch size, lr and momentum unused).
    Lbfgs,
}

/// What a probe learns from and is scored on: row-major features with `d` columns and labels in
/// `0..num_classes`, for the train split and the test split.
#[derive(Debug, Clone, Copy)]
pub struct ProbeData<'a> {
    /// Train features, one row of `d` per example.
    pub train_x: &'a [f32],
    /// Train labels.
    pub train_y: &'a [u32],
    /// Test features, one row of `d` per example.
    pub test_x: &'a [f32],
    /// Test labels.
    pub test_y: &'a [u32],
    /// Feature columns.
    pub d: usize,
    /// Classes; every label is below it.
    pub num_classes: usize,
}

/// Linear-probe training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// The optimiser.
    #[serde(default)]
    pub solver: ProbeSolver,
    /// Passes over the train split (SGD), or the most iterations (L-BFGS).
    pub epochs: usize,
    /// Rows per SGD step, capped at ceil(n_train / 32) so small splits still take close to 32 steps
    /// per epoch (from 32 rows on, between 16 and 32: 30 at 300 rows).
    pub batch_size: usize,
    /// Peak learning rate, decayed to zero by a cosine schedule over all steps.
    pub lr: f32,
    /// L2 penalty on the weights (not the bias), added to the gradient.
    pub weight_decay: f32,
    /// Heavy-ball momentum in [0, 1).
    pub momentum: f32,
    /// Seed for the per-epoch shuffles.
    pub seed: u64,
    /// L-BFGS stops once every entry of the objective's gradient is at most this in magnitude
    /// (scikit-learn's `tol`); SGD does not use it.
    #[serde(default = "default_tol")]
    pub tol: f32,
}

fn default_tol() -> f32 {
    1e-4
}

impl Default for ProbeConfig {
    /// Settings measured to land within 0.5 points of scikit-learn's LogisticRegression (see benches/python/probe_vs_sklearn.py).
    fn default() -> Self {
        Self {
            solver: ProbeSolver::Sgd,
            epochs: 10,
            batch_size: 1024,
            lr: 0.1,
            weight_decay: 1e-4,
            momentum: 0.9,
            seed: 0,
            tol: default_tol(),
        }
    }
}

/// What a linear probe measured. Accuracies are fractions in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Top-1 accuracy on the train split.
    pub train_top1: f64,
    /// Top-1 accuracy on the test split.
    pub test_top1: f64,
    /// Top-5 accuracy on the test split; `None` with 5 classes or fewer.
    pub test_top5: Option<f64>,
    /// Top-1 accuracy per class on the test split; NaN for classes absent from it.
    pub per_class_test_acc: Vec<f64>,
    /// Mean training cross-entropy of each epoch (measured during the epoch).
    pub loss_per_epoch: Vec<f64>,
    /// Whether L-BFGS stopped at its iteration cap (`epochs`) short of its gradient tolerance:
    /// the caller warns, naming the stage. Always false for SGD, which has no tolerance.
    #[serde(default)]
    pub capped: bool,
}
