//! The linear probe on a candle device (the GPU): the same standardisation, batches, shuffles,
//! cosine schedule and momentum SGD as [`super::probe`], with the features resident on the device
//! and every step's GEMMs there. The epoch's loss is summed on the device and read once per epoch.
//! f32 rounding differs from the CPU kernels, so results agree to rounding, not bit for bit.

use candle_core::{DType, Device, Tensor};

use super::probe::{check_loss, linear_probe, result, score_logits, ProbeCore};
use super::standardize::Standardizer;
use super::{EvalError, ProbeConfig, ProbeData, ProbeResult, ProbeSolver};

fn dev(e: candle_core::Error) -> EvalError {
    EvalError::Device(crate::candle_error::Brief(&e).to_string())
}

/// [`linear_probe`] with its work on `device`: the CPU kernels themselves on the CPU.
pub fn linear_probe_on(
    device: &Device,
    data: ProbeData,
    cfg: &ProbeConfig,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> Result<ProbeResult, EvalError> {
    if device.is_cpu() || cfg.solver == ProbeSolver::Lbfgs {
        if !device.is_cpu() {
            tracing::info!("the L-BFGS probe runs on the CPU (its full-batch passes are not ported to devices)");
        }
        return linear_probe(data, cfg, on_epoch);
    }
    probe_with_tensors(device, data, cfg, on_epoch)
}

/// Standardised rows of `x`, uploaded as an `[n, d]` tensor.
fn upload(st: &Standardizer, x: &[f32], d: usize, device: &Device) -> Result<Tensor, EvalError> {
    let n = x.len() / d;
    let mut buf = Vec::new();
    st.gather(x, &(0..n).collect::<Vec<_>>(), &mut buf);
    Tensor::from_vec(buf, (n, d), device).map_err(dev)
}

/// The tensor path of [`linear_probe_on`], on any device (tests and `cfrun check-device` run it on
/// the CPU).
pub fn probe_with_tensors(
    device: &Device,
    data: ProbeData,
    cfg: &ProbeConfig,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> Result<ProbeResult, EvalError> {
    let mut core = ProbeCore::new(data, cfg)?;
    let ProbeData { train_x, train_y, test_x, test_y, d, num_classes: c } = data;
    let (n, m, bs) = (core.n, core.m, core.bs);
    let x = upload(&core.st, train_x, d, device)?;
    let y = Tensor::from_slice(train_y, n, device).map_err(dev)?;
    let onehot_all = candle_nn::encoding::one_hot(y, c, 1f32, 0f32).map_err(dev)?;
    let (mut w, mut b) =
        (Tensor::zeros((d, c), DType::F32, device).map_err(dev)?, Tensor::zeros(c, DType::F32, device).map_err(dev)?);
    let (mut vw, mut vb) = (w.zeros_like().map_err(dev)?, b.zeros_like().map_err(dev)?);
    let mut loss_per_epoch = Vec::with_capacity(cfg.epochs);
    let (mom, wd) = (f64::from(cfg.momentum), f64::from(cfg.weight_decay));
    let mut t = 0usize;
    for epoch in 0..cfg.epochs {
        core.shuffle();
        let mut loss = Tensor::zeros((), DType::F32, device).map_err(dev)?;
        for batch in core.order.chunks(bs) {
            let step = || -> candle_core::Result<(Tensor, Tensor, Tensor, Tensor, Tensor)> {
                let ids: Vec<u32> = batch.iter().map(|&i| i as u32).collect();
                let ids = Tensor::from_vec(ids, batch.len(), device)?;
                let xb = x.index_select(&ids, 0)?;
                let target = onehot_all.index_select(&ids, 0)?;
                let logits = xb.matmul(&w)?.broadcast_add(&b)?;
                let logp = candle_nn::ops::log_softmax(&logits, 1)?;
                let batch_loss = (logp.mul(&target)?.sum_all()? * -1.0)?;
                let g = ((logp.exp()? - target)? / batch.len() as f64)?;
                let lr = f64::from(cfg.lr) * 0.5 * core.cosine2(t);
                let gw = xb.t()?.matmul(&g)?;
                let vw2 = ((&vw * mom)? + gw)?.add(&(&w * wd)?)?;
                let vb2 = ((&vb * mom)? + g.sum(0)?)?;
                let w2 = (&w - (&vw2 * lr)?)?;
                let b2 = (&b - (&vb2 * lr)?)?;
                Ok(((&loss + batch_loss)?, w2, b2, vw2, vb2))
            };
            (loss, w, b, vw, vb) = step().map_err(dev)?;
            t += 1;
        }
        let mean = f64::from(loss.to_scalar::<f32>().map_err(dev)?) / n as f64;
        check_loss(epoch, mean, cfg)?;
        loss_per_epoch.push(mean);
        on_epoch(epoch, mean);
    }
    let logits = |x: &Tensor| -> Result<Vec<f32>, EvalError> {
        x.matmul(&w).and_then(|l| l.broadcast_add(&b)).and_then(|l| l.flatten_all()?.to_vec1::<f32>()).map_err(dev)
    };
    let train = score_logits(&logits(&x)?, train_y, c);
    let test = score_logits(&logits(&upload(&core.st, test_x, d, device)?)?, test_y, c);
    Ok(result(&train, &test, n, m, c, loss_per_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn tensor_path_matches_the_cpu_probe() {
        // Four noisy Gaussian classes in 16 dims; the two paths must land on the same accuracy.
        let mut rng = crate::rng::seeded(3);
        let mut make = |n: usize| {
            let mut x = Vec::with_capacity(n * 16);
            let y: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
            for &l in &y {
                for j in 0..16 {
                    let centre = if j % 4 == l as usize { 1.0 } else { 0.0 };
                    x.push(centre + rng.random_range(-1.5f32..1.5));
                }
            }
            (x, y)
        };
        let (tx, ty) = make(1200);
        let (vx, vy) = make(400);
        let cfg = ProbeConfig { epochs: 5, ..ProbeConfig::default() };
        let data = ProbeData { train_x: &tx, train_y: &ty, test_x: &vx, test_y: &vy, d: 16, num_classes: 4 };
        let cpu = linear_probe(data, &cfg, &mut |_, _| {}).unwrap();
        let dev = probe_with_tensors(&Device::Cpu, data, &cfg, &mut |_, _| {}).unwrap();
        assert!(cpu.test_top1 > 0.6, "{cpu:?}");
        assert!((cpu.test_top1 - dev.test_top1).abs() <= 0.01, "{} vs {}", cpu.test_top1, dev.test_top1);
        for (a, b) in cpu.loss_per_epoch.iter().zip(&dev.loss_per_epoch) {
            assert!((a - b).abs() <= 1e-3 * a, "loss {a} vs {b}");
        }
        let same = linear_probe_on(&Device::Cpu, data, &cfg, &mut |_, _| {}).unwrap();
        assert_eq!(same, cpu, "on the CPU, linear_probe_on is the CPU probe");
    }
}
