//! SGD with momentum and weight decay, PyTorch semantics (dampening 0, no Nesterov):
//!
//! ```text
//! g   = grad + weight_decay * p        (decayed params only)
//! buf = g                              (first step)
//! buf = momentum * buf + g             (later steps)
//! p   = p - lr * buf
//! ```
//!
//! Weight decay applies to conv and linear weights (rank >= 2) only, not to BN gamma/beta or
//! biases (the usual choice for ResNets; torchvision's reference recipes offer the same
//! `norm_weight_decay = 0`). BN running statistics are not optimised at all: they are
//! recognised by name and get no gradient.
//!
//! The momentum buffers are detached tensors, replaced at each step: a buffer that kept its
//! autograd history would hold every previous step's graph alive.
//!
//! Three ways to write the update, all giving the same bits ([`update`]): one pass over CPU
//! slices (`slices.rs`, the CPU's default), candle ops per parameter, and candle ops over the
//! parameters concatenated (`flat.rs`, the default on other devices, where launches count).

mod flat;
mod same_bits;
mod slices;
pub mod update;

pub use same_bits::flat_update_differing;

use super::NnError;
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use flat::Flat;
use std::collections::BTreeMap;
use update::{update_for, Update};

/// Whether a VarMap entry is a trainable parameter (not a BN running statistic).
pub fn is_trainable(name: &str) -> bool {
    !(name.ends_with("running_mean") || name.ends_with("running_var"))
}

/// The weight decay `var` gets: conv and linear weights (rank >= 2) only.
fn decays(var: &Var, weight_decay: f64) -> Option<f64> {
    (weight_decay != 0.0 && var.rank() >= 2).then_some(weight_decay)
}

/// The optimiser: trainable vars by name, hyper-parameters and momentum buffers.
pub struct Sgd {
    params: Vec<(String, Var)>,
    momentum: f64,
    weight_decay: f64,
    /// Momentum buffers by name of the parameters `flat` does not hold.
    buffers: BTreeMap<String, Tensor>,
    update: Update,
    /// The flat update's state, taken over at its first step.
    flat: Option<Flat>,
}

impl Sgd {
    /// Optimises the trainable vars of `varmap`; `buffers` restores momentum from a checkpoint.
    pub fn new(
        varmap: &VarMap,
        momentum: f64,
        weight_decay: f64,
        buffers: BTreeMap<String, Tensor>,
    ) -> Result<Self, NnError> {
        let data = varmap.data().lock().expect("VarMap lock poisoned");
        let mut params: Vec<(String, Var)> =
            data.iter().filter(|(k, _)| is_trainable(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, buf) in &buffers {
            match data.get(name) {
                Some(v) if v.shape() == buf.shape() => {}
                _ => return Err(NnError::Mismatch(format!("momentum buffer `{name}` matches no parameter"))),
            }
        }
        let update = params.first().map_or(Update::Slices, |(_, v)| update_for(v.device()));
        tracing::debug!(update = ?update, "sgd update");
        Ok(Sgd { params, momentum, weight_decay, buffers, update, flat: None })
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<(), NnError> {
        if self.update == Update::Flat {
            if self.flat.as_ref().is_some_and(|f| !f.fits(&self.params, grads)) {
                // A different set of parameters has gradients than when the flat state was
                // built: hand its buffers back and update per parameter from now on.
                let flat = self.flat.take().expect("checked above");
                self.buffers.extend(flat.buffers(&self.params)?);
                self.update = Update::PerParam;
                tracing::debug!("the parameters with a gradient changed: the update goes per parameter");
            } else if self.flat.is_none() {
                self.flat = Flat::build(&self.params, grads, &mut self.buffers, self.momentum, self.weight_decay)?;
            }
            if let Some(flat) = &mut self.flat {
                return flat.step(&self.params, grads, lr, self.momentum);
            }
        }
        for (name, var) in &self.params {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let decay = decays(var, self.weight_decay);
            let old = self.buffers.get(name);
            let buf = if self.update == Update::Slices && var.device().is_cpu() && var.dtype() == DType::F32 {
                slices::update(name, var, grad, old, lr, self.momentum, decay)?
            } else {
                per_param(var, grad, old, lr, self.momentum, decay)?
            };
            if let Some(buf) = buf {
                self.buffers.insert(name.clone(), buf);
            }
        }
        Ok(())
    }

    /// The momentum buffers by var name (for checkpoints).
    pub fn buffers(&self) -> Result<BTreeMap<String, Tensor>, NnError> {
        let mut all = self.buffers.clone();
        if let Some(flat) = &self.flat {
            all.extend(flat.buffers(&self.params)?);
        }
        Ok(all)
    }
}

/// One parameter's update in candle ops: writes `var` and returns its new momentum buffer
/// (`None` when `momentum` is 0).
fn per_param(
    var: &Var,
    grad: &Tensor,
    buffer: Option<&Tensor>,
    lr: f64,
    momentum: f64,
    decay: Option<f64>,
) -> Result<Option<Tensor>, NnError> {
    let p = var.as_detached_tensor();
    let mut g = grad.detach();
    if let Some(wd) = decay {
        g = (g + (&p * wd)?)?;
    }
    let buf = match buffer {
        Some(b) if momentum != 0.0 => ((b * momentum)? + g)?,
        _ => g,
    };
    var.set(&(&p - (&buf * lr)?)?)?;
    Ok((momentum != 0.0).then(|| buf.detach()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Two steps on one weight matrix and one bias, checked against PyTorch 2.x:
    ///
    /// ```python
    /// w = torch.tensor([[1.0, -2.0]], requires_grad=True); b = torch.tensor([0.5], requires_grad=True)
    /// opt = torch.optim.SGD([{"params": [w]}, {"params": [b], "weight_decay": 0.0}],
    ///                       lr=0.1, momentum=0.9, weight_decay=0.01)
    /// for g_w, g_b in [([[0.5, 0.25]], [1.0]), ([[-1.0, 2.0]], [-0.5])]:
    ///     w.grad = torch.tensor(g_w); b.grad = torch.tensor(g_b); opt.step()
    /// # step 1: w = [[0.949, -2.023]], b = [0.4]
    /// # step 2: w = [[1.002151, -2.241677]], b = [0.36]
    /// ```
    /// (by hand: step 1 g_w = [0.51, 0.23], buf = g, w -= 0.1 g; step 2 g_w = [-0.99051,
    /// 1.97977], buf = 0.9*[0.51, 0.23] + g = [-0.53151, 2.18677], w -= 0.1 buf; b: buf = 0.4.)
    /// The one-pass CPU update and the generic candle-op update give the same bits.
    #[test]
    fn cpu_and_generic_updates_agree() {
        let dev = Device::Cpu;
        let run = |generic: bool| {
            let vm = VarMap::new();
            let w = vm.get((3, 4), "c.weight", candle_nn::Init::Const(0.3), DType::F32, &dev).unwrap();
            let b = vm.get(3, "c.bias", candle_nn::Init::Const(-0.2), DType::F32, &dev).unwrap();
            let mut opt = Sgd::new(&vm, 0.9, 1e-3, BTreeMap::new()).unwrap();
            opt.update = if generic { Update::PerParam } else { Update::Slices };
            for step in 0..3 {
                let scale = Tensor::arange(0f32, 12.0, &dev).unwrap().reshape((3, 4)).unwrap();
                let loss = ((&w * &w).unwrap() * (scale + step as f64).unwrap()).unwrap().sum_all().unwrap();
                let loss = (loss + b.sqr().unwrap().sum_all().unwrap()).unwrap();
                opt.step(&loss.backward().unwrap(), 0.05).unwrap();
            }
            let bits = |t: &Tensor| {
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            (bits(&w), bits(&b))
        };
        assert_eq!(run(false), run(true));
    }

    /// The same on a parameter of several update tasks (not a whole number of them), with and
    /// without momentum.
    #[test]
    fn cpu_and_generic_updates_agree_across_tasks() {
        let dev = Device::Cpu;
        let n = 2 * slices::UPDATE_CHUNK + 777;
        for momentum in [0.9, 0.0] {
            let run = |generic: bool| {
                let vm = VarMap::new();
                let w = vm.get((n / 7, 7), "c.weight", candle_nn::Init::Const(0.3), DType::F32, &dev).unwrap();
                let mut opt = Sgd::new(&vm, momentum, 1e-3, BTreeMap::new()).unwrap();
                opt.update = if generic { Update::PerParam } else { Update::Slices };
                let scale = Tensor::arange(0f32, (n / 7 * 7) as f32, &dev).unwrap().reshape((n / 7, 7)).unwrap();
                let scale = (scale * 1e-4).unwrap().sin().unwrap();
                for _ in 0..3 {
                    let loss = (&w * &w).unwrap().mul(&scale).unwrap().sum_all().unwrap();
                    opt.step(&loss.backward().unwrap(), 0.05).unwrap();
                }
                w.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(run(false), run(true), "momentum {momentum}");
        }
    }

    #[test]
    fn matches_pytorch_reference() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let w = vm.get((1, 2), "fc.weight", candle_nn::Init::Const(0.0), DType::F32, &dev).unwrap();
        let b = vm.get(1, "fc.bias", candle_nn::Init::Const(0.0), DType::F32, &dev).unwrap();
        let rm = vm.get(1, "bn.running_mean", candle_nn::Init::Const(3.0), DType::F32, &dev).unwrap();
        Var::from_tensor(&w).unwrap().set(&Tensor::new(&[[1f32, -2.0]], &dev).unwrap()).unwrap();
        Var::from_tensor(&b).unwrap().set(&Tensor::new(&[0.5f32], &dev).unwrap()).unwrap();
        let mut opt = Sgd::new(&vm, 0.9, 0.01, BTreeMap::new()).unwrap();
        for (gw, gb) in [([0.5f32, 0.25], 1f32), ([-1.0, 2.0], -0.5)] {
            // Gradients of sum(w * gw) + b * gb are exactly gw and gb.
            let cw = Tensor::new(&[gw], &dev).unwrap();
            let loss = ((&w * &cw).unwrap().sum_all().unwrap() + (&b * gb as f64).unwrap().sum_all().unwrap()).unwrap();
            opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        }
        let w = w.to_vec2::<f32>().unwrap()[0].clone();
        let b = b.to_vec1::<f32>().unwrap()[0];
        assert!((w[0] - 1.002151).abs() < 1e-6 && (w[1] + 2.241677).abs() < 1e-6, "{w:?}");
        assert!((b - 0.36).abs() < 1e-6, "{b}");
        assert_eq!(rm.to_vec1::<f32>().unwrap(), vec![3.0], "running stats untouched");
        assert_eq!(opt.buffers().unwrap().len(), 2);
    }

    /// The parameters and momentum buffers after `steps` updates of a small network of every
    /// kind of tensor (decayed and not, f32 and f64, a BN running statistic, and `late.weight`,
    /// which has no gradient before step `late_from`), each as f64 bits by name.
    /// With `resume_at`, the optimiser is rebuilt from its saved buffers before that step.
    fn trained(
        update: Update,
        momentum: f64,
        restored: &[&str],
        late_from: usize,
        steps: usize,
        resume_at: Option<usize>,
    ) -> Bits {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let shapes: [(&str, &[usize], DType); 7] = [
            ("a.weight", &[2, 3, 3, 3], DType::F32),
            ("a.bn.weight", &[2], DType::F32),
            ("a.bn.bias", &[2], DType::F32),
            ("fc.weight", &[4, 5], DType::F32),
            ("fc.bias", &[4], DType::F32),
            ("late.weight", &[3, 3], DType::F32),
            ("w64.weight", &[2, 2], DType::F64),
        ];
        let mut vars = Vec::new();
        for (k, (name, shape, dtype)) in shapes.iter().enumerate() {
            let n: usize = shape.iter().product();
            let init = Tensor::arange(0f64, n as f64, &dev).unwrap();
            let init = ((init + k as f64).unwrap() * 0.37).unwrap().sin().unwrap();
            let v = vm.get(*shape, name, candle_nn::Init::Const(0.0), *dtype, &dev).unwrap();
            Var::from_tensor(&v).unwrap().set(&init.reshape(*shape).unwrap().to_dtype(*dtype).unwrap()).unwrap();
            vars.push((v, (init * 1.7).unwrap().cos().unwrap().reshape(*shape).unwrap().to_dtype(*dtype).unwrap()));
        }
        vm.get(2, "a.bn.running_mean", candle_nn::Init::Const(3.0), DType::F32, &dev).unwrap();
        let buffers = restored
            .iter()
            .map(|name| {
                let (v, scale) = &vars[shapes.iter().position(|s| s.0 == *name).unwrap()];
                (name.to_string(), (scale * 0.5).unwrap().to_dtype(v.dtype()).unwrap())
            })
            .collect();
        let mut opt = Sgd::new(&vm, momentum, 1e-2, buffers).unwrap();
        opt.update = update;
        for step in 0..steps {
            if Some(step) == resume_at {
                // As a checkpoint does: the buffers through a safetensors file, a new optimiser.
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("momentum.safetensors");
                let saved: std::collections::HashMap<_, _> = opt.buffers().unwrap().into_iter().collect();
                candle_core::safetensors::save(&saved, &path).unwrap();
                let loaded = candle_core::safetensors::load(&path, &dev).unwrap().into_iter().collect();
                opt = Sgd::new(&vm, momentum, 1e-2, loaded).unwrap();
                opt.update = update;
            }
            let mut loss = Tensor::zeros((), DType::F64, &dev).unwrap();
            for (k, (v, scale)) in vars.iter().enumerate() {
                if shapes[k].0 == "late.weight" && step < late_from {
                    continue;
                }
                let term = (v * v).unwrap().mul(&(scale + step as f64).unwrap()).unwrap().sum_all().unwrap();
                loss = (loss + term.to_dtype(DType::F64).unwrap()).unwrap();
            }
            opt.step(&loss.backward().unwrap(), 0.05).unwrap();
        }
        let bits = |t: &Tensor| {
            let t = t.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
            t.to_vec1::<f64>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        let data = vm.data().lock().unwrap();
        let params = data.iter().map(|(k, v)| (k.clone(), bits(v.as_tensor()))).collect();
        let momenta = opt.buffers().unwrap().iter().map(|(k, t)| (k.clone(), bits(t))).collect();
        (params, momenta)
    }

    /// Parameters and momentum buffers, as f64 bits by name.
    type Bits = (BTreeMap<String, Vec<u64>>, BTreeMap<String, Vec<u64>>);

    /// The flat update gives the per-parameter update's bits (and the CPU slices' bits) for
    /// every kind of tensor, with and without momentum, from fresh and from restored buffers
    /// (all of them, or some: the flat state waits a step), when a parameter's first gradient
    /// comes late (the flat state hands its buffers back and goes per parameter), and when the
    /// buffers go through a checkpoint file midway.
    #[test]
    fn the_flat_update_gives_the_per_parameter_bits() {
        let all: &[&str] =
            &["a.weight", "a.bn.weight", "a.bn.bias", "fc.weight", "fc.bias", "late.weight", "w64.weight"];
        for momentum in [0.9, 0.0] {
            for restored in [&[][..], all, &["fc.weight", "a.bn.bias"][..]] {
                for late_from in [0, 2] {
                    let want = trained(Update::PerParam, momentum, restored, late_from, 4, None);
                    let what = format!("momentum {momentum}, restored {restored:?}, late from {late_from}");
                    assert_eq!(trained(Update::Flat, momentum, restored, late_from, 4, None), want, "flat: {what}");
                    assert_eq!(trained(Update::Slices, momentum, restored, late_from, 4, None), want, "slices: {what}");
                    for update in [Update::Flat, Update::Slices] {
                        let resumed = trained(update, momentum, restored, late_from, 4, Some(3));
                        assert_eq!(resumed, want, "{update:?} resumed at step 3: {what}");
                    }
                    let untouched = want.0["a.bn.running_mean"].clone();
                    assert_eq!(untouched, vec![3f64.to_bits(); 2], "{what}");
                    if late_from > 0 && restored.is_empty() {
                        let early = trained(Update::PerParam, momentum, restored, late_from, late_from, None);
                        assert_eq!(
                            early.0["late.weight"],
                            trained(Update::PerParam, momentum, restored, 9, 0, None).0["late.weight"]
                        );
                        assert!(!early.1.contains_key("late.weight"), "{what}: no buffer before its first gradient");
                    }
                }
            }
        }
    }

    /// The flat state is taken over at the first step where every parameter with a gradient has
    /// a buffer or none does, and given up when the set of parameters with a gradient changes.
    #[test]
    fn the_flat_state_holds_while_the_gradients_keep_their_parameters() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let w = vm.get((2, 2), "w.weight", candle_nn::Init::Const(0.5), DType::F32, &dev).unwrap();
        let b = vm.get(2, "w.bias", candle_nn::Init::Const(0.5), DType::F32, &dev).unwrap();
        let partial = BTreeMap::from([("w.bias".to_string(), Tensor::ones(2, DType::F32, &dev).unwrap())]);
        let mut opt = Sgd::new(&vm, 0.9, 1e-3, partial).unwrap();
        opt.update = Update::Flat;
        let both = || (w.sum_all().unwrap() + b.sqr().unwrap().sum_all().unwrap()).unwrap().backward().unwrap();
        opt.step(&both(), 0.1).unwrap();
        assert!(opt.flat.is_none(), "one of two buffers restored: per parameter for a step");
        opt.step(&both(), 0.1).unwrap();
        assert!(opt.flat.is_some() && opt.buffers.is_empty(), "then the flat state holds both");
        opt.step(&w.sum_all().unwrap().backward().unwrap(), 0.1).unwrap();
        assert!(opt.flat.is_none() && opt.update == Update::PerParam, "the bias lost its gradient");
        assert_eq!(opt.buffers().unwrap().len(), 2, "every buffer handed back");
    }
}
