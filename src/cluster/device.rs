//! Lloyd iterations on a candle device (the GPU): the same algorithm as [`super::lloyd`] from the
//! same initial centroids, with the distance GEMM, the argmin and the centroid sums on the device.
//! Only the labels (for the convergence test and the counts) and the k x d sums come back to the
//! host each iteration; empty clusters are split on the host exactly as on the CPU.
//!
//! Sums are f32 on the device rather than f64, so results agree with the CPU path to float
//! rounding, not bit for bit (which is why the device is provenance, not identity: README, Devices).

use candle_core::{DType, Device, Tensor};

use super::data::Points;
use super::lloyd::{split_empty, LloydOutput};
use super::ClusterError;

/// Rows per distance block: about 64M distances (256 MiB) at a time whatever k is.
fn block_rows(n: usize, k: usize) -> usize {
    ((1usize << 26) / k.max(1)).clamp(1, n.max(1))
}

fn dev(e: candle_core::Error) -> ClusterError {
    ClusterError::Device(crate::candle_error::Brief(&e).to_string())
}

/// Labels and inertia of the nearest-centroid assignment of every row of `x`.
fn assign(x: &Tensor, xn: &Tensor, centroids: &[f32], k: usize) -> candle_core::Result<(Tensor, f64)> {
    let (n, d) = x.dims2()?;
    let c = Tensor::from_slice(centroids, (k, d), x.device())?;
    let cn = c.sqr()?.sum(1)?.unsqueeze(0)?;
    let ct = c.t()?;
    let bs = block_rows(n, k);
    let (mut labels, mut inertia) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(bs) {
        let m = bs.min(n - start);
        // ||x||^2 does not move the argmin; it is added back for the inertia only.
        let dist = (x.narrow(0, start, m)?.matmul(&ct)? * -2.0)?.broadcast_add(&cn)?;
        labels.push(dist.argmin(1)?);
        let best = (dist.min(1)? + xn.narrow(0, start, m)?)?.relu()?;
        inertia.push(best.to_dtype(DType::F64)?.sum_all()?);
    }
    let inertia = Tensor::stack(&inertia, 0)?.sum_all()?.to_scalar::<f64>()?;
    Ok((Tensor::cat(&labels, 0)?, inertia))
}

/// Runs up to `iterations` Lloyd steps from `centroids` on `device` (see [`super::lloyd::run`]).
pub(super) fn run(
    points: &Points<'_>,
    mut centroids: Vec<f32>,
    k: usize,
    iterations: usize,
    device: &Device,
    on_iter: &mut dyn FnMut(usize, f64),
) -> Result<LloydOutput, ClusterError> {
    let (n, d) = (points.len(), points.dim());
    let host: Vec<f32> = (0..n).flat_map(|i| points.visible_row(i)).collect();
    let x = Tensor::from_vec(host, (n, d), device).map_err(dev)?;
    let xn = Tensor::from_slice(points.sqnorms(), n, device).map_err(dev)?;
    let (mut trace, mut splits, mut last_split) = (Vec::with_capacity(iterations), 0, false);
    let mut prev: Vec<u32> = Vec::new();
    for it in 0..iterations {
        let (labels, inertia) = assign(&x, &xn, &centroids, k).map_err(dev)?;
        trace.push(inertia);
        on_iter(it, inertia);
        let host_labels = labels.to_vec1::<u32>().map_err(dev)?;
        if !last_split && host_labels == prev {
            break;
        }
        let mut counts = vec![0usize; k];
        host_labels.iter().for_each(|&l| counts[l as usize] += 1);
        let sums = Tensor::zeros((k, d), DType::F32, device)
            .and_then(|z| z.index_add(&labels, &x, 0))
            .and_then(|s| s.flatten_all()?.to_vec1::<f32>())
            .map_err(dev)?;
        for (c, &cnt) in counts.iter().enumerate() {
            if cnt > 0 {
                let inv = 1.0 / cnt as f32;
                for j in 0..d {
                    centroids[c * d + j] = sums[c * d + j] * inv;
                }
            }
        }
        let s = split_empty(&mut centroids, counts, d, points, &host_labels);
        splits += s;
        last_split = s > 0;
        prev = host_labels;
    }
    Ok(LloydOutput { centroids, inertia_per_iter: trace, splits })
}
