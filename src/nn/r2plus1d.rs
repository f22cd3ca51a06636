//! R(2+1)D (Tran et al., CVPR 2018) for small clips: every 3-D convolution is factorised into a
//! spatial `k x k` convolution per frame, BN and ReLU, then a temporal convolution of `kt`
//! frames; the middle width follows the paper's rule `M = kt d^2 Cin Cout / (d^2 Cin + kt Cout)`
//! so a (2+1)-D conv has about as many weights as the 3-D conv it replaces.
//!
//! Layout: activations stay as `(B*T, C, H, W)` frames (frame-major within a clip), so the
//! spatial convolutions, BN and residual ops are the fast 2-D CPU ops of [`super::conv`] and
//! [`super::batchnorm`] unchanged. A temporal convolution is the frames shifted by `-kt/2..kt/2`
//! (zero padded), stacked along channels and mixed by a 1x1 convolution (again the fast op):
//! `y[t] = sum_dt W_dt x[t + dt - kt/2]`. A temporal stride of 2 keeps the even frames.
//! On CPU (f32) the stem and every block run as one fused op each instead
//! (`nn/fused_video.rs`, in train and eval mode; eval-mode outputs carry no gradient); the
//! per-layer ops above are the reference and the path on other devices.
//!
//! Shapes for input `(N, C, T, H, W)` (a 4-D input is one frame per clip):
//!
//! | tap / var prefix | layers | output |
//! |---|---|---|
//! | `conv1` (+ `bn1`) | (2+1)D, spatial stride `stem_stride` | `(N, stem_width, T, H/s, W/s)` |
//! | `res2` | `blocks[0]` blocks, temporal stride `temporal_strides[0]` | `(N, widths[0], T/t2, ..)` |
//! | `res3`..`res5` | spatial stride 2, temporal stride `temporal_strides[i]` | .. |
//! | `fc` | global average pool over time and space, linear | `(N, num_classes)` |
//!
//! Var names: `conv1.spatial.weight` `(M, C, k, k)`, `conv1.mid_bn.*`, `conv1.temporal.weight`
//! `(Cout, M, kt, 1)` (PyTorch's Conv3d layout without the last axis), `res3.0.conv1.*`,
//! `res3.0.bn1.*`, `res3.0.shortcut.conv.weight`, `fc.*`.

use candle_core::{Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::batchnorm::BatchNorm;
use super::conv::conv2d;
use super::fused_video::{self, Chain, UnitConv};
use super::resnet::{classifier, Conv, ConvCost, Tap};
use super::temporal::shift_stack;
use super::{use_fused_kernels, NnError};

/// Architecture of an [`R2Plus1D`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct R2Plus1DConfig {
    /// Channels of the input frames.
    pub in_channels: usize,
    /// Output channels of the stem.
    pub stem_width: usize,
    /// Spatial stride of the stem (1 or 2).
    pub stem_stride: usize,
    /// Channels of res2..res5.
    pub widths: [usize; 4],
    /// Blocks in res2..res5.
    pub blocks: [usize; 4],
    /// Temporal stride of the first block of res2..res5 (1 or 2; 2 is skipped where the frames
    /// left are fewer than 2 or odd).
    pub temporal_strides: [usize; 4],
    /// Frames per temporal convolution (odd).
    pub temporal_kernel: usize,
    /// Outputs of the linear head.
    pub num_classes: usize,
}

impl R2Plus1DConfig {
    fn base(in_channels: usize, num_classes: usize, stem: usize, widths: [usize; 4], blocks: [usize; 4]) -> Self {
        R2Plus1DConfig {
            in_channels,
            stem_width: stem,
            stem_stride: 2,
            widths,
            blocks,
            temporal_strides: [1, 2, 2, 2],
            temporal_kernel: 3,
            num_classes,
        }
    }

    /// The preset called `name`: `r2plus1d_tiny` (tests), `r2plus1d_small` (the paper's
    /// R(2+1)D-18 role on a CPU), `r2plus1d_large` (the R(2+1)D-34 role: wider, twice the
    /// blocks), `r2plus1d_gpu` (R(2+1)D-18 widths and depth).
    pub fn preset(name: &str, in_channels: usize, num_classes: usize) -> Option<Self> {
        let (stem, widths, blocks) = match name {
            "r2plus1d_tiny" => (4, [4, 8, 8, 8], [1; 4]),
            "r2plus1d_small" => (8, [8, 16, 32, 64], [1; 4]),
            "r2plus1d_large" => (12, [12, 24, 48, 96], [2; 4]),
            "r2plus1d_gpu" => (64, [64, 128, 256, 512], [2; 4]),
            _ => return None,
        };
        Some(Self::base(in_channels, num_classes, stem, widths, blocks))
    }

    /// Rejects zero sizes, even temporal kernels and strides other than 1 and 2.
    pub fn validate(&self) -> std::result::Result<(), NnError> {
        let zero = self.in_channels == 0
            || self.stem_width == 0
            || self.num_classes == 0
            || self.widths.contains(&0)
            || self.blocks.contains(&0);
        let strides_ok = [self.stem_stride].iter().chain(&self.temporal_strides).all(|&s| s == 1 || s == 2);
        if zero || !strides_ok || self.temporal_kernel.is_multiple_of(2) {
            return Err(NnError::invalid(format!(
                "R(2+1)D architecture needs positive sizes, strides 1 or 2 and an odd temporal kernel: {self:?}"
            )));
        }
        Ok(())
    }
}

impl R2Plus1DConfig {
    /// Multiply-accumulates of one clip's forward pass (`t` frames of `h x w`): every spatial,
    /// temporal and shortcut convolution (a temporal one counted over its zero padding too, as
    /// it runs) and the linear head; batch norm, ReLU, pooling and additions are not products.
    pub fn forward_macs(&self, t: usize, h: usize, w: usize) -> u64 {
        let convs: u64 = self.convolutions(t, h, w).iter().map(|c| c.macs).sum();
        convs + (self.widths[3] * self.num_classes) as u64
    }

    /// Values every convolution of one clip's forward pass writes (the spatial and the temporal
    /// half of each (2+1)D conv): what a training step keeps for its backward pass at the least.
    pub fn conv_outputs(&self, t: usize, h: usize, w: usize) -> u64 {
        self.convolutions(t, h, w).iter().map(|c| c.outputs).sum()
    }

    /// Every convolution of one clip's forward pass, in order, as `Conv2Plus1D` runs them.
    fn convolutions(&self, t: usize, h: usize, w: usize) -> Vec<ConvCost> {
        let kt = self.temporal_kernel;
        // A `k x k` spatial conv with padding `k / 2` on `(t, h, w)`: its output size and cost.
        let spatial = |(t, h, w): (usize, usize, usize), cin: usize, cout: usize, k: usize, stride: usize| {
            let out = |x: usize| (x + 2 * (k / 2) - k) / stride + 1;
            let (ho, wo) = (out(h), out(w));
            let cost =
                ConvCost { outputs: (t * ho * wo * cout) as u64, macs: (t * ho * wo * cout * cin * k * k) as u64 };
            ((t, ho, wo), cost)
        };
        // A (2+1)D conv: spatial to the middle width, then temporal.
        let conv = |size: (usize, usize, usize), cin: usize, cout: usize, stride: usize, t_stride: usize| {
            let mid = mid_width(cin, cout, 3, kt);
            let ((t, ho, wo), first) = spatial(size, cin, mid, 3, stride);
            let t = t / effective_stride(t_stride, t);
            let temporal =
                ConvCost { outputs: (t * ho * wo * cout) as u64, macs: (t * ho * wo * cout * kt * mid) as u64 };
            ((t, ho, wo), [first, temporal])
        };
        let (mut size, stem) = conv((t, h, w), self.in_channels, self.stem_width, self.stem_stride, 1);
        let mut all = stem.to_vec();
        let mut cin = self.stem_width;
        for s in 0..4 {
            for b in 0..self.blocks[s] {
                let (stride, t_stride) =
                    if b == 0 { (if s > 0 { 2 } else { 1 }, self.temporal_strides[s]) } else { (1, 1) };
                let width = self.widths[s];
                let (mid, first) = conv(size, cin, width, stride, t_stride);
                all.extend(first);
                all.extend(conv(mid, width, width, 1, 1).1);
                if stride != 1 || t_stride != 1 || cin != width {
                    let frames = size.0 / effective_stride(t_stride, size.0);
                    all.push(spatial((frames, size.1, size.2), cin, width, 1, stride).1);
                }
                (size, cin) = (mid, width);
            }
        }
        all
    }
}

/// The middle width of a (2+1)D conv replacing a `kt x d x d` 3-D conv (at least 1).
pub fn mid_width(cin: usize, cout: usize, d: usize, kt: usize) -> usize {
    (kt * d * d * cin * cout / (d * d * cin + kt * cout)).max(1)
}

/// Frames as a batch: `x` is `(B*T, C, H, W)` with `t` frames per clip.
#[derive(Clone, Debug)]
struct Frames {
    x: Tensor,
    t: usize,
}

/// The temporal stride that applies to `t` frames.
fn effective_stride(stride: usize, t: usize) -> usize {
    if stride == 2 && t >= 2 && t.is_multiple_of(2) {
        2
    } else {
        1
    }
}

/// Keeps every `stride`-th frame of `(B*T, C, H, W)`.
fn subsample(f: &Frames, stride: usize) -> Result<Frames> {
    if stride == 1 {
        return Ok(f.clone());
    }
    let (bt, c, h, w) = f.x.dims4()?;
    let b = bt / f.t;
    let t = f.t / stride;
    let x = f.x.reshape((b, t, stride, c * h * w))?.narrow(2, 0, 1)?.reshape((b * t, c, h, w))?;
    Ok(Frames { x, t })
}

/// The temporal convolution of a (2+1)D conv (no bias).
#[derive(Clone, Debug)]
struct Temporal {
    weight: Tensor,
    kt: usize,
}

impl Temporal {
    fn new(cin: usize, cout: usize, kt: usize, vb: VarBuilder) -> Result<Self> {
        let std = (2.0 / (cout * kt) as f64).sqrt();
        let weight = vb.get_with_hints((cout, cin, kt, 1), "weight", Init::Randn { mean: 0.0, stdev: std })?;
        Ok(Temporal { weight, kt })
    }

    /// `(B*T, cin, H, W) -> (B*T/stride, cout, H, W)`.
    fn forward(&self, f: &Frames, stride: usize) -> Result<Frames> {
        let (bt, c, h, w) = f.x.dims4()?;
        let (b, t) = (bt / f.t, f.t);
        // Channel index dt * C + c, matching the weight permuted to (Cout, kt, C).
        let stacked = shift_stack(&f.x.reshape((b, t, c, h * w))?, self.kt)?;
        let stride = effective_stride(stride, t);
        let stacked = Frames { x: stacked.reshape((b * t, self.kt * c, h, w))?, t };
        let kept = subsample(&stacked, stride)?;
        let cout = self.weight.dim(0)?;
        let wmat = self.weight.permute((0, 2, 1, 3))?.reshape((cout, self.kt * c, 1, 1))?;
        let n = kept.x.dim(0)?;
        let y = conv2d(&kept.x.reshape((n, self.kt * c, h * w, 1))?, &wmat, 1, 0)?;
        Ok(Frames { x: y.reshape((n, cout, h, w))?, t: kept.t })
    }
}

/// A (2+1)D conv: spatial conv, BN, ReLU, temporal conv (its output is not normalised).
#[derive(Clone, Debug)]
struct Conv2Plus1D {
    spatial: Conv,
    mid_bn: BatchNorm,
    temporal: Temporal,
    t_stride: usize,
}

impl Conv2Plus1D {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cin: usize,
        cout: usize,
        k: usize,
        kt: usize,
        stride: usize,
        t_stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mid = mid_width(cin, cout, k, kt);
        Ok(Conv2Plus1D {
            spatial: Conv::new(cin, mid, k, stride, vb.pp("spatial"))?,
            mid_bn: BatchNorm::new(mid, vb.pp("mid_bn"))?,
            temporal: Temporal::new(mid, cout, kt, vb.pp("temporal"))?,
            t_stride,
        })
    }

    fn forward(&self, f: &Frames, train: bool) -> Result<Frames> {
        let x = self.mid_bn.forward_act(&self.spatial.forward(&f.x)?, None, true, train)?;
        self.temporal.forward(&Frames { x, t: f.t }, self.t_stride)
    }

    /// This conv on `t` frames per clip followed by `bn`, as two fused-op units.
    fn units<'a>(&'a self, bn: &'a BatchNorm, t: usize) -> [(UnitConv<'a>, &'a BatchNorm); 2] {
        let stride = effective_stride(self.t_stride, t);
        [
            (UnitConv::Spatial(self.spatial.parts()), &self.mid_bn),
            (UnitConv::Temporal { weight: &self.temporal.weight, stride }, bn),
        ]
    }
}

/// The residual block of R(2+1)D-18/34: two (2+1)D convs.
#[derive(Clone, Debug)]
struct Block {
    conv1: Conv2Plus1D,
    bn1: BatchNorm,
    conv2: Conv2Plus1D,
    bn2: BatchNorm,
    shortcut: Option<(Conv, BatchNorm)>,
    t_stride: usize,
}

impl Block {
    fn new(cin: usize, cout: usize, stride: usize, t_stride: usize, kt: usize, vb: VarBuilder) -> Result<Self> {
        let shortcut = if stride != 1 || t_stride != 1 || cin != cout {
            let sc = vb.pp("shortcut");
            Some((Conv::new(cin, cout, 1, stride, sc.pp("conv"))?, BatchNorm::new(cout, sc.pp("bn"))?))
        } else {
            None
        };
        Ok(Block {
            conv1: Conv2Plus1D::new(cin, cout, 3, kt, stride, t_stride, vb.pp("conv1"))?,
            bn1: BatchNorm::new(cout, vb.pp("bn1"))?,
            conv2: Conv2Plus1D::new(cout, cout, 3, kt, 1, 1, vb.pp("conv2"))?,
            bn2: BatchNorm::new(cout, vb.pp("bn2"))?,
            shortcut,
            t_stride,
        })
    }

    /// The block as one fused op (`fused`) or one op per layer.
    fn forward(&self, f: &Frames, train: bool, fused: bool) -> Result<Frames> {
        if !fused {
            return self.forward_layers(f, train);
        }
        let sub = effective_stride(self.t_stride, f.t);
        let mut units = Vec::from(self.conv1.units(&self.bn1, f.t));
        units.extend(self.conv2.units(&self.bn2, f.t / sub));
        let shortcut = self.shortcut.as_ref().map(|(conv, bn)| (conv.parts(), bn));
        let (x, t) = fused_video::forward(&f.x, f.t, &Chain { units, residual: true, shortcut, sub }, train)?;
        Ok(Frames { x, t })
    }

    fn forward_layers(&self, f: &Frames, train: bool) -> Result<Frames> {
        let h = self.conv1.forward(f, train)?;
        let h = Frames { x: self.bn1.forward_act(&h.x, None, true, train)?, t: h.t };
        let h = self.conv2.forward(&h, train)?;
        let skip = match &self.shortcut {
            Some((conv, bn)) => {
                let s = subsample(f, effective_stride(self.t_stride, f.t))?;
                bn.forward_act(&conv.forward(&s.x)?, None, false, train)?
            }
            None => f.x.clone(),
        };
        Ok(Frames { x: self.bn2.forward_act(&h.x, Some(&skip), true, train)?, t: h.t })
    }
}

/// The network: (2+1)D stem, four residual stages, global average pooling, linear head.
#[derive(Clone, Debug)]
pub struct R2Plus1D {
    conv1: Conv2Plus1D,
    bn1: BatchNorm,
    stages: Vec<Vec<Block>>,
    fc: Linear,
}

impl R2Plus1D {
    /// Builds the network, creating missing vars in `vb`.
    pub fn new(cfg: &R2Plus1DConfig, vb: VarBuilder) -> Result<Self> {
        let kt = cfg.temporal_kernel;
        let mut stages = Vec::with_capacity(4);
        let mut cin = cfg.stem_width;
        for s in 0..4 {
            let svb = vb.pp(Tap::ALL[s + 1].name());
            let mut stage = Vec::with_capacity(cfg.blocks[s]);
            for b in 0..cfg.blocks[s] {
                let (stride, t_stride) =
                    if b == 0 { (if s > 0 { 2 } else { 1 }, cfg.temporal_strides[s]) } else { (1, 1) };
                stage.push(Block::new(cin, cfg.widths[s], stride, t_stride, kt, svb.pp(b))?);
                cin = cfg.widths[s];
            }
            stages.push(stage);
        }
        let fc = classifier(cin, cfg.num_classes, vb.pp("fc"))?;
        // The stem's middle width follows the same rule as the blocks', with its own 3x3 spatial
        // kernel (6 channels for 1 -> 8); the paper's 45-channel stem is torchvision's fixed
        // number for a 7x7 kernel, not this rule (which would give 83 for 3 -> 64 at 7x7).
        let conv1 = Conv2Plus1D::new(cfg.in_channels, cfg.stem_width, 3, kt, cfg.stem_stride, 1, vb.pp("conv1"))?;
        Ok(R2Plus1D { conv1, bn1: BatchNorm::new(cfg.stem_width, vb.pp("bn1"))?, stages, fc })
    }

    /// `(N, C, T, H, W)` (or `(N, C, H, W)`, one frame) as frames `(N*T, C, H, W)`.
    fn to_frames(xs: &Tensor) -> Result<Frames> {
        if xs.rank() == 4 {
            return Ok(Frames { x: xs.clone(), t: 1 });
        }
        let (n, c, t, h, w) = xs.dims5()?;
        let x = if c == 1 {
            xs.reshape((n * t, 1, h, w))?
        } else {
            xs.permute((0, 2, 1, 3, 4))?.contiguous()?.reshape((n * t, c, h, w))?
        };
        Ok(Frames { x, t })
    }

    fn frames_to(&self, xs: &Tensor, tap: Tap, train: bool) -> Result<Frames> {
        self.frames_to_with(xs, tap, train, use_fused_kernels(xs.device(), xs.dtype()))
    }

    /// [`R2Plus1D::frames_to`] with the stem and every block as one fused op each (`fused`, CPU
    /// f32 only) or with one op per layer.
    fn frames_to_with(&self, xs: &Tensor, tap: Tap, train: bool, fused: bool) -> Result<Frames> {
        let f = Self::to_frames(xs)?;
        let mut h = if fused {
            let chain =
                Chain { units: Vec::from(self.conv1.units(&self.bn1, f.t)), residual: false, shortcut: None, sub: 1 };
            let (x, t) = fused_video::forward(&f.x, f.t, &chain, train)?;
            Frames { x, t }
        } else {
            let h = self.conv1.forward(&f, train)?;
            Frames { x: self.bn1.forward_act(&h.x, None, true, train)?, t: h.t }
        };
        let last = match tap {
            Tap::Conv1 => return Ok(h),
            Tap::Res2 => 0,
            Tap::Res3 => 1,
            Tap::Res4 => 2,
            Tap::Res5 => 3,
        };
        for stage in &self.stages[..=last] {
            for block in stage {
                h = block.forward(&h, train, fused)?;
            }
        }
        Ok(h)
    }

    /// The feature map at `tap`, `(N, C, T', h, w)`; stops computing there.
    pub fn forward_to(&self, xs: &Tensor, tap: Tap, train: bool) -> Result<Tensor> {
        let f = self.frames_to(xs, tap, train)?;
        let (nt, c, h, w) = f.x.dims4()?;
        f.x.reshape((nt / f.t, f.t, c, h, w))?.permute((0, 2, 1, 3, 4))?.contiguous()
    }

    /// Average-pooled res5 features `(N, widths[3])` (the penultimate layer).
    pub fn embed(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let f = self.frames_to(xs, Tap::Res5, train)?;
        let (nt, c, h, w) = f.x.dims4()?;
        f.x.reshape((nt / f.t, f.t, c, h * w))?.mean((1, 3))
    }

    /// Logits `(N, num_classes)`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        super::dense::linear(&self.fc, &self.embed(xs, train)?)
    }
}

#[cfg(test)]
#[path = "r2plus1d_tests.rs"]
mod tests;
