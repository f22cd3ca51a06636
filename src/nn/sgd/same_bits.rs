//! The flat update against the per-parameter one on a device, bit for bit: the claim that lets
//! the choice stay out of recipe keys, checked where it matters (`check-device` on the GPU,
//! where flat is the default and the CPU's tests cannot see the kernels).

use super::update::Update;
use super::Sgd;
use crate::nn::bits::differing_bits;
use crate::nn::NnError;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::BTreeMap;

/// How many values of the parameters and momentum buffers, after five steps on `device` of a
/// few tensors of resnet_gpu's kinds (a 64 x 64 x 3 x 3 convolution, a batch norm's gamma and
/// beta, a linear layer), the flat update writes differently from the per-parameter update, bit
/// for bit, and of how many. (Handing the flat state back when the parameters with gradients
/// change is bookkeeping alike on every device; the CPU's tests cover it.)
pub fn flat_update_differing(device: &Device) -> Result<(usize, usize), NnError> {
    let flat = five_steps(device, Update::Flat)?;
    let per_param = five_steps(device, Update::PerParam)?;
    count_differing(&flat, &per_param)
}

/// Values of `got` not bit for bit `want`'s, and values of `want`, tensor by tensor.
fn count_differing(got: &Values, want: &Values) -> Result<(usize, usize), NnError> {
    if got.keys().ne(want.keys()) {
        return Err(NnError::Mismatch("flat update: not the per-parameter update's tensors".into()));
    }
    let (mut differing, mut total) = (0, 0);
    for (got, want) in got.values().zip(want.values()) {
        total += want.len();
        differing += differing_bits(got, want);
    }
    Ok((differing, total))
}

/// Tensors' values by name.
type Values = BTreeMap<String, Vec<f32>>;

/// Every parameter and momentum buffer after the steps, by name (`momentum.` before a buffer's).
fn five_steps(device: &Device, update: Update) -> Result<Values, NnError> {
    let shapes: [(&str, &[usize]); 5] = [
        ("conv.weight", &[64, 64, 3, 3]),
        ("bn.weight", &[64]),
        ("bn.bias", &[64]),
        ("fc.weight", &[10, 64]),
        ("fc.bias", &[10]),
    ];
    let vm = VarMap::new();
    let mut vars = Vec::new();
    for (k, (name, shape)) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let wave = |phase: f64, scale: f64| -> candle_core::Result<Tensor> {
            let t = Tensor::arange(0f32, n as f32, &Device::Cpu)?;
            ((t * 0.37)? + phase)?.sin()?.affine(scale, 0.0)?.reshape(*shape)?.to_device(device)
        };
        let v = vm.get(*shape, name, candle_nn::Init::Const(0.0), DType::F32, device)?;
        Var::from_tensor(&v)?.set(&wave(k as f64, 0.5)?)?;
        vars.push((name, v, wave(k as f64 + 0.5, 2.0)?));
    }
    let mut opt = Sgd::new(&vm, 0.9, 5e-4, BTreeMap::new())?;
    opt.update = update;
    for step in 0..5 {
        // Every parameter gets a gradient at every step, so the flat update runs all five.
        let mut loss = Tensor::zeros((), DType::F32, device)?;
        for (_, v, scale) in &vars {
            loss = (loss + (v * v)?.mul(&(scale + step as f64)?)?.sum_all()?)?;
        }
        opt.step(&loss.backward()?, 0.1 / (step + 1) as f64)?;
    }
    let mut out = BTreeMap::new();
    for (name, v, _) in &vars {
        out.insert(name.to_string(), v.flatten_all()?.to_vec1::<f32>()?);
    }
    for (name, b) in opt.buffers()? {
        out.insert(format!("momentum.{name}"), b.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the CPU the two updates agree everywhere, over every value of the five tensors and
    /// their buffers; a flat update off by a rounding step in one value is counted.
    #[test]
    fn the_updates_agree_on_the_cpu() {
        let (differing, total) = flat_update_differing(&Device::Cpu).unwrap();
        assert_eq!(differing, 0);
        assert_eq!(total, 2 * (64 * 64 * 9 + 64 + 64 + 640 + 10));
        let want = five_steps(&Device::Cpu, Update::PerParam).unwrap();
        let mut got = want.clone();
        let v = &mut got.get_mut("momentum.fc.bias").unwrap()[3];
        *v = f32::from_bits(v.to_bits() + 1);
        assert_eq!(count_differing(&got, &want).unwrap(), (1, total));
        got.remove("momentum.fc.bias");
        assert!(count_differing(&got, &want).is_err(), "a missing buffer is no agreement");
    }
}
