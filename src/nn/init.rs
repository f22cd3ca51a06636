//! Deterministic, order-independent initialisation.
//!
//! Every var draws from its own ChaCha8 stream seeded by `(seed, var name)`, so the values do
//! not depend on `HashMap` iteration order or on which other vars exist. candle's own `Init`
//! draws from an unseeded thread RNG on CPU, hence this module.
//!
//! Rules (torchvision ResNet conventions): conv weights (rank 4) Kaiming-normal with fan-out,
//! `N(0, 2 / (Cout*K*K))`; linear weight and bias `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`;
//! BN gamma 1, beta 0, running mean 0, running var 1.

use super::NnError;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use rand::Rng;

use crate::rng::stream;

/// A standard normal sample (Box-Muller; one of the pair is discarded for simplicity).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Overwrites every var of a freshly built model with its deterministic initial value.
pub fn init_weights(varmap: &VarMap, seed: u64) -> Result<(), NnError> {
    let vars = varmap.data().lock().expect("VarMap lock poisoned").clone();
    for (name, var) in &vars {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let mut rng = stream(seed, name, 0);
        let values: Vec<f32> = if dims.len() == 4 {
            let std = (2.0 / (dims[0] * dims[2] * dims[3]) as f64).sqrt();
            (0..n).map(|_| (normal(&mut rng) * std) as f32).collect()
        } else if let Some(fan_in) = linear_fan_in(&vars, name, &dims) {
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect()
        } else if name.ends_with("running_var") || name.ends_with("weight") {
            vec![1.0; n]
        } else {
            vec![0.0; n]
        };
        set_var(var, values)?;
    }
    Ok(())
}

/// The fan-in of a linear layer's `weight` (rank 2) or of the `bias` next to one.
fn linear_fan_in(vars: &std::collections::HashMap<String, Var>, name: &str, dims: &[usize]) -> Option<usize> {
    if dims.len() == 2 {
        return Some(dims[1]);
    }
    let weight = vars.get(&format!("{}weight", name.strip_suffix("bias")?))?;
    (weight.rank() == 2).then(|| weight.dims()[1])
}

/// Replaces the contents of `var` with `values` (same shape, same device).
pub(crate) fn set_var(var: &Var, values: Vec<f32>) -> Result<(), NnError> {
    var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
    Ok(())
}
