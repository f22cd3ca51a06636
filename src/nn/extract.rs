//! Feature extraction and teacher logits, eval mode (BN with running statistics).
//!
//! Output: a row-major `n x dim` f32 matrix in input order, where for a tap with feature map
//! `(C, h, w)`:
//!
//! | pool | dim | row layout |
//! |---|---|---|
//! | `Avg` | `C` | per-channel mean |
//! | `Adaptive(s)` | `C*s*s` | PyTorch `adaptive_avg_pool2d(s)` then flatten `(C, s, s)` |
//! | `Flatten` | `C*h*w` | the map flattened as `(C, h, w)` |
//! | `Dim(n)` | `C*s*s <= n` | `Adaptive(s)` with the largest `s <= min(h, w)` that fits `n` (at least 1) |
//!
//! `Dim(n)` is the layer-wise protocol's pooling (Goyal et al. 2019 pool every ResNet stage to
//! about 9k values so layers are compared at similar sizes; `dim1200` gives 1,024-1,152 values
//! for every tap of `resnet_cpu`).

use super::arch::{Arch, Net};
use super::checkpoint::build_inference_model;
use super::data::{fill_batch, Augment, ImageData, Normalization};
use super::resnet::Tap;
use super::NnError;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a feature map becomes a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// Global average pooling.
    Avg,
    /// Adaptive average pooling to `s x s`, then flatten.
    Adaptive(usize),
    /// No pooling.
    Flatten,
    /// Adaptive average pooling to the largest `s x s` grid whose `C*s*s` fits the budget.
    Dim(usize),
}

impl Pool {
    /// Feature dimension for a `(c, h, w)` map.
    pub fn dim(self, c: usize, h: usize, w: usize) -> usize {
        match self {
            Pool::Avg => c,
            Pool::Adaptive(s) => c * s * s,
            Pool::Flatten => c * h * w,
            Pool::Dim(n) => c * Self::budget_side(n, c, h, w).pow(2),
        }
    }

    /// The grid side `Dim(n)` uses for a `(c, h, w)` map.
    fn budget_side(n: usize, c: usize, h: usize, w: usize) -> usize {
        (1..=h.min(w)).take_while(|s| c * s * s <= n).last().unwrap_or(1)
    }

    /// Appends the pooled features of one `(c, h, w)` map to `out`.
    fn apply(self, map: &[f32], c: usize, h: usize, w: usize, out: &mut Vec<f32>) {
        let plane = h * w;
        match self {
            Pool::Flatten => out.extend_from_slice(map),
            Pool::Avg => out.extend(map.chunks_exact(plane).map(|p| p.iter().sum::<f32>() / plane as f32)),
            Pool::Dim(n) => Pool::Adaptive(Self::budget_side(n, c, h, w)).apply(map, c, h, w, out),
            Pool::Adaptive(s) => {
                for ch in 0..c {
                    let p = &map[ch * plane..(ch + 1) * plane];
                    for oy in 0..s {
                        let (y0, y1) = (oy * h / s, ((oy + 1) * h).div_ceil(s));
                        for ox in 0..s {
                            let (x0, x1) = (ox * w / s, ((ox + 1) * w).div_ceil(s));
                            let total: f32 = (y0..y1).map(|y| p[y * w + x0..y * w + x1].iter().sum::<f32>()).sum();
                            out.push(total / ((y1 - y0) * (x1 - x0)) as f32);
                        }
                    }
                }
            }
        }
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pool::Avg => f.write_str("avg"),
            Pool::Adaptive(s) => write!(f, "adaptive{s}"),
            Pool::Flatten => f.write_str("flatten"),
            Pool::Dim(n) => write!(f, "dim{n}"),
        }
    }
}

impl FromStr for Pool {
    type Err = NnError;
    /// `avg`, `flatten`, `adaptiveS` / `adaptive:S` with `S >= 1`, or `dimN` with `N >= 1`.
    fn from_str(s: &str) -> Result<Self, NnError> {
        match s {
            "avg" => return Ok(Pool::Avg),
            "flatten" => return Ok(Pool::Flatten),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("dim").and_then(|r| r.parse::<usize>().ok()) {
            if n > 0 {
                return Ok(Pool::Dim(n));
            }
        }
        let size = s.strip_prefix("adaptive").map(|r| r.trim_start_matches(':'));
        match size.and_then(|r| r.parse::<usize>().ok()) {
            Some(n) if n > 0 => Ok(Pool::Adaptive(n)),
            _ => Err(NnError::invalid(format!(
                "unknown pooling `{s}` (expected avg, flatten, adaptiveN or dimN, e.g. adaptive2 or dim1200)"
            ))),
        }
    }
}

/// Runs the network in eval mode over `data` in batches, calling `f` with each output.
fn for_batches(
    weights: &VarMap,
    arch: &Arch,
    norm: &Normalization,
    data: &ImageData,
    batch_size: usize,
    device: &Device,
    mut f: impl FnMut(&Tensor, &Net) -> Result<(), NnError>,
) -> Result<(), NnError> {
    data.validate()?;
    norm.check_channels(data.c)?;
    if data.c != arch.in_channels() || batch_size == 0 || (data.t > 1 && !arch.is_video()) {
        return Err(NnError::invalid(format!(
            "data has {} channels and {} frames, the network takes {} channels ({}); batch size {batch_size}",
            data.c,
            data.t,
            arch.in_channels(),
            if arch.is_video() { "clips" } else { "images" }
        )));
    }
    let model = build_inference_model(arch, weights, device)?;
    let lut = norm.lut();
    let len = data.image_len();
    let mut buf = vec![0f32; batch_size.min(data.n) * len];
    let idx: Vec<usize> = (0..data.n).collect();
    for chunk in idx.chunks(batch_size) {
        let xb = &mut buf[..chunk.len() * len];
        fill_batch(data, chunk, &lut, &Augment::default(), None::<&mut rand_chacha::ChaCha8Rng>, xb);
        let x = Tensor::from_slice(xb, arch.input_shape(chunk.len(), data.c, data.t, data.h, data.w), device)?;
        f(&x, &model)?;
    }
    Ok(())
}

/// Features at `tap`, pooled by `pool`: `(n * dim values, dim)`.
#[allow(clippy::too_many_arguments)]
pub fn extract(
    weights: &VarMap,
    arch: &Arch,
    norm: &Normalization,
    data: &ImageData,
    tap: Tap,
    pool: Pool,
    batch_size: usize,
    device: &Device,
) -> Result<(Vec<f32>, usize), NnError> {
    let mut each = extract_taps(weights, arch, norm, data, &[tap], pool, batch_size, device, &mut |_| ())?;
    Ok(each.remove(0))
}

/// [`extract`] at each of `taps` from one forward pass per batch (to the deepest tap): the
/// features of each tap have the bits [`extract`] gives it alone. `done` is told each batch's
/// size once it is through.
#[allow(clippy::too_many_arguments)]
pub fn extract_taps(
    weights: &VarMap,
    arch: &Arch,
    norm: &Normalization,
    data: &ImageData,
    taps: &[Tap],
    pool: Pool,
    batch_size: usize,
    device: &Device,
    done: &mut dyn FnMut(usize),
) -> Result<Vec<(Vec<f32>, usize)>, NnError> {
    let mut out: Vec<(Vec<f32>, usize)> = vec![(Vec::new(), 0); taps.len()];
    for_batches(weights, arch, norm, data, batch_size, device, |x, model| {
        for (fm, (values, dim)) in model.forward_taps(x, taps, false)?.into_iter().zip(out.iter_mut()) {
            *dim = pool_batch(&fm, pool, data.n, values)?;
        }
        done(x.dim(0)?);
        Ok(())
    })?;
    if data.n == 0 {
        // No batch ran; the dimensions still follow from the shapes.
        let probe = ImageData { pixels: &vec![0u8; data.image_len()], n: 1, ..*data };
        let dims = extract_taps(weights, arch, norm, &probe, taps, pool, 1, device, &mut |_| ())?;
        out.iter_mut().zip(dims).for_each(|(o, (_, d))| o.1 = d);
    }
    Ok(out)
}

/// Appends the pooled rows of one batch's feature map to `out` (room for all `n` rows is
/// reserved with the first batch); returns the feature dimension.
fn pool_batch(fm: &Tensor, pool: Pool, n: usize, out: &mut Vec<f32>) -> Result<usize, NnError> {
    // Clip maps (N, C, T, h, w): average pooling runs over time too; of adaptive pooling (a
    // budget's included) and flattening, only `flatten` keeps time: time is averaged before
    // adaptive bins, which are spatial.
    let fm = match (fm.rank(), pool) {
        (5, Pool::Adaptive(_) | Pool::Dim(_)) => fm.mean(2)?,
        (5, _) => {
            let (b, c, t, h, w) = fm.dims5()?;
            fm.reshape((b, c, t * h, w))?
        }
        _ => fm.clone(),
    };
    let (b, c, h, w) = fm.dims4()?;
    if let Pool::Adaptive(side) = pool {
        if side > h.min(w) {
            // Finer bins than the map's cells only repeat its values: a larger `dim` that holds
            // nothing more, and weighs some cells more than others in a probe.
            return Err(NnError::invalid(format!(
                "pool = \"adaptive{side}\" asks for a {side}x{side} grid of a {h}x{w} feature map, whose values it \
                 would only repeat; use adaptive{} or less (or dimN, which stays within the map)",
                h.min(w)
            )));
        }
    }
    let dim = pool.dim(c, h, w);
    let values = fm.flatten_all()?.to_vec1::<f32>()?;
    if out.is_empty() {
        out.reserve(n * dim);
    }
    for map in values.chunks_exact(c * h * w).take(b) {
        pool.apply(map, c, h, w, out);
    }
    Ok(dim)
}

/// Logits in eval mode: `(n * num_classes values, num_classes)`.
pub fn logits(
    weights: &VarMap,
    arch: &Arch,
    norm: &Normalization,
    data: &ImageData,
    batch_size: usize,
    device: &Device,
) -> Result<(Vec<f32>, usize), NnError> {
    let mut out = Vec::with_capacity(data.n * arch.num_classes());
    for_batches(weights, arch, norm, data, batch_size, device, |x, model| {
        out.extend(model.forward_t(x, false)?.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    })?;
    Ok((out, arch.num_classes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_parsing_and_adaptive_bins() {
        assert_eq!("adaptive2".parse::<Pool>().unwrap(), Pool::Adaptive(2));
        assert_eq!("adaptive:3".parse::<Pool>().unwrap(), Pool::Adaptive(3));
        assert!("adaptive0".parse::<Pool>().is_err());
        assert_eq!(Pool::Adaptive(2).to_string().parse::<Pool>().unwrap(), Pool::Adaptive(2));
        // 1 channel 3x3 map 0..9 pooled to 2x2: overlapping bins rows/cols {0,1} and {1,2}.
        let map: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let mut out = Vec::new();
        Pool::Adaptive(2).apply(&map, 1, 3, 3, &mut out);
        assert_eq!(out, vec![2.0, 3.0, 5.0, 6.0]);
        out.clear();
        Pool::Avg.apply(&map, 1, 3, 3, &mut out);
        assert_eq!(out, vec![4.0]);
    }

    #[test]
    fn dimension_budget_picks_the_largest_grid_that_fits() {
        assert_eq!("dim1200".parse::<Pool>().unwrap(), Pool::Dim(1200));
        assert!("dim0".parse::<Pool>().is_err());
        assert_eq!(Pool::Dim(1200).to_string(), "dim1200");
        // resnet_cpu on 28x28: conv1 16@28, res2 16@28, res3 32@14, res4 64@7, res5 128@4.
        let dims: Vec<usize> = [(16, 28), (16, 28), (32, 14), (64, 7), (128, 4)]
            .iter()
            .map(|&(c, s)| Pool::Dim(1200).dim(c, s, s))
            .collect();
        assert_eq!(dims, vec![1024, 1024, 1152, 1024, 1152]);
        // Never below one value per channel, never above the map itself.
        assert_eq!(Pool::Dim(10).dim(64, 7, 7), 64);
        assert_eq!(Pool::Dim(100_000).dim(2, 3, 3), 18);
        let map: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let mut out = Vec::new();
        Pool::Dim(4).apply(&map, 1, 3, 3, &mut out);
        assert_eq!(out, vec![2.0, 3.0, 5.0, 6.0], "the same bins as adaptive2");
    }

    /// On a clip's map time is averaged first and the bins are spatial, with a budget as with a
    /// grid; with a budget they once ran over time and height stacked (halves of the clip).
    #[test]
    fn clip_maps_are_binned_in_space_after_averaging_time() {
        let (c, t, h, w) = (2, 4, 2, 2);
        let values: Vec<f32> = (0..c * t * h * w).map(|v| (v * v % 11) as f32).collect();
        let fm = Tensor::from_vec(values, (1, c, t, h, w), &candle_core::Device::Cpu).unwrap();
        let pooled = |pool: Pool| {
            let mut out = Vec::new();
            let dim = pool_batch(&fm, pool, 1, &mut out).unwrap();
            (dim, out)
        };
        let reference: Vec<f32> = fm.mean(2).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(pooled(Pool::Adaptive(2)), (c * h * w, reference.clone()));
        assert_eq!(pooled(Pool::Dim(8)), (c * h * w, reference));
        let (dim, flat) = pooled(Pool::Flatten);
        assert_eq!((dim, flat.len()), (c * t * h * w, c * t * h * w), "flatten keeps time");
    }
}
