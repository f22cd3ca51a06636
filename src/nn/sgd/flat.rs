//! The flat update: the parameters with gradients, in groups of one dtype and one weight-decay
//! rule, each group updated as one vector. Per step and group: the gradients concatenated (a
//! copy each), the update's elementwise ops once (the per-parameter update's ops, in the same
//! order, so the same bits), and each parameter's slice copied back into it. The group keeps the
//! parameters' values as a vector between steps (its master copy), so the values are not
//! gathered again: the optimiser is the only writer of trainable parameters during training.

use super::decays;
use crate::nn::NnError;
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use std::collections::BTreeMap;

/// One group's parameters as a vector.
struct Group {
    /// Each member's index among the optimiser's parameters and its offset in the vector.
    members: Vec<(usize, usize)>,
    /// The weight decay of every member, when it applies.
    decay: Option<f64>,
    /// The members' values, concatenated.
    values: Tensor,
    /// The members' momentum buffers, concatenated; none before the first step.
    buffer: Option<Tensor>,
}

/// The flat update's state: which parameters it holds and their groups.
pub(super) struct Flat {
    /// Whether each of the optimiser's parameters is in a group (had a gradient when built).
    held: Vec<bool>,
    groups: Vec<Group>,
}

impl Flat {
    /// Takes over the parameters that have a gradient in `grads`, with their buffers from
    /// `buffers`; `None` (nothing taken) while only some of them have a buffer, as after a
    /// parameter's first gradient arrives late: the per-parameter update bridges that step.
    pub fn build(
        params: &[(String, Var)],
        grads: &GradStore,
        buffers: &mut BTreeMap<String, Tensor>,
        momentum: f64,
        weight_decay: f64,
    ) -> Result<Option<Self>, NnError> {
        let held: Vec<bool> = params.iter().map(|(_, v)| grads.get(v.as_tensor()).is_some()).collect();
        let taken = || params.iter().zip(&held).filter(|(_, &h)| h).map(|(p, _)| p);
        let buffered = taken().filter(|(name, _)| buffers.contains_key(name)).count();
        let with_buffers = momentum != 0.0 && buffered > 0;
        if with_buffers && buffered != taken().count() {
            return Ok(None);
        }
        let mut keys: Vec<(DType, Option<f64>)> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, (_, var)) in params.iter().enumerate().filter(|&(i, _)| held[i]) {
            let key = (var.dtype(), decays(var, weight_decay));
            match keys.iter().position(|k| *k == key) {
                Some(g) => members[g].push(i),
                None => {
                    keys.push(key);
                    members.push(vec![i]);
                }
            }
        }
        let mut groups = Vec::with_capacity(keys.len());
        for ((_, decay), idx) in keys.into_iter().zip(members) {
            let values: Vec<Tensor> =
                idx.iter().map(|&i| params[i].1.as_detached_tensor().flatten_all()).collect::<Result<_, _>>()?;
            let buffer = if with_buffers {
                let parts: Vec<Tensor> = idx
                    .iter()
                    .map(|&i| buffers.remove(&params[i].0).expect("counted above").flatten_all())
                    .collect::<Result<_, _>>()?;
                Some(Tensor::cat(&parts, 0)?)
            } else {
                None
            };
            let mut offset = 0;
            let members = idx
                .iter()
                .map(|&i| {
                    let at = offset;
                    offset += params[i].1.elem_count();
                    (i, at)
                })
                .collect();
            groups.push(Group { members, decay, values: Tensor::cat(&values, 0)?, buffer });
        }
        Ok(Some(Flat { held, groups }))
    }

    /// Whether `grads` has a gradient for exactly the parameters this state holds.
    pub fn fits(&self, params: &[(String, Var)], grads: &GradStore) -> bool {
        params.iter().zip(&self.held).all(|((_, v), &h)| grads.get(v.as_tensor()).is_some() == h)
    }

    /// One update with learning rate `lr`; every held parameter must have a gradient ([`Flat::fits`]).
    pub fn step(&mut self, params: &[(String, Var)], grads: &GradStore, lr: f64, momentum: f64) -> Result<(), NnError> {
        for group in &mut self.groups {
            let parts: Vec<Tensor> = group
                .members
                .iter()
                .map(|&(i, _)| {
                    let var = params[i].1.as_tensor();
                    let grad = grads.get(var).ok_or_else(|| {
                        NnError::Mismatch(format!("sgd: no gradient for `{}`, held by the flat update", params[i].0))
                    })?;
                    Ok(grad.detach().flatten_all()?)
                })
                .collect::<Result<_, NnError>>()?;
            let mut g = Tensor::cat(&parts, 0)?;
            if let Some(wd) = group.decay {
                g = (g + (&group.values * wd)?)?;
            }
            let buf = match &group.buffer {
                Some(b) if momentum != 0.0 => ((b * momentum)? + g)?,
                _ => g,
            };
            let values = (&group.values - (&buf * lr)?)?;
            for &(i, at) in &group.members {
                let var = &params[i].1;
                var.set(&values.narrow(0, at, var.elem_count())?.reshape(var.shape())?)?;
            }
            group.values = values;
            if momentum != 0.0 {
                group.buffer = Some(buf);
            }
        }
        Ok(())
    }

    /// The held parameters' momentum buffers by name, each shaped as its parameter: copies, not
    /// views of the group's buffer, which a checkpoint would read whole from the device for each
    /// view (candle's `to_vec1` copies a CUDA tensor's whole storage), and which a handed-back
    /// buffer would keep alive.
    pub fn buffers(&self, params: &[(String, Var)]) -> Result<BTreeMap<String, Tensor>, NnError> {
        let mut out = BTreeMap::new();
        for group in &self.groups {
            let Some(buffer) = &group.buffer else { continue };
            for &(i, at) in &group.members {
                let (name, var) = &params[i];
                out.insert(name.clone(), buffer.narrow(0, at, var.elem_count())?.reshape(var.shape())?.copy()?);
            }
        }
        Ok(out)
    }
}
