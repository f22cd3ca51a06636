//! Batch norm's running statistics updated for every layer at once off the CPU, and a
//! process-wide switch for the GPU bench's A/B: `CFRUN_BN_STATS` = `per-layer` or `flat`, read by
//! the binary at start-up; unset, the CPU updates each layer as it runs and any other device
//! updates flat in the training loops (`nn::train` and `nn::jigsaw`).
//!
//! Why: on a GPU a small network's step is bound by launches, and one layer's update is nine
//! small kernels (the unbiased variance, then `running * (1 - momentum) + batch * momentum` and a
//! copy into the Var, for the mean and for the variance). resnet_gpu has 20 batch norms: 180
//! launches a step (counted from the ops, not timed). Flat, each layer hands its batch mean and
//! variance over instead, and after the step they are concatenated (one copy a layer), the
//! variances scaled by each layer's `m / (m - 1)` (a vector uploaded once), and both blended into
//! one vector of every running mean and one of every running variance with the same elementwise
//! ops: 47 launches. The vectors hold the truth while training runs; `FlatStats::write_back`
//! copies each layer's slice into its Vars before anything reads them (the epoch's checkpoint,
//! the end of training). The same ops on the same values give the same bits
//! (`nn::running_stats::tests`), so, like the device, the choice is in no recipe key.

use super::env_flag::Choice;
use candle_core::{Device, Result, Tensor, TensorId, Var};
use std::cell::RefCell;

/// How batch norm's running statistics are updated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsUpdate {
    /// Each layer updates its own Vars as it runs.
    PerLayer,
    /// The resident training loop updates every layer's at once after each step.
    Flat,
}

/// The switch: `CFRUN_BN_STATS`; forced, it holds for every training run of the process.
pub static STATS_UPDATE: Choice<StatsUpdate> =
    Choice::new("CFRUN_BN_STATS", &[("per-layer", StatsUpdate::PerLayer), ("flat", StatsUpdate::Flat)]);

/// The update a training run on `device` uses: unforced, per layer on the CPU, else flat.
pub(crate) fn stats_update_for(device: &Device) -> StatsUpdate {
    STATS_UPDATE.for_device(device, StatsUpdate::PerLayer, StatsUpdate::Flat)
}

/// One layer's batch statistics, handed over instead of applied.
pub(crate) struct Handed {
    running_mean: Var,
    running_var: Var,
    /// `(C,)`, detached.
    mean: Tensor,
    /// `(C,)` biased, detached.
    var: Tensor,
    /// Values per channel the statistics came from.
    m: f64,
}

thread_local! {
    /// The statistics handed over on this thread while [`collecting`] runs.
    static HANDED: RefCell<Option<Vec<Handed>>> = const { RefCell::new(None) };
}

/// Runs `f` with every train-mode batch norm on this thread handing its running-statistics update
/// over instead of applying it, and returns them in the order the layers ran. The collection
/// around this one (or none) is back in place when `f` returns or unwinds.
pub(crate) fn collecting<T>(f: impl FnOnce() -> T) -> (T, Vec<Handed>) {
    /// The collection around this one, put back when this one ends.
    struct Outer(Option<Vec<Handed>>);
    impl Drop for Outer {
        fn drop(&mut self) {
            HANDED.with(|h| *h.borrow_mut() = self.0.take());
        }
    }
    let outer = Outer(HANDED.with(|h| h.borrow_mut().replace(Vec::new())));
    let out = f();
    let handed = HANDED.with(|h| h.borrow_mut().take()).unwrap_or_default();
    drop(outer);
    (out, handed)
}

#[cfg(test)]
thread_local! {
    /// Layers handed over on this thread so far: a flat run whose layers never hand over would
    /// train the per-layer bits too, so the tests that compare the two check this moved.
    static HANDED_COUNT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many layer updates this thread has handed over so far (tests only).
#[cfg(test)]
pub(crate) fn handed_on_this_thread() -> usize {
    HANDED_COUNT.with(|n| n.get())
}

/// Runs `f` (a training step's forward pass) collecting its batch norms' updates when `update` is
/// flat ([`collecting`]); layer by layer nothing is collected and each layer updates its Vars.
pub(crate) fn collecting_if<T>(update: StatsUpdate, f: impl FnOnce() -> T) -> (T, Vec<Handed>) {
    match update {
        StatsUpdate::Flat => collecting(f),
        StatsUpdate::PerLayer => (f(), Vec::new()),
    }
}

/// Hands a layer's batch `mean` and biased `var` (never -0.0: the flat update multiplies where the
/// per-layer one runs an affine, and only there would the two differ) over `m` values per channel
/// to the collection in progress; `false` when there is none (the layer then updates its Vars
/// itself). The CPU's own kernels update their Vars in the op and never hand over: a layer must
/// not do both within one training run, or a later write-back would undo its direct updates.
pub(crate) fn hand_over(running_mean: &Var, running_var: &Var, mean: &Tensor, var: &Tensor, m: f64) -> Result<bool> {
    HANDED.with(|h| {
        let mut h = h.borrow_mut();
        let Some(handed) = h.as_mut() else { return Ok(false) };
        #[cfg(test)]
        HANDED_COUNT.with(|n| n.set(n.get() + 1));
        handed.push(Handed {
            running_mean: running_mean.clone(),
            running_var: running_var.clone(),
            mean: mean.detach().flatten_all()?,
            var: var.detach().flatten_all()?,
            m,
        });
        Ok(true)
    })
}

/// PyTorch's default running-statistics momentum.
const MOMENTUM: f64 = 0.1;

/// `running * (1 - momentum) + batch * momentum`: one statistic's update, of one layer or of
/// all layers concatenated.
fn blend(running: &Tensor, batch: &Tensor) -> Result<Tensor> {
    (running * (1.0 - MOMENTUM))? + (batch * MOMENTUM)?
}

/// One layer's update: each running statistic blended with its batch value, in its Var.
pub(crate) fn update_layer(running_mean: &Var, running_var: &Var, mean: &Tensor, unbiased_var: &Tensor) -> Result<()> {
    running_mean.set(&blend(&running_mean.as_detached_tensor(), mean)?)?;
    running_var.set(&blend(&running_var.as_detached_tensor(), unbiased_var)?)
}

/// `m / (m - 1)`, the factor from a biased to an unbiased variance of `m` values.
pub(crate) fn unbiasing(m: f64) -> f64 {
    m / (m - 1.0).max(1.0)
}

/// Factor vectors kept for the sets of `m` a run's steps hand over (a full batch and a short
/// last one make two).
const FACTOR_VECTORS: usize = 4;

/// Every layer's running statistics as two vectors, updated once per step.
#[derive(Default)]
pub(crate) struct FlatStats {
    /// The layers in the order they ran: running mean, running variance, channels.
    layers: Vec<(Var, Var, usize)>,
    /// What a step must hand over to reuse the vectors: each layer's id and channels.
    key: Vec<(TensorId, usize)>,
    /// Every running mean, concatenated (none before the first step).
    means: Option<Tensor>,
    /// Every running variance, concatenated.
    vars: Option<Tensor>,
    /// Each channel's `m / (m - 1)`, by the layers' `m` (as bits): uploaded once per set.
    factors: Vec<(Vec<u64>, Tensor)>,
    /// Whether the vectors hold values the Vars do not.
    ahead: bool,
}

impl FlatStats {
    /// Applies one step's handed statistics: the same ops as [`super::batchnorm`]'s per-layer
    /// update, over every layer at once. A step whose layers (or their widths) differ from the
    /// last one's first writes the vectors back and starts them again; one whose batch differs
    /// (a short last batch) only takes another factor vector.
    pub(crate) fn apply(&mut self, handed: Vec<Handed>) -> Result<()> {
        if handed.is_empty() {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        if !handed.iter().all(|h| seen.insert(h.running_mean.as_tensor().id())) {
            // A layer that ran twice in the step updates its statistics twice in turn: one by one.
            self.write_back()?;
            self.key.clear();
            self.means = None;
            for h in handed {
                update_layer(&h.running_mean, &h.running_var, &h.mean, &(h.var * unbiasing(h.m))?)?;
            }
            return Ok(());
        }
        let key: Vec<(TensorId, usize)> =
            handed.iter().map(|h| (h.running_mean.as_tensor().id(), h.mean.elem_count())).collect();
        if key != self.key || self.means.is_none() {
            self.write_back()?;
            self.start(&handed)?;
            self.key = key;
        }
        let factors = self.factors_for(&handed)?;
        let (Some(means), Some(vars)) = (&self.means, &self.vars) else { unreachable!("started above") };
        let mean = Tensor::cat(&handed.iter().map(|h| &h.mean).collect::<Vec<_>>(), 0)?;
        let var = (Tensor::cat(&handed.iter().map(|h| &h.var).collect::<Vec<_>>(), 0)? * factors)?;
        self.means = Some(blend(means, &mean)?);
        self.vars = Some(blend(vars, &var)?);
        self.ahead = true;
        Ok(())
    }

    /// Starts the vectors from the layers' Vars.
    fn start(&mut self, handed: &[Handed]) -> Result<()> {
        let cat = |pick: fn(&Handed) -> &Var| {
            Tensor::cat(&handed.iter().map(|h| pick(h).as_detached_tensor()).collect::<Vec<_>>(), 0)
        };
        self.means = Some(cat(|h| &h.running_mean)?);
        self.vars = Some(cat(|h| &h.running_var)?);
        self.factors.clear();
        tracing::debug!(layers = handed.len(), "bn running statistics flat");
        self.layers =
            handed.iter().map(|h| (h.running_mean.clone(), h.running_var.clone(), h.mean.elem_count())).collect();
        Ok(())
    }

    /// The factor vector of the handed layers' `m`s, uploaded the first time they are seen.
    fn factors_for(&mut self, handed: &[Handed]) -> Result<Tensor> {
        let ms: Vec<u64> = handed.iter().map(|h| h.m.to_bits()).collect();
        if let Some((_, f)) = self.factors.iter().find(|(k, _)| *k == ms) {
            return Ok(f.clone());
        }
        let values: Vec<f32> =
            handed.iter().flat_map(|h| std::iter::repeat_n(unbiasing(h.m) as f32, h.mean.elem_count())).collect();
        let n = values.len();
        let f = Tensor::from_vec(values, n, handed[0].mean.device())?;
        if self.factors.len() == FACTOR_VECTORS {
            self.factors.remove(0);
        }
        self.factors.push((ms, f.clone()));
        Ok(f)
    }

    /// Copies each layer's slice of the vectors into its Vars, if they are ahead of them.
    pub(crate) fn write_back(&mut self) -> Result<()> {
        let (Some(means), Some(vars)) = (&self.means, &self.vars) else { return Ok(()) };
        if !self.ahead {
            return Ok(());
        }
        let mut offset = 0;
        for (running_mean, running_var, c) in &self.layers {
            running_mean.set(&means.narrow(0, offset, *c)?)?;
            running_var.set(&vars.narrow(0, offset, *c)?)?;
            offset += c;
        }
        self.ahead = false;
        Ok(())
    }
}

/// How many running statistics, after five training-mode steps on `device` of batch norms of
/// resnet_gpu's widths (64, 128 and 512 channels on maps of their own sizes, one step's batch
/// short; then with the 512 one run twice a step, which the flat update takes one by one), the
/// flat update writes differently from the per-layer update, bit for bit, and of how many: the
/// claim that keeps the choice out of recipe keys, checked where the kernels are (`check-device`).
pub fn flat_differing(device: &Device) -> std::result::Result<(usize, usize), super::NnError> {
    let (mut differing, mut total) = (0, 0);
    for order in [&[0, 1, 2][..], &[2, 0, 1, 2]] {
        let flat = five_steps(device, &[64, 128, 512], order, true)?;
        let per_layer = five_steps(device, &[64, 128, 512], order, false)?;
        if flat.iter().map(|(k, _)| k).ne(per_layer.iter().map(|(k, _)| k)) {
            return Err(super::NnError::Mismatch("flat statistics: not the per-layer update's tensors".into()));
        }
        for ((_, got), (_, want)) in flat.iter().zip(&per_layer) {
            total += want.len();
            differing += super::bits::differing_bits(got, want);
        }
    }
    Ok((differing, total))
}

/// Every running statistic, by name, after five steps of batch norms with `widths` channels run
/// in `order` on `device` (candle's generic batch norm, as off the CPU), updated flat (written
/// back midway and at the end) or layer by layer.
fn five_steps(device: &Device, widths: &[usize], order: &[usize], flat: bool) -> Result<Vec<(String, Vec<f32>)>> {
    use super::batchnorm::BatchNorm;
    use candle_nn::{VarBuilder, VarMap};
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, device);
    let layers = widths.iter().enumerate().map(|(i, &c)| BatchNorm::new(c, vb.pp(i))).collect::<Result<Vec<_>>>()?;
    // Each layer its own spatial size, and a short batch at step 3, so that layers and steps
    // differ in `m` (and the flat update needs more than one factor vector).
    let input = |step: usize, i: usize| -> Result<Tensor> {
        let (n, c, h) = (if step == 3 { 3 } else { 4 }, widths[i], 3 + i);
        let t = Tensor::arange(0f32, (n * c * h * 2) as f32, &Device::Cpu)?;
        let phase = (step * 7 + i * 3) as f64;
        ((t * 0.37)? + phase)?.sin()?.affine(3.0, i as f64)?.reshape((n, c, h, 2))?.to_device(device)
    };
    let mut stats = FlatStats::default();
    super::with_cpu_kernels(super::CpuKernels::Candle, || -> Result<()> {
        for step in 0..5 {
            let forward = || -> Result<()> {
                for &i in order {
                    layers[i].forward_act(&input(step, i)?, None, true, true)?;
                }
                Ok(())
            };
            if flat {
                let (done, handed) = collecting(forward);
                done?;
                stats.apply(handed)?;
            } else {
                forward()?;
            }
            if step == 2 {
                stats.write_back()?;
            }
        }
        stats.write_back()
    })?;
    let mut all = Vec::new();
    for (name, var) in vm.data().lock().expect("var map lock").iter() {
        if name.contains("running") {
            all.push((name.clone(), var.as_tensor().flatten_all()?.to_vec1::<f32>()?));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::batchnorm::BatchNorm;
    use candle_core::DType;
    use candle_nn::{VarBuilder, VarMap};

    /// Layers through five steps, each layer's statistics from inputs of its own size: per layer
    /// as they run, and flat, written back midway and at the end; then with one layer run twice
    /// a step (as a shared layer would), which the flat update takes one by one. Every running
    /// statistic is the same bit for bit, and they moved (the comparison is not of two untouched
    /// sets).
    #[test]
    fn flat_updates_give_the_per_layer_bits() {
        let dev = Device::Cpu;
        for order in [&[0, 1, 2][..], &[2, 0, 1, 0]] {
            let flat = five_steps(&dev, &[3, 5, 2], order, true).unwrap();
            let per_layer = five_steps(&dev, &[3, 5, 2], order, false).unwrap();
            let bits = |v: &[(String, Vec<f32>)]| {
                v.iter()
                    .map(|(k, x)| (k.clone(), x.iter().map(|x| x.to_bits()).collect::<Vec<_>>()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&flat), bits(&per_layer), "layers in the order {order:?}");
            let var = &per_layer.iter().find(|(k, _)| k == "1.running_var").unwrap().1;
            assert!(var.iter().all(|&v| v != 1.0), "{var:?}");
        }
        assert_eq!(flat_differing(&dev).unwrap(), (0, 2 * 2 * (64 + 128 + 512)));
    }

    /// Outside a collection a layer updates itself; inside, it hands over and its Vars stay.
    #[test]
    fn only_a_collection_takes_the_update() {
        let vm = VarMap::new();
        let bn = BatchNorm::new(2, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let x = Tensor::arange(0f32, 16.0, &Device::Cpu).unwrap().reshape((2, 2, 2, 2)).unwrap();
        let mean = || vm.data().lock().unwrap().get("running_mean").unwrap().to_vec1::<f32>().unwrap();
        crate::nn::with_cpu_kernels(crate::nn::CpuKernels::Candle, || {
            let ((), handed) = collecting(|| {
                bn.forward_act(&x, None, true, true).unwrap();
            });
            assert_eq!(handed.len(), 1);
            assert_eq!(mean(), vec![0.0, 0.0]);
            bn.forward_act(&x, None, true, true).unwrap();
        });
        assert_ne!(mean(), vec![0.0, 0.0]);
    }
}
